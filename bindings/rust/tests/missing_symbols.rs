//! A libratetrack 0.1 build without rt_open_ex / rt_global_get_ex /
//! rt_stats_json_ex (an earlier build) is not the version this binding needs
//! and is refused at load.

mod common;

use ratetrack::{Error, Tracker};

#[test]
fn a_build_without_the_ex_functions_is_refused() {
    let lib = common::stand_in("old_ratetrack_0_1", 100, &[common::CORE]);
    match ratetrack::load(Some(&lib)) {
        Err(Error::Load(msg)) => {
            assert!(msg.contains("missing symbol rt_"), "{msg}");
            assert!(msg.contains("_ex"), "{msg}");
            assert!(msg.contains(lib.to_str().unwrap()), "{msg}");
        }
        other => panic!("expected a missing-symbol error, got {other:?}"),
    }
    assert!(matches!(Tracker::open(""), Err(Error::Load(_))));
}
