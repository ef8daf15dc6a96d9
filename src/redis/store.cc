#include "redis/store.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "ratetrack.h"
#include "redis/batching.h"
#include "redis/transport.h"
#include "spin_lock.h"
#include "status.h"

namespace ratetrack {

namespace {

constexpr int64_t kMinBackoffMs = 50;
constexpr int64_t kMaxBackoffMs = 2000;
// The server's clock moving more than this (plus the round trip and the
// drift allowed for) from where this process's monotonic clock says it
// should be is a step.
constexpr double kClockStepMs = 1000;

// The message of a misconfiguration: what the server said, what is wrong,
// and that on_error does not apply.
std::string Misconfigured(const std::string& said, const ErrorReplyKind& kind) {
  return absl::StrCat(said, ": ", kind.why,
                      " (a misconfiguration, not an outage: every call fails with RT_E_CONFIG "
                      "until it is fixed, whatever on_error says)");
}

}  // namespace

absl::Status RedisStore::TlsCertificateError(Conn& c, const char* during) const {
  const std::string said = absl::StrCat(where_, ": ", during, ": ",
                                        c.ctx != nullptr ? c.ctx->errstr : "certificate");
  c.Drop();
  return ConfigError(Misconfigured(said, {true, kTlsCertificateAdvice}));
}

absl::Status RedisStore::IoError(Conn& c, const char* during) const {
  std::string msg = absl::StrCat(where_, ": ", during, ": ",
                                 c.ctx && c.ctx->err ? c.ctx->errstr : "timed out");
  if (c.limits.refused != nullptr) {
    msg = absl::StrCat(
        where_, ": ", during, ": refused ", c.limits.refused,
        c.limits.value > 0 ? absl::StrCat(" (", c.limits.value, " ", c.limits.unit, ")") : "",
        "; the connection is dropped");
  } else if (c.timed_out ||
             (c.ctx && c.ctx->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK))) {
    msg = absl::StrCat(where_, ": ", during, ": timed out after ", url_.timeout_ms, " ms");
  }
  c.limits = ReplyLimits{};
  c.Drop();
  return BackendError(msg);
}

RedisStore::RedisStore(RedisUrl url, bool cluster_node)
    : url_(std::move(url)),
      cluster_node_(cluster_node),
      route_(url_),
      where_(absl::StrCat("Redis ", route_.Describe())),
      script_(ScriptText(url_)) {
  for (int i = 0; i < url_.connections; ++i) pool_.push_back(std::make_unique<Conn>());
  auto tls = TlsContext::Create(url_);
  if (tls.ok()) {
    tls_ = std::move(*tls);
  } else {
    tls_status_ = tls.status();
  }
}

RedisStore::~RedisStore() {
  for (auto& c : pool_) c->Drop();
}

