// RedisStore: one budget across machines. Every decision is one atomic Lua
// script over all windows of a model (src/redis/script.lua), run by its SHA
// on the Redis server's clock.
//
// The client in layers (src/redis/): url (the URL), routing (which
// server), transport (a connection's socket and reply reader), script (the
// Lua text, what a call packs and its replies checked), batching (queued
// calls merged into script calls: RedisStore::Lead) and this, the store
// (the handshake, failures and backoff, the server's clock).
//
// A few connections per store (up to 4; ?connections=N). With no more
// callers at once than connections, a caller that finds one free uses it at
// once; with more, only two stay busy. Callers that find no connection to
// take queue, and the first of them, once a
// connection is handed to it, sends every queued request together: the
// decisions of one kind on one model (the common case under load) become
// one script call that decides them one after the other, atomically, for
// the cost of one (one TIME, one HGET, one HSET, one round trip). The
// others sleep until it hands them their results. A leader that finds
// requests queued when its replies are in sends them on as the next batch
// before it wakes anyone, and hands that batch, on the wire, to one of its
// requests, which reads the replies: the connection never stands idle while
// a thread wakes up.
//
// Bounded latency: connecting and every command share one deadline of
// timeout_ms; a caller never waits longer for Redis, queued or not. When the
// leader's deadline passes before its batch is answered, the connection is
// dropped and the whole batch fails. After a failure, connections are
// retried with exponential backoff (50 ms to 2 s); until then calls fail
// fast, and the tracker applies the on_error policy.
//
// Every reply is checked for type and shape before it is used (connecting:
// AUTH, SELECT, the ticket key's SET and GET, SCRIPT LOAD; the script's
// replies per op, merged or not): a reply the script would never give fails
// the whole batch as an outage does (the connection is dropped: its stream
// is not to be trusted). What a reply may take is bounded: at most
// kMaxReplyBytes (1 MiB) buffered or built per reply, arrays of at most
// kMaxReplyElements (1,024) nested at most one deep; anything larger fails
// the same way.
//
// Clock steps: the script decides on the server's TIME. Each key keeps its
// own time, the server's plus a skew (0 until the server's clock steps),
// which never goes back: after a backward step it goes on from the start of
// the key's newest bucket. Forward steps are seen here: every reply carries
// the server's time, compared with this machine's monotonic clock (one
// that runs while it sleeps, CLOCK_BOOTTIME); when it is more than a
// second (plus the round trip, plus 0.1% of the time since the last
// reading) from where it should be, the calls on each model carry, for the
// length of the model's longest window, this process's estimate of the
// server's time as it would be without the steps, and the script keeps the
// key's time within a second of that (README, "Clocks").
#ifndef RATETRACK_SRC_REDIS_STORE_H_
#define RATETRACK_SRC_REDIS_STORE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "redis/routing.h"
#include "redis/script.h"
#include "redis/tls.h"
#include "redis/transport.h"
#include "redis/url.h"
#include "spin_lock.h"
#include "window_set.h"

namespace ratetrack {

class RedisStore {
 public:
  using Op = ScriptOp;
  using Reply = ScriptReply;
  // kObserve: what the provider said about one unit.
  struct Observation {
    Unit unit;
    uint64_t remaining;
    uint64_t limit;  // 0: not said
  };
  struct Health {
    bool connected;
    int64_t degraded_since_unix_ms;  // 0: not degraded
    uint64_t errors;
    std::string last_error;
  };

  // `cluster_node`: one master of a Redis Cluster, for a RedisClient that
  // routes the slots (src/redis/client.h): the server must be a cluster's
  // node, the ticket key is the client's to learn, and a redirection (MOVED,
  // ASK) is returned as it is (IsRedirect) for the client to follow.
  explicit RedisStore(RedisUrl url, bool cluster_node = false);
  ~RedisStore();
  RedisStore(const RedisStore&) = delete;
  RedisStore& operator=(const RedisStore&) = delete;

  const RedisUrl& url() const { return url_; }

