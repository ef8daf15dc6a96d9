//! Trackers: the global one and private ones, over the C handles.

use std::ffi::CString;
use std::fmt;
use std::mem::MaybeUninit;
use std::os::raw::{c_char, c_int};
use std::ptr::{self, NonNull};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result, RT_E_TOO_LARGE, RT_LIMITED};
use crate::library::{self, owned_string, Handle, Lib, RawTracker};
use crate::stats::Stats;

/// `RT_WAIT_NEVER`: the request can never be admitted.
const WAIT_NEVER: u64 = u64::MAX;

/// The answer of [`Tracker::try_acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// Admitted and recorded.
    Granted,
    /// Not now; nothing recorded. `retry_after` (never zero) is how long
    /// until the same request would fit, as far as the tracker knows now.
    Limited {
        /// How long to wait before trying again.
        retry_after: Duration,
    },
}

impl Acquire {
    /// Whether the request was admitted.
    pub fn is_granted(&self) -> bool {
        matches!(self, Acquire::Granted)
    }

    /// The wait suggested by a refusal (zero when granted).
    pub fn retry_after(&self) -> Duration {
        match self {
            Acquire::Granted => Duration::ZERO,
            Acquire::Limited { retry_after } => *retry_after,
        }
    }
}

/// An admitted request that can later be settled to its real token count
/// with [`Tracker::settle`] (or [`Tracker::settle_io`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The model the grant is for.
    pub model: String,
    /// The library's opaque ticket (non-zero).
    pub ticket: u64,
    /// The tokens the grant was acquired with (the estimate). These are the
    /// input tokens: plain `tokens` count as input (see `ratetrack.h`).
    pub tokens: u64,
    /// The output tokens the grant was acquired with (`max_tokens`; 0 for a
    /// grant from [`Tracker::try_acquire_grant`] / [`Tracker::acquire`]).
    pub output_tokens: u64,
}

impl Grant {
    /// The input tokens the grant was acquired with (same as `tokens`).
    pub fn input_tokens(&self) -> u64 {
        self.tokens
    }
}

/// The answer of [`Tracker::try_acquire_grant`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantAttempt {
    /// Admitted and recorded; settle the grant when the real count is known.
    Granted(Grant),
    /// Not now; nothing recorded.
    Limited {
        /// How long to wait before trying again (never zero).
        retry_after: Duration,
    },
}

impl GrantAttempt {
    /// Whether the request was admitted.
    pub fn is_granted(&self) -> bool {
        matches!(self, GrantAttempt::Granted(_))
    }

    /// The wait suggested by a refusal (zero when granted).
    pub fn retry_after(&self) -> Duration {
        match self {
            GrantAttempt::Granted(_) => Duration::ZERO,
            GrantAttempt::Limited { retry_after } => *retry_after,
        }
    }
}

/// The answer of [`Tracker::pick`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// The first candidate that could take the request now: admitted and
    /// recorded on it.
    Granted {
        /// The model chosen (also `grant.model`).
        model: String,
        /// Its index in the candidates.
        index: usize,
        /// The grant, to settle once the real counts are known.
        grant: Grant,
    },
    /// No candidate can take it now; nothing recorded. `model` / `index` is
    /// the candidate that frees up first, after `retry_after` (never zero).
    Limited {
        /// The candidate that frees up first.
        model: String,
        /// Its index in the candidates.
        index: usize,
        /// How long until it would fit.
        retry_after: Duration,
    },
}

impl Pick {
    /// Whether a candidate admitted the request.
    pub fn is_granted(&self) -> bool {
        matches!(self, Pick::Granted { .. })
    }

    /// The model chosen, or the one that frees up first.
    pub fn model(&self) -> &str {
        match self {
            Pick::Granted { model, .. } | Pick::Limited { model, .. } => model,
        }
    }

    /// The index of [`model`](Self::model) in the candidates.
    pub fn index(&self) -> usize {
        match self {
            Pick::Granted { index, .. } | Pick::Limited { index, .. } => *index,
        }
    }

    /// The wait suggested by a refusal (zero when granted).
    pub fn retry_after(&self) -> Duration {
        match self {
            Pick::Granted { .. } => Duration::ZERO,
            Pick::Limited { retry_after, .. } => *retry_after,
        }
    }
}

