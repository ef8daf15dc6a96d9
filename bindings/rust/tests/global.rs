//! The process-wide global tracker. Tests here share one global, so each
//! takes GLOBAL_LOCK and starts from reset_global().

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use ratetrack::{
    configure_global, global_metrics_text, global_stats, reset_global, Acquire, Error, Tracker,
};

const MINI: &str = "openai/gpt-4o-mini";
static GLOBAL_LOCK: Mutex<()> = Mutex::new(());

/// Serialises the global tests and resets the global first.
fn fresh_global() -> MutexGuard<'static, ()> {
    let guard = GLOBAL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    reset_global().expect("reset_global");
    guard
}

#[test]
fn one_global_per_process() {
    let _g = fresh_global();
    let a = Tracker::global(Some("tier1")).unwrap();
    let b = Tracker::global(None).unwrap();
    assert!(a.is_global() && b.is_global());
    a.record(MINI, 250).unwrap();
    let w = b
        .stats()
        .unwrap()
        .window(MINI, "requests_per_minute")
        .cloned()
        .unwrap();
    assert_eq!((w.current, w.limit, w.remaining), (1, Some(500), Some(499)));
    assert_eq!(
        b.stats()
            .unwrap()
            .window(MINI, "tokens_per_minute")
            .unwrap()
            .current,
        250
    );
    // The free function sees the same global.
    let s = global_stats().unwrap().expect("global exists");
    assert_eq!(s.window(MINI, "requests_per_minute").unwrap().current, 1);
    assert_eq!(s.tier, "tier1");
    // Dropping a global handle closes nothing: the other keeps working.
    drop(a);
    b.record(MINI, 1).unwrap();
    assert_eq!(
        b.stats()
            .unwrap()
            .window(MINI, "requests_per_minute")
            .unwrap()
            .current,
        2
    );
    // From another thread, a new handle still sees the same usage.
    std::thread::spawn(|| {
        let c = Tracker::global(None).unwrap();
        assert_eq!(
            c.stats()
                .unwrap()
                .window(MINI, "requests_per_minute")
                .unwrap()
                .current,
            2
        );
    })
    .join()
    .unwrap();
}

#[test]
fn seed_scenario_agent_and_tool_share_the_limit() {
    let _g = fresh_global();
    let agent = Tracker::global(Some("tier1")).unwrap();
    let tool = Tracker::global(None).unwrap();
    let first = std::time::Instant::now();
    for i in 0..400 {
        assert_eq!(
            agent.try_acquire(MINI, 100).unwrap(),
            Acquire::Granted,
            "agent call {i}"
        );
    }
    for _ in 0..100 {
        assert!(tool.can_make(MINI, 100).unwrap());
        tool.record(MINI, 100).unwrap();
    }
    // 500 requests: the 501st is refused, by either handle.
    assert!(!agent.can_make(MINI, 100).unwrap());
    assert!(!tool.can_make(MINI, 0).unwrap());
    match tool.try_acquire(MINI, 100).unwrap() {
        Acquire::Limited { retry_after } => {
            assert!(!retry_after.is_zero());
            // The window is 60 s; a use may count one bucket (1/60 of the
            // span) plus a clock guard longer: the library's resolution.
            // The first use leaves the window ~60 s after it was made, so
            // retry_after plus the time since then is ~60 s, however slowly
            // the 500 calls ran.
            assert!(
                retry_after <= Duration::from_millis(62_000),
                "{retry_after:?}"
            );
            assert!(
                retry_after + first.elapsed() >= Duration::from_millis(58_000),
                "{retry_after:?}"
            );
        }
        Acquire::Granted => panic!("501st request admitted"),
    }
    assert!(!tool.wait_time(MINI, 100).unwrap().is_zero());
    let s = global_stats().unwrap().unwrap();
    let rpm = s.window(MINI, "requests_per_minute").unwrap();
    assert_eq!((rpm.current, rpm.remaining), (500, Some(0)));
    assert_eq!(rpm.usage_percent, Some(100.0), "{rpm:?}");
    assert_eq!(s.window(MINI, "tokens_per_minute").unwrap().current, 50_000);
    assert_eq!(
        s.window(MINI, "requests_per_day").unwrap().limit,
        Some(10_000)
    );
}

#[test]
fn reset_global_forgets_the_global_but_keeps_handles_valid() {
    let _g = fresh_global();
    assert_eq!(global_stats().unwrap(), None);
    let t = Tracker::global(None).unwrap();
    t.record(MINI, 5).unwrap();
    assert!(global_stats().unwrap().is_some());
    reset_global().unwrap();
    assert_eq!(global_stats().unwrap(), None);
    // The old handle acts on the emptied global...
    assert_eq!(
        t.stats()
            .unwrap()
            .window(MINI, "requests_per_minute")
            .unwrap()
            .current,
        0
    );
    t.record(MINI, 5).unwrap();
    assert_eq!(
        t.stats()
            .unwrap()
            .window(MINI, "requests_per_minute")
            .unwrap()
            .current,
        1
    );
    // ...but only rt_global_get() creates it again (header: "null" until then).
    assert_eq!(global_stats().unwrap(), None);
    Tracker::global(None).unwrap();
    assert!(global_stats().unwrap().is_some());
}

