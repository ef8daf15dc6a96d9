#include "redis_store.h"

#include <hiredis/hiredis.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "ratetrack.h"
#include "spin_lock.h"
#include "status.h"

namespace ratetrack {

extern const char kRedisScript[];  // generated from src/redis_script.lua

namespace {

// With more callers at once than connections, this many connections stay
// busy and the rest queue: two keep a single-threaded Redis busy (one batch
// is decided while the other's replies travel back and its callers return),
// and the queued decisions merge into their next script calls.
constexpr size_t kBusyWhenQueued = 2;
constexpr int64_t kMinBackoffMs = 50;
constexpr int64_t kMaxBackoffMs = 2000;
// The server's clock moving more than this (plus the round trip and the
// drift allowed for) from where this process's monotonic clock says it
// should be is a step.
constexpr double kClockStepMs = 1000;
// Lua numbers are doubles: integers are exact up to 2^53.
constexpr uint64_t kMaxExact = uint64_t{1} << 53;

int64_t NowUs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

// The clock the server's is watched against: monotonic, and running while
// the machine sleeps (as the server's clock does).
int64_t BootUs() {
  struct timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

int64_t UnixMs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

struct timeval Tv(int64_t us) {
  if (us < 1000) us = 1000;
  return {static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
}

// The most arguments a command of ours has (a script call in the full form has 8).
constexpr size_t kMaxArgs = 32;

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

// A reply's type, for messages.
const char* TypeName(const redisReply* r) {
  switch (r->type) {
    case REDIS_REPLY_STRING: return "a string";
    case REDIS_REPLY_ARRAY: return "an array";
    case REDIS_REPLY_INTEGER: return "an integer";
    case REDIS_REPLY_NIL: return "nil";
    case REDIS_REPLY_STATUS: return "a status";
    case REDIS_REPLY_ERROR: return "an error";
  }
  return "of an unknown type";
}

const char* OpName(RedisStore::Op op) {
  switch (op) {
    case RedisStore::Op::kAcquire: return "acquire";
    case RedisStore::Op::kCheck: return "check";
    case RedisStore::Op::kRecord: return "record";
    case RedisStore::Op::kSettle: return "settle";
    case RedisStore::Op::kStats: return "stats";
    case RedisStore::Op::kReset: return "reset";
    case RedisStore::Op::kBlock: return "block";
    case RedisStore::Op::kObserve: return "observe";
  }
  return "?";
}

// The server's time as the script returns it: Unix ms, positive, exact in
// a double.
bool ServerTime(long long v) { return v > 0 && v < (int64_t{1} << 53); }

// The script's reply to one script call of `op` deciding the requests `g`
// (merged: more than one) on a model of `nwin` windows, sent in the short
// form or not, as each request's result (into (*results)[g[k]]) and the
// server's time (or -1: the reply carries none). Anything the script never
// returns is an error message saying what was wrong (and nothing is
// decided: the results written are to be overwritten).
std::string ParseScriptReply(const redisReply& r, RedisStore::Op op, bool short_form, int nwin,
                             const std::vector<size_t>& g,
                             std::vector<absl::StatusOr<RedisStore::Reply>>* results,
                             int64_t* server_ms) {
  using Op = RedisStore::Op;
  using Reply = RedisStore::Reply;
  const bool decision = op == Op::kAcquire || op == Op::kCheck || op == Op::kRecord;
  const size_t decisions = g.size();
  *server_ms = -1;
  if (r.type == REDIS_REPLY_INTEGER) {
    if (r.integer == -4 && decision && short_form) {
      // Asked for the full form: each caller sends its call again in it.
      Reply again;
      again.need_full = true;
      for (size_t k : g) (*results)[k] = again;
      return "";
    }
    // Every decision admitted: the script returns the server's time alone.
    if (decision && ServerTime(r.integer)) {
      Reply ok;
      ok.code = RT_OK;
      ok.now_ms = r.integer;
      *server_ms = r.integer;
      for (size_t k : g) (*results)[k] = ok;
      return "";
    }
    return absl::StrCat("the reply is the integer ", r.integer, ", expected ",
                        decision ? "the server's time or an array" : "an array");
  }
  if (r.type != REDIS_REPLY_ARRAY) {
    return absl::StrCat("the reply is ", TypeName(&r), ", expected ",
                        decision ? "an integer or an array" : "an array");
  }
  // {code, wait_ms, now_ms, ...}: a conflict adds the stored limits; stats
  // n used counts, the block, and (remaining, reset, limit) per unit; a
  // merged call (code, wait) per further decision.
  const bool conflict = (op == Op::kAcquire || op == Op::kCheck) && r.elements == 4 &&
                        r.element[0]->type == REDIS_REPLY_INTEGER && r.element[0]->integer == -2;
  const size_t expected = conflict             ? 4
                          : op == Op::kStats   ? 3 + static_cast<size_t>(nwin) + 13
                          : decision           ? 3 + 2 * (decisions - 1)
                                               : 3;
  if (r.elements != expected) {
    return absl::StrCat("the reply is an array of ", r.elements, " elements, expected ", expected);
  }
  for (size_t e = 0; e < r.elements; ++e) {
    const redisReply* x = r.element[e];
    const int want = conflict && e == 3 ? REDIS_REPLY_STRING : REDIS_REPLY_INTEGER;
    if (x == nullptr || x->type != want) {
      return absl::StrCat("reply element ", e + 1, " of ", r.elements, " is ",
                          x == nullptr ? "missing" : TypeName(x), ", expected ",
                          want == REDIS_REPLY_STRING ? "a string" : "an integer");
    }
  }
  auto bad_value = [&](size_t e, absl::string_view expected_value) {
    return absl::StrCat("reply element ", e + 1, " of ", r.elements, " is ",
                        r.element[e]->integer, ", expected ", expected_value);
  };
  // A decision's code (0 ok, 1 limited, -3 too large; -2, a conflict, only
  // first) and wait, as the caller's.
  auto code_at = [&](size_t e, Reply* one) -> std::string {
    const long long code = r.element[e]->integer, wait = r.element[e + 1]->integer;
    if (!(code == 0 || (decision && (code == 1 || code == -3)))) {
      return bad_value(e, decision ? "a decision's code (0, 1 or -3)" : "0");
    }
    if (wait < 0) return bad_value(e + 1, "a wait (0 or more ms)");
    one->code = code == 0 ? RT_OK : code == 1 ? RT_LIMITED : RT_E_TOO_LARGE;
    one->wait_ms = static_cast<uint64_t>(wait);
    return "";
  };
  Reply first;
  if (!ServerTime(r.element[2]->integer)) return bad_value(2, "the server's time (Unix ms)");
  first.now_ms = r.element[2]->integer;
  *server_ms = first.now_ms;
  if (conflict) {
    if (r.element[1]->integer != 0) return bad_value(1, "0");
    first.code = RT_E_CONFIG;
    first.stored_limits.assign(r.element[3]->str, r.element[3]->len);
    for (size_t k : g) (*results)[k] = first;  // a conflict answers them all
    return "";
  }
  if (std::string e = code_at(0, &first); !e.empty()) return e;
  if (op == Op::kStats) {
    const size_t n = static_cast<size_t>(nwin);
    for (size_t k = 0; k < n; ++k) {
      const long long used = r.element[3 + k]->integer;
      if (used < 0) return bad_value(3 + k, "a count (0 or more)");
      first.used.push_back(static_cast<uint64_t>(used));
    }
    const long long blocked = r.element[3 + n]->integer;
    if (blocked < 0) return bad_value(3 + n, "a block's remaining ms (0 or more)");
    first.blocked_ms = static_cast<uint64_t>(blocked);
    for (size_t u = 0; u < 4; ++u) {
      const size_t at = 4 + n + 3 * u;
      const long long remaining = r.element[at]->integer, reset = r.element[at + 1]->integer,
                      limit = r.element[at + 2]->integer;
      if (remaining < -1) return bad_value(at, "a cap's remaining (-1: none, or 0 or more)");
      if (reset < 0) return bad_value(at + 1, "a cap's reset (0 or more ms)");
      if (limit < 0) return bad_value(at + 2, "a limit (0 or more)");
      first.caps[u].remaining = remaining;
      first.caps[u].reset_ms = static_cast<uint64_t>(reset);
      first.caps[u].limit = static_cast<uint64_t>(limit);
    }
  }
  for (size_t k = 1; k < decisions; ++k) {
    Reply one = first;
    if (std::string e = code_at(3 + 2 * (k - 1), &one); !e.empty()) return e;
    (*results)[g[k]] = std::move(one);
  }
  (*results)[g[0]] = std::move(first);
  return "";
}

// A count as the script's double: exact, clamped at 2^53.
double Exact(uint64_t v) { return static_cast<double>(std::min(v, kMaxExact)); }

// A little-endian IEEE double, as the script's struct.unpack('<d') reads it
// (integers up to 2^53 exactly).
void AppendDouble(std::string* out, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  char bytes[8];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(bits >> (8 * i));
  out->append(bytes, sizeof bytes);
}

char UnitLetter(Unit u) {
  switch (u) {
    case Unit::kRequests: return 'r';
    case Unit::kTokens: return 't';
    case Unit::kInputTokens: return 'i';
    case Unit::kOutputTokens: return 'o';
  }
  return 't';
}

}  // namespace

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
}  // namespace

std::string RedisUrl::Redacted() const {
  const char* policy = on_error == OnError::kLocal ? "local"
                       : on_error == OnError::kOpen ? "open"
                                                    : "closed";
  return absl::StrCat("redis://", host, ":", port, "/", db, "?prefix=", prefix,
                      "&timeout_ms=", timeout_ms, "&on_error=", policy,
                      connections != 4 ? absl::StrCat("&connections=", connections) : "");
}

absl::StatusOr<RedisUrl> ParseRedisUrl(absl::string_view url) {
  RedisUrl u;
  auto bad = [](absl::string_view what) {
    return ConfigError(absl::StrCat("config key 'backend': bad Redis URL: ", what,
                                    " (expected redis://[user:password@]host:port[/db]"
                                    "[?prefix=P&timeout_ms=T&on_error=local|open|closed"
                                    "&connections=N])"));
  };
  if (!absl::StartsWith(url, "redis://")) return bad("it must start with redis://");
  absl::string_view rest = url.substr(8);
  // The credentials come off first, before anything else looks at the URL,
  // so that no message or field can show a piece of them: they run to the
  // last '@' of the whole URL, since a password written by hand may hold
  // '?', '/', ':' or '#' unescaped ('@' itself must be written %40).
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
  if (size_t slash = rest.find('/'); slash != absl::string_view::npos) {
    absl::string_view db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (!db.empty() && (!absl::SimpleAtoi(db, &u.db) || u.db < 0 || u.db > 1000)) {
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
  for (absl::string_view kv : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    if (p.first == "prefix") {
      if (p.second.empty() || p.second.find_first_of("{}") != std::string::npos) {
        return bad("prefix must be non-empty, without braces");
      }
      u.prefix = p.second;
    } else if (p.first == "timeout_ms") {
      if (!absl::SimpleAtoi(p.second, &u.timeout_ms) || u.timeout_ms < 1 ||
          u.timeout_ms > 60000) {
        return bad("timeout_ms must be from 1 to 60000");
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
  return u;
}

RemoteSpec RemoteSpec::From(const WindowSet& ws) {
  RemoteSpec s;
  s.n = ws.nwin;
  int64_t longest = 0;
  for (int i = 0; i < ws.nwin; ++i) {
    const WindowSlot& slot = ws.slots[i];
    RemoteSpec::Window& w = s.w[i];
    std::snprintf(w.name, sizeof w.name, "%c%s%lld", UnitLetter(slot.limit.unit),
                  slot.limit.calendar() ? "c" : "", static_cast<long long>(slot.limit.seconds));
    w.width_ms = slot.window.width_ms();
    w.ring = slot.window.ring();
    w.limit = slot.limit.limit == kUnlimited
                  ? -1
                  : static_cast<int64_t>(std::min(slot.limit.limit, kMaxExact));
    w.unit = slot.limit.unit;
    w.seconds = slot.limit.seconds;
    std::memcpy(w.calendar_tz, slot.limit.calendar_tz, sizeof w.calendar_tz);
    absl::StrAppend(&s.names, i == 0 ? "" : ",", w.name);
    for (double v : {static_cast<double>(w.width_ms), static_cast<double>(w.ring),
                     static_cast<double>(w.limit), static_cast<double>(w.unit), 0.0}) {
      AppendDouble(&s.layout, v);
    }
    longest = std::max(longest, w.width_ms * w.ring);
    if (w.limit >= 0) s.longest_ms = std::max(s.longest_ms, w.width_ms * w.ring);
  }
  s.ttl_ms = longest + 60000;  // a little longer than the longest window
  s.fingerprint = DescribeLimits(ws.Limits());
  s.head = absl::StrCat(s.fingerprint, "\n", s.names, "\n");
  // FNV-1a (64 bits) of everything the script would be told in the full
  // form but the per-call numbers, folded to 52 bits (exact in a double),
  // never 0 (the script's "none").
  uint64_t h = 14695981039346656037ull;
  auto mix = [&h](absl::string_view bytes) {
    for (unsigned char ch : bytes) h = (h ^ ch) * 1099511628211ull;
  };
  mix(s.head);
  mix(s.layout);
  std::string ttl;
  AppendDouble(&ttl, static_cast<double>(s.ttl_ms));
  mix(ttl);
  s.digest = static_cast<double>(((h ^ (h >> 52)) & ((uint64_t{1} << 52) - 1)) | 1);
  return s;
}

struct RedisStore::Conn {
  // The leader's alone. A forked child drops its copy (UnlockForFork).
  redisContext* ctx = nullptr;
  bool busy = false;               // guarded by mu_: a leader is at work on it
  std::vector<Request*> batch;     // guarded by mu_: on the wire; null: gave up
  // What the batch's requests said (moved out of them under mu_, when the
  // batch was taken), how they were grouped into script calls and how
  // sending them went: written by whoever sent the batch, read by whoever
  // reads its replies (the same thread, or the one the lead was handed to).
  struct Item {
    Op op;
    std::string wire;
    std::string full;
    size_t tokens_at;
    Cost cost;
    int64_t deadline_us;
    int nwin;            // the model's windows (what stats answers)
    int64_t longest_ms;  // the model's longest window
    bool MergesWith(const Item& o) const {
      // Decisions of one kind on one model with the same limits: one script
      // call decides them all, in order. Their arguments differ only in the
      // short form's last two doubles, the tokens.
      if (!(op == Op::kAcquire || op == Op::kCheck || op == Op::kRecord) || op != o.op ||
          wire.size() != o.wire.size() || tokens_at != o.tokens_at || full != o.full) {
        return false;
      }
      const size_t rest = tokens_at + 16;
      return std::memcmp(wire.data(), o.wire.data(), tokens_at) == 0 &&
             std::memcmp(wire.data() + rest, o.wire.data() + rest, wire.size() - rest) == 0;
    }
  };
  std::vector<Item> items;
  std::vector<std::vector<size_t>> groups;  // indexes into items, per script call
  bool eval = false;                        // sent as EVAL (the SHA was not known)
  absl::Status sent;                        // how sending the batch went
  // Guarded by mu_: the batch was sent by the leader before, which handed
  // it, on the wire, to a request of it: that one reads the replies.
  bool in_flight = false;
  bool timed_out = false;  // the last Flush or NextReply failed by the deadline
  ReplyLimits limits;      // the reader's: what it refused (kMaxReplyBytes, ...)
  // The batch's clock: when it was written, and, taken with it under mu_,
  // this process's estimate of the server's time without the steps seen
  // (monotonic ms + clock_base_ms) and when the latest step was seen (0:
  // none).
  int64_t sent_us = 0;
  double clock_base_ms = 0;
  int64_t step_at_us = 0;
  void Drop() {
    if (ctx != nullptr) redisFree(ctx);
    ctx = nullptr;
  }
  // Writes the commands appended to ctx, within the deadline.
  bool Flush(int64_t deadline_us);
  // The next reply (the caller's to free), within the deadline; null on an
  // I/O error or when the deadline passed (timed_out).
  redisReply* NextReply(int64_t deadline_us);
};

// One call of Run, on its caller's stack: its command's arguments, and once
// answered its result. `state` is written under mu_ and waited on with a
// futex.
struct RedisStore::Request {
  static constexpr uint32_t kWaiting = 0, kDone = 1, kLead = 2;
  Op op;
  // The script's arguments, already in the protocol's form ("$<len>\r\n
  // <bytes>\r\n" each): `wire`, the short form (1, the key, the digest, op
  // and tokens), which the leader puts after EVALSHA sha (or EVAL and the
  // script); `full`, what the full form adds (after the merged tokens): the
  // numbers and the head. `tokens_at`: where the tokens' bytes start in
  // `wire`.
  std::string wire;
  std::string full;
  size_t tokens_at = 0;
  Cost cost;
  int64_t deadline_us = 0;
  int nwin = 0;
  int64_t longest_ms = 0;
  std::atomic<uint32_t> state{kWaiting};
  Conn* conn = nullptr;  // kLead: the connection handed over
  absl::StatusOr<Reply> result;  // kDone: the answer
  bool failed = false;  // kDone with a failure of the connection (count it)
};

namespace {

// The most requests one leader sends at once.
constexpr size_t kMaxBatch = 64;

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

// Sleeps while *word == expected, until woken or deadline_us (CLOCK_MONOTONIC)
// passes; false once it has passed.
bool FutexWaitUntil(std::atomic<uint32_t>* word, uint32_t expected, int64_t deadline_us) {
  const struct timespec at = {static_cast<time_t>(deadline_us / 1000000),
                              static_cast<long>(deadline_us % 1000000) * 1000};
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time.
  const long rc = syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_BITSET_PRIVATE,
                          expected, &at, nullptr, FUTEX_BITSET_MATCH_ANY);
  return !(rc == -1 && errno == ETIMEDOUT);
}

// Wakes the thread sleeping on `word`. Its owner may have returned already
// (it reads `state` under the lock): waking a word nobody sleeps on is
// harmless.
void FutexWake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

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
void AppendBulk(std::string* out, absl::string_view a) {
  const size_t at = out->size();
  out->resize(at + a.size() + RespWriter::kBulkOverhead);
  RespWriter w{&(*out)[at]};
  w.Bulk(a);
  out->resize(static_cast<size_t>(w.p - out->data()));
}

// Appends a command to ctx's output buffer; false when out of memory.
bool AppendArgv(redisContext* ctx, const std::vector<std::string>& args) {
  const char* ptrs[kMaxArgs];
  size_t lens[kMaxArgs];
  const int argc = static_cast<int>(std::min(args.size(), kMaxArgs));
  for (int i = 0; i < argc; ++i) {
    ptrs[i] = args[i].data();
    lens[i] = args[i].size();
  }
  return redisAppendCommandArgv(ctx, argc, ptrs, lens) == REDIS_OK;
}

}  // namespace

bool RedisStore::Conn::Flush(int64_t deadline_us) {
  timed_out = false;
  for (int done = 0; !done;) {
    if (redisBufferWrite(ctx, &done) != REDIS_OK) return false;
    if (!done && !WaitFor(ctx->fd, POLLOUT, deadline_us)) {
      timed_out = true;
      return false;
    }
  }
  return true;
}

redisReply* RedisStore::Conn::NextReply(int64_t deadline_us) {
  timed_out = false;
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

absl::Status RedisStore::IoError(Conn& c, const char* during) const {
  std::string msg = absl::StrCat(where_, ": ", during, ": ",
                                 c.ctx && c.ctx->err ? c.ctx->errstr : "timed out");
  if (c.limits.refused != nullptr) {
    msg = absl::StrCat(
        where_, ": ", during, ": refused ", c.limits.refused,
        c.limits.value > 0 ? absl::StrCat(" (", c.limits.value, " ", c.limits.unit, ")") : "",
        "; the connection is dropped");
  } else if (c.timed_out ||
             (c.ctx && c.ctx->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK))) {
    msg = absl::StrCat(where_, ": ", during, ": timed out after ", url_.timeout_ms, " ms");
  }
  c.limits = ReplyLimits{};
  c.Drop();
  return BackendError(msg);
}

namespace {

// The script's text; with test_clock, its clock is TIME plus the
// milliseconds stored at "{prefix:}clock".
std::string ScriptText(const RedisUrl& url) {
  std::string text = kRedisScript;
  if (!url.test_clock) return text;
  const std::string line = "local now = t[1] * 1000 + t[2] / 1000\n";
  const size_t at = text.find(line);
  if (at == std::string::npos) return text;  // the test fails: its clock does not move
  text.replace(at, line.size(),
               absl::StrCat("local now = t[1] * 1000 + t[2] / 1000 + (tonumber(redis.call('GET', "
                            "[==[{", url.prefix, ":}clock]==])) or 0)\n"));
  return text;
}

}  // namespace

RedisStore::RedisStore(RedisUrl url)
    : url_(std::move(url)),
      where_(absl::StrCat("Redis ", url_.host, ":", url_.port)),
      script_(ScriptText(url_)) {
  for (int i = 0; i < url_.connections; ++i) pool_.push_back(std::make_unique<Conn>());
}

RedisStore::~RedisStore() {
  for (auto& c : pool_) c->Drop();
}

void RedisStore::NoteFailure(const std::string& message) {
  errors_.fetch_add(1);
  connected_.store(false);
  int64_t expected = 0;
  if (degraded_since_ms_.compare_exchange_strong(expected, UnixMs())) {
    first_failure_pending_.store(true);
  }
  const int64_t b = std::clamp(backoff_ms_.load() * 2, kMinBackoffMs, kMaxBackoffMs);
  backoff_ms_.store(b);
  next_attempt_us_.store(NowUs() + b * 1000);
  std::lock_guard<std::mutex> l(last_error_mu_);
  last_error_ = message;
}

void RedisStore::NoteError(const std::string& message) {
  errors_.fetch_add(1);
  std::lock_guard<std::mutex> l(last_error_mu_);
  last_error_ = message;
}

void RedisStore::NoteSuccess() {
  connected_.store(true, std::memory_order_relaxed);
  if (degraded_since_ms_.load(std::memory_order_relaxed) != 0) {
    degraded_since_ms_.store(0);
    backoff_ms_.store(0);
    first_failure_pending_.store(false);
  }
}

void RedisStore::UpdateClock(int64_t server_ms, int64_t sent_us, int64_t recv_us) {
  // The server read its clock between sent_us and recv_us: the offset is
  // server_ms less their middle, give or take half the round trip (and the
  // millisecond TIME was truncated to).
  const double mid_ms = static_cast<double>(sent_us + recv_us) / 2000;
  const double offset = static_cast<double>(server_ms) - mid_ms;
  const double error = static_cast<double>(recv_us - sent_us) / 2000 + 1;
  if (!clock_known_) {
    clock_known_ = true;
    clock_offset_ms_ = offset;
    clock_error_ms_ = error;
    clock_seen_us_ = recv_us;
    return;
  }
  // What was known ages: a server's clock may run fast or slow (NTP slews
  // it by at most 0.05%); 0.1% is allowed for.
  const double aged = clock_error_ms_ + static_cast<double>(recv_us - clock_seen_us_) / 1e6;
  clock_seen_us_ = recv_us;
  if (std::abs(offset - clock_offset_ms_) > kClockStepMs + aged + error) {
    // The server's clock stepped. The steps of one episode add up: it ends
    // when the clock has stood still for the longest window of any call.
    if (clock_step_at_us_ == 0 || recv_us - clock_step_at_us_ >= clock_longest_ms_ * 1000) {
      clock_step_ms_ = 0;
    }
    clock_step_ms_ += offset - clock_offset_ms_;
    clock_step_at_us_ = recv_us;
  } else if (error > aged) {
    clock_error_ms_ = aged;  // the older reading is the closer one
    return;
  }
  clock_offset_ms_ = offset;
  clock_error_ms_ = error;
}

bool RedisStore::TakeFirstFailure() {
  return first_failure_pending_.load(std::memory_order_relaxed) &&
         first_failure_pending_.exchange(false);
}

RedisStore::Health RedisStore::health() const {
  std::lock_guard<std::mutex> l(last_error_mu_);
  return {connected_.load(), degraded_since_ms_.load(), errors_.load(), last_error_};
}

bool RedisStore::Idle() const {
  for (const auto& c : pool_) {
    if (c->busy) return false;
  }
  return true;
}

void RedisStore::LockForFork() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  {
    // No new call takes a connection or queues from now on; those queued
    // are served (within their deadlines), so the connections come free.
    SpinLockHolder l(&mu_);
    forking_ = true;
  }
  // Held across fork(): no command is on the wire then, and nobody waits (a
  // queued request always has a leader at work).
  for (;;) {
    mu_.Lock();
    if (Idle()) break;
    mu_.Unlock();
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  last_error_mu_.lock();  // a child must not inherit it held
}

void RedisStore::UnlockForFork(bool child) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  if (child) {
    // Never share the parent's socket: the child connects anew. Closing the
    // child's copy of the descriptor leaves the parent's connection as it is.
    for (auto& c : pool_) c->Drop();
    next_attempt_us_.store(0);  // and without the parent's backoff
    backoff_ms_.store(0);
  }
  last_error_mu_.unlock();
  forking_ = false;
  mu_.Unlock();
}

absl::Status RedisStore::Connect(Conn& c, int64_t deadline_us) {
  c.timed_out = false;
  if (deadline_us - NowUs() <= 0) return BackendError(absl::StrCat(where_, ": timed out"));
  c.ctx = redisConnectWithTimeout(url_.host.c_str(), url_.port, Tv(deadline_us - NowUs()));
  if (c.ctx == nullptr) return NoMemError("cannot allocate a Redis context");
  if (c.ctx->err) return IoError(c, "cannot connect");
  // Replies are read within bounds (kMaxReplyBytes, ...).
  c.limits = ReplyLimits{};
  c.ctx->reader->fn = BoundedReplyFunctions();
  c.ctx->reader->privdata = &c.limits;
  // From here on the socket never blocks: a write that cannot go on waits
  // in poll(2) for the deadline like a read (the socket timeouts hiredis
  // sets are in whole clock ticks and may overshoot it).
  const int flags = fcntl(c.ctx->fd, F_GETFL);
  if (flags < 0 || fcntl(c.ctx->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    c.Drop();
    return BackendError(absl::StrCat(where_, ": cannot make the socket non-blocking"));
  }
  c.ctx->flags &= ~REDIS_BLOCK;
  // One command and its reply, within the deadline: an I/O failure, an
  // error reply or a reply `ok` does not accept (`expected` says what it
  // accepts) fails the connection.
  auto step = [&](const std::vector<std::string>& args, const char* during, const char* expected,
                  auto ok) -> absl::StatusOr<ReplyPtr> {
    ReplyPtr r(AppendArgv(c.ctx, args) && c.Flush(deadline_us) ? c.NextReply(deadline_us)
                                                               : nullptr,
               freeReplyObject);
    if (r == nullptr) return IoError(c, during);
    if (r->type == REDIS_REPLY_ERROR) {
      const std::string err(r->str, r->len);
      c.Drop();
      return BackendError(absl::StrCat(where_, ": ", during, ": ", err));
    }
    if (!ok(*r)) {
      std::string got = TypeName(r.get());
      if (r->type == REDIS_REPLY_INTEGER) absl::StrAppend(&got, " (", r->integer, ")");
      if (r->type == REDIS_REPLY_ARRAY) absl::StrAppend(&got, " of ", r->elements);
      c.Drop();
      return BackendError(absl::StrCat(where_, ": ", during, ": the reply is ", got,
                                       ", expected ", expected, "; the connection is dropped"));
    }
    return r;
  };
  auto is_ok = [](const redisReply& r) {
    return r.type == REDIS_REPLY_STATUS && absl::string_view(r.str, r.len) == "OK";
  };
  if (!url_.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!url_.user.empty()) auth.push_back(url_.user);
    auth.push_back(url_.password);
    if (auto r = step(auth, "AUTH", "OK", is_ok); !r.ok()) return r.status();
  }
  if (url_.db != 0) {
    if (auto r = step({"SELECT", std::to_string(url_.db)}, "SELECT", "OK", is_ok); !r.ok()) {
      return r.status();
    }
  }
  if (secret_.load(std::memory_order_acquire) == 0) {
    // One ticket key per Redis and prefix: whoever connects first sets it.
    std::random_device rd;
    const uint64_t mine = (static_cast<uint64_t>(rd()) << 32 | rd()) | 1;
    const std::string key = absl::StrCat("{", url_.prefix, ":}secret");
    auto set = step({"SET", key, std::to_string(mine), "NX"}, "SET", "OK or nil",
                    [&](const redisReply& r) { return is_ok(r) || r.type == REDIS_REPLY_NIL; });
    if (!set.ok()) return set.status();
    uint64_t shared = 0;
    auto got = step({"GET", key}, "GET", "a string holding a number other than 0",
                    [&](const redisReply& r) {
                      return r.type == REDIS_REPLY_STRING &&
                             absl::SimpleAtoi(absl::string_view(r.str, r.len), &shared) &&
                             shared != 0;
                    });
    if (!got.ok()) return got.status();
    secret_.store(shared, std::memory_order_release);
  }
  auto loaded = step({"SCRIPT", "LOAD", script_}, "SCRIPT LOAD", "a SHA1 (40 hex digits)",
                     [](const redisReply& r) {
                       const absl::string_view sha(r.str == nullptr ? "" : r.str, r.len);
                       return r.type == REDIS_REPLY_STRING && sha.size() == 40 &&
                              sha.find_first_not_of("0123456789abcdefABCDEF") ==
                                  absl::string_view::npos;
                     });
  if (!loaded.ok()) return loaded.status();
  if (!sha_known_.load()) {
    std::lock_guard<std::mutex> l(last_error_mu_);
    if (!sha_known_.load()) {
      sha_.assign((*loaded)->str, (*loaded)->len);
      sha_known_.store(true, std::memory_order_release);
    }
  }
  return absl::OkStatus();
}

RedisStore::Request* RedisStore::HandOn(Conn& c) {
  if (queue_.empty()) {
    c.busy = false;
    return nullptr;
  }
  Request* next = queue_.front();
  queue_.pop_front();
  next->conn = &c;
  next->state.store(Request::kLead, std::memory_order_release);
  return next;
}

void RedisStore::TakeBatch(Conn& c, Request* first) {
  if (first != nullptr) c.batch.push_back(first);
  while (!queue_.empty() && c.batch.size() < kMaxBatch) {
    c.batch.push_back(queue_.front());
    queue_.pop_front();
  }
  // What the sender needs of each request is moved out under the lock: a
  // caller that gives up may return (and its request go) at any time.
  c.items.clear();
  c.items.reserve(c.batch.size());
  for (Request* r : c.batch) {
    c.items.push_back({r->op, std::move(r->wire), std::move(r->full), r->tokens_at, r->cost,
                       r->deadline_us, r->nwin, r->longest_ms});
    clock_longest_ms_ = std::max(clock_longest_ms_, r->longest_ms);
  }
  c.clock_base_ms = clock_offset_ms_ - clock_step_ms_;
  c.step_at_us = clock_step_at_us_;
}

bool RedisStore::AppendGroup(Conn& c, const std::vector<size_t>& g, bool eval) const {
  // The script (by SHA, or whole), the group's first request's arguments,
  // for a merged group the others' tokens, and in the full form the numbers
  // and the head, formatted here in the protocol's form and handed to
  // hiredis whole (its own formatting costs a few thousand instructions a
  // call).
  const Conn::Item& first = c.items[g[0]];
  const bool full = !first.full.empty();
  const bool tokens = g.size() > 1 || full;
  const int argc = 2 + 3 + (tokens ? 1 : 0) + (full ? 2 : 0);
  std::string cmd;
  cmd.reserve(64 + first.wire.size() + (full ? first.full.size() : 0) + 16 * g.size() +
              (eval ? script_.size() : 0));
  cmd.resize(RespWriter::kBulkOverhead);
  RespWriter w{cmd.data()};
  w.Header(static_cast<size_t>(argc), '*');
  cmd.resize(static_cast<size_t>(w.p - cmd.data()));
  AppendBulk(&cmd, eval ? "EVAL" : "EVALSHA");
  AppendBulk(&cmd, eval ? absl::string_view(script_) : absl::string_view(sha_));
  if (c.step_at_us != 0 && c.sent_us - c.step_at_us < first.longest_ms * 1000) {
    // The server's clock stepped within the model's longest window: the
    // first argument carries a fifth double, the server's time as it would
    // be without the steps (the script keeps the key's time within a second
    // of it; its hot path reads four).
    const size_t header = first.tokens_at - 16 - 5;  // "$32\r\n"
    cmd.append(first.wire, 0, header);
    cmd.append("$40\r\n");
    cmd.append(first.wire, first.tokens_at - 16, 32);
    AppendDouble(&cmd, std::floor(static_cast<double>(c.sent_us) / 1000 + c.clock_base_ms));
    cmd.append("\r\n");
  } else {
    cmd.append(first.wire);
  }
  if (tokens) {
    std::string more;
    for (size_t k = 1; k < g.size(); ++k) {
      AppendDouble(&more, Exact(c.items[g[k]].cost.input));
      AppendDouble(&more, Exact(c.items[g[k]].cost.output));
    }
    AppendBulk(&cmd, more);
  }
  if (full) cmd.append(first.full);
  return redisAppendFormattedCommand(c.ctx, cmd.data(), cmd.size()) == REDIS_OK;
}

void RedisStore::Send(Conn& c, int64_t deadline_us) {
  // Groups: requests merged into one script call, in order of their first.
  c.groups.clear();
  for (size_t i = 0; i < c.items.size(); ++i) {
    bool merged = false;
    for (auto& g : c.groups) {
      if (c.items[g[0]].MergesWith(c.items[i])) {
        g.push_back(i);
        merged = true;
        break;
      }
    }
    if (!merged) c.groups.push_back({i});
  }
  c.sent = absl::OkStatus();
  if (c.ctx == nullptr) c.sent = Connect(c, deadline_us);
  if (!c.sent.ok()) return;
  // Every group's command in one write. The server's time in each reply
  // is later than this.
  c.sent_us = BootUs();
  c.eval = !sha_known_.load();
  bool appended = true;
  for (const auto& g : c.groups) appended = appended && AppendGroup(c, g, c.eval);
  if (!appended || !c.Flush(deadline_us)) c.sent = IoError(c, c.eval ? "EVAL" : "EVALSHA");
}

void RedisStore::Lead(Conn& c, Request* me) {
  const int64_t deadline_us = me->deadline_us;
  if (!c.in_flight) {
    {
      SpinLockHolder l(&mu_);
      TakeBatch(c, me);
    }
    Send(c, deadline_us);
  }
  c.in_flight = false;
  const std::vector<Conn::Item>& batch = c.items;
  const std::vector<std::vector<size_t>>& groups = c.groups;
  std::vector<absl::StatusOr<Reply>> results(batch.size());
  absl::Status status = c.sent;
  std::vector<ReplyPtr> replies;
  // Per group (at most kMaxBatch), whether it was sent as EVAL (messages).
  uint64_t evaled = c.eval ? ~uint64_t{0} : 0;
  if (status.ok()) {
    // Every reply, in order.
    const char* what = c.eval ? "EVAL" : "EVALSHA";
    for (size_t i = 0; status.ok() && i < groups.size(); ++i) {
      ReplyPtr r(c.NextReply(deadline_us), freeReplyObject);
      if (r == nullptr) status = IoError(c, what);
      replies.push_back(std::move(r));
    }
    // Not loaded on this server (flushed, or a restarted server): EVAL
    // loads and runs it.
    for (size_t i = 0; status.ok() && i < groups.size(); ++i) {
      redisReply* r = replies[i].get();
      if (r->type != REDIS_REPLY_ERROR ||
          !absl::StartsWith(absl::string_view(r->str, r->len), "NOSCRIPT")) {
        continue;
      }
      evaled |= uint64_t{1} << i;
      if (!AppendGroup(c, groups[i], /*eval=*/true) || !c.Flush(deadline_us)) {
        status = IoError(c, "EVAL");
      }
      if (status.ok()) {
        replies[i].reset(c.NextReply(deadline_us));
        if (replies[i] == nullptr) status = IoError(c, "EVAL");
      }
    }
  }
  // Every reply checked and turned into its requests' results. One the
  // script never gives fails the whole batch, as an outage does: the
  // connection's stream is not to be trusted, so it goes.
  int64_t server_ms = -1;  // the server's time in the first reply that has it
  const int64_t recv_us = BootUs();
  bool script_failed = false;
  bool drop = false;
  for (size_t i = 0; status.ok() && i < groups.size(); ++i) {
    const std::vector<size_t>& g = groups[i];
    const Conn::Item& first = batch[g[0]];
    redisReply* r = replies[i].get();
    if (r->type == REDIS_REPLY_ERROR) {
      const absl::string_view text(r->str, r->len);
      const std::string error = absl::StrCat(where_, ": ", text);
      // Not the script failing ("ERR ...") but the server refusing
      // (READONLY after a failover, LOADING, MASTERDOWN, OOM, ...): a new
      // connection next time.
      if (!absl::StartsWith(text, "ERR ")) drop = true;
      NoteFailure(error);
      script_failed = true;
      for (size_t k : g) results[k] = BackendError(error);
      continue;
    }
    int64_t t = -1;
    const std::string bad =
        ParseScriptReply(*r, first.op, first.full.empty(), first.nwin, g, &results, &t);
    if (!bad.empty()) {
      status = BackendError(absl::StrCat(where_, ": ", (evaled >> i & 1) != 0 ? "EVAL" : "EVALSHA",
                                         " (", OpName(first.op), "): ", bad,
                                         "; the connection is dropped"));
      c.Drop();
    }
    if (server_ms < 0) server_ms = t;
  }
  if (!status.ok()) {
    if (status.code() == absl::StatusCode::kUnavailable) {
      NoteFailure(std::string(status.message()));
    }
    for (auto& r : results) r = status;
  } else {
    if (drop) c.Drop();
    if (!script_failed) NoteSuccess();
  }
  // Hand out the results. With requests queued meanwhile and the
  // connection up, they are the next batch: sent from here at once, before
  // anyone is woken, so that Redis works on it while the thread it is
  // handed to wakes up (a wake-up costs tens of microseconds on a busy
  // machine; the connection would stand idle for it). Else the connection
  // goes to the first one queued (it connects) or comes free.
  std::vector<Request*> wake;
  Request* next = nullptr;
  bool pipelined = false;
  int64_t latest = 0;  // the next batch's latest deadline
  {
    SpinLockHolder l(&mu_);
    if (status.ok() && server_ms > 0) UpdateClock(server_ms, c.sent_us, recv_us);
    for (size_t i = 0; i < batch.size(); ++i) {
      Request* r = c.batch[i];
      if (r == nullptr) continue;  // gave up waiting
      r->result = std::move(results[i]);
      r->failed = !status.ok();
      r->state.store(Request::kDone, std::memory_order_release);
      if (r != me) wake.push_back(r);
    }
    c.batch.clear();
    if (c.ctx != nullptr && !queue_.empty()) {
      TakeBatch(c, nullptr);
      for (const Conn::Item& it : c.items) latest = std::max(latest, it.deadline_us);
      pipelined = true;
    } else {
      next = HandOn(c);
    }
  }
  if (pipelined) {
    // Written within the batch's time and this call's own (a caller never
    // waits longer than its timeout).
    Send(c, std::min(latest, deadline_us));
    {
      SpinLockHolder l(&mu_);
      // The replies are read by the request of the batch with the latest
      // deadline still waiting (the others may give up before it must).
      for (Request* r : c.batch) {
        if (r != nullptr && (next == nullptr || r->deadline_us >= next->deadline_us)) next = r;
      }
      if (next != nullptr) {
        c.in_flight = true;
        next->conn = &c;
        next->state.store(Request::kLead, std::memory_order_release);
      }
    }
    if (next == nullptr) {
      // Every request of the batch gave up while it was sent: nobody reads
      // its replies, so the connection goes (the next leader connects).
      c.Drop();
      SpinLockHolder l(&mu_);
      c.batch.clear();
      next = HandOn(c);
    }
  }
  for (Request* r : wake) FutexWake(&r->state);
  if (next != nullptr) FutexWake(&next->state);
}

void RedisStore::Prepare(Request& me, int64_t start_us, bool full_form, Op op,
                         absl::string_view model, const RemoteSpec& spec, const Cost& cost,
                         int64_t time_arg, const Cost& granted,
                         const Observation& observation) const {
  me.op = op;
  me.cost = cost;
  me.deadline_us = start_us + static_cast<int64_t>(url_.timeout_ms) * 1000;
  me.nwin = spec.n;
  me.longest_ms = spec.longest_ms;
  const size_t key_size = url_.prefix.size() + model.size() + 3;  // "{prefix:model}"
  // The short form: 1 (the number of keys), the key, four doubles.
  std::string& wire = me.wire;
  wire.resize(3 * RespWriter::kBulkOverhead + 1 + key_size + 32);
  RespWriter w{wire.data()};
  w.Bulk("1");
  w.Header(key_size);
  w.Raw("{", 1);
  w.Raw(url_.prefix.data(), url_.prefix.size());
  w.Raw(":", 1);
  w.Raw(model.data(), model.size());
  w.Raw("}\r\n", 3);
  w.Header(32);
  w.Double(spec.digest);
  // 16 more: the full path (the tests compare the two).
  w.Double(static_cast<double>(static_cast<int>(op) + (url_.full_path_only ? 16 : 0)));
  me.tokens_at = static_cast<size_t>(w.p - wire.data());
  for (uint64_t v : {cost.input, cost.output}) w.Double(Exact(v));
  w.Raw("\r\n", 2);
  wire.resize(static_cast<size_t>(w.p - wire.data()));
  // The full form: the numbers (nine, then the windows' layout) and the head.
  std::string& full = me.full;
  if (!full_form && !url_.full_path_only &&
      (op == Op::kAcquire || op == Op::kCheck || op == Op::kRecord)) {
    full.clear();
    return;
  }
  const size_t numbers_size = 9 * 8 + spec.layout.size();
  full.resize(2 * RespWriter::kBulkOverhead + numbers_size + spec.head.size());
  RespWriter f{full.data()};
  f.Header(numbers_size);
  f.Double(url_.update_limits ? 1 : 0);
  f.Double(static_cast<double>(static_cast<int>(observation.unit)));
  constexpr int64_t kMaxTime = int64_t{1} << 53;
  f.Double(static_cast<double>(std::max(std::min(time_arg, kMaxTime), -kMaxTime)));
  for (uint64_t v : {granted.input, granted.output, observation.remaining, observation.limit}) {
    f.Double(Exact(v));
  }
  f.Double(static_cast<double>(spec.ttl_ms));
  f.Double(static_cast<double>(spec.n));
  char* const layout = f.p;
  f.Raw(spec.layout.data(), spec.layout.size());
  for (int i = 0; i < spec.n; ++i) {
    const RemoteSpec::Window& win = spec.w[i];
    if (win.calendar_tz[0] == '\0') continue;
    // The client's next local midnight: the script's start for a new day.
    RespWriter day_end{layout + static_cast<size_t>(i) * 40 + 32};
    day_end.Double(static_cast<double>(NextLocalMidnightMs(win.calendar_tz, UnixMs())));
  }
  f.Raw("\r\n", 2);
  f.Bulk(spec.head);
  full.resize(static_cast<size_t>(f.p - full.data()));
}

std::vector<absl::StatusOr<RedisStore::Reply>> RedisStore::RunMergedForTest(
    Op op, absl::string_view model, const RemoteSpec& spec, const std::vector<Cost>& costs) {
  std::vector<absl::StatusOr<Reply>> out;
  if (costs.empty()) return out;
  const int64_t start = NowUs();
  for (bool full = false;; full = true) {
    std::unique_ptr<Request[]> reqs(new Request[costs.size()]);
    for (size_t k = 0; k < costs.size(); ++k) {
      Prepare(reqs[k], start, full, op, model, spec, costs[k]);
    }
    Conn* conn = nullptr;
    {
      SpinLockHolder l(&mu_);
      for (size_t k = 0; queue_.empty() && k < pool_.size() && conn == nullptr; ++k) {
        if (!pool_[k]->busy) conn = pool_[k].get();
      }
      if (conn != nullptr) {
        conn->busy = true;
        // The leader takes the queue along and merges it with its own.
        for (size_t k = 1; k < costs.size(); ++k) queue_.push_back(&reqs[k]);
      }
    }
    if (conn == nullptr) {
      out.assign(costs.size(), absl::FailedPreconditionError("RunMergedForTest: the store is busy"));
      return out;
    }
    Lead(*conn, &reqs[0]);
    // Asked for the full form: the merged call again, in it.
    if (!full && reqs[0].result.ok() && reqs[0].result->need_full) continue;
    for (size_t k = 0; k < costs.size(); ++k) out.push_back(std::move(reqs[k].result));
    return out;
  }
}

absl::StatusOr<RedisStore::Reply> RedisStore::Run(Op op, absl::string_view model,
                                                  const RemoteSpec& spec, const Cost& cost,
                                                  int64_t time_arg, const Cost& granted,
                                                  const Observation& observation) {
  const int64_t start = NowUs();
  const int64_t next_attempt = next_attempt_us_.load(std::memory_order_relaxed);
  if (start < next_attempt) {
    std::lock_guard<std::mutex> l(last_error_mu_);
    return BackendError(absl::StrCat(last_error_, " (retrying in ",
                                     (next_attempt - start) / 1000 + 1, " ms)"));
  }
  for (bool full = false;; full = true) {
    Request me;
    Prepare(me, start, full, op, model, spec, cost, time_arg, granted, observation);
    absl::StatusOr<Reply> r = RunPrepared(me);
    // Asked for the full form (once: a call in it is never asked again).
    if (full || !r.ok() || !r->need_full) return r;
  }
}

absl::StatusOr<RedisStore::Reply> RedisStore::RunPrepared(Request& me) {
  // Callers inside Run, this one included.
  struct Caller {
    std::atomic<int>& n;
    explicit Caller(std::atomic<int>& count) : n(count) { n.fetch_add(1, std::memory_order_relaxed); }
    ~Caller() { n.fetch_sub(1, std::memory_order_relaxed); }
  } caller(callers_);
  // A free connection of the pool, starting from this thread's own; with
  // none free, wait in the queue: the next leader sends the queued requests
  // together, merging decisions on one model into one script call. With no
  // more callers at once than connections, each gets one (nothing could
  // merge; no call waits for another); with more, only two connections stay
  // busy and the others' decisions merge, which costs Redis and the CPUs
  // less per decision than more calls in flight (README, Performance).
  static thread_local unsigned home = static_cast<unsigned>(
      std::hash<std::thread::id>{}(std::this_thread::get_id()));
  // Failing by this call's own deadline while waiting for a connection or a
  // fork: an error of this call (counted), not of Redis (no backoff).
  auto timed_out = [&] {
    const std::string message =
        absl::StrCat(where_, ": timed out after ", url_.timeout_ms, " ms waiting for a connection");
    NoteError(message);
    return BackendError(message);
  };
  Conn* conn = nullptr;
  for (bool queued = false; conn == nullptr && !queued;) {
    {
      SpinLockHolder l(&mu_);
      if (!forking_) {
        const size_t size = pool_.size();
        size_t busy = 0;
        for (const auto& c : pool_) busy += c->busy;
        const bool crowded = static_cast<size_t>(callers_.load(std::memory_order_relaxed)) > size;
        if (busy < (crowded ? std::min(size, kBusyWhenQueued) : size)) {
          for (size_t k = 0; k < size && conn == nullptr; ++k) {
            Conn* c = pool_[(home + k) % size].get();
            if (!c->busy) {
              c->busy = true;
              conn = c;
            }
          }
        }
        if (conn == nullptr) {
          queue_.push_back(&me);
          queued = true;
        }
      }
    }
    if (conn == nullptr && !queued) {  // a fork is being prepared
      if (NowUs() >= me.deadline_us) return timed_out();
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  bool put_back = false;
  while (conn == nullptr) {
    while (me.state.load(std::memory_order_acquire) == Request::kWaiting) {
      if (FutexWaitUntil(&me.state, Request::kWaiting, me.deadline_us)) continue;
      // The deadline passed. Still queued: leave; on the wire: the leader
      // drops the reply. Else it has just been answered.
      bool answered = false;
      {
        SpinLockHolder l(&mu_);
        answered = me.state.load(std::memory_order_relaxed) != Request::kWaiting;
        if (!answered) {
          if (auto it = std::find(queue_.begin(), queue_.end(), &me); it != queue_.end()) {
            queue_.erase(it);
          } else {
            for (auto& c : pool_) {
              std::replace(c->batch.begin(), c->batch.end(), &me, static_cast<Request*>(nullptr));
            }
          }
        }
      }
      if (answered) break;
      return timed_out();
    }
    if (me.state.load(std::memory_order_acquire) == Request::kDone) {
      if (!me.result.ok() && me.failed) errors_.fetch_add(1);  // the leader noted it
      return std::move(me.result);
    }
    // kLead: the connection is handed to this call. Past its deadline it
    // passes the connection to the next queued call. With less than half
    // its time left it would fail the whole batch should Redis be a little
    // slow: if the newest queued call has at least half of its time, that
    // one leads instead and this one waits at the head of the queue to go
    // with it (once: a call put back never passes the lead again).
    if (me.conn->in_flight) {  // its batch is on the wire: read the replies
      conn = me.conn;
      continue;
    }
    const int64_t half = static_cast<int64_t>(url_.timeout_ms) * 500;
    const int64_t now = NowUs();
    const int64_t left = me.deadline_us - now;
    Request* next = nullptr;
    {
      SpinLockHolder l(&mu_);
      if (left <= 0) {
        next = HandOn(*me.conn);
        me.conn = nullptr;
      } else if (left < half && !put_back && !queue_.empty() &&
                 queue_.back()->deadline_us - now >= half) {
        next = queue_.back();
        queue_.pop_back();
        queue_.push_front(&me);
        put_back = true;
        me.state.store(Request::kWaiting, std::memory_order_relaxed);
        next->conn = me.conn;
        next->state.store(Request::kLead, std::memory_order_release);
        me.conn = nullptr;
      }
    }
    if (next != nullptr) FutexWake(&next->state);
    if (left <= 0) return timed_out();
    if (next != nullptr) continue;
    conn = me.conn;
  }
  Lead(*conn, &me);
  return std::move(me.result);
}

}  // namespace ratetrack
