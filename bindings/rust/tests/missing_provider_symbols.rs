//! A libratetrack 0.1 build without the provider-truth functions (an earlier
//! build) is not the version this binding needs and is refused at load.

mod common;

use ratetrack::{Error, Tracker};

#[test]
fn a_build_without_provider_truth_is_refused() {
    let lib = common::stand_in(
        "pre_provider_ratetrack_0_1",
        100,
        &[common::CORE, common::EX, common::SHM],
    );
    match ratetrack::load(Some(&lib)) {
        Err(Error::Load(msg)) => {
            assert!(msg.contains("missing symbol rt_"), "{msg}");
            assert!(msg.contains("rt_try_acquire_io"), "{msg}");
            assert!(msg.contains(lib.to_str().unwrap()), "{msg}");
        }
        other => panic!("expected a missing-symbol error, got {other:?}"),
    }
    assert!(matches!(Tracker::open(""), Err(Error::Load(_))));
}
