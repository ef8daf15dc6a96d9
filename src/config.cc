#include "config.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/ascii.h"
#include "model_name.h"
#include "nlohmann/json.hpp"
#include "redis/store.h"
#include "shm_segment.h"
#include "status.h"
#include "absl/strings/match.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"

namespace ratetrack {

extern const char kBuiltinTiersJson[];  // generated from data/tiers.json

namespace {

using nlohmann::json;

constexpr int64_t kMinute = 60;
constexpr int64_t kDay = 86400;
constexpr int64_t kMaxWindowSeconds = 31 * kDay;

// Built-in tables: provider -> tier -> model (without provider) -> limits.
struct BuiltinTables {
  std::map<std::string, std::map<std::string, std::map<std::string, ModelLimits>>>
      tiers;
  std::map<std::string, std::map<std::string, std::string>> aliases;
};

std::string KeyPath(absl::string_view a, absl::string_view b) {
  return absl::StrCat(a, ".", b);
}

// Reads a limit value: a non-negative integer, or null (unlimited).
absl::StatusOr<uint64_t> ParseLimit(const json& v, const std::string& key) {
  if (v.is_null()) return kUnlimited;
  if (v.is_number_unsigned()) {
    uint64_t n = v.get<uint64_t>();
    if (n == kUnlimited) {
      return ConfigError(absl::StrCat("config key '", key,
                                      "': limit too large (use null for unlimited)"));
    }
    return n;
  }
  if (v.is_number_integer()) {
    return ConfigError(absl::StrCat("config key '", key,
                                    "': limit must not be negative (use null for unlimited)"));
  }
  return ConfigError(absl::StrCat("config key '", key,
                                  "': limit must be a non-negative integer or null, not ",
                                  v.dump()));
}

WindowLimit MakeWindow(Unit unit, int64_t seconds, uint64_t limit, const std::string& tz = "") {
  WindowLimit w{unit, seconds, limit, {}};
  std::strncpy(w.calendar_tz, tz.c_str(), sizeof w.calendar_tz - 1);
  return w;
}

// Sets or adds `w` in `m`, refusing a second definition of the same window.
absl::Status SetWindow(ModelLimits& m, const WindowLimit& w, const std::string& key,
                       std::set<std::string>& seen) {
  if (!seen.insert(WindowName(w)).second) {
    return ConfigError(absl::StrCat("config key '", key, "': the window ", WindowName(w),
                                    " is defined twice"));
  }
  for (auto& have : m.windows) {
    if (have.SameWindow(w)) {
      have.limit = w.limit;
      return absl::OkStatus();
    }
  }
  if (static_cast<int>(m.windows.size()) >= ModelLimits::kMaxWindows) {
    return ConfigError(absl::StrCat("config key '", key, "': more than ",
                                    ModelLimits::kMaxExtraWindows, " extra windows"));
  }
  m.windows.push_back(w);
  return absl::OkStatus();
}

// Parses one model's limits object. `builtin` also accepts "rpd_calendar"
// (the built-in tables' way to say the day resets at local midnight).
absl::StatusOr<ModelLimits> ParseModelLimits(const json& v, const std::string& key,
                                             bool builtin) {
  if (!v.is_object()) {
    return ConfigError(absl::StrCat("config key '", key,
                                    "': must be an object such as {\"rpm\": 500}"));
  }
  ModelLimits m = ModelLimits::Unlimited();
  std::set<std::string> seen;
  static const struct {
    const char* name;
    Unit unit;
    int64_t seconds;
  } kShort[] = {{"rpm", Unit::kRequests, kMinute},        {"tpm", Unit::kTokens, kMinute},
                {"rpd", Unit::kRequests, kDay},           {"tpd", Unit::kTokens, kDay},
                {"itpm", Unit::kInputTokens, kMinute},    {"otpm", Unit::kOutputTokens, kMinute},
                {"itpd", Unit::kInputTokens, kDay},       {"otpd", Unit::kOutputTokens, kDay}};
  std::string rpd_calendar;
  if (builtin && v.contains("rpd_calendar")) {
    if (!v["rpd_calendar"].is_string() || !IsKnownTimeZone(v["rpd_calendar"].get<std::string>())) {
      return ConfigError(absl::StrCat("config key '", key, ".rpd_calendar': unknown time zone"));
    }
    rpd_calendar = v["rpd_calendar"].get<std::string>();
  }
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string k = KeyPath(key, it.key());
    if (builtin && it.key() == "rpd_calendar") continue;
    bool known = false;
    for (const auto& s : kShort) {
      if (it.key() != s.name) continue;
      auto limit = ParseLimit(it.value(), k);
      if (!limit.ok()) return limit.status();
      // A calendar day: the sliding day stays unlimited, a calendar window
      // carries the limit.
      const bool calendar = !rpd_calendar.empty() && std::string(s.name) == "rpd";
      auto st = SetWindow(m, MakeWindow(s.unit, s.seconds, *limit, calendar ? rpd_calendar : ""),
                          k, seen);
      if (!st.ok()) return st;
      known = true;
    }
    if (known) continue;
    if (it.key() != "windows") {
      return ConfigError(absl::StrCat(
          "unknown config key '", k,
          "' (expected rpm, tpm, rpd, tpd, itpm, otpm, itpd, otpd or windows)"));
    }
    if (!it.value().is_array()) {
      return ConfigError(absl::StrCat("config key '", k, "': must be an array"));
    }
    int index = 0;
    for (const json& w : it.value()) {
      const std::string wk = absl::StrCat(k, "[", index++, "]");
      if (!w.is_object()) {
        return ConfigError(absl::StrCat("config key '", wk, "': must be an object"));
      }
      std::optional<Unit> unit;
      std::optional<int64_t> seconds;
      std::optional<uint64_t> limit;
      std::string tz;
      for (auto f = w.begin(); f != w.end(); ++f) {
        const std::string fk = KeyPath(wk, f.key());
        if (f.key() == "unit") {
          if (f.value() == "requests") unit = Unit::kRequests;
          else if (f.value() == "tokens") unit = Unit::kTokens;
          else if (f.value() == "input_tokens") unit = Unit::kInputTokens;
          else if (f.value() == "output_tokens") unit = Unit::kOutputTokens;
          else return ConfigError(absl::StrCat(
                   "config key '", fk,
                   "': must be \"requests\", \"tokens\", \"input_tokens\" or \"output_tokens\""));
        } else if (f.key() == "seconds") {
          if (!f.value().is_number_unsigned() || f.value().get<uint64_t>() < 1 ||
              f.value().get<uint64_t>() > static_cast<uint64_t>(kMaxWindowSeconds)) {
            return ConfigError(absl::StrCat("config key '", fk,
                                            "': must be a whole number of seconds from 1 to ",
                                            kMaxWindowSeconds));
          }
          seconds = f.value().get<int64_t>();
        } else if (f.key() == "calendar_day") {
          if (!f.value().is_string() || f.value().get<std::string>().empty() ||
              f.value().get<std::string>().size() >= sizeof(WindowLimit{}.calendar_tz) ||
              !IsKnownTimeZone(f.value().get<std::string>())) {
            return ConfigError(absl::StrCat(
                "config key '", fk,
                "': must name a time zone of the system's database, e.g. \"America/Los_Angeles\""));
          }
          tz = f.value().get<std::string>();
        } else if (f.key() == "limit") {
          auto l = ParseLimit(f.value(), fk);
          if (!l.ok()) return l.status();
          limit = *l;
        } else {
          return ConfigError(absl::StrCat("unknown config key '", fk,
                                          "' (expected unit, limit, seconds or calendar_day)"));
        }
      }
      if (!tz.empty() && seconds) {
        return ConfigError(absl::StrCat("config key '", wk,
                                        "': \"seconds\" and \"calendar_day\" exclude each other"));
      }
      if (!tz.empty()) seconds = kDay;
      if (!unit || !seconds || !limit) {
        return ConfigError(absl::StrCat(
            "config key '", wk, "': needs \"unit\", \"limit\" and \"seconds\" (or \"calendar_day\")"));
      }
      auto st = SetWindow(m, MakeWindow(*unit, *seconds, *limit, tz), wk, seen);
      if (!st.ok()) return st;
    }
  }
  return m;
}

BuiltinTables LoadBuiltinTables() {
  BuiltinTables t;
  json doc = json::parse(kBuiltinTiersJson, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) std::abort();  // the build embeds a checked file
  for (auto p = doc.begin(); p != doc.end(); ++p) {
    const json& prov = p.value();
    if (prov.contains("aliases")) {
      for (auto a = prov["aliases"].begin(); a != prov["aliases"].end(); ++a) {
        t.aliases[p.key()][a.key()] = a.value().get<std::string>();
      }
    }
    for (auto tier = prov["tiers"].begin(); tier != prov["tiers"].end(); ++tier) {
      auto& models = t.tiers[p.key()][tier.key()];
      for (auto m = tier.value().begin(); m != tier.value().end(); ++m) {
        auto limits = ParseModelLimits(m.value(), m.key(), /*builtin=*/true);
        if (!limits.ok()) std::abort();  // tests/tiers_test checks the file
        models[m.key()] = *limits;
      }
    }
  }
  return t;
}

// Parsed once, at library load, so no lock is ever needed (nor held at fork).
const BuiltinTables& Builtins() {
  static const BuiltinTables* tables = new BuiltinTables(LoadBuiltinTables());
  return *tables;
}
[[maybe_unused]] const BuiltinTables& kLoadAtStartup = Builtins();

absl::string_view ProviderOf(absl::string_view model) {
  size_t slash = model.find('/');
  return slash == absl::string_view::npos ? absl::string_view() : model.substr(0, slash);
}

}  // namespace

