//! Finding, loading and version-checking `libratetrack.so.0` at run time.

use std::ffi::{CStr, OsStr, OsString};
use std::os::raw::{c_char, c_int, c_void};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// The major version of the C API this binding was written for.
pub const BINDING_MAJOR: i32 = 0;
/// The minor version of the C API this binding was written for. Until 1.0
/// the ABI may change with the minor version, so major.minor must match.
pub const BINDING_MINOR: i32 = 1;

/// The environment variable naming the library file to load.
pub const ENV_VAR: &str = "RATETRACK_LIBRARY";
/// The name handed to the system loader.
pub const SYSTEM_NAME: &str = "libratetrack.so.0";
/// With the `bundled` feature, the portable library it built (a file in
/// Cargo's build directory), tried after the system loader; `None` without
/// the feature.
#[cfg(feature = "bundled")]
pub const BUNDLED_LIBRARY: Option<&str> = Some(env!("RATETRACK_BUNDLED_LIBRARY"));
/// With the `bundled` feature, the portable library it built (a file in
/// Cargo's build directory), tried after the system loader; `None` without
/// the feature.
#[cfg(not(feature = "bundled"))]
pub const BUNDLED_LIBRARY: Option<&str> = None;

/// Opaque `rt_tracker`.
#[repr(C)]
pub(crate) struct RawTracker {
    _private: [u8; 0],
}

pub(crate) type Handle = *mut RawTracker;

/// The loaded library and its resolved entry points (plain fn pointers, so
/// calls cost no lookup). The `Library` is kept so they stay valid.
pub(crate) struct Lib {
    pub version_number: unsafe extern "C" fn() -> c_int,
    pub version_string: unsafe extern "C" fn() -> *const c_char,
    pub status_string: unsafe extern "C" fn(c_int) -> *const c_char,
    pub last_error: unsafe extern "C" fn() -> *const c_char,
    pub free: unsafe extern "C" fn(*mut c_void),
    /// `rt_global_get_ex`: status code, handle in `*out`.
    pub global_get_ex: unsafe extern "C" fn(*const c_char, *mut Handle) -> c_int,
    pub global_configure: unsafe extern "C" fn(*const c_char) -> c_int,
    /// `rt_open_ex`: status code, handle in `*out`.
    pub open_ex: unsafe extern "C" fn(*const c_char, *mut Handle) -> c_int,
    pub configure: unsafe extern "C" fn(Handle, *const c_char) -> c_int,
    pub close: unsafe extern "C" fn(Handle),
    pub can_make: unsafe extern "C" fn(Handle, *const c_char, u64) -> c_int,
    pub record: unsafe extern "C" fn(Handle, *const c_char, u64) -> c_int,
    pub try_acquire: unsafe extern "C" fn(Handle, *const c_char, u64, *mut u64) -> c_int,
    pub settle: unsafe extern "C" fn(Handle, *const c_char, u64, u64, u64) -> c_int,
    pub wait_time: unsafe extern "C" fn(Handle, *const c_char, u64, *mut u64) -> c_int,
    pub reset: unsafe extern "C" fn(Handle) -> c_int,
    /// `rt_try_acquire_io(t, model, input, output, &retry_ms, &grant)`.
    pub try_acquire_io:
        unsafe extern "C" fn(Handle, *const c_char, u64, u64, *mut u64, *mut u64) -> c_int,
    /// `rt_settle_io(t, model, grant, granted_in, granted_out, actual_in, actual_out)`.
    pub settle_io: unsafe extern "C" fn(Handle, *const c_char, u64, u64, u64, u64, u64) -> c_int,
    /// `rt_pick(t, models, count, input, output, &picked, &retry_ms, &grant)`.
    pub pick: unsafe extern "C" fn(
        Handle,
        *const *const c_char,
        usize,
        u64,
        u64,
        *mut usize,
        *mut u64,
        *mut u64,
    ) -> c_int,
    /// `rt_observe_headers(t, model, names, values, count)`.
    pub observe_headers: unsafe extern "C" fn(
        Handle,
        *const c_char,
        *const *const c_char,
        *const *const c_char,
        usize,
    ) -> c_int,
    /// `rt_report_limited(t, model, retry_after)` (retry_after may be NULL).
    pub report_limited: unsafe extern "C" fn(Handle, *const c_char, *const c_char) -> c_int,
    /// `rt_stats_json_ex`: status code, owned string in `*json_out`.
    pub stats_json_ex: unsafe extern "C" fn(Handle, *mut *mut c_char) -> c_int,
    /// `rt_metrics_text(t, &text)` (t NULL: the global): owned string in `*text`.
    pub metrics_text: unsafe extern "C" fn(Handle, *mut *mut c_char) -> c_int,
    /// `rt_shm_list(&json)`: owned JSON array in `*json`.
    pub shm_list: unsafe extern "C" fn(*mut *mut c_char) -> c_int,
    /// `rt_shm_remove(name)`.
    pub shm_remove: unsafe extern "C" fn(*const c_char) -> c_int,
    /// `rt_record_tokens(t, model, input_tokens, output_tokens)`.
    pub record_tokens: unsafe extern "C" fn(Handle, *const c_char, u64, u64) -> c_int,
    /// Where the library was found (for messages).
    pub origin: String,
    _library: libloading::Library,
}

