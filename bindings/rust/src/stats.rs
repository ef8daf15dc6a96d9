//! Usage statistics as native data (parsed from `rt_stats_json_ex`).

use std::collections::BTreeMap;

use serde::Deserialize;

/// A tracker's usage, as returned by [`Tracker::stats`](crate::Tracker::stats)
/// and [`global_stats`](crate::global_stats).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Stats {
    /// The tier in force ("tier1", or per provider "openai=tier2,...").
    pub tier: String,
    /// Where the counters live ("memory": in-process).
    pub backend: String,
    /// Per model ("provider/model"), per window name ("requests_per_minute",
    /// "tokens_per_day", "requests_per_2s", ...), the window's usage. Every
    /// model with limits in force, and every model used, is listed.
    pub models: BTreeMap<String, BTreeMap<String, Window>>,
}

/// The usage of one window of one model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Window {
    /// Requests or tokens counted in the window now.
    pub current: u64,
    /// The window's limit; `None` when unlimited.
    pub limit: Option<u64>,
    /// What is left before the limit; `None` when unlimited.
    pub remaining: Option<u64>,
    /// `current` as a percentage of `limit` (can exceed 100 after `record`
    /// past a limit); `None` when unlimited.
    pub usage_percent: Option<f64>,
}

impl Stats {
    /// The window `window` of `model`, if listed.
    pub fn window(&self, model: &str, window: &str) -> Option<&Window> {
        self.models.get(model)?.get(window)
    }
}