void RedisStore::NoteFailure(const std::string& message) {
  route_.Forget();  // sentinels: asked again for the master
  errors_.fetch_add(1);
  connected_.store(false);
  misconfigured_.store(false);
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

void RedisStore::NoteMisconfiguration(const std::string& message) {
  NoteFailure(message);
  misconfigured_.store(true);
}

void RedisStore::NoteError(const std::string& message) {
  errors_.fetch_add(1);
  std::lock_guard<std::mutex> l(last_error_mu_);
  last_error_ = message;
}

void RedisStore::NoteSuccess() {
  connected_.store(true, std::memory_order_relaxed);
  if (degraded_since_ms_.load(std::memory_order_relaxed) != 0) {
    misconfigured_.store(false);
    degraded_since_ms_.store(0);
    backoff_ms_.store(0);
    first_failure_pending_.store(false);
  }
}

void RedisStore::UpdateClock(int64_t server_ms, int64_t sent_us, int64_t recv_us) {
  // The server read its clock between sent_us and recv_us: the offset is
  // server_ms less their middle, give or take half the round trip (and the
  // millisecond TIME was truncated to).
  const double mid_ms = static_cast<double>(sent_us + recv_us) / 2000;
  const double offset = static_cast<double>(server_ms) - mid_ms;
  const double error = static_cast<double>(recv_us - sent_us) / 2000 + 1;
  if (!clock_known_) {
    clock_known_ = true;
    clock_offset_ms_ = offset;
    clock_error_ms_ = error;
    clock_seen_us_ = recv_us;
    return;
  }
  // What was known ages: a server's clock may run fast or slow (NTP slews
  // it by at most 0.05%); 0.1% is allowed for.
  const double aged = clock_error_ms_ + static_cast<double>(recv_us - clock_seen_us_) / 1e6;
  clock_seen_us_ = recv_us;
  if (std::abs(offset - clock_offset_ms_) > kClockStepMs + aged + error) {
    // The server's clock stepped. The steps of one episode add up: it ends
    // when the clock has stood still for the longest window of any call.
    if (clock_step_at_us_ == 0 || recv_us - clock_step_at_us_ >= clock_longest_ms_ * 1000) {
      clock_step_ms_ = 0;
    }
    clock_step_ms_ += offset - clock_offset_ms_;
    clock_step_at_us_ = recv_us;
  } else if (error > aged) {
    clock_error_ms_ = aged;  // the older reading is the closer one
    return;
  }
  clock_offset_ms_ = offset;
  clock_error_ms_ = error;
}

bool RedisStore::TakeFirstFailure() {
  return first_failure_pending_.load(std::memory_order_relaxed) &&
         first_failure_pending_.exchange(false);
}

absl::Status RedisStore::Probe() {
  if (!tls_status_.ok()) return tls_status_;
  Conn& c = *pool_[0];  // nobody else uses the store yet
  const absl::Status st = Connect(c, NowUs() + static_cast<int64_t>(url_.timeout_ms) * 1000);
  if (st.ok()) {
    NoteSuccess();
    connected_.store(true);
    return st;
  }
  if (IsMisconfiguration(st)) {
    NoteMisconfiguration(std::string(st.message()));
    return st;
  }
  c.Drop();
  return absl::OkStatus();  // an outage: the calls meet it, and on_error decides
}

RedisStore::Health RedisStore::health() const {
  std::lock_guard<std::mutex> l(last_error_mu_);
  return {connected_.load(), degraded_since_ms_.load(), errors_.load(), last_error_};
}

bool RedisStore::Idle() const {
  for (const auto& c : pool_) {
    if (c->busy) return false;
  }
  return true;
}

void RedisStore::LockForFork() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  {
    // No new call takes a connection or queues from now on; those queued
    // are served (within their deadlines), so the connections come free.
    SpinLockHolder l(&mu_);
    forking_ = true;
  }
  // Held across fork(): no command is on the wire then, and nobody waits (a
  // queued request always has a leader at work).
  for (;;) {
    mu_.Lock();
    if (Idle()) break;
    mu_.Unlock();
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  last_error_mu_.lock();  // a child must not inherit it held
}

void RedisStore::UnlockForFork(bool child) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  if (child) {
    // Never share the parent's socket: the child connects anew. Closing the
    // child's copy of the descriptor leaves the parent's connection as it is.
    for (auto& c : pool_) c->Drop();
    next_attempt_us_.store(0);  // and without the parent's backoff
    backoff_ms_.store(0);
  }
  last_error_mu_.unlock();
  forking_ = false;
  mu_.Unlock();
}

