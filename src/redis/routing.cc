#include "redis/routing.h"

#include "absl/strings/str_cat.h"

namespace ratetrack {

std::string Endpoint::Describe() const {
  return unix_path.empty() ? absl::StrCat(host, ":", port) : absl::StrCat("unix:", unix_path);
}

SingleServerRoute::SingleServerRoute(const RedisUrl& url)
    : target_{url.host, url.port, url.unix_path} {}

}  // namespace ratetrack
