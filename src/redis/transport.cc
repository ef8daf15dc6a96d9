#include "redis/transport.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#ifdef RATETRACK_TLS
#include <hiredis/sds.h>

#include "absl/strings/match.h"
#include "redis/openssl.h"
#include "redis/tls.h"
#endif

namespace ratetrack {

namespace {

struct timeval Tv(int64_t us) {
  if (us < 1000) us = 1000;
  return {static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
}

// The most arguments a command of ours has (a script call in the full form has 8).
constexpr size_t kMaxArgs = 32;



const redisReplyObjectFunctions& DefaultReplyFunctions() {
  static const redisReplyObjectFunctions fns = [] {
    redisReader* r = redisReaderCreate();
    redisReplyObjectFunctions f = *r->fn;
    redisReaderFree(r);
    return f;
  }();
  return fns;
}

// Counts `bytes` against the reply's bound (a root object starts a reply);
// false, with the reason noted, past it.
bool Take(const redisReadTask* task, size_t bytes) {
  auto* limits = static_cast<ReplyLimits*>(task->privdata);
  if (limits == nullptr) return true;
  if (task->parent == nullptr) limits->bytes = 0;
  limits->bytes += bytes;
  if (limits->bytes <= kMaxReplyBytes) return true;
  *limits = {limits->bytes, "a reply larger than 1 MiB", static_cast<long long>(limits->bytes),
             "bytes or more"};
  return false;
}

void* BoundedString(const redisReadTask* task, char* str, size_t len) {
  if (!Take(task, sizeof(redisReply) + len)) return nullptr;
  return DefaultReplyFunctions().createString(task, str, len);
}

void* BoundedArray(const redisReadTask* task, int elements) {
  auto* limits = static_cast<ReplyLimits*>(task->privdata);
  if (limits != nullptr && task->parent != nullptr && task->parent->parent != nullptr) {
    *limits = {limits->bytes, "arrays nested more than one deep", 0, ""};
    return nullptr;
  }
  if (limits != nullptr && elements > kMaxReplyElements) {
    *limits = {limits->bytes, "an array of more than 1,024 elements", elements, "elements"};
    return nullptr;
  }
  const size_t pointers = static_cast<size_t>(std::max(elements, 0));
  if (!Take(task, sizeof(redisReply) + sizeof(redisReply*) * pointers)) return nullptr;
  return DefaultReplyFunctions().createArray(task, elements);
}

void* BoundedInteger(const redisReadTask* task, long long value) {
  if (!Take(task, sizeof(redisReply))) return nullptr;
  return DefaultReplyFunctions().createInteger(task, value);
}

void* BoundedNil(const redisReadTask* task) {
  if (!Take(task, sizeof(redisReply))) return nullptr;
  return DefaultReplyFunctions().createNil(task);
}

redisReplyObjectFunctions* BoundedReplyFunctions() {
  static redisReplyObjectFunctions fns = {BoundedString, BoundedArray, BoundedInteger,
                                          BoundedNil, DefaultReplyFunctions().freeObject};
  return &fns;
}


// Waits until fd is ready for `events` or deadline_us passes (false).
bool WaitFor(int fd, short events, int64_t deadline_us) {
  for (;;) {
    const int64_t left = deadline_us - NowUs();
    if (left <= 0) return false;
    struct pollfd pfd = {fd, events, 0};
    struct timespec ts = {static_cast<time_t>(left / 1000000),
                          static_cast<long>(left % 1000000) * 1000};
    const int rc = ppoll(&pfd, 1, &ts, nullptr);
    if (rc > 0) return true;
    if (rc < 0 && errno == EINTR) continue;
    return false;
  }
}


}  // namespace

Transport::Opened Transport::Open(const Endpoint& to, int64_t deadline_us,
                                  const TlsContext* tls) {
  timed_out = false;
  tls_certificate = false;
  tls_certificate_asked = false;
  const struct timeval tv = Tv(deadline_us - NowUs());
  ctx = to.unix_path.empty() ? redisConnectWithTimeout(to.host.c_str(), to.port, tv)
                             : redisConnectUnixWithTimeout(to.unix_path.c_str(), tv);
  if (ctx == nullptr) return Opened::kNoMemory;
  if (ctx->err) return Opened::kFailed;
  // Replies are read within bounds (kMaxReplyBytes, ...).
  limits = ReplyLimits{};
  ctx->reader->fn = BoundedReplyFunctions();
  ctx->reader->privdata = &limits;
  // From here on the socket never blocks: a write that cannot go on waits
  // in poll(2) for the deadline like a read (the socket timeouts hiredis
  // sets are in whole clock ticks and may overshoot it).
  const int flags = fcntl(ctx->fd, F_GETFL);
  if (flags < 0 || fcntl(ctx->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    Drop();
    return Opened::kNotNonBlocking;
  }
  ctx->flags &= ~REDIS_BLOCK;
#ifdef RATETRACK_TLS
  if (tls != nullptr) {
    ssl = tls->NewSession(ctx->fd, &tls_certificate_asked);
    if (ssl == nullptr) {
      Drop();
      return Opened::kNoMemory;
    }
    const OpenSsl& o = Ssl();
    for (;;) {
      o.ERR_clear_error();
      const int rc = o.SSL_connect(ssl);
      if (rc == 1) break;
      if (!WaitTls(rc, deadline_us)) {
        const long verified = o.SSL_get_verify_result(ssl);
        if (verified != X509_V_OK) {
          tls_certificate = true;
          SetError(REDIS_ERR_OTHER,
                   std::string("the server's certificate is not trusted: ") +
                       o.X509_verify_cert_error_string(verified));
        }
        return Opened::kFailed;
      }
    }
  }
#else
  (void)tls;
#endif
  return Opened::kOk;
}

void Transport::Drop() {
#ifdef RATETRACK_TLS
  if (ssl != nullptr) Ssl().SSL_free(ssl);  // no close_notify: the socket just goes
#endif
  ssl = nullptr;
  tls_out.clear();
  tls_out_at = 0;
  if (ctx != nullptr) redisFree(ctx);
  ctx = nullptr;
}

void Transport::SetError(int type, const std::string& text) {
  ctx->err = type;
  const size_t n = std::min(text.size(), sizeof ctx->errstr - 1);
  std::memcpy(ctx->errstr, text.data(), n);
  ctx->errstr[n] = '\0';
}

#ifdef RATETRACK_TLS
bool Transport::WaitTls(int rc, int64_t deadline_us) {
  const OpenSsl& o = Ssl();
  const int e = o.SSL_get_error(ssl, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    if (WaitFor(ctx->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline_us)) return true;
    timed_out = true;
    return false;
  }
  if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && o.ERR_peek_error() == 0)) {
    tls_certificate = tls_certificate_asked;
    SetError(REDIS_ERR_EOF, tls_certificate_asked
                                ? "Server closed the connection after asking for a client "
                                  "certificate"
                                : "Server closed the connection");
    return false;
  }
  std::string why = "TLS: " + TlsErrors();
  // The server refused our certificate (an alert), or we its; or it asked
  // for one we do not have, then dropped us (TLS 1.3: on the first read,
  // as an alert or just a closed connection).
  tls_certificate = absl::StrContains(why, "certificate") || tls_certificate_asked;
  if (tls_certificate_asked) why += " (the server asked for a client certificate)";
  SetError(REDIS_ERR_OTHER, why);
  return false;
}

bool Transport::FlushTls(int64_t deadline_us) {
  // What hiredis buffered moves to our own buffer (emptied in place: only
  // sds.h's inline functions, none of libhiredis's).
  if (const size_t n = sdslen(ctx->obuf); n > 0) {
    tls_out.append(ctx->obuf, n);
    sdssetlen(ctx->obuf, 0);
    ctx->obuf[0] = '\0';
  }
  const OpenSsl& o = Ssl();
  while (tls_out_at < tls_out.size()) {
    o.ERR_clear_error();
    const int n =
        o.SSL_write(ssl, tls_out.data() + tls_out_at,
                    static_cast<int>(std::min<size_t>(tls_out.size() - tls_out_at, INT_MAX)));
    if (n > 0) {
      tls_out_at += static_cast<size_t>(n);
      continue;
    }
    if (!WaitTls(n, deadline_us)) return false;
  }
  tls_out.clear();
  tls_out_at = 0;
  return true;
}

redisReply* Transport::NextReplyTls(int64_t deadline_us) {
  const OpenSsl& o = Ssl();
  for (;;) {
    void* reply = nullptr;
    if (redisGetReplyFromReader(ctx, &reply) != REDIS_OK) return nullptr;
    if (reply != nullptr) return static_cast<redisReply*>(reply);
    char buf[16 * 1024];
    o.ERR_clear_error();
    const int n = o.SSL_read(ssl, buf, sizeof buf);
    if (n <= 0) {
      if (!WaitTls(n, deadline_us)) return nullptr;
      continue;
    }
    if (redisReaderFeed(ctx->reader, buf, static_cast<size_t>(n)) != REDIS_OK) {
      SetError(ctx->reader->err, ctx->reader->errstr);
      return nullptr;
    }
    if (const size_t buffered = ctx->reader->len - ctx->reader->pos; buffered > kMaxReplyBytes) {
      limits = {buffered, "a reply larger than 1 MiB", static_cast<long long>(buffered),
                "bytes or more"};
      return nullptr;
    }
  }
}
#else
bool Transport::WaitTls(int, int64_t) { return false; }
bool Transport::FlushTls(int64_t) { return false; }
redisReply* Transport::NextReplyTls(int64_t) { return nullptr; }
#endif

bool Transport::AppendArgv(const std::vector<std::string>& args) {
  const char* ptrs[kMaxArgs];
  size_t lens[kMaxArgs];
  const int argc = static_cast<int>(std::min(args.size(), kMaxArgs));
  for (int i = 0; i < argc; ++i) {
    ptrs[i] = args[i].data();
    lens[i] = args[i].size();
  }
  return redisAppendCommandArgv(ctx, argc, ptrs, lens) == REDIS_OK;
}

bool Transport::Flush(int64_t deadline_us) {
  timed_out = false;
  if (ssl != nullptr) return FlushTls(deadline_us);
  for (int done = 0; !done;) {
    if (redisBufferWrite(ctx, &done) != REDIS_OK) return false;
    if (!done && !WaitFor(ctx->fd, POLLOUT, deadline_us)) {
      timed_out = true;
      return false;
    }
  }
  return true;
}

redisReply* Transport::NextReply(int64_t deadline_us) {
  timed_out = false;
  if (ssl != nullptr) return NextReplyTls(deadline_us);
  for (;;) {
    void* reply = nullptr;
    if (redisGetReplyFromReader(ctx, &reply) != REDIS_OK) return nullptr;
    if (reply != nullptr) return static_cast<redisReply*>(reply);
    if (!WaitFor(ctx->fd, POLLIN, deadline_us)) {
      timed_out = true;
      return nullptr;
    }
    if (redisBufferRead(ctx) != REDIS_OK) return nullptr;
    // A reply still incomplete past the bound (a bulk string's length is
    // not believed: it is read as it comes).
    if (const size_t buffered = ctx->reader->len - ctx->reader->pos; buffered > kMaxReplyBytes) {
      limits = {buffered, "a reply larger than 1 MiB", static_cast<long long>(buffered),
                "bytes or more"};
      return nullptr;
    }
  }
}

Exchange::Exchange(const Endpoint& to, int64_t deadline_us, const TlsContext* tls,
                   const std::string& user, const std::string& password)
    : deadline_us_(deadline_us) {
  if (t_.Open(to, deadline_us, tls) != Transport::Opened::kOk) {
    error_ = std::string(tls != nullptr ? "TLS handshake: " : "cannot connect: ") +
             (t_.ctx != nullptr && t_.ctx->errstr[0] != '\0' ? t_.ctx->errstr : "failed");
    certificate_refused_ = t_.tls_certificate;
    t_.Drop();
    return;
  }
  if (password.empty()) return;
  std::vector<std::string> auth = {"AUTH"};
  if (!user.empty()) auth.push_back(user);
  auth.push_back(password);
  ReplyPtr r = Ask(auth);
  if (r == nullptr) {
    error_ = "AUTH: " + error_;
  } else if (r->type == REDIS_REPLY_ERROR) {
    error_ = "AUTH: " + std::string(r->str, r->len);
    auth_refused_ = true;
    t_.Drop();
  }
}

ReplyPtr Exchange::Ask(const std::vector<std::string>& args) {
  if (t_.ctx == nullptr) {
    if (error_.empty()) error_ = "not connected";
    return ReplyPtr(nullptr, freeReplyObject);
  }
  ReplyPtr r(t_.AppendArgv(args) && t_.Flush(deadline_us_) ? t_.NextReply(deadline_us_) : nullptr,
             freeReplyObject);
  if (r == nullptr) {
    error_ = t_.timed_out ? "timed out"
             : t_.ctx != nullptr && t_.ctx->err != 0 ? t_.ctx->errstr
                                                     : "no reply";
    // TLS 1.3: a server that refuses our certificate says so on the first
    // read after the handshake.
    certificate_refused_ = t_.tls_certificate;
    t_.Drop();
  }
  return r;
}

}  // namespace ratetrack
