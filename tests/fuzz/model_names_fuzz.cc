// Fuzz target: model names through the C API.
//
// Input: model names separated by NUL bytes (the first 8). Every name goes
// through every C function that takes one, on a fresh memory tracker; the
// stats and metrics are checked after each call, and rt_pick takes them
// all at the end.
//
// Invariants: no crash, leak or UB; every code is one the header documents
// for that function; a name is refused (RT_E_INVALID) exactly when the
// header's rule says it is not a name (1 to RT_MAX_MODEL_NAME bytes of
// UTF-8 without control characters; checked here by an independent
// implementation); rt_last_error is printable UTF-8; stats are valid JSON,
// list every model used under its own name, and metrics are well-formed.
//
// RT_FUZZ_LENIENT=names skips the name rule (for a library without it).
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "nlohmann/json.hpp"
#include "ratetrack.h"
#include "tracker.h"

namespace {

const char kConfig[] = R"({"builtin_tiers": false, "limits": {
    "openai/gpt-4o-mini": {"rpm": 500, "tpm": 200000},
    "fuzz/*": {"rpm": 3, "tpm": 1000, "itpm": 800, "otpm": 200}}})";

bool g_check_names = true;
const uint64_t g_max_wait =
    rtfuzz::MaxWindowWaitMs(60000, ratetrack::Clock::Monotonic().resolution_ms);