absl::Status RedisStore::Connect(Conn& c, int64_t deadline_us) {
  c.timed_out = false;
  if (deadline_us - NowUs() <= 0) return BackendError(absl::StrCat(where_, ": timed out"));
  if (!tls_status_.ok()) return tls_status_;
  // With sentinels: the master they name (asked again after any failure).
  const absl::StatusOr<Endpoint> target = route_.Target(deadline_us);
  if (!target.ok()) return target.status();
  switch (c.Open(*target, deadline_us, tls_.get())) {
    case Transport::Opened::kOk:
      break;
    case Transport::Opened::kNoMemory:
      return NoMemError("cannot allocate a Redis context");
    case Transport::Opened::kFailed:
      if (c.tls_certificate) return TlsCertificateError(c, "TLS handshake");
      return IoError(c, c.ssl != nullptr ? "TLS handshake" : "cannot connect");
    case Transport::Opened::kNotNonBlocking:
      return BackendError(absl::StrCat(where_, ": cannot make the socket non-blocking"));
  }
  // One command and its reply, within the deadline: an I/O failure, an
  // error reply or a reply `ok` does not accept (`expected` says what it
  // accepts) fails the connection; an error reply that shows the server is
  // not one this URL can use (ClassifyErrorReply) is a misconfiguration.
  // `optional`: an error reply is returned as it is (the check it was for
  // is skipped).
  auto step = [&](const std::vector<std::string>& args, const char* during, const char* expected,
                  auto ok, bool optional = false) -> absl::StatusOr<ReplyPtr> {
    ReplyPtr r(c.AppendArgv(args) && c.Flush(deadline_us) ? c.NextReply(deadline_us)
                                                               : nullptr,
               freeReplyObject);
    if (r == nullptr) {
      // TLS 1.3: a server that refuses our certificate says so on the
      // first read after the handshake.
      if (c.tls_certificate) return TlsCertificateError(c, during);
      return IoError(c, during);
    }
    if (r->type == REDIS_REPLY_ERROR) {
      const std::string err(r->str, r->len);
      const ErrorReplyKind kind = ClassifyErrorReply(err, during);
      // An optional check the server does not allow or know is skipped.
      const bool skipped = optional && (absl::StartsWith(err, "NOPERM") ||
                                        absl::StartsWith(err, "ERR unknown command"));
      if (kind.misconfigured && !skipped) {
        c.Drop();
        return ConfigError(Misconfigured(absl::StrCat(where_, ": ", during, ": ", err), kind));
      }
      if (optional) return r;
      c.Drop();
      return BackendError(absl::StrCat(where_, ": ", during, ": ", err));
    }
    if (!ok(*r)) {
      std::string got = TypeName(r.get());
      if (r->type == REDIS_REPLY_INTEGER) absl::StrAppend(&got, " (", r->integer, ")");
      if (r->type == REDIS_REPLY_ARRAY) absl::StrAppend(&got, " of ", r->elements);
      c.Drop();
      return BackendError(absl::StrCat(where_, ": ", during, ": the reply is ", got,
                                       ", expected ", expected, "; the connection is dropped"));
    }
    return r;
  };
  auto is_ok = [](const redisReply& r) {
    return r.type == REDIS_REPLY_STATUS && absl::string_view(r.str, r.len) == "OK";
  };
  if (!url_.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!url_.user.empty()) auth.push_back(url_.user);
    auth.push_back(url_.password);
    if (auto r = step(auth, "AUTH", "OK", is_ok); !r.ok()) return r.status();
  }
  // What the server is (INFO: one round trip, a flat string; ROLE's reply
  // nests deeper than replies may): a master or a server without
  // replication, not a replica, a sentinel or a cluster's node (this URL
  // does not route slots). A server that does not answer INFO (renamed, an
  // ACL without it, a proxy) is taken as it is: what follows shows the rest.
  auto info = step({"INFO"}, "INFO", "a string", [](const redisReply& r) {
    return r.type == REDIS_REPLY_STRING || r.type == REDIS_REPLY_STATUS;
  }, /*optional=*/true);
  if (!info.ok()) return info.status();
  if ((*info)->type != REDIS_REPLY_ERROR) {
    const absl::string_view text((*info)->str, (*info)->len);
    auto field = [&](absl::string_view name) -> absl::string_view {
      const std::string key = absl::StrCat("\n", name, ":");
      size_t at = text.find(key);
      if (at == absl::string_view::npos) return {};
      at += key.size();
      const size_t end = text.find_first_of("\r\n", at);
      return text.substr(at, end == absl::string_view::npos ? absl::string_view::npos : end - at);
    };
    const std::string said = absl::StrCat(where_, ": INFO: ");
    if (field("redis_mode") == "sentinel" || field("server_mode") == "sentinel" ||
        absl::StrContains(text, "# Sentinel")) {
      c.Drop();
      return ConfigError(Misconfigured(
          absl::StrCat(said, "the server is a Redis Sentinel"),
          {true, "use redis+sentinel://host:port/service (the sentinels name the master), or "
                 "point the URL at the master itself"}));
    }
    if ((field("role") == "slave" || field("role") == "replica") && cluster_node_) {
      // A master of the slot map that is a replica now: a failover (an
      // outage, on_error decides); the client asks for the map again.
      c.Drop();
      return BackendError(absl::StrCat(said, "the cluster's node ", target->Describe(),
                                       " is a replica now (a failover): the slot map is asked "
                                       "again"));
    }
    if ((field("role") == "slave" || field("role") == "replica") && route_.sentinel()) {
      // Where the sentinels named the master: a failover in progress (an
      // outage, on_error decides); they are asked again.
      c.Drop();
      route_.Forget();
      return BackendError(absl::StrCat(said, "the server the sentinels named, ",
                                       target->Describe(), ", is a replica now (a failover in "
                                       "progress); the sentinels are asked again"));
    }
    if (field("role") == "slave" || field("role") == "replica") {
      c.Drop();
      const absl::string_view host = field("master_host"), port = field("master_port");
      return ConfigError(Misconfigured(
          absl::StrCat(said, "the server is a replica",
                       host.empty() ? "" : absl::StrCat(" of ", host, ":", port)),
          {true, "point the URL at the master (a replica's writes would be refused, or lost)"}));
    }
    const bool clustered = field("cluster_enabled") == "1" || field("redis_mode") == "cluster";
    if (cluster_node_ && !clustered && !field("cluster_enabled").empty()) {
      c.Drop();
      return ConfigError(Misconfigured(
          absl::StrCat(said, "cluster_enabled:0"),
          {true, "the URL says redis+cluster://, and the server is not a cluster's node: use "
                 "redis://host:port"}));
    }
    if (clustered && !cluster_node_) {
      c.Drop();
      return ConfigError(Misconfigured(absl::StrCat(said, "cluster_enabled:1"),
                                       ClassifyErrorReply("MOVED", "INFO")));
    }
  }
  if (url_.db != 0) {
    if (auto r = step({"SELECT", std::to_string(url_.db)}, "SELECT", "OK", is_ok); !r.ok()) {
      return r.status();
    }
  }
  if (secret_.load(std::memory_order_acquire) == 0 && !cluster_node_) {
    // One ticket key per Redis and prefix: whoever connects first sets it
    // (in a cluster, the client learns it from the node of its slot).
    std::random_device rd;
    const uint64_t mine = (static_cast<uint64_t>(rd()) << 32 | rd()) | 1;
    const std::string key = absl::StrCat("{", url_.prefix, ":}secret");
    auto set = step({"SET", key, std::to_string(mine), "NX"}, "SET", "OK or nil",
                    [&](const redisReply& r) { return is_ok(r) || r.type == REDIS_REPLY_NIL; });
    if (!set.ok()) return set.status();
    uint64_t shared = 0;
    auto got = step({"GET", key}, "GET", "a string holding a number other than 0",
                    [&](const redisReply& r) {
                      return r.type == REDIS_REPLY_STRING &&
                             absl::SimpleAtoi(absl::string_view(r.str, r.len), &shared) &&
                             shared != 0;
                    });
    if (!got.ok()) return got.status();
    secret_.store(shared, std::memory_order_release);
  }
  auto loaded = step({"SCRIPT", "LOAD", script_}, "SCRIPT LOAD", "a SHA1 (40 hex digits)",
                     [](const redisReply& r) {
                       const absl::string_view sha(r.str == nullptr ? "" : r.str, r.len);
                       return r.type == REDIS_REPLY_STRING && sha.size() == 40 &&
                              sha.find_first_not_of("0123456789abcdefABCDEF") ==
                                  absl::string_view::npos;
                     });
  if (!loaded.ok()) return loaded.status();
  if (!sha_known_.load()) {
    std::lock_guard<std::mutex> l(last_error_mu_);
    if (!sha_known_.load()) {
      sha_.assign((*loaded)->str, (*loaded)->len);
      sha_known_.store(true, std::memory_order_release);
    }
  }
  return absl::OkStatus();
}

