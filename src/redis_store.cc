#include "redis_store.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "ratetrack.h"
#include "status.h"

namespace ratetrack {

extern const char kRedisScript[];  // generated from src/redis_script.lua

namespace {

constexpr int kPoolSize = 4;
constexpr int64_t kMinBackoffMs = 50;
constexpr int64_t kMaxBackoffMs = 2000;
// Lua numbers are doubles: integers are exact up to 2^53.
constexpr uint64_t kMaxExact = uint64_t{1} << 53;

int64_t NowUs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

int64_t UnixMs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

struct timeval Tv(int64_t us) {
  if (us < 1000) us = 1000;
  return {static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
}

// The most arguments a command of ours has (the script call has 19).
constexpr size_t kMaxArgs = 32;

// A count as the script's double: exact, clamped at 2^53.
double Exact(uint64_t v) { return static_cast<double>(std::min(v, kMaxExact)); }

// A little-endian IEEE double, as the script's struct.unpack('<d') reads it
// (integers up to 2^53 exactly).
void AppendDouble(std::string* out, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(bits >> (8 * i)));
}

char UnitLetter(Unit u) {
  switch (u) {
    case Unit::kRequests: return 'r';
    case Unit::kTokens: return 't';
    case Unit::kInputTokens: return 'i';
    case Unit::kOutputTokens: return 'o';
  }
  return 't';
}

}  // namespace

std::string RedisUrl::Redacted() const {
  const char* policy = on_error == OnError::kLocal ? "local"
                       : on_error == OnError::kOpen ? "open"
                                                    : "closed";
  return absl::StrCat("redis://", host, ":", port, "/", db, "?prefix=", prefix,
                      "&timeout_ms=", timeout_ms, "&on_error=", policy);
}

absl::StatusOr<RedisUrl> ParseRedisUrl(absl::string_view url) {
  RedisUrl u;
  auto bad = [](absl::string_view what) {
    return ConfigError(absl::StrCat("config key 'backend': bad Redis URL: ", what,
                                    " (expected redis://[user:password@]host:port[/db]"
                                    "[?prefix=P&timeout_ms=T&on_error=local|open|closed])"));
  };
  if (!absl::StartsWith(url, "redis://")) return bad("it must start with redis://");
  absl::string_view rest = url.substr(8);
  absl::string_view query;
  if (size_t q = rest.find('?'); q != absl::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (size_t at = rest.rfind('@'); at != absl::string_view::npos) {
    absl::string_view cred = rest.substr(0, at);
    rest = rest.substr(at + 1);
    if (size_t colon = cred.find(':'); colon != absl::string_view::npos) {
      u.user = std::string(cred.substr(0, colon));
      u.password = std::string(cred.substr(colon + 1));
    } else {
      u.password = std::string(cred);  // redis://password@host
    }
  }
  if (size_t slash = rest.find('/'); slash != absl::string_view::npos) {
    absl::string_view db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (!db.empty() && (!absl::SimpleAtoi(db, &u.db) || u.db < 0 || u.db > 1000)) {
      return bad(absl::StrCat("database '", db, "' is not a number"));
    }
  }
  if (size_t colon = rest.rfind(':'); colon != absl::string_view::npos) {
    if (!absl::SimpleAtoi(rest.substr(colon + 1), &u.port) || u.port < 1 || u.port > 65535) {
      return bad(absl::StrCat("port '", rest.substr(colon + 1), "'"));
    }
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) return bad("no host");
  u.host = std::string(rest);
  for (absl::string_view kv : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    if (p.first == "prefix") {
      if (p.second.empty() || p.second.find_first_of("{}") != std::string::npos) {
        return bad("prefix must be non-empty, without braces");
      }
      u.prefix = p.second;
    } else if (p.first == "timeout_ms") {
      if (!absl::SimpleAtoi(p.second, &u.timeout_ms) || u.timeout_ms < 1 ||
          u.timeout_ms > 60000) {
        return bad("timeout_ms must be from 1 to 60000");
      }
    } else if (p.first == "on_error") {
      if (p.second == "local") u.on_error = RedisUrl::OnError::kLocal;
      else if (p.second == "open") u.on_error = RedisUrl::OnError::kOpen;
      else if (p.second == "closed") u.on_error = RedisUrl::OnError::kClosed;
      else return bad(absl::StrCat("on_error '", p.second, "'"));
    } else if (p.first == "limits") {
      if (p.second != "segment" && p.second != "update") return bad("limits=segment|update");
      u.update_limits = p.second == "update";
    } else {
      return bad(absl::StrCat("unknown parameter '", p.first, "'"));
    }
  }
  return u;
}

RemoteSpec RemoteSpec::From(const WindowSet& ws) {
  RemoteSpec s;
  s.n = ws.nwin;
  int64_t longest = 0;
  for (int i = 0; i < ws.nwin; ++i) {
    const WindowSlot& slot = ws.slots[i];
    RemoteSpec::Window& w = s.w[i];
    std::snprintf(w.name, sizeof w.name, "%c%s%lld", UnitLetter(slot.limit.unit),
                  slot.limit.calendar() ? "c" : "", static_cast<long long>(slot.limit.seconds));
    w.width_ms = slot.window.width_ms();
    w.ring = slot.window.ring();
    w.limit = slot.limit.limit == kUnlimited
                  ? -1
                  : static_cast<int64_t>(std::min(slot.limit.limit, kMaxExact));
    w.unit = slot.limit.unit;
    w.seconds = slot.limit.seconds;
    std::memcpy(w.calendar_tz, slot.limit.calendar_tz, sizeof w.calendar_tz);
    absl::StrAppend(&s.names, i == 0 ? "" : ",", w.name);
    for (double v : {static_cast<double>(w.width_ms), static_cast<double>(w.ring),
                     static_cast<double>(w.limit), static_cast<double>(w.unit), 0.0}) {
      AppendDouble(&s.layout, v);
    }
    longest = std::max(longest, w.width_ms * w.ring);
  }
  s.ttl_ms = longest + 60000;  // a little longer than the longest window
  s.fingerprint = DescribeLimits(ws.Limits());
  s.head = absl::StrCat(s.fingerprint, "\n", s.names, "\n");
  for (int i = 0; i < 9 + 5 * s.n; ++i) s.numbers_format += "<d";
  for (int i = 0; i < 3 * s.n; ++i) s.state_format += "<d";
  return s;
}

struct RedisStore::Conn {
  std::atomic<bool> busy{false};
  redisContext* ctx = nullptr;
  pid_t pid = 0;
  void Drop() {
    if (ctx != nullptr) redisFree(ctx);
    ctx = nullptr;
  }
};

RedisStore::RedisStore(RedisUrl url) : url_(std::move(url)) {
  for (int i = 0; i < kPoolSize; ++i) pool_.push_back(std::make_unique<Conn>());
}

RedisStore::~RedisStore() {
  for (auto& c : pool_) {
    if (c->pid == getpid()) c->Drop();
  }
}

void RedisStore::NoteFailure(const std::string& message) {
  errors_.fetch_add(1);
  connected_.store(false);
  int64_t expected = 0;
  if (degraded_since_ms_.compare_exchange_strong(expected, UnixMs())) {
    first_failure_pending_.store(true);
  }
  const int64_t b = std::clamp(backoff_ms_.load() * 2, kMinBackoffMs, kMaxBackoffMs);
  backoff_ms_.store(b);
  next_attempt_us_.store(NowUs() + b * 1000);
  std::lock_guard<std::mutex> l(last_error_mu_);
  last_error_ = message;
}

void RedisStore::NoteSuccess() {
  connected_.store(true, std::memory_order_relaxed);
  if (degraded_since_ms_.load(std::memory_order_relaxed) != 0) {
    degraded_since_ms_.store(0);
    backoff_ms_.store(0);
    first_failure_pending_.store(false);
  }
}

bool RedisStore::TakeFirstFailure() {
  return first_failure_pending_.load(std::memory_order_relaxed) &&
         first_failure_pending_.exchange(false);
}

RedisStore::Health RedisStore::health() const {
  std::lock_guard<std::mutex> l(last_error_mu_);
  return {connected_.load(), degraded_since_ms_.load(), errors_.load(), last_error_};
}

void RedisStore::LockForFork() {
  for (auto& c : pool_) {
    bool expected = false;
    while (!c->busy.compare_exchange_weak(expected, true)) {
      expected = false;
      std::this_thread::yield();
    }
  }
}

void RedisStore::UnlockForFork(bool child) {
  for (auto& c : pool_) {
    if (child) c->pid = 0;  // reconnect: never share the parent's socket
    c->busy.store(false);
  }
}

absl::StatusOr<RedisStore::Reply> RedisStore::RunOn(Conn& c, int64_t deadline_us,
                                                    const std::vector<std::string>& argv) {
  auto where = [&] { return absl::StrCat("Redis ", url_.host, ":", url_.port); };
  auto remaining = [&] { return deadline_us - NowUs(); };
  // One command and its reply, within the deadline. The socket is never
  // read or written unless poll(2) says it is ready, so no call blocks past
  // the deadline and no per-command socket option is set.
  bool timed_out = false;
  auto wait_for = [&](short events) {
    for (;;) {
      const int64_t left = remaining();
      if (left <= 0) return false;
      struct pollfd pfd = {c.ctx->fd, events, 0};
      struct timespec ts = {static_cast<time_t>(left / 1000000),
                            static_cast<long>(left % 1000000) * 1000};
      const int rc = ppoll(&pfd, 1, &ts, nullptr);
      if (rc > 0) return true;
      if (rc < 0 && errno == EINTR) continue;
      return false;
    }
  };
  auto command = [&](const std::vector<std::string>& args) -> redisReply* {
    if (remaining() <= 0) {
      timed_out = true;
      return nullptr;
    }
    const char* ptrs[kMaxArgs];
    size_t lens[kMaxArgs];
    const int argc = static_cast<int>(std::min(args.size(), kMaxArgs));
    for (int i = 0; i < argc; ++i) {
      ptrs[i] = args[i].data();
      lens[i] = args[i].size();
    }
    if (redisAppendCommandArgv(c.ctx, argc, ptrs, lens) != REDIS_OK) return nullptr;
    for (int done = 0; !done;) {
      if (redisBufferWrite(c.ctx, &done) != REDIS_OK) return nullptr;
      if (!done && !wait_for(POLLOUT)) {
        timed_out = true;
        return nullptr;
      }
    }
    for (;;) {
      void* reply = nullptr;
      if (redisGetReplyFromReader(c.ctx, &reply) != REDIS_OK) return nullptr;
      if (reply != nullptr) return static_cast<redisReply*>(reply);
      if (!wait_for(POLLIN)) {
        timed_out = true;
        return nullptr;
      }
      if (redisBufferRead(c.ctx) != REDIS_OK) return nullptr;
    }
  };
  auto io_error = [&](const char* during) {
    std::string msg = absl::StrCat(where(), ": ", during, ": ",
                                   c.ctx && c.ctx->err ? c.ctx->errstr : "timed out");
    if (timed_out || (c.ctx && c.ctx->err == REDIS_ERR_IO &&
                      (errno == EAGAIN || errno == EWOULDBLOCK))) {
      msg = absl::StrCat(where(), ": ", during, ": timed out after ", url_.timeout_ms, " ms");
    }
    c.Drop();
    return BackendError(msg);
  };
  if (c.ctx != nullptr && c.pid != getpid()) {
    c.ctx = nullptr;  // the parent's socket: leave it to the parent
  }
  if (c.ctx == nullptr) {
    if (remaining() <= 0) return BackendError(absl::StrCat(where(), ": timed out"));
    c.ctx = redisConnectWithTimeout(url_.host.c_str(), url_.port, Tv(remaining()));
    c.pid = getpid();
    if (c.ctx == nullptr) return NoMemError("cannot allocate a Redis context");
    if (c.ctx->err) return io_error("cannot connect");
    auto check = [&](redisReply* r, const char* during) -> absl::Status {
      if (r == nullptr) return io_error(during);
      std::string err = r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len) : "";
      freeReplyObject(r);
      if (!err.empty()) {
        c.Drop();
        return BackendError(absl::StrCat(where(), ": ", during, ": ", err));
      }
      return absl::OkStatus();
    };
    if (!url_.password.empty()) {
      std::vector<std::string> auth = {"AUTH"};
      if (!url_.user.empty()) auth.push_back(url_.user);
      auth.push_back(url_.password);
      absl::Status st = check(command(auth), "AUTH");
      if (!st.ok()) return st;
    }
    if (url_.db != 0) {
      absl::Status st = check(command({"SELECT", std::to_string(url_.db)}), "SELECT");
      if (!st.ok()) return st;
    }
    if (secret_.load(std::memory_order_acquire) == 0) {
      // One ticket key per Redis and prefix: whoever connects first sets it.
      std::random_device rd;
      const uint64_t mine = (static_cast<uint64_t>(rd()) << 32 | rd()) | 1;
      const std::string key = absl::StrCat("{", url_.prefix, ":}secret");
      redisReply* set = command({"SET", key, std::to_string(mine), "NX"});
      if (set == nullptr) return io_error("SET");
      freeReplyObject(set);
      redisReply* got = command({"GET", key});
      if (got == nullptr) return io_error("GET");
      uint64_t shared = 0;
      if (got->type == REDIS_REPLY_STRING &&
          absl::SimpleAtoi(absl::string_view(got->str, got->len), &shared) && shared != 0) {
        secret_.store(shared, std::memory_order_release);
      }
      freeReplyObject(got);
    }
    redisReply* loaded = command({"SCRIPT", "LOAD", kRedisScript});
    if (loaded == nullptr) return io_error("SCRIPT LOAD");
    if (loaded->type == REDIS_REPLY_STRING && !sha_known_.load()) {
      std::lock_guard<std::mutex> l(last_error_mu_);
      if (!sha_known_.load()) {
        sha_.assign(loaded->str, loaded->len);
        sha_known_.store(true, std::memory_order_release);
      }
    }
    const bool failed = loaded->type == REDIS_REPLY_ERROR;
    std::string err = failed ? std::string(loaded->str, loaded->len) : "";
    freeReplyObject(loaded);
    if (failed) {
      c.Drop();
      return BackendError(absl::StrCat(where(), ": SCRIPT LOAD: ", err));
    }
  }
  redisReply* r = command(argv);
  if (r == nullptr) return io_error(argv[0] == "EVAL" ? "EVAL" : "EVALSHA");
  if (r->type == REDIS_REPLY_ERROR && absl::StartsWith(absl::string_view(r->str, r->len), "NOSCRIPT")) {
    // Not loaded yet on this server (or flushed, or a restarted server):
    // EVAL loads and runs it.
    freeReplyObject(r);
    std::vector<std::string> eval = argv;
    eval[0] = "EVAL";
    eval[1] = kRedisScript;
    r = command(eval);
    if (r == nullptr) return io_error("EVAL");
  }
  if (r->type == REDIS_REPLY_ERROR) {
    std::string err(r->str, r->len);
    freeReplyObject(r);
    c.Drop();
    return BackendError(absl::StrCat(where(), ": ", err));
  }
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 3) {
    freeReplyObject(r);
    c.Drop();
    return BackendError(absl::StrCat(where(), ": unexpected reply to the script"));
  }
  Reply out;
  const int64_t code = r->element[0]->integer;
  out.code = code == 0 ? RT_OK : code == 1 ? RT_LIMITED : code == -3 ? RT_E_TOO_LARGE : RT_E_CONFIG;
  out.wait_ms = static_cast<uint64_t>(std::max<long long>(r->element[1]->integer, 0));
  out.now_ms = r->element[2]->integer;
  std::vector<long long> extra;
  for (size_t i = 3; i < r->elements; ++i) {
    redisReply* e = r->element[i];
    if (e->type == REDIS_REPLY_STRING) out.stored_limits.assign(e->str, e->len);
    if (e->type == REDIS_REPLY_INTEGER) extra.push_back(e->integer);
  }
  // kStats: n used counts, the block, then (remaining, reset, limit) per unit.
  if (extra.size() >= 13) {
    const size_t n = extra.size() - 13;
    for (size_t i = 0; i < n; ++i) out.used.push_back(static_cast<uint64_t>(extra[i]));
    out.blocked_ms = static_cast<uint64_t>(std::max<long long>(extra[n], 0));
    for (int u = 0; u < 4; ++u) {
      out.caps[u].remaining = extra[n + 1 + u * 3];
      out.caps[u].reset_ms = static_cast<uint64_t>(std::max<long long>(extra[n + 2 + u * 3], 0));
      out.caps[u].limit = static_cast<uint64_t>(std::max<long long>(extra[n + 3 + u * 3], 0));
    }
  }
  freeReplyObject(r);
  return out;
}

