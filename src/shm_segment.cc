#include "shm_segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "name_key.h"
#include "nlohmann/json.hpp"
#include "status.h"

namespace ratetrack {

namespace {

constexpr char kDir[] = "/dev/shm";
constexpr char kPrefix[] = "ratetrack.";

enum SlotState : uint32_t { kFree = 0, kReady = 2 };

// A slot's lock is held for microseconds. A locker still waiting after this
// long looks at the holder: one that cannot be (no such thread, a thread
// that does not map the segment, or none) means the lock word is corrupt.
constexpr int kFirstWaitMs = 200;

// One read of a field another process may be writing: the compiler may not
// read it again later (no double fetch), and a torn value is just a value.
template <typename T>
T Once(const T& field) {
  return __atomic_load_n(&field, __ATOMIC_RELAXED);
}

std::string Errno(const char* what, const std::string& path) {
  return absl::StrCat(what, " '", path, "': ", std::strerror(errno));
}

// A name read from a segment, for a message: printable ASCII as it is,
// other bytes as \xHH.
std::string Shown(absl::string_view name) {
  std::string out;
  for (char c : name) {
    const unsigned char b = static_cast<unsigned char>(c);
    if (b >= 0x20 && b < 0x7f && b != '\\') {
      out += c;
    } else {
      absl::StrAppendFormat(&out, "\\x%02x", b);
    }
  }
  return out;
}

absl::Status InitRobustMutex(pthread_mutex_t* mu) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  int rc = pthread_mutex_init(mu, &attr);
  pthread_mutexattr_destroy(&attr);
  if (rc != 0) return BackendError(absl::StrCat("pthread_mutex_init: ", std::strerror(rc)));
  return absl::OkStatus();
}

constexpr size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

// ---------------------------------------------------------------- locks

#if defined(__GLIBC__)
// What pthread_mutex_init makes of a robust process-shared mutex: its kind
// never changes afterwards, so any other value is a mutex someone overwrote
// (locking it would be undefined: it may block for ever, or not lock).
int RobustKind() {
  static const int kind = [] {
    pthread_mutex_t mu;
    InitRobustMutex(&mu).IgnoreError();
    const int k = mu.__data.__kind;
    pthread_mutex_destroy(&mu);
    return k;
  }();
  return kind;
}
int KindOf(const pthread_mutex_t* mu) { return Once(mu->__data.__kind); }
int LockWord(const pthread_mutex_t* mu) { return Once(mu->__data.__lock); }
#endif

bool KindOk(const pthread_mutex_t* mu) {
#if defined(__GLIBC__)
  return KindOf(mu) == RobustKind();
#else
  (void)mu;
  return true;  // no portable way to look
#endif
}

int TimedLock(pthread_mutex_t* mu, int ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += static_cast<long>(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec += 1;
    ts.tv_nsec -= 1000000000L;
  }
  return pthread_mutex_timedlock(mu, &ts);
}

// The file mapped at `addr` in /proc/PID/maps (PID 0: this process), or,
// with addr 0, whether the process maps the file `*id`. 1: yes (*id set),
// 0: no, -1: cannot tell.
struct FileId {
  unsigned major = 0, minor = 0;
  unsigned long inode = 0;
};
int ScanMaps(pid_t pid, uintptr_t addr, FileId* id) {
  const std::string path = pid == 0 ? "/proc/self/maps" : absl::StrCat("/proc/", pid, "/maps");
  FILE* f = std::fopen(path.c_str(), "re");
  if (f == nullptr) return -1;
  char* line = nullptr;
  size_t cap = 0;
  int found = 0;
  while (getline(&line, &cap, f) > 0) {
    unsigned long lo, hi, offset, inode;
    unsigned major, minor;
    char perms[8];
    if (std::sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &lo, &hi, perms, &offset, &major, &minor,
                    &inode) != 7) {
      continue;
    }
    if (addr != 0 ? (addr >= lo && addr < hi)
                  : (inode == id->inode && major == id->major && minor == id->minor)) {
      if (addr != 0) *id = FileId{major, minor, inode};
      found = 1;
      break;
    }
  }
  std::free(line);
  std::fclose(f);
  return found;
}