void RedisStore::Prepare(Request& me, int64_t start_us, bool full_form, Op op,
                         absl::string_view model, const RemoteSpec& spec, const Cost& cost,
                         int64_t time_arg, const Cost& granted,
                         const Observation& observation, bool asking) const {
  me.op = op;
  me.asking = asking;
  me.cost = cost;
  me.deadline_us = start_us + static_cast<int64_t>(url_.timeout_ms) * 1000;
  me.nwin = spec.n;
  me.longest_ms = spec.longest_ms;
  const size_t key_size = url_.prefix.size() + model.size() + 3;  // "{prefix:model}"
  // The short form: 1 (the number of keys), the key, four doubles.
  std::string& wire = me.wire;
  wire.resize(3 * RespWriter::kBulkOverhead + 1 + key_size + 32);
  RespWriter w{wire.data()};
  w.Bulk("1");
  w.Header(key_size);
  w.Raw("{", 1);
  w.Raw(url_.prefix.data(), url_.prefix.size());
  w.Raw(":", 1);
  w.Raw(model.data(), model.size());
  w.Raw("}\r\n", 3);
  w.Header(32);
  w.Double(spec.digest);
  // 16 more: the full path (the tests compare the two).
  w.Double(static_cast<double>(static_cast<int>(op) + (url_.full_path_only ? 16 : 0)));
  me.tokens_at = static_cast<size_t>(w.p - wire.data());
  for (uint64_t v : {cost.input, cost.output}) w.Double(Exact(v));
  w.Raw("\r\n", 2);
  wire.resize(static_cast<size_t>(w.p - wire.data()));
  // The full form: the numbers (nine, then the windows' layout) and the head.
  std::string& full = me.full;
  if (!full_form && !url_.full_path_only &&
      (op == Op::kAcquire || op == Op::kCheck || op == Op::kRecord)) {
    full.clear();
    return;
  }
  const size_t numbers_size = 9 * 8 + spec.layout.size();
  full.resize(2 * RespWriter::kBulkOverhead + numbers_size + spec.head.size());
  RespWriter f{full.data()};
  f.Header(numbers_size);
  f.Double(url_.update_limits ? 1 : 0);
  f.Double(static_cast<double>(static_cast<int>(observation.unit)));
  constexpr int64_t kMaxTime = int64_t{1} << 53;
  f.Double(static_cast<double>(std::max(std::min(time_arg, kMaxTime), -kMaxTime)));
  for (uint64_t v : {granted.input, granted.output, observation.remaining, observation.limit}) {
    f.Double(Exact(v));
  }
  f.Double(static_cast<double>(spec.ttl_ms));
  f.Double(static_cast<double>(spec.n));
  char* const layout = f.p;
  f.Raw(spec.layout.data(), spec.layout.size());
  for (int i = 0; i < spec.n; ++i) {
    const RemoteSpec::Window& win = spec.w[i];
    if (win.calendar_tz[0] == '\0') continue;
    // The client's next local midnight: the script's start for a new day.
    RespWriter day_end{layout + static_cast<size_t>(i) * 40 + 32};
    day_end.Double(static_cast<double>(NextLocalMidnightMs(win.calendar_tz, UnixMs())));
  }
  f.Raw("\r\n", 2);
  f.Bulk(spec.head);
  full.resize(static_cast<size_t>(f.p - full.data()));
}

