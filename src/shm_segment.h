// ShmSegment: one budget for every process on a host, in a shared-memory
// segment (/dev/shm/ratetrack.NAME) that every process maps.
//
// Layout: a header (magic, layout version, sizes, the ticket secret, a
// robust creation mutex) and a fixed array of model slots, each a robust
// process-shared mutex and a WindowSet. A segment is built under a temporary
// name and published with link(2), so a segment that can be opened is always
// fully initialised, and processes starting at once agree on one winner.
// A process killed in the middle of an update leaves its mutex to the next
// locker with EOWNERDEAD; the slot's windows are repaired before use.
//
// Hostile neighbours. Any process that can write the file (a bug, another
// program of the same user, a bad disk) may have put anything in it, at any
// time. So:
//   - a segment is used only when it is a regular file owned by this
//     process's effective uid (or, with a group shm_mode, by its group), with
//     no permission bits beyond the configured shm_mode: a file planted by
//     another user, or opened up to others, is refused (RT_E_BACKEND);
//   - every field is read once into a local, checked, and the local used;
//   - a header that fails a check refuses the whole segment (RT_E_BACKEND,
//     saying which field);
//   - a slot is checked on its own. Its identity (state, name length, name,
//     hash) must agree with itself: a slot that does not is skipped by
//     listings and stats, and restored by the next process that looks its
//     model up, from what still agrees (the name, or hash and length). Its lock
//     must be a robust process-shared mutex, held by nobody or by a live
//     thread that maps the segment, and for no more than a few seconds;
//     its limits must be readable (window count, units, lengths, zones).
//     A slot that fails one of these is refused: that model's calls fail
//     with RT_E_BACKEND and a message naming the slot and the model, until
//     the segment is removed; the other models are unaffected;
//   - a slot's window state is repaired in place whenever it is locked
//     (WindowSet::Sanitize): values out of range are reset, never used.
#ifndef RATETRACK_SRC_SHM_SEGMENT_H_
#define RATETRACK_SRC_SHM_SEGMENT_H_

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "window_set.h"

namespace ratetrack {

struct ShmOptions {
  uint32_t models = 512;  // slots, fixed at creation
  uint32_t mode = 0600;   // permission bits at creation; the most a segment may have
};

struct ShmModel;  // a slot in the segment

class ShmSegment {
 public:
  static constexpr uint64_t kMagic = 0x4b43525445544152ULL;  // "RATETRCK"
  static constexpr uint32_t kLayoutVersion = 3;  // 3: WindowSet remembers a refusal
  static constexpr size_t kMaxName = 191;  // bytes of a model name
  static constexpr uint32_t kMaxModels = 1u << 20;
  // A slot's lock held longer than this is reported, not waited for.
  static constexpr int kLockWaitMs = 10000;

  // The segment's first bytes (exposed for tests that write into it).
  struct Header {
    uint64_t magic;
    uint32_t layout_version;
    uint32_t header_size;
    uint32_t slot_size;
    uint32_t capacity;
    uint64_t total_size;
    uint64_t secret;
    int64_t created_unix_ms;
    int32_t creator_pid;
    std::atomic<uint32_t> count;  // slots published so far
    pthread_mutex_t create_mu;    // robust: guards slot creation
  };

  // Opens the segment NAME, creating it with `options` if it does not exist.
  static absl::StatusOr<std::unique_ptr<ShmSegment>> Open(absl::string_view name,
                                                          const ShmOptions& options);
  ~ShmSegment();
  ShmSegment(const ShmSegment&) = delete;
  ShmSegment& operator=(const ShmSegment&) = delete;

  const std::string& name() const { return name_; }
  uint64_t secret() const { return secret_; }
  uint32_t capacity() const { return capacity_; }

  // The slot of `model`, created with `limits` (guard_ms: the clock's
  // resolution) if the segment has none yet. *created says which. A slot
  // found is checked (lock, limits, windows repaired) before it is returned;
  // one that fails is RT_E_BACKEND naming it.
  absl::StatusOr<ShmModel*> FindOrCreate(absl::string_view model, uint64_t hash,
                                         const ModelLimits& limits, int64_t guard_ms,
                                         bool* created);
  // The slot of `model` (identity only; not checked further).
  ShmModel* Find(absl::string_view model, uint64_t hash) const;