/// The `Retry-After` of a 429, for [`Tracker::report_limited`]: the header's
/// text, a [`Duration`], or unknown (the library then assumes 1 second).
///
/// Converts from `&str` / `&String` (the header as sent: delay seconds
/// `"30"`, `"1.5"` or an HTTP date), `Option<&str>` (`None`: unknown) and
/// [`Duration`] (passed as decimal seconds, rounded up to the millisecond).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetryAfter<'a> {
    /// No usable `Retry-After` header: the library assumes 1 second.
    #[default]
    Unknown,
    /// The header's value, as sent.
    Header(&'a str),
    /// A delay.
    After(Duration),
}

impl<'a> From<&'a str> for RetryAfter<'a> {
    fn from(header: &'a str) -> Self {
        RetryAfter::Header(header)
    }
}

impl<'a> From<&'a String> for RetryAfter<'a> {
    fn from(header: &'a String) -> Self {
        RetryAfter::Header(header)
    }
}

impl<'a> From<Option<&'a str>> for RetryAfter<'a> {
    fn from(header: Option<&'a str>) -> Self {
        header.map_or(RetryAfter::Unknown, RetryAfter::Header)
    }
}

impl From<Duration> for RetryAfter<'_> {
    fn from(delay: Duration) -> Self {
        RetryAfter::After(delay)
    }
}

/// A delay as the decimal seconds of a `Retry-After` header ("2", "1.5",
/// "0.001"), rounded up to the millisecond.
pub(crate) fn decimal_seconds(delay: Duration) -> String {
    // Rounded up (u128: no overflow even for Duration::MAX).
    let ms = (delay.as_nanos() + 999_999) / 1_000_000;
    let (secs, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        secs.to_string()
    } else {
        let text = format!("{secs}.{frac:03}");
        text.trim_end_matches('0').to_string()
    }
}

/// One response header for [`Tracker::observe_headers`]: a `(name, value)`
/// pair, or a reference to one, of anything that is bytes (`&str`,
/// `String`, and also `http::HeaderName` / `http::HeaderValue`, so an
/// `&http::HeaderMap` can be passed as is).
pub trait HeaderPair {
    /// The header's name.
    fn name(&self) -> &[u8];
    /// The header's value.
    fn value(&self) -> &[u8];
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>> HeaderPair for (K, V) {
    fn name(&self) -> &[u8] {
        self.0.as_ref()
    }
    fn value(&self) -> &[u8] {
        self.1.as_ref()
    }
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>> HeaderPair for &(K, V) {
    fn name(&self) -> &[u8] {
        self.0.as_ref()
    }
    fn value(&self) -> &[u8] {
        self.1.as_ref()
    }
}

/// A header name or value as a C string; `Ok(None)` when it is not UTF-8
/// (a malformed header, skipped as the library skips its own: an HTTP stack
/// may pass a server's obs-text bytes through); [`Error::Invalid`] for a NUL
/// byte, which C would cut the text short at (no HTTP stack delivers one).
fn header_c_string(what: &str, bytes: &[u8]) -> Result<Option<CString>> {
    if bytes.contains(&0) {
        return Err(Error::Invalid(format!(
            "header {what} {:?} contains a NUL byte",
            String::from_utf8_lossy(bytes)
        )));
    }
    if std::str::from_utf8(bytes).is_err() {
        return Ok(None);
    }
    Ok(CString::new(bytes).ok())
}

/// A rate-limit tracker: the process-wide global one ([`Tracker::global`])
/// or a private one ([`Tracker::open`]).
///
/// A `Tracker` is `Send + Sync`: share it between threads by reference or in
/// an `Arc`; every method takes `&self` and the C library is thread-safe.
/// Dropping a private tracker closes it; dropping a global handle does
/// nothing (the global lives as long as the process). Each tracker keeps the
/// loaded library alive.
pub struct Tracker {
    lib: Arc<Lib>,
    handle: NonNull<RawTracker>,
    global: bool,
}

// SAFETY: libratetrack is thread-safe for every call on a handle except
// rt_close, which only Drop calls, and Drop has exclusive ownership.
unsafe impl Send for Tracker {}
unsafe impl Sync for Tracker {}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("handle", &self.handle)
            .field("global", &self.global)
            .finish()
    }
}

/// The one check of every argument string passed to C: a `&str` is UTF-8
/// already, so only a NUL byte is refused ([`Error::Invalid`]): the C API
/// would stop at it (`"a/b\0c"` would be `"a/b"`).
pub(crate) fn c_string(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| nul_error(what, s))
}

/// The error of a string with a NUL byte, the same from [`c_string`] and
/// [`with_c_str`].
fn nul_error(what: &str, s: &str) -> Error {
    Error::Invalid(format!("{what} {s:?} contains a NUL byte"))
}

