//! The async forms ([`AsyncTracker`], issue #26): the same answers as the
//! blocking calls, no executor thread ever blocked, and on `redis://` N
//! concurrent async callers in flight together.
//!
//! The executor is a minimal single-threaded one written here (no runtime
//! dependency, so the tests build with the crate's oldest Rust): every future
//! is polled on the test's own thread, so a call that blocked would stall all
//! the others. Concurrency is proven with a barrier, not with timings: 8
//! calls that each wait for the 7 others can only finish if all 8 are in
//! flight at once.

use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread, ThreadId};
use std::time::{Duration, Instant};

use ratetrack::{AsyncTracker, Error, GrantAttempt, Pick, Tracker};

const M: &str = "acme/m";

/// A boxed future of the tests' executor.
type Task<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

// ------------------------------------------------- a minimal executor

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn waker() -> Waker {
    Waker::from(Arc::new(Unpark(thread::current())))
}

/// Polls every future on this thread until all are done; their outputs in order.
fn join_all<T>(mut futures: Vec<Task<'_, T>>) -> Vec<T> {
    let waker = waker();
    let mut cx = Context::from_waker(&waker);
    let mut out: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    loop {
        let mut pending = false;
        for (f, o) in futures.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(&mut cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if !pending {
            return out.into_iter().map(Option::unwrap).collect();
        }
        thread::park(); // until a waker (or a spurious unpark)
    }
}

fn block_on<T>(f: impl Future<Output = T>) -> T {
    join_all(vec![Box::pin(f)]).pop().unwrap()
}

fn private(limits: &str) -> AsyncTracker {
    AsyncTracker::new(
        Tracker::open(&format!(
            r#"{{"builtin_tiers": false, "limits": {limits}}}"#
        ))
        .unwrap(),
    )
}

#[test]
fn futures_are_send_and_static() {
    fn check<T: Send + 'static>(_: &T) {}
    let t = private(r#"{"acme/m": {"rpm": 5}}"#);
    check(&t.try_acquire(M, 1));
    check(&t.stats());
    fn check_send<T: Send>(_: &T) {}
    check_send(&t.acquire(M, 1, None));
    check_send(&t.acquire_io(M, 1, 1, None));
    check(&t);
}

#[test]
fn async_forms_match_the_blocking_ones() {
    let t = private(r#"{"acme/m": {"rpm": 4, "tpm": 1000}, "acme/n": {"rpm": 1}}"#);
    block_on(async {
        assert!(t.try_acquire(M, 10).await.unwrap().is_granted());
        let grant = match t.try_acquire_grant(M, 5).await.unwrap() {
            GrantAttempt::Granted(g) => g,
            other => panic!("{other:?}"),
        };
        t.settle(&grant, 7).await.unwrap();
        let grant = t
            .acquire_io(M, 2, 3, Some(Duration::ZERO))
            .await
            .unwrap()
            .unwrap();
        t.settle_io(&grant, 1, 1).await.unwrap();
        let grant = t.acquire(M, 1, None).await.unwrap().unwrap();
        t.settle(&grant, 1).await.unwrap();
        assert!(!t.can_make(M, 1).await.unwrap()); // 4 of 4 requests
        t.record(M, 4).await.unwrap();
        t.record_tokens(M, 6, 4).await.unwrap();
        assert!(t.try_acquire_io(M, 1, 1).await.unwrap().retry_after() > Duration::ZERO);
        assert!(t
            .acquire(M, 1, Some(Duration::ZERO))
            .await
            .unwrap()
            .is_none());
        match t.pick(&[M, "acme/n"], 1, 0).await.unwrap() {
            Pick::Granted { model, index, .. } => {
                assert_eq!((model.as_str(), index), ("acme/n", 1))
            }
            other => panic!("{other:?}"),
        }
        t.observe_headers(
            M,
            &[
                (
                    "x-ratelimit-remaining-requests".to_string(),
                    "0".to_string(),
                ),
                ("x-ratelimit-reset-requests".to_string(), "30s".to_string()),
            ],
        )
        .await
        .unwrap();
        t.report_limited(M, "5").await.unwrap();
        assert!(t.wait_time(M, 1).await.unwrap() > Duration::from_secs(4));
        let s = t.stats().await.unwrap();
        assert_eq!(s.window(M, "requests_per_minute").unwrap().current, 5);
        assert_eq!(
            s.window(M, "tokens_per_minute").unwrap().current,
            10 + 7 + 2 + 1 + 4 + 10
        );
        assert!(s.provider(M).unwrap().blocked_for_ms > 4000);
        assert!(t.metrics_text().await.unwrap().contains("ratetrack_info"));
        t.reset().await.unwrap();
        assert_eq!(
            t.stats()
                .await
                .unwrap()
                .window(M, "requests_per_minute")
                .unwrap()
                .current,
            0
        );
    });
}

#[test]
fn errors_come_back_through_the_future() {
    let t = private(r#"{"acme/m": {"rpm": 4, "tpm": 100}}"#);
    block_on(async {
        assert!(matches!(
            t.try_acquire("a/b\0c", 1).await,
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            t.record_tokens("", 1, 1).await,
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            t.acquire(M, 1000, None).await,
            Err(Error::TooLarge(_))
        ));
        assert!(matches!(
            t.report_limited(M, "1\0").await,
            Err(Error::Invalid(_))
        ));
        let r: Result<(), Error> = t.call(|_| panic!("inside a call")).await;
        assert!(matches!(r, Err(Error::Internal(_))), "{r:?}");
        // The pool still works after a panic.
        assert!(t.try_acquire(M, 1).await.unwrap().is_granted());
    });
    assert!(matches!(
        ratetrack::set_async_threads(0),
        Err(Error::Invalid(_))
    ));
}

/// An acquire that must wait (a 429 with retry-after 2 s) returns Pending at
/// once, and the executor thread runs other futures meanwhile; it is
/// admitted only once the 2 s have passed.
#[test]
fn waiting_acquire_never_blocks_the_executor() {
    let t = private(r#"{"acme/m": {"rpm": 100}, "acme/other": {"rpm": 100}}"#);
    block_on(t.report_limited(M, "2")).unwrap();
    let reported = Instant::now();
    let mut acquire = Box::pin(t.acquire(M, 1, None));
    let waker = waker();
    assert!(acquire
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    // The same thread does other work while the acquire waits.
    let mut other_calls = 0;
    for _ in 0..5 {
        assert!(block_on(t.try_acquire("acme/other", 1))
            .unwrap()
            .is_granted());
        other_calls += 1;
    }
    let grant = block_on(acquire).unwrap().expect("admitted after the 429");
    assert!(reported.elapsed() >= Duration::from_millis(1900));
    assert_eq!((other_calls, grant.model.as_str()), (5, M));
    // A timeout ends the wait with None, nothing booked.
    block_on(t.report_limited(M, "30")).unwrap();
    assert!(block_on(t.acquire(M, 1, Some(Duration::from_millis(50))))
        .unwrap()
        .is_none());
    let s = t.tracker().stats().unwrap();
    assert_eq!(s.window(M, "requests_per_minute").unwrap().current, 1);
}

// ------------------------------------------------------------- Redis

/// A barrier with a (generous) timeout, so a failure fails instead of hanging.
struct Barrier {
    count: Mutex<usize>,
    all_in: Condvar,
    n: usize,
}

impl Barrier {
    fn wait(&self) -> bool {
        let mut count = self.count.lock().unwrap();
        *count += 1;
        self.all_in.notify_all();
        let (count, result) = self
            .all_in
            .wait_timeout_while(count, Duration::from_secs(60), |c| *c < self.n)
            .unwrap();
        drop(count);
        !result.timed_out()
    }
}

struct Redis {
    child: Child,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A redis-server of its own on a free loopback port, or None (test
/// skipped) when there is no redis-server.
fn start_redis() -> Option<Redis> {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("SKIPPED: no redis-server ({e}); apt-get install redis-server");
            return None;
        }
    };
    let redis = Redis { child, port };
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "redis-server did not start"
        );
        thread::sleep(Duration::from_millis(20));
    }
    Some(redis)
}

#[test]
fn redis_async_callers_are_in_flight_together() {
    let redis = match start_redis() {
        Some(r) => r,
        None => return,
    };
    let url = format!(
        "redis://127.0.0.1:{}/0?prefix=rt-rust-async-{}&timeout_ms=5000",
        redis.port,
        std::process::id()
    );
    let t = AsyncTracker::new(
        Tracker::open(&format!(
            r#"{{"builtin_tiers": false, "backend": "{url}", "limits": {{"acme/m": {{"rpm": 100, "tpm": 100000}}}}}}"#
        ))
        .unwrap(),
    );
    block_on(t.stats()).unwrap(); // connect

    // 8 calls that each wait at a barrier for the 7 others, then acquire on
    // Redis: all 8 are in flight at once, each on its own worker thread.
    const N: usize = 8;
    let barrier = Arc::new(Barrier {
        count: Mutex::new(0),
        all_in: Condvar::new(),
        n: N,
    });
    let executor = thread::current().id();
    let futures: Vec<Task<Result<(ThreadId, bool), Error>>> = (0..N)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            Box::pin(t.call(move |tr| {
                let met = barrier.wait();
                let granted = tr.try_acquire(M, 10)?.is_granted();
                Ok((thread::current().id(), met && granted))
            })) as Task<_>
        })
        .collect();
    let results: Vec<(ThreadId, bool)> =
        join_all(futures).into_iter().map(Result::unwrap).collect();
    assert!(
        results.iter().all(|(_, ok)| *ok),
        "not all met at the barrier: {results:?}"
    );
    let mut threads: Vec<ThreadId> = results.iter().map(|(id, _)| *id).collect();
    assert!(!threads.contains(&executor));
    threads.sort_by_key(|id| format!("{id:?}"));
    threads.dedup();
    assert_eq!(threads.len(), N);

    // The methods themselves, 8 at once, and waiting acquires on Redis.
    let futures: Vec<Task<bool>> = (0..N)
        .map(|i| {
            let t = t.clone();
            Box::pin(async move {
                if i % 2 == 0 {
                    t.try_acquire(M, 10).await.unwrap().is_granted()
                } else {
                    let g = t
                        .acquire_io(M, 5, 5, Some(Duration::from_secs(30)))
                        .await
                        .unwrap();
                    t.settle_io(g.as_ref().unwrap(), 4, 4).await.unwrap();
                    g.is_some()
                }
            }) as Task<bool>
        })
        .collect();
    assert!(join_all(futures).into_iter().all(|ok| ok));
    let s = block_on(t.stats()).unwrap();
    assert!(s.backend.starts_with("redis://"), "{}", s.backend);
    let rpm = s.window(M, "requests_per_minute").unwrap();
    let tpm = s.window(M, "tokens_per_minute").unwrap();
    assert_eq!(
        (rpm.current, tpm.current),
        (2 * N as u64, 8 * 10 + 4 * 10 + 4 * 8)
    );
    drop(redis);
}
