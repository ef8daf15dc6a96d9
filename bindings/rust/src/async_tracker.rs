//! Non-blocking forms of the calls that can touch the network, for async
//! code on any executor (tokio, async-std, smol, a `futures` executor):
//! [`AsyncTracker`].
//!
//! No async runtime is a dependency. Each call runs on a small pool of
//! worker threads of this crate (started on demand, at most
//! [`set_async_threads`], 16 by default) and completes a [`Call`] future
//! through its `Waker`; an acquire that must wait sleeps on one timer thread
//! of this crate, not on a worker and not on the executor. So an executor
//! thread never waits on a Redis round trip or a retry-after, and N
//! concurrent async callers have up to N calls in flight, as N threads would.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::stats::Stats;
use crate::tracker::{Acquire, Grant, GrantAttempt, HeaderPair, Pick, RetryAfter, Tracker};

/// The default of [`set_async_threads`].
pub const DEFAULT_ASYNC_THREADS: usize = 16;

/// Sets the most worker threads the async calls use, for the whole process
/// (1 to 1024; default 16). Threads are started on demand, when a call finds
/// none idle, and then kept. More in-flight calls than threads queue (on
/// Redis the tracker itself has at most its `connections`, 4 by default, and
/// merges the decisions of callers beyond them). Lowering it stops no thread
/// already started. Out of range: [`Error::Invalid`].
pub fn set_async_threads(threads: usize) -> Result<()> {
    if !(1..=1024).contains(&threads) {
        return Err(Error::Invalid(format!(
            "async threads {threads} is not between 1 and 1024"
        )));
    }
    lock(&POOL.state).max_threads = threads;
    Ok(())
}

/// Locks `m`, ignoring poisoning: no job runs while a lock is held here, so
/// the state is never half-updated.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

type Job = Box<dyn FnOnce() + Send + 'static>;

struct PoolState {
    /// `None` until the first call (VecDeque::new is not const in Rust 1.63).
    queue: Option<VecDeque<Job>>,
    idle: usize,
    threads: usize,
    max_threads: usize,
}

struct Pool {
    state: Mutex<PoolState>,
    work: Condvar,
}

static POOL: Pool = Pool {
    state: Mutex::new(PoolState {
        queue: None,
        idle: 0,
        threads: 0,
        max_threads: DEFAULT_ASYNC_THREADS,
    }),
    work: Condvar::new(),
};

impl Pool {
    fn submit(&'static self, job: Job) {
        let mut s = lock(&self.state);
        let queued = {
            let queue = s.queue.get_or_insert_with(VecDeque::new);
            queue.push_back(job);
            queue.len()
        };
        if s.idle >= queued {
            self.work.notify_one();
            return;
        }
        if s.threads < s.max_threads {
            let spawned = thread::Builder::new()
                .name("ratetrack-async".into())
                .spawn(move || self.work_loop());
            if spawned.is_ok() {
                s.threads += 1;
                return;
            }
        }
        // All busy (or no thread could be started): it waits its turn.
        self.work.notify_one();
    }

    fn work_loop(&'static self) {
        loop {
            let job = {
                let mut s = lock(&self.state);
                loop {
                    if let Some(job) = s.queue.as_mut().and_then(VecDeque::pop_front) {
                        break job;
                    }
                    s.idle += 1;
                    s = self.work.wait(s).unwrap_or_else(|p| p.into_inner());
                    s.idle -= 1;
                }
            };
            job(); // never panics: run() catches
        }
    }
}

/// What a call leaves for its future: the result, or who to wake.
struct Slot<T> {
    result: Option<Result<T>>,
    waker: Option<Waker>,
}

/// The future of one call of an [`AsyncTracker`]: `Ok` with the answer of
/// the same method of [`Tracker`], or its error.
///
/// The call starts when the method is called, not when the future is first
/// polled, and runs to its end even if the future is dropped: a dropped
/// acquire that is admitted stays booked (the tracker errs on the safe
/// side), and a dropped settle or record is still booked.
#[must_use = "a Call does nothing useful unless awaited: its answer is lost"]
pub struct Call<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

impl<T> fmt::Debug for Call<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let done = lock(&self.slot).result.is_some();
        f.debug_struct("Call").field("done", &done).finish()
    }
}

