//! Stand-in libraries for the load tests: a shared object that answers
//! `rt_version_number` with a chosen version and exports the given `rt_`
//! symbols as empty stubs, compiled here with the C compiler Rust links with.
//! Each load test is its own test binary, because the load outcome sticks
//! for the process.

#![allow(dead_code)] // each test binary uses part of this

use std::path::PathBuf;
use std::process::Command;

/// The C API of the first 0.1 builds.
pub const CORE: &[&str] = &[
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
];
/// Added next: the status-returning forms, and the blocking acquire.
pub const EX: &[&str] = &[
    "rt_open_ex",
    "rt_global_get_ex",
    "rt_stats_json_ex",
    "rt_acquire",
];
/// Added with the shared-memory backend.
pub const SHM: &[&str] = &["rt_shm_list", "rt_shm_remove"];
/// Added with provider truth.
pub const PROVIDER: &[&str] = &[
    "rt_try_acquire_io",
    "rt_settle_io",
    "rt_pick",
    "rt_observe_headers",
    "rt_report_limited",
];

/// Added with metrics.
pub const METRICS: &[&str] = &["rt_metrics_text"];
/// Added for callback-style frameworks (issue #26).
pub const RECORD_TOKENS: &[&str] = &["rt_record_tokens"];

/// Builds `lib<tag>.so` answering `version` (major*10000 + minor*100 +
/// patch) and exporting every symbol of `groups` as a stub.
pub fn stand_in(tag: &str, version: u32, groups: &[&[&str]]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let src = dir.join(format!("{tag}.c"));
    let lib = dir.join(format!("lib{tag}.so"));
    let mut c = format!("int rt_version_number(void) {{ return {version}; }}\n");
    for name in groups.iter().flat_map(|g| g.iter()) {
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
    lib
}