// Why thread `tid` cannot be the holder of the lock at `mu` (empty: it may
// be, or this cannot be told). A holder is a live thread of a process that
// maps the segment; a thread that died holding it is the kernel's to
// report (EOWNERDEAD), before its id is free.
std::string WhyNotHolder(pid_t tid, const pthread_mutex_t* mu) {
  if (tid == static_cast<pid_t>(syscall(SYS_gettid))) {
    return "is this thread, which does not hold it";
  }
  if (kill(tid, 0) != 0 && errno == ESRCH) return "does not exist";
  FileId id;
  if (ScanMaps(0, reinterpret_cast<uintptr_t>(mu), &id) != 1) return "";
  if (ScanMaps(tid, 0, &id) == 0) return "does not map this segment";
  return "";
}

// Lock words seen held by a thread that cannot hold them, or held past
// kLockWaitMs, in this process: met again, they are refused without a
// wait (the first kind while the holder still cannot be one, the second
// for kLockWaitMs). Best effort, without a lock: a race only costs a wait.
struct CorruptWord {
  std::atomic<const void*> at{nullptr};
  std::atomic<int> word{0};
  std::atomic<int64_t> until_ms{0};  // 0: held by a thread that cannot hold it
};
CorruptWord g_corrupt[16];
std::atomic<unsigned> g_corrupt_next{0};

int64_t NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void RememberWord(const pthread_mutex_t* mu, int word, int64_t until_ms) {
  CorruptWord& c = g_corrupt[g_corrupt_next.fetch_add(1) % 16];
  c.at.store(nullptr, std::memory_order_relaxed);
  c.word.store(word, std::memory_order_relaxed);
  c.until_ms.store(until_ms, std::memory_order_relaxed);
  c.at.store(mu, std::memory_order_release);
}

#if defined(__GLIBC__)
// Why the lock word `word` of `mu` is not a live holder's (empty: it may
// be, or this cannot be told).
std::string WhyNotHeld(const pthread_mutex_t* mu, int word) {
  if (word == 0 || (word & FUTEX_OWNER_DIED) != 0) return "";
  const pid_t tid = word & FUTEX_TID_MASK;
  const std::string why = tid == 0 ? std::string("is none") : WhyNotHolder(tid, mu);
  if (why.empty()) return "";
  return absl::StrCat("its lock is held by thread ", tid, ", which ", why,
                      ": the lock word is corrupt");
}

// A word met before: the reason to refuse it now, or "" (then wait).
std::string KnownWord(const pthread_mutex_t* mu, int word) {
  for (CorruptWord& c : g_corrupt) {
    if (c.at.load(std::memory_order_acquire) != mu ||
        c.word.load(std::memory_order_relaxed) != word) {
      continue;
    }
    const int64_t until = c.until_ms.load(std::memory_order_relaxed);
    std::string why =
        until != 0 ? (NowMs() < until ? absl::StrCat("its lock has been held for more than ",
                                                     ShmSegment::kLockWaitMs / 1000, " s")
                                      : std::string())
                   : WhyNotHeld(mu, word);
    if (why.empty()) c.at.store(nullptr, std::memory_order_relaxed);  // forget it
    return why;
  }
  return "";
}
#endif

// After a trylock said EBUSY: waits for the lock, bounded. 0 or EOWNERDEAD:
// locked. Otherwise not locked, and *why says why.
int WaitBusy(pthread_mutex_t* mu, std::string* why) {
#if defined(__GLIBC__)
  *why = KnownWord(mu, LockWord(mu));
  if (!why->empty()) return ENOTRECOVERABLE;
#endif
  int rc = TimedLock(mu, kFirstWaitMs);
  if (rc != ETIMEDOUT) return rc;
  long holder = -1;
#if defined(__GLIBC__)
  const int word = LockWord(mu);
  holder = word & FUTEX_TID_MASK;
  *why = WhyNotHeld(mu, word);
  if (!why->empty() && LockWord(mu) == word) {
    RememberWord(mu, word, 0);
    return ENOTRECOVERABLE;
  }
  why->clear();
#endif
  rc = TimedLock(mu, ShmSegment::kLockWaitMs - kFirstWaitMs);
  if (rc == ETIMEDOUT) {
#if defined(__GLIBC__)
    // Stuck: while the same word stays, the next lockers are told at once.
    RememberWord(mu, LockWord(mu), NowMs() + ShmSegment::kLockWaitMs);
#endif
    *why = absl::StrCat("its lock has been held for more than ", ShmSegment::kLockWaitMs / 1000,
                        " s (by thread ", holder, ")");
  }
  return rc;
}

