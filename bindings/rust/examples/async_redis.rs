//! Figures, not a test: try_acquire on a `redis://` backend from 1 and 8
//! concurrent async callers on ONE executor thread (AsyncTracker), next to 1
//! and 8 threads making the blocking call. Starts its own redis-server on a
//! free loopback port (or uses RATETRACK_REDIS_URL).
//!
//!     RATETRACK_LIBRARY=/path/to/libratetrack.so.0 cargo run --release --example async_redis

use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use ratetrack::{AsyncTracker, Tracker};

const OPS: usize = 4000;
const MODEL: &str = "bench/m";

struct Unpark(Thread);
impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A single-threaded executor: polls every future on this thread.
fn join_all(mut futures: Vec<Pin<Box<dyn Future<Output = ()>>>>) {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut done = vec![false; futures.len()];
    while done.iter().any(|d| !d) {
        for (f, d) in futures.iter_mut().zip(done.iter_mut()) {
            if !*d && f.as_mut().poll(&mut cx) == Poll::Ready(()) {
                *d = true;
            }
        }
        if done.iter().any(|d| !d) {
            thread::park();
        }
    }
}

fn main() -> Result<(), ratetrack::Error> {
    let mut server = None;
    let url = match std::env::var("RATETRACK_REDIS_URL") {
        Ok(u) => u,
        Err(_) => {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server (apt-get install redis-server), or set RATETRACK_REDIS_URL");
            server = Some(child);
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                thread::sleep(Duration::from_millis(20));
            }
            format!("redis://127.0.0.1:{port}/0")
        }
    };
    let config = format!(
        r#"{{"builtin_tiers": false, "backend": "{url}?prefix=rt-rust-bench-{}", "limits": {{"{MODEL}": {{"rpm": 1000000000, "tpm": 1000000000000}}}}}}"#,
        std::process::id()
    );
    let t = AsyncTracker::new(Tracker::open(&config)?);
    t.tracker().stats()?; // connect

    for callers in [1usize, 8] {
        let start = Instant::now();
        let futures: Vec<Pin<Box<dyn Future<Output = ()>>>> = (0..callers)
            .map(|_| {
                let t = t.clone();
                Box::pin(async move {
                    for _ in 0..OPS / callers {
                        assert!(t.try_acquire(MODEL, 1).await.unwrap().is_granted());
                    }
                }) as Pin<Box<dyn Future<Output = ()>>>
            })
            .collect();
        join_all(futures);
        let s = start.elapsed().as_secs_f64();
        println!(
            "BENCH rust async_redis callers={callers} ops_per_s={:.0} us_per_op={:.1}",
            OPS as f64 / s,
            s * 1e6 / OPS as f64
        );
    }
    for threads in [1usize, 8] {
        let start = Instant::now();
        thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    for _ in 0..OPS / threads {
                        assert!(t.tracker().try_acquire(MODEL, 1).unwrap().is_granted());
                    }
                });
            }
        });
        let s = start.elapsed().as_secs_f64();
        println!(
            "BENCH rust sync_redis threads={threads} ops_per_s={:.0} us_per_op={:.1}",
            OPS as f64 / s,
            s * 1e6 / OPS as f64
        );
    }
    if let Some(mut child) = server {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(())
}
