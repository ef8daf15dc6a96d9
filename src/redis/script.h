// The Redis backend's script (src/redis/script.lua): its text, what a
// model's limits become as its arguments (RemoteSpec, packed once per
// limits), the protocol's pieces a call is written with, and its replies
// checked and turned into decisions. No I/O: the store writes what is
// packed here and hands the replies back.
#ifndef RATETRACK_SRC_REDIS_SCRIPT_H_
#define RATETRACK_SRC_REDIS_SCRIPT_H_

#include <hiredis/hiredis.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "redis/url.h"
#include "window_set.h"

namespace ratetrack {

// The script's text, generated from src/redis/script.lua.
extern const char kRedisScript[];

// What the script needs of a model's windows, copied per call (the limits
// may change under the tracker's lock; this is a snapshot).
struct RemoteSpec {
  struct Window {
    char name[24];  // "r60", "t86400", "ic86400": unit, calendar, seconds
    int64_t width_ms;
    int32_t ring;
    int64_t limit;  // -1: unlimited
    Unit unit;
    int64_t seconds;
    char calendar_tz[48];  // empty: sliding
  };
  int n = 0;
  Window w[ModelLimits::kMaxWindows];
  int64_t ttl_ms = 0;
  std::string fingerprint;  // DescribeLimits: "conflict" detection
  std::string names;        // "r60,t60,rc86400": the windows' names, in order
  std::string head;         // fingerprint "\n" names "\n": what the state is for
  // Per window five little-endian doubles (width, ring, limit or -1, unit,
  // day end: 0 here, set per call for calendar windows): what the script
  // unpacks without parsing text.
  std::string layout;
  // The longest window with a limit (width x ring, ms; 0: none): how long
  // after a step of the server's clock a call carries the time as it would
  // be without it.
  int64_t longest_ms = 0;
  // A 52-bit FNV-1a hash of the head, the layout and the TTL, as the script
  // compares it (a double, exact): a call that carries only the digest is
  // decided from the state Redis holds for the same limits.
  double digest = 0;

  static RemoteSpec From(const WindowSet& windows);
};

// What one script call does.
enum class ScriptOp { kAcquire, kCheck, kRecord, kSettle, kStats, kReset, kBlock, kObserve };

// One decision's answer, as the script gives it.
struct ScriptReply {
  int code = 0;          // RT_OK, RT_LIMITED, RT_E_TOO_LARGE, RT_E_CONFIG
  uint64_t wait_ms = 0;  // RT_LIMITED
  int64_t now_ms = 0;    // the server's time of the decision (Unix ms)
  std::string stored_limits;   // RT_E_CONFIG: what Redis holds
  std::vector<uint64_t> used;  // kStats: per window
  uint64_t blocked_ms = 0;     // kStats: a 429's remaining time
  struct Cap {
    int64_t remaining = -1;  // -1: no report in force
    uint64_t reset_ms = 0;
    uint64_t limit = 0;
  } caps[4];                   // kStats: by Unit
  // The script holds no state for these limits (or a calendar day
  // begins): the call is to be sent again in the full form (Run does).
  bool need_full = false;
};

// The script's text; with url.test_clock, its clock is TIME plus the
// milliseconds stored at "{prefix:}clock".
std::string ScriptText(const RedisUrl& url);

// Lua numbers are doubles: integers are exact up to 2^53.
constexpr uint64_t kMaxExact = uint64_t{1} << 53;

// A count as the script's double: exact, clamped at 2^53.
inline double Exact(uint64_t v) { return static_cast<double>(std::min(v, kMaxExact)); }

// A little-endian IEEE double, as the script's struct.unpack('<d') reads it
// (integers up to 2^53 exactly).
void AppendDouble(std::string* out, double v);

// Writes the protocol's pieces from `p` on, into room the caller has made
// (at most kBulkOverhead bytes a bulk string besides its own): no allocation,
// no formatting library.
struct RespWriter {
  static constexpr size_t kBulkOverhead = 25;  // '$', up to 20 digits, 2 CRLFs
  char* p;

  void Raw(const void* d, size_t n) {
    std::memcpy(p, d, n);
    p += n;
  }
  // "$<len>\r\n": a bulk string's header ('*': an array's).
  void Header(size_t len, char lead = '$') {
    char digits[20];
    char* d = digits + sizeof digits;
    do {
      *--d = static_cast<char>('0' + len % 10);
      len /= 10;
    } while (len != 0);
    *p++ = lead;
    Raw(d, static_cast<size_t>(digits + sizeof digits - d));
    Raw("\r\n", 2);
  }
  // "$<len>\r\n<bytes>\r\n".
  void Bulk(absl::string_view a) {
    Header(a.size());
    Raw(a.data(), a.size());
    Raw("\r\n", 2);
  }
  // A little-endian IEEE double, as AppendDouble.
  void Double(double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(bits >> (8 * i));
    p += 8;
  }
};

// Appends `a` as one bulk string of the protocol: "$<len>\r\n<bytes>\r\n".
void AppendBulk(std::string* out, absl::string_view a);

// A reply's type, for messages.
const char* TypeName(const redisReply* r);
const char* OpName(ScriptOp op);

// The script's reply to one script call of `op` deciding the requests `g`
// (merged: more than one) on a model of `nwin` windows, sent in the short
// form or not, as each request's result (into (*results)[g[k]]) and the
// server's time (or -1: the reply carries none). Anything the script never
// returns is an error message saying what was wrong (and nothing is
// decided: the results written are to be overwritten).
std::string ParseScriptReply(const redisReply& r, ScriptOp op, bool short_form, int nwin,
                             const std::vector<size_t>& g,
                             std::vector<absl::StatusOr<ScriptReply>>* results,
                             int64_t* server_ms);

// What an error reply says about the server the URL points at. An outage
// passes (the server is loading, busy, failing over, out of memory): the
// on_error policy decides meanwhile. A misconfiguration does not pass by
// itself (a replica, a sentinel, a cluster node reached without cluster
// routing, credentials refused): every call fails with RT_E_CONFIG,
// whatever on_error says, until it is fixed. `during`: the command
// answered (AUTH, ROLE, SELECT, ... or a script call).
struct ErrorReplyKind {
  bool misconfigured = false;
  std::string why;  // misconfigured: what is wrong and what to change
};
ErrorReplyKind ClassifyErrorReply(absl::string_view text, absl::string_view during);

// The status of a misconfiguration (RT_E_CONFIG), told apart from an
// outage (RT_E_BACKEND) by its code.
bool IsMisconfiguration(const absl::Status& status);

}  // namespace ratetrack

#endif  // RATETRACK_SRC_REDIS_SCRIPT_H_
