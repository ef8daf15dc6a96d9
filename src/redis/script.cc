#include "redis/script.h"

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "ratetrack.h"
#include "status.h"

namespace ratetrack {

namespace {

// The server's time as the script returns it: Unix ms, positive, exact in
// a double.
bool ServerTime(long long v) { return v > 0 && v < (int64_t{1} << 53); }

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

const char* OpName(ScriptOp op) {
  switch (op) {
    case ScriptOp::kAcquire: return "acquire";
    case ScriptOp::kCheck: return "check";
    case ScriptOp::kRecord: return "record";
    case ScriptOp::kSettle: return "settle";
    case ScriptOp::kStats: return "stats";
    case ScriptOp::kReset: return "reset";
    case ScriptOp::kBlock: return "block";
    case ScriptOp::kObserve: return "observe";
  }
  return "?";
}

std::string ParseScriptReply(const redisReply& r, ScriptOp op, bool short_form, int nwin,
                             const std::vector<size_t>& g,
                             std::vector<absl::StatusOr<ScriptReply>>* results,
                             int64_t* server_ms) {
  using Op = ScriptOp;
  using Reply = ScriptReply;
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

// A little-endian IEEE double, as the script's struct.unpack('<d') reads it
// (integers up to 2^53 exactly).
void AppendDouble(std::string* out, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  char bytes[8];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(bits >> (8 * i));
  out->append(bytes, sizeof bytes);
}

// Appends `a` as one bulk string of the protocol: "$<len>\r\n<bytes>\r\n".
void AppendBulk(std::string* out, absl::string_view a) {
  const size_t at = out->size();
  out->resize(at + a.size() + RespWriter::kBulkOverhead);
  RespWriter w{&(*out)[at]};
  w.Bulk(a);
  out->resize(static_cast<size_t>(w.p - out->data()));
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

ErrorReplyKind ClassifyErrorReply(absl::string_view text, absl::string_view during) {
  auto starts = [&](absl::string_view prefix) { return absl::StartsWith(text, prefix); };
  auto has = [&](absl::string_view part) { return absl::StrContains(text, part); };
  if (starts("WRONGPASS") || (during == "AUTH" && starts("ERR") &&
                              (has("password") || has("AUTH") || has("credentials")))) {
    return {true, "the server refuses these credentials: check the URL's user and password"};
  }
  if (starts("NOAUTH")) {
    return {true, "the server wants a password: give it in the URL (user:password@ or ?password=)"};
  }
  if (starts("NOPERM")) {
    return {true, "the server's ACL does not let this user run what the tracker needs "
                  "(EVALSHA, EVAL, SCRIPT LOAD, SET, GET on the prefix's keys)"};
  }
  if (starts("READONLY")) {
    return {true, "the server is a read-only replica: point the URL at the master (or follow "
                  "failovers with redis+sentinel://)"};
  }
  if (starts("MOVED") || starts("ASK ")) {
    return {true, "the server is a Redis Cluster node, and this URL does not route a cluster's "
                  "slots (each model's key lives on one node): use "
                  "redis+cluster://host:port[,host:port...]"};
  }
  if (starts("ERR unknown command") || starts("ERR unknown subcommand")) {
    return {true, "the server does not know the command (a Redis Sentinel's port, or not a "
                  "Redis server): point the URL at the master's port"};
  }
  if (during == "SELECT" && starts("ERR")) {
    return {true, "the server refuses the database (out of range, or a cluster's node: "
                  "only database 0)"};
  }
  return {};
}

bool IsMisconfiguration(const absl::Status& status) {
  return status.code() == absl::StatusCode::kFailedPrecondition;
}

}  // namespace ratetrack
