// NameKey: the one-pass scan of a C string must give the same key as the
// plain computation over its bytes, at every length and alignment, and must
// not read past a page that ends right after the terminator.
#include "name_key.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace ratetrack {
namespace {

// Any bytes but NUL: model names are UTF-8 ("gpt-été"), and a wrong
// zero-byte test is fooled by bytes >= 0x80 and by 0x01 next to the end.
std::string NameOfLength(size_t n, char seed) {
  std::string s;
  uint64_t x = 0x9e3779b97f4a7c15ULL * (static_cast<unsigned char>(seed) + 1);
  for (size_t i = 0; i < n; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    s.push_back(static_cast<char>(1 + (x >> 33) % 255));
  }
  if (n > 0 && seed % 3 == 0) s[n - 1] = '\x01';
  if (n > 1 && seed % 3 == 1) s[n - 2] = '\x80';
  return s;
}

void ExpectSameKey(const NameKey& a, const NameKey& b) {
  ASSERT_EQ(a.size, b.size);
  EXPECT_EQ(a.hash, b.hash);
  EXPECT_TRUE(a.Matches(b));
  EXPECT_TRUE(b.Matches(a));
  if (a.is_inline()) {
    for (size_t i = 0; i < a.nwords(); ++i) EXPECT_EQ(a.w[i], b.w[i]) << "word " << i;
  }
}

TEST(NameKeyTest, CStringScanEqualsByteComputationAtEveryLengthAndAlignment) {
  alignas(64) char buf[256];
  for (size_t n = 1; n <= 150; ++n) {
    const std::string name = NameOfLength(n, static_cast<char>(n));
    for (size_t align = 0; align < 8; ++align) {
      // Garbage after the terminator must not matter.
      std::memset(buf, 'x', sizeof buf);
      std::memcpy(buf + align, name.c_str(), n + 1);
      SCOPED_TRACE(testing::Message() << "length " << n << ", offset " << align);
      const NameKey scanned = NameKey::FromCString(buf + align);
      EXPECT_EQ(scanned.data, buf + align);
      ExpectSameKey(scanned, NameKey::FromView(name));
    }
  }
}

TEST(NameKeyTest, Utf8NamesKeepEveryByte) {
  for (const char* name : {"gpt-\xc3\xa9t\xc3\xa9", "\xff\xfe\x80\x81\x01model", "m\x01\x01\x01\x01\x01\x01\x01\x01x"}) {
    const NameKey k = NameKey::FromCString(name);
    EXPECT_EQ(k.size, std::strlen(name)) << name;
    ExpectSameKey(k, NameKey::FromView(name));
  }
}

TEST(NameKeyTest, NamesThatDifferDoNotMatch) {
  // One byte different anywhere, at lengths around the word and inline
  // boundaries (63: the last held as words; 64 and up: memcmp).
  for (size_t n : {1, 7, 8, 9, 15, 16, 17, 62, 63, 64, 65, 100}) {
    const std::string a = NameOfLength(n, 3);
    for (size_t i = 0; i < n; ++i) {
      std::string b = a;
      b[i] = static_cast<char>(b[i] == 'z' ? 'y' : b[i] + 1);
      EXPECT_FALSE(NameKey::FromView(a).Matches(NameKey::FromView(b))) << n << " " << i;
      EXPECT_FALSE(NameKey::FromCString(b.c_str()).Matches(NameKey::FromView(a))) << n << " " << i;
    }
    // A prefix is another name.
    EXPECT_FALSE(NameKey::FromView(a).Matches(NameKey::FromView(a.substr(0, n - 1))));
    EXPECT_FALSE(NameKey::FromView(a + "\x01").Matches(NameKey::FromView(a)));
  }
}

TEST(NameKeyTest, HashesSpreadOverSimilarNames) {
  // Model names differ in a digit or a suffix; the table indexes by the low
  // bits, so those must differ too.
  int low_collisions = 0;
  const std::string base = "gpt-4o-mini-2024-07-";
  std::vector<uint64_t> seen;
  for (int i = 0; i < 100; ++i) {
    const uint64_t h = NameKey::FromView(base + std::to_string(i)).hash & 1023;
    for (uint64_t s : seen) low_collisions += s == h;
    seen.push_back(h);
  }
  // 100 names in 1024 buckets: about 5 colliding pairs by chance.
  EXPECT_LT(low_collisions, 20);
}

// Names in heap blocks of exactly their size (what a binding's string
// conversion hands over). The word scan would read past the block; under
// AddressSanitizer, from GCC (__SANITIZE_ADDRESS__) or clang
// (__has_feature(address_sanitizer), which clang does not spell as GCC's
// macro), the name must be measured with strlen instead, or ASan reports a
// heap-buffer-overflow here. Without a sanitizer the scan is used, and is
// harmless.
TEST(NameKeyTest, NamesInExactHeapBlocksUnderSanitizers) {
  for (size_t n = 1; n <= 40; ++n) {
    const std::string name = NameOfLength(n, static_cast<char>(n + 1));
    std::unique_ptr<char[]> exact(new char[n + 1]);
    std::memcpy(exact.get(), name.c_str(), n + 1);
    const NameKey k = NameKey::FromCString(exact.get());
    ASSERT_EQ(k.size, n);
    ExpectSameKey(k, NameKey::FromView(name));
  }
}

// The sanitizer check itself: whichever compiler, a sanitized build takes
// the strlen path.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
static_assert(RATETRACK_NAME_SCAN == 0, "clang sanitizer build must not scan words");
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
static_assert(RATETRACK_NAME_SCAN == 0, "GCC sanitizer build must not scan words");
#endif

TEST(NameKeyTest, NeverReadsIntoTheNextPage) {
  // Two pages, the second inaccessible; names end exactly at the end of the
  // first (their terminator is its last byte). A word load across the page
  // boundary would fault.
  const long page = sysconf(_SC_PAGESIZE);
  ASSERT_GE(page, 4096);
  void* mem = mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  char* base = static_cast<char*>(mem);
  ASSERT_EQ(mprotect(base + page, page, PROT_NONE), 0);
  for (size_t n = 0; n <= 40; ++n) {
    const std::string name = NameOfLength(n, 5);
    char* s = base + page - (n + 1);
    std::memcpy(s, name.c_str(), n + 1);
    const NameKey k = NameKey::FromCString(s);
    EXPECT_EQ(k.size, n);
    if (n > 0) ExpectSameKey(k, NameKey::FromView(name));
  }
  munmap(mem, 2 * page);
}

}  // namespace
}  // namespace ratetrack
