//! The shared-memory segments of the `"shm:NAME"` backend
//! (`/dev/shm/ratetrack.NAME`): listing and removing them.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::library::{self, owned_string};

/// One segment in `/dev/shm`, as listed by [`shm_list`].
///
/// The fields from `layout_version` on are read from the segment's header:
/// they are `None` when the file is not readable by this user or is not a
/// libratetrack segment at all.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ShmSegment {
    /// The NAME of `"shm:NAME"`.
    pub name: String,
    /// The file, `/dev/shm/ratetrack.NAME`.
    pub path: String,
    /// The file's size in bytes.
    pub bytes: u64,
    /// Its permissions, in octal ("0600", "0640", "0660").
    pub mode: String,
    /// The user owning it.
    pub uid: u32,
    /// Whether this library can use it (a segment of its own layout).
    pub compatible: bool,
    /// The segment's layout version.
    #[serde(default)]
    pub layout_version: Option<u32>,
    /// The models stored in it.
    #[serde(default)]
    pub models: Option<u64>,
    /// Its model slots (`"shm_models"` when it was created).
    #[serde(default)]
    pub capacity: Option<u64>,
    /// The process that created it.
    #[serde(default)]
    pub creator_pid: Option<i32>,
    /// When it was created, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub created_unix_ms: Option<u64>,
    /// Why the header could not be read ("not readable by this user").
    #[serde(default)]
    pub error: Option<String>,
}

/// The libratetrack segments in `/dev/shm` (`rt_shm_list`), whatever
/// process or language created them; empty when there are none.
pub fn shm_list() -> Result<Vec<ShmSegment>> {
    let lib = library::get(None)?;
    // SAFETY: p is a valid out pointer.
    let text = owned_string(&lib, "rt_shm_list", |p| unsafe { (lib.shm_list)(p) })?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Internal(format!("unexpected segment list JSON ({e}): {text}")))
}

/// Removes the segment `name` (the NAME of `"shm:NAME"`; `rt_shm_remove`).
/// Processes that have it mapped keep using their mapping, so stop them
/// first or the budget splits in two. A bad name, or no such segment, is
/// [`Error::Invalid`]; failing to unlink it is [`Error::Backend`].
pub fn shm_remove(name: &str) -> Result<()> {
    let lib = library::get(None)?;
    let name = crate::tracker::c_string("segment name", name)?;
    // SAFETY: valid C string.
    let st = unsafe { (lib.shm_remove)(name.as_ptr()) };
    lib.check(st).map(drop)
}
