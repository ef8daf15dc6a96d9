#include "shm_segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "status.h"

namespace ratetrack {

namespace {

constexpr char kDir[] = "/dev/shm";
constexpr char kPrefix[] = "ratetrack.";

enum SlotState : uint32_t { kFree = 0, kReady = 2 };

std::string Errno(const char* what, const std::string& path) {
  return absl::StrCat(what, " '", path, "': ", std::strerror(errno));
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

size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

}  // namespace

struct ShmSegment::Header {
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

struct alignas(64) ShmModel {
  std::atomic<uint32_t> state;
  uint32_t name_len;
  uint64_t hash;
  char name[ShmSegment::kMaxName + 1];
  pthread_mutex_t mu;
  WindowSet windows;
};

ShmSegment::ShmSegment(std::string name, void* base, size_t size)
    : name_(std::move(name)), base_(base), size_(size) {}

ShmSegment::~ShmSegment() { munmap(base_, size_); }

uint64_t ShmSegment::secret() const { return header()->secret; }
uint32_t ShmSegment::capacity() const { return header()->capacity; }

ShmModel* ShmSegment::slot(uint32_t i) const {
  char* first = static_cast<char*>(base_) + RoundUp(sizeof(Header), alignof(ShmModel));
  return reinterpret_cast<ShmModel*>(first) + i;
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
  if (options.models < 1 || options.models > (1u << 20)) {
    return ConfigError("config key 'shm_models': must be from 1 to 1048576");
  }
  const std::string path = PathOf(name);
  const size_t slots_at = RoundUp(sizeof(Header), alignof(ShmModel));
  for (int attempt = 0; attempt < 100; ++attempt) {
    int fd = open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno != ENOENT) return BackendError(Errno("cannot open", path));
    if (fd < 0) {
      // Build the segment under a private name, then publish it atomically.
      std::random_device rd;
      const std::string tmp = absl::StrCat(kDir, "/.", kPrefix, name, ".", getpid(), ".",
                                           static_cast<uint64_t>(rd()) << 32 | rd());
      int tfd = open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                     options.mode);
      if (tfd < 0) return BackendError(Errno("cannot create", tmp));
      const size_t size = slots_at + sizeof(ShmModel) * options.models;
      void* base = MAP_FAILED;
      absl::Status made = absl::OkStatus();
      if (fchmod(tfd, options.mode) != 0 || ftruncate(tfd, static_cast<off_t>(size)) != 0) {
        made = BackendError(Errno("cannot size", tmp));
      } else {
        base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, tfd, 0);
        if (base == MAP_FAILED) made = BackendError(Errno("cannot map", tmp));
      }
      close(tfd);
      if (made.ok()) {
        auto* h = new (base) Header();
        h->layout_version = kLayoutVersion;
        h->header_size = sizeof(Header);
        h->slot_size = sizeof(ShmModel);
        h->capacity = options.models;
        h->total_size = size;
        h->secret = static_cast<uint64_t>(rd()) << 32 ^ rd() ^
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
        return std::unique_ptr<ShmSegment>(new ShmSegment(std::string(name), base, size));
      }
      const int link_errno = errno;
      unlink(tmp.c_str());
      if (base != MAP_FAILED) munmap(base, slots_at + sizeof(ShmModel) * options.models);
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
    const size_t size = static_cast<size_t>(sb.st_size);
    if (size < sizeof(Header)) {
      close(fd);
      return BackendError(absl::StrCat("shared-memory segment '", path, "' is too small (",
                                       size, " bytes) to be a libratetrack segment"));
    }
    void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (base == MAP_FAILED) return BackendError(Errno("cannot map", path));
    const Header* h = static_cast<const Header*>(base);
    std::string problem;
    if (h->magic != kMagic) {
      problem = "is not a libratetrack segment (bad magic number)";
    } else if (h->layout_version != kLayoutVersion || h->header_size != sizeof(Header) ||
               h->slot_size != sizeof(ShmModel)) {
      problem = absl::StrFormat(
          "has layout version %u (header %u bytes, slot %u bytes); this library uses "
          "version %u (%u, %u): every process must use a compatible libratetrack",
          h->layout_version, h->header_size, h->slot_size, kLayoutVersion,
          static_cast<uint32_t>(sizeof(Header)), static_cast<uint32_t>(sizeof(ShmModel)));
    } else if (h->total_size != size || slots_at + sizeof(ShmModel) * h->capacity > size) {
      problem = absl::StrCat("has a size (", size, ") that does not match its header");
    }
    if (!problem.empty()) {
      munmap(base, size);
      return BackendError(absl::StrCat("shared-memory segment '", path, "' ", problem,
                                       " (remove it with rt_shm_remove or "
                                       "'ratetrack shm remove ", name, "')"));
    }
    return std::unique_ptr<ShmSegment>(new ShmSegment(std::string(name), base, size));
  }
  return BackendError(absl::StrCat("cannot open or create '", path, "': it keeps changing"));
}

ShmModel* ShmSegment::Find(absl::string_view model, uint64_t hash) const {
  const uint32_t n = header()->count.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < n; ++i) {
    ShmModel* m = slot(i);
    if (m->state.load(std::memory_order_acquire) != kReady) continue;
    if (m->hash == hash && m->name_len == model.size() &&
        std::memcmp(m->name, model.data(), model.size()) == 0) {
      return m;
    }
  }
  return nullptr;
}