impl Lib {
    /// Resolves every entry point of `library`. The binding uses only the
    /// status-code variants `rt_open_ex`, `rt_global_get_ex` and
    /// `rt_stats_json_ex`, the provider-truth functions (`rt_try_acquire_io`,
    /// `rt_settle_io`, `rt_pick`, `rt_observe_headers`, `rt_report_limited`)
    /// the metrics and segment functions (`rt_metrics_text`,
    /// `rt_shm_list`, `rt_shm_remove`) and `rt_record_tokens`; a library
    /// without them is an older
    /// 0.1 build, not the version this binding was written for, and is refused.
    fn resolve(library: libloading::Library, origin: String) -> std::result::Result<Lib, String> {
        macro_rules! sym {
            ($name:literal) => {
                // SAFETY: the types above are those of ratetrack.h; the
                // pointer is copied out and `library` is kept alive in Lib.
                unsafe {
                    *library.get(concat!($name, "\0").as_bytes()).map_err(|e| {
                        format!(
                            "missing symbol {} (not the libratetrack build this binding \
                                 needs): {}",
                            $name,
                            with_sources(&e)
                        )
                    })?
                }
            };
        }
        Ok(Lib {
            version_number: sym!("rt_version_number"),
            version_string: sym!("rt_version_string"),
            status_string: sym!("rt_status_string"),
            last_error: sym!("rt_last_error"),
            free: sym!("rt_free"),
            global_get_ex: sym!("rt_global_get_ex"),
            global_configure: sym!("rt_global_configure"),
            open_ex: sym!("rt_open_ex"),
            configure: sym!("rt_configure"),
            close: sym!("rt_close"),
            can_make: sym!("rt_can_make"),
            record: sym!("rt_record"),
            try_acquire: sym!("rt_try_acquire"),
            settle: sym!("rt_settle"),
            wait_time: sym!("rt_wait_time"),
            reset: sym!("rt_reset"),
            stats_json_ex: sym!("rt_stats_json_ex"),
            try_acquire_io: sym!("rt_try_acquire_io"),
            settle_io: sym!("rt_settle_io"),
            pick: sym!("rt_pick"),
            observe_headers: sym!("rt_observe_headers"),
            report_limited: sym!("rt_report_limited"),
            metrics_text: sym!("rt_metrics_text"),
            shm_list: sym!("rt_shm_list"),
            shm_remove: sym!("rt_shm_remove"),
            record_tokens: sym!("rt_record_tokens"),
            origin,
            _library: library,
        })
    }

    /// The calling thread's last error message. Call it right after the
    /// failing call, on the same thread (Rust calls never switch threads).
    pub fn last_error(&self) -> String {
        // SAFETY: never NULL per the header; copied before the next call.
        unsafe { cstr_to_string((self.last_error)()) }
    }

