// Which server a call goes to. One server, the URL's, for now: the seam
// where a cluster's slot map and a sentinel's master discovery come in.
#ifndef RATETRACK_SRC_REDIS_ROUTING_H_
#define RATETRACK_SRC_REDIS_ROUTING_H_

#include <string>

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

// A single server: every call goes to the URL's host and port.
class SingleServerRoute {
 public:
  explicit SingleServerRoute(const RedisUrl& url);
  const Endpoint& target() const { return target_; }

 private:
  Endpoint target_;
};

}  // namespace ratetrack

#endif  // RATETRACK_SRC_REDIS_ROUTING_H_
