// Configuration: the JSON format shared by rt_open, rt_configure,
// rt_global_configure and RATETRACK_CONFIG, the built-in tier tables, and
// how a model's limits are resolved from them.
#ifndef RATETRACK_SRC_CONFIG_H_
#define RATETRACK_SRC_CONFIG_H_

#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"

namespace ratetrack {

inline constexpr uint64_t kUnlimited = UINT64_MAX;

// What a window counts. kTokens counts input and output tokens together;
// kInputTokens and kOutputTokens count one side (Anthropic's ITPM/OTPM).
enum class Unit : uint8_t { kRequests, kTokens, kInputTokens, kOutputTokens };

// The cost of one request in each unit.
struct Cost {
  // A plain token count is input tokens (what rt_try_acquire and friends
  // pass), so the implicit conversion is the documented meaning.
  constexpr Cost(uint64_t in = 0, uint64_t out = 0) : input(in), output(out) {}  // NOLINT
  uint64_t input;
  uint64_t output;
  uint64_t In(Unit u) const {
    switch (u) {
      case Unit::kRequests: return 1;
      case Unit::kInputTokens: return input;
      case Unit::kOutputTokens: return output;
      case Unit::kTokens: break;
    }
    const uint64_t sum = input + output;
    return sum < input ? UINT64_MAX : sum;
  }
};

struct WindowLimit {
  Unit unit;
  int64_t seconds;  // the sliding window's length; 86400 for a calendar day
  uint64_t limit;   // kUnlimited: no limit (the window is still tracked)
  // Non-empty: a calendar-day window that resets at local midnight in this
  // IANA time zone (e.g. "America/Los_Angeles"), instead of sliding.
  char calendar_tz[48];
  bool calendar() const { return calendar_tz[0] != '\0'; }
  bool SameWindow(const WindowLimit& o) const {
    return unit == o.unit && seconds == o.seconds &&
           std::strncmp(calendar_tz, o.calendar_tz, sizeof calendar_tz) == 0;
  }
  bool operator==(const WindowLimit& o) const { return SameWindow(o) && limit == o.limit; }
};

// A model's windows. The first four are always requests and tokens per
// minute and per day (tracked even when unlimited, for stats); extra windows
// follow in configuration order.
struct ModelLimits {
  static constexpr int kBuiltinWindows = 4;
  static constexpr int kMaxExtraWindows = 8;
  static constexpr int kMaxWindows = kBuiltinWindows + kMaxExtraWindows;
  std::vector<WindowLimit> windows;

  static ModelLimits Unlimited();
  bool operator==(const ModelLimits& o) const { return windows == o.windows; }
};

// "requests_per_minute", "tokens_per_day", "requests_per_2s",
// "input_tokens_per_minute", "requests_per_calendar_day", ...
std::string WindowName(Unit unit, int64_t seconds, bool calendar = false);
inline std::string WindowName(const WindowLimit& w) {
  return WindowName(w.unit, w.seconds, w.calendar());
}

// The Unix time (ms) of the first local midnight after `unix_ms` in `tz`
// (the end of that local calendar day, daylight-saving changes included).
// Unknown zones fall back to UTC; the configuration refuses them earlier.
int64_t NextLocalMidnightMs(const char* tz, int64_t unix_ms);
bool IsKnownTimeZone(absl::string_view tz);

// One configuration document; absent keys are std::nullopt.
struct Config {
  std::optional<std::string> tier;
  std::optional<std::string> backend;
  std::optional<bool> builtin_tiers;
  std::optional<std::map<std::string, ModelLimits>> limits;
  std::optional<uint32_t> shm_models;  // slots of a segment created here
  std::optional<uint32_t> shm_mode;    // its permission bits
  std::optional<bool> shm_update;      // "shm_limits": "update"

  // Keys present in `patch` replace ours.
  void Merge(const Config& patch);
};

// Parses a JSON configuration (NULL or empty: an empty Config). Errors are
// ConfigError statuses naming the offending key.
absl::StatusOr<Config> ParseConfig(const char* json);

// "memory" or "shm:NAME" with a valid NAME; otherwise a ConfigError.
absl::Status CheckBackend(absl::string_view backend);

// Reads and parses the file named by RATETRACK_CONFIG, if set.
absl::StatusOr<Config> ConfigFromEnvironment();

// A parsed tier string: provider -> tier name (aliases resolved).
struct TierSelection {
  std::string text;  // as given, for stats
  std::map<std::string, std::string> by_provider;
};

// "tier1" (every provider that has it) or "openai=tier2,gemini=free".
absl::StatusOr<TierSelection> ParseTier(absl::string_view tier);

// Everything that decides a model's limits.
struct EffectiveConfig {
  TierSelection tier;
  std::string backend = "memory";  // or "shm:NAME"
  uint32_t shm_models = 512;
  uint32_t shm_mode = 0600;
  bool shm_update = false;  // this configuration's limits replace a segment's
  bool builtin_tiers = true;
  std::map<std::string, ModelLimits> limits;  // exact names and "p/*"

  // Builds from a merged Config (absent tier: "tier1").
  static absl::StatusOr<EffectiveConfig> From(const Config& c);

  ModelLimits Resolve(absl::string_view model) const;
  // Whether this configuration says anything about `model` (its own entry,
  // a built-in one, or a provider wildcard), rather than "unlimited" by
  // default. A shared segment's limits are compared only where it does.
  bool Knows(absl::string_view model) const;
  // Every model that has limits of its own (not wildcards), for stats.
  std::vector<std::string> ListedModels() const;
};

}  // namespace ratetrack

#endif  // RATETRACK_SRC_CONFIG_H_