    /// `Ok(status)` for RT_OK / RT_LIMITED (and other non-negative answers),
    /// else the error of that code with the thread's detail message.
    pub fn check(&self, status: c_int) -> Result<c_int> {
        if status >= 0 {
            Ok(status)
        } else {
            Err(Error::from_code(status, self.last_error()))
        }
    }
}

/// The caller-owned string that `call` put in its out pointer, copied and
/// freed with `rt_free`, or the error of its status code. `what` names the
/// C function for the message of an `RT_OK` without a string.
pub(crate) fn owned_string(
    lib: &Lib,
    what: &str,
    call: impl FnOnce(*mut *mut c_char) -> c_int,
) -> Result<String> {
    let mut p: *mut c_char = std::ptr::null_mut();
    let st = call(&mut p);
    if st < 0 && !p.is_null() {
        // SAFETY: an owned string (none is expected on error); freed once.
        unsafe { (lib.free)(p.cast()) };
    }
    lib.check(st)?;
    if p.is_null() {
        return Err(Error::Internal(format!(
            "{what} returned RT_OK without a string"
        )));
    }
    // SAFETY: p is a NUL-terminated string owned by us; freed once, here.
    unsafe {
        let s = cstr_to_string(p);
        (lib.free)(p.cast());
        Ok(s)
    }
}

