// Fuzz target: the JSON configuration.
//
// Input: a configuration document; optionally a NUL byte and a second one,
// applied as a patch with rt_configure. Each is parsed (ParseConfig), built
// (EffectiveConfig::From) and resolved, then handed to rt_open /
// rt_configure through the C API on a "memory" tracker. Documents that name
// a backend are not opened: the fuzzer must never create a shared-memory
// segment or connect anywhere.
//
// Invariants: nothing crashes or leaks; rt_open succeeds exactly when
// ParseConfig and EffectiveConfig::From do; codes are documented ones; a
// calendar window's time zone is a zone name, never a path; stats and
// metrics of the opened tracker are valid.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "config.h"
#include "fuzz_common.h"
#include "ratetrack.h"
#include "status.h"

namespace {

using ratetrack::Config;
using ratetrack::EffectiveConfig;

// A time zone as the configuration means it: an IANA name such as
// "America/Los_Angeles" or "Etc/GMT+1", looked up in the system's database.
// absl would also load "/etc/passwd", "file:..." or "../x" as a file.
bool LooksLikeZoneName(const char* tz) {
  if (!((tz[0] >= 'A' && tz[0] <= 'Z') || (tz[0] >= 'a' && tz[0] <= 'z'))) return false;
  for (const char* p = tz; *p != '\0'; ++p) {
    const char c = *p;
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '/' || c == '_' || c == '-' || c == '+';
    if (!ok) return false;
    if (c == '/' && (p[1] == '/' || p[1] == '\0')) return false;
  }
  return true;
}

// Parses and resolves one document; returns whether rt_open should accept it.
bool ParseAndResolve(const std::string& text, bool* names_backend) {
  auto parsed = ratetrack::ParseConfig(text.c_str());
  *names_backend = false;
  if (!parsed.ok()) {
    RT_FUZZ_CHECK(ratetrack::StatusToCode(parsed.status()) == RT_E_CONFIG,
                  std::string(parsed.status().ToString()));
    return false;
  }
  *names_backend = parsed->backend.has_value();
  Config merged;
  merged.Merge(*parsed);
  merged.Merge(*parsed);  // idempotent
  auto eff = EffectiveConfig::From(merged);
  if (!eff.ok()) {
    RT_FUZZ_CHECK(ratetrack::StatusToCode(eff.status()) == RT_E_CONFIG,
                  std::string(eff.status().ToString()));
    return false;
  }
  std::vector<std::string> names = eff->ListedModels();
  if (parsed->limits) {
    for (const auto& [name, limits] : *parsed->limits) {
      names.push_back(name);
      RT_FUZZ_CHECK(!limits.windows.empty() &&
                        limits.windows.size() <= ratetrack::ModelLimits::kMaxWindows,
                    name);
      for (const auto& w : limits.windows) {
        RT_FUZZ_CHECK(w.seconds >= 1 && w.seconds <= 31 * 86400, name);
        if (w.calendar()) {
          RT_FUZZ_CHECK(LooksLikeZoneName(w.calendar_tz),
                        "calendar_day '" + rtfuzz::Show(w.calendar_tz) +
                            "' is accepted as a time zone but is not a zone name");
        }
      }
    }
  }
  names.push_back("openai/gpt-4o-mini");
  names.push_back("nobody/unknown");
  for (const std::string& n : names) {
    const ratetrack::ModelLimits m = eff->Resolve(n);
    RT_FUZZ_CHECK(m.windows.size() >= ratetrack::ModelLimits::kBuiltinWindows, n);
    eff->Knows(n);
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16384) return -1;
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string first = input.substr(0, nul);
  const std::string second = nul == std::string::npos ? std::string() : input.substr(nul + 1);
  // Never a shared backend, however spelled ("back\u0065nd" too: the parsed
  // documents are checked below as well).
  if (input.find("backend") != std::string::npos) return -1;

  bool backend1 = false, backend2 = false;
  const bool ok1 = ParseAndResolve(first, &backend1);
  const bool ok2 = nul != std::string::npos && ParseAndResolve(second, &backend2);
  if (backend1 || backend2) return 0;

  rt_tracker* t = nullptr;
  const int rc = rt_open_ex(first.c_str(), &t);
  RT_FUZZ_CHECK(rtfuzz::OneOf(rc, {RT_OK, RT_E_CONFIG}), std::to_string(rc));
  RT_FUZZ_CHECK((rc == RT_OK) == ok1,
                "rt_open returned " + std::to_string(rc) + " (" + rt_last_error() +
                    ") where ParseConfig/From said " + (ok1 ? "ok" : "error"));
  if (rc != RT_OK) {
    RT_FUZZ_CHECK(t == nullptr, "handle set on failure");
    return 0;
  }
  rtfuzz::CheckTrackerOutputs(t, "after rt_open");
  rt_try_acquire(t, "openai/gpt-4o-mini", 10, nullptr);
  if (nul != std::string::npos) {
    const int crc = rt_configure(t, second.c_str());
    RT_FUZZ_CHECK(rtfuzz::OneOf(crc, {RT_OK, RT_E_CONFIG}), std::to_string(crc));
    if (!ok2) RT_FUZZ_CHECK(crc == RT_E_CONFIG, "rt_configure took a document ParseConfig refused");
    rtfuzz::CheckTrackerOutputs(t, "after rt_configure");
  }
  rt_close(t);
  return 0;
}
