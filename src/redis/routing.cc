#include "redis/routing.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "redis/script.h"
#include "redis/transport.h"
#include "status.h"

namespace ratetrack {

std::string Endpoint::Describe() const {
  return unix_path.empty() ? absl::StrCat(host, ":", port) : absl::StrCat("unix:", unix_path);
}

Route::Route(const RedisUrl& url) : url_(url), fixed_{url.host, url.port, url.unix_path} {}

std::string Route::Describe() const {
  return sentinel() ? absl::StrCat("sentinel service '", url_.sentinel_service, "'")
                    : fixed_.Describe();
}

void Route::Forget() {
  if (!sentinel()) return;
  std::lock_guard<std::mutex> l(mu_);
  known_ = false;
}

absl::StatusOr<Endpoint> Route::Target(int64_t deadline_us) {
  if (!sentinel()) return fixed_;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (known_) return master_;
  }
  absl::StatusOr<Endpoint> asked = AskSentinels(deadline_us);
  if (asked.ok()) {
    std::lock_guard<std::mutex> l(mu_);
    known_ = true;
    master_ = *asked;
  }
  return asked;
}

absl::StatusOr<Endpoint> Route::AskSentinels(int64_t deadline_us) const {
  const std::string where = absl::StrCat("Redis sentinel service '", url_.sentinel_service, "'");
  std::string failures;
  for (const auto& [host, port] : url_.sentinels) {
    const std::string at = absl::StrCat(host, ":", port);
    Exchange t(Endpoint{host, port, ""}, deadline_us, nullptr, url_.sentinel_user,
               url_.sentinel_password);
    if (t.auth_refused()) {
      return ConfigError(absl::StrCat(where, ": sentinel ", at, ": ", t.error(),
                                      ": check sentinel_user and sentinel_password (a "
                                      "misconfiguration, not an outage)"));
    }
    if (!t.error().empty()) {
      absl::StrAppend(&failures, failures.empty() ? "" : "; ", at, ": ", t.error());
      continue;
    }
    ReplyPtr r = t.Ask({"SENTINEL", "get-master-addr-by-name", url_.sentinel_service});
    if (r == nullptr) {
      absl::StrAppend(&failures, failures.empty() ? "" : "; ", at, ": ", t.error());
      continue;
    }
    int master_port = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING &&
        absl::SimpleAtoi(absl::string_view(r->element[1]->str, r->element[1]->len),
                         &master_port) &&
        master_port > 0 && master_port < 65536 && r->element[0]->len > 0) {
      return Endpoint{std::string(r->element[0]->str, r->element[0]->len), master_port, ""};
    }
    const bool unknown = r->type == REDIS_REPLY_NIL;
    const std::string err = r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len) : "";
    if (unknown) {
      return ConfigError(absl::StrCat(where, ": sentinel ", at, " does not know the service: check "
                                      "the name after the sentinels in the URL (a "
                                      "misconfiguration, not an outage)"));
    }
    if (!err.empty()) {
      const ErrorReplyKind kind = ClassifyErrorReply(err, "SENTINEL");
      if (kind.misconfigured) {
        return ConfigError(absl::StrCat(where, ": ", at, ": ", err, ": ", kind.why,
                                        " (a misconfiguration, not an outage)"));
      }
    }
    absl::StrAppend(&failures, failures.empty() ? "" : "; ", at, ": ",
                    err.empty() ? "an unexpected reply" : err);
  }
  return BackendError(absl::StrCat(where, ": no sentinel named the master (", failures, ")"));
}

