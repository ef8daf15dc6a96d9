// Hostile neighbours (issue #24): a segment whose bytes someone else wrote,
// a segment planted by another user, and entries of /dev/shm that are no
// segment. Through the public C API; the segment's layout (shm_segment.h)
// only says where each field is.
//
// The corruption test writes extreme values and random bytes into every
// field of the header and of a slot, one at a time, and after each opens the
// segment from a fresh process (fork, then rt_open in the child) that uses
// every model: the child must exit normally (no signal, ever), every call
// must return a documented status, and no retry_after may exceed the
// model's longest window plus its resolution (or a day where the overwrite
// hit what a provider said, a cap or a 429 block: those last up to a day by
// design, and a value within that day looks like any other).
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "ratetrack.h"
#include "shm_segment.h"
#include "sliding_window.h"
#include "window_set.h"

namespace ratetrack {

struct Field {
  std::string name;
  size_t offset;  // from the start of the segment
  size_t size;
};

// The window's private fields, by name (it befriends this class).
class SlidingWindowTestPeer {
 public:
  static std::vector<Field> Fields(const std::string& prefix, size_t base) {
    SlidingWindow w;
    const char* start = reinterpret_cast<const char*>(&w);
    auto at = [&](const char* name, const void* p, size_t size) {
      return Field{prefix + name, base + static_cast<size_t>(static_cast<const char*>(p) - start),
                   size};
    };
    return {at("head_end_ms_", &w.head_end_ms_, 8),
            at("used_", &w.used_, 8),
            at("head_count_", &w.head_count_, 8),
            at("head_", &w.head_, 8),
            at("span_ms_", &w.span_ms_, 8),
            at("guard_ms_", &w.guard_ms_, 8),
            at("width_ms_", &w.width_ms_, 8),
            at("ring_", &w.ring_, sizeof w.ring_),
            at("counts_[0]", &w.counts_[0], 8),
            at("counts_[59]", &w.counts_[59], 8),
            at("counts_", &w.counts_, sizeof w.counts_)};
  }
};

namespace {

using nlohmann::json;

constexpr size_t kSlotsAt =
    (sizeof(ShmSegment::Header) + alignof(ShmModel) - 1) / alignof(ShmModel) * alignof(ShmModel);
constexpr int kCapacity = 8;

template <typename S, typename M>
size_t Offset(const S& s, const M& member) {
  return static_cast<size_t>(reinterpret_cast<const char*>(&member) -
                             reinterpret_cast<const char*>(&s));
}

// Every field of the header, from its layout.
std::vector<Field> HeaderFields() {
  static ShmSegment::Header h;
  auto f = [&](const char* name, const auto& member) {
    return Field{std::string("header.") + name, Offset(h, member), sizeof member};
  };
  return {f("magic", h.magic),           f("layout_version", h.layout_version),
          f("header_size", h.header_size), f("slot_size", h.slot_size),
          f("capacity", h.capacity),     f("total_size", h.total_size),
          f("secret", h.secret),         f("created_unix_ms", h.created_unix_ms),
          f("creator_pid", h.creator_pid), f("count", h.count),
          f("create_mu", h.create_mu)};
}

// Every field of slot `index`, windows [0, nwin) included.
std::vector<Field> SlotFields(int index, int nwin) {
  static ShmModel m;
  const size_t base = kSlotsAt + sizeof(ShmModel) * static_cast<size_t>(index);
  const std::string p = "slot" + std::to_string(index) + ".";
  std::vector<Field> out;
  auto f = [&](const std::string& name, const auto& member) {
    out.push_back(Field{p + name, base + Offset(m, member), sizeof member});
  };
  f("state", m.state);
  f("name_len", m.name_len);
  f("hash", m.hash);
  f("name", m.name);
  f("mu", m.mu);
  const WindowSet& ws = m.windows;
  f("nwin", ws.nwin);
  f("has_calendar", ws.has_calendar);
  f("fast_until_ms", ws.fast_until_ms);
  f("refused_at_ms", ws.refused_at_ms);
  f("refused_span_ms", ws.refused_span_ms);
  f("refused_input", ws.refused_input);
  f("refused_output", ws.refused_output);
  for (int u = 0; u < WindowSet::kUnits; ++u) {
    const std::string s = "[" + std::to_string(u) + "]";
    f("room" + s, ws.room[u]);
    f("pending" + s, ws.pending[u]);
    f("caps" + s + ".until_ms", ws.caps[u].until_ms);
    f("caps" + s + ".remaining", ws.caps[u].remaining);
    f("caps" + s + ".used", ws.caps[u].used);
    f("caps" + s + ".observed_limit", ws.caps[u].observed_limit);
  }
  f("sync_done", ws.sync_done);
  f("sync_index", ws.sync_index);
  f("sync_target", ws.sync_target);
  f("blocked_until_ms", ws.blocked_until_ms);
  f("caps_until_ms", ws.caps_until_ms);
  for (int i = 0; i < nwin; ++i) {
    const WindowSlot& s = ws.slots[i];
    const std::string w = "slots[" + std::to_string(i) + "].";
    f(w + "cap", s.cap);
    f(w + "unit", s.unit);
    f(w + "calendar", s.calendar);
    f(w + "limit.unit", s.limit.unit);
    f(w + "limit.seconds", s.limit.seconds);
    f(w + "limit.limit", s.limit.limit);
    f(w + "limit.calendar_tz", s.limit.calendar_tz);
    f(w + "day_end_wall_ms", s.day_end_wall_ms);
    f(w + "day_used", s.day_used);
    for (const Field& sw : SlidingWindowTestPeer::Fields(p + w + "window.",
                                                         base + Offset(m, s.window))) {
      out.push_back(sw);
    }
  }
  return out;
}

// The models, in the order they are first used (so model i is in slot i).
struct Model {
  const char* name;
  int nwin;
  int64_t longest_s;  // its longest window with a limit
  bool calendar;      // and a calendar day with a limit
};
const Model kModels[] = {
    {"c/a", 4, 60, false},    // rpm, tpm (+ the day windows, unlimited)
    {"c/b", 6, 30, false},    // + requests per 2 s, input tokens per 30 s
    {"c/cal", 5, 0, true},    // + requests per calendar day
    {"c/big", 4, 60, false},  // tokens per minute
};

std::string Config(const std::string& name) {
  return R"({"backend": "shm:)" + name + R"(", "builtin_tiers": false, "shm_models": )" +
         std::to_string(kCapacity) + R"(, "limits": {
      "c/a": {"rpm": 5, "tpm": 1000},
      "c/b": {"windows": [{"unit": "requests", "limit": 3, "seconds": 2},
                          {"unit": "input_tokens", "limit": 500, "seconds": 30}]},
      "c/cal": {"windows": [{"unit": "requests", "limit": 4,
                             "calendar_day": "America/Los_Angeles"}]},
      "c/big": {"tpm": 1000000}}})";
}
// Says nothing about the models: the segment's limits stand, whatever they are.
std::string QuietConfig(const std::string& name) {
  return R"({"backend": "shm:)" + name + R"(", "builtin_tiers": false})";
}