ModelLimits ModelLimits::Unlimited() {
  ModelLimits m;
  m.windows = {MakeWindow(Unit::kRequests, kMinute, kUnlimited),
               MakeWindow(Unit::kTokens, kMinute, kUnlimited),
               MakeWindow(Unit::kRequests, kDay, kUnlimited),
               MakeWindow(Unit::kTokens, kDay, kUnlimited)};
  return m;
}

std::string WindowName(Unit unit, int64_t seconds, bool calendar) {
  const char* u = unit == Unit::kRequests       ? "requests"
                  : unit == Unit::kTokens       ? "tokens"
                  : unit == Unit::kInputTokens  ? "input_tokens"
                                                : "output_tokens";
  if (calendar) return absl::StrCat(u, "_per_calendar_day");
  if (seconds == kMinute) return absl::StrCat(u, "_per_minute");
  if (seconds == kDay) return absl::StrCat(u, "_per_day");
  return absl::StrCat(u, "_per_", seconds, "s");
}

bool IsKnownTimeZone(absl::string_view tz) {
  // A name of the system's zone database ("America/Los_Angeles",
  // "Etc/GMT+1"), never a path: absl would also load "/etc/passwd",
  // "file:...", "../x" or a named pipe (and wait on it) as a zone file.
  if (tz.empty() || !absl::ascii_isalpha(static_cast<unsigned char>(tz[0]))) return false;
  for (size_t i = 0; i < tz.size(); ++i) {
    const char c = tz[i];
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '/' && c != '_' &&
        c != '-' && c != '+') {
      return false;
    }
    if (c == '/' && (i + 1 == tz.size() || tz[i + 1] == '/')) return false;
  }
  absl::TimeZone zone;
  return absl::LoadTimeZone(std::string(tz), &zone);
}

