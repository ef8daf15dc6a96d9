//! Owned strings are freed: 100k stats calls must not grow the RSS.
//! (Its own test binary, so no other test allocates meanwhile.)

use ratetrack::Tracker;

// Checked on the per-day windows: on a busy machine the loops may take
// longer than a minute, and a per-minute window would have emptied by then.
const CONFIG: &str = r#"{"builtin_tiers": false, "limits": {"leak/m": {"rpm": 1000, "tpm": 100000, "rpd": 100000, "tpd": 10000000}}}"#;

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4 // 4 KiB pages
}

#[test]
fn stats_loops_do_not_leak() {
    // A small private tracker and a small global (one model each), so the
    // loops are quick; a leaked string would still be ~300 bytes per call.
    let t = Tracker::open(CONFIG).unwrap();
    t.record("leak/m", 10).unwrap();
    ratetrack::configure_global(CONFIG).unwrap();
    let g = Tracker::global(None).unwrap();
    g.record("leak/m", 10).unwrap();
    for _ in 0..5_000 {
        t.stats().unwrap(); // warm up allocator caches
        ratetrack::global_stats().unwrap();
    }
    let before = rss_kib();
    for _ in 0..100_000 {
        let s = t.stats().unwrap();
        assert_eq!(s.window("leak/m", "tokens_per_day").unwrap().current, 10);
    }
    let mid = rss_kib();
    for _ in 0..50_000 {
        let s = ratetrack::global_stats().unwrap().expect("global exists");
        assert_eq!(s.window("leak/m", "requests_per_day").unwrap().current, 1);
    }
    let after = rss_kib();
    // Leaking every string would be >= 100k x 300 B = 30 MB (15 MB for the global).
    assert!(
        mid < before + 3 * 1024,
        "tracker stats: RSS grew from {before} KiB to {mid} KiB"
    );
    assert!(
        after < mid + 3 * 1024,
        "global stats: RSS grew from {mid} KiB to {after} KiB"
    );
}