// The longest wait a window of `seconds` may answer: its length plus its
// resolution (with the largest clock guard).
uint64_t WindowBoundMs(int64_t seconds) {
  if (seconds == 0) return 0;
  const SlidingWindow w(seconds * 1000, SlidingWindow::kMaxGuardMs);
  return static_cast<uint64_t>(seconds * 1000 + w.resolution_ms());
}
constexpr uint64_t kDayBoundMs = 26ULL * 3600 * 1000;  // a calendar day's remainder

bool Documented(int rc) {
  return rc == RT_OK || rc == RT_LIMITED || rc == RT_E_TOO_LARGE || rc == RT_E_BACKEND ||
         rc == RT_E_CONFIG;
}

// The child: opens the segment and uses every model. "" or what went wrong.
// `provider_ms`: the overwrite hit what a provider said (a cap, a 429
// block), which may legitimately hold a model back for up to a day.
std::string UseEverything(const std::string& name, uint64_t provider_ms) {
  rt_tracker* t = nullptr;
  int rc = rt_open_ex(Config(name).c_str(), &t);
  const bool configured = rc == RT_OK;
  if (!configured) {
    if (rc != RT_E_BACKEND && rc != RT_E_CONFIG) return "rt_open: status " + std::to_string(rc);
    if (rt_last_error()[0] == '\0') return "rt_open: no message";
    // The segment's limits may have been rewritten (a conflict): use them.
    rc = rt_open_ex(QuietConfig(name).c_str(), &t);
    if (rc == RT_E_BACKEND && rt_last_error()[0] != '\0') return "";  // header refused
    if (rc != RT_OK) return "rt_open (quiet): status " + std::to_string(rc);
  }
  std::string problems;
  auto check = [&](bool ok, const std::string& what) {
    if (!ok && problems.size() < 2000) problems += what + "; ";
  };
  auto explained = [&](int code, const std::string& what) {
    if (code < 0 && code != RT_E_TOO_LARGE) {
      check(rt_last_error()[0] != '\0', what + ": status " + std::to_string(code) +
                                            " without a message");
    }
  };
  std::vector<Model> models(std::begin(kModels), std::end(kModels));
  models.push_back({"c/new", 4, 0, false});  // not in the segment yet: created, unlimited
  for (const Model& m : models) {
    // The segment's limits, when this process did not check them: any
    // window length a configuration allows.
    const uint64_t bound =
        std::max(provider_ms, !configured  ? WindowBoundMs(31 * 86400)
                              : m.calendar ? std::max(kDayBoundMs, WindowBoundMs(m.longest_s))
                                           : WindowBoundMs(m.longest_s));
    const std::string who = std::string(m.name) + ": ";
    for (int round = 0; round < 3; ++round) {
      uint64_t retry = 0, grant = 0, wait = 0;
      rc = rt_try_acquire(t, m.name, 10, &retry);
      check(Documented(rc), who + "rt_try_acquire " + std::to_string(rc));
      explained(rc, who + "rt_try_acquire");
      if (rc == RT_LIMITED) {
        check(retry > 0 && retry <= bound, who + "retry_after " + std::to_string(retry) +
                                               " ms > " + std::to_string(bound));
      }
      rc = rt_try_acquire_grant(t, m.name, 20, &retry, &grant);
      check(Documented(rc), who + "rt_try_acquire_grant " + std::to_string(rc));
      explained(rc, who + "rt_try_acquire_grant");
      if (rc == RT_LIMITED) check(retry <= bound, who + "grant retry " + std::to_string(retry));
      if (rc == RT_OK) {
        rc = rt_settle(t, m.name, grant, 20, 5);
        check(rc == RT_OK || rc == RT_E_BACKEND, who + "rt_settle " + std::to_string(rc));
        explained(rc, who + "rt_settle");
      }
      rc = rt_can_make(t, m.name, 10);
      check(rc == 1 || rc == 0 || Documented(rc), who + "rt_can_make " + std::to_string(rc));
      rc = rt_wait_time(t, m.name, 10, &wait);
      check(Documented(rc), who + "rt_wait_time " + std::to_string(rc));
      if (rc == RT_OK) check(wait <= bound, who + "wait_time " + std::to_string(wait));
      rc = rt_record(t, m.name, 7);
      check(rc == RT_OK || rc == RT_E_BACKEND, who + "rt_record " + std::to_string(rc));
      explained(rc, who + "rt_record");
    }
  }
  char* text = nullptr;
  rc = rt_stats_json_ex(t, &text);
  check(rc == RT_OK && text != nullptr && json::accept(text), "rt_stats_json_ex");
  rt_free(text);
  text = nullptr;
  rc = rt_metrics_text(t, &text);
  check(rc == RT_OK && text != nullptr, "rt_metrics_text");
  rt_free(text);
  text = nullptr;
  rc = rt_shm_list(&text);
  check(rc == RT_OK && text != nullptr && json::accept(text), "rt_shm_list");
  rt_free(text);
  rc = rt_reset(t);
  check(rc == RT_OK || rc == RT_E_BACKEND, "rt_reset " + std::to_string(rc));
  rt_close(t);
  return problems;
}

