#include "model_name.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "status.h"

namespace ratetrack {
namespace {

// The length of the character at s[i]: 1 to 4 for a valid, shown character,
// 0 for a byte that starts no valid UTF-8 sequence or is a control character.
size_t CharLength(absl::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t c = b(i);
  const size_t left = s.size() - i;
  if (c < 0x80) return (c < 0x20 || c == 0x7f) ? 0 : 1;
  auto cont = [&](size_t k) { return k < left && (b(i + k) & 0xc0) == 0x80; };
  if (c >= 0xc2 && c <= 0xdf) {
    if (!cont(1)) return 0;
    return (c == 0xc2 && b(i + 1) < 0xa0) ? 0 : 2;  // C1 controls U+0080..U+009F
  }
  if (c >= 0xe0 && c <= 0xef) {
    if (!cont(1) || !cont(2)) return 0;
    const uint8_t c1 = b(i + 1);
    if (c == 0xe0 && c1 < 0xa0) return 0;  // overlong
    if (c == 0xed && c1 >= 0xa0) return 0;  // surrogates U+D800..U+DFFF
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    const uint8_t c1 = b(i + 1);
    if (c == 0xf0 && c1 < 0x90) return 0;  // overlong
    if (c == 0xf4 && c1 >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

}  // namespace

absl::Status CheckModelName(absl::string_view name) {
  if (name.empty()) return InvalidError("model name is empty");
  if (name.size() > kMaxModelName) {
    return InvalidError(absl::StrCat("model name is ", name.size(), " bytes long; at most ",
                                     kMaxModelName, " are allowed"));
  }
  for (size_t i = 0; i < name.size();) {
    const size_t n = CharLength(name, i);
    if (n == 0) {
      const auto c = static_cast<uint8_t>(name[i]);
      const bool control = c < 0x20 || c == 0x7f || (c == 0xc2 && i + 1 < name.size() &&
                                                      static_cast<uint8_t>(name[i + 1]) >= 0x80 &&
                                                      static_cast<uint8_t>(name[i + 1]) < 0xa0);
      return InvalidError(absl::StrCat("model name '", DisplayName(name), "' has ",
                                       control ? "a control character" : "a byte that is not UTF-8",
                                       " at byte ", i));
    }
    i += n;
  }
  return absl::OkStatus();
}

std::string DisplayName(absl::string_view name) {
  size_t i = 0;
  while (i < name.size()) {
    const size_t n = CharLength(name, i);
    if (n == 0) break;
    i += n;
  }
  if (i == name.size()) return std::string(name);
  static const char kHex[] = "0123456789abcdef";
  std::string out(name.substr(0, i));
  while (i < name.size()) {
    const size_t n = CharLength(name, i);
    if (n != 0) {
      out.append(name.data() + i, n);
      i += n;
      continue;
    }
    const auto c = static_cast<uint8_t>(name[i]);
    // A C1 control is two bytes: both are written out.
    const size_t bad = (c == 0xc2 && i + 1 < name.size() &&
                        (static_cast<uint8_t>(name[i + 1]) & 0xc0) == 0x80)
                           ? 2
                           : 1;
    for (size_t k = 0; k < bad; ++k) {
      const auto x = static_cast<uint8_t>(name[i + k]);
      out += "\\x";
      out += kHex[x >> 4];
      out += kHex[x & 15];
    }
    i += bad;
  }
  return out;
}

}  // namespace ratetrack
