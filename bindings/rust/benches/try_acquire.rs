//! ns per `Tracker::try_acquire` through the binding, on a private tracker
//! whose model has all four windows (rpm, tpm, rpd, tpd) set high enough
//! never to refuse. Run with `cargo bench` (harness = false: plain main).
//! Next to it, the floor: `rt_version_number()`, a C function that only
//! returns a constant, called through a function pointer from libloading,
//! as the binding calls every C function. And a refusal: `try_acquire` on
//! `bench/spent`, whose day's one request is used. The three are timed in
//! interleaved rounds; each figure is the median.
//!
//! Then the thread rows of `scripts/bench.sh`: `try_acquire` admitted and
//! refused from 1, 2 and 4 threads at once on one tracker, on one model and
//! on a model each (see [`thread_rows`]).

use std::os::raw::c_int;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
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
    assert_eq!(t.try_acquire("bench/spent", 100)?, Acquire::Granted); // the day's one
    let admitted = |n: u64| -> Result<f64, ratetrack::Error> {
        let start = Instant::now();
        for _ in 0..n {
            let a = t.try_acquire(black_box("bench/m"), black_box(100))?;
            assert_eq!(a, Acquire::Granted);
        }
        Ok(start.elapsed().as_nanos() as f64 / n as f64)
    };
    let refused = |n: u64| -> Result<f64, ratetrack::Error> {
        let start = Instant::now();
        for _ in 0..n {
            let a = t.try_acquire(black_box("bench/spent"), black_box(100))?;
            assert_ne!(a, Acquire::Granted);
        }
        Ok(start.elapsed().as_nanos() as f64 / n as f64)
    };
    // The floor, on the same library (dlopen returns the loaded one).
    let path = std::env::var("RATETRACK_LIBRARY").unwrap_or_else(|_| "libratetrack.so.0".into());
    // SAFETY: the library the binding loaded; its initialisers have run.
    let lib = unsafe { libloading::Library::new(&path) }.expect("dlopen");
    // SAFETY: rt_version_number's type per ratetrack.h.
    let version_number: unsafe extern "C" fn() -> c_int =
        *unsafe { lib.get::<unsafe extern "C" fn() -> c_int>(b"rt_version_number\0") }
            .expect("dlsym");
    let floor = |n: u64| -> f64 {
        let f = black_box(version_number);
        let start = Instant::now();
        for _ in 0..n {
            // SAFETY: a plain call of a function that takes nothing.
            assert!(unsafe { f() } > 0);
        }
        start.elapsed().as_nanos() as f64 / n as f64
    };
    // Interleaved rounds, so that the three share the machine's drifts; each
    // figure is the median of the rounds, each ratio the median of the
    // per-round ratios (with their ranges).
    admitted(50_000)?; // warm-up
    refused(50_000)?;
    floor(50_000);
    const ROUNDS: usize = 11;
    let (mut a, mut r, mut f) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        a.push(admitted(200_000)?);
        r.push(refused(200_000)?);
        f.push(floor(200_000));
    }
    let show = |v: &[f64]| {
        let (m, lo, hi) = median_range(v);
        format!("{m:.1} ({lo:.1}-{hi:.1})")
    };
    let ratio = |x: &[f64], y: &[f64]| {
        let q: Vec<f64> = x.iter().zip(y).map(|(x, y)| x / y).collect();
        let (m, lo, hi) = median_range(&q);
        format!("{m:.2} ({lo:.2}-{hi:.2})")
    };
    println!("libratetrack {} ({})", version.string, version.origin);
    println!(
        "200000 calls x {ROUNDS} interleaved rounds, median (range) ns: admitted {}, refused {}, floor {}",
        show(&a),
        show(&r),
        show(&f)
    );
    println!(
        "per round: admitted / floor {}, refused / admitted {}",
        ratio(&a, &f),
        ratio(&r, &a)
    );
    println!(
        "BENCH rust try_acquire_ns={:.1} floor_ns={:.1} refused_ns={:.1}",
        median_range(&a).0,
        median_range(&f).0,
        median_range(&r).0
    );
    thread_rows()
}