int64_t NextLocalMidnightMs(const char* tz, int64_t unix_ms) {
  // Zones are loaded rarely (a window's day ends once a day); absl caches them.
  absl::TimeZone zone;
  if (!absl::LoadTimeZone(tz, &zone)) zone = absl::UTCTimeZone();
  const absl::Time now = absl::FromUnixMillis(unix_ms);
  const absl::CivilDay tomorrow = absl::ToCivilDay(now, zone) + 1;
  return absl::ToUnixMillis(absl::FromCivil(tomorrow, zone));
}

void Config::Merge(const Config& patch) {
  if (patch.tier) tier = patch.tier;
  if (patch.backend) backend = patch.backend;
  if (patch.builtin_tiers) builtin_tiers = patch.builtin_tiers;
  if (patch.limits) limits = patch.limits;
  if (patch.shm_models) shm_models = patch.shm_models;
  if (patch.shm_mode) shm_mode = patch.shm_mode;
  if (patch.shm_update) shm_update = patch.shm_update;
}

absl::StatusOr<Config> ParseConfig(const char* text) {
  Config c;
  if (text == nullptr || *text == '\0') return c;
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return ConfigError("configuration is not valid JSON");
  }
  if (!doc.is_object()) {
    return ConfigError("configuration must be a JSON object");
  }
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "tier") {
      if (!v.is_string()) return ConfigError("config key 'tier': must be a string");
      auto sel = ParseTier(v.get<std::string>());
      if (!sel.ok()) return sel.status();
      c.tier = v.get<std::string>();
    } else if (key == "backend") {
      if (!v.is_string()) return ConfigError("config key 'backend': must be a string");
      std::string b = v.get<std::string>();
      auto st = CheckBackend(b);
      if (!st.ok()) return st;
      c.backend = b;
    } else if (key == "shm_models") {
      if (!v.is_number_unsigned() || v.get<uint64_t>() < 1 || v.get<uint64_t>() > (1u << 20)) {
        return ConfigError("config key 'shm_models': must be a whole number from 1 to 1048576");
      }
      c.shm_models = v.get<uint32_t>();
    } else if (key == "shm_mode") {
      static const std::map<std::string, uint32_t> kModes = {
          {"0600", 0600}, {"0640", 0640}, {"0660", 0660}};
      auto m = v.is_string() ? kModes.find(v.get<std::string>()) : kModes.end();
      if (m == kModes.end()) {
        return ConfigError("config key 'shm_mode': must be \"0600\" (this user), "
                           "\"0640\" or \"0660\" (this user's group too)");
      }
      c.shm_mode = m->second;
    } else if (key == "shm_limits") {
      if (v != "segment" && v != "update") {
        return ConfigError("config key 'shm_limits': must be \"segment\" (the segment's "
                           "limits stand; a different configuration is an error) or "
                           "\"update\" (this configuration's limits replace them)");
      }
      c.shm_update = v == "update";
    } else if (key == "builtin_tiers") {
      if (!v.is_boolean()) return ConfigError("config key 'builtin_tiers': must be true or false");
      c.builtin_tiers = v.get<bool>();
    } else if (key == "limits") {
      if (!v.is_object()) return ConfigError("config key 'limits': must be an object");
      std::map<std::string, ModelLimits> limits;
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (absl::Status name = CheckModelName(m.key()); !name.ok()) {
          return ConfigError(absl::StrCat("config key 'limits': ", name.message()));
        }
        if (m.key().find('*') != std::string::npos &&
            (m.key().size() < 3 || m.key().compare(m.key().size() - 2, 2, "/*") != 0 ||
             m.key().find('*') != m.key().size() - 1 ||
             m.key().find('/') != m.key().size() - 2)) {
          return ConfigError(absl::StrCat("config key 'limits.", m.key(),
                                          "': a wildcard must be \"provider/*\""));
        }
        auto ml = ParseModelLimits(m.value(), KeyPath("limits", m.key()), /*builtin=*/false);
        if (!ml.ok()) return ml.status();
        limits[m.key()] = std::move(*ml);
      }
      c.limits = std::move(limits);
    } else {
      return ConfigError(absl::StrCat("unknown config key '", key,
                                      "' (expected tier, backend, builtin_tiers, limits, "
                                      "shm_models, shm_mode, shm_limits)"));
    }
  }
  return c;
}

