// RedisStore's batching (src/redis/batching.h): a call takes a free
// connection or queues; the leader of a connection sends what is queued
// together, the decisions of one kind on one model merged into one script
// call each, and hands the results and the connection on.
#include "redis/batching.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "ratetrack.h"
#include "spin_lock.h"
#include "status.h"

namespace ratetrack {

namespace {

// Sleeps while *word == expected, until woken or deadline_us (CLOCK_MONOTONIC)
// passes; false once it has passed.
bool FutexWaitUntil(std::atomic<uint32_t>* word, uint32_t expected, int64_t deadline_us) {
  const struct timespec at = {static_cast<time_t>(deadline_us / 1000000),
                              static_cast<long>(deadline_us % 1000000) * 1000};
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time.
  const long rc = syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_BITSET_PRIVATE,
                          expected, &at, nullptr, FUTEX_BITSET_MATCH_ANY);
  return !(rc == -1 && errno == ETIMEDOUT);
}

// Wakes the thread sleeping on `word`. Its owner may have returned already
// (it reads `state` under the lock): waking a word nobody sleeps on is
// harmless.
void FutexWake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

// Writes the protocol's pieces from `p` on, into room the caller has made

}  // namespace

RedisStore::Request* RedisStore::HandOn(Conn& c) {
  if (queue_.empty()) {
    c.busy = false;
    return nullptr;
  }
  Request* next = queue_.front();
  queue_.pop_front();
  next->conn = &c;
  next->state.store(Request::kLead, std::memory_order_release);
  return next;
}

void RedisStore::TakeBatch(Conn& c, Request* first) {
  if (first != nullptr) c.batch.push_back(first);
  while (!queue_.empty() && c.batch.size() < kMaxBatch) {
    c.batch.push_back(queue_.front());
    queue_.pop_front();
  }
  // What the sender needs of each request is moved out under the lock: a
  // caller that gives up may return (and its request go) at any time.
  c.items.clear();
  c.items.reserve(c.batch.size());
  for (Request* r : c.batch) {
    c.items.push_back({r->op, std::move(r->wire), std::move(r->full), r->tokens_at, r->cost,
                       r->deadline_us, r->nwin, r->longest_ms, r->asking});
    clock_longest_ms_ = std::max(clock_longest_ms_, r->longest_ms);
  }
  c.clock_base_ms = clock_offset_ms_ - clock_step_ms_;
  c.step_at_us = clock_step_at_us_;
}

bool RedisStore::AppendGroup(Conn& c, const std::vector<size_t>& g, bool eval) const {
  // The script (by SHA, or whole), the group's first request's arguments,
  // for a merged group the others' tokens, and in the full form the numbers
  // and the head, formatted here in the protocol's form and handed to
  // hiredis whole (its own formatting costs a few thousand instructions a
  // call).
  const Conn::Item& first = c.items[g[0]];
  const bool full = !first.full.empty();
  const bool tokens = g.size() > 1 || full;
  const int argc = 2 + 3 + (tokens ? 1 : 0) + (full ? 2 : 0);
  std::string cmd;
  cmd.reserve(64 + first.wire.size() + (full ? first.full.size() : 0) + 16 * g.size() +
              (eval ? script_.size() : 0));
  // After a cluster's ASK: this one call is taken by the node the slot is
  // migrating to.
  static constexpr absl::string_view kAsking = "*1\r\n$6\r\nASKING\r\n";
  if (first.asking) cmd.append(kAsking.data(), kAsking.size());
  const size_t at = cmd.size();
  cmd.resize(at + RespWriter::kBulkOverhead);
  RespWriter w{cmd.data() + at};
  w.Header(static_cast<size_t>(argc), '*');
  cmd.resize(static_cast<size_t>(w.p - cmd.data()));
  AppendBulk(&cmd, eval ? "EVAL" : "EVALSHA");
  AppendBulk(&cmd, eval ? absl::string_view(script_) : absl::string_view(sha_));
  if (c.step_at_us != 0 && c.sent_us - c.step_at_us < first.longest_ms * 1000) {
    // The server's clock stepped within the model's longest window: the
    // first argument carries a fifth double, the server's time as it would
    // be without the steps (the script keeps the key's time within a second
    // of it; its hot path reads four).
    const size_t header = first.tokens_at - 16 - 5;  // "$32\r\n"
    cmd.append(first.wire, 0, header);
    cmd.append("$40\r\n");
    cmd.append(first.wire, first.tokens_at - 16, 32);
    AppendDouble(&cmd, std::floor(static_cast<double>(c.sent_us) / 1000 + c.clock_base_ms));
    cmd.append("\r\n");
  } else {
    cmd.append(first.wire);
  }
  if (tokens) {
    std::string more;
    for (size_t k = 1; k < g.size(); ++k) {
      AppendDouble(&more, Exact(c.items[g[k]].cost.input));
      AppendDouble(&more, Exact(c.items[g[k]].cost.output));
    }
    AppendBulk(&cmd, more);
  }
  if (full) cmd.append(first.full);
  return redisAppendFormattedCommand(c.ctx, cmd.data(), cmd.size()) == REDIS_OK;
}