namespace {

// CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), as Redis Cluster hashes
// keys.
constexpr uint16_t Crc16Step(uint16_t crc, int bits) {
  for (int i = 0; i < bits; ++i) crc = (crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1;
  return crc;
}
struct Crc16Table {
  uint16_t t[256];
  constexpr Crc16Table() : t() {
    for (int i = 0; i < 256; ++i) t[i] = Crc16Step(static_cast<uint16_t>(i << 8), 8);
  }
};
constexpr Crc16Table kCrc16;

// "host:port" (the host may be an IPv6 address: the port follows the last
// ':'), or "host:port@cport[,hostname]" as CLUSTER NODES writes it.
bool ParseHostPort(absl::string_view s, Endpoint* out) {
  s = s.substr(0, s.find('@'));
  const size_t colon = s.rfind(':');
  if (colon == absl::string_view::npos) return false;
  int port = 0;
  if (!absl::SimpleAtoi(s.substr(colon + 1), &port) || port < 1 || port > 65535) return false;
  out->host = std::string(s.substr(0, colon));
  out->port = port;
  out->unix_path.clear();
  return true;
}

}  // namespace

int KeySlot(absl::string_view key) {
  if (size_t open = key.find('{'); open != absl::string_view::npos) {
    const size_t close = key.find('}', open + 1);
    if (close != absl::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return Crc16(key) & (kClusterSlots - 1);
}

uint16_t Crc16(absl::string_view s, uint16_t crc) {
  for (unsigned char c : s) crc = static_cast<uint16_t>(crc << 8) ^ kCrc16.t[(crc >> 8) ^ c];
  return crc;
}

absl::StatusOr<ClusterLayout> ParseClusterNodes(absl::string_view text, const Endpoint& asked) {
  ClusterLayout out;
  std::vector<bool> seen(kClusterSlots, false);
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    // <id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch>
    // <link> <slot or range>...
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (f.size() < 8) {
      return absl::InvalidArgumentError(absl::StrCat("a line of ", f.size(), " fields"));
    }
    const std::vector<absl::string_view> flags = absl::StrSplit(f[2], ',');
    auto flagged = [&](absl::string_view what) {
      return std::find(flags.begin(), flags.end(), what) != flags.end();
    };
    if (!flagged("master") || flagged("fail") || flagged("noaddr") || flagged("handshake") ||
        f.size() == 8) {
      continue;
    }
    ClusterLayout::Master m;
    // The address: the IP, as MOVED names it by default
    // (cluster-preferred-endpoint-type ip), so that both name a node alike.
    Endpoint at;
    if (!ParseHostPort(f[1].substr(0, f[1].find(',')), &at)) continue;  // no address (":0@0")
    if (at.host.empty() && flagged("myself")) at.host = asked.host;
    if (at.host.empty()) continue;  // no address yet
    m.at = at;
    for (size_t i = 8; i < f.size(); ++i) {
      if (absl::StartsWith(f[i], "[")) continue;  // a slot migrating or importing
      int lo = 0, hi = 0;
      const size_t dash = f[i].find('-');
      if (dash == absl::string_view::npos) {
        if (!absl::SimpleAtoi(f[i], &lo)) lo = -1;
        hi = lo;
      } else if (!absl::SimpleAtoi(f[i].substr(0, dash), &lo) ||
                 !absl::SimpleAtoi(f[i].substr(dash + 1), &hi)) {
        lo = -1;
      }
      if (lo < 0 || hi < lo || hi >= kClusterSlots) {
        return absl::InvalidArgumentError(absl::StrCat("the slots '", f[i], "'"));
      }
      for (int s = lo; s <= hi; ++s) {
        if (seen[s]) return absl::InvalidArgumentError(absl::StrCat("slot ", s, " served twice"));
        seen[s] = true;
        ++out.covered;
      }
      m.slots.emplace_back(lo, hi);
    }
    if (!m.slots.empty()) out.masters.push_back(std::move(m));
  }
  return out;
}

bool ParseRedirect(absl::string_view error, Redirect* out) {
  if (absl::StartsWith(error, "MOVED ")) {
    out->ask = false;
    error.remove_prefix(6);
  } else if (absl::StartsWith(error, "ASK ")) {
    out->ask = true;
    error.remove_prefix(4);
  } else {
    return false;
  }
  const size_t space = error.find(' ');
  if (space == absl::string_view::npos || !absl::SimpleAtoi(error.substr(0, space), &out->slot) ||
      out->slot < 0 || out->slot >= kClusterSlots) {
    return false;
  }
  absl::string_view addr = error.substr(space + 1);
  addr = addr.substr(0, addr.find_first_of(" \r\n"));
  if (!ParseHostPort(addr, &out->to)) return false;
  // Redis 7 may leave the host out ("MOVED 3999 :6381"): the caller keeps
  // the host it asked.
  return true;
}

}  // namespace ratetrack