  // One atomic step over `windows` (their limits and geometry) of `model`.
  // An error status means Redis could not be asked (the policy decides).
  // `time_arg`: kSettle the grant's time (server ms), kBlock the ms to
  // refuse for, kObserve the ms until the provider's reset. `granted`:
  // kSettle's granted cost (`cost` is then the actual one).
  absl::StatusOr<Reply> Run(Op op, absl::string_view model, const RemoteSpec& spec,
                            const Cost& cost, int64_t time_arg = 0,
                            const Cost& granted = Cost{0, 0},
                            const Observation& observation = Observation{Unit::kRequests, 0, 0},
                            bool asking = false);

  // Tests only: `costs.size()` decisions of one kind on `model` sent as one
  // merged script call, as a leader merges queued ones (at most 64). The
  // store must be idle (no other call in progress); else every result is
  // FailedPrecondition.
  std::vector<absl::StatusOr<Reply>> RunMergedForTest(Op op, absl::string_view model,
                                                      const RemoteSpec& spec,
                                                      const std::vector<Cost>& costs);

  // A cluster node's (cluster_node) call returns MOVED and ASK this way, the
  // error reply's text as the message: IsRedirect says which status is one.
  // `asking` (Run): the call is sent after ASKING (it follows an ASK).
  static bool IsRedirect(const absl::Status& s) { return s.code() == absl::StatusCode::kAborted; }

  // Connects one connection at once (rt_open): the status of a
  // misconfiguration the server shows (a replica, a sentinel, a cluster
  // node, credentials refused), else OK (an outage is the calls' to meet:
  // on_error decides then).
  absl::Status Probe();

  Health health() const;
  // The key of grant tickets made in Redis, shared by every tracker on the
  // same Redis and prefix (kept there, set once): a grant acquired by one
  // process or host settles through any other. 0 until first connected.
  uint64_t secret() const { return secret_.load(std::memory_order_acquire); }
  // True exactly once per failure streak: the caller reports the first
  // failure's message (rt_last_error) when Redis goes away.
  bool TakeFirstFailure();

  // fork(): no connection is mid-command across a fork, and the child
  // reconnects (a socket shared by two processes would mix their replies).
  void LockForFork();
  void UnlockForFork(bool child);

