//! Prometheus metrics text of a private tracker, and listing / removing the
//! shared-memory segments of the "shm:NAME" backend.

use std::time::{SystemTime, UNIX_EPOCH};

use ratetrack::{shm_list, shm_remove, Error, Tracker};

/// A segment name no other test or run uses.
fn unique_name(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("rust-{what}-{}-{nanos}", std::process::id())
}

#[test]
fn metrics_text_counts_admitted_and_refused() {
    let model = "acme/metrics-m";
    let t = Tracker::open(&format!(
        r#"{{"builtin_tiers": false, "limits": {{"{model}": {{"rpm": 2}}}}}}"#
    ))
    .unwrap();
    assert!(t.try_acquire(model, 1).unwrap().is_granted());
    assert!(t.try_acquire(model, 1).unwrap().is_granted());
    assert!(!t.try_acquire(model, 1).unwrap().is_granted());

    let text = t.metrics_text().unwrap();
    assert!(
        text.contains(&format!("ratetrack_admitted_total{{model=\"{model}\"}} 2")),
        "{text}"
    );
    assert!(
        text.contains(&format!("ratetrack_refused_total{{model=\"{model}\"}} 1")),
        "{text}"
    );
    for metric in ["ratetrack_admitted_total", "ratetrack_refused_total"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# HELP {metric} "))),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l == format!("# TYPE {metric} counter")),
            "{text}"
        );
    }
    assert!(
        text.contains(&format!(
            "ratetrack_window_usage{{model=\"{model}\",window=\"requests_per_minute\"}} 2"
        )),
        "{text}"
    );
    assert!(text.ends_with('\n'), "{text}");
}

#[test]
fn shm_list_shows_a_segment_until_it_is_removed() {
    let name = unique_name("list");
    {
        let t = Tracker::open(&format!(
            r#"{{"backend": "shm:{name}", "builtin_tiers": false, "shm_models": 16,
                "limits": {{"acme/m": {{"rpm": 10}}}}}}"#
        ))
        .unwrap();
        assert!(t.try_acquire("acme/m", 1).unwrap().is_granted());
    }
    let before = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let segments = shm_list().unwrap();
    let seg = segments
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{name} not listed: {segments:?}"));
    assert_eq!(seg.path, format!("/dev/shm/ratetrack.{name}"));
    assert!(seg.bytes > 0, "{seg:?}");
    assert_eq!(seg.mode, "0600");
    assert!(seg.compatible, "{seg:?}");
    assert!(seg.layout_version.is_some(), "{seg:?}");
    assert_eq!(seg.models, Some(1));
    assert_eq!(seg.capacity, Some(16));
    assert_eq!(seg.creator_pid, Some(std::process::id() as i32));
    let created = seg.created_unix_ms.expect("created_unix_ms");
    assert!(created > 0 && created <= before, "{seg:?}");
    assert_eq!(seg.error, None);

    shm_remove(&name).unwrap();
    assert!(!shm_list().unwrap().iter().any(|s| s.name == name));
    assert!(!std::path::Path::new(&seg.path).exists());
    // Removing it again: no such segment.
    match shm_remove(&name) {
        Err(Error::Invalid(msg)) => assert!(msg.contains(&name), "{msg}"),
        other => panic!("expected Error::Invalid, got {other:?}"),
    }
}

#[test]
fn shm_remove_rejects_bad_names() {
    for bad in ["", ".hidden", "a/b", "has space", &"x".repeat(65)] {
        assert!(
            matches!(shm_remove(bad), Err(Error::Invalid(_))),
            "{bad:?} accepted"
        );
    }
    assert!(matches!(shm_remove("a\0b"), Err(Error::Invalid(_))));
}
