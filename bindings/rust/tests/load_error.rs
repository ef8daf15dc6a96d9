//! Loading failures (own test binary: it loads the library with a bad
//! explicit path and a bad RATETRACK_LIBRARY, which sticks for the process).

use std::path::Path;

use ratetrack::{Error, Tracker};

#[test]
fn bad_paths_name_every_place_tried() {
    std::env::set_var("RATETRACK_LIBRARY", "/nonexistent/env/libratetrack.so");
    let r = ratetrack::load(Some(Path::new("/nonexistent/explicit/libratetrack.so")));
    match r {
        Err(Error::Load(msg)) => {
            assert!(
                msg.contains("/nonexistent/explicit/libratetrack.so"),
                "{msg}"
            );
            assert!(
                msg.contains("RATETRACK_LIBRARY=\"/nonexistent/env/libratetrack.so\""),
                "{msg}"
            );
            assert!(msg.contains("libratetrack.so.0"), "{msg}");
            // Loaded once per process: later calls give the same error.
            assert_eq!(ratetrack::version().unwrap_err(), Error::Load(msg.clone()));
            assert!(matches!(Tracker::open(""), Err(Error::Load(_))));
            assert!(matches!(Tracker::global(None), Err(Error::Load(_))));
        }
        // Only if libratetrack is installed system-wide: then that one is used.
        Ok(v) => assert!(v.origin.contains("system loader"), "{v:?}"),
        Err(e) => panic!("expected a load error, got {e:?}"),
    }
}