// Locks `mu` (a robust process-shared mutex in the segment), bounded.
int LockBounded(pthread_mutex_t* mu, std::string* why) {
  if (!KindOk(mu)) {
    *why = "its lock is not a robust process-shared mutex (overwritten)";
    return EINVAL;
  }
  const int rc = pthread_mutex_trylock(mu);
  if (rc != EBUSY) return rc;
  return WaitBusy(mu, why);
}

std::string LockFailure(int rc, const std::string& why) {
  if (!why.empty()) return why;
  if (rc == ENOTRECOVERABLE) {
    return "its lock is not recoverable (a holder died and the next one did not repair it)";
  }
  return absl::StrCat("cannot lock it: ", std::strerror(rc));
}

// ------------------------------------------------------------- problems

thread_local std::string t_problem_model;
thread_local std::string t_problem;

void SetProblem(absl::string_view model, const std::string& message) {
  t_problem_model.assign(model.data(), model.size());
  t_problem = message;
}

int64_t CoarseMs(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}
int64_t MonotonicMs() {
#ifdef CLOCK_MONOTONIC_COARSE
  return CoarseMs(CLOCK_MONOTONIC_COARSE);  // the tracker's clock (Clock::Monotonic)
#else
  return CoarseMs(CLOCK_MONOTONIC);
#endif
}
int64_t WallMs() {
#ifdef CLOCK_REALTIME_COARSE
  return CoarseMs(CLOCK_REALTIME_COARSE);
#else
  return CoarseMs(CLOCK_REALTIME);
#endif
}

// A slot's failure: the message, remembered for Explain.
absl::Status SlotProblem(const ShmModel* m, absl::string_view what) {
  const absl::string_view name = ShmSegment::Name(m);
  const std::string message =
      absl::StrCat("the shared state of model '", Shown(name), "': ", what);
  SetProblem(name, message);
  return BackendError(message);
}

// With the slot's lock had (`died`: EOWNERDEAD): checks the windows and
// repairs them (true), or refuses them (false, unlocked, *why says why).
bool CheckLocked(ShmModel* m, bool died, bool deep, std::string* why) {
  WindowSet& ws = ShmSegment::Windows(m);
  const int64_t now = MonotonicMs();
  if (!died && !deep && ws.Consistent(now, &WallMs)) return true;  // the usual case
  const std::string limits = ws.LimitsProblem();
  if (!limits.empty()) {
    if (died) pthread_mutex_consistent(ShmSegment::Mutex(m));
    pthread_mutex_unlock(ShmSegment::Mutex(m));
    *why = absl::StrCat("its limits in the segment cannot be read (", limits,
                        "): the slot is corrupt");
    return false;
  }
  ws.Sanitize(now, WallMs(), deep || died, died);
  if (died) {
    // The last owner died holding the lock, maybe mid-update.
    ws.Repair();
    pthread_mutex_consistent(ShmSegment::Mutex(m));
  }
  return true;
}

// Locks a slot (`rc`: what a first trylock said, or EBUSY to start with)
// and checks it: true, locked; false, not locked, *why says why.
bool LockAndCheck(ShmModel* m, int rc, bool deep, std::string* why) {
  pthread_mutex_t* mu = ShmSegment::Mutex(m);
  if (rc == EBUSY) {
    if (!KindOk(mu)) {
      *why = "its lock is not a robust process-shared mutex (overwritten)";
      return false;
    }
    rc = pthread_mutex_trylock(mu);
    if (rc == EBUSY) rc = WaitBusy(mu, why);
  }
  if (rc == 0 || rc == EOWNERDEAD) return CheckLocked(m, rc == EOWNERDEAD, deep, why);
  *why = LockFailure(rc, *why);
  return false;
}

// -------------------------------------------------------------- header

// The header's fields, each read once.
struct HeaderFields {
  uint64_t magic;
  uint32_t layout_version, header_size, slot_size, capacity;
  uint64_t total_size, secret;
  uint32_t count;
  bool lock_ok;
};

HeaderFields ReadHeader(const ShmSegment::Header* h) {
  HeaderFields f;
  f.magic = Once(h->magic);
  f.layout_version = Once(h->layout_version);
  f.header_size = Once(h->header_size);
  f.slot_size = Once(h->slot_size);
  f.capacity = Once(h->capacity);
  f.total_size = Once(h->total_size);
  f.secret = Once(h->secret);
  f.count = h->count.load(std::memory_order_acquire);
  f.lock_ok = KindOk(&h->create_mu);
  return f;
}

