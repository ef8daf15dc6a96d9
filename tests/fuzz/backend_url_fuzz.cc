// Fuzz target: backend strings and Redis URLs. Parsing only: nothing is
// opened or connected.
//
// Input: a backend string as "backend" or RATETRACK_BACKEND would hold it.
// It goes through CheckBackend (config.h: "memory", "shm:NAME",
// "redis://..."), ParseRedisUrl (redis/url.h), as given and behind
// "redis://", and ShmSegment::CheckName.
//
// Invariants: no crash or UB; errors are RT_E_CONFIG; a parsed URL has its
// fields in their documented ranges; and no error message, nor the parsed
// URL's Redacted() form, shows the password (what they show is the same
// for the URL with another password).
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "config.h"
#include "fuzz_common.h"
#include "redis/store.h"
#include "shm_segment.h"
#include "status.h"

namespace {

// The URL with every letter and digit of its password changed to another
// of the same kind (hex digits stay hex digits, so %HH escapes stay
// escapes; ':', '@' and '%' stay where they are), or "" when the password
// has none to change. The credentials are what comes before the last '@'
// (after "scheme://"), as ParseRedisUrl reads them; the password is what
// follows the first ':' there, or all of it.
std::string WithOtherPassword(absl::string_view url) {
  size_t rest_at = 0;
  if (size_t scheme = url.find("://"); scheme != absl::string_view::npos) rest_at = scheme + 3;
  const size_t at = url.rfind('@');
  if (at == absl::string_view::npos || at < rest_at) return "";
  size_t pw = rest_at;
  const absl::string_view cred = url.substr(rest_at, at - rest_at);
  if (size_t colon = cred.find(':'); colon != absl::string_view::npos) pw = rest_at + colon + 1;
  std::string out(url);
  bool changed = false;
  auto rotate = [&](char& c, char lo, char hi) {
    if (c >= lo && c <= hi) {
      c = c == hi ? lo : static_cast<char>(c + 1);
      changed = true;
      return true;
    }
    return false;
  };
  for (size_t i = pw; i < at; ++i) {
    char& c = out[i];
    rotate(c, '0', '9') || rotate(c, 'a', 'f') || rotate(c, 'A', 'F') || rotate(c, 'g', 'z') ||
        rotate(c, 'G', 'Z');
  }
  return changed ? out : "";
}

// What `show` makes of `url` must not depend on the password: the same
// for the URL with another password of the same shape. (A leak shows
// the password, so it changes with it.)
template <typename Show>
void CheckNoSecret(absl::string_view url, Show show, const char* what) {
  const std::string other = WithOtherPassword(url);
  if (other.empty()) return;
  const std::string a = show(url), b = show(other);
  RT_FUZZ_CHECK(a == b, std::string(what) + " depends on the password: '" +
                            rtfuzz::Show(std::string(url)) + "' gives '" + rtfuzz::Show(a) +
                            "', '" + rtfuzz::Show(other) + "' gives '" + rtfuzz::Show(b) + "'");
}

std::string UrlError(absl::string_view url) {
  auto parsed = ratetrack::ParseRedisUrl(url);
  return parsed.ok() ? "ok: " + parsed->Redacted() : std::string(parsed.status().message());
}

std::string BackendError(absl::string_view backend) {
  return std::string(ratetrack::CheckBackend(backend).message());
}

void CheckUrl(absl::string_view url) {
  auto parsed = ratetrack::ParseRedisUrl(url);
  if (!parsed.ok()) {
    RT_FUZZ_CHECK(ratetrack::StatusToCode(parsed.status()) == RT_E_CONFIG,
                  parsed.status().ToString());
    CheckNoSecret(url, UrlError, "ParseRedisUrl's error");
    return;
  }
  const ratetrack::RedisUrl& u = *parsed;
  if (u.unix_path.empty()) {
    RT_FUZZ_CHECK(!u.host.empty(), "empty host");
    RT_FUZZ_CHECK(u.port >= 1 && u.port <= 65535, std::to_string(u.port));
  } else {
    RT_FUZZ_CHECK(u.unix_path[0] == '/' && u.unix_path.size() <= 107, rtfuzz::Show(u.unix_path));
  }
  RT_FUZZ_CHECK(u.db >= 0, std::to_string(u.db));
  RT_FUZZ_CHECK(u.timeout_ms >= 1 && u.timeout_ms <= 60000, std::to_string(u.timeout_ms));
  RT_FUZZ_CHECK(u.connections >= 1 && u.connections <= 64, std::to_string(u.connections));
  RT_FUZZ_CHECK(!u.prefix.empty() && u.prefix.find_first_of("{}") == std::string::npos,
                rtfuzz::Show(u.prefix));
  const std::string redacted = u.Redacted();
  const char* scheme = !u.unix_path.empty()  ? "redis+unix://"
                      : !u.sentinels.empty() ? "redis+sentinel://"
                      : !u.cluster.empty()   ? (u.tls.enabled ? "rediss+cluster://"
                                                              : "redis+cluster://")
                      : u.tls.enabled        ? "rediss://"
                                             : "redis://";
  if (!u.cluster.empty()) {
    RT_FUZZ_CHECK(u.db == 0 && u.cluster.size() <= 16 && u.host == u.cluster[0].first &&
                      u.port == u.cluster[0].second,
                  rtfuzz::Show(std::string(url)));
    for (const auto& [h, p] : u.cluster) {
      RT_FUZZ_CHECK(!h.empty() && p >= 1 && p <= 65535, rtfuzz::Show(std::string(url)));
    }
  }
  RT_FUZZ_CHECK(redacted.rfind(scheme, 0) == 0, rtfuzz::Show(redacted));
  CheckNoSecret(url, UrlError, "Redacted()");
  // What Redacted() shows parses again, to the same place (where host and
  // prefix are plain: Redacted() is for showing, it does not escape).
  auto plain = [](const std::string& s) {
    for (char c : s) {
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '.' || c == '-' || c == '_')) {
        return false;
      }
    }
    return true;
  };
  const bool plain_path = [&] {
    for (char c : u.unix_path) {
      if (!(c == '/' || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.')) return false;
    }
    return true;
  }();
  if (plain(u.host) && plain(u.prefix) && plain_path) {
    auto again = ratetrack::ParseRedisUrl(redacted);
    RT_FUZZ_CHECK(again.ok(), rtfuzz::Show(redacted) + ": " + again.status().ToString());
    RT_FUZZ_CHECK(again->host == u.host && again->port == u.port &&
                      again->unix_path == u.unix_path && again->tls.enabled == u.tls.enabled &&
                      again->cluster == u.cluster &&
                      again->tls.insecure == u.tls.insecure && again->db == u.db &&
                      again->prefix == u.prefix && again->timeout_ms == u.timeout_ms &&
                      again->connections == u.connections && again->on_error == u.on_error,
                  rtfuzz::Show(redacted));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 1024) return -1;
  const std::string input(reinterpret_cast<const char*>(data), size);

  const absl::Status st = ratetrack::CheckBackend(input);
  if (!st.ok()) {
    RT_FUZZ_CHECK(ratetrack::StatusToCode(st) == RT_E_CONFIG, st.ToString());
    // ("shm:x@y" is a bad segment name, not a URL with credentials.)
    if (input.rfind("shm:", 0) != 0) {
      CheckNoSecret(input, BackendError, "CheckBackend's error");
    }
  } else {
    RT_FUZZ_CHECK(input == "memory" || input.rfind("shm:", 0) == 0 ||
                      ratetrack::IsRedisUrl(input),
                  rtfuzz::Show(input));
  }
  CheckUrl(input);
  if (input.rfind("redis://", 0) != 0) CheckUrl("redis://" + input);

  const absl::Status name = ratetrack::ShmSegment::CheckName(input);
  if (name.ok()) {
    RT_FUZZ_CHECK(!input.empty() && input.size() <= 64 && input[0] != '.' &&
                      input.find('/') == std::string::npos && input.find("..") == std::string::npos &&
                      input.find('\0') == std::string::npos,
                  rtfuzz::Show(input));
  }
  return 0;
}
