//! Usage statistics as native data (parsed from `rt_stats_json_ex`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::json::{Fields, FromJson, Value};

/// A tracker's usage, as returned by [`Tracker::stats`](crate::Tracker::stats)
/// and [`global_stats`](crate::global_stats).
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// The tier in force ("tier1", or per provider "openai=tier2,...").
    pub tier: String,
    /// Where the counters live ("memory": in-process).
    pub backend: String,
    /// Per model ("provider/model"), per window name ("requests_per_minute",
    /// "tokens_per_day", "requests_per_2s", ...), the window's usage. Every
    /// model with limits in force, and every model used, is listed.
    pub models: BTreeMap<String, BTreeMap<String, Window>>,
    /// What the providers said, per model: the last rate-limit headers fed
    /// to [`Tracker::observe_headers`](crate::Tracker::observe_headers) and
    /// any 429 block from [`Tracker::report_limited`](crate::Tracker::report_limited).
    /// Only models with something to report are listed (empty when none).
    pub provider: BTreeMap<String, ProviderModel>,
}

/// The usage of one window of one model.
#[derive(Debug, Clone, PartialEq)]
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
    /// The provider's own limit for this window's unit, when its headers
    /// reported one that differs from the configured `limit` (shown, not
    /// adopted; on the per-minute window).
    pub observed_limit: Option<u64>,
    /// For a calendar-day window (`..._per_calendar_day`), the IANA zone
    /// whose local midnight resets it ("America/Los_Angeles").
    pub resets_at_midnight: Option<String>,
}

/// What a provider reported for one model (the `"provider"` stats object).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderModel {
    /// Milliseconds the model is still refused after a reported 429
    /// (0: not blocked).
    pub blocked_for_ms: u64,
    /// The requests the provider reported (`x-ratelimit-*-requests`, ...).
    pub requests: Option<ProviderWindow>,
    /// The tokens the provider reported (input and output together).
    pub tokens: Option<ProviderWindow>,
    /// The input tokens the provider reported (Anthropic's `input-tokens`).
    pub input_tokens: Option<ProviderWindow>,
    /// The output tokens the provider reported (Anthropic's `output-tokens`).
    pub output_tokens: Option<ProviderWindow>,
}

impl ProviderModel {
    /// How long the model is still refused after a reported 429.
    pub fn blocked_for(&self) -> Duration {
        Duration::from_millis(self.blocked_for_ms)
    }
}

/// One unit (requests, tokens, ...) as the provider last reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderWindow {
    /// What the provider said remains until its reset (`None`: no report
    /// in force, e.g. only a limit was reported, or the reset has passed).
    pub remaining: Option<u64>,
    /// Milliseconds until the provider's reset (`None` with `remaining`).
    pub reset_in_ms: Option<u64>,
    /// The provider's own limit (`None`: not reported).
    pub limit: Option<u64>,
}

impl ProviderWindow {
    /// How long until the provider's reset, if a report is in force.
    pub fn reset_in(&self) -> Option<Duration> {
        self.reset_in_ms.map(Duration::from_millis)
    }
}

impl Stats {
    /// The window `window` of `model`, if listed.
    pub fn window(&self, model: &str, window: &str) -> Option<&Window> {
        self.models.get(model)?.get(window)
    }

    /// What the provider reported for `model`, if anything.
    pub fn provider(&self, model: &str) -> Option<&ProviderModel> {
        self.provider.get(model)
    }
}

impl FromJson for Stats {
    fn from_json(v: &Value) -> Result<Self, String> {
        let f = Fields::of(v)?;
        Ok(Stats {
            tier: f.get("tier")?,
            backend: f.get("backend")?,
            models: f.get("models")?,
            provider: f.get_or_default("provider")?,
        })
    }
}

impl FromJson for Window {
    fn from_json(v: &Value) -> Result<Self, String> {
        let f = Fields::of(v)?;
        Ok(Window {
            current: f.get("current")?,
            limit: f.get("limit")?,
            remaining: f.get("remaining")?,
            usage_percent: f.get("usage_percent")?,
            observed_limit: f.get("observed_limit")?,
            resets_at_midnight: f.get("resets_at_midnight")?,
        })
    }
}

impl FromJson for ProviderModel {
    fn from_json(v: &Value) -> Result<Self, String> {
        let f = Fields::of(v)?;
        Ok(ProviderModel {
            blocked_for_ms: f.get_or_default("blocked_for_ms")?,
            requests: f.get("requests")?,
            tokens: f.get("tokens")?,
            input_tokens: f.get("input_tokens")?,
            output_tokens: f.get("output_tokens")?,
        })
    }
}

impl FromJson for ProviderWindow {
    fn from_json(v: &Value) -> Result<Self, String> {
        let f = Fields::of(v)?;
        Ok(ProviderWindow {
            remaining: f.get("remaining")?,
            reset_in_ms: f.get("reset_in_ms")?,
            limit: f.get("limit")?,
        })
    }
}