absl::StatusOr<RedisStore::Reply> RedisStore::Run(Op op, absl::string_view model,
                                                  const RemoteSpec& spec, const Cost& cost,
                                                  int64_t time_arg, const Cost& granted,
                                                  const Observation& observation) {
  const int64_t start = NowUs();
  const int64_t next = next_attempt_us_.load(std::memory_order_relaxed);
  if (start < next) {
    std::lock_guard<std::mutex> l(last_error_mu_);
    return BackendError(absl::StrCat(last_error_, " (retrying in ", (next - start) / 1000 + 1,
                                     " ms)"));
  }
  const int64_t deadline = start + static_cast<int64_t>(url_.timeout_ms) * 1000;
  static const char* const kOps[] = {"acquire", "check", "record", "settle",
                                     "stats",   "reset", "block",  "observe"};
  std::vector<std::string> argv;
  argv.reserve(20);
  // By SHA once a connection has loaded the script (SCRIPT LOAD at connect);
  // the whole script before that.
  if (sha_known_.load(std::memory_order_acquire)) {
    argv.push_back("EVALSHA");
    argv.push_back(sha_);
  } else {
    argv.push_back("EVAL");
    argv.push_back(kRedisScript);
  }
  argv.push_back("1");
  argv.push_back(absl::StrCat("{", url_.prefix, ":", model, "}"));
  argv.push_back(kOps[static_cast<int>(op)]);
  argv.push_back(spec.head);
  argv.push_back(url_.update_limits ? "1" : "0");
  argv.push_back(std::string(1, UnitLetter(observation.unit)));
  // The numbers, packed: nine, then the windows' layout.
  std::string numbers;
  numbers.reserve(9 * 8 + spec.layout.size());
  for (uint64_t v : {cost.input, cost.output}) AppendDouble(&numbers, Exact(v));
  constexpr int64_t kMaxTime = int64_t{1} << 53;
  AppendDouble(&numbers,
               static_cast<double>(std::max(std::min(time_arg, kMaxTime), -kMaxTime)));
  for (uint64_t v : {granted.input, granted.output, observation.remaining, observation.limit}) {
    AppendDouble(&numbers, Exact(v));
  }
  AppendDouble(&numbers, static_cast<double>(spec.ttl_ms));
  AppendDouble(&numbers, static_cast<double>(spec.n));
  const size_t layout_at = numbers.size();
  numbers += spec.layout;
  for (int i = 0; i < spec.n; ++i) {
    const RemoteSpec::Window& w = spec.w[i];
    if (w.calendar_tz[0] == '\0') continue;
    // The client's next local midnight: the script's start for a new day.
    std::string day_end;
    AppendDouble(&day_end, static_cast<double>(NextLocalMidnightMs(w.calendar_tz, UnixMs())));
    numbers.replace(layout_at + static_cast<size_t>(i) * 40 + 32, 8, day_end);
  }
  argv.push_back(std::move(numbers));
  argv.push_back(spec.numbers_format);
  argv.push_back(spec.state_format);
  // A free connection of the pool, starting from this thread's own.
  static thread_local unsigned home = static_cast<unsigned>(
      std::hash<std::thread::id>{}(std::this_thread::get_id()));
  for (;;) {
    for (int k = 0; k < kPoolSize; ++k) {
      Conn& c = *pool_[(home + k) % kPoolSize];
      bool expected = false;
      if (!c.busy.compare_exchange_strong(expected, true, std::memory_order_acquire)) continue;
      auto reply = RunOn(c, deadline, argv);
      c.busy.store(false, std::memory_order_release);
      if (reply.ok()) {
        NoteSuccess();
      } else if (reply.status().code() == absl::StatusCode::kUnavailable) {
        NoteFailure(std::string(reply.status().message()));
      }
      return reply;
    }
    if (NowUs() >= deadline) {
      return BackendError(absl::StrCat("Redis ", url_.host, ":", url_.port,
                                       ": every pooled connection stayed busy for ",
                                       url_.timeout_ms, " ms"));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

}  // namespace ratetrack
