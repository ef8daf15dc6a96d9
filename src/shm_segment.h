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
  uint32_t mode = 0600;   // permission bits at creation
};

struct ShmModel;  // a slot in the segment

class ShmSegment {
 public:
  static constexpr uint64_t kMagic = 0x4b43525445544152ULL;  // "RATETRCK"
  static constexpr uint32_t kLayoutVersion = 2;
  static constexpr size_t kMaxName = 191;  // bytes of a model name

  // Opens the segment NAME, creating it with `options` if it does not exist.
  static absl::StatusOr<std::unique_ptr<ShmSegment>> Open(absl::string_view name,
                                                          const ShmOptions& options);
  ~ShmSegment();
  ShmSegment(const ShmSegment&) = delete;
  ShmSegment& operator=(const ShmSegment&) = delete;

  const std::string& name() const { return name_; }
  uint64_t secret() const;
  uint32_t capacity() const;

  // The slot of `model`, created with `limits` (guard_ms: the clock's
  // resolution) if the segment has none yet. *created says which.
  absl::StatusOr<ShmModel*> FindOrCreate(absl::string_view model, uint64_t hash,
                                         const ModelLimits& limits, int64_t guard_ms,
                                         bool* created);
  ShmModel* Find(absl::string_view model, uint64_t hash) const;

  // Every model in the segment, in creation order.
  void ForEach(const std::function<void(ShmModel*)>& fn) const;

  // Locks a slot (robust: repairs the windows if the last owner died).
  static absl::Status Lock(ShmModel* m);
  static void Unlock(ShmModel* m);
  static WindowSet& Windows(ShmModel* m);
  // The slot's mutex, for callers that lock it themselves (the hot path);
  // a pthread_mutex_lock result other than 0 goes to Locked().
  static pthread_mutex_t* Mutex(ShmModel* m);
  // After pthread_mutex_lock(Mutex(m)) returned `rc` != 0: EOWNERDEAD (the
  // last owner died holding it) repairs the windows and returns OK, locked;
  // anything else is an error, not locked.
  static absl::Status Locked(ShmModel* m, int rc);
  static absl::string_view Name(const ShmModel* m);

  // Validates NAME: 1 to 64 of [A-Za-z0-9_.-], not starting with '.'.
  static absl::Status CheckName(absl::string_view name);
  static std::string PathOf(absl::string_view name);
  // Unlinks the segment (processes that have it mapped keep their mapping).
  static absl::Status Remove(absl::string_view name);
  // The segments in /dev/shm, as a JSON array.
  static std::string ListJson();

 private:
  struct Header;
  ShmSegment(std::string name, void* base, size_t size);
  Header* header() const { return static_cast<Header*>(base_); }
  ShmModel* slot(uint32_t i) const;

  const std::string name_;
  void* const base_;
  const size_t size_;
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
