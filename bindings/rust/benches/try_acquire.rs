//! ns per `Tracker::try_acquire` through the binding, on a private tracker
//! whose model has all four windows (rpm, tpm, rpd, tpd) set high enough
//! never to refuse. Run with `cargo bench` (harness = false: plain main).

use std::time::Instant;

use ratetrack::{Acquire, Tracker};

const CONFIG: &str = r#"{"builtin_tiers": false, "limits": {"bench/m": {"rpm": 1000000000, "tpm": 1000000000000, "rpd": 1000000000000, "tpd": 1000000000000}}}"#;

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
    println!("libratetrack {} ({})", version.string, version.origin);
    println!("BENCH rust try_acquire_ns={best:.1}");
    Ok(())
}
