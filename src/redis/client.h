// RedisClient: what the tracker talks to. One server (redis://, rediss://,
// redis+unix://, redis+sentinel://: one RedisStore), or a Redis Cluster
// (redis+cluster://): a RedisStore per master, and the slot map that says
// which one serves each model's key.
//
// In a cluster every key a decision touches is the model's own,
// "{prefix:model}": one slot, one node, so every decision is one script
// call on one node, and throughput grows with the masters when there are
// many models. Nothing a decision needs lives on one node for all: the
// ticket key ("{prefix:}secret") is read once per process, from the node of
// its slot.
//
// The slot map is CLUSTER NODES, asked of the nodes the map knows, then of
// the URL's: at rt_open, on a MOVED (the slot named goes to the node named
// at once, then the whole map is asked again, at most every 100 ms), and
// when a node fails (a failover promotes a replica the map does not know
// yet). A call that meets a MOVED is sent again, once, to the node named; an
// ASK (the key of a slot being migrated) is followed with ASKING to the
// node named, for that call only. A node that fails is an outage for the
// models it serves only (on_error decides for them); the others go on.
#ifndef RATETRACK_SRC_REDIS_CLIENT_H_
#define RATETRACK_SRC_REDIS_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "redis/routing.h"
#include "redis/store.h"
#include "redis/tls.h"
#include "redis/url.h"

namespace ratetrack {

class RedisClient {
 public:
  using Op = RedisStore::Op;
  using Reply = RedisStore::Reply;
  using Observation = RedisStore::Observation;
  using Health = RedisStore::Health;

  explicit RedisClient(RedisUrl url);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  const RedisUrl& url() const { return url_; }
  bool cluster() const { return single_ == nullptr; }

  // RedisStore::Run on the server of `model`'s key (in a cluster, following
  // MOVED and ASK): an error status means Redis could not be asked (the
  // policy decides), or, IsMisconfiguration, that the URL names servers it
  // cannot use.
  absl::StatusOr<Reply> Run(Op op, absl::string_view model, const RemoteSpec& spec,
                            const Cost& cost, int64_t time_arg = 0,
                            const Cost& granted = Cost{0, 0},
                            const Observation& observation = Observation{Unit::kRequests, 0, 0});

  // Tests only: RedisStore::RunMergedForTest on the server of `model`'s key.
  std::vector<absl::StatusOr<Reply>> RunMergedForTest(Op op, absl::string_view model,
                                                      const RemoteSpec& spec,
                                                      const std::vector<Cost>& costs);

  // rt_open: connects at once (in a cluster: the slot map, the ticket key,
  // one connection to each master); a misconfiguration's status, else OK.
  absl::Status Probe();

  // In a cluster: connected when every master of the map is; degraded since
  // the earliest failure of one of them; the errors of all.
  Health health() const;
  // The key of grant tickets made in Redis (RedisStore::secret). In a
  // cluster, learned before a call is first sent: never 0 once one has
  // succeeded.
  uint64_t secret() const;
  bool TakeFirstFailure();
  void LockForFork();
  void UnlockForFork(bool child);

  // Tests only: the masters the slot map names now ("host:port", sorted),
  // and the one serving `model`'s key ("" when none).
  std::vector<std::string> MastersForTest() const;
  std::string NodeOfForTest(absl::string_view model) const;

 private:
  static constexpr uint16_t kNoNode = 0xffff;
  static constexpr int kMaxNodes = 1024;

  // The slot of `model`'s key, "{prefix:model}".
  int SlotOf(absl::string_view model) const;
  RedisStore* NodeAt(int slot) const;
  // The store of the master at `at` (made the first time it is named), or
  // null past kMaxNodes.
  int NodeIndex(const Endpoint& at) ABSL_LOCKS_EXCLUDED(nodes_mu_);
  // Asks for the slot map (at most every 100 ms unless `force`), within
  // deadline_us: a misconfiguration's status (not a cluster, refused
  // credentials), an outage's when no node answered, else OK.
  absl::Status Refresh(int64_t deadline_us, bool force);
  // The ticket key, from the node of its slot (set there once, by whoever
  // comes first).
  absl::Status FetchSecret(int64_t deadline_us);
  void NoteError(const std::string& message) const;
  // RT_E_CONFIG when `x` (to `name`) failed on refused credentials or a
  // certificate, else OK.
  absl::Status ExchangeMisconfigured(const Exchange& x, const std::string& name) const;

  const RedisUrl url_;
  const std::string where_;  // "Redis cluster h:p,h:p", the start of its own errors
  std::unique_ptr<RedisStore> single_;  // not a cluster
  // A cluster: the nodes ever named (never removed while the client lives:
  // a call may be using one), the slot map, the ticket key.
  std::shared_ptr<TlsContext> tls_;  // for the client's own exchanges (map, ticket key)
  absl::Status tls_status_;
  mutable std::mutex nodes_mu_;
  std::vector<std::unique_ptr<RedisStore>> nodes_ ABSL_GUARDED_BY(nodes_mu_);
  std::vector<Endpoint> endpoints_ ABSL_GUARDED_BY(nodes_mu_);
  std::atomic<RedisStore*> node_[kMaxNodes] = {};
  std::atomic<uint16_t> slot_node_[kClusterSlots];
  std::mutex refresh_mu_;  // one refresh at a time
  std::atomic<int64_t> last_refresh_us_{0};
  std::atomic<uint64_t> secret_{0};
  // The ticket key is learned by one call at a time; after a failure, the
  // calls fail with it until secret_retry_at_us_.
  std::mutex secret_mu_;
  int64_t secret_retry_at_us_ ABSL_GUARDED_BY(secret_mu_) = 0;
  absl::Status secret_failure_ ABSL_GUARDED_BY(secret_mu_);
  mutable std::mutex error_mu_;
  mutable std::string last_error_ ABSL_GUARDED_BY(error_mu_);  // the client's own (the map)
  std::string refresh_error_ ABSL_GUARDED_BY(error_mu_);  // why the last refresh failed, or ""
  // " (the slot map: <why the last refresh failed>)", or "".
  std::string RefreshError() const;
  mutable std::atomic<uint64_t> errors_{0};
};

}  // namespace ratetrack

#endif  // RATETRACK_SRC_REDIS_CLIENT_H_
