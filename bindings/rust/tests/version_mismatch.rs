//! A library of another major.minor is refused.

mod common;

use ratetrack::Error;

#[test]
fn other_minor_version_is_refused() {
    let lib = common::stand_in("fake_ratetrack_0_2", 203, &[]);
    match ratetrack::load(Some(&lib)) {
        Err(Error::Load(msg)) => {
            assert!(msg.contains("0.2.3"), "{msg}");
            assert!(msg.contains("0.1"), "{msg}");
            assert!(msg.contains(lib.to_str().unwrap()), "{msg}");
        }
        other => panic!("expected a version mismatch, got {other:?}"),
    }
}
