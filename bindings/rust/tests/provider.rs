//! Provider truth: response headers and 429s fed back, input/output token
//! windows, picking a model, calendar days, and the typed stats of all of it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ratetrack::{Acquire, Error, Grant, GrantAttempt, Pick, RetryAfter, Tracker};

/// A private tracker with only the given limits.
fn private(limits: &str) -> Tracker {
    Tracker::open(&format!(
        r#"{{"builtin_tiers": false, "limits": {limits}}}"#
    ))
    .expect("open")
}

/// An admitted grant (panics if refused).
fn granted(a: GrantAttempt) -> Grant {
    match a {
        GrantAttempt::Granted(g) => g,
        other => panic!("refused: {other:?}"),
    }
}

/// The retry-after of a refusal (panics if admitted).
fn limited(a: Acquire) -> Duration {
    match a {
        Acquire::Limited { retry_after } => retry_after,
        Acquire::Granted => panic!("admitted, expected limited"),
    }
}

/// OpenAI's documented sample response headers, with 2 requests left.
const OPENAI_SAMPLE: &[(&str, &str)] = &[
    ("x-ratelimit-limit-requests", "60"),
    ("x-ratelimit-limit-tokens", "150000"),
    ("x-ratelimit-remaining-requests", "2"),
    ("x-ratelimit-remaining-tokens", "149984"),
    ("x-ratelimit-reset-requests", "30s"),
    ("x-ratelimit-reset-tokens", "6m0s"),
];

