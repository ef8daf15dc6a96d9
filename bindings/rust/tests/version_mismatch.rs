//! A library of another major.minor is refused (own test binary: the load
//! outcome sticks for the process). The stand-in library is compiled here
//! with the C compiler that Rust itself links with.

use std::path::PathBuf;
use std::process::Command;

use ratetrack::Error;

#[test]
fn other_minor_version_is_refused() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let src = dir.join("fake_ratetrack.c");
    let lib = dir.join("libfake_ratetrack_0_2.so");
    std::fs::write(&src, "int rt_version_number(void) { return 203; }\n").unwrap();
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .expect("a C compiler (cc) to build the stand-in library");
    assert!(status.success());

    match ratetrack::load(Some(&lib)) {
        Err(Error::Load(msg)) => {
            assert!(msg.contains("0.2.3"), "{msg}");
            assert!(msg.contains("0.1"), "{msg}");
            assert!(msg.contains(lib.to_str().unwrap()), "{msg}");
        }
        other => panic!("expected a version mismatch, got {other:?}"),
    }
}
