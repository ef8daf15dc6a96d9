//! Rust binding for **libratetrack**, a rate-limit tracker for LLM APIs.
//!
//! The binding is a thin layer over the C API (`ratetrack.h`). It loads
//! `libratetrack.so.0` at run time with `libloading`, once per process, from
//! (in order) the path given to [`load`], the file named by the environment
//! variable `RATETRACK_LIBRARY`, the system loader, or, with the `bundled`
//! feature, the copy its build script built ([`BUNDLED_LIBRARY`]). Every
//! call loads it lazily if [`load`] was not called.
//!
//! ```no_run
//! use ratetrack::{Acquire, Tracker};
//!
//! let t = Tracker::global(Some("tier1"))?;           // shared by the whole process
//! match t.try_acquire("openai/gpt-4o-mini", 1200)? {
//!     Acquire::Granted => { /* call the API */ }
//!     Acquire::Limited { retry_after } => std::thread::sleep(retry_after),
//! }
//! let s = t.stats()?;
//! println!("{:?}", s.window("openai/gpt-4o-mini", "requests_per_minute"));
//! # Ok::<(), ratetrack::Error>(())
//! ```
//!
//! An agent loop with provider truth: estimate, pick a model, call it,
//! settle to the real counts, feed the rate-limit headers back, report 429s.
//!
//! ```no_run
//! use ratetrack::{Pick, Tracker};
//! # struct Response { status: u16, headers: Vec<(String, String)>,
//! #                   input_tokens: u64, output_tokens: u64 }
//! # impl Response { fn header(&self, name: &str) -> Option<&str> {
//! #     self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()) } }
//! # fn call_llm(_model: &str, _prompt: &str, _max_tokens: u64) -> Response { unimplemented!() }
//!
//! let t = Tracker::global(None)?;
//! let models = ["anthropic/claude-sonnet-4-5", "openai/gpt-4o-mini"]; // by preference
//! let prompt = "Summarise the findings so far.";
//! let (input, max_tokens) = (prompt.len() as u64 / 3 + 1, 1024);    // estimate
//! loop {
//!     let grant = match t.pick(&models, input, max_tokens)? {
//!         Pick::Granted { grant, .. } => grant,
//!         Pick::Limited { model, retry_after, .. } => {
//!             eprintln!("every model is busy; {model} frees first in {retry_after:?}");
//!             std::thread::sleep(retry_after);
//!             continue;
//!         }
//!     };
//!     let response = call_llm(&grant.model, prompt, max_tokens);       // your HTTP client
//!     t.observe_headers(&grant.model, &response.headers)?;             // x-ratelimit-*, ...
//!     if response.status == 429 {
//!         t.report_limited(&grant.model, response.header("retry-after"))?;
//!         t.settle_io(&grant, 0, 0)?;           // refused: no tokens used
//!         continue;                             // pick again: another model may be free
//!     }
//!     t.settle_io(&grant, response.input_tokens, response.output_tokens)?;
//!     break;
//! }
//! # Ok::<(), ratetrack::Error>(())
//! ```
//!
//! Errors: each negative status code is one [`Error`] variant; "limited" is
//! not an error but the [`Acquire::Limited`] answer. Threads: [`Tracker`] is
//! `Send + Sync` and every method takes `&self`. Async code: [`AsyncTracker`]
//! has non-blocking forms of every call that can touch the network (on
//! `redis://`, a round trip), for any executor, with no runtime dependency.

mod async_tracker;
mod error;
mod json;
mod library;
mod shm;
mod stats;
mod tracker;