ReplyPtr RedisStore::GroupReply(Conn& c, size_t g, int64_t deadline_us) {
  if (c.items[c.groups[g][0]].asking) {
    ReplyPtr asking(c.NextReply(deadline_us), freeReplyObject);
    if (asking == nullptr) return asking;
    ReplyPtr r(c.NextReply(deadline_us), freeReplyObject);
    // ASKING refused (it is answered +OK by any cluster node): that is the
    // call's answer.
    if (r != nullptr && asking->type == REDIS_REPLY_ERROR) return asking;
    return r;
  }
  return ReplyPtr(c.NextReply(deadline_us), freeReplyObject);
}

void RedisStore::Send(Conn& c, int64_t deadline_us) {
  // Groups: requests merged into one script call, in order of their first.
  c.groups.clear();
  for (size_t i = 0; i < c.items.size(); ++i) {
    bool merged = false;
    for (auto& g : c.groups) {
      if (c.items[g[0]].MergesWith(c.items[i])) {
        g.push_back(i);
        merged = true;
        break;
      }
    }
    if (!merged) c.groups.push_back({i});
  }
  c.sent = absl::OkStatus();
  if (c.ctx == nullptr) c.sent = Connect(c, deadline_us);
  if (!c.sent.ok()) return;
  // Every group's command in one write. The server's time in each reply
  // is later than this.
  c.sent_us = BootUs();
  c.eval = !sha_known_.load();
  bool appended = true;
  for (const auto& g : c.groups) appended = appended && AppendGroup(c, g, c.eval);
  // ?replicas=N: the batch's bookings acknowledged by N replicas (WAIT
  // cannot run inside a script; after the batch's calls on this connection
  // it covers them all), within most of the time left (the rest for its
  // reply to travel).
  if (url_.replicas > 0) {
    c.wait_ms = std::max<int64_t>(1, (deadline_us - NowUs()) * 3 / 4000);
    appended = appended && AppendWait(c);
  }
  if (!appended || !c.Flush(deadline_us)) c.sent = IoError(c, c.eval ? "EVAL" : "EVALSHA");
}

bool RedisStore::AppendWait(Conn& c) const {
  return c.AppendArgv({"WAIT", std::to_string(url_.replicas), std::to_string(c.wait_ms)});
}

absl::Status RedisStore::ReadWait(Conn& c, int64_t deadline_us) {
  ReplyPtr r(c.NextReply(deadline_us), freeReplyObject);
  if (r == nullptr) return IoError(c, "WAIT");
  if (r->type == REDIS_REPLY_INTEGER && r->integer >= url_.replicas) return absl::OkStatus();
  if (r->type == REDIS_REPLY_INTEGER) {
    // Booked on the master, not yet on enough replicas: a failover now
    // could lose it. The call fails as in an outage (counted, maybe twice:
    // never over-admitted).
    return BackendError(absl::StrCat(where_, ": WAIT: ", r->integer, " of ", url_.replicas,
                                     " replicas acknowledged the bookings within ", c.wait_ms,
                                     " ms (replicas=", url_.replicas, ")"));
  }
  const std::string got = r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len)
                                                       : absl::StrCat("the reply is ",
                                                                      TypeName(r.get()));
  c.Drop();
  return BackendError(absl::StrCat(where_, ": WAIT: ", got, "; the connection is dropped"));
}

