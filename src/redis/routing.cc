#include "redis/routing.h"

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
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
    Transport t;
    if (t.Open(Endpoint{host, port, ""}, deadline_us) != Transport::Opened::kOk) {
      absl::StrAppend(&failures, failures.empty() ? "" : "; ", at, ": ",
                      t.ctx != nullptr ? t.ctx->errstr : "cannot connect");
      t.Drop();
      continue;
    }
    // One command, its reply (null: an I/O failure or the deadline).
    auto ask = [&](const std::vector<std::string>& args) {
      return ReplyPtr(t.AppendArgv(args) && t.Flush(deadline_us) ? t.NextReply(deadline_us)
                                                                 : nullptr,
                      freeReplyObject);
    };
    if (!url_.sentinel_password.empty()) {
      std::vector<std::string> auth = {"AUTH"};
      if (!url_.sentinel_user.empty()) auth.push_back(url_.sentinel_user);
      auth.push_back(url_.sentinel_password);
      ReplyPtr r = ask(auth);
      if (r != nullptr && r->type == REDIS_REPLY_ERROR) {
        const std::string err(r->str, r->len);
        t.Drop();
        return ConfigError(absl::StrCat(where, ": sentinel ", at, ": AUTH: ", err,
                                        ": check sentinel_user and sentinel_password (a "
                                        "misconfiguration, not an outage)"));
      }
      if (r == nullptr) {
        absl::StrAppend(&failures, failures.empty() ? "" : "; ", at, ": AUTH: no reply");
        t.Drop();
        continue;
      }
    }
    ReplyPtr r = ask({"SENTINEL", "get-master-addr-by-name", url_.sentinel_service});
    if (r == nullptr) {
      absl::StrAppend(&failures, failures.empty() ? "" : "; ", at, ": no reply");
      t.Drop();
      continue;
    }
    int master_port = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING &&
        absl::SimpleAtoi(absl::string_view(r->element[1]->str, r->element[1]->len),
                         &master_port) &&
        master_port > 0 && master_port < 65536 && r->element[0]->len > 0) {
      Endpoint master{std::string(r->element[0]->str, r->element[0]->len), master_port, ""};
      t.Drop();
      return master;
    }
    const bool unknown = r->type == REDIS_REPLY_NIL;
    const std::string err = r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len) : "";
    t.Drop();
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

}  // namespace ratetrack