/// ratetrack.h, rt_reset(NULL): until the next rt_global_get the old tier's
/// limits stay in force; that call chooses the tier again as at first
/// creation (here: no tier given, so RATETRACK_TIER or "tier1").
#[test]
fn reset_global_keeps_the_old_tier_until_the_next_global_call() {
    let _g = fresh_global();
    let t = Tracker::global(Some("tier2")).unwrap();
    let rpm = |t: &Tracker| {
        let s = t.stats().unwrap();
        let w = s.window(MINI, "requests_per_minute").cloned().unwrap();
        (s.tier, w.current, w.limit)
    };
    t.record(MINI, 5).unwrap();
    let (tier, current, tier2_limit) = rpm(&t);
    assert_eq!((tier.as_str(), current), ("tier2", 1));
    assert_ne!(tier2_limit, Some(500), "tier2 differs from tier1");

    reset_global().unwrap();
    assert_eq!(global_stats().unwrap(), None);
    // Usage forgotten, old tier still in force through the old handle.
    assert_eq!(rpm(&t), ("tier2".to_string(), 0, tier2_limit));

    let again = Tracker::global(None).unwrap();
    let want = std::env::var("RATETRACK_TIER").unwrap_or_else(|_| "tier1".into());
    let stats = global_stats().unwrap().expect("created again");
    assert_eq!(stats.tier, want);
    assert_eq!(rpm(&again).0, want);
    assert_eq!(rpm(&t).0, want, "old handles see the new tier too");
    if want == "tier1" {
        assert_eq!(rpm(&again).2, Some(500));
    }
}

#[test]
fn per_handle_reset_clears_usage_only() {
    let _g = fresh_global();
    let t = Tracker::global(Some("tier1")).unwrap();
    t.record(MINI, 5).unwrap();
    t.reset().unwrap();
    let s = t.stats().unwrap();
    assert_eq!(s.window(MINI, "requests_per_minute").unwrap().current, 0);
    assert_eq!(
        s.window(MINI, "requests_per_minute").unwrap().limit,
        Some(500)
    );
}

#[test]
fn unknown_tier_is_a_config_error() {
    let _g = fresh_global();
    match Tracker::global(Some("no-such-tier")) {
        Err(Error::Config(msg)) => assert!(!msg.is_empty()),
        other => panic!("expected Config, got {other:?}"),
    }
    assert!(matches!(
        Tracker::global(Some("tier\0x")),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn configure_global_applies_limits_and_rejects_bad_config() {
    let _g = fresh_global();
    assert!(matches!(
        configure_global("{not json"),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        configure_global(r#"{"no_such_key": 1}"#),
        Err(Error::Config(_))
    ));
    configure_global(r#"{"limits": {"acme/m": {"rpm": 2}}}"#).unwrap();
    let t = Tracker::global(Some("tier1")).unwrap();
    assert!(t.try_acquire("acme/m", 0).unwrap().is_granted());
    assert!(t.try_acquire("acme/m", 0).unwrap().is_granted());
    assert!(!t.try_acquire("acme/m", 0).unwrap().is_granted());
    // Built-in tier limits still apply to other models.
    assert_eq!(
        t.stats()
            .unwrap()
            .window(MINI, "requests_per_minute")
            .unwrap()
            .limit,
        Some(500)
    );
    // Restore: "limits" replaces the configured limits as a whole.
    configure_global(r#"{"limits": {}}"#).unwrap();
    assert!(t.try_acquire("acme/m", 0).unwrap().is_granted());
}

#[test]
fn global_metrics_text_is_the_globals_usage() {
    let _g = fresh_global();
    // Before the global exists: text (a comment), and the global is not created.
    let text = global_metrics_text().unwrap();
    assert!(text.starts_with('#'), "{text}");
    assert!(!text.contains("ratetrack_admitted_total{"), "{text}");
    assert_eq!(global_stats().unwrap(), None);

    let t = Tracker::global(Some("tier1")).unwrap();
    assert!(t.try_acquire(MINI, 10).unwrap().is_granted());
    let text = global_metrics_text().unwrap();
    assert!(
        text.contains(&format!("ratetrack_admitted_total{{model=\"{MINI}\"}} 1")),
        "{text}"
    );
    assert!(
        text.contains("# TYPE ratetrack_admitted_total counter"),
        "{text}"
    );
    // A global handle's method gives the same text.
    assert_eq!(t.metrics_text().unwrap(), text);
}
