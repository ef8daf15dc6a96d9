// NameKey: a model name made ready for the model table in one pass.
//
// The hot path gets the model as a NUL-terminated C string. strlen, then a
// hash, then memcmp against the table's entry would read it three times
// through three library calls; NameKey reads it once, a word at a time:
// each 8-byte load finds the terminator (the classic "has a zero byte" bit
// trick), feeds the hash and is kept, zero-padded, for the comparison, so
// matching a table entry is a compare of one or a few words.
//
// Reading a whole word may read bytes past the terminator. That is safe
// where it is done: never across a 4 KiB page boundary (a load that would
// cross one is done byte by byte), so it never touches a page the string
// does not; the key's bytes after the terminator are masked off and never
// used. Sanitizers would report those reads, so under one the name is
// measured with strlen (and the caller's string is checked).
#ifndef RATETRACK_SRC_NAME_KEY_H_
#define RATETRACK_SRC_NAME_KEY_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "absl/strings/string_view.h"

// Under a sanitizer the name is measured with strlen instead (the same key,
// by construction): the word scan reads past the terminator, which the
// sanitizer would report, and strlen lets it check the caller's string.
// GCC says so with __SANITIZE_*__ macros, clang with __has_feature (which
// GCC before 14 does not have); fuzzing builds (libFuzzer's convention,
// FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION) take the checked path too.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || \
    defined(__SANITIZE_HWADDRESS__) || defined(FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION)
#define RATETRACK_NAME_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer) || __has_feature(hwaddress_sanitizer)
#define RATETRACK_NAME_SANITIZED 1
#endif
#endif
#if defined(RATETRACK_NAME_SANITIZED)
#define RATETRACK_NAME_SCAN 0
#else
#define RATETRACK_NAME_SCAN 1
#endif

namespace ratetrack {

struct NameKey {
  // Names up to this many bytes are held as words (every provider's model
  // names are far shorter); longer ones are compared with memcmp.
  static constexpr size_t kWords = 8;
  static constexpr size_t kInlineBytes = kWords * 8 - 1;

  const char* data;
  size_t size;
  uint64_t hash;
  // The name's bytes as little-endian words, zero after the last byte:
  // words()[0 .. size / 8] (only when size <= kInlineBytes).
  uint64_t w[kWords];

  size_t nwords() const { return size / 8 + 1; }
  bool is_inline() const { return size <= kInlineBytes; }
  absl::string_view view() const { return absl::string_view(data, size); }

  // From a NUL-terminated string.
  __attribute__((always_inline)) static NameKey FromCString(const char* s) {
#if !RATETRACK_NAME_SCAN
    return FromView(absl::string_view(s, std::strlen(s)));
#else
    NameKey k;
    k.data = s;
    uint64_t h = kSeed;
    size_t off = 0;
    for (;;) {
      const char* p = s + off;
      uint64_t v;
      if ((reinterpret_cast<uintptr_t>(p) & 4095) <= 4096 - 8) {
        v = Load(p);
      } else {
        v = LoadCareful(p);
      }
      const uint64_t zero = (v - kOnes) & ~v & kHighs;
      if (zero != 0) {
        // The lowest flagged byte is the first NUL (a false flag can only sit
        // above a real zero byte).
        const int bytes = __builtin_ctzll(zero) >> 3;
        const uint64_t last = bytes == 0 ? 0 : v & (~uint64_t{0} >> (64 - 8 * bytes));
        k.size = off + static_cast<size_t>(bytes);
        if (off / 8 < kWords) k.w[off / 8] = last;
        k.hash = Finish(h, last, k.size);
        return k;
      }
      if (off / 8 < kWords) k.w[off / 8] = v;
      h = MixWord(h, v);
      off += 8;
    }
#endif
  }
  // From any bytes; the same key as FromCString for the same name.
  static inline NameKey FromView(absl::string_view s);

  // Whether `other` (a key of a stored name) names the same model.
  bool Matches(const NameKey& other) const {
    if (other.hash != hash || other.size != size) return false;
    if (!is_inline()) return std::memcmp(other.data, data, size) == 0;
    const size_t n = nwords();
    uint64_t diff = 0;
    for (size_t i = 0; i < n; ++i) diff |= w[i] ^ other.w[i];
    return diff == 0;
  }

 private:
  static constexpr uint64_t kOnes = 0x0101010101010101ULL;
  static constexpr uint64_t kHighs = 0x8080808080808080ULL;
  static constexpr uint64_t kSeed = 0x9e3779b97f4a7c15ULL;

  // A multiply-mix over 8-byte words: a few cycles for a model name, where a
  // call into a hashing library costs dozens. The table needs spread, not
  // resistance to chosen collisions (a caller can always slow itself down by
  // inventing names; the tracker bounds how many it keeps).
  static uint64_t MixWord(uint64_t h, uint64_t word) {
    h = (h ^ word) * 0xbf58476d1ce4e5b9ULL;
    return h ^ (h >> 29);
  }
  static uint64_t Finish(uint64_t h, uint64_t last, size_t size) {
    h = (h ^ last) * 0x94d049bb133111ebULL + size;
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ULL;
    return h ^ (h >> 29);
  }
  // The 8 bytes at `p` as a little-endian word: one plain (unaligned) load,
  // not a call to memcpy, which a sanitizer would check.
  typedef uint64_t UnalignedWord __attribute__((may_alias, aligned(1)));
  __attribute__((always_inline)) static uint64_t Load(
      const char* p) {
    uint64_t v = *reinterpret_cast<const UnalignedWord*>(p);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
  }
  // The same, read byte by byte up to the first NUL (a word load would cross
  // a page boundary); the bytes after the NUL read as 0xff, so the first
  // zero byte of the result is the NUL.
  static uint64_t LoadCareful(const char* p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
      const uint64_t b = static_cast<unsigned char>(p[i]);
      v |= b << (8 * i);
      if (b == 0) return i == 7 ? v : v | ~uint64_t{0} << (8 * i + 8);
    }
    return v;
  }
};

inline NameKey NameKey::FromView(absl::string_view s) {
  NameKey k{};
  k.data = s.data();
  k.size = s.size();
  uint64_t h = kSeed;
  size_t off = 0;
  for (; s.size() - off >= 8; off += 8) {
    const uint64_t v = Load(s.data() + off);
    if (off / 8 < kWords) k.w[off / 8] = v;
    h = MixWord(h, v);
  }
  uint64_t last = 0;
  for (size_t i = off; i < s.size(); ++i) {
    last |= uint64_t{static_cast<unsigned char>(s[i])} << (8 * (i - off));
  }
  if (off / 8 < kWords) k.w[off / 8] = last;
  k.hash = Finish(h, last, k.size);
  return k;
}

}  // namespace ratetrack

#endif  // RATETRACK_SRC_NAME_KEY_H_