constexpr size_t kSlotsAt = RoundUp(sizeof(ShmSegment::Header), alignof(ShmModel));

// What is wrong with a segment of `file_size` bytes with this header
// (empty: nothing).
std::string HeaderProblem(const HeaderFields& h, uint64_t file_size) {
  if (h.magic != ShmSegment::kMagic) return "is not a libratetrack segment (bad magic number)";
  if (h.layout_version != ShmSegment::kLayoutVersion ||
      h.header_size != sizeof(ShmSegment::Header) || h.slot_size != sizeof(ShmModel)) {
    return absl::StrFormat(
        "has layout version %u (header %u bytes, slot %u bytes); this library uses "
        "version %u (%u, %u): every process must use a compatible libratetrack",
        h.layout_version, h.header_size, h.slot_size, ShmSegment::kLayoutVersion,
        static_cast<uint32_t>(sizeof(ShmSegment::Header)),
        static_cast<uint32_t>(sizeof(ShmModel)));
  }
  if (h.capacity < 1 || h.capacity > ShmSegment::kMaxModels) {
    return absl::StrCat("is corrupt: its header says ", h.capacity, " slots (1 to ",
                        ShmSegment::kMaxModels, ")");
  }
  const uint64_t want = kSlotsAt + uint64_t{sizeof(ShmModel)} * h.capacity;
  if (h.total_size != file_size || h.total_size != want) {
    return absl::StrCat("has a size (", file_size, ") that does not match its header (",
                        h.total_size, " bytes, ", h.capacity, " slots: ", want, ")");
  }
  if (h.count > h.capacity) {
    return absl::StrCat("is corrupt: its header counts ", h.count, " models in ", h.capacity,
                        " slots");
  }
  if (!h.lock_ok) {
    return "is corrupt: its creation lock is not a robust process-shared mutex";
  }
  return "";
}

// ----------------------------------------------------------- ownership

bool InGroup(gid_t gid) {
  if (gid == getegid()) return true;
  const int n = getgroups(0, nullptr);
  if (n <= 0) return false;
  std::vector<gid_t> groups(static_cast<size_t>(n));
  const int got = getgroups(n, groups.data());
  for (int i = 0; i < got; ++i) {
    if (groups[static_cast<size_t>(i)] == gid) return true;
  }
  return false;
}

const char* FileType(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  return "not a regular file";
}

// Why this process must not use the segment file `sb` when configured with
// permission bits `mode` (empty: it may): not a regular file, or not owned
// by this user (or, with a group mode, its group): another user could have
// planted it.
std::string OwnerProblem(const struct stat& sb, uint32_t mode) {
  if (!S_ISREG(sb.st_mode)) return absl::StrCat("is ", FileType(sb.st_mode), ", not a segment");
  const uint32_t found = sb.st_mode & 07777;
  const uid_t euid = geteuid();
  const bool group_shared = (mode & 0070) != 0;
  if (sb.st_uid != euid && !(group_shared && InGroup(sb.st_gid))) {
    return absl::StrFormat(
        "is owned by uid %u (mode 0%o), not by this process's user (uid %u)%s: another user "
        "may have planted it, so it is not used",
        static_cast<unsigned>(sb.st_uid), found, static_cast<unsigned>(euid),
        group_shared ? " or its group" : "");
  }
  return "";
}

// Why the segment file `sb` has more permission bits than `mode` allows
// (empty: it has not): others could write it.
std::string ModeProblem(const struct stat& sb, uint32_t mode) {
  const uint32_t found = sb.st_mode & 07777;
  if ((found & ~mode) != 0) {
    return absl::StrFormat(
        "has mode 0%o (owner uid %u), more than the configured shm_mode 0%o allows: others "
        "could write it, so it is not used",
        found, static_cast<unsigned>(sb.st_uid), mode);
  }
  return "";
}

std::string RemoveHint(absl::string_view name) {
  return absl::StrCat(" (remove it with rt_shm_remove or 'ratetrack shm remove ", name, "')");
}

}  // namespace

ShmSegment::ShmSegment(std::string name, void* base, size_t size, uint32_t capacity,
                       uint64_t secret)
    : name_(std::move(name)), base_(base), size_(size), capacity_(capacity), secret_(secret) {}