/// The stack buffer of [`with_c_str`], in 8-byte words: names of up to 255
/// bytes (every provider's model names are far shorter).
const STACK_WORDS: usize = 32;

/// Whether one of the 8 bytes of `w` is zero (exact: the classic bit trick
/// can only flag a wrong byte above a real zero one).
fn has_zero_byte(w: u64) -> bool {
    w.wrapping_sub(0x0101_0101_0101_0101) & !w & 0x8080_8080_8080_8080 != 0
}

/// The last `b.len() % 8` bytes of `b` as a little-endian value, zero above
/// them, read with at most two loads that may overlap (no byte loop).
fn tail_word(b: &[u8]) -> u64 {
    let n = b.len();
    let r = n % 8;
    if r == 0 {
        0
    } else if n >= 8 {
        // The 8 bytes ending at the end; the tail is their top r bytes.
        u64::from_le_bytes(b[n - 8..].try_into().unwrap()) >> (8 * (8 - r))
    } else if r >= 4 {
        let lo = u32::from_le_bytes(b[..4].try_into().unwrap());
        let hi = u32::from_le_bytes(b[r - 4..r].try_into().unwrap());
        u64::from(lo) | u64::from(hi) << (8 * (r - 4))
    } else if r >= 2 {
        let lo = u16::from_le_bytes(b[..2].try_into().unwrap());
        let hi = u16::from_le_bytes(b[r - 2..r].try_into().unwrap());
        u64::from(lo) | u64::from(hi) << (8 * (r - 2))
    } else {
        u64::from(b[0])
    }
}

/// Calls `call` with `s` as a NUL-terminated C string that lives for the
/// call, after the check of [`c_string`] (a NUL byte: the same
/// [`Error::Invalid`], and `call` is not made). For the model name of the
/// hot calls: a `CString` is an allocation and a free per call, most of
/// what the binding added to the C call (about 20 of 26 ns on the project's
/// machine). The name is copied into a buffer on the stack a whole 8-byte
/// word at a time, because the library reads it at once, a word at a time,
/// and a word load that spans several narrower stores made just before
/// waits for them (a byte-wise copy into a stack buffer measured slower
/// than the `CString`). Longer names take a `CString`.
#[inline]
pub(crate) fn with_c_str<R>(
    what: &str,
    s: &str,
    call: impl FnOnce(*const c_char) -> R,
) -> Result<R> {
    let b = s.as_bytes();
    if b.len() >= STACK_WORDS * 8 {
        let c = c_string(what, s)?;
        return Ok(call(c.as_ptr()));
    }
    let mut buf = [MaybeUninit::<u64>::uninit(); STACK_WORDS];
    let full = b.len() / 8;
    for (slot, chunk) in buf.iter_mut().zip(b.chunks_exact(8)) {
        let w = u64::from_ne_bytes(chunk.try_into().unwrap());
        // Checked word by word, with an exit: the loop stays one 8-byte
        // load and store a word (a plain copy loop is compiled to a call
        // of memcpy, whose narrower stores the library's loads then wait for).
        if has_zero_byte(w) {
            return Err(nul_error(what, s));
        }
        *slot = MaybeUninit::new(w);
    }
    let tail = tail_word(b);
    // The bytes past the name are 0xff for the check.
    if has_zero_byte(tail | u64::MAX << (8 * (b.len() % 8))) {
        return Err(nul_error(what, s));
    }
    // The word with the terminator: the tail's bytes, then zeros.
    buf[full] = MaybeUninit::new(tail.to_le());
    // The words up to and including buf[full] are written: the name and its
    // terminator, and the rest of the terminator's word, so a reader that
    // loads whole words finds them all initialised.
    Ok(call(buf.as_ptr().cast::<c_char>()))
}

/// [`c_string`] for a configuration: a NUL byte is [`Error::Config`], as
/// every other problem with a configuration is.
fn config_c_string(config: &str) -> Result<CString> {
    CString::new(config)
        .map_err(|_| Error::Config("the configuration text contains a NUL byte".into()))
}

/// The stats of `h` (NULL: the global) through `rt_stats_json_ex`, parsed.
/// `Ok(None)` for the JSON text `null` (the global does not exist). The error
/// kind is the status code's.
fn stats_of(lib: &Lib, h: *mut RawTracker) -> Result<Option<Stats>> {
    // SAFETY: h is a live handle or NULL (the global); p is a valid out pointer.
    let text = owned_string(lib, "rt_stats_json_ex", |p| unsafe {
        (lib.stats_json_ex)(h, p)
    })?;
    crate::json::from_str::<Option<Stats>>(&text)
        .map_err(|e| Error::Internal(format!("unexpected stats JSON ({e}): {text}")))
}