  // Every model in the segment whose slot's identity holds, in creation
  // order; the second form also passes the name, as checked (a copy).
  void ForEach(const std::function<void(ShmModel*)>& fn) const;
  void ForEachNamed(const std::function<void(ShmModel*, absl::string_view)>& fn) const;

  // Locks a slot and checks its windows (repairing what is out of range;
  // fully when the last owner died holding the lock). An error, not locked:
  // a corrupt lock, one held for more than kLockWaitMs, unreadable limits.
  static absl::Status Lock(ShmModel* m);
  static void Unlock(ShmModel* m);
  static WindowSet& Windows(ShmModel* m);
  // The slot's mutex, for callers that lock it themselves (the hot path,
  // with pthread_mutex_trylock); a result other than 0 goes to Locked().
  static pthread_mutex_t* Mutex(ShmModel* m);
  // After pthread_mutex_trylock(Mutex(m)) returned `rc` != 0: EBUSY waits
  // (bounded, as Lock), EOWNERDEAD (the last owner died holding it) repairs
  // the windows; then OK, locked. Anything else is an error, not locked.
  static absl::Status Locked(ShmModel* m, int rc);
  // The slot's windows' full pass (WindowSet::DecideSlow), with the slot
  // locked, after the fast path could not decide: the set is checked first
  // (WindowSet::Sound), since another process may have written it since this
  // one last did, and made sound (Sanitize) or refused (RT_E_BACKEND: its
  // limits cannot be read).
  static Verdict DecideSlow(WindowSet& ws, int64_t now, int64_t wall, const Cost& cost,
                            bool book);
  // The slot's name (its length clamped to kMaxName; not otherwise checked).
  static absl::string_view Name(const ShmModel* m);
  // Why the last call on `model` failed with RT_E_BACKEND in this thread,
  // or "" if not known.
  static std::string LastProblem(absl::string_view model);

  // Validates NAME: 1 to 64 of [A-Za-z0-9_.-], not starting with '.'.
  static absl::Status CheckName(absl::string_view name);
  static std::string PathOf(absl::string_view name);
  // Unlinks the segment (processes that have it mapped keep their mapping).
  static absl::Status Remove(absl::string_view name);
  // The segments in /dev/shm, as a JSON array. Only regular files with a
  // valid NAME are listed (never opening anything else, so a FIFO cannot
  // block it); other entries are skipped.
  static std::string ListJson();

 private:
  ShmSegment(std::string name, void* base, size_t size, uint32_t capacity, uint64_t secret);
  Header* header() const { return static_cast<Header*>(base_); }
  ShmModel* slot(uint32_t i) const;
  // Slots published so far, never more than capacity_.
  uint32_t published() const;
  // Under the creation lock, when Find failed: a published slot of `model`
  // whose identity was overwritten in part (its state, or one of name
  // length, hash and name) is recognised by what still agrees (the name as
  // stored, or both hash and length) and restored. Null if none.
  ShmModel* RestoreIdentity(absl::string_view model, uint64_t hash) const;
  // Locks and checks a slot found for `model` (index `i`), then unlocks it.
  absl::Status Attach(ShmModel* m, uint32_t i, absl::string_view model) const;
  std::string SlotMessage(uint32_t i, absl::string_view model, absl::string_view what) const;

  const std::string name_;
  void* const base_;
  const size_t size_;
  const uint32_t capacity_;  // read once, checked, at Open
  const uint64_t secret_;
};

struct alignas(64) ShmModel {
  std::atomic<uint32_t> state;
  uint32_t name_len;
  uint64_t hash;
  char name[ShmSegment::kMaxName + 1];
  pthread_mutex_t mu;
  WindowSet windows;
};

// Holds a slot's lock; ok() is false when the lock could not be had.
class ShmModelLock {
 public:
  explicit ShmModelLock(ShmModel* m) : m_(m), status_(ShmSegment::Lock(m)) {}
  ~ShmModelLock() {
    if (status_.ok()) ShmSegment::Unlock(m_);
  }
  const absl::Status& status() const { return status_; }

 private:
  ShmModel* m_;
  absl::Status status_;
};

}  // namespace ratetrack

#endif  // RATETRACK_SRC_SHM_SEGMENT_H_