pub use async_tracker::{set_async_threads, AsyncTracker, Call, DEFAULT_ASYNC_THREADS};
pub use error::{
    Error, Result, RT_E_BACKEND, RT_E_CONFIG, RT_E_INTERNAL, RT_E_INVALID, RT_E_NOMEM,
    RT_E_TOO_LARGE, RT_LIMITED, RT_OK,
};
pub use library::{
    load, status_string, version, Version, BINDING_MAJOR, BINDING_MINOR, BUNDLED_LIBRARY, ENV_VAR,
    SYSTEM_NAME,
};
pub use shm::{shm_list, shm_remove, ShmSegment};
pub use stats::{ProviderModel, ProviderWindow, Stats, Window};
pub use tracker::{
    configure_global, global_metrics_text, global_stats, reset_global, Acquire, Grant,
    GrantAttempt, HeaderPair, Pick, RetryAfter, Tracker,
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    #[test]
    fn every_code_maps_to_its_own_error() {
        let cases = [
            (RT_E_INVALID, Error::Invalid("m".into())),
            (RT_E_CONFIG, Error::Config("m".into())),
            (RT_E_TOO_LARGE, Error::TooLarge("m".into())),
            (RT_E_BACKEND, Error::Backend("m".into())),
            (RT_E_NOMEM, Error::NoMem("m".into())),
            (RT_E_INTERNAL, Error::Internal("m".into())),
        ];
        for (code, want) in cases {
            let got = Error::from_code(code, "m");
            assert_eq!(got, want);
            assert_eq!(got.code(), Some(code));
            assert_eq!(got.message(), "m");
        }
        let unknown = Error::from_code(-42, "x");
        assert!(
            matches!(unknown, Error::Internal(ref m) if m.contains("-42")),
            "{unknown:?}"
        );
        assert_eq!(Error::Load("x".into()).code(), None);
    }

    #[test]
    fn display_names_the_kind_and_message() {
        assert_eq!(
            Error::Config("unknown key \"x\"".into()).to_string(),
            "configuration error: unknown key \"x\""
        );
        assert_eq!(Error::Backend(String::new()).to_string(), "backend error");
        let e: Box<dyn std::error::Error> = Box::new(Error::NoMem("m".into()));
        assert_eq!(e.to_string(), "out of memory: m");
    }

    #[test]
    fn version_check_compares_major_minor() {
        assert!(library::check_version(100, "x").is_ok()); // 0.1.0
        assert!(library::check_version(199, "x").is_ok()); // 0.1.99
        let e = library::check_version(200, "RATETRACK_LIBRARY=\"/l.so\"").unwrap_err(); // 0.2.0
        assert!(
            e.contains("0.2.0") && e.contains("0.1.x") && e.contains("/l.so"),
            "{e}"
        );
        let e = library::check_version(10100, "x").unwrap_err(); // 1.1.0
        assert!(e.contains("1.1.0"), "{e}");
        assert!(library::check_version(99, "x").is_err()); // 0.0.99
    }

    #[test]
    fn durations_become_decimal_seconds() {
        use std::time::Duration;
        let cases = [
            (Duration::ZERO, "0"),
            (Duration::from_secs(2), "2"),
            (Duration::from_millis(1500), "1.5"),
            (Duration::from_millis(1050), "1.05"),
            (Duration::from_millis(1), "0.001"),
            (Duration::from_nanos(1), "0.001"), // rounded up, never to 0
            (Duration::from_micros(2_000_400), "2.001"),
            (Duration::from_secs(86_400), "86400"),
        ];
        for (d, want) in cases {
            assert_eq!(tracker::decimal_seconds(d), want, "{d:?}");
        }
        assert_eq!(RetryAfter::from(None), RetryAfter::Unknown);
        assert_eq!(RetryAfter::from(Some("3")), RetryAfter::Header("3"));
        assert_eq!(RetryAfter::from(&"4".to_string()), RetryAfter::Header("4"));
        assert_eq!(
            RetryAfter::from(Duration::from_secs(1)),
            RetryAfter::After(Duration::from_secs(1))
        );
    }

    #[test]
    fn stats_parse_provider_truth_and_older_json() {
        let json = r#"{"tier": "tier1", "backend": "memory",
            "models": {"g/m": {
                "requests_per_minute": {"current": 2, "limit": 500, "remaining": 498,
                    "usage_percent": 0.4, "observed_limit": 60},
                "requests_per_calendar_day": {"current": 1, "limit": null, "remaining": null,
                    "usage_percent": null, "resets_at_midnight": "America/Los_Angeles"}}},
            "provider": {"g/m": {"blocked_for_ms": 1200,
                "requests": {"remaining": 0, "reset_in_ms": 29000, "limit": 60},
                "tokens": {"remaining": null, "reset_in_ms": null, "limit": 150000}}}}"#;
        let s: Stats = json::from_str(json).unwrap();
        let w = s.window("g/m", "requests_per_minute").unwrap();
        assert_eq!((w.limit, w.observed_limit), (Some(500), Some(60)));
        let d = s.window("g/m", "requests_per_calendar_day").unwrap();
        assert_eq!(d.resets_at_midnight.as_deref(), Some("America/Los_Angeles"));
        let p = s.provider("g/m").unwrap();
        assert_eq!(p.blocked_for(), std::time::Duration::from_millis(1200));
        let r = p.requests.as_ref().unwrap();
        assert_eq!(
            (r.remaining, r.reset_in(), r.limit),
            (Some(0), Some(std::time::Duration::from_secs(29)), Some(60))
        );
        let t = p.tokens.as_ref().unwrap();
        assert_eq!(
            (t.remaining, t.reset_in(), t.limit),
            (None, None, Some(150000))
        );
        assert!(p.input_tokens.is_none() && p.output_tokens.is_none());

        // Without the new keys (no report, no 429): defaults.
        let s: Stats = json::from_str(
            r#"{"tier": "t", "backend": "memory", "models": {"a/b": {"tokens_per_minute":
                {"current": 0, "limit": 5, "remaining": 5, "usage_percent": 0.0}}},
                "provider": {"a/b": {"blocked_for_ms": 10}}}"#,
        )
        .unwrap();
        let w = s.window("a/b", "tokens_per_minute").unwrap();
        assert_eq!(
            (w.observed_limit, w.resets_at_midnight.as_deref()),
            (None, None)
        );
        assert_eq!(s.provider("a/b").unwrap().requests, None);
        let s: Stats =
            json::from_str(r#"{"tier": "t", "backend": "memory", "models": {}}"#).unwrap();
        assert!(s.provider.is_empty());
    }

    #[test]
    fn lookup_order_is_path_env_system() {
        let c = library::candidates(Some(Path::new("/a.so")), Some(OsStr::new("/b.so")));
        let files: Vec<_> = c.iter().map(|(_, f)| f.to_str().unwrap()).collect();
        let mut want = vec!["/a.so", "/b.so", "libratetrack.so.0"];
        want.extend(BUNDLED_LIBRARY); // last, with the `bundled` feature
        assert_eq!(files, want);
        let c = library::candidates(None, Some(OsStr::new("")));
        assert_eq!(c.len(), 1 + BUNDLED_LIBRARY.iter().count());
        assert_eq!(c[0].1, SYSTEM_NAME);
        // A file name that is not UTF-8 is passed as it is, not made lossy.
        let odd = OsStr::from_bytes(b"/lib/r\xe9.so");
        let c = library::candidates(Some(Path::new(odd)), None);
        assert_eq!(c[0].1, odd);
    }

    /// With the `bundled` feature, the copy it built is a 0.1 library that
    /// loads when nothing before it does.
    #[cfg(feature = "bundled")]
    #[test]
    fn bundled_copy_loads_when_nothing_else_does() {
        let bundled = BUNDLED_LIBRARY.expect("set by the feature");
        assert!(Path::new(bundled).is_file(), "{bundled}");
        let mut c = library::candidates(None, None);
        c[0].1 = "libratetrack-nonexistent.so.0".into(); // as if not installed
        let lib = library::open_first(&c).unwrap_or_else(|e| panic!("{e}"));
        assert!(lib.origin.starts_with("bundled copy"), "{}", lib.origin);
        // SAFETY: a plain call.
        assert_eq!(
            unsafe { (lib.version_number)() } / 100,
            BINDING_MAJOR * 100 + BINDING_MINOR
        );
    }

    #[test]
    fn load_error_lists_every_place_tried() {
        let c = vec![
            (
                "explicit path \"/nonexistent/a.so\"".to_string(),
                "/nonexistent/a.so".into(),
            ),
            (
                "RATETRACK_LIBRARY=\"/nonexistent/b.so\"".to_string(),
                "/nonexistent/b.so".into(),
            ),
            (
                "system loader \"libratetrack-nonexistent.so.0\"".to_string(),
                "libratetrack-nonexistent.so.0".into(),
            ),
        ];
        let msg = match library::open_first(&c) {
            Err(Error::Load(msg)) => msg,
            _ => panic!("expected a load error"),
        };
        for (what, file) in &c {
            assert!(msg.contains(what.as_str()), "{msg}");
            // the loader's own message for each place follows its name
            assert!(msg.matches(file.to_str().unwrap()).count() >= 2, "{msg}");
        }
    }
}