// Runs `fn` in a fresh process; "" when it exited normally with "" from fn,
// else what happened. A generous alarm stands in for a hang.
template <typename Fn>
std::string InChild(Fn fn, unsigned alarm_s = 60) {
  int fds[2];
  if (pipe(fds) != 0) return "pipe failed";
  const pid_t pid = fork();
  if (pid < 0) return "fork failed";
  if (pid == 0) {
    close(fds[0]);
    alarm(alarm_s);
    const std::string out = fn();
    if (!out.empty() && write(fds[1], out.data(), out.size()) < 0) _exit(3);
    _exit(out.empty() ? 0 : 1);
  }
  close(fds[1]);
  std::string out;
  char buf[512];
  ssize_t got;
  while ((got = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(got));
  close(fds[0]);
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return "waitpid failed";
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return "exit status " + std::to_string(WEXITSTATUS(status)) + ": " + out;
  }
  return "";
}

class ShmCorruptTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int serial = 0;
    name_ = "gtest-corrupt-" + std::to_string(getpid()) + "-" + std::to_string(++serial);
    rt_shm_remove(name_.c_str());
  }
  void TearDown() override {
    if (t_ != nullptr) rt_close(t_);
    rt_shm_remove(name_.c_str());
  }
  std::string path() const { return ShmSegment::PathOf(name_); }

  // A live segment: every model used (acquired, recorded, settled), some
  // refused.
  void MakeLiveSegment() {
    ASSERT_EQ(rt_open_ex(Config(name_).c_str(), &t_), RT_OK) << rt_last_error();
    for (const Model& m : kModels) {
      for (int i = 0; i < 6; ++i) {
        uint64_t grant = 0;
        if (rt_try_acquire_grant(t_, m.name, 100, nullptr, &grant) == RT_OK) {
          ASSERT_EQ(rt_settle(t_, m.name, grant, 100, 60), RT_OK);
        }
        ASSERT_EQ(rt_record(t_, m.name, 3), RT_OK);
      }
    }
    uint64_t retry = 0;
    ASSERT_EQ(rt_try_acquire(t_, "c/a", 1, &retry), RT_LIMITED) << "5 per minute";
    int fd = open(path().c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    struct stat sb;
    ASSERT_EQ(fstat(fd, &sb), 0);
    ASSERT_EQ(static_cast<size_t>(sb.st_size), kSlotsAt + sizeof(ShmModel) * kCapacity);
    pristine_.resize(static_cast<size_t>(sb.st_size));
    ASSERT_EQ(pread(fd, pristine_.data(), pristine_.size(), 0),
              static_cast<ssize_t>(pristine_.size()));
    close(fd);
  }

  // The live segment with `bytes` written at `offset`, then used by a fresh
  // process. "" or what went wrong.
  std::string Try(size_t offset, const std::vector<unsigned char>& bytes) {
    // What a provider said lasts up to a day (the tracker's kMaxBlockMs).
    bool provider = false;
    for (int s = 0; s < kCapacity; ++s) {
      for (const Field& f : SlotFields(s, 0)) {
        const bool said = f.name.find("caps") != std::string::npos ||
                          f.name.find("blocked_until_ms") != std::string::npos;
        if (said && offset < f.offset + f.size && f.offset < offset + bytes.size()) {
          provider = true;
        }
      }
    }
    const uint64_t provider_ms = provider ? uint64_t{86400} * 1000 : 0;
    int fd = open(path().c_str(), O_RDWR);
    if (fd < 0) return "cannot open the segment";
    bool ok = pwrite(fd, pristine_.data(), pristine_.size(), 0) ==
                  static_cast<ssize_t>(pristine_.size()) &&
              pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)) ==
                  static_cast<ssize_t>(bytes.size());
    close(fd);
    if (!ok) return "cannot write the segment";
    const std::string name = name_;
    return InChild([&name, provider_ms] { return UseEverything(name, provider_ms); });
  }

  std::string name_;
  rt_tracker* t_ = nullptr;
  std::vector<unsigned char> pristine_;
};