/// The Prometheus text of `h` (NULL: the global) through `rt_metrics_text`.
fn metrics_of(lib: &Lib, h: *mut RawTracker) -> Result<String> {
    // SAFETY: h is a live handle or NULL (the global); p is a valid out pointer.
    owned_string(lib, "rt_metrics_text", |p| unsafe {
        (lib.metrics_text)(h, p)
    })
}

/// The handle set by a successful `rt_open_ex` / `rt_global_get_ex`, or the
/// error of its status code.
fn handle_from(lib: &Lib, what: &str, st: c_int, h: Handle) -> Result<NonNull<RawTracker>> {
    lib.check(st)?;
    NonNull::new(h)
        .ok_or_else(|| Error::Internal(format!("{what} returned RT_OK without a handle")))
}

impl Tracker {
    /// The process-wide global tracker, created on first use and shared by
    /// every caller in the process (whatever their language, for one loaded
    /// copy of the library).
    ///
    /// `tier`: `None` keeps the current tier (or, on creation, uses
    /// `RATETRACK_TIER`, the configuration's tier, else "tier1"); `Some(t)`
    /// applies tier `t` ("tier1", or "openai=tier2,anthropic=tier1").
    /// Unknown tier or bad configuration: [`Error::Config`]; the error is
    /// always the status code of `rt_global_get_ex`.
    pub fn global(tier: Option<&str>) -> Result<Tracker> {
        let lib = library::get(None)?;
        let tier = tier.map(|t| c_string("tier", t)).transpose()?;
        let mut h: Handle = ptr::null_mut();
        // SAFETY: tier is NULL or a valid C string for the call; h is a valid out pointer.
        let st = unsafe {
            (lib.global_get_ex)(tier.as_ref().map_or(ptr::null(), |t| t.as_ptr()), &mut h)
        };
        let handle = handle_from(&lib, "rt_global_get_ex", st, h)?;
        Ok(Tracker {
            lib,
            handle,
            global: true,
        })
    }

    /// A private tracker, independent of the global one, configured by the
    /// JSON `config` ("" for the defaults). See `rt_open` in ratetrack.h for
    /// the keys, e.g.
    /// `{"builtin_tiers": false, "limits": {"acme/m": {"rpm": 100, "tpm": 1000}}}`.
    /// Malformed JSON or an unknown key: [`Error::Config`]; the error is
    /// always the status code of `rt_open_ex` (e.g. [`Error::NoMem`]).
    pub fn open(config: &str) -> Result<Tracker> {
        let lib = library::get(None)?;
        let config = config_c_string(config)?;
        let mut h: Handle = ptr::null_mut();
        // SAFETY: valid C string for the call; h is a valid out pointer.
        let st = unsafe { (lib.open_ex)(config.as_ptr(), &mut h) };
        let handle = handle_from(&lib, "rt_open_ex", st, h)?;
        Ok(Tracker {
            lib,
            handle,
            global: false,
        })
    }

    /// Whether this is a handle to the global tracker.
    pub fn is_global(&self) -> bool {
        self.global
    }

    fn h(&self) -> *mut RawTracker {
        self.handle.as_ptr()
    }

    /// Applies a JSON configuration to this tracker (keys present replace
    /// the current values; usage is kept). Nothing changes on error.
    pub fn configure(&self, config: &str) -> Result<()> {
        let config = config_c_string(config)?;
        // SAFETY: live handle, valid C string.
        let st = unsafe { (self.lib.configure)(self.h(), config.as_ptr()) };
        self.lib.check(st).map(drop)
    }

    /// Whether a request of `tokens` tokens to `model` fits every window now.
    /// Records nothing. [`Error::TooLarge`] if it can never fit.
    pub fn can_make(&self, model: &str, tokens: u64) -> Result<bool> {
        // SAFETY: live handle, valid C string.
        let st = with_c_str("model", model, |m| unsafe {
            (self.lib.can_make)(self.h(), m, tokens)
        })?;
        self.lib.check(st).map(|v| v == 1)
    }

    /// Records that a request of `tokens` tokens to `model` happened now
    /// (always recorded, even past a limit).
    pub fn record(&self, model: &str, tokens: u64) -> Result<()> {
        // SAFETY: live handle, valid C string.
        let st = with_c_str("model", model, |m| unsafe {
            (self.lib.record)(self.h(), m, tokens)
        })?;
        self.lib.check(st).map(drop)
    }

