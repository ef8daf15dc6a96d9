//! The shared-memory segments of the `"shm:NAME"` backend
//! (`/dev/shm/ratetrack.NAME`): listing and removing them.

use crate::error::{Error, Result};
use crate::json::{self, Fields, FromJson, Value};
use crate::library::{self, owned_string};

/// One segment in `/dev/shm`, as listed by [`shm_list`].
///
/// The fields from `layout_version` on are read from the segment's header:
/// they are `None` when the file is not readable by this user or is not a
/// libratetrack segment at all.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    pub layout_version: Option<u32>,
    /// The models stored in it.
    pub models: Option<u64>,
    /// Its model slots (`"shm_models"` when it was created).
    pub capacity: Option<u64>,
    /// The process that created it.
    pub creator_pid: Option<i32>,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_unix_ms: Option<u64>,
    /// Why the header could not be read ("not readable by this user").
    pub error: Option<String>,
}

/// The libratetrack segments in `/dev/shm` (`rt_shm_list`), whatever
/// process or language created them; empty when there are none.
pub fn shm_list() -> Result<Vec<ShmSegment>> {
    let lib = library::get(None)?;
    // SAFETY: p is a valid out pointer.
    let text = owned_string(&lib, "rt_shm_list", |p| unsafe { (lib.shm_list)(p) })?;
    json::from_str(&text)
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

impl FromJson for ShmSegment {
    fn from_json(v: &Value) -> std::result::Result<Self, String> {
        let f = Fields::of(v)?;
        Ok(ShmSegment {
            name: f.get("name")?,
            path: f.get("path")?,
            bytes: f.get("bytes")?,
            mode: f.get("mode")?,
            uid: f.get("uid")?,
            compatible: f.get("compatible")?,
            layout_version: f.get("layout_version")?,
            models: f.get("models")?,
            capacity: f.get("capacity")?,
            creator_pid: f.get("creator_pid")?,
            created_unix_ms: f.get("created_unix_ms")?,
            error: f.get("error")?,
        })
    }
}