std::vector<unsigned char> LittleEndian(uint64_t v, size_t n) {
  std::vector<unsigned char> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<unsigned char>(v >> (8 * (i % 8)));
  return out;
}

// Extreme values of a field: an integer of its width (or of its first 8
// bytes, for an array), and whole-field fills.
std::vector<std::pair<std::string, std::vector<unsigned char>>> ExtremeValues(size_t size,
                                                                             std::mt19937_64& rng) {
  const size_t w = size >= 8 ? 8 : size >= 4 ? 4 : size >= 2 ? 2 : 1;
  const uint64_t ones = w == 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * w)) - 1;
  const uint64_t smax = ones >> 1;
  const uint64_t smin = smax + 1;
  const uint64_t huge = uint64_t{1} << (8 * w - 2);
  std::vector<std::pair<std::string, std::vector<unsigned char>>> out;
  for (const auto& [label, v] : std::vector<std::pair<std::string, uint64_t>>{
           {"0", 0}, {"1", 1}, {"-1 (max)", ones}, {"signed max", smax},
           {"signed min", smin}, {"huge", huge}}) {
    out.push_back({label, LittleEndian(v, w)});
  }
  if (size > 8) {
    out.push_back({"all 0x00", std::vector<unsigned char>(size, 0x00)});
    out.push_back({"all 0xff", std::vector<unsigned char>(size, 0xff)});
  }
  std::vector<unsigned char> random(size);
  for (auto& b : random) b = static_cast<unsigned char>(rng());
  out.push_back({"random", random});
  return out;
}