 private:
  struct Conn;
  struct Request;
  // Connects c, authenticates, selects the database, learns the ticket key
  // and loads the script, all within deadline_us.
  absl::Status Connect(Conn& c, int64_t deadline_us);
  // Fills in a call's arguments and deadline (start_us + timeout_ms): for
  // acquire, check and record the short form unless `full`, for the other
  // ops (and full_path_only) always the full one.
  void Prepare(Request& me, int64_t start_us, bool full, Op op, absl::string_view model,
               const RemoteSpec& spec, const Cost& cost, int64_t time_arg = 0,
               const Cost& granted = Cost{0, 0},
               const Observation& observation = Observation{Unit::kRequests, 0, 0},
               bool asking = false) const;
  // One prepared call: a connection or the queue, then its result.
  absl::StatusOr<Reply> RunPrepared(Request& me);
  // After a failed Flush or NextReply on c: drops it, says what failed.
  absl::Status IoError(Conn& c, const char* during) const;
  // A TLS failure about a certificate on c: drops it; a misconfiguration.
  absl::Status TlsCertificateError(Conn& c, const char* during) const;
  // A reply of the server's clock (server_ms, from a call written at
  // sent_us and answered by recv_us, CLOCK_BOOTTIME): a step is noted.
  void UpdateClock(int64_t server_ms, int64_t sent_us, int64_t recv_us)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The leader's part, with c its own: takes the queued requests along,
  // merges the decisions on one model into one script call each, writes
  // them all at once, reads every reply, hands the results out and the
  // connection on: with requests queued meanwhile, they are sent as the
  // next batch before anyone is woken, and that batch, on the wire, is
  // handed to one of them (which finds c.in_flight and only reads the
  // replies); else to the first one queued, or it comes free.
  void Lead(Conn& c, Request* me);
  // `first` (if any) and the queued requests (up to 64) become c's batch.
  void TakeBatch(Conn& c, Request* first) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The reply to group g of c's batch (after ASKING's, when the group was
  // sent with it): null on an I/O failure; an ASKING refused comes back as
  // that error reply.
  ReplyPtr GroupReply(Conn& c, size_t g, int64_t deadline_us);
  // Groups c's batch into script calls and writes them, connecting first if
  // need be, within deadline_us; the outcome is c.sent.
  void Send(Conn& c, int64_t deadline_us);
  // Appends one group's script call to c's output buffer, in the form its
  // first request was prepared in; false when out of memory.
  bool AppendGroup(Conn& c, const std::vector<size_t>& g, bool eval) const;
  // ?replicas=N: appends the batch's WAIT; reads its reply (an error when
  // fewer replicas acknowledged).
  bool AppendWait(Conn& c) const;
  absl::Status ReadWait(Conn& c, int64_t deadline_us);
  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands c to the first queued request (the caller wakes it: the result)
  // or marks it free.
  Request* HandOn(Conn& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A failure of Redis: counted, reported, and connecting backs off.
  void NoteFailure(const std::string& message);
  // The server is not one the URL can use (ClassifyErrorReply): counted,
  // reported, every call fails with it (RT_E_CONFIG) and connecting backs
  // off, until a connection shows it fixed.
  void NoteMisconfiguration(const std::string& message);
  // A call that failed by its own deadline while Redis is fine: counted and
  // reported only.
  void NoteError(const std::string& message);
  void NoteSuccess();

  const RedisUrl url_;
  const bool cluster_node_;
  Route route_;
  const std::string where_;  // "Redis host:port", the start of every error
  const std::string script_;  // the script's text (kRedisScript, or the test_clock variant)
  // rediss://: the TLS context (null: plain), or why it could not be made.
  std::shared_ptr<TlsContext> tls_;
  absl::Status tls_status_;
  std::vector<std::unique_ptr<Conn>> pool_;
  SpinLock mu_;  // the connections' busy flags and batches, the queue (held briefly)
  std::deque<Request*> queue_ ABSL_GUARDED_BY(mu_);  // waiting for a connection
  std::atomic<int> callers_{0};                      // inside Run
  bool forking_ ABSL_GUARDED_BY(mu_) = false;        // LockForFork: take no new calls
  std::atomic<int64_t> next_attempt_us_{0};  // backoff: fail fast until then
  std::atomic<int64_t> backoff_ms_{0};
  std::atomic<int64_t> degraded_since_ms_{0};
  std::atomic<uint64_t> errors_{0};
  std::atomic<bool> first_failure_pending_{false};
  std::atomic<bool> connected_{false};
  std::atomic<bool> misconfigured_{false};  // the last failure was a misconfiguration
  std::atomic<bool> sha_known_{false};
  std::atomic<uint64_t> secret_{0};
  std::string sha_;  // written once, before sha_known_
  // The server's clock against this machine's CLOCK_BOOTTIME, from the
  // replies: server ms - boot-time ms, how far off that may be, and when it
  // was measured.
  bool clock_known_ ABSL_GUARDED_BY(mu_) = false;
  double clock_offset_ms_ ABSL_GUARDED_BY(mu_) = 0;
  double clock_error_ms_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t clock_seen_us_ ABSL_GUARDED_BY(mu_) = 0;
  // The steps seen since the server's clock last stood still for a longest
  // window (their sum, ms: forward positive), and when the latest was seen
  // (0: none).
  double clock_step_ms_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t clock_step_at_us_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t clock_longest_ms_ ABSL_GUARDED_BY(mu_) = 0;  // of any call's model
  mutable std::mutex last_error_mu_;
  std::string last_error_;
};

}  // namespace ratetrack

#endif  // RATETRACK_SRC_REDIS_STORE_H_