/// Copies a NUL-terminated C string (NULL gives "").
pub(crate) unsafe fn cstr_to_string(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// Where to look, in order: the explicit path, then `$RATETRACK_LIBRARY`,
/// then the system loader name, then the `bundled` feature's copy. Each entry
/// is (description, file name); the file name is kept as the OS gave it (a
/// file name need not be UTF-8).
pub(crate) fn candidates(explicit: Option<&Path>, env: Option<&OsStr>) -> Vec<(String, OsString)> {
    let mut out = Vec::new();
    if let Some(p) = explicit {
        out.push((format!("explicit path {p:?}"), p.as_os_str().to_owned()));
    }
    if let Some(e) = env.filter(|e| !e.is_empty()) {
        out.push((format!("{ENV_VAR}={e:?}"), e.to_owned()));
    }
    out.push((format!("system loader {SYSTEM_NAME:?}"), SYSTEM_NAME.into()));
    if let Some(b) = BUNDLED_LIBRARY {
        out.push((format!("bundled copy {b:?}"), b.into()));
    }
    out
}

/// Refuses a library path with a NUL byte: the loader would stop at it and
/// load another file (the C string ends there).
pub(crate) fn check_path(path: &Path) -> Result<()> {
    if has_nul(path.as_os_str()) {
        return Err(Error::Invalid(format!(
            "library path {path:?} contains a NUL byte"
        )));
    }
    Ok(())
}

#[cfg(unix)]
fn has_nul(s: &OsStr) -> bool {
    use std::os::unix::ffi::OsStrExt;
    s.as_bytes().contains(&0)
}

#[cfg(not(unix))]
fn has_nul(s: &OsStr) -> bool {
    s.to_string_lossy().contains('\0')
}

/// Checks the loaded library's `rt_version_number()` against the binding's
/// major.minor (number / 100, e.g. 0.1.x = 1).
pub(crate) fn check_version(number: i32, origin: &str) -> std::result::Result<(), String> {
    let want = BINDING_MAJOR * 100 + BINDING_MINOR;
    if number / 100 == want {
        Ok(())
    } else {
        Err(format!(
            "{origin} is libratetrack {}.{}.{} but this binding needs {BINDING_MAJOR}.{BINDING_MINOR}.x \
             (major.minor must match before 1.0)",
            number / 10000,
            number / 100 % 100,
            number % 100
        ))
    }
}

/// An error and its chain of causes (libloading puts dlerror() in `source`).
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Tries each candidate in order; the first that loads is used (and must have
/// the right version and every symbol). Otherwise the error lists every place
/// tried with the loader's message for each.
pub(crate) fn open_first(candidates: &[(String, OsString)]) -> Result<Lib> {
    let mut tried = Vec::new();
    for (what, file) in candidates {
        // SAFETY: loading runs the library's initialisers; libratetrack's are
        // benign. This is the inherent risk of any FFI loader.
        match unsafe { libloading::Library::new(file) } {
            Ok(library) => {
                // The version first: another version may lack our symbols.
                // SAFETY: rt_version_number's type per ratetrack.h; a plain call.
                let number = unsafe {
                    let f: libloading::Symbol<unsafe extern "C" fn() -> c_int> = library
                        .get(b"rt_version_number\0")
                        .map_err(|e| Error::Load(format!("{what}: {}", with_sources(&e))))?;
                    f()
                };
                check_version(number, what).map_err(Error::Load)?;
                return Lib::resolve(library, what.clone())
                    .map_err(|e| Error::Load(format!("{what}: {e}")));
            }
            Err(e) => tried.push(format!("{what}: {}", with_sources(&e))),
        }
    }
    Err(Error::Load(format!(
        "libratetrack not found; tried {}",
        tried.join("; ")
    )))
}

/// The outcome of the one attempt to load (library or error), once made.
static LIB: Mutex<Option<std::result::Result<Arc<Lib>, Error>>> = Mutex::new(None);

/// The process-wide library, loading it on first use (explicit `path`, then
/// the environment, then the system loader, then the bundled copy). Later calls return the same
/// library (or the same error) whatever `path` they pass.
pub(crate) fn get(path: Option<&Path>) -> Result<Arc<Lib>> {
    if let Some(p) = path {
        check_path(p)?; // refused whether or not a library is loaded already
    }
    // A panic cannot leave the slot half-written: it is set in one move.
    let mut slot = LIB.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    slot.get_or_insert_with(|| {
        let env = std::env::var_os(ENV_VAR);
        open_first(&candidates(path, env.as_deref()))
            .map(Arc::new)
            .map_err(|e| match e {
                Error::Load(m)
                    if m.starts_with("libratetrack not found")
                        && env.as_deref().map_or(true, OsStr::is_empty) =>
                {
                    Error::Load(format!("{m} ({ENV_VAR} is not set)"))
                }
                other => other,
            })
    })
    .clone()
}

/// The library's version, as reported by the loaded `libratetrack`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// `rt_version_number()`: major * 10000 + minor * 100 + patch.
    pub number: i32,
    /// `rt_version_string()`: "MAJOR.MINOR.PATCH".
    pub string: String,
    /// Where the library was found ("explicit path ...", "RATETRACK_LIBRARY=...",
    /// "system loader ..." or "bundled copy ...").
    pub origin: String,
}

/// Loads libratetrack now (it is otherwise loaded lazily by the first call)
/// and returns its version.
///
/// `path` is tried first, then the file named by `RATETRACK_LIBRARY`, then
/// `libratetrack.so.0` through the system loader, then (with the `bundled`
/// feature) [`BUNDLED_LIBRARY`]. The library is loaded once
/// per process: once loading has been attempted, `path` is ignored and the
/// first outcome (library or error) is returned again. A library whose
/// major.minor differs from the binding's (0.1) is refused with
/// [`Error::Load`]; a `path` with a NUL byte with [`Error::Invalid`].
pub fn load(path: Option<&Path>) -> Result<Version> {
    let lib = get(path)?;
    // SAFETY: plain calls; the version string is static.
    unsafe {
        Ok(Version {
            number: (lib.version_number)(),
            string: cstr_to_string((lib.version_string)()),
            origin: lib.origin.clone(),
        })
    }
}

/// The library's version (loading it if needed).
pub fn version() -> Result<Version> {
    load(None)
}

/// The library's static description of a status code (any code).
pub fn status_string(code: i32) -> Result<String> {
    let lib = get(None)?;
    // SAFETY: never NULL, static.
    Ok(unsafe { cstr_to_string((lib.status_string)(code)) })
}