TEST_F(ShmCorruptTest, EveryFieldOverwrittenNeverCrashesAFreshProcess) {
  MakeLiveSegment();
  if (HasFatalFailure()) return;
  // The fields written with every extreme value: the header, the first slot
  // whole, and the windows that differ in the others (extra windows, a
  // calendar day).
  std::vector<Field> fields = HeaderFields();
  for (const Field& f : SlotFields(0, kModels[0].nwin)) fields.push_back(f);
  const auto has = [](const Field& f, const char* part) {
    return f.name.find(part) != std::string::npos;
  };
  for (const Field& f : SlotFields(1, kModels[1].nwin)) {
    if (has(f, "slots[4]") || has(f, "slots[5]")) fields.push_back(f);
  }
  for (const Field& f : SlotFields(2, kModels[2].nwin)) {
    if (has(f, "slots[4]") || has(f, "has_calendar")) fields.push_back(f);
  }
  std::mt19937_64 rng(20261205);
  int cases = 0, failed = 0;
  for (const Field& f : fields) {
    for (const auto& [label, bytes] : ExtremeValues(f.size, rng)) {
      ++cases;
      const std::string what = Try(f.offset, bytes);
      if (!what.empty() && ++failed <= 30) {
        ADD_FAILURE() << f.name << " = " << label << ": " << what;
      }
    }
  }
  // Random bytes at random fields of every slot in use, and anywhere in
  // the first slots.
  std::vector<Field> all = HeaderFields();
  for (int s = 0; s < 4; ++s) {
    for (const Field& f : SlotFields(s, kModels[s].nwin)) all.push_back(f);
  }
  for (int i = 0; i < 300; ++i) {
    ++cases;
    std::vector<unsigned char> bytes;
    size_t offset;
    std::string name;
    if (i % 3 != 2) {
      const Field& f = all[rng() % all.size()];
      const size_t n = 1 + rng() % f.size;
      offset = f.offset + rng() % (f.size - n + 1);
      bytes.resize(n);
      name = f.name;
    } else {
      bytes.resize(1 + rng() % 16);
      offset = rng() % (kSlotsAt + sizeof(ShmModel) * 4 - bytes.size());
      name = "anywhere";
    }
    for (auto& b : bytes) b = static_cast<unsigned char>(rng());
    const std::string what = Try(offset, bytes);
    if (!what.empty() && ++failed <= 30) {
      ADD_FAILURE() << "random #" << i << " (" << name << ", " << bytes.size() << " bytes at "
                    << offset << "): " << what;
    }
  }
  EXPECT_EQ(failed, 0) << "of " << cases << " overwrites";
}