void RedisStore::Lead(Conn& c, Request* me) {
  const int64_t deadline_us = me->deadline_us;
  if (!c.in_flight) {
    {
      SpinLockHolder l(&mu_);
      TakeBatch(c, me);
    }
    Send(c, deadline_us);
  }
  c.in_flight = false;
  const std::vector<Conn::Item>& batch = c.items;
  const std::vector<std::vector<size_t>>& groups = c.groups;
  std::vector<absl::StatusOr<Reply>> results(batch.size());
  absl::Status status = c.sent;
  std::vector<ReplyPtr> replies;
  // Per group (at most kMaxBatch), whether it was sent as EVAL (messages).
  uint64_t evaled = c.eval ? ~uint64_t{0} : 0;
  if (status.ok()) {
    // Every reply, in order.
    const char* what = c.eval ? "EVAL" : "EVALSHA";
    for (size_t i = 0; status.ok() && i < groups.size(); ++i) {
      ReplyPtr r = GroupReply(c, i, deadline_us);
      if (r == nullptr) status = IoError(c, what);
      replies.push_back(std::move(r));
    }
    if (status.ok() && url_.replicas > 0) status = ReadWait(c, deadline_us);
    // Not loaded on this server (flushed, or a restarted server): EVAL
    // loads and runs it.
    for (size_t i = 0; status.ok() && i < groups.size(); ++i) {
      redisReply* r = replies[i].get();
      if (r->type != REDIS_REPLY_ERROR ||
          !absl::StartsWith(absl::string_view(r->str, r->len), "NOSCRIPT")) {
        continue;
      }
      evaled |= uint64_t{1} << i;
      if (!AppendGroup(c, groups[i], /*eval=*/true) || !c.Flush(deadline_us)) {
        status = IoError(c, "EVAL");
      }
      if (status.ok()) {
        replies[i] = GroupReply(c, i, deadline_us);
        if (replies[i] == nullptr) status = IoError(c, "EVAL");
      }
      if (status.ok() && url_.replicas > 0) {
        status = AppendWait(c) && c.Flush(deadline_us) ? ReadWait(c, deadline_us)
                                                        : IoError(c, "WAIT");
      }
    }
  }
  // Every reply checked and turned into its requests' results. One the
  // script never gives fails the whole batch, as an outage does: the
  // connection's stream is not to be trusted, so it goes.
  int64_t server_ms = -1;  // the server's time in the first reply that has it
  const int64_t recv_us = BootUs();
  bool script_failed = false;
  bool drop = false;
  for (size_t i = 0; status.ok() && i < groups.size(); ++i) {
    const std::vector<size_t>& g = groups[i];
    const Conn::Item& first = batch[g[0]];
    redisReply* r = replies[i].get();
    if (r->type == REDIS_REPLY_ERROR) {
      const absl::string_view text(r->str, r->len);
      // A cluster's node: the slot is served elsewhere (MOVED), or this key
      // is, during a migration (ASK). Neither is a failure: the client
      // follows it (src/redis/client.cc).
      if (cluster_node_ && (absl::StartsWith(text, "MOVED ") || absl::StartsWith(text, "ASK "))) {
        for (size_t k : g) results[k] = absl::AbortedError(text);
        continue;
      }
      script_failed = true;
      std::string error = absl::StrCat(where_, ": ", text);
      // The server is not one this URL can use (a replica's READONLY, a
      // cluster's MOVED, credentials taken away): a misconfiguration,
      // whatever on_error says.
      // With sentinels, READONLY is a failover: an outage (the sentinels
      // are asked again), not a misconfiguration.
      if (const ErrorReplyKind kind = ClassifyErrorReply(text, "EVALSHA");
          kind.misconfigured && !(route_.sentinel() && absl::StartsWith(text, "READONLY"))) {
        error = absl::StrCat(error, ": ", kind.why,
                             " (a misconfiguration, not an outage: every call fails with "
                             "RT_E_CONFIG until it is fixed, whatever on_error says)");
        drop = true;
        NoteMisconfiguration(error);
        for (size_t k : g) results[k] = ConfigError(error);
        continue;
      }
      // Not the script failing ("ERR ...") but the server refusing
      // (LOADING, BUSY, MASTERDOWN, OOM, ...): a new connection next time.
      if (!absl::StartsWith(text, "ERR ")) drop = true;
      NoteFailure(error);
      for (size_t k : g) results[k] = BackendError(error);
      continue;
    }
    int64_t t = -1;
    const std::string bad =
        ParseScriptReply(*r, first.op, first.full.empty(), first.nwin, g, &results, &t);
    if (!bad.empty()) {
      status = BackendError(absl::StrCat(where_, ": ", (evaled >> i & 1) != 0 ? "EVAL" : "EVALSHA",
                                         " (", OpName(first.op), "): ", bad,
                                         "; the connection is dropped"));
      c.Drop();
    }
    if (server_ms < 0) server_ms = t;
  }
  if (!status.ok()) {
    if (status.code() == absl::StatusCode::kUnavailable) {
      NoteFailure(std::string(status.message()));
    } else if (IsMisconfiguration(status)) {
      NoteMisconfiguration(std::string(status.message()));
    }
    for (auto& r : results) r = status;
  } else {
    if (drop) c.Drop();
    if (!script_failed) NoteSuccess();
  }
  // Hand out the results. With requests queued meanwhile and the
  // connection up, they are the next batch: sent from here at once, before
  // anyone is woken, so that Redis works on it while the thread it is
  // handed to wakes up (a wake-up costs tens of microseconds on a busy
  // machine; the connection would stand idle for it). Else the connection
  // goes to the first one queued (it connects) or comes free.
  std::vector<Request*> wake;
  Request* next = nullptr;
  bool pipelined = false;
  int64_t latest = 0;  // the next batch's latest deadline
  {
    SpinLockHolder l(&mu_);
    if (status.ok() && server_ms > 0) UpdateClock(server_ms, c.sent_us, recv_us);
    for (size_t i = 0; i < batch.size(); ++i) {
      Request* r = c.batch[i];
      if (r == nullptr) continue;  // gave up waiting
      r->result = std::move(results[i]);
      r->failed = !status.ok();
      r->state.store(Request::kDone, std::memory_order_release);
      if (r != me) wake.push_back(r);
    }
    c.batch.clear();
    if (c.ctx != nullptr && !queue_.empty()) {
      TakeBatch(c, nullptr);
      for (const Conn::Item& it : c.items) latest = std::max(latest, it.deadline_us);
      pipelined = true;
    } else {
      next = HandOn(c);
    }
  }
  if (pipelined) {
    // Written within the batch's time and this call's own (a caller never
    // waits longer than its timeout).
    Send(c, std::min(latest, deadline_us));
    {
      SpinLockHolder l(&mu_);
      // The replies are read by the request of the batch with the latest
      // deadline still waiting (the others may give up before it must).
      for (Request* r : c.batch) {
        if (r != nullptr && (next == nullptr || r->deadline_us >= next->deadline_us)) next = r;
      }
      if (next != nullptr) {
        c.in_flight = true;
        next->conn = &c;
        next->state.store(Request::kLead, std::memory_order_release);
      }
    }
    if (next == nullptr) {
      // Every request of the batch gave up while it was sent: nobody reads
      // its replies, so the connection goes (the next leader connects).
      c.Drop();
      SpinLockHolder l(&mu_);
      c.batch.clear();
      next = HandOn(c);
    }
  }
  for (Request* r : wake) FutexWake(&r->state);
  if (next != nullptr) FutexWake(&next->state);
}