    /// Books `input_tokens` and `output_tokens` to a request to `model`
    /// that was already counted (by [`try_acquire`](Self::try_acquire),
    /// [`acquire`](Self::acquire), [`record`](Self::record), ...), without
    /// counting another request (`rt_record_tokens`): for callback-style
    /// code that learns a call's usage afterwards and holds no [`Grant`].
    /// The tokens are added to the model's token windows now (request
    /// windows unchanged) and count against what the provider said remains.
    /// Always recorded, even past a limit.
    pub fn record_tokens(&self, model: &str, input_tokens: u64, output_tokens: u64) -> Result<()> {
        // SAFETY: live handle, valid C string.
        let st = with_c_str("model", model, |m| unsafe {
            (self.lib.record_tokens)(self.h(), m, input_tokens, output_tokens)
        })?;
        self.lib.check(st).map(drop)
    }

    /// Checks and records in one atomic step: two callers never both take
    /// the last slot. [`Acquire::Limited`] is the "not now" answer (not an
    /// error); [`Error::TooLarge`] means it never fits.
    pub fn try_acquire(&self, model: &str, tokens: u64) -> Result<Acquire> {
        let mut retry_ms = 0u64;
        // SAFETY: live handle, valid C string, valid out pointer.
        let st = with_c_str("model", model, |m| unsafe {
            (self.lib.try_acquire)(self.h(), m, tokens, &mut retry_ms)
        })?;
        Ok(match self.lib.check(st)? {
            RT_LIMITED => Acquire::Limited {
                retry_after: Duration::from_millis(retry_ms),
            },
            _ => Acquire::Granted,
        })
    }

    /// [`try_acquire`](Self::try_acquire) that also returns a [`Grant`] to
    /// [`settle`](Self::settle) once the real token count is known.
    pub fn try_acquire_grant(&self, model: &str, tokens: u64) -> Result<GrantAttempt> {
        // The C library books a plain grant as input tokens with no output:
        // the same cost and the same ticket as rt_try_acquire_grant.
        self.try_acquire_io(model, tokens, 0)
    }

    /// Blocking acquire: retries [`try_acquire_grant`](Self::try_acquire_grant),
    /// sleeping the thread for the suggested retry-after, until the request is
    /// admitted (`Ok(Some(grant))`) or `timeout` has passed (`Ok(None)`,
    /// nothing recorded). `timeout: None` waits as long as it takes, and so
    /// does a timeout too long for an `Instant` (`Duration::MAX`);
    /// `Some(Duration::ZERO)` tries once. [`Error::TooLarge`] at once if the
    /// request can never fit.
    pub fn acquire(
        &self,
        model: &str,
        tokens: u64,
        timeout: Option<Duration>,
    ) -> Result<Option<Grant>> {
        wait_for_grant(timeout, || self.try_acquire_grant(model, tokens))
    }

