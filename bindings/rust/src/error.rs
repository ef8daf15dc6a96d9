//! The binding's error type: one variant per negative status code of the C API.

use std::fmt;

/// `RT_OK`: done / admitted.
pub const RT_OK: i32 = 0;
/// `RT_LIMITED`: not now (the "no" answer of `try_acquire`; not an error).
pub const RT_LIMITED: i32 = 1;
/// `RT_E_INVALID`: bad argument (empty model, NULL handle, ...).
pub const RT_E_INVALID: i32 = -1;
/// `RT_E_CONFIG`: malformed or inconsistent configuration, unknown tier.
pub const RT_E_CONFIG: i32 = -2;
/// `RT_E_TOO_LARGE`: the cost exceeds a limit outright; never admissible.
pub const RT_E_TOO_LARGE: i32 = -3;
/// `RT_E_BACKEND`: the shared store failed.
pub const RT_E_BACKEND: i32 = -4;
/// `RT_E_NOMEM`: out of memory.
pub const RT_E_NOMEM: i32 = -5;
/// `RT_E_INTERNAL`: a bug in libratetrack.
pub const RT_E_INTERNAL: i32 = -6;

/// An error from libratetrack or from loading it.
///
/// Each variant but [`Error::Load`] stands for one negative status code of the
/// C API and carries the library's detail message (`rt_last_error`, read on
/// the thread that made the failing call). The variant is always chosen from
/// the status code alone; the message is only for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// `RT_E_INVALID` (-1): bad argument, e.g. an empty model name or one
    /// containing a NUL byte, or a grant that `settle` does not accept (a
    /// ticket from another tracker, a forged ticket, a wrong token count).
    Invalid(String),
    /// `RT_E_CONFIG` (-2): malformed or inconsistent configuration, unknown
    /// key or unknown tier.
    Config(String),
    /// `RT_E_TOO_LARGE` (-3): the request exceeds a limit outright and can
    /// never be admitted (also what `wait_time` reports for "never").
    TooLarge(String),
    /// `RT_E_BACKEND` (-4): the shared store (shared memory, Redis) failed.
    Backend(String),
    /// `RT_E_NOMEM` (-5): out of memory.
    NoMem(String),
    /// `RT_E_INTERNAL` (-6) or an unknown status code: a bug in libratetrack.
    Internal(String),
    /// The library could not be loaded (every place tried is listed) or its
    /// version is not the one this binding was written for.
    Load(String),
}

impl Error {
    /// The error for a negative status `code`, with the detail `message`.
    /// Unknown codes (and the non-error codes 0 and 1, which should never
    /// reach here) become [`Error::Internal`] with the code in the message.
    pub fn from_code(code: i32, message: impl Into<String>) -> Error {
        let message = message.into();
        match code {
            RT_E_INVALID => Error::Invalid(message),
            RT_E_CONFIG => Error::Config(message),
            RT_E_TOO_LARGE => Error::TooLarge(message),
            RT_E_BACKEND => Error::Backend(message),
            RT_E_NOMEM => Error::NoMem(message),
            RT_E_INTERNAL => Error::Internal(message),
            other => Error::Internal(format!("unexpected status {other}: {message}")),
        }
    }

    /// The C status code of this error (`None` for [`Error::Load`]).
    pub fn code(&self) -> Option<i32> {
        match self {
            Error::Invalid(_) => Some(RT_E_INVALID),
            Error::Config(_) => Some(RT_E_CONFIG),
            Error::TooLarge(_) => Some(RT_E_TOO_LARGE),
            Error::Backend(_) => Some(RT_E_BACKEND),
            Error::NoMem(_) => Some(RT_E_NOMEM),
            Error::Internal(_) => Some(RT_E_INTERNAL),
            Error::Load(_) => None,
        }
    }

    /// The detail message.
    pub fn message(&self) -> &str {
        match self {
            Error::Invalid(m)
            | Error::Config(m)
            | Error::TooLarge(m)
            | Error::Backend(m)
            | Error::NoMem(m)
            | Error::Internal(m)
            | Error::Load(m) => m,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid argument",
            Error::Config(_) => "configuration error",
            Error::TooLarge(_) => "request too large",
            Error::Backend(_) => "backend error",
            Error::NoMem(_) => "out of memory",
            Error::Internal(_) => "internal error",
            Error::Load(_) => "cannot load libratetrack",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message().is_empty() {
            f.write_str(self.kind())
        } else {
            write!(f, "{}: {}", self.kind(), self.message())
        }
    }
}

impl std::error::Error for Error {}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
