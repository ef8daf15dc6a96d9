// Configuration: the JSON format shared by rt_open, rt_configure,
// rt_global_configure and RATETRACK_CONFIG, the built-in tier tables, and
// how a model's limits are resolved from them.
#ifndef RATETRACK_SRC_CONFIG_H_
#define RATETRACK_SRC_CONFIG_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"

namespace ratetrack {

inline constexpr uint64_t kUnlimited = UINT64_MAX;

enum class Unit : uint8_t { kRequests, kTokens };

struct WindowLimit {
  Unit unit;
  int64_t seconds;
  uint64_t limit;  // kUnlimited: no limit (the window is still tracked)
  bool operator==(const WindowLimit& o) const {
    return unit == o.unit && seconds == o.seconds && limit == o.limit;
  }
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

// "requests_per_minute", "tokens_per_day", "requests_per_2s", ...
std::string WindowName(Unit unit, int64_t seconds);

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
