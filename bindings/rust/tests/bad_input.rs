//! Hostile input (issue #24): what C cannot represent is refused with an
//! `Error` (`Invalid` for an argument, `Config` for a configuration), never
//! cut at a NUL byte. Counts are `u64`, strings `&str` (UTF-8 by type) and
//! timeouts `Duration`s, so Rust has no range, NaN, infinity or lone
//! surrogate to refuse: only NUL bytes, and what the library itself refuses
//! in configuration text.

use std::path::Path;
use std::time::Duration;

use ratetrack::{configure_global, shm_remove, Error, Grant, RetryAfter, Tracker};

const M: &str = "acme/m";
const CONFIG: &str =
    r#"{"builtin_tiers": false, "limits": {"acme/m": {"rpm": 1000, "tpm": 1000000000}}}"#;

fn grant(model: &str) -> Grant {
    Grant {
        model: model.into(),
        ticket: 1,
        tokens: 1,
        output_tokens: 0,
    }
}

#[test]
fn bad_input_table() {
    let t = Tracker::open(CONFIG).unwrap();
    let nul = "acme/m\0evil";
    type Call<'a> = Box<dyn Fn(&str) -> Result<(), Error> + 'a>;
    let calls: Vec<(&str, Call)> = vec![
        ("can_make", Box::new(|s| t.can_make(s, 1).map(drop))),
        ("record", Box::new(|s| t.record(s, 1))),
        ("record_tokens", Box::new(|s| t.record_tokens(s, 1, 1))),
        ("try_acquire", Box::new(|s| t.try_acquire(s, 1).map(drop))),
        (
            "try_acquire_grant",
            Box::new(|s| t.try_acquire_grant(s, 1).map(drop)),
        ),
        (
            "try_acquire_io",
            Box::new(|s| t.try_acquire_io(s, 1, 1).map(drop)),
        ),
        (
            "acquire",
            Box::new(|s| t.acquire(s, 1, Some(Duration::ZERO)).map(drop)),
        ),
        (
            "acquire_io",
            Box::new(|s| t.acquire_io(s, 1, 1, None).map(drop)),
        ),
        ("settle.grant.model", Box::new(|s| t.settle(&grant(s), 1))),
        (
            "settle_io.grant.model",
            Box::new(|s| t.settle_io(&grant(s), 1, 1)),
        ),
        ("wait_time", Box::new(|s| t.wait_time(s, 1).map(drop))),
        (
            "pick",
            Box::new(|s| t.pick(&["other/x", s], 1, 0).map(drop)),
        ),
        (
            "observe_headers.model",
            Box::new(|s| t.observe_headers(s, [("a", "b")])),
        ),
        (
            "observe_headers.name",
            Box::new(|s| {
                t.observe_headers(M, [(format!("x-ratelimit-remaining-requests{s}"), "0")])
            }),
        ),
        (
            "observe_headers.value",
            Box::new(|s| {
                t.observe_headers(M, [("x-ratelimit-remaining-requests", format!("0{s}"))])
            }),
        ),
        (
            "report_limited.model",
            Box::new(|s| t.report_limited(s, RetryAfter::Unknown)),
        ),
        (
            "report_limited.retry_after",
            Box::new(|s| t.report_limited(M, s)),
        ),
        (
            "global.tier",
            Box::new(|s| Tracker::global(Some(s)).map(drop)),
        ),
        ("shm_remove", Box::new(shm_remove)),
        (
            "load.path",
            Box::new(|s| {
                ratetrack::load(Some(Path::new(&format!("/tmp/libratetrack.so.0{s}")))).map(drop)
            }),
        ),
    ];
    let mut wrong = Vec::new();
    for (name, call) in &calls {
        match call(nul) {
            Err(Error::Invalid(msg)) if msg.contains("NUL") => {}
            other => wrong.push(format!("NUL in {name}: {other:?}")),
        }
    }
    // Configurations: a NUL is Error::Config, as NaN, Infinity and a limit
    // beyond 2^64-1 are (the library refuses those: not JSON / too large).
    let configs = [
        ("NUL", "{\"tier\": \"tier1\"}\0junk"),
        ("NaN", r#"{"limits": {"acme/m": {"rpm": NaN}}}"#),
        ("Infinity", r#"{"limits": {"acme/m": {"rpm": Infinity}}}"#),
        (
            "2^64",
            r#"{"limits": {"acme/m": {"rpm": 18446744073709551616}}}"#,
        ),
    ];
    for (what, cfg) in configs {
        let results = [
            ("open", Tracker::open(cfg).map(drop)),
            ("configure", t.configure(cfg)),
            ("configure_global", configure_global(cfg)),
        ];
        for (name, result) in results {
            if !matches!(result, Err(Error::Config(_))) {
                wrong.push(format!("{name}({what}): {result:?}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "not refused as expected:\n{}",
        wrong.join("\n")
    );

    // Nothing reached the library: no use, no name cut short, nothing observed.
    let s = t.stats().unwrap();
    assert_eq!(s.models.keys().collect::<Vec<_>>(), [M], "{s:?}");
    let rpm = s.window(M, "requests_per_minute").unwrap();
    assert_eq!((rpm.current, rpm.limit), (0, Some(1000)));
    assert!(s.provider("acme/m").is_none(), "{s:?}");
}

#[test]
fn edges_that_are_accepted() {
    let t = Tracker::open(CONFIG).unwrap();
    // The largest count is a count (never admissible here).
    assert!(matches!(t.can_make(M, u64::MAX), Err(Error::TooLarge(_))));
    // A timeout too long for an Instant is no deadline, not a panic.
    let g = t.acquire(M, 1, Some(Duration::MAX)).unwrap();
    assert!(g.is_some());
    let g = t.acquire_io(M, 1, 1, Some(Duration::MAX)).unwrap();
    assert!(g.is_some());
    // Any Duration is a Retry-After (the library caps a 429 at a day).
    t.report_limited("other/x", Duration::MAX).unwrap();
    assert!(t.try_acquire("other/x", 1).unwrap().retry_after() <= Duration::from_secs(86_400));
    // A header that is not UTF-8 is skipped like any malformed one; the rest is used.
    let headers: [(&[u8], &[u8]); 2] = [
        (b"x-ratelimit-remaining-requests", b"0\xff"),
        (b"x-ratelimit-limit-requests", b"60"),
    ];
    t.observe_headers("openai/m", headers).unwrap();
    let s = t.stats().unwrap();
    let requests = s
        .provider("openai/m")
        .and_then(|p| p.requests.as_ref())
        .unwrap();
    assert_eq!(
        (requests.remaining, requests.limit),
        (None, Some(60)),
        "{s:?}"
    );
}
