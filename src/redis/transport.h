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

namespace ratetrack {

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
  bool timed_out = false;  // the last Flush or NextReply failed by the deadline
  ReplyLimits limits;      // the reader's: what it refused (kMaxReplyBytes, ...)

  // Connects to `to` within deadline_us. kFailed leaves ctx with its error
  // (ctx->errstr) for the caller's message; any other failure, no ctx.
  Opened Open(const Endpoint& to, int64_t deadline_us);
  void Drop() {
    if (ctx != nullptr) redisFree(ctx);
    ctx = nullptr;
  }
  // Appends a command to the output buffer; false when out of memory.
  bool AppendArgv(const std::vector<std::string>& args);
  // Writes the commands appended to ctx, within the deadline.
  bool Flush(int64_t deadline_us);
  // The next reply (the caller's to free), within the deadline; null on an
  // I/O error or when the deadline passed (timed_out).
  redisReply* NextReply(int64_t deadline_us);
};

}  // namespace ratetrack

#endif  // RATETRACK_SRC_REDIS_TRANSPORT_H_