#[test]
fn openai_headers_cap_admissions_and_show_in_stats() {
    let t = private(r#"{"openai/m": {"rpm": 500, "tpm": 200000}}"#);
    t.observe_headers("openai/m", OPENAI_SAMPLE).unwrap();
    // The windows would allow 500; the provider said 2 remain.
    assert!(t.try_acquire("openai/m", 10).unwrap().is_granted());
    assert!(t.try_acquire("openai/m", 10).unwrap().is_granted());
    let wait = limited(t.try_acquire("openai/m", 10).unwrap());
    assert!(
        wait > Duration::from_secs(25) && wait <= Duration::from_secs(31),
        "until the provider's reset in 30s: {wait:?}"
    );

    let s = t.stats().unwrap();
    let rpm = s.window("openai/m", "requests_per_minute").unwrap();
    assert_eq!((rpm.current, rpm.limit), (2, Some(500)));
    assert_eq!(rpm.observed_limit, Some(60), "{s:?}");
    let tpm = s.window("openai/m", "tokens_per_minute").unwrap();
    assert_eq!(tpm.observed_limit, Some(150_000), "{s:?}");
    assert_eq!(
        s.window("openai/m", "requests_per_day")
            .unwrap()
            .observed_limit,
        None,
        "only the per-minute window carries it"
    );
    let p = s.provider("openai/m").expect("provider report");
    assert_eq!(p.blocked_for_ms, 0);
    let req = p.requests.as_ref().expect("requests reported");
    assert_eq!(req.limit, Some(60));
    assert_eq!(req.remaining, Some(0), "both reported slots used: {p:?}");
    let reset = req.reset_in().expect("a reset in force");
    assert!(
        reset > Duration::from_secs(25) && reset <= Duration::from_secs(30),
        "{reset:?}"
    );
    let tok = p.tokens.as_ref().expect("tokens reported");
    assert_eq!(tok.limit, Some(150_000));
    assert!(p.input_tokens.is_none() && p.output_tokens.is_none());
}

#[test]
fn headers_from_maps_and_owned_pairs() {
    // A HashMap (by reference) with mixed-case names: names are case-insensitive.
    let t = private(r#"{"openai/m": {"rpm": 500}}"#);
    let map: HashMap<String, String> = [
        ("X-RateLimit-Remaining-Requests", "1"),
        ("X-RateLimit-Reset-Requests", "20s"),
        ("content-type", "application/json"),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    t.observe_headers("openai/m", &map).unwrap();
    assert!(t.try_acquire("openai/m", 1).unwrap().is_granted());
    assert!(!t.try_acquire("openai/m", 1).unwrap().is_granted());

    // A Vec of owned pairs, moved in, and a BTreeMap of &str.
    let t = private(r#"{"openai/m": {"rpm": 500}}"#);
    let pairs = vec![
        (
            "x-ratelimit-remaining-requests".to_string(),
            "0".to_string(),
        ),
        ("x-ratelimit-reset-requests".to_string(), "5s".to_string()),
    ];
    t.observe_headers("openai/m", pairs).unwrap();
    let wait = limited(t.try_acquire("openai/m", 1).unwrap());
    assert!(wait > Duration::from_secs(3) && wait <= Duration::from_secs(6));
    // A newer report replaces the older one.
    let newer: BTreeMap<&str, &str> = [
        ("x-ratelimit-remaining-requests", "3"),
        ("x-ratelimit-reset-requests", "5s"),
    ]
    .into();
    t.observe_headers("openai/m", &newer).unwrap();
    assert!(t.try_acquire("openai/m", 1).unwrap().is_granted());
}

#[test]
fn anthropic_headers_report_input_and_output() {
    let t = private(r#"{"anthropic/m": {"rpm": 50, "itpm": 40000, "otpm": 8000}}"#);
    let reset = http_date_or_rfc3339(SystemTime::now() + Duration::from_secs(40), true);
    let headers = [
        ("anthropic-ratelimit-requests-limit", "50".to_string()),
        ("anthropic-ratelimit-requests-remaining", "49".to_string()),
        ("anthropic-ratelimit-requests-reset", reset.clone()),
        (
            "anthropic-ratelimit-input-tokens-limit",
            "30000".to_string(),
        ),
        (
            "anthropic-ratelimit-input-tokens-remaining",
            "100".to_string(),
        ),
        ("anthropic-ratelimit-input-tokens-reset", reset.clone()),
        (
            "anthropic-ratelimit-output-tokens-limit",
            "8000".to_string(),
        ),
        (
            "anthropic-ratelimit-output-tokens-remaining",
            "7000".to_string(),
        ),
        ("anthropic-ratelimit-output-tokens-reset", reset),
    ];
    t.observe_headers("anthropic/m", &headers).unwrap();
    // 100 input tokens remain per the provider, though itpm says 40000.
    assert!(matches!(
        t.try_acquire_io("anthropic/m", 101, 10).unwrap(),
        GrantAttempt::Limited { .. }
    ));
    granted(t.try_acquire_io("anthropic/m", 100, 10).unwrap());
    let s = t.stats().unwrap();
    let itpm = s.window("anthropic/m", "input_tokens_per_minute").unwrap();
    assert_eq!(
        (itpm.limit, itpm.observed_limit),
        (Some(40000), Some(30000))
    );
    let otpm = s.window("anthropic/m", "output_tokens_per_minute").unwrap();
    assert_eq!(otpm.observed_limit, None, "same as configured: {s:?}");
    let p = s.provider("anthropic/m").unwrap();
    assert_eq!(p.input_tokens.as_ref().unwrap().limit, Some(30000));
    assert_eq!(p.output_tokens.as_ref().unwrap().limit, Some(8000));
    assert_eq!(p.requests.as_ref().unwrap().limit, Some(50));
}

#[test]
fn malformed_headers_are_ignored() {
    let t = private(r#"{"openai/m": {"rpm": 500}}"#);
    let bad: &[(&str, &str)] = &[
        ("x-ratelimit-remaining-requests", "lots"),
        ("x-ratelimit-remaining-requests", "-1"),
        ("x-ratelimit-remaining-requests", ""),
        ("x-ratelimit-reset-requests", "soon"),
        ("x-ratelimit-limit-requests", "sixty"),
        ("x-ratelimit-limit-tokens", "1e400"),
        ("x-ratelimit-bogus", "0"),
        ("", "0"),
        ("content-type", "application/json"),
    ];
    t.observe_headers("openai/m", bad).unwrap();
    // A pair that is not UTF-8 is skipped like any malformed one; a NUL byte
    // is refused, not truncated: "0\0..." would otherwise read as "0 remain".
    let raw: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (
            b"x-ratelimit-remaining-requests".to_vec(),
            b"0\xff".to_vec(),
        ),
        (
            b"x-ratelimit-remaining-requests\xff".to_vec(),
            b"0".to_vec(),
        ),
        (b"x-ratelimit-reset-requests".to_vec(), b"30s".to_vec()),
    ];
    t.observe_headers("openai/m", &raw).unwrap();
    for nul in [
        (&b"x-ratelimit-remaining-requests"[..], &b"0\0junk"[..]),
        (&b"x-ratelimit-remaining-requests\0"[..], &b"0"[..]),
    ] {
        assert!(matches!(
            t.observe_headers("openai/m", [nul]),
            Err(Error::Invalid(_))
        ));
    }
    t.observe_headers("openai/m", Vec::<(&str, &str)>::new())
        .unwrap();
    for i in 0..10 {
        assert!(t.try_acquire("openai/m", 1).unwrap().is_granted(), "#{i}");
    }
    let s = t.stats().unwrap();
    let rpm = s.window("openai/m", "requests_per_minute").unwrap();
    assert_eq!((rpm.current, rpm.observed_limit), (10, None), "{s:?}");
    assert!(
        s.provider("openai/m")
            .and_then(|p| p.requests.as_ref())
            .and_then(|r| r.remaining)
            .is_none(),
        "{s:?}"
    );

    // A good header among bad ones still counts.
    let mixed: &[(&str, &str)] = &[
        ("x-ratelimit-remaining-requests", "zero"),
        ("x-ratelimit-limit-requests", "60"),
    ];
    t.observe_headers("openai/m", mixed).unwrap();
    let s = t.stats().unwrap();
    assert_eq!(
        s.window("openai/m", "requests_per_minute")
            .unwrap()
            .observed_limit,
        Some(60)
    );
    assert!(t.try_acquire("openai/m", 1).unwrap().is_granted());

    assert!(matches!(
        t.observe_headers("", OPENAI_SAMPLE),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn report_limited_blocks_for_retry_after_seconds() {
    let t = private(r#"{"openai/m": {"rpm": 500}, "openai/n": {"rpm": 500}}"#);
    t.report_limited("openai/m", "2").unwrap();
    let wait = limited(t.try_acquire("openai/m", 1).unwrap());
    assert!(
        wait >= Duration::from_secs(1) && wait <= Duration::from_secs(2),
        "{wait:?}"
    );
    assert!(matches!(
        t.try_acquire_grant("openai/m", 1).unwrap(),
        GrantAttempt::Limited { .. }
    ));
    // Only that model.
    assert!(t.try_acquire("openai/n", 1).unwrap().is_granted());
    let s = t.stats().unwrap();
    let blocked = s.provider("openai/m").unwrap().blocked_for();
    assert!(
        blocked > Duration::from_secs(1) && blocked <= Duration::from_secs(2),
        "{s:?}"
    );
    assert!(s.provider("openai/n").is_none());

    // A Duration is passed as decimal seconds.
    t.report_limited("openai/n", Duration::from_millis(1500))
        .unwrap();
    let wait = limited(t.try_acquire("openai/n", 1).unwrap());
    assert!(
        wait > Duration::from_secs(1) && wait <= Duration::from_millis(1500),
        "{wait:?}"
    );
}

#[test]
fn report_limited_with_an_http_date_or_nothing() {
    let t = private(r#"{"openai/m": {"rpm": 500}, "openai/n": {"rpm": 500}}"#);
    let date = http_date_or_rfc3339(SystemTime::now() + Duration::from_secs(6), false);
    t.report_limited("openai/m", &date).unwrap();
    let wait = limited(t.try_acquire("openai/m", 1).unwrap());
    // The date has whole seconds: 5 to 6 s from now.
    assert!(
        wait > Duration::from_secs(4) && wait <= Duration::from_secs(6),
        "{date}: {wait:?}"
    );

    // No usable Retry-After: 1 second.
    for unknown in [
        RetryAfter::from(None),
        RetryAfter::from(""),
        RetryAfter::Unknown,
    ] {
        t.reset().unwrap();
        t.report_limited("openai/n", unknown).unwrap();
        let wait = limited(t.try_acquire("openai/n", 1).unwrap());
        assert!(
            wait > Duration::from_millis(500) && wait <= Duration::from_secs(1),
            "{unknown:?}: {wait:?}"
        );
    }
    assert!(matches!(t.report_limited("", "2"), Err(Error::Invalid(_))));
}

#[test]
fn input_and_output_tokens_are_counted_apart() {
    let t = private(r#"{"anthropic/m": {"itpm": 1000, "otpm": 100}}"#);
    let g = granted(t.try_acquire_io("anthropic/m", 900, 100).unwrap());
    assert_eq!(
        (
            g.model.as_str(),
            g.tokens,
            g.input_tokens(),
            g.output_tokens
        ),
        ("anthropic/m", 900, 900, 100)
    );
    match t.try_acquire_io("anthropic/m", 1, 1).unwrap() {
        GrantAttempt::Limited { retry_after } => assert!(!retry_after.is_zero()),
        other => panic!("{other:?}"),
    }
    t.settle_io(&g, 900, 10).unwrap(); // the answer was short: 90 output back
    granted(t.try_acquire_io("anthropic/m", 0, 90).unwrap());
    assert!(!t.try_acquire_io("anthropic/m", 0, 1).unwrap().is_granted());
    assert!(t
        .try_acquire_io("anthropic/m", 100, 0)
        .unwrap()
        .is_granted());

    let s = t.stats().unwrap();
    let i = s.window("anthropic/m", "input_tokens_per_minute").unwrap();
    let o = s.window("anthropic/m", "output_tokens_per_minute").unwrap();
    assert_eq!((i.current, i.limit), (1000, Some(1000)));
    assert_eq!((o.current, o.limit), (100, Some(100)));

    // More output than otpm can ever hold: never admissible.
    assert!(matches!(
        t.try_acquire_io("anthropic/m", 1, 101),
        Err(Error::TooLarge(_))
    ));
}

#[test]
fn plain_grants_are_input_tokens() {
    let t = private(r#"{"anthropic/m": {"itpm": 1000, "otpm": 100}}"#);
    // try_acquire_grant's tokens are input tokens, output 0.
    let g = granted(t.try_acquire_grant("anthropic/m", 600).unwrap());
    assert_eq!(g.output_tokens, 0);
    assert!(!t
        .try_acquire_io("anthropic/m", 401, 0)
        .unwrap()
        .is_granted());
    t.settle(&g, 500).unwrap();
    granted(t.try_acquire_io("anthropic/m", 500, 100).unwrap());
    // settle_io works on a plain grant too (granted output 0).
    t.reset().unwrap();
    let g = granted(t.try_acquire_grant("anthropic/m", 600).unwrap());
    t.settle_io(&g, 100, 40).unwrap();
    let s = t.stats().unwrap();
    assert_eq!(
        s.window("anthropic/m", "input_tokens_per_minute")
            .unwrap()
            .current,
        100
    );
    assert_eq!(
        s.window("anthropic/m", "output_tokens_per_minute")
            .unwrap()
            .current,
        40
    );
    // The granted counts are checked against the ticket.
    let g = granted(t.try_acquire_io("anthropic/m", 10, 20).unwrap());
    let edited = Grant {
        output_tokens: 21,
        ..g.clone()
    };
    assert!(matches!(t.settle_io(&edited, 1, 1), Err(Error::Invalid(_))));
    // Plain settle passes no output: it does not match a grant that has some.
    assert!(matches!(t.settle(&g, 1), Err(Error::Invalid(_))));
    t.settle_io(&g, 1, 1).unwrap();
}

#[test]
fn blocking_acquire_io_waits_and_times_out() {
    let t = private(
        r#"{"acme/m": {"windows": [{"unit": "output_tokens", "limit": 100, "seconds": 1}]}}"#,
    );
    let g = t
        .acquire_io("acme/m", 5, 100, Some(Duration::ZERO))
        .unwrap()
        .expect("room at first");
    assert_eq!((g.tokens, g.output_tokens), (5, 100));
    assert_eq!(
        t.acquire_io("acme/m", 5, 1, Some(Duration::from_millis(50)))
            .unwrap(),
        None
    );
    let start = std::time::Instant::now();
    t.acquire_io("acme/m", 5, 1, Some(Duration::from_secs(5)))
        .unwrap()
        .expect("the 1 s window frees up");
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn pick_takes_the_first_that_fits() {
    let t = private(r#"{"a/x": {"rpm": 1}, "b/y": {"rpm": 1}}"#);
    assert!(t.try_acquire("a/x", 1).unwrap().is_granted()); // a/x spent
    match t.pick(&["a/x", "b/y"], 100, 20).unwrap() {
        Pick::Granted {
            model,
            index,
            grant,
        } => {
            assert_eq!((model.as_str(), index), ("b/y", 1));
            assert_eq!(
                (grant.model.as_str(), grant.tokens, grant.output_tokens),
                ("b/y", 100, 20)
            );
            assert_ne!(grant.ticket, 0);
            t.settle_io(&grant, 50, 5).unwrap();
        }
        other => panic!("{other:?}"),
    }
    let s = t.stats().unwrap();
    assert_eq!(s.window("b/y", "requests_per_minute").unwrap().current, 1);
    // The first candidate wins when it fits (owned names work too).
    let t2 = private(r#"{"a/x": {"rpm": 1}, "b/y": {"rpm": 1}}"#);
    let names = vec!["a/x".to_string(), "b/y".to_string()];
    let p = t2.pick(&names, 1, 0).unwrap();
    assert!(p.is_granted());
    assert_eq!(
        (p.model(), p.index(), p.retry_after()),
        ("a/x", 0, Duration::ZERO)
    );
}

#[test]
fn pick_names_the_first_to_free_when_all_are_spent() {
    // b/y resets within 2 s, a/x within a minute: b/y frees first although
    // it comes second.
    let t = private(
        r#"{"a/x": {"rpm": 1},
            "b/y": {"windows": [{"unit": "requests", "limit": 1, "seconds": 2}]}}"#,
    );
    assert!(t.try_acquire("a/x", 1).unwrap().is_granted());
    assert!(t.try_acquire("b/y", 1).unwrap().is_granted());
    match t.pick(&["a/x", "b/y"], 1, 0).unwrap() {
        Pick::Limited {
            model,
            index,
            retry_after,
        } => {
            assert_eq!((model.as_str(), index), ("b/y", 1));
            assert!(
                !retry_after.is_zero() && retry_after <= Duration::from_millis(2100),
                "{retry_after:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // A 429 on a model also counts against it.
    let t = private(r#"{"a/x": {"rpm": 100}, "b/y": {"rpm": 100}}"#);
    t.report_limited("a/x", "30").unwrap();
    t.report_limited("b/y", "3").unwrap();
    let p = t.pick(&["a/x", "b/y"], 1, 0).unwrap();
    assert!(!p.is_granted());
    assert_eq!((p.model(), p.index()), ("b/y", 1));
    assert!(p.retry_after() > Duration::from_secs(2) && p.retry_after() <= Duration::from_secs(3));
}

#[test]
fn pick_errors() {
    let t = private(r#"{"a/x": {"tpm": 100}, "b/y": {"tpm": 200}}"#);
    assert!(matches!(
        t.pick(&["a/x", "b/y"], 201, 0),
        Err(Error::TooLarge(_))
    ));
    // Too large for one, fine for the other.
    let p = t.pick(&["a/x", "b/y"], 150, 0).unwrap();
    assert_eq!(p.model(), "b/y");
    assert!(matches!(t.pick::<&str>(&[], 1, 0), Err(Error::Invalid(_))));
    assert!(matches!(t.pick(&["a/x", ""], 1, 0), Err(Error::Invalid(_))));
    assert!(matches!(t.pick(&["a/\0x"], 1, 0), Err(Error::Invalid(_))));
}

#[test]
fn calendar_day_windows_show_their_zone() {
    let t = private(
        r#"{"gemini/m": {"rpm": 10, "windows": [{"unit": "requests", "limit": 3,
            "calendar_day": "America/Los_Angeles"}]}}"#,
    );
    for _ in 0..3 {
        assert!(t.try_acquire("gemini/m", 1).unwrap().is_granted());
    }
    let wait = limited(t.try_acquire("gemini/m", 1).unwrap());
    assert!(wait <= Duration::from_secs(25 * 3600), "{wait:?}");
    let s = t.stats().unwrap();
    let day = s
        .window("gemini/m", "requests_per_calendar_day")
        .unwrap_or_else(|| panic!("{s:?}"));
    assert_eq!(day.current, 3);
    assert_eq!(
        day.resets_at_midnight.as_deref(),
        Some("America/Los_Angeles")
    );
    assert_eq!(
        s.window("gemini/m", "requests_per_minute")
            .unwrap()
            .resets_at_midnight,
        None
    );
}

/// Removes the segment NAME (ratetrack::shm_remove) when dropped.
struct Segment(String);

impl Drop for Segment {
    fn drop(&mut self) {
        let _ = ratetrack::shm_remove(&self.0);
    }
}

#[test]
fn a_429_is_shared_through_shm() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let seg = Segment(format!("rust-provider-{}-{nanos}", std::process::id()));
    let config = format!(
        r#"{{"backend": "shm:{}", "builtin_tiers": false,
            "limits": {{"openai/m": {{"rpm": 500}}}}}}"#,
        seg.0
    );
    {
        let a = Tracker::open(&config).unwrap();
        let b = Tracker::open(&config).unwrap();
        assert!(b.try_acquire("openai/m", 1).unwrap().is_granted());
        a.report_limited("openai/m", "5").unwrap();
        let wait = limited(b.try_acquire("openai/m", 1).unwrap());
        assert!(
            wait > Duration::from_secs(3) && wait <= Duration::from_secs(5),
            "{wait:?}"
        );
        let s = b.stats().unwrap();
        assert_eq!(s.backend, format!("shm:{}", seg.0));
        assert!(
            s.provider("openai/m").unwrap().blocked_for_ms > 3000,
            "{s:?}"
        );
        // Headers observed through one are seen by the other too.
        let c = Tracker::open(&config).unwrap();
        c.observe_headers(
            "openai/m",
            &[
                ("x-ratelimit-limit-requests", "60"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "30s"),
            ],
        )
        .unwrap();
        assert_eq!(
            a.stats()
                .unwrap()
                .window("openai/m", "requests_per_minute")
                .unwrap()
                .observed_limit,
            Some(60)
        );
    }
    assert!(ratetrack::shm_list()
        .unwrap()
        .iter()
        .any(|s| s.name == seg.0));
}

/// `t` as an HTTP date ("Wed, 21 Oct 2026 07:28:00 GMT") or, with `rfc3339`,
/// as "2026-10-21T07:28:00Z" (whole seconds, UTC).
fn http_date_or_rfc3339(t: SystemTime, rfc3339: bool) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (hh, mm, ss) = (rem / 3600, rem / 60 % 60, rem % 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    if rfc3339 {
        return format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z");
    }
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {d:02} {} {y} {hh:02}:{mm:02}:{ss:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize]
    )
}

#[test]
fn http_date_helper_matches_the_rfc_example() {
    // RFC 9110's example date: 784111777 = Sun, 06 Nov 1994 08:49:37 GMT.
    let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
    assert_eq!(
        http_date_or_rfc3339(t, false),
        "Sun, 06 Nov 1994 08:49:37 GMT"
    );
    assert_eq!(http_date_or_rfc3339(t, true), "1994-11-06T08:49:37Z");
}

/// `record_tokens` books tokens to a request already counted: the token
/// windows grow, the request windows do not; past a limit it is still
/// recorded; it counts against the provider's remaining tokens.
#[test]
fn record_tokens_books_tokens_without_a_request() {
    let t = private(r#"{"acme/m": {"rpm": 10, "tpm": 100, "itpm": 1000, "otpm": 1000}}"#);
    assert!(t.try_acquire("acme/m", 0).unwrap().is_granted());
    t.record_tokens("acme/m", 30, 12).unwrap();
    let s = t.stats().unwrap();
    let current = |w: &str| s.window("acme/m", w).unwrap().current;
    assert_eq!(
        (
            current("requests_per_minute"),
            current("tokens_per_minute"),
            current("input_tokens_per_minute"),
            current("output_tokens_per_minute")
        ),
        (1, 42, 30, 12)
    );
    t.record_tokens("acme/m", 100, 0).unwrap(); // past the limit: still booked
    let s = t.stats().unwrap();
    assert_eq!(
        s.window("acme/m", "tokens_per_minute").unwrap().current,
        142
    );
    assert!(!t.try_acquire("acme/m", 1).unwrap().is_granted());
    assert!(matches!(t.record_tokens("", 1, 1), Err(Error::Invalid(_))));

    // The provider said 50 tokens remain: booking 50 leaves none.
    let p = private(r#"{"openai/m": {"rpm": 100, "tpm": 100000}}"#);
    p.observe_headers(
        "openai/m",
        [
            ("x-ratelimit-remaining-tokens", "50"),
            ("x-ratelimit-reset-tokens", "1m0s"),
        ],
    )
    .unwrap();
    p.record_tokens("openai/m", 50, 0).unwrap();
    assert!(!p.try_acquire("openai/m", 1).unwrap().is_granted());
}