absl::StatusOr<ShmModel*> ShmSegment::FindOrCreate(absl::string_view model, uint64_t hash,
                                                   const ModelLimits& limits,
                                                   int64_t guard_ms, bool* created) {
  *created = false;
  if (model.size() > kMaxName) {
    return InvalidError(absl::StrCat("model name longer than ", kMaxName,
                                     " bytes cannot be shared"));
  }
  if (ShmModel* m = Find(model, hash)) return m;
  Header* h = header();
  int rc = pthread_mutex_lock(&h->create_mu);
  if (rc == EOWNERDEAD) {
    // A creator died: a slot past `count` may be half written, and is simply
    // written again below.
    pthread_mutex_consistent(&h->create_mu);
  } else if (rc != 0) {
    return BackendError(absl::StrCat("segment '", name_, "': cannot lock: ", std::strerror(rc)));
  }
  ShmModel* m = Find(model, hash);
  absl::Status st = absl::OkStatus();
  if (m == nullptr) {
    const uint32_t n = h->count.load(std::memory_order_relaxed);
    if (n >= h->capacity) {
      st = BackendError(absl::StrCat("shared-memory segment '", name_, "' is full (",
                                     h->capacity, " models); create it with a larger "
                                     "\"shm_models\" (remove it first)"));
    } else {
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
  if (!st.ok()) return st;
  return m;
}

void ShmSegment::ForEach(const std::function<void(ShmModel*)>& fn) const {
  const uint32_t n = header()->count.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < n; ++i) {
    ShmModel* m = slot(i);
    if (m->state.load(std::memory_order_acquire) == kReady) fn(m);
  }
}

absl::Status ShmSegment::Lock(ShmModel* m) {
  const int rc = pthread_mutex_lock(&m->mu);
  if (rc == 0) return absl::OkStatus();
  return Locked(m, rc);
}

pthread_mutex_t* ShmSegment::Mutex(ShmModel* m) { return &m->mu; }

absl::Status ShmSegment::Locked(ShmModel* m, int rc) {
  if (rc == EOWNERDEAD) {
    // The last owner died holding the lock, maybe mid-update.
    m->windows.Repair();
    pthread_mutex_consistent(&m->mu);
    return absl::OkStatus();
  }
  return BackendError(absl::StrCat("cannot lock the shared state of '",
                                   absl::string_view(m->name, m->name_len),
                                   "': ", std::strerror(rc)));
}

void ShmSegment::Unlock(ShmModel* m) { pthread_mutex_unlock(&m->mu); }
WindowSet& ShmSegment::Windows(ShmModel* m) { return m->windows; }
absl::string_view ShmSegment::Name(const ShmModel* m) {
  return absl::string_view(m->name, m->name_len);
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
    const std::string path = PathOf(name);
    nlohmann::ordered_json j;
    j["name"] = name;
    j["path"] = path;
    struct stat sb;
    if (stat(path.c_str(), &sb) != 0) continue;
    j["bytes"] = static_cast<uint64_t>(sb.st_size);
    j["mode"] = absl::StrFormat("0%o", sb.st_mode & 0777);
    j["uid"] = sb.st_uid;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    Header h{};
    bool readable = fd >= 0 && pread(fd, &h, sizeof h, 0) == static_cast<ssize_t>(sizeof h);
    if (fd >= 0) close(fd);
    const bool ours = readable && h.magic == kMagic && h.layout_version == kLayoutVersion &&
                      h.header_size == sizeof(Header) && h.slot_size == sizeof(ShmModel);
    j["compatible"] = ours;
    if (readable && h.magic == kMagic) {
      j["layout_version"] = h.layout_version;
      j["models"] = h.count.load();
      j["capacity"] = h.capacity;
      j["creator_pid"] = h.creator_pid;
      j["created_unix_ms"] = h.created_unix_ms;
    }
    if (!readable) j["error"] = "not readable by this user";
    out.push_back(std::move(j));
  }
  closedir(dir);
  return out.dump();
}

}  // namespace ratetrack
