//! A libratetrack 0.1 build with everything but rt_record_tokens (an earlier
//! build) is not the version this binding needs and is refused at load.

mod common;

use ratetrack::{Error, Tracker};

#[test]
fn a_build_without_record_tokens_is_refused() {
    let lib = common::stand_in(
        "pre_record_tokens_ratetrack_0_1",
        100,
        &[
            common::CORE,
            common::EX,
            common::SHM,
            common::PROVIDER,
            common::METRICS,
        ],
    );
    match ratetrack::load(Some(&lib)) {
        Err(Error::Load(msg)) => {
            assert!(msg.contains("missing symbol rt_record_tokens"), "{msg}");
            assert!(msg.contains(lib.to_str().unwrap()), "{msg}");
        }
        other => panic!("expected a missing-symbol error, got {other:?}"),
    }
    assert!(matches!(Tracker::open(""), Err(Error::Load(_))));
}
