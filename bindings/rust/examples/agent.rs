//! An "agent" and two "tools" sharing openai/gpt-4o-mini through the GLOBAL
//! tracker, as separate threads of one process. LLM calls are simulated (no
//! network): each acquires with an estimate, "calls" the model, then settles
//! the grant to the tokens really used. Prints the global's stats at the end.
//!
//!     RATETRACK_LIBRARY=/path/to/libratetrack.so.0 cargo run --example agent

use std::thread;
use std::time::Duration;

use ratetrack::{global_stats, Tracker};

const MODEL: &str = "openai/gpt-4o-mini";

/// A stand-in for an LLM call: returns the tokens "used" (prompt + answer).
fn fake_llm_call(prompt: &str, step: u64) -> u64 {
    thread::sleep(Duration::from_millis(5));
    prompt.len() as u64 * 4 + 50 + step * 7 % 200
}

/// One worker: `calls` simulated requests through the global tracker.
fn worker(name: &'static str, calls: u64) -> ratetrack::Result<u64> {
    let tracker = Tracker::global(None)?; // the same global for every thread
    let mut used = 0;
    for step in 0..calls {
        let prompt = format!("{name}: step {step}, summarise the findings so far");
        let estimate = 1_000; // prompt + max_tokens
        let grant = match tracker.acquire(MODEL, estimate, Some(Duration::from_secs(5)))? {
            Some(grant) => grant,
            None => {
                println!("{name}: gave up waiting for capacity at step {step}");
                break;
            }
        };
        let actual = fake_llm_call(&prompt, step);
        tracker.settle(&grant, actual)?; // refund what the estimate overshot
        used += actual;
    }
    Ok(used)
}

fn main() -> ratetrack::Result<()> {
    let version = ratetrack::version()?;
    println!(
        "libratetrack {} loaded from {}",
        version.string, version.origin
    );
    Tracker::global(Some("tier1"))?; // create the global with the tier1 limits

    let handles: Vec<_> = [("agent", 40), ("search-tool", 25), ("code-tool", 15)]
        .into_iter()
        .map(|(name, calls)| (name, thread::spawn(move || worker(name, calls))))
        .collect();
    for (name, h) in handles {
        let used = h.join().expect("worker panicked")?;
        println!("{name}: {used} tokens");
    }

    let stats = global_stats()?.expect("the global exists");
    println!("tier {} on backend {}", stats.tier, stats.backend);
    for (window, w) in &stats.models[MODEL] {
        let limit = w.limit.map_or("unlimited".to_string(), |l| l.to_string());
        let pct = w
            .usage_percent
            .map_or("-".to_string(), |p| format!("{p:.2}%"));
        println!("  {MODEL} {window:<20} {:>7} / {limit:<9} {pct}", w.current);
    }
    Ok(())
}