// A slot refused on its own: the other models keep working, and the
// refused model's calls say which slot and why.
TEST_F(ShmCorruptTest, ACorruptSlotIsRefusedAlone) {
  MakeLiveSegment();
  if (HasFatalFailure()) return;
  // c/b's (slot 1) window count: its limits cannot be read. (And no fast
  // path in force nor a refusal remembered, which would not look at the
  // windows.)
  Field nwin{}, fast{}, refused{};
  for (const Field& f : SlotFields(1, 0)) {
    if (f.name == "slot1.nwin") nwin = f;
    if (f.name == "slot1.fast_until_ms") fast = f;
    if (f.name == "slot1.refused_span_ms") refused = f;
  }
  ASSERT_EQ(nwin.size, 4u);
  ASSERT_EQ(fast.size, 8u);
  ASSERT_EQ(refused.size, 8u);
  int fd = open(path().c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  const int32_t wild = 1000000;
  const int64_t zero = 0;
  ASSERT_EQ(pwrite(fd, &wild, sizeof wild, static_cast<off_t>(nwin.offset)), 4);
  ASSERT_EQ(pwrite(fd, &zero, sizeof zero, static_cast<off_t>(fast.offset)), 8);
  ASSERT_EQ(pwrite(fd, &zero, sizeof zero, static_cast<off_t>(refused.offset)), 8);
  close(fd);
  const std::string name = name_;
  EXPECT_EQ(InChild([&name]() -> std::string {
              rt_tracker* t = nullptr;
              if (rt_open_ex(Config(name).c_str(), &t) != RT_OK) {
                return std::string("rt_open: ") + rt_last_error();
              }
              int rc = rt_try_acquire(t, "c/b", 1, nullptr);
              if (rc != RT_E_BACKEND) return "c/b: " + std::to_string(rc);
              const std::string why = rt_last_error();
              if (why.find("slot 1") == std::string::npos ||
                  why.find("c/b") == std::string::npos ||
                  why.find("window count of 1000000") == std::string::npos) {
                return "c/b's message: " + why;
              }
              if (rt_record(t, "c/b", 1) != RT_E_BACKEND) return "c/b recorded";
              if (rt_try_acquire(t, "c/big", 1, nullptr) != RT_OK) return "c/big refused";
              rc = rt_try_acquire(t, "c/a", 1, nullptr);
              if (rc != RT_OK && rc != RT_LIMITED) return "c/a: " + std::to_string(rc);
              char* text = nullptr;
              if (rt_stats_json_ex(t, &text) != RT_OK) return "stats";
              const json stats = json::parse(text);
              rt_free(text);
              // 6 x (100 granted, settled to 60, and 3 recorded), and 1.
              if (stats["models"]["c/big"]["tokens_per_day"]["current"] != 6 * 63 + 1) {
                return "c/big's stats: " + stats.dump();
              }
              rt_close(t);
              return "";
            }),
            "");
  // The parent, which had the slot already: the hot path refuses it too.
  EXPECT_EQ(rt_try_acquire(t_, "c/b", 1, nullptr), RT_E_BACKEND);
  EXPECT_EQ(rt_try_acquire(t_, "c/big", 1, nullptr), RT_OK);
}

// A wild window state in a slot this process already uses: repaired under
// the lock, never used as it is.
TEST_F(ShmCorruptTest, WildWindowsAreRepairedForRunningProcessesToo) {
  MakeLiveSegment();
  if (HasFatalFailure()) return;
  int fd = open(path().c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  // c/a's windows: a bucket width of 0, a ring far beyond its array, a
  // newest bucket in the far future (and no fast path in force nor a
  // refusal remembered, which would not look at the windows).
  const std::map<std::string, int64_t> wild = {
      {"slot0.slots[0].window.width_ms_", 0},
      {"slot0.slots[0].window.head_end_ms_", 0},
      {"slot0.slots[1].window.ring_", 1 << 20},
      {"slot0.slots[1].window.head_end_ms_", 0},
      {"slot0.slots[2].window.head_", int64_t{1} << 61},
      {"slot0.fast_until_ms", 0},
      {"slot0.refused_span_ms", 0}};
  int written = 0;
  for (const Field& f : SlotFields(0, kModels[0].nwin)) {
    auto it = wild.find(f.name);
    if (it == wild.end()) continue;
    ASSERT_EQ(pwrite(fd, &it->second, f.size, static_cast<off_t>(f.offset)),
              static_cast<ssize_t>(f.size));
    ++written;
  }
  ASSERT_EQ(written, 7);
  close(fd);
  for (int i = 0; i < 3; ++i) {
    uint64_t retry = 0;
    const int rc = rt_try_acquire(t_, "c/a", 1, &retry);
    ASSERT_TRUE(rc == RT_OK || rc == RT_LIMITED) << rc;
    if (rc == RT_LIMITED) EXPECT_LE(retry, WindowBoundMs(86400));
  }
  char* text = nullptr;
  ASSERT_EQ(rt_stats_json_ex(t_, &text), RT_OK);
  EXPECT_TRUE(json::accept(text));
  rt_free(text);
}

// ------------------------------------------------------- ownership, listing

class ShmHostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int serial = 0;
    name_ = "gtest-hostile-" + std::to_string(getpid()) + "-" + std::to_string(++serial);
    rt_shm_remove(name_.c_str());
  }
  void TearDown() override {
    rt_shm_remove(name_.c_str());
    for (const std::string& p : litter_) {
      if (unlink(p.c_str()) != 0) rmdir(p.c_str());
    }
  }
  std::string Cfg(const std::string& extra = "") const {
    return R"({"backend": "shm:)" + name_ + R"(", "builtin_tiers": false)" + extra + "}";
  }
  std::string path() const { return ShmSegment::PathOf(name_); }
  // rt_open_ex in a child (a FIFO must not block it): the status and message.
  std::pair<int, std::string> OpenInChild(const std::string& cfg) {
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    const pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      alarm(30);
      rt_tracker* t = nullptr;
      const int rc = rt_open_ex(cfg.c_str(), &t);
      const std::string msg = rt_last_error();
      if (write(fds[1], msg.data(), msg.size()) < 0) _exit(100);
      rt_close(t);
      _exit(rc < 0 ? -rc : rc);
    }
    close(fds[1]);
    std::string msg;
    char buf[256];
    ssize_t got;
    while ((got = read(fds[0], buf, sizeof buf)) > 0) msg.append(buf, static_cast<size_t>(got));
    close(fds[0]);
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status)) return {1000 + WTERMSIG(status), "killed: " + msg};
    return {-WEXITSTATUS(status), msg};
  }

  std::string name_;
  std::vector<std::string> litter_;
};

