// Which server a call goes to. One server, the URL's, for now: the seam
// where a cluster's slot map and a sentinel's master discovery come in.
#ifndef RATETRACK_SRC_REDIS_ROUTING_H_
#define RATETRACK_SRC_REDIS_ROUTING_H_

#include <mutex>
#include <string>

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

}  // namespace ratetrack

#endif  // RATETRACK_SRC_REDIS_ROUTING_H_