    /// [`try_acquire_grant`](Self::try_acquire_grant) with the two sides
    /// counted apart (`rt_try_acquire_io`): reserve the prompt's
    /// `input_tokens` and `output_tokens` = `max_tokens`, then
    /// [`settle_io`](Self::settle_io) to the real counts. Input windows
    /// (`itpm`, ...) count the input, output windows the output, plain token
    /// windows both.
    pub fn try_acquire_io(
        &self,
        model: &str,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Result<GrantAttempt> {
        let (mut retry_ms, mut ticket) = (0u64, 0u64);
        // SAFETY: live handle, valid C string, valid out pointers.
        let st = with_c_str("model", model, |m| unsafe {
            (self.lib.try_acquire_io)(
                self.h(),
                m,
                input_tokens,
                output_tokens,
                &mut retry_ms,
                &mut ticket,
            )
        })?;
        Ok(match self.lib.check(st)? {
            RT_LIMITED => GrantAttempt::Limited {
                retry_after: Duration::from_millis(retry_ms),
            },
            _ => GrantAttempt::Granted(Grant {
                model: model.to_string(),
                ticket,
                tokens: input_tokens,
                output_tokens,
            }),
        })
    }

    /// Blocking [`try_acquire_io`](Self::try_acquire_io), as
    /// [`acquire`](Self::acquire) is for `try_acquire_grant`.
    pub fn acquire_io(
        &self,
        model: &str,
        input_tokens: u64,
        output_tokens: u64,
        timeout: Option<Duration>,
    ) -> Result<Option<Grant>> {
        wait_for_grant(timeout, || {
            self.try_acquire_io(model, input_tokens, output_tokens)
        })
    }

    /// Settles `grant` to the tokens the request really used: the refund or
    /// top-up is booked at the time of the grant (see `rt_settle`). Passes
    /// `grant.tokens` as the granted count, which the library checks against
    /// the ticket: a grant from another tracker, a forged ticket or an edited
    /// `tokens` is [`Error::Invalid`] and changes nothing. Settle each grant
    /// once (settling twice books the difference twice).
    pub fn settle(&self, grant: &Grant, actual_tokens: u64) -> Result<()> {
        // SAFETY: live handle, valid C string.
        let st = with_c_str("model", &grant.model, |m| unsafe {
            (self.lib.settle)(self.h(), m, grant.ticket, grant.tokens, actual_tokens)
        })?;
        self.lib.check(st).map(drop)
    }

    /// Settles `grant` (from any acquire) to the input and output tokens the
    /// response reported (`rt_settle_io`); each window is settled for its own
    /// unit. Passes `grant.tokens` and `grant.output_tokens` as the granted
    /// counts, which the library checks against the ticket, as for
    /// [`settle`](Self::settle).
    pub fn settle_io(&self, grant: &Grant, actual_input: u64, actual_output: u64) -> Result<()> {
        // SAFETY: live handle, valid C string.
        let st = with_c_str("model", &grant.model, |m| unsafe {
            (self.lib.settle_io)(
                self.h(),
                m,
                grant.ticket,
                grant.tokens,
                grant.output_tokens,
                actual_input,
                actual_output,
            )
        })?;
        self.lib.check(st).map(drop)
    }

    /// Acquires on the first of `models` (in order of preference) that can
    /// take the request now (`rt_pick`), each tried with one atomic acquire.
    /// [`Pick::Limited`] names the candidate that frees up first when none
    /// can (not an error); [`Error::TooLarge`] when the request exceeds a
    /// limit of every candidate outright; [`Error::Invalid`] for no
    /// candidates or an empty name.
    pub fn pick<S: AsRef<str>>(
        &self,
        models: &[S],
        input_tokens: u64,
        output_tokens: u64,
    ) -> Result<Pick> {
        let names = models
            .iter()
            .map(|m| c_string("model", m.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        let (mut picked, mut retry_ms, mut ticket) = (0usize, 0u64, 0u64);
        // SAFETY: live handle; `ptrs` holds `ptrs.len()` valid C strings that
        // outlive the call (NULL when there are none); valid out pointers.
        let st = unsafe {
            (self.lib.pick)(
                self.h(),
                if ptrs.is_empty() {
                    ptr::null()
                } else {
                    ptrs.as_ptr()
                },
                ptrs.len(),
                input_tokens,
                output_tokens,
                &mut picked,
                &mut retry_ms,
                &mut ticket,
            )
        };
        let status = self.lib.check(st)?;
        let model = models
            .get(picked)
            .map(|m| m.as_ref().to_string())
            .ok_or_else(|| {
                Error::Internal(format!(
                    "rt_pick picked index {picked} of {} candidates",
                    models.len()
                ))
            })?;
        Ok(match status {
            RT_LIMITED => Pick::Limited {
                model,
                index: picked,
                retry_after: Duration::from_millis(retry_ms),
            },
            _ => Pick::Granted {
                grant: Grant {
                    model: model.clone(),
                    ticket,
                    tokens: input_tokens,
                    output_tokens,
                },
                model,
                index: picked,
            },
        })
    }

    /// Feeds a response's rate-limit headers back (`rt_observe_headers`):
    /// OpenAI's `x-ratelimit-*` and Anthropic's `anthropic-ratelimit-*`
    /// (names case-insensitive). From then on the tracker never believes in
    /// more capacity than the provider reported before its reset.
    ///
    /// `headers` is anything that iterates over `(name, value)` pairs, or
    /// references to them: `&[("x-ratelimit-remaining-requests", "2")]`, a
    /// `Vec<(String, String)>`, `&HashMap<String, String>`, or an
    /// `&http::HeaderMap` (each value of a multi-valued header is its own
    /// pair). Unknown or malformed headers are skipped one by one, including
    /// those that are not UTF-8; a NUL byte in a name or value is
    /// [`Error::Invalid`] and nothing is observed (C would cut the text at it).
    pub fn observe_headers<I>(&self, model: &str, headers: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: HeaderPair,
    {
        let model = c_string("model", model)?;
        let (mut names, mut values) = (Vec::new(), Vec::new());
        for h in headers {
            let name = header_c_string("name", h.name())?;
            let value = header_c_string("value", h.value())?;
            if let (Some(n), Some(v)) = (name, value) {
                names.push(n);
                values.push(v);
            }
        }
        let name_ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        let value_ptrs: Vec<*const c_char> = values.iter().map(|v| v.as_ptr()).collect();
        let (np, vp) = if name_ptrs.is_empty() {
            (ptr::null(), ptr::null())
        } else {
            (name_ptrs.as_ptr(), value_ptrs.as_ptr())
        };
        // SAFETY: live handle, valid C string; `np` / `vp` hold `len` valid C
        // strings each that outlive the call (NULL with a count of 0).
        let st =
            unsafe { (self.lib.observe_headers)(self.h(), model.as_ptr(), np, vp, names.len()) };
        self.lib.check(st).map(drop)
    }

    /// Reports a 429 from the provider (`rt_report_limited`): `model` is
    /// refused ([`Acquire::Limited`] with the time left) until `retry_after`
    /// has passed. `retry_after` is the `Retry-After` header as sent (`"30"`,
    /// `"1.5"`, an HTTP date), a [`Duration`], or `None` / `""` /
    /// [`RetryAfter::Unknown`] (then 1 second). At most a day. Through a
    /// shared backend (`shm:`, Redis) every process sees it.
    pub fn report_limited<'a>(
        &self,
        model: &str,
        retry_after: impl Into<RetryAfter<'a>>,
    ) -> Result<()> {
        let model = c_string("model", model)?;
        let retry_after = match retry_after.into() {
            RetryAfter::Unknown => None,
            RetryAfter::Header(h) => Some(c_string("retry_after", h)?),
            RetryAfter::After(d) => Some(c_string("retry_after", &decimal_seconds(d))?),
        };
        // SAFETY: live handle, valid C strings (retry_after may be NULL).
        let st = unsafe {
            (self.lib.report_limited)(
                self.h(),
                model.as_ptr(),
                retry_after.as_ref().map_or(ptr::null(), |r| r.as_ptr()),
            )
        };
        self.lib.check(st).map(drop)
    }

    /// How long until a request of `tokens` tokens to `model` would fit
    /// (zero: now). Records nothing. "Never" is [`Error::TooLarge`].
    pub fn wait_time(&self, model: &str, tokens: u64) -> Result<Duration> {
        let mut wait_ms = 0u64;
        // SAFETY: live handle, valid C string, valid out pointer.
        let st = with_c_str("model", model, |m| unsafe {
            (self.lib.wait_time)(self.h(), m, tokens, &mut wait_ms)
        })?;
        self.lib.check(st)?;
        if wait_ms == WAIT_NEVER {
            // Not expected with RT_OK, but never turn "never" into 584 million years.
            return Err(Error::from_code(RT_E_TOO_LARGE, "wait time is never"));
        }
        Ok(Duration::from_millis(wait_ms))
    }

    /// Clears this tracker's recorded usage (limits and tier are kept). On a
    /// global handle this resets only the usage, not the global itself; see
    /// [`reset_global`] for that.
    pub fn reset(&self) -> Result<()> {
        // SAFETY: live handle.
        let st = unsafe { (self.lib.reset)(self.h()) };
        self.lib.check(st).map(drop)
    }

    /// This tracker's usage, per model and window.
    pub fn stats(&self) -> Result<Stats> {
        stats_of(&self.lib, self.h())?
            .ok_or_else(|| Error::Internal("rt_stats_json_ex gave null for a live handle".into()))
    }

    /// This tracker's usage in the Prometheus text exposition format
    /// (version 0.0.4), to serve on the agent's own `/metrics` endpoint:
    /// `ratetrack_info`, `ratetrack_window_usage` / `_limit` / `_remaining` /
    /// `_observed_limit{model,window}`, `ratetrack_admitted_total` /
    /// `ratetrack_refused_total{model}` (this process's `try_acquire` and
    /// `pick` decisions), `ratetrack_blocked_seconds{model}`,
    /// `ratetrack_backend_errors_total` / `ratetrack_backend_up{backend}`,
    /// each with its `# HELP` and `# TYPE` lines.
    pub fn metrics_text(&self) -> Result<String> {
        metrics_of(&self.lib, self.h())
    }
}

/// The loop of the blocking acquires: `attempt` until it grants, sleeping
/// for its retry-after (capped by the time left), or until `timeout`.
fn wait_for_grant(
    timeout: Option<Duration>,
    mut attempt: impl FnMut() -> Result<GrantAttempt>,
) -> Result<Option<Grant>> {
    // A timeout past what an Instant can hold (Duration::MAX) is no deadline,
    // as std's own timeouts read it, not a panic.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let retry_after = match attempt()? {
            GrantAttempt::Granted(grant) => return Ok(Some(grant)),
            GrantAttempt::Limited { retry_after } => retry_after.max(Duration::from_millis(1)),
        };
        let nap = match deadline {
            None => retry_after,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                retry_after.min(left)
            }
        };
        thread::sleep(nap);
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if !self.global {
            // SAFETY: a private handle from rt_open_ex, closed exactly once, and
            // &mut self means no other thread is using it.
            unsafe { (self.lib.close)(self.h()) }
        }
    }
}

