//! ns per `Tracker::try_acquire` through the binding, on a private tracker
//! whose model has all four windows (rpm, tpm, rpd, tpd) set high enough
//! never to refuse. Run with `cargo bench` (harness = false: plain main).
//! Next to it, the floor: `rt_version_number()`, a C function that only
//! returns a constant, called through a function pointer from libloading,
//! as the binding calls every C function. And a refusal: `try_acquire` on
//! `bench/spent`, whose day's one request is used.

use std::os::raw::c_int;
use std::time::Instant;

use ratetrack::{Acquire, Tracker};

const CONFIG: &str = r#"{"builtin_tiers": false, "limits": {"bench/m": {"rpm": 1000000000, "tpm": 1000000000000, "rpd": 1000000000000, "tpd": 1000000000000}, "bench/spent": {"rpm": 1000000000, "tpm": 1000000000000, "rpd": 1, "tpd": 1000000000000}}}"#;

/// Hides `x` from the optimiser (`std::hint::black_box` needs Rust 1.66;
/// the crate supports 1.63).
fn black_box<T: Copy>(x: T) -> T {
    // SAFETY: a read of a valid, initialised local.
    unsafe { std::ptr::read_volatile(&x) }
}

fn main() -> Result<(), ratetrack::Error> {
    let version = ratetrack::version()?;
    let t = Tracker::open(CONFIG)?;
    let run = |n: u64| -> Result<f64, ratetrack::Error> {
        let start = Instant::now();
        for _ in 0..n {
            let a = t.try_acquire(black_box("bench/m"), black_box(100))?;
            assert_eq!(a, Acquire::Granted);
        }
        Ok(start.elapsed().as_nanos() as f64 / n as f64)
    };
    run(50_000)?; // warm-up
                  // best of 5 rounds: the least disturbed by other processes on the machine
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        t.reset()?;
        best = best.min(run(200_000)?);
    }
    assert_eq!(t.try_acquire("bench/spent", 100)?, Acquire::Granted);
    let refused = |n: u64| -> Result<f64, ratetrack::Error> {
        let start = Instant::now();
        for _ in 0..n {
            let a = t.try_acquire(black_box("bench/spent"), black_box(100))?;
            assert_ne!(a, Acquire::Granted);
        }
        Ok(start.elapsed().as_nanos() as f64 / n as f64)
    };
    refused(50_000)?;
    let mut refused_best = f64::INFINITY;
    for _ in 0..5 {
        refused_best = refused_best.min(refused(200_000)?);
    }
    // The floor, on the same library (dlopen returns the loaded one).
    let path = std::env::var("RATETRACK_LIBRARY").unwrap_or_else(|_| "libratetrack.so.0".into());
    // SAFETY: the library the binding loaded; its initialisers have run.
    let lib = unsafe { libloading::Library::new(&path) }.expect("dlopen");
    // SAFETY: rt_version_number's type per ratetrack.h.
    let version_number: unsafe extern "C" fn() -> c_int =
        *unsafe { lib.get::<unsafe extern "C" fn() -> c_int>(b"rt_version_number\0") }.expect("dlsym");
    let floor = |n: u64| -> f64 {
        let f = black_box(version_number);
        let start = Instant::now();
        for _ in 0..n {
            // SAFETY: a plain call of a function that takes nothing.
            assert!(unsafe { f() } > 0);
        }
        start.elapsed().as_nanos() as f64 / n as f64
    };
    floor(50_000);
    let mut floor_best = f64::INFINITY;
    for _ in 0..5 {
        floor_best = floor_best.min(floor(200_000));
    }
    println!("libratetrack {} ({})", version.string, version.origin);
    println!(
        "BENCH rust try_acquire_ns={best:.1} floor_ns={floor_best:.1} refused_ns={refused_best:.1}"
    );
    Ok(())
}