void CheckName(const std::string& name, int rc, const char* fn) {
  if (rc == RT_E_INVALID || rc < 0) {
    const std::string err = rt_last_error();
    RT_FUZZ_CHECK(rtfuzz::IsPrintableUtf8(err),
                  std::string(fn) + ": rt_last_error is not printable UTF-8: " + rtfuzz::Show(err));
  }
  if (!g_check_names) return;
  const bool valid = rtfuzz::IsValidModelName(name);
  RT_FUZZ_CHECK((rc == RT_E_INVALID) == !valid,
                std::string(fn) + " returned " + std::to_string(rc) + " for the " +
                    (valid ? "valid" : "invalid") + " name '" + rtfuzz::Show(name) + "': " +
                    rt_last_error());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_check_names = !rtfuzz::Lenient("names");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return -1;
  std::vector<std::string> names;
  {
    const std::string input(reinterpret_cast<const char*>(data), size);
    size_t start = 0;
    while (start <= input.size() && names.size() < 8) {
      size_t end = input.find('\0', start);
      if (end == std::string::npos) end = input.size();
      names.push_back(input.substr(start, end - start));
      start = end + 1;
    }
  }
  rt_tracker* t = rt_open(kConfig);
  RT_FUZZ_CHECK(t != nullptr, rt_last_error());
  std::set<std::string> used;
  for (const std::string& name : names) {
    const char* m = name.c_str();
    uint64_t wait = 7, grant = 7;
    int rc = rt_try_acquire(t, m, 5, &wait);
    RT_FUZZ_CHECK(rtfuzz::OneOf(rc, {RT_OK, RT_LIMITED, RT_E_TOO_LARGE, RT_E_INVALID, RT_E_NOMEM}),
                  std::to_string(rc));
    CheckName(name, rc, "rt_try_acquire");
    if (rc == RT_OK || rc == RT_LIMITED) used.insert(name);
    RT_FUZZ_CHECK(rc != RT_OK || wait == 0, std::to_string(wait));
    // The longest window here is a minute (a 429 of a second, a cap of 2 s).
    RT_FUZZ_CHECK(rc != RT_LIMITED || (wait > 0 && wait <= g_max_wait), std::to_string(wait));
    rtfuzz::CheckTrackerOutputs(t, "after rt_try_acquire");

    rc = rt_record(t, m, 3);
    RT_FUZZ_CHECK(rtfuzz::OneOf(rc, {RT_OK, RT_E_INVALID, RT_E_NOMEM}), std::to_string(rc));
    CheckName(name, rc, "rt_record");
    rtfuzz::CheckTrackerOutputs(t, "after rt_record");

    rc = rt_can_make(t, m, 2);
    RT_FUZZ_CHECK(rtfuzz::OneOf(rc, {1, 0, RT_E_TOO_LARGE, RT_E_INVALID, RT_E_NOMEM}),
                  std::to_string(rc));
    CheckName(name, rc, "rt_can_make");

    rc = rt_wait_time(t, m, 2, &wait);
    RT_FUZZ_CHECK(rtfuzz::OneOf(rc, {RT_OK, RT_E_TOO_LARGE, RT_E_INVALID, RT_E_NOMEM}),
                  std::to_string(rc));
    CheckName(name, rc, "rt_wait_time");

    rc = rt_try_acquire_grant(t, m, 10, &wait, &grant);
    RT_FUZZ_CHECK(rtfuzz::OneOf(rc, {RT_OK, RT_LIMITED, RT_E_TOO_LARGE, RT_E_INVALID, RT_E_NOMEM}),
                  std::to_string(rc));
    CheckName(name, rc, "rt_try_acquire_grant");
    RT_FUZZ_CHECK((rc == RT_OK) == (grant != 0), "grant " + std::to_string(grant));
    if (rc == RT_OK) {
      const int src = rt_settle(t, m, grant, 10, 4);
      RT_FUZZ_CHECK(src == RT_OK, std::to_string(src) + ": " + rt_last_error());
      rtfuzz::CheckTrackerOutputs(t, "after rt_settle");
    } else {
      const int src = rt_settle(t, m, 12345, 10, 4);
      RT_FUZZ_CHECK(rtfuzz::OneOf(src, {RT_E_INVALID, RT_E_NOMEM}), std::to_string(src));
    }

    rc = rt_record_tokens(t, m, 3, 4);
    RT_FUZZ_CHECK(rtfuzz::OneOf(rc, {RT_OK, RT_E_INVALID, RT_E_NOMEM}), std::to_string(rc));
    CheckName(name, rc, "rt_record_tokens");

    rc = rt_try_acquire_io(t, m, 3, 4, &wait, &grant);
    RT_FUZZ_CHECK(rtfuzz::OneOf(rc, {RT_OK, RT_LIMITED, RT_E_TOO_LARGE, RT_E_INVALID, RT_E_NOMEM}),
                  std::to_string(rc));
    CheckName(name, rc, "rt_try_acquire_io");
    if (rc == RT_OK) {
      const int src = rt_settle_io(t, m, grant, 3, 4, 1, 9);
      RT_FUZZ_CHECK(src == RT_OK, std::to_string(src) + ": " + rt_last_error());
    }

    const char* hn[] = {"x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"};
    const char* hv[] = {"100", "2s"};
    rc = rt_observe_headers(t, m, hn, hv, 2);
    RT_FUZZ_CHECK(rtfuzz::OneOf(rc, {RT_OK, RT_E_INVALID, RT_E_NOMEM}), std::to_string(rc));
    CheckName(name, rc, "rt_observe_headers");
    rtfuzz::CheckTrackerOutputs(t, "after rt_observe_headers");

    rc = rt_report_limited(t, m, "1");
    RT_FUZZ_CHECK(rtfuzz::OneOf(rc, {RT_OK, RT_E_INVALID, RT_E_NOMEM}), std::to_string(rc));
    CheckName(name, rc, "rt_report_limited");
    rtfuzz::CheckTrackerOutputs(t, "after rt_report_limited");
  }

  std::vector<const char*> cands;
  bool all_valid = true;
  for (const std::string& n : names) {
    cands.push_back(n.c_str());
    all_valid &= rtfuzz::IsValidModelName(n);
  }
  size_t picked = 99;
  uint64_t wait = 0, grant = 0;
  const int prc = rt_pick(t, cands.data(), cands.size(), 1, 1, &picked, &wait, &grant);
  RT_FUZZ_CHECK(rtfuzz::OneOf(prc, {RT_OK, RT_LIMITED, RT_E_TOO_LARGE, RT_E_INVALID, RT_E_NOMEM}),
                std::to_string(prc));
  if (g_check_names && all_valid) RT_FUZZ_CHECK(prc != RT_E_INVALID, rt_last_error());
  if (prc == RT_OK || prc == RT_LIMITED) RT_FUZZ_CHECK(picked < cands.size(), std::to_string(picked));
  rtfuzz::CheckTrackerOutputs(t, "after rt_pick");

  // Every model used is listed under its own name.
  char* stats = rt_stats_json(t);
  RT_FUZZ_CHECK(stats != nullptr, rt_last_error());
  const nlohmann::json j = nlohmann::json::parse(stats);
  rt_free(stats);
  for (const std::string& n : used) {
    RT_FUZZ_CHECK(j["models"].contains(n), "stats do not list '" + rtfuzz::Show(n) + "'");
  }
  rt_close(t);
  return 0;
}