/// Limits never reached on bench/m0..m3 and a day of one request on
/// bench/full0..full3, as `bench_core` has in C.
fn threads_config() -> String {
    let high =
        r#"{"rpm": 1000000000, "tpm": 1000000000000, "rpd": 1000000000000, "tpd": 1000000000000}"#;
    let spent = r#"{"rpm": 1000000000, "tpm": 1000000000000, "rpd": 1, "tpd": 1000000000000}"#;
    let models: Vec<String> = (0..4)
        .map(|i| format!(r#""bench/m{i}": {high}, "bench/full{i}": {spent}"#))
        .collect();
    format!(
        r#"{{"builtin_tiers": false, "limits": {{{}}}}}"#,
        models.join(", ")
    )
}

/// One row: how many threads call at once, whether each has a model of its
/// own (else all share bench/m0 or bench/full0), whether every call is refused.
#[derive(Clone, Copy, PartialEq)]
struct Case {
    threads: usize,
    separate: bool,
    refused: bool,
}

/// `calls` calls in all from `c.threads` threads on `t`: the wall time from
/// the first thread's start to the last one's end (each reads the clock
/// itself: a main thread preempted after the release would miss calls), per
/// call (all threads' calls, as `bench_core`'s real time per iteration).
/// Panics on a call answered otherwise than the case expects.
fn run_case(t: &Tracker, c: Case, calls: usize) -> f64 {
    let per = calls / c.threads;
    let start = Barrier::new(c.threads);
    let origin = Instant::now();
    let (first, last) = (AtomicU64::new(u64::MAX), AtomicU64::new(0));
    std::thread::scope(|s| {
        for i in 0..c.threads {
            let model = format!(
                "bench/{}{}",
                if c.refused { "full" } else { "m" },
                if c.separate { i } else { 0 }
            );
            let (start, first, last) = (&start, &first, &last);
            s.spawn(move || {
                start.wait(); // all at once
                let began = origin.elapsed().as_nanos() as u64;
                for _ in 0..per {
                    let a = t
                        .try_acquire(black_box(model.as_str()), black_box(10))
                        .unwrap();
                    assert_eq!(a.is_granted(), !c.refused, "{model}");
                }
                let ended = origin.elapsed().as_nanos() as u64;
                first.fetch_min(began, Ordering::Relaxed);
                last.fetch_max(ended, Ordering::Relaxed);
            });
        }
    }); // joins them
    let wall = last.into_inner() - first.into_inner();
    wall as f64 / (per * c.threads) as f64
}

/// The median of `v` and its range.
fn median_range(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

/// The thread rows: every case runs once in each of 11 rounds (after a
/// warm-up round), in an order that rotates every round; a row gives the
/// medians of its rounds and the median and range of the per-round ratios
/// refused / admitted. Prints
/// `THREAD_ROW rust threads=<n> models=<one|each> admitted_ns=<x> refused_ns=<x> ratio=<x> ratio_min=<x> ratio_max=<x>`.
fn thread_rows() -> Result<(), ratetrack::Error> {
    let t = Tracker::open(&threads_config())?;
    for i in 0..4 {
        assert_eq!(
            t.try_acquire(&format!("bench/full{i}"), 10)?,
            Acquire::Granted
        );
    }
    let mut cases = Vec::new();
    for threads in [1, 2, 4] {
        for separate in [false, true] {
            if threads == 1 && separate {
                continue; // one thread: one model either way
            }
            for refused in [false, true] {
                cases.push(Case {
                    threads,
                    separate,
                    refused,
                });
            }
        }
    }
    const ROUNDS: usize = 11;
    const CALLS: usize = 400_000;
    let mut ns = vec![Vec::new(); cases.len()];
    for round in 0..=ROUNDS {
        for k in 0..cases.len() {
            let k = (k + round) % cases.len();
            let x = run_case(&t, cases[k], CALLS);
            if round > 0 {
                ns[k].push(x); // round 0: warm-up
            }
        }
    }
    println!(
        "THREADS rust: a thread is a std::thread calling one private Tracker (shared by reference); \
         {CALLS} calls a case in each of {ROUNDS} interleaved rounds; ns = wall time per call, all threads' calls"
    );
    for k in (0..cases.len()).step_by(2) {
        let (a, r) = (&ns[k], &ns[k + 1]);
        let ratios: Vec<f64> = a.iter().zip(r).map(|(a, r)| r / a).collect();
        let (q, lo, hi) = median_range(&ratios);
        println!(
            "THREAD_ROW rust threads={} models={} admitted_ns={:.1} refused_ns={:.1} ratio={q:.2} ratio_min={lo:.2} ratio_max={hi:.2}",
            cases[k].threads,
            if cases[k].separate { "each" } else { "one" },
            median_range(a).0,
            median_range(r).0,
        );
    }
    Ok(())
}