absl::Status CheckBackend(absl::string_view b) {
  if (b == "memory") return absl::OkStatus();
  if (absl::StartsWith(b, "shm:")) {
    absl::Status st = ShmSegment::CheckName(b.substr(4));
    if (!st.ok()) return ConfigError(absl::StrCat("config key 'backend': ", st.message()));
    return absl::OkStatus();
  }
  if (IsRedisUrl(b)) {
    auto url = ParseRedisUrl(b);
    return url.ok() ? absl::OkStatus() : url.status();
  }
  // Never echo a URL that may carry a password: only what comes before its
  // first ':' (a scheme), and nothing when an '@' comes first ("pw@host").
  const size_t end = b.find_first_of(":@");
  const absl::string_view shown =
      end != absl::string_view::npos && b[end] == '@' ? absl::string_view() : b.substr(0, end);
  return ConfigError(absl::StrCat("config key 'backend': unsupported backend '", shown,
                                  "...' (expected \"memory\", \"shm:NAME\", "
                                  "\"redis://host:port\" or \"redis+unix:///path\")"));
}

absl::StatusOr<Config> ConfigFromEnvironment() {
  const char* path = std::getenv("RATETRACK_CONFIG");
  if (path == nullptr || *path == '\0') return Config();
  std::ifstream in(path);
  if (!in) {
    return ConfigError(absl::StrCat("RATETRACK_CONFIG: cannot read '", path,
                                    "': ", std::strerror(errno)));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  auto c = ParseConfig(ss.str().c_str());
  if (!c.ok()) {
    return ConfigError(absl::StrCat("RATETRACK_CONFIG '", path, "': ", c.status().message()));
  }
  return c;
}

absl::StatusOr<TierSelection> ParseTier(absl::string_view tier) {
  const BuiltinTables& b = Builtins();
  TierSelection sel;
  sel.text = std::string(tier);
  auto resolve = [&](const std::string& provider, std::string name) -> bool {
    auto al = b.aliases.find(provider);
    if (al != b.aliases.end()) {
      auto a = al->second.find(name);
      if (a != al->second.end()) name = a->second;
    }
    auto p = b.tiers.find(provider);
    if (p == b.tiers.end() || p->second.count(name) == 0) return false;
    sel.by_provider[provider] = name;
    return true;
  };
  if (tier.empty()) return ConfigError("tier: empty tier name");
  if (tier.find('=') == absl::string_view::npos) {
    std::string name(absl::StripAsciiWhitespace(tier));
    bool any = false;
    for (const auto& p : b.tiers) any |= resolve(p.first, name);
    if (!any) {
      return ConfigError(absl::StrCat("tier: unknown tier '", tier,
                                      "' (no provider has it; known: free, tier1 ... tier5)"));
    }
    return sel;
  }
  for (absl::string_view part : absl::StrSplit(tier, ',')) {
    std::vector<std::string> kv =
        absl::StrSplit(absl::StripAsciiWhitespace(part), absl::MaxSplits('=', 1));
    if (kv.size() != 2 || kv[0].empty() || kv[1].empty()) {
      return ConfigError(absl::StrCat("tier: '", part, "' is not provider=tier"));
    }
    if (b.tiers.count(kv[0]) == 0) {
      return ConfigError(absl::StrCat("tier: unknown provider '", kv[0],
                                      "' (known: anthropic, gemini, openai)"));
    }
    if (!resolve(kv[0], kv[1])) {
      return ConfigError(absl::StrCat("tier: provider '", kv[0], "' has no tier '",
                                      kv[1], "'"));
    }
  }
  return sel;
}

absl::StatusOr<EffectiveConfig> EffectiveConfig::From(const Config& c) {
  EffectiveConfig e;
  auto sel = ParseTier(c.tier.value_or("tier1"));
  if (!sel.ok()) return sel.status();
  e.tier = std::move(*sel);
  if (c.backend) e.backend = *c.backend;
  if (c.shm_models) e.shm_models = *c.shm_models;
  if (c.shm_mode) e.shm_mode = *c.shm_mode;
  if (c.shm_update) e.shm_update = *c.shm_update;
  if (c.builtin_tiers) e.builtin_tiers = *c.builtin_tiers;
  if (c.limits) e.limits = *c.limits;
  return e;
}

ModelLimits EffectiveConfig::Resolve(absl::string_view model) const {
  auto exact = limits.find(std::string(model));
  if (exact != limits.end()) return exact->second;
  absl::string_view provider = ProviderOf(model);
  if (builtin_tiers && !provider.empty()) {
    auto t = tier.by_provider.find(std::string(provider));
    if (t != tier.by_provider.end()) {
      const auto& table = Builtins().tiers.at(t->first).at(t->second);
      auto m = table.find(std::string(model.substr(provider.size() + 1)));
      if (m != table.end()) return m->second;
    }
  }
  if (!provider.empty()) {
    auto wild = limits.find(absl::StrCat(provider, "/*"));
    if (wild != limits.end()) return wild->second;
  }
  return ModelLimits::Unlimited();
}

bool EffectiveConfig::Knows(absl::string_view model) const {
  if (limits.count(std::string(model)) != 0) return true;
  absl::string_view provider = ProviderOf(model);
  if (provider.empty()) return false;
  if (builtin_tiers) {
    auto t = tier.by_provider.find(std::string(provider));
    if (t != tier.by_provider.end() &&
        Builtins().tiers.at(t->first).at(t->second).count(
            std::string(model.substr(provider.size() + 1))) != 0) {
      return true;
    }
  }
  return limits.count(absl::StrCat(provider, "/*")) != 0;
}

std::vector<std::string> EffectiveConfig::ListedModels() const {
  std::set<std::string> out;
  for (const auto& [name, l] : limits) {
    if (name.back() != '*') out.insert(name);
  }
  if (builtin_tiers) {
    for (const auto& [provider, tier_name] : tier.by_provider) {
      for (const auto& [m, l] : Builtins().tiers.at(provider).at(tier_name)) {
        out.insert(absl::StrCat(provider, "/", m));
      }
    }
  }
  return {out.begin(), out.end()};
}

}  // namespace ratetrack