std::vector<absl::StatusOr<RedisStore::Reply>> RedisStore::RunMergedForTest(
    Op op, absl::string_view model, const RemoteSpec& spec, const std::vector<Cost>& costs) {
  std::vector<absl::StatusOr<Reply>> out;
  if (costs.empty()) return out;
  const int64_t start = NowUs();
  for (bool full = false;; full = true) {
    std::unique_ptr<Request[]> reqs(new Request[costs.size()]);
    for (size_t k = 0; k < costs.size(); ++k) {
      Prepare(reqs[k], start, full, op, model, spec, costs[k]);
    }
    Conn* conn = nullptr;
    {
      SpinLockHolder l(&mu_);
      for (size_t k = 0; queue_.empty() && k < pool_.size() && conn == nullptr; ++k) {
        if (!pool_[k]->busy) conn = pool_[k].get();
      }
      if (conn != nullptr) {
        conn->busy = true;
        // The leader takes the queue along and merges it with its own.
        for (size_t k = 1; k < costs.size(); ++k) queue_.push_back(&reqs[k]);
      }
    }
    if (conn == nullptr) {
      out.assign(costs.size(), absl::FailedPreconditionError("RunMergedForTest: the store is busy"));
      return out;
    }
    Lead(*conn, &reqs[0]);
    // Asked for the full form: the merged call again, in it.
    if (!full && reqs[0].result.ok() && reqs[0].result->need_full) continue;
    for (size_t k = 0; k < costs.size(); ++k) out.push_back(std::move(reqs[k].result));
    return out;
  }
}

absl::StatusOr<RedisStore::Reply> RedisStore::Run(Op op, absl::string_view model,
                                                  const RemoteSpec& spec, const Cost& cost,
                                                  int64_t time_arg, const Cost& granted,
                                                  const Observation& observation, bool asking) {
  const int64_t start = NowUs();
  const int64_t next_attempt = next_attempt_us_.load(std::memory_order_relaxed);
  if (start < next_attempt) {
    std::lock_guard<std::mutex> l(last_error_mu_);
    if (misconfigured_.load(std::memory_order_relaxed)) return ConfigError(last_error_);
    return BackendError(absl::StrCat(last_error_, " (retrying in ",
                                     (next_attempt - start) / 1000 + 1, " ms)"));
  }
  for (bool full = false;; full = true) {
    Request me;
    Prepare(me, start, full, op, model, spec, cost, time_arg, granted, observation, asking);
    absl::StatusOr<Reply> r = RunPrepared(me);
    // Asked for the full form (once: a call in it is never asked again).
    if (full || !r.ok() || !r->need_full) return r;
  }
}

}  // namespace ratetrack