absl::StatusOr<RedisStore::Reply> RedisStore::RunPrepared(Request& me) {
  // Callers inside Run, this one included.
  struct Caller {
    std::atomic<int>& n;
    explicit Caller(std::atomic<int>& count) : n(count) { n.fetch_add(1, std::memory_order_relaxed); }
    ~Caller() { n.fetch_sub(1, std::memory_order_relaxed); }
  } caller(callers_);
  // A free connection of the pool, starting from this thread's own; with
  // none free, wait in the queue: the next leader sends the queued requests
  // together, merging decisions on one model into one script call. With no
  // more callers at once than connections, each gets one (nothing could
  // merge; no call waits for another); with more, only two connections stay
  // busy and the others' decisions merge, which costs Redis and the CPUs
  // less per decision than more calls in flight (README, Performance).
  static thread_local unsigned home = static_cast<unsigned>(
      std::hash<std::thread::id>{}(std::this_thread::get_id()));
  // Failing by this call's own deadline while waiting for a connection or a
  // fork: an error of this call (counted), not of Redis (no backoff).
  auto timed_out = [&] {
    const std::string message =
        absl::StrCat(where_, ": timed out after ", url_.timeout_ms, " ms waiting for a connection");
    NoteError(message);
    return BackendError(message);
  };
  Conn* conn = nullptr;
  for (bool queued = false; conn == nullptr && !queued;) {
    {
      SpinLockHolder l(&mu_);
      if (!forking_) {
        const size_t size = pool_.size();
        size_t busy = 0;
        for (const auto& c : pool_) busy += c->busy;
        const bool crowded = static_cast<size_t>(callers_.load(std::memory_order_relaxed)) > size;
        if (busy < (crowded ? std::min(size, kBusyWhenQueued) : size)) {
          for (size_t k = 0; k < size && conn == nullptr; ++k) {
            Conn* c = pool_[(home + k) % size].get();
            if (!c->busy) {
              c->busy = true;
              conn = c;
            }
          }
        }
        if (conn == nullptr) {
          queue_.push_back(&me);
          queued = true;
        }
      }
    }
    if (conn == nullptr && !queued) {  // a fork is being prepared
      if (NowUs() >= me.deadline_us) return timed_out();
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  bool put_back = false;
  while (conn == nullptr) {
    while (me.state.load(std::memory_order_acquire) == Request::kWaiting) {
      if (FutexWaitUntil(&me.state, Request::kWaiting, me.deadline_us)) continue;
      // The deadline passed. Still queued: leave; on the wire: the leader
      // drops the reply. Else it has just been answered.
      bool answered = false;
      {
        SpinLockHolder l(&mu_);
        answered = me.state.load(std::memory_order_relaxed) != Request::kWaiting;
        if (!answered) {
          if (auto it = std::find(queue_.begin(), queue_.end(), &me); it != queue_.end()) {
            queue_.erase(it);
          } else {
            for (auto& c : pool_) {
              std::replace(c->batch.begin(), c->batch.end(), &me, static_cast<Request*>(nullptr));
            }
          }
        }
      }
      if (answered) break;
      return timed_out();
    }
    if (me.state.load(std::memory_order_acquire) == Request::kDone) {
      if (!me.result.ok() && me.failed) errors_.fetch_add(1);  // the leader noted it
      return std::move(me.result);
    }
    // kLead: the connection is handed to this call. Past its deadline it
    // passes the connection to the next queued call. With less than half
    // its time left it would fail the whole batch should Redis be a little
    // slow: if the newest queued call has at least half of its time, that
    // one leads instead and this one waits at the head of the queue to go
    // with it (once: a call put back never passes the lead again).
    if (me.conn->in_flight) {  // its batch is on the wire: read the replies
      conn = me.conn;
      continue;
    }
    const int64_t half = static_cast<int64_t>(url_.timeout_ms) * 500;
    const int64_t now = NowUs();
    const int64_t left = me.deadline_us - now;
    Request* next = nullptr;
    {
      SpinLockHolder l(&mu_);
      if (left <= 0) {
        next = HandOn(*me.conn);
        me.conn = nullptr;
      } else if (left < half && !put_back && !queue_.empty() &&
                 queue_.back()->deadline_us - now >= half) {
        next = queue_.back();
        queue_.pop_back();
        queue_.push_front(&me);
        put_back = true;
        me.state.store(Request::kWaiting, std::memory_order_relaxed);
        next->conn = me.conn;
        next->state.store(Request::kLead, std::memory_order_release);
        me.conn = nullptr;
      }
    }
    if (next != nullptr) FutexWake(&next->state);
    if (left <= 0) return timed_out();
    if (next != nullptr) continue;
    conn = me.conn;
  }
  Lead(*conn, &me);
  return std::move(me.result);
}

}  // namespace ratetrack
