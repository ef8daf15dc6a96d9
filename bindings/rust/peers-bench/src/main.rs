//! libratetrack's try_acquire next to governor (GCRA), in one process:
//! interleaved rounds, each case timed in every round, the median of the
//! rounds with their range and the ratio to libratetrack in the same round.
//! Run by scripts/bench-peers.sh; figures, not a test.
//!
//! The limits of a real model: rpm 500, tpm 200,000, rpd 10,000,
//! tpd 2,000,000; 100 tokens a decision. Every batch starts from fresh
//! state (libratetrack: reset(); a peer: new limiters), outside the timing.
//! Admitting: 400 decisions, all admitted (they fit every limit).
//! Refusing: the limit spent first (untimed), then 400 decisions, all refused.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use ratetrack::{Acquire, Tracker};

const CONFIG: &str = r#"{"builtin_tiers": false, "limits": {"peers/m": {"rpm": 500, "tpm": 200000, "rpd": 10000, "tpd": 2000000}}}"#;
const MODEL: &str = "peers/m";
const TOKENS: u32 = 100;
const K: usize = 400;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// `limit` units per `period`, as a GCRA quota with a burst of the whole limit.
fn quota(limit: u32, period: Duration) -> Quota {
    Quota::with_period(period / limit).unwrap().allow_burst(nz(limit))
}

fn check(l: &DefaultDirectRateLimiter, n: u32) -> bool {
    if n == 1 {
        l.check().is_ok()
    } else {
        matches!(l.check_n(nz(n)), Ok(Ok(())))
    }
}

/// One limiter per window; governor cannot look without consuming, so a
/// user checks them in order and stops at the first refusal (the earlier
/// ones stay consumed: not atomic across windows).
struct Four([DefaultDirectRateLimiter; 4]);

impl Four {
    fn new() -> Self {
        let min = Duration::from_secs(60);
        let day = Duration::from_secs(86_400);
        Four([
            RateLimiter::direct(quota(500, min)),
            RateLimiter::direct(quota(200_000, min)),
            RateLimiter::direct(quota(10_000, day)),
            RateLimiter::direct(quota(2_000_000, day)),
        ])
    }
    fn decide(&self, tokens: u32) -> bool {
        check(&self.0[0], 1) && check(&self.0[1], tokens) && check(&self.0[2], 1) && check(&self.0[3], tokens)
    }
}

enum State {
    Rt,
    Four(Four),
    One(DefaultDirectRateLimiter),
}

fn main() {
    let rounds = env("PEERS_ROUNDS", 11);
    let batches = env("PEERS_BATCHES", 50);
    let t = Tracker::open(CONFIG).expect("open");
    let decide = |s: &State| -> bool {
        match s {
            State::Rt => matches!(t.try_acquire(black_box(MODEL), black_box(TOKENS as u64)).unwrap(), Acquire::Granted),
            State::Four(f) => f.decide(black_box(TOKENS)),
            State::One(l) => check(l, black_box(TOKENS)),
        }
    };
    let fresh = |case: usize| -> State {
        match case {
            0 => {
                t.reset().unwrap();
                State::Rt
            }
            1 => State::Four(Four::new()),
            _ => State::One(RateLimiter::direct(quota(200_000, Duration::from_secs(60)))),
        }
    };
    let names = [
        "libratetrack try_acquire (4 windows)",
        "governor, 4 limiters composed",
        "governor, 1 limiter (tpm only)",
    ];
    // [refusing][case][round] = ns per decision
    let mut ns = vec![vec![Vec::new(); names.len()]; 2];
    for round in 0..rounds + 1 {
        for refusing in [false, true] {
            for i in 0..names.len() {
                let case = (i + round) % names.len();
                let mut total = Duration::ZERO;
                for _ in 0..batches {
                    let s = fresh(case);
                    if refusing {
                        let mut spent = 0;
                        while decide(&s) {
                            spent += 1;
                            assert!(spent < 100_000, "never refused");
                        }
                    }
                    let start = Instant::now();
                    let mut admitted = 0usize;
                    for _ in 0..K {
                        admitted += decide(&s) as usize;
                    }
                    total += start.elapsed();
                    let want = if refusing { 0 } else { K };
                    assert_eq!(admitted, want, "{}: {} of {} admitted", names[case], admitted, K);
                }
                if round > 0 {
                    // round 0 is a warm-up
                    ns[refusing as usize][case].push(total.as_nanos() as f64 / (batches * K) as f64);
                }
            }
        }
    }
    println!("ROUNDS {rounds} x {batches} batches of {K} decisions per case");
    for (r, kind) in ["admitting", "refusing"].iter().enumerate() {
        for (c, name) in names.iter().enumerate() {
            let v: Vec<String> = ns[r][c].iter().map(|x| format!("{x:.2}")).collect();
            println!("CASE\trust\t{kind}\t{name}\t{}", v.join(","));
        }
    }
}