ShmSegment::~ShmSegment() { munmap(base_, size_); }

ShmModel* ShmSegment::slot(uint32_t i) const {
  char* first = static_cast<char*>(base_) + kSlotsAt;
  return reinterpret_cast<ShmModel*>(first) + i;
}

uint32_t ShmSegment::published() const {
  return std::min(header()->count.load(std::memory_order_acquire), capacity_);
}

absl::Status ShmSegment::CheckName(absl::string_view name) {
  if (name.empty() || name.size() > 64 || name[0] == '.') {
    return ConfigError(absl::StrCat("shared-memory name '", name,
                                    "': must be 1 to 64 characters, not starting with '.'"));
  }
  for (char c : name) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) {
      return ConfigError(absl::StrCat("shared-memory name '", name,
                                      "': only letters, digits, '_', '-' and '.' (no '/')"));
    }
  }
  if (name.find("..") != absl::string_view::npos) {
    return ConfigError(absl::StrCat("shared-memory name '", name, "': no '..'"));
  }
  return absl::OkStatus();
}

std::string ShmSegment::PathOf(absl::string_view name) {
  return absl::StrCat(kDir, "/", kPrefix, name);
}

absl::StatusOr<std::unique_ptr<ShmSegment>> ShmSegment::Open(absl::string_view name,
                                                             const ShmOptions& options) {
  absl::Status st = CheckName(name);
  if (!st.ok()) return st;
  if (options.models < 1 || options.models > kMaxModels) {
    return ConfigError("config key 'shm_models': must be from 1 to 1048576");
  }
  const std::string path = PathOf(name);
  for (int attempt = 0; attempt < 100; ++attempt) {
    // O_NONBLOCK: whatever sits under the name (a FIFO), opening it returns.
    int fd = open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (fd < 0 && errno == ELOOP) {
      return BackendError(absl::StrCat("shared-memory segment '", path,
                                       "' is a symbolic link, not a segment: it is not followed",
                                       RemoveHint(name)));
    }
    if (fd < 0 && errno != ENOENT) return BackendError(Errno("cannot open", path));
    if (fd < 0) {
      // Build the segment under a private name, then publish it atomically.
      std::random_device rd;
      const std::string tmp = absl::StrCat(kDir, "/.", kPrefix, name, ".", getpid(), ".",
                                           static_cast<uint64_t>(rd()) << 32 | rd());
      int tfd = open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                     options.mode);
      if (tfd < 0) return BackendError(Errno("cannot create", tmp));
      const size_t size = kSlotsAt + sizeof(ShmModel) * options.models;
      void* base = MAP_FAILED;
      absl::Status made = absl::OkStatus();
      if (fchmod(tfd, options.mode) != 0 || ftruncate(tfd, static_cast<off_t>(size)) != 0) {
        made = BackendError(Errno("cannot size", tmp));
      } else {
        base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, tfd, 0);
        if (base == MAP_FAILED) made = BackendError(Errno("cannot map", tmp));
      }
      close(tfd);
      uint64_t secret = 0;
      if (made.ok()) {
        auto* h = new (base) Header();
        h->layout_version = kLayoutVersion;
        h->header_size = sizeof(Header);
        h->slot_size = sizeof(ShmModel);
        h->capacity = options.models;
        h->total_size = size;
        h->secret = secret = static_cast<uint64_t>(rd()) << 32 ^ rd() ^
                             static_cast<uint64_t>(time(nullptr)) << 20;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        h->created_unix_ms = static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
        h->creator_pid = getpid();
        h->count.store(0);
        made = InitRobustMutex(&h->create_mu);
        h->magic = kMagic;  // last: a published segment is complete
      }
      if (made.ok() && link(tmp.c_str(), path.c_str()) == 0) {
        unlink(tmp.c_str());
        return std::unique_ptr<ShmSegment>(
            new ShmSegment(std::string(name), base, size, options.models, secret));
      }
      const int link_errno = errno;
      unlink(tmp.c_str());
      if (base != MAP_FAILED) munmap(base, size);
      if (!made.ok()) return made;
      if (link_errno != EEXIST) {
        errno = link_errno;
        return BackendError(Errno("cannot publish", path));
      }
      continue;  // another process won the race: open theirs
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
      close(fd);
      return BackendError(Errno("cannot stat", path));
    }
    // Only a regular file of this user (or group), not opened up beyond
    // the configured mode (below): anything else another user could have
    // planted, or could write.
    const std::string owner = OwnerProblem(sb, options.mode);
    if (!owner.empty()) {
      close(fd);
      return BackendError(
          absl::StrCat("shared-memory segment '", path, "' ", owner, RemoveHint(name)));
    }
    const size_t size = static_cast<size_t>(sb.st_size);
    if (size < sizeof(Header)) {
      close(fd);
      return BackendError(absl::StrCat("shared-memory segment '", path, "' is too small (",
                                       size, " bytes) to be a libratetrack segment"));
    }
    void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (base == MAP_FAILED) return BackendError(Errno("cannot map", path));
    const HeaderFields h = ReadHeader(static_cast<const Header*>(base));
    std::string problem = HeaderProblem(h, size);
    // Checked after the contents, so that a file that is no segment at all
    // says so first.
    if (problem.empty()) problem = ModeProblem(sb, options.mode);
    if (!problem.empty()) {
      munmap(base, size);
      return BackendError(
          absl::StrCat("shared-memory segment '", path, "' ", problem, RemoveHint(name)));
    }
    return std::unique_ptr<ShmSegment>(
        new ShmSegment(std::string(name), base, size, h.capacity, h.secret));
  }
  return BackendError(absl::StrCat("cannot open or create '", path, "': it keeps changing"));
}

