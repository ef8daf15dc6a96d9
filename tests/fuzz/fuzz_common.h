// What the fuzz targets share: a failed invariant aborts with a message (so
// libFuzzer saves the input as a crash), a manual clock for the C++
// Tracker, and the checks every target makes of stats and metrics text.
#ifndef RATETRACK_TESTS_FUZZ_FUZZ_COMMON_H_
#define RATETRACK_TESTS_FUZZ_FUZZ_COMMON_H_

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>

#include "nlohmann/json.hpp"
#include "ratetrack.h"
#include "tracker.h"

namespace rtfuzz {

[[noreturn]] inline void Fail(const char* file, int line, const std::string& what) {
  std::fprintf(stderr, "\n%s:%d: fuzz invariant failed: %s\n", file, line, what.c_str());
  std::fflush(stderr);
  std::abort();
}

#define RT_FUZZ_CHECK(cond, what)                                        \
  do {                                                                   \
    if (!(cond)) ::rtfuzz::Fail(__FILE__, __LINE__, std::string(#cond) + ": " + (what)); \
  } while (0)

// A clock the target moves by hand (monotonic and wall, in ms), for a
// ratetrack::Tracker made with clock().
struct ManualClock {
  explicit ManualClock(int64_t wall_ms) : wall(wall_ms) {}
  int64_t mono = 1000000;
  int64_t wall;
  static int64_t Mono(void* c) { return static_cast<ManualClock*>(c)->mono; }
  static int64_t Wall(void* c) { return static_cast<ManualClock*>(c)->wall; }
  ratetrack::Clock clock() {
    ratetrack::Clock c{&Mono, this, 1};
    c.wall_ms = &Wall;
    return c;
  }
};

// Text made printable for a failure message.
inline std::string Show(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

inline bool OneOf(int code, std::initializer_list<int> allowed) {
  for (int a : allowed) {
    if (a == code) return true;
  }
  return false;
}

// An invariant that depends on work in progress elsewhere can be turned off
// with RT_FUZZ_LENIENT=name1,name2 (names given where the checks are made).
inline bool Lenient(const char* name) {
  const char* env = std::getenv("RT_FUZZ_LENIENT");
  if (env == nullptr) return false;
  const std::string list = std::string(",") + env + ",";
  return list.find(std::string(",") + name + ",") != std::string::npos;
}

// Stats JSON: valid JSON (nlohmann throws on anything else, invalid UTF-8
// included), an object with "tier", "backend" and "models", and each
// limited window's "remaining" consistent with its "limit" and "current".
inline void CheckStatsJson(const char* text, const char* where) {
  RT_FUZZ_CHECK(text != nullptr, std::string(where) + ": stats JSON is NULL");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    Fail(__FILE__, __LINE__,
         std::string(where) + ": stats are not valid JSON (" + e.what() + "): " + Show(text));
  }
  if (j.is_null()) return;  // rt_stats_json(NULL) before the global exists
  RT_FUZZ_CHECK(j.is_object() && j.contains("tier") && j.contains("backend") &&
                    j["models"].is_object(),
                std::string(where) + ": " + Show(text));
  for (auto m = j["models"].begin(); m != j["models"].end(); ++m) {
    // What the provider said (a cap, a lower limit) can only lessen the room.
    const bool said = j.contains("provider") && j["provider"].contains(m.key());
    for (auto w = m.value().begin(); w != m.value().end(); ++w) {
      const nlohmann::json& v = w.value();
      const std::string at = std::string(where) + ": window " + w.key();
      RT_FUZZ_CHECK(v.contains("current") && v["current"].is_number_unsigned(), at);
      RT_FUZZ_CHECK(v["remaining"].is_null() || v["remaining"].is_number_unsigned(), at);
      if (v["limit"].is_null()) {
        RT_FUZZ_CHECK(v["remaining"].is_null() || said, at);
        continue;
      }
      const uint64_t limit = v["limit"].get<uint64_t>();
      const uint64_t current = v["current"].get<uint64_t>();
      const uint64_t room = limit > current ? limit - current : 0;
      RT_FUZZ_CHECK(v["remaining"].is_number_unsigned(), at);
      const uint64_t remaining = v["remaining"].get<uint64_t>();
      RT_FUZZ_CHECK(said ? remaining <= room : remaining == room, at);
    }
  }
}

// Prometheus text: every line a comment or a ratetrack_ sample, nothing but
// newlines as control characters (a model name with a newline or a quote
// must be escaped, not break the exposition).
inline void CheckMetricsText(const char* text, const char* where) {
  RT_FUZZ_CHECK(text != nullptr, std::string(where) + ": metrics text is NULL");
  std::string s(text);
  RT_FUZZ_CHECK(!s.empty() && s.back() == '\n', std::string(where) + ": " + Show(s));
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find('\n', start);
    const std::string line = s.substr(start, end - start);
    RT_FUZZ_CHECK(line.rfind("# ", 0) == 0 || line.rfind("ratetrack_", 0) == 0,
                  std::string(where) + ": line " + Show(line));
    for (unsigned char c : line) {
      RT_FUZZ_CHECK(c >= 0x20 && c != 0x7f, std::string(where) + ": line " + Show(line));
    }
    start = end + 1;
  }
}

// The longest wait a sliding window of `span_ms` may give, on a clock that
// lags by up to `guard_ms`: src/sliding_window.h counts ring * width ms
// back, where width = ceil((span + guard) / 60) and ring * width < span +
// guard + 2 * width (the window's documented resolution, about 1/60 of it).
inline uint64_t MaxWindowWaitMs(uint64_t span_ms, uint64_t guard_ms) {
  const uint64_t width = (span_ms + guard_ms + 59) / 60;
  return span_ms + guard_ms + 2 * width;
}

// The C API's stats and metrics of a tracker, checked.
inline void CheckTrackerOutputs(rt_tracker* t, const char* where) {
  char* stats = nullptr;
  const int rc = rt_stats_json_ex(t, &stats);
  RT_FUZZ_CHECK(rc == RT_OK, std::string(where) + ": rt_stats_json_ex returned " +
                                 std::to_string(rc) + ": " + rt_last_error());
  CheckStatsJson(stats, where);
  rt_free(stats);
  char* metrics = nullptr;
  const int mrc = rt_metrics_text(t, &metrics);
  RT_FUZZ_CHECK(mrc == RT_OK && metrics != nullptr,
                std::string(where) + ": rt_metrics_text returned " + std::to_string(mrc) + ": " +
                    rt_last_error());
  CheckMetricsText(metrics, where);
  rt_free(metrics);
}

// Valid UTF-8 (shortest form, no surrogates, at most U+10FFFF) without
// control characters (C0, DEL, C1). With IsValidModelName, the documented
// name rule (include/ratetrack.h: 1 to RT_MAX_MODEL_NAME bytes of that),
// written out on its own so the targets check the library against it
// rather than against itself.
inline bool IsPrintableUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    uint32_t cp;
    size_t n;
    if (c < 0x80) {
      cp = c;
      n = 1;
    } else if ((c & 0xe0) == 0xc0) {
      cp = c & 0x1f;
      n = 2;
    } else if ((c & 0xf0) == 0xe0) {
      cp = c & 0x0f;
      n = 3;
    } else if ((c & 0xf8) == 0xf0) {
      cp = c & 0x07;
      n = 4;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = cp << 6 | (cc & 0x3f);
    }
    static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) return false;
    i += n;
  }
  return true;
}

inline bool IsValidModelName(const std::string& s) {
  return !s.empty() && s.size() <= RT_MAX_MODEL_NAME && IsPrintableUtf8(s);
}

}  // namespace rtfuzz

#endif  // RATETRACK_TESTS_FUZZ_FUZZ_COMMON_H_
