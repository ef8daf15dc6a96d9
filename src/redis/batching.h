// The Redis client's batching: a store's connections, the queue of calls
// waiting for one, and how the queued decisions of one kind on one model
// merge into one script call (RedisStore::Lead, src/redis/batching.cc).
#ifndef RATETRACK_SRC_REDIS_BATCHING_H_
#define RATETRACK_SRC_REDIS_BATCHING_H_

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "redis/store.h"
#include "redis/transport.h"

namespace ratetrack {

// With more callers at once than connections, this many connections stay
// busy and the rest queue: two keep a single-threaded Redis busy (one batch
// is decided while the other's replies travel back and its callers return),
// and the queued decisions merge into their next script calls.
constexpr size_t kBusyWhenQueued = 2;
// The most requests one leader sends at once.
constexpr size_t kMaxBatch = 64;

// A connection of the pool (its transport is the leader's alone; a forked
// child drops its copy, UnlockForFork) and the batch on it.
struct RedisStore::Conn : Transport {
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
    bool asking;         // sent after ASKING (a cluster's ASK), never merged
    bool MergesWith(const Item& o) const {
      // Decisions of one kind on one model with the same limits: one script
      // call decides them all, in order. Their arguments differ only in the
      // short form's last two doubles, the tokens.
      if (!(op == Op::kAcquire || op == Op::kCheck || op == Op::kRecord) || op != o.op ||
          asking || o.asking ||
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
  // The batch's clock: when it was written, and, taken with it under mu_,
  // this process's estimate of the server's time without the steps seen
  // (monotonic ms + clock_base_ms) and when the latest step was seen (0:
  // none).
  int64_t sent_us = 0;
  int64_t wait_ms = 0;  // ?replicas=N: the batch's WAIT timeout
  double clock_base_ms = 0;
  int64_t step_at_us = 0;
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
  bool asking = false;
  std::atomic<uint32_t> state{kWaiting};
  Conn* conn = nullptr;  // kLead: the connection handed over
  absl::StatusOr<Reply> result;  // kDone: the answer
  bool failed = false;  // kDone with a failure of the connection (count it)
};


}  // namespace ratetrack

#endif  // RATETRACK_SRC_REDIS_BATCHING_H_
