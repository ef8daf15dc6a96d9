#include "redis/routing.h"

#include "absl/strings/str_cat.h"

namespace ratetrack {

std::string Endpoint::Describe() const { return absl::StrCat(host, ":", port); }

SingleServerRoute::SingleServerRoute(const RedisUrl& url) : target_{url.host, url.port} {}

}  // namespace ratetrack