impl<T> Future for Call<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut slot = lock(&self.slot);
        match slot.result.take() {
            Some(result) => Poll::Ready(result),
            None => {
                match &slot.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => slot.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

/// Runs `f` on the pool; its answer (or a panic, as [`Error::Internal`])
/// completes the returned future.
fn run<T, F>(f: F) -> Call<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let slot = Arc::new(Mutex::new(Slot {
        result: None,
        waker: None,
    }));
    let done = Arc::clone(&slot);
    POOL.submit(Box::new(move || {
        let result = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
            Err(Error::Internal(
                "an async ratetrack call panicked on its worker thread".into(),
            ))
        });
        let waker = {
            let mut s = lock(&done);
            s.result = Some(result);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }));
    Call { slot }
}

// ----------------------------------------------------------------- timer

struct TimerEntry {
    at: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for TimerEntry {}
impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerEntry {
    // Reversed: BinaryHeap is a max-heap; the earliest comes first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

struct TimerState {
    /// `None` until the first wait (BinaryHeap::new is not const in Rust 1.63).
    heap: Option<BinaryHeap<TimerEntry>>,
    seq: u64,
    started: bool,
}

struct Timer {
    state: Mutex<TimerState>,
    changed: Condvar,
}

static TIMER: Timer = Timer {
    state: Mutex::new(TimerState {
        heap: None,
        seq: 0,
        started: false,
    }),
    changed: Condvar::new(),
};

impl Timer {
    /// Wakes `waker` at `at` (or a little after).
    fn wake_at(&'static self, at: Instant, waker: Waker) {
        let mut s = lock(&self.state);
        if !s.started {
            let spawned = thread::Builder::new()
                .name("ratetrack-timer".into())
                .spawn(move || self.run());
            if spawned.is_err() {
                drop(s);
                waker.wake(); // no timer thread: poll again (a busy wait, not a hang)
                return;
            }
            s.started = true;
        }
        s.seq += 1;
        let seq = s.seq;
        let heap = s.heap.get_or_insert_with(BinaryHeap::new);
        let earliest = heap.peek().map_or(true, |e| at < e.at);
        heap.push(TimerEntry { at, seq, waker });
        if earliest {
            self.changed.notify_one();
        }
    }

    fn run(&'static self) {
        let mut s = lock(&self.state);
        loop {
            let now = Instant::now();
            let heap = s.heap.get_or_insert_with(BinaryHeap::new);
            let mut due = Vec::new();
            while heap.peek().map_or(false, |e| e.at <= now) {
                due.push(heap.pop().expect("peeked").waker);
            }
            let next = heap.peek().map(|e| e.at - now);
            if !due.is_empty() {
                drop(s);
                due.into_iter().for_each(Waker::wake);
                s = lock(&self.state);
                continue;
            }
            s = match next {
                None => self.changed.wait(s).unwrap_or_else(|p| p.into_inner()),
                Some(left) => {
                    self.changed
                        .wait_timeout(s, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

/// A future that is ready at `at`, woken by the timer thread.
struct Sleep {
    at: Instant,
    /// The waker registered with the timer: polled again with the same
    /// one (a combinator polling all its futures), nothing is added.
    registered: Option<Waker>,
}

impl Sleep {
    fn until(at: Instant) -> Sleep {
        Sleep {
            at,
            registered: None,
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        if !matches!(&self.registered, Some(w) if w.will_wake(cx.waker())) {
            TIMER.wake_at(self.at, cx.waker().clone());
            self.registered = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

// ------------------------------------------------------------ the tracker

/// A `Retry-After` that outlives the call ([`RetryAfter`] borrows).
enum OwnedRetryAfter {
    Unknown,
    Header(String),
    After(Duration),
}

impl OwnedRetryAfter {
    fn borrow(&self) -> RetryAfter<'_> {
        match self {
            OwnedRetryAfter::Unknown => RetryAfter::Unknown,
            OwnedRetryAfter::Header(h) => RetryAfter::Header(h),
            OwnedRetryAfter::After(d) => RetryAfter::After(*d),
        }
    }
}

/// A [`Tracker`] with non-blocking (`async`) forms of every call that can
/// touch the network (on a `redis://` backend each is a round trip). Cheap
/// to clone (an `Arc`); `Send + Sync`; works on any executor.
///
/// Each method takes its arguments by reference and copies what it needs,
/// so the future it returns borrows nothing (`'static`, `Send`), except the
/// waiting acquires, which borrow `self`. The answers and errors are those of
/// the same [`Tracker`] methods; what an argument [`Tracker`] refuses (a NUL
/// byte in a name, ...) comes back as the future's error.
///
/// ```no_run
/// # async fn agent() -> Result<(), ratetrack::Error> {
/// use std::time::Duration;
/// use ratetrack::{AsyncTracker, Tracker};
///
/// let t = AsyncTracker::new(Tracker::global(None)?);
/// let grant = t
///     .acquire_io("openai/gpt-4o-mini", 1200, 500, Some(Duration::from_secs(30)))
///     .await?
///     .expect("admitted within 30 s");
/// // ... call the model ...
/// t.settle_io(&grant, 1100, 230).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AsyncTracker {
    tracker: Arc<Tracker>,
}

impl fmt::Debug for AsyncTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncTracker")
            .field("tracker", &self.tracker)
            .finish()
    }
}

impl From<Tracker> for AsyncTracker {
    fn from(tracker: Tracker) -> Self {
        AsyncTracker::new(tracker)
    }
}

impl From<Arc<Tracker>> for AsyncTracker {
    fn from(tracker: Arc<Tracker>) -> Self {
        AsyncTracker { tracker }
    }
}

impl AsyncTracker {
    /// The async face of `tracker` (which it keeps; a private tracker is
    /// closed when the last clone and the last call in progress are gone).
    pub fn new(tracker: Tracker) -> AsyncTracker {
        AsyncTracker {
            tracker: Arc::new(tracker),
        }
    }

    /// The tracker, for the calls that stay synchronous.
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// The shared tracker.
    pub fn arc(&self) -> &Arc<Tracker> {
        &self.tracker
    }

    /// Runs `f` with the tracker on a worker thread and completes the
    /// future with its answer: the async form of any other call, or of
    /// several in a row.
    pub fn call<T, F>(&self, f: F) -> Call<T>
    where
        T: Send + 'static,
        F: FnOnce(&Tracker) -> Result<T> + Send + 'static,
    {
        let t = Arc::clone(&self.tracker);
        run(move || f(&t))
    }

    /// [`Tracker::try_acquire`].
    pub fn try_acquire(&self, model: &str, tokens: u64) -> Call<Acquire> {
        let model = model.to_string();
        self.call(move |t| t.try_acquire(&model, tokens))
    }

    /// [`Tracker::try_acquire_grant`].
    pub fn try_acquire_grant(&self, model: &str, tokens: u64) -> Call<GrantAttempt> {
        let model = model.to_string();
        self.call(move |t| t.try_acquire_grant(&model, tokens))
    }

    /// [`Tracker::try_acquire_io`].
    pub fn try_acquire_io(
        &self,
        model: &str,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Call<GrantAttempt> {
        let model = model.to_string();
        self.call(move |t| t.try_acquire_io(&model, input_tokens, output_tokens))
    }

    /// [`Tracker::acquire`] without blocking: each attempt runs on a worker
    /// thread, and the wait between attempts (the retry-after, capped by the
    /// time left) is a timer, so neither the executor nor a worker waits.
    /// `Ok(None)` when `timeout` passed first (nothing booked); `None` waits
    /// as long as it takes; `Some(Duration::ZERO)` tries once. Dropping the
    /// future stops the waiting (an attempt already running completes).
    pub async fn acquire(
        &self,
        model: &str,
        tokens: u64,
        timeout: Option<Duration>,
    ) -> Result<Option<Grant>> {
        let model: Arc<str> = model.into();
        self.wait_for_grant(timeout, move |t| t.try_acquire_grant(&model, tokens))
            .await
    }

    /// [`Tracker::acquire_io`] without blocking, as [`acquire`](Self::acquire).
    pub async fn acquire_io(
        &self,
        model: &str,
        input_tokens: u64,
        output_tokens: u64,
        timeout: Option<Duration>,
    ) -> Result<Option<Grant>> {
        let model: Arc<str> = model.into();
        self.wait_for_grant(timeout, move |t| {
            t.try_acquire_io(&model, input_tokens, output_tokens)
        })
        .await
    }

    async fn wait_for_grant<F>(
        &self,
        timeout: Option<Duration>,
        attempt: F,
    ) -> Result<Option<Grant>>
    where
        F: Fn(&Tracker) -> Result<GrantAttempt> + Send + Sync + 'static,
    {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let attempt = Arc::new(attempt);
        loop {
            let a = Arc::clone(&attempt);
            let retry_after = match self.call(move |t| a(t)).await? {
                GrantAttempt::Granted(grant) => return Ok(Some(grant)),
                GrantAttempt::Limited { retry_after } => retry_after.max(Duration::from_millis(1)),
            };
            let now = Instant::now();
            let nap = match deadline {
                None => retry_after,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(now);
                    if left.is_zero() {
                        return Ok(None);
                    }
                    retry_after.min(left)
                }
            };
            let at = now
                .checked_add(nap)
                .unwrap_or_else(|| now + Duration::from_secs(86_400));
            Sleep::until(at).await;
        }
    }

    /// [`Tracker::settle`].
    pub fn settle(&self, grant: &Grant, actual_tokens: u64) -> Call<()> {
        let grant = grant.clone();
        self.call(move |t| t.settle(&grant, actual_tokens))
    }

    /// [`Tracker::settle_io`].
    pub fn settle_io(&self, grant: &Grant, actual_input: u64, actual_output: u64) -> Call<()> {
        let grant = grant.clone();
        self.call(move |t| t.settle_io(&grant, actual_input, actual_output))
    }

    /// [`Tracker::record`].
    pub fn record(&self, model: &str, tokens: u64) -> Call<()> {
        let model = model.to_string();
        self.call(move |t| t.record(&model, tokens))
    }

    /// [`Tracker::record_tokens`].
    pub fn record_tokens(&self, model: &str, input_tokens: u64, output_tokens: u64) -> Call<()> {
        let model = model.to_string();
        self.call(move |t| t.record_tokens(&model, input_tokens, output_tokens))
    }

    /// [`Tracker::can_make`].
    pub fn can_make(&self, model: &str, tokens: u64) -> Call<bool> {
        let model = model.to_string();
        self.call(move |t| t.can_make(&model, tokens))
    }

    /// [`Tracker::wait_time`].
    pub fn wait_time(&self, model: &str, tokens: u64) -> Call<Duration> {
        let model = model.to_string();
        self.call(move |t| t.wait_time(&model, tokens))
    }

    /// [`Tracker::pick`].
    pub fn pick<S: AsRef<str>>(
        &self,
        models: &[S],
        input_tokens: u64,
        output_tokens: u64,
    ) -> Call<Pick> {
        let models: Vec<String> = models.iter().map(|m| m.as_ref().to_string()).collect();
        self.call(move |t| t.pick(&models, input_tokens, output_tokens))
    }

    /// [`Tracker::observe_headers`] (the headers are copied first, so any
    /// header map can be passed by reference).
    pub fn observe_headers<I>(&self, model: &str, headers: I) -> Call<()>
    where
        I: IntoIterator,
        I::Item: HeaderPair,
    {
        let model = model.to_string();
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = headers
            .into_iter()
            .map(|h| (h.name().to_vec(), h.value().to_vec()))
            .collect();
        self.call(move |t| t.observe_headers(&model, &pairs))
    }

    /// [`Tracker::report_limited`].
    pub fn report_limited<'a>(
        &self,
        model: &str,
        retry_after: impl Into<RetryAfter<'a>>,
    ) -> Call<()> {
        let model = model.to_string();
        let retry_after = match retry_after.into() {
            RetryAfter::Unknown => OwnedRetryAfter::Unknown,
            RetryAfter::Header(h) => OwnedRetryAfter::Header(h.to_string()),
            RetryAfter::After(d) => OwnedRetryAfter::After(d),
        };
        self.call(move |t| t.report_limited(&model, retry_after.borrow()))
    }

    /// [`Tracker::stats`].
    pub fn stats(&self) -> Call<Stats> {
        self.call(|t| t.stats())
    }

    /// [`Tracker::metrics_text`].
    pub fn metrics_text(&self) -> Call<String> {
        self.call(|t| t.metrics_text())
    }

    /// [`Tracker::reset`].
    pub fn reset(&self) -> Call<()> {
        self.call(|t| t.reset())
    }
}