/// The global tracker's usage, or `None` if the global has not been created
/// (or was reset with [`reset_global`] and not used since).
pub fn global_stats() -> Result<Option<Stats>> {
    let lib = library::get(None)?;
    // NULL means the global.
    stats_of(&lib, ptr::null_mut())
}

/// The global tracker's usage in the Prometheus text format (as
/// [`Tracker::metrics_text`]). Before the global exists (or after
/// [`reset_global`]) the text is a single comment line saying so; it does
/// not create the global.
pub fn global_metrics_text() -> Result<String> {
    let lib = library::get(None)?;
    // NULL means the global.
    metrics_of(&lib, ptr::null_mut())
}

/// Returns the global tracker to "never created" (`rt_reset(NULL)`): its
/// usage is forgotten and [`global_stats`] is `None` until the next
/// [`Tracker::global`], which chooses the tier again as at first creation
/// (its `tier`, else `RATETRACK_TIER`, else the configuration's, else
/// "tier1"). Until then the old tier's limits stay in force. Configuration
/// from [`configure_global`] is kept, and handles already handed out stay
/// valid (they act on the emptied global).
pub fn reset_global() -> Result<()> {
    let lib = library::get(None)?;
    // SAFETY: NULL means the global.
    let st = unsafe { (lib.reset)(ptr::null_mut()) };
    lib.check(st).map(drop)
}

