// Which server a call goes to: the URL's (one server), the master the
// sentinels name (redis+sentinel://), or, in a Redis Cluster
// (redis+cluster://), the node that serves the slot of the model's key: the
// slot map (CLUSTER NODES parsed), the key's slot, the redirections.
#ifndef RATETRACK_SRC_REDIS_ROUTING_H_
#define RATETRACK_SRC_REDIS_ROUTING_H_

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

#include "redis/url.h"

namespace ratetrack {

// One server's address.
struct Endpoint {
  std::string host;
  int port = 0;
  std::string unix_path;  // a unix socket's (host and port unused)
  // "host:port" or "unix:/path", for messages.
  std::string Describe() const;
};

// Which server a connection is made to: the URL's (one server), or the
// master the sentinels name (redis+sentinel://), asked when a connection is
// made and the master is not known, and again after any failure (Forget):
// a connection refused, a READONLY, a replica where the master was.
class Route {
 public:
  explicit Route(const RedisUrl& url);
  bool sentinel() const { return !url_.sentinels.empty(); }
  // Where to connect now; with sentinels, asked of them within deadline_us
  // when not known: RT_E_CONFIG when they do not know the service or
  // refuse the credentials, RT_E_BACKEND when none answers.
  absl::StatusOr<Endpoint> Target(int64_t deadline_us);
  // The master is asked of the sentinels again on the next connection.
  void Forget();
  // For messages: "host:port", "unix:/path" or "sentinel service 'name'".
  std::string Describe() const;

 private:
  absl::StatusOr<Endpoint> AskSentinels(int64_t deadline_us) const;
  const RedisUrl& url_;  // the store's, which outlives this
  const Endpoint fixed_;
  std::mutex mu_;
  bool known_ = false;  // guarded by mu_
  Endpoint master_;     // guarded by mu_
};

// A Redis Cluster's slots: 16384, a key's by the CRC16 of its hash tag.
constexpr int kClusterSlots = 16384;
// The slot of `key`: of the part between its first '{' and the next '}' when
// that is not empty (our keys are all "{prefix:model}"), else of the whole.
int KeySlot(absl::string_view key);
// CRC16-CCITT (XMODEM) of `s`, going on from `crc`: a slot is the CRC16 of
// the hash tag, modulo kClusterSlots.
uint16_t Crc16(absl::string_view s, uint16_t crc = 0);

// A cluster's masters and the slots each serves, as CLUSTER NODES says.
struct ClusterLayout {
  struct Master {
    Endpoint at;
    std::vector<std::pair<int, int>> slots;  // ranges, both ends included
  };
  std::vector<Master> masters;  // those that serve slots and are not failed
  int covered = 0;              // slots served
};
// Parses CLUSTER NODES' text: every master line with slots and an address,
// not flagged "fail" or "noaddr" (a failed master's slots are left out: no
// call goes to a node the cluster has given up on). `asked`: the node that
// answered, whose own line ("myself") may have no IP yet (a node that never
// met another: ":6379@16379"). An error names what is wrong with the text.
absl::StatusOr<ClusterLayout> ParseClusterNodes(absl::string_view text, const Endpoint& asked);

// A cluster's redirection: "MOVED <slot> <host>:<port>" (the slot lives
// there now) or "ASK <slot> <host>:<port>" (this one key, during a
// migration, is asked there, after ASKING).
struct Redirect {
  bool ask = false;
  int slot = 0;
  Endpoint to;
};
// Whether `error` (an error reply's text) is a redirection, and where to.
bool ParseRedirect(absl::string_view error, Redirect* out);

}  // namespace ratetrack

#endif  // RATETRACK_SRC_REDIS_ROUTING_H_
