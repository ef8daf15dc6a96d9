//! A libratetrack 0.1 build with the provider-truth functions but without
//! rt_metrics_text / rt_shm_list / rt_shm_remove (an earlier build) is not
//! the version this binding needs and is refused at load (own test binary:
//! the load outcome sticks for the process). The stand-in library has every
//! other symbol, as stubs.

use std::path::PathBuf;
use std::process::Command;

use ratetrack::{Error, Tracker};

const OLD_SYMBOLS: &[&str] = &[
    "rt_version_string",
    "rt_status_string",
    "rt_last_error",
    "rt_free",
    "rt_global_get",
    "rt_global_configure",
    "rt_open",
    "rt_configure",
    "rt_close",
    "rt_can_make",
    "rt_record",
    "rt_try_acquire",
    "rt_try_acquire_grant",
    "rt_settle",
    "rt_wait_time",
    "rt_reset",
    "rt_stats_json",
    "rt_open_ex",
    "rt_global_get_ex",
    "rt_stats_json_ex",
    "rt_acquire",
    "rt_try_acquire_io",
    "rt_settle_io",
    "rt_pick",
    "rt_observe_headers",
    "rt_report_limited",
];

#[test]
fn a_build_without_metrics_and_shm_functions_is_refused() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let src = dir.join("pre_metrics_ratetrack.c");
    let lib = dir.join("libpre_metrics_ratetrack_0_1.so");
    let mut c = String::from("int rt_version_number(void) { return 100; }\n");
    for name in OLD_SYMBOLS {
        c.push_str(&format!("void {name}(void) {{}}\n"));
    }
    std::fs::write(&src, c).unwrap();
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .expect("a C compiler (cc) to build the stand-in library");
    assert!(status.success());

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