TEST_F(ShmHostileTest, APlantedOrOpenSegmentIsRefused) {
  rt_tracker* t = rt_open(Cfg().c_str());
  ASSERT_NE(t, nullptr) << rt_last_error();
  ASSERT_EQ(rt_record(t, "p/m", 5), RT_OK);
  rt_close(t);
  int fd = open(path().c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  if (geteuid() == 0) {
    // Planted by another user (root can make one): refused, saying whose.
    ASSERT_EQ(fchown(fd, 65534, 65534), 0);
    ASSERT_EQ(fchmod(fd, 0666), 0);
    auto [rc, msg] = OpenInChild(Cfg());
    EXPECT_EQ(rc, RT_E_BACKEND) << msg;
    EXPECT_NE(msg.find("uid 65534"), std::string::npos) << msg;
    EXPECT_NE(msg.find("0666"), std::string::npos) << msg;
    // Even with the right mode.
    ASSERT_EQ(fchmod(fd, 0600), 0);
    std::tie(rc, msg) = OpenInChild(Cfg());
    EXPECT_EQ(rc, RT_E_BACKEND) << msg;
    EXPECT_NE(msg.find("uid 65534"), std::string::npos) << msg;
    // Another user of this group, with a group mode configured: trusted.
    ASSERT_EQ(fchown(fd, 65534, getegid()), 0);
    ASSERT_EQ(fchmod(fd, 0660), 0);
    std::tie(rc, msg) = OpenInChild(Cfg(R"(, "shm_mode": "0660")"));
    EXPECT_EQ(rc, RT_OK) << msg;
    std::tie(rc, msg) = OpenInChild(Cfg());
    EXPECT_EQ(rc, RT_E_BACKEND) << "no group mode configured: " << msg;
    ASSERT_EQ(fchown(fd, geteuid(), getegid()), 0);
  }
  // This user's, but open to everybody: refused too.
  ASSERT_EQ(fchmod(fd, 0666), 0);
  auto [rc, msg] = OpenInChild(Cfg());
  EXPECT_EQ(rc, RT_E_BACKEND) << msg;
  EXPECT_NE(msg.find("mode 0666"), std::string::npos) << msg;
  EXPECT_NE(msg.find("0600"), std::string::npos) << msg;
  // More than a group mode allows.
  std::tie(rc, msg) = OpenInChild(Cfg(R"(, "shm_mode": "0660")"));
  EXPECT_EQ(rc, RT_E_BACKEND) << msg;
  // As made: used, with what it holds.
  ASSERT_EQ(fchmod(fd, 0600), 0);
  close(fd);
  t = rt_open(Cfg().c_str());
  ASSERT_NE(t, nullptr) << rt_last_error();
  char* text = rt_stats_json(t);
  ASSERT_NE(text, nullptr);
  EXPECT_EQ(json::parse(text)["models"]["p/m"]["tokens_per_day"]["current"], 5);
  rt_free(text);
  rt_close(t);
}

TEST_F(ShmHostileTest, AFifoOrALinkNamedLikeASegmentIsRefusedPromptly) {
  ASSERT_EQ(mkfifo(path().c_str(), 0600), 0) << std::strerror(errno);
  auto [rc, msg] = OpenInChild(Cfg());
  EXPECT_EQ(rc, RT_E_BACKEND) << msg;
  EXPECT_NE(msg.find("FIFO"), std::string::npos) << msg;
  ASSERT_EQ(unlink(path().c_str()), 0);
  ASSERT_EQ(symlink("/dev/null", path().c_str()), 0);
  std::tie(rc, msg) = OpenInChild(Cfg());
  EXPECT_EQ(rc, RT_E_BACKEND) << msg;
  EXPECT_NE(msg.find("symbolic link"), std::string::npos) << msg;
}

TEST_F(ShmHostileTest, ListingSkipsWhatIsNotASegment) {
  rt_tracker* t = rt_open(Cfg().c_str());
  ASSERT_NE(t, nullptr) << rt_last_error();
  rt_close(t);
  const std::string pid = std::to_string(getpid());
  const std::string base = "/dev/shm/ratetrack.gtest-odd-" + pid;
  const std::string fifo = base + "-fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  litter_.push_back(fifo);
  const std::string dir = base + "-dir";
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  litter_.push_back(dir);
  const std::string link = base + "-link";
  ASSERT_EQ(symlink(path().c_str(), link.c_str()), 0);
  litter_.push_back(link);
  for (const std::string& odd : {base + "-\xff\xfe", base + " space", base + "-nl\n",
                                 std::string("/dev/shm/ratetrack.") + "\xc3\x28" + pid,
                                 std::string("/dev/shm/ratetrack.")}) {
    const int fd = open(odd.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
    if (fd < 0 && errno == EEXIST) continue;  // someone else's: not ours to remove
    ASSERT_GE(fd, 0) << odd << ": " << std::strerror(errno);
    ASSERT_EQ(write(fd, "x", 1), 1);
    close(fd);
    litter_.push_back(odd);
  }
  const std::string mine = name_;
  EXPECT_EQ(InChild([&mine, &pid]() -> std::string {
              char* text = nullptr;
              const int rc = rt_shm_list(&text);
              if (rc != RT_OK) return "rt_shm_list: " + std::to_string(rc) + " " + rt_last_error();
              const std::string s = text;
              rt_free(text);
              if (!json::accept(s)) return "not JSON: " + s;
              int found = 0;
              for (const json& e : json::parse(s)) {
                const std::string n = e["name"].get<std::string>();
                if (n == mine) ++found;
                if (n.find("gtest-odd-") != std::string::npos || n.empty() ||
                    n.find('\xc3') != std::string::npos) {
                  return "listed: " + n;
                }
              }
              return found == 1 ? "" : "the segment listed " + std::to_string(found) + " times";
            },
                    /*alarm_s=*/30),
            "");
}

}  // namespace
}  // namespace ratetrack