ShmModel* ShmSegment::Find(absl::string_view model, uint64_t hash) const {
  if (model.size() > kMaxName) return nullptr;
  const uint32_t n = published();
  for (uint32_t i = 0; i < n; ++i) {
    ShmModel* m = slot(i);
    if (m->state.load(std::memory_order_acquire) != kReady) continue;
    if (Once(m->hash) == hash && Once(m->name_len) == model.size() &&
        std::memcmp(m->name, model.data(), model.size()) == 0) {
      return m;
    }
  }
  return nullptr;
}

std::string ShmSegment::SlotMessage(uint32_t i, absl::string_view model,
                                    absl::string_view what) const {
  return absl::StrCat("shared-memory segment '", name_, "', slot ", i, " (model '", Shown(model),
                      "'): ", what, "; the model is refused until the segment is removed",
                      RemoveHint(name_), ", the other models are not affected");
}

absl::Status ShmSegment::Attach(ShmModel* m, uint32_t i, absl::string_view model) const {
  std::string why;
  if (!LockAndCheck(m, EBUSY, /*deep=*/true, &why)) {
    const std::string message = SlotMessage(i, model, why);
    SetProblem(model, message);
    return BackendError(message);
  }
  Unlock(m);
  return absl::OkStatus();
}

absl::StatusOr<ShmModel*> ShmSegment::FindOrCreate(absl::string_view model, uint64_t hash,
                                                   const ModelLimits& limits,
                                                   int64_t guard_ms, bool* created) {
  *created = false;
  if (model.size() > kMaxName) {
    return InvalidError(absl::StrCat("model name longer than ", kMaxName,
                                     " bytes cannot be shared"));
  }
  const auto attach = [&](ShmModel* m) -> absl::StatusOr<ShmModel*> {
    const uint32_t i = static_cast<uint32_t>(m - slot(0));
    absl::Status st = Attach(m, i, model);
    if (!st.ok()) return st;
    return m;
  };
  if (ShmModel* m = Find(model, hash)) return attach(m);
  Header* h = header();
  std::string why;
  const int rc = LockBounded(&h->create_mu, &why);
  if (rc == EOWNERDEAD) {
    // A creator died: a slot past `count` may be half written, and is simply
    // written again below.
    pthread_mutex_consistent(&h->create_mu);
  } else if (rc != 0) {
    const std::string message = absl::StrCat("shared-memory segment '", name_,
                                             "': cannot create model '", Shown(model),
                                             "': ", LockFailure(rc, why), RemoveHint(name_));
    SetProblem(model, message);
    return BackendError(message);
  }
  ShmModel* m = Find(model, hash);
  if (m == nullptr) m = RestoreIdentity(model, hash);
  absl::Status st = absl::OkStatus();
  if (m == nullptr) {
    uint32_t n = h->count.load(std::memory_order_relaxed);
    if (n > capacity_) {
      st = BackendError(absl::StrCat("shared-memory segment '", name_, "' is corrupt: its header ",
                                     "counts ", n, " models in ", capacity_, " slots",
                                     RemoveHint(name_)));
    } else {
      // Slots past the count that are published already: a creator died
      // between publishing one and counting it, or the count was
      // overwritten. They are counted, not written over (a process may be
      // using them).
      const uint32_t counted = n;
      while (n < capacity_ && slot(n)->state.load(std::memory_order_acquire) == kReady) ++n;
      if (n != counted) {
        h->count.store(n, std::memory_order_release);
        m = Find(model, hash);
      }
    }
    if (st.ok() && m == nullptr && n >= capacity_) {
      st = BackendError(absl::StrCat("shared-memory segment '", name_, "' is full (",
                                     capacity_, " models); create it with a larger "
                                     "\"shm_models\" (remove it first)"));
    } else if (st.ok() && m == nullptr) {
      m = slot(n);
      m->state.store(kFree, std::memory_order_relaxed);
      m->hash = hash;
      m->name_len = static_cast<uint32_t>(model.size());
      std::memcpy(m->name, model.data(), model.size());
      m->name[model.size()] = '\0';
      st = InitRobustMutex(&m->mu);
      if (st.ok()) {
        new (&m->windows) WindowSet();
        m->windows.SetLimits(limits, guard_ms);
        m->state.store(kReady, std::memory_order_release);
        h->count.store(n + 1, std::memory_order_release);
        *created = true;
      }
    }
  }
  pthread_mutex_unlock(&h->create_mu);
  if (!st.ok()) {
    SetProblem(model, std::string(st.message()));
    return st;
  }
  if (!*created) return attach(m);
  return m;
}

