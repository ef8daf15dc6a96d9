//! A libratetrack 0.1 build with the provider-truth functions but without
//! rt_metrics_text / rt_shm_list / rt_shm_remove (an earlier build) is not
//! the version this binding needs and is refused at load.

mod common;

use ratetrack::{Error, Tracker};

#[test]
fn a_build_without_metrics_and_shm_functions_is_refused() {
    let lib = common::stand_in(
        "pre_metrics_ratetrack_0_1",
        100,
        &[common::CORE, common::EX, common::PROVIDER],
    );
    match ratetrack::load(Some(&lib)) {
        Err(Error::Load(msg)) => {
            assert!(msg.contains("missing symbol rt_metrics_text"), "{msg}");
            assert!(msg.contains(lib.to_str().unwrap()), "{msg}");
        }
        other => panic!("expected a missing-symbol error, got {other:?}"),
    }
    assert!(matches!(Tracker::open(""), Err(Error::Load(_))));
    assert!(matches!(ratetrack::shm_list(), Err(Error::Load(_))));
}
