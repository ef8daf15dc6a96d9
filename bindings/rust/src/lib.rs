//! Rust binding for **libratetrack**, a rate-limit tracker for LLM APIs.
//!
//! The binding is a thin layer over the C API (`ratetrack.h`). It loads
//! `libratetrack.so.0` at run time with `libloading`, once per process, from
//! (in order) the path given to [`load`], the file named by the environment
//! variable `RATETRACK_LIBRARY`, or the system loader. Every call loads it
//! lazily if [`load`] was not called.
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
//! Errors: each negative status code is one [`Error`] variant; "limited" is
//! not an error but the [`Acquire::Limited`] answer. Threads: [`Tracker`] is
//! `Send + Sync` and every method takes `&self`.

mod error;
mod library;
mod stats;
mod tracker;

pub use error::{
    Error, Result, RT_E_BACKEND, RT_E_CONFIG, RT_E_INTERNAL, RT_E_INVALID, RT_E_NOMEM,
    RT_E_TOO_LARGE, RT_LIMITED, RT_OK,
};
pub use library::{
    load, status_string, version, Version, BINDING_MAJOR, BINDING_MINOR, ENV_VAR, SYSTEM_NAME,
};
pub use stats::{Stats, Window};
pub use tracker::{
    configure_global, global_stats, reset_global, Acquire, Grant, GrantAttempt, Tracker,
};

#[cfg(test)]
mod tests {
    use super::*;
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
    fn lookup_order_is_path_env_system() {
        let c = library::candidates(Some(Path::new("/a.so")), Some("/b.so"));
        let files: Vec<_> = c.iter().map(|(_, f)| f.as_str()).collect();
        assert_eq!(files, ["/a.so", "/b.so", "libratetrack.so.0"]);
        let c = library::candidates(None, Some(""));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].1, SYSTEM_NAME);
    }

    #[test]
    fn load_error_lists_every_place_tried() {
        let c = vec![
            (
                "explicit path \"/nonexistent/a.so\"".to_string(),
                "/nonexistent/a.so".to_string(),
            ),
            (
                "RATETRACK_LIBRARY=\"/nonexistent/b.so\"".to_string(),
                "/nonexistent/b.so".to_string(),
            ),
            (
                "system loader \"libratetrack-nonexistent.so.0\"".to_string(),
                "libratetrack-nonexistent.so.0".to_string(),
            ),
        ];
        let Err(Error::Load(msg)) = library::open_first(&c) else {
            panic!("expected a load error")
        };
        for (what, file) in &c {
            assert!(msg.contains(what.as_str()), "{msg}");
            // the loader's own message for each place follows its name
            assert!(msg.matches(file.as_str()).count() >= 2, "{msg}");
        }
    }
}