ShmModel* ShmSegment::RestoreIdentity(absl::string_view model, uint64_t hash) const {
  const uint32_t n = published();
  for (uint32_t i = 0; i < n; ++i) {
    ShmModel* m = slot(i);
    char stored[kMaxName + 1];
    for (size_t j = 0; j <= kMaxName; ++j) stored[j] = Once(m->name[j]);
    const size_t len = strnlen(stored, kMaxName + 1);
    const bool name_ok = len == model.size() && std::memcmp(stored, model.data(), len) == 0;
    const bool hash_ok = Once(m->hash) == hash;
    const bool len_ok = Once(m->name_len) == model.size();
    if (!name_ok && !(hash_ok && len_ok)) continue;
    if (name_ok && hash_ok && len_ok && m->state.load(std::memory_order_acquire) == kReady) {
      return m;
    }
    m->hash = hash;
    m->name_len = static_cast<uint32_t>(model.size());
    std::memcpy(m->name, model.data(), model.size());
    m->name[model.size()] = '\0';
    m->state.store(kReady, std::memory_order_release);
    return m;
  }
  return nullptr;
}

namespace {
// A published slot's identity, read once and checked: a name of at most
// kMaxName bytes, NUL-terminated, without a NUL inside, whose hash is the
// stored one. Copies the name into *name. False: the slot is skipped.
bool Identity(const ShmModel* m, std::string* name) {
  if (m->state.load(std::memory_order_acquire) != kReady) return false;
  const uint32_t len = Once(m->name_len);
  const uint64_t hash = Once(m->hash);
  if (len == 0 || len > ShmSegment::kMaxName) return false;
  char copy[ShmSegment::kMaxName + 1];
  for (uint32_t i = 0; i <= len; ++i) copy[i] = Once(m->name[i]);
  if (copy[len] != '\0' || std::memchr(copy, '\0', len) != nullptr) return false;
  name->assign(copy, len);
  return NameKey::FromView(*name).hash == hash;
}
}  // namespace

void ShmSegment::ForEachNamed(
    const std::function<void(ShmModel*, absl::string_view)>& fn) const {
  const uint32_t n = published();
  std::string name;
  for (uint32_t i = 0; i < n; ++i) {
    ShmModel* m = slot(i);
    if (Identity(m, &name)) fn(m, name);
  }
}

void ShmSegment::ForEach(const std::function<void(ShmModel*)>& fn) const {
  ForEachNamed([&fn](ShmModel* m, absl::string_view) { fn(m); });
}

absl::Status ShmSegment::Lock(ShmModel* m) {
  std::string why;
  if (LockAndCheck(m, EBUSY, /*deep=*/false, &why)) return absl::OkStatus();
  return SlotProblem(m, why);
}

pthread_mutex_t* ShmSegment::Mutex(ShmModel* m) { return &m->mu; }

