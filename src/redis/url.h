// The Redis backend's URL: where the server is and how to use it. Parsed
// once (rt_open, config checks); no I/O.
#ifndef RATETRACK_SRC_REDIS_URL_H_
#define RATETRACK_SRC_REDIS_URL_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ratetrack {

struct RedisUrl {
  enum class OnError { kLocal, kOpen, kClosed };
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string unix_path;  // redis+unix:// (host and port are then unused)
  // rediss://: TLS, the server's certificate verified (against the system's
  // CAs, or tls_ca_file / tls_ca_dir) for tls_server_name (default: the
  // host) unless tls_insecure; a client certificate for mutual TLS.
  // redis+sentinel://h:p[,h:p...]/service: the master is asked of these
  // sentinels (with their own password, ?sentinel_password=, and user,
  // ?sentinel_user=); host and port are then the first sentinel's.
  std::vector<std::pair<std::string, int>> sentinels;
  std::string sentinel_service;
  // redis+cluster://h:p[,h:p...] (rediss+cluster://: TLS): a Redis Cluster,
  // its slot map asked of these nodes first (then of every node it names);
  // host and port are then the first one's. Database 0 only.
  std::vector<std::pair<std::string, int>> cluster;
  std::string sentinel_user, sentinel_password;  // never printed
  struct Tls {
    bool enabled = false;
    std::string ca_file, ca_dir, cert_file, key_file, server_name;
    bool insecure = false;  // ?tls_insecure=yes: no verification at all
  } tls;
  int db = 0;
  std::string user;      // ACL user, or empty
  std::string password;  // never printed
  std::string prefix = "ratetrack";
  int timeout_ms = 50;
  int connections = 4;  // per tracker, at most (2 busy when more callers than these)
  OnError on_error = OnError::kLocal;
  bool update_limits = false;  // ?limits=update
  int replicas = 0;  // ?replicas=N: every batch's bookings acknowledged by N replicas (WAIT)
  // Tests only, not in the URL: every decision takes the script's full path
  // (ARGV[8] = '0'), so that a test can compare its hot path with it.
  bool full_path_only = false;
  // Tests only, not in the URL: the script's clock is TIME plus the
  // milliseconds stored at "{prefix:}clock" (a variant of the script is
  // loaded), so that a test can step the server's clock.
  bool test_clock = false;

  // "redis://host:port/db?prefix=P&timeout_ms=T&on_error=E" (or
  // "redis+unix:///path?db=N&..."), no credentials.
  std::string Redacted() const;
};

// Whether `backend` names a Redis (its scheme; ParseRedisUrl checks the rest).
bool IsRedisUrl(absl::string_view backend);

// Parses "redis://[user:password@]host:port[/db]" ("rediss://": TLS, with
// tls_ca_file, tls_ca_dir, tls_cert_file, tls_key_file, tls_server_name,
// tls_insecure=yes) or "redis+unix://[user:password@]/path/to/redis.sock"
// ("unix://" too) or "redis+cluster://[user:password@]host:port[,host:port...]"
// ("rediss+cluster://": TLS), then
// "[?db=N&user=U&password=P&prefix=P&timeout_ms=T&on_error=local|open|closed
// &limits=segment|update&connections=N]". Errors never repeat the password.
absl::StatusOr<RedisUrl> ParseRedisUrl(absl::string_view url);

}  // namespace ratetrack

#endif  // RATETRACK_SRC_REDIS_URL_H_
