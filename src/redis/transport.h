// The Redis client's transport: one connection's socket, opened within a
// deadline and never blocking after that (every wait is a poll(2) bounded
// by the caller's deadline), and its replies read by hiredis's reader
// within bounds (kMaxReplyBytes, kMaxReplyElements).
#ifndef RATETRACK_SRC_REDIS_TRANSPORT_H_
#define RATETRACK_SRC_REDIS_TRANSPORT_H_

#include <hiredis/hiredis.h>
#include <time.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "redis/routing.h"

typedef struct ssl_st SSL;

namespace ratetrack {

class TlsContext;

inline int64_t NowUs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

// The clock the server's is watched against: monotonic, and running while
// the machine sleeps (as the server's clock does).
inline int64_t BootUs() {
  struct timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

inline int64_t UnixMs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

using ReplyPtr = std::unique_ptr<redisReply, void (*)(void*)>;

// What one reply may take: bytes buffered or built (strings, arrays and
// their elements), array elements, and arrays nest at most one deep. Ours
// are a few hundred bytes (a merged call's: 131 integers); anything larger
// is a bad server's, and refused before it takes the memory it claims (a
// bulk string's length or an array's count is not believed).
constexpr size_t kMaxReplyBytes = size_t{1} << 20;
constexpr int kMaxReplyElements = 1024;

// Where a connection's reader says why it gave up on a reply (the reader's
// privdata): what it refused, or null.
struct ReplyLimits {
  size_t bytes = 0;  // of the reply being read
  const char* refused = nullptr;
  long long value = 0;  // how many of `unit` the reply claimed or took
  const char* unit = "";
};

// One connection. Its owner (a store's leader) is the only one using it.
struct Transport {
  enum class Opened { kOk, kNoMemory, kFailed, kNotNonBlocking };
  redisContext* ctx = nullptr;
  // rediss://: the connection's TLS session. hiredis then only formats and
  // parses: what it buffered to send (ctx->obuf) is written through it, and
  // what it decrypts is fed to hiredis's reader.
  SSL* ssl = nullptr;
  std::string tls_out;  // TLS: written from here (ctx->obuf moved in), from tls_out_at
  size_t tls_out_at = 0;
  bool timed_out = false;  // the last Flush or NextReply failed by the deadline
  // A TLS failure about a certificate (the server's not trusted, or ours
  // refused): a misconfiguration, not an outage.
  bool tls_certificate = false;
  // The server asked for a client certificate, and none is configured:
  // a failure after that is about it.
  bool tls_certificate_asked = false;
  ReplyLimits limits;      // the reader's: what it refused (kMaxReplyBytes, ...)

  // Connects to `to` within deadline_us, through TLS with `tls` (the
  // handshake too). kFailed leaves ctx with its error (ctx->errstr) for the
  // caller's message; any other failure, no ctx.
  Opened Open(const Endpoint& to, int64_t deadline_us, const TlsContext* tls = nullptr);
  void Drop();
  // Appends a command to the output buffer; false when out of memory.
  bool AppendArgv(const std::vector<std::string>& args);
  // Writes the commands appended to ctx, within the deadline.
  bool Flush(int64_t deadline_us);
  // The next reply (the caller's to free), within the deadline; null on an
  // I/O error or when the deadline passed (timed_out).
  redisReply* NextReply(int64_t deadline_us);

 private:
  bool FlushTls(int64_t deadline_us);
  redisReply* NextReplyTls(int64_t deadline_us);
  // After an SSL call returned rc: waits for what it wants within the
  // deadline (true: try again), or notes the failure in ctx (false).
  bool WaitTls(int rc, int64_t deadline_us);
  void SetError(int type, const std::string& text);
};

// A few commands on a connection of its own, outside any pool (a
// sentinel's question, a cluster's slot map, the ticket key in a cluster):
// opened within the deadline (TLS with `tls`), authenticated when a
// password is given, dropped when it goes. Every wait is bounded by the
// deadline.
class Exchange {
 public:
  Exchange(const Endpoint& to, int64_t deadline_us, const TlsContext* tls,
           const std::string& user, const std::string& password);
  ~Exchange() { t_.Drop(); }
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;
  // Empty once open and authenticated; else why not ("cannot connect: ...",
  // "AUTH: WRONGPASS ...").
  const std::string& error() const { return error_; }
  // AUTH was answered with an error: the credentials are wrong (a
  // misconfiguration, not an outage).
  bool auth_refused() const { return auth_refused_; }
  // TLS failed on a certificate (the server's not trusted, or ours
  // refused): a misconfiguration too.
  bool certificate_refused() const { return certificate_refused_; }
  // A command's reply; null when the connection failed or the deadline
  // passed (error() then says which).
  ReplyPtr Ask(const std::vector<std::string>& args);

 private:
  Transport t_;
  int64_t deadline_us_;
  std::string error_;
  bool auth_refused_ = false;
  bool certificate_refused_ = false;
};

}  // namespace ratetrack

#endif  // RATETRACK_SRC_REDIS_TRANSPORT_H_