absl::Status ShmSegment::Locked(ShmModel* m, int rc) {
  std::string why;
  if (rc == EBUSY) {
    // The trylock was the hot path's: wait here, bounded.
    if (!KindOk(&m->mu)) return SlotProblem(m, "its lock is not a robust process-shared mutex");
    rc = WaitBusy(&m->mu, &why);
  }
  if (LockAndCheck(m, rc, /*deep=*/false, &why)) return absl::OkStatus();
  return SlotProblem(m, why);
}

Verdict ShmSegment::DecideSlow(WindowSet& ws, int64_t now, int64_t wall, const Cost& cost,
                               bool book) {
  // A set another process wrote since this one last checked it is checked
  // before it is used.
  if (__builtin_expect(!ws.Sound(now), 0)) {
    if (!ws.LimitsProblem().empty()) return {RT_E_BACKEND, 0};
    ws.Sanitize(now, wall, /*deep=*/true, /*writer_died=*/false);
  }
  return ws.DecideSlow(now, wall, cost, book);
}

void ShmSegment::Unlock(ShmModel* m) { pthread_mutex_unlock(&m->mu); }
WindowSet& ShmSegment::Windows(ShmModel* m) { return m->windows; }
absl::string_view ShmSegment::Name(const ShmModel* m) {
  const uint32_t len = Once(m->name_len);
  return absl::string_view(m->name, len > kMaxName ? kMaxName : len);
}

std::string ShmSegment::LastProblem(absl::string_view model) {
  return t_problem_model == model ? t_problem : std::string();
}

absl::Status ShmSegment::Remove(absl::string_view name) {
  absl::Status st = CheckName(name);
  if (!st.ok()) return InvalidError(st.message());  // an argument, not a config
  const std::string path = PathOf(name);
  if (unlink(path.c_str()) != 0) {
    if (errno == ENOENT) {
      return InvalidError(absl::StrCat("no shared-memory segment '", name, "' (", path, ")"));
    }
    return BackendError(Errno("cannot remove", path));
  }
  return absl::OkStatus();
}

std::string ShmSegment::ListJson() {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  DIR* dir = opendir(kDir);
  if (dir == nullptr) return out.dump();
  const size_t prefix = std::strlen(kPrefix);
  while (struct dirent* e = readdir(dir)) {
    if (std::strncmp(e->d_name, kPrefix, prefix) != 0) continue;
    const std::string name = e->d_name + prefix;
    // Not a segment's name (a temporary file, odd or non-UTF-8 bytes), or
    // not a regular file: skipped, never opened.
    if (!CheckName(name).ok()) continue;
    if (e->d_type != DT_REG && e->d_type != DT_UNKNOWN) continue;
    const std::string path = PathOf(name);
    struct stat sb;
    if (lstat(path.c_str(), &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
    nlohmann::ordered_json j;
    j["name"] = name;
    j["path"] = path;
    j["bytes"] = static_cast<uint64_t>(sb.st_size);
    j["mode"] = absl::StrFormat("0%o", sb.st_mode & 0777);
    j["uid"] = sb.st_uid;
    Header h{};
    bool readable = false;
    std::string problem;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (fd >= 0) {
      struct stat now;
      const bool same = fstat(fd, &now) == 0 && S_ISREG(now.st_mode) &&
                        now.st_ino == sb.st_ino && now.st_dev == sb.st_dev;
      if (!same) {
        close(fd);
        continue;  // replaced under us
      }
      readable = pread(fd, &h, sizeof h, 0) == static_cast<ssize_t>(sizeof h);
      close(fd);
      if (readable) {
        problem = HeaderProblem(ReadHeader(&h), static_cast<uint64_t>(now.st_size));
      } else {
        problem = "too small to be a libratetrack segment";
      }
    }
    j["compatible"] = readable && problem.empty();
    if (readable && h.magic == kMagic) {
      j["layout_version"] = h.layout_version;
      j["models"] = h.count.load();
      j["capacity"] = h.capacity;
      j["creator_pid"] = h.creator_pid;
      j["created_unix_ms"] = h.created_unix_ms;
    }
    if (fd < 0) {
      j["error"] = "not readable by this user";
    } else if (!problem.empty() && (!readable || h.magic == kMagic)) {
      j["error"] = problem;
    }
    out.push_back(std::move(j));
  }
  closedir(dir);
  return out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace ratetrack
