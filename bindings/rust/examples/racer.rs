//! A racer for the "shm:NAME" backend: racers in other processes (and other
//! languages) that open the same NAME share one budget, so together they are
//! admitted exactly LIMIT times.
//!
//!     racer NAME MODEL LIMIT ATTEMPTS [START_FILE]
//!
//! Opens a private tracker on shm:NAME with LIMIT requests per hour for
//! MODEL, waits until START_FILE exists (if given), calls
//! `try_acquire(MODEL, 1)` ATTEMPTS times and prints `admitted <N>`.
//!
//!     RATETRACK_LIBRARY=/path/to/libratetrack.so.0 \
//!         cargo run --example racer -- demo openai/gpt-4o-mini 100 200

use std::path::Path;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use ratetrack::Tracker;

fn run(args: &[String]) -> Result<u64, String> {
    let (name, model, limit, attempts, rest) = match args {
        [name, model, limit, attempts, rest @ ..] => (name, model, limit, attempts, rest),
        _ => return Err("usage: racer NAME MODEL LIMIT ATTEMPTS [START_FILE]".into()),
    };
    if rest.len() > 1 {
        return Err("usage: racer NAME MODEL LIMIT ATTEMPTS [START_FILE]".into());
    }
    let limit: u64 = limit.parse().map_err(|e| format!("LIMIT {limit:?}: {e}"))?;
    let attempts: u64 = attempts
        .parse()
        .map_err(|e| format!("ATTEMPTS {attempts:?}: {e}"))?;

    let config = format!(
        r#"{{"backend": {}, "builtin_tiers": false,
            "limits": {{{}: {{"windows": [{{"unit": "requests", "limit": {limit}, "seconds": 3600}}]}}}}}}"#,
        json_string(&format!("shm:{name}")),
        json_string(model)
    );
    let tracker = Tracker::open(&config).map_err(|e| e.to_string())?;

    if let Some(start) = rest.first() {
        wait_for(Path::new(start), Duration::from_secs(30))?;
    }

    let mut admitted = 0;
    for _ in 0..attempts {
        if tracker
            .try_acquire(model, 1)
            .map_err(|e| e.to_string())?
            .is_granted()
        {
            admitted += 1;
        }
    }
    Ok(admitted)
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Polls every millisecond until `path` exists, for at most `max`.
fn wait_for(path: &Path, max: Duration) -> Result<(), String> {
    let deadline = Instant::now() + max;
    while !path.exists() {
        if Instant::now() >= deadline {
            return Err(format!("{} did not appear within {max:?}", path.display()));
        }
        thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(admitted) => {
            println!("admitted {admitted}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("racer: {e}");
            ExitCode::FAILURE
        }
    }
}
