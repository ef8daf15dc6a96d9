#include "redis/url.h"

#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "status.h"

namespace ratetrack {

namespace {
// RFC 3986 percent-decoding of a URL's user or password (%HH -> the byte);
// a '%' not followed by two hex digits stays as it is.
std::string PercentDecoded(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}
// "h:p[,h:p...]" (a port left out: default_port) into *out, at most 16;
// else what is wrong, naming each a `what`.
std::string ParseHosts(absl::string_view list, int default_port, absl::string_view what,
                       std::vector<std::pair<std::string, int>>* out) {
  for (absl::string_view hp : absl::StrSplit(list, ',')) {
    int port = default_port;
    if (size_t colon = hp.rfind(':'); colon != absl::string_view::npos) {
      if (!absl::SimpleAtoi(hp.substr(colon + 1), &port) || port < 1 || port > 65535) {
        return absl::StrCat(what, " port '", hp.substr(colon + 1), "'");
      }
      hp = hp.substr(0, colon);
    }
    if (hp.empty()) return absl::StrCat("a ", what, " without a host");
    out->emplace_back(std::string(hp), port);
  }
  if (out->size() > 16) return absl::StrCat("at most 16 ", what, "s");
  return "";
}

}  // namespace

bool IsRedisUrl(absl::string_view backend) {
  return absl::StartsWith(backend, "redis://") || absl::StartsWith(backend, "rediss://") ||
         absl::StartsWith(backend, "redis+sentinel://") ||
         absl::StartsWith(backend, "redis+cluster://") ||
         absl::StartsWith(backend, "rediss+cluster://") ||
         absl::StartsWith(backend, "redis+unix://") || absl::StartsWith(backend, "unix://");
}

std::string RedisUrl::Redacted() const {
  const char* policy = on_error == OnError::kLocal ? "local"
                       : on_error == OnError::kOpen ? "open"
                                                    : "closed";
  const std::string options =
      absl::StrCat("prefix=", prefix, "&timeout_ms=", timeout_ms, "&on_error=", policy,
                   connections != 4 ? absl::StrCat("&connections=", connections) : "",
                   replicas != 0 ? absl::StrCat("&replicas=", replicas) : "");
  if (!unix_path.empty()) {
    return absl::StrCat("redis+unix://", unix_path, "?db=", db, "&", options);
  }
  if (!sentinels.empty()) {
    std::string list;
    for (const auto& [h, p] : sentinels) absl::StrAppend(&list, list.empty() ? "" : ",", h, ":", p);
    return absl::StrCat("redis+sentinel://", list, "/", sentinel_service, "?db=", db, "&", options);
  }
  if (!cluster.empty()) {
    std::string list;
    for (const auto& [h, p] : cluster) absl::StrAppend(&list, list.empty() ? "" : ",", h, ":", p);
    return absl::StrCat(tls.enabled ? "rediss+cluster://" : "redis+cluster://", list, "?",
                        options, tls.insecure ? "&tls_insecure=yes" : "");
  }
  return absl::StrCat(tls.enabled ? "rediss://" : "redis://", host, ":", port, "/", db, "?",
                      options, tls.insecure ? "&tls_insecure=yes" : "");
}

absl::StatusOr<RedisUrl> ParseRedisUrl(absl::string_view url) {
  RedisUrl u;
  auto bad = [](absl::string_view what) {
    return ConfigError(absl::StrCat("config key 'backend': bad Redis URL: ", what,
                                    " (expected redis[s]://[user:password@]host:port[/db] or "
                                    "redis+unix://[user:password@]/path/to/redis.sock or "
                                    "redis+cluster://[user:password@]host:port[,host:port...], then "
                                    "[?db=N&password=P&prefix=P&timeout_ms=T"
                                    "&on_error=local|open|closed&connections=N])"));
  };
  absl::string_view rest;
  bool unix_socket = false;
  bool cluster = false;
  if (absl::StartsWith(url, "redis://")) {
    rest = url.substr(8);
  } else if (absl::StartsWith(url, "rediss://")) {
    rest = url.substr(9);
    u.tls.enabled = true;
  } else if (absl::StartsWith(url, "redis+sentinel://")) {
    rest = url.substr(17);
    u.sentinel_service = "?";  // set below
  } else if (absl::StartsWith(url, "redis+cluster://")) {
    rest = url.substr(16);
    cluster = true;
  } else if (absl::StartsWith(url, "rediss+cluster://")) {
    rest = url.substr(17);
    cluster = true;
    u.tls.enabled = true;
  } else if (absl::StartsWith(url, "redis+unix://")) {
    rest = url.substr(13);
    unix_socket = true;
  } else if (absl::StartsWith(url, "unix://")) {
    rest = url.substr(7);
    unix_socket = true;
  } else {
    return bad("it must start with redis://, rediss://, redis+sentinel://, redis+cluster://, "
               "rediss+cluster://, redis+unix:// or unix://");
  }
  // The credentials come off first, before anything else looks at the URL,
  // so that no message or field can show a piece of them: they run to the
  // last '@' of the whole URL, since a password written by hand may hold
  // '?', '/', ':' or '#' unescaped ('@' itself must be written %40, in a
  // socket's path too).
  if (size_t at = rest.rfind('@'); at != absl::string_view::npos) {
    absl::string_view cred = rest.substr(0, at);
    rest = rest.substr(at + 1);
    absl::string_view user, password = cred;  // redis://password@host
    if (size_t colon = cred.find(':'); colon != absl::string_view::npos) {
      user = cred.substr(0, colon);
      password = cred.substr(colon + 1);
    }
    u.user = PercentDecoded(user);
    u.password = PercentDecoded(password);
  }
  absl::string_view query;
  if (size_t q = rest.find('?'); q != absl::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  auto parse_db = [&](absl::string_view db) {
    return absl::SimpleAtoi(db, &u.db) && u.db >= 0 && u.db <= 1000;
  };
  if (!u.sentinel_service.empty()) {
    // h:p[,h:p...]/service
    const size_t slash = rest.find('/');
    if (slash == absl::string_view::npos || slash + 1 == rest.size()) {
      return bad("redis+sentinel:// needs the service: redis+sentinel://host:port[,host:port]/name");
    }
    u.sentinel_service = std::string(rest.substr(slash + 1));
    if (u.sentinel_service.find_first_of("/ ") != std::string::npos) {
      return bad("the sentinel service name must have no '/' or space");
    }
    if (std::string why = ParseHosts(rest.substr(0, slash), 26379, "sentinel", &u.sentinels);
        !why.empty()) {
      return bad(why);
    }
    u.host = u.sentinels[0].first;
    u.port = u.sentinels[0].second;
  } else if (cluster) {
    // h:p[,h:p...]: seed nodes (database 0 only: a cluster has no other)
    if (size_t slash = rest.find('/'); slash != absl::string_view::npos) {
      absl::string_view db = rest.substr(slash + 1);
      rest = rest.substr(0, slash);
      if (!db.empty() && db != "0") return bad("a Redis Cluster has database 0 only");
    }
    if (std::string why = ParseHosts(rest, 6379, "cluster node", &u.cluster); !why.empty()) {
      return bad(why);
    }
    u.host = u.cluster[0].first;
    u.port = u.cluster[0].second;
  } else if (unix_socket) {
    // The rest is the socket's path: absolute, and short enough for
    // sockaddr_un (107 bytes).
    u.unix_path = PercentDecoded(rest);
    u.host.clear();
    u.port = 0;
    if (u.unix_path.empty() || u.unix_path[0] != '/') {
      return bad("a unix socket's path must be absolute (redis+unix:///path/to/redis.sock)");
    }
    if (u.unix_path.size() > 107) return bad("a unix socket's path is longer than 107 bytes");
    if (u.unix_path.find('\0') != std::string::npos) return bad("a unix socket's path holds NUL");
  } else {
    if (size_t slash = rest.find('/'); slash != absl::string_view::npos) {
      absl::string_view db = rest.substr(slash + 1);
      rest = rest.substr(0, slash);
      if (!db.empty() && !parse_db(db)) {
        return bad(absl::StrCat("database '", db, "' is not a number"));
      }
    }
    if (size_t colon = rest.rfind(':'); colon != absl::string_view::npos) {
      if (!absl::SimpleAtoi(rest.substr(colon + 1), &u.port) || u.port < 1 || u.port > 65535) {
        return bad(absl::StrCat("port '", rest.substr(colon + 1), "'"));
      }
      rest = rest.substr(0, colon);
    }
    if (rest.empty()) return bad("no host");
    u.host = std::string(rest);
  }
  for (absl::string_view kv : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    if (p.first == "db") {
      if (!parse_db(p.second)) return bad(absl::StrCat("database '", p.second, "' is not a number"));
    } else if (p.first == "sentinel_password") {
      if (u.sentinels.empty()) return bad("'sentinel_password' needs redis+sentinel://");
      u.sentinel_password = PercentDecoded(p.second);
    } else if (p.first == "sentinel_user") {
      if (u.sentinels.empty()) return bad("'sentinel_user' needs redis+sentinel://");
      u.sentinel_user = PercentDecoded(p.second);
    } else if (p.first == "password") {
      // Never shown, valid or not.
      u.password = PercentDecoded(p.second);
    } else if (p.first == "user") {
      u.user = PercentDecoded(p.second);
    } else if (absl::StartsWith(p.first, "tls_")) {
      if (!u.tls.enabled) return bad(absl::StrCat("'", p.first, "' needs rediss://"));
      if (p.first == "tls_insecure") {
        if (p.second != "yes" && p.second != "no") return bad("tls_insecure=yes|no");
        u.tls.insecure = p.second == "yes";
        continue;
      }
      std::string* field = p.first == "tls_ca_file"       ? &u.tls.ca_file
                           : p.first == "tls_ca_dir"      ? &u.tls.ca_dir
                           : p.first == "tls_cert_file"   ? &u.tls.cert_file
                           : p.first == "tls_key_file"    ? &u.tls.key_file
                           : p.first == "tls_server_name" ? &u.tls.server_name
                                                          : nullptr;
      if (field == nullptr) return bad(absl::StrCat("unknown parameter '", p.first, "'"));
      *field = PercentDecoded(p.second);
      if (field->empty() || field->find('\0') != std::string::npos) {
        return bad(absl::StrCat("'", p.first, "' must be non-empty"));
      }
    } else if (p.first == "prefix") {
      if (p.second.empty() || p.second.find_first_of("{}") != std::string::npos) {
        return bad("prefix must be non-empty, without braces");
      }
      u.prefix = p.second;
    } else if (p.first == "timeout_ms") {
      if (!absl::SimpleAtoi(p.second, &u.timeout_ms) || u.timeout_ms < 1 ||
          u.timeout_ms > 60000) {
        return bad("timeout_ms must be from 1 to 60000");
      }
    } else if (p.first == "replicas") {
      if (!absl::SimpleAtoi(p.second, &u.replicas) || u.replicas < 0 || u.replicas > 16) {
        return bad("replicas must be from 0 to 16");
      }
    } else if (p.first == "connections") {
      if (!absl::SimpleAtoi(p.second, &u.connections) || u.connections < 1 ||
          u.connections > 64) {
        return bad("connections must be from 1 to 64");
      }
    } else if (p.first == "on_error") {
      if (p.second == "local") u.on_error = RedisUrl::OnError::kLocal;
      else if (p.second == "open") u.on_error = RedisUrl::OnError::kOpen;
      else if (p.second == "closed") u.on_error = RedisUrl::OnError::kClosed;
      else return bad(absl::StrCat("on_error '", p.second, "'"));
    } else if (p.first == "limits") {
      if (p.second != "segment" && p.second != "update") return bad("limits=segment|update");
      u.update_limits = p.second == "update";
    } else {
      return bad(absl::StrCat("unknown parameter '", p.first, "'"));
    }
  }
  if (!u.cluster.empty() && u.db != 0) return bad("a Redis Cluster has database 0 only");
  if (u.tls.cert_file.empty() != u.tls.key_file.empty()) {
    return bad("tls_cert_file and tls_key_file go together (mutual TLS)");
  }
#ifndef RATETRACK_TLS
  if (u.tls.enabled) {
    return bad("this build of libratetrack has no TLS (it was built with -DRATETRACK_TLS=OFF)");
  }
#endif
  return u;
}

}  // namespace ratetrack