/// Applies a JSON configuration (as for [`Tracker::open`]) to the global
/// tracker, before or after it is created. Recorded usage is kept.
pub fn configure_global(config: &str) -> Result<()> {
    let lib = library::get(None)?;
    let config = config_c_string(config)?;
    // SAFETY: valid C string.
    let st = unsafe { (lib.global_configure)(config.as_ptr()) };
    lib.check(st).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    /// The C string `with_c_str` hands to its call, as bytes.
    fn passed(s: &str) -> Result<Vec<u8>> {
        // SAFETY: with_c_str passes a NUL-terminated string valid for the call.
        with_c_str("model", s, |p| {
            unsafe { CStr::from_ptr(p) }.to_bytes().to_vec()
        })
    }

    #[test]
    fn with_c_str_passes_every_length_and_alignment() {
        // Multi-byte characters too, so a word boundary falls inside one.
        let text: String = "abcdefghijklmnopqrstuvwxyz/é-模型.0123456789"
            .chars()
            .cycle()
            .take(400)
            .collect();
        for start in 0..9 {
            for len in 0..=300 {
                let s = match text.get(start..start + len) {
                    Some(s) => s,
                    None => continue, // not on a character boundary
                };
                assert_eq!(passed(s).unwrap(), s.as_bytes(), "start {start} len {len}");
            }
        }
    }

    #[test]
    fn with_c_str_refuses_a_nul_anywhere_as_c_string_does() {
        for len in 1..=300 {
            for at in [0, len / 3, len / 2, len - 1] {
                let mut s = "m".repeat(len);
                s.replace_range(at..at + 1, "\0");
                let want = c_string("model", &s).unwrap_err();
                assert_eq!(passed(&s).unwrap_err(), want, "len {len} at {at}");
            }
        }
    }

    #[test]
    fn tail_word_is_the_last_bytes_zero_padded() {
        let b: Vec<u8> = (1..=40).collect();
        for n in 0..=b.len() {
            let r = n % 8;
            let mut want = [0u8; 8];
            want[..r].copy_from_slice(&b[n - r..n]);
            assert_eq!(tail_word(&b[..n]), u64::from_le_bytes(want), "n {n}");
        }
    }
}
