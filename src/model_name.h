// Model names: what the library accepts as one, and how it shows a name it
// did not accept itself (one stored by an older library in a shared segment
// or in Redis).
#ifndef RATETRACK_SRC_MODEL_NAME_H_
#define RATETRACK_SRC_MODEL_NAME_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace ratetrack {

// The longest model name, in bytes (RT_MAX_MODEL_NAME in the header): what a
// shared-memory slot holds, so that a name means the same on every backend.
constexpr size_t kMaxModelName = 191;

// OK for a name of 1 to kMaxModelName bytes of valid UTF-8 (shortest form,
// no surrogates, nothing above U+10FFFF) without control characters (C0,
// DEL, C1); else an InvalidError (RT_E_INVALID) that says what is wrong and
// where, without repeating the name's bytes.
absl::Status CheckModelName(absl::string_view name);

// `name` as it may be shown in JSON, a metrics label, a message or a
// terminal: unchanged when its characters pass CheckModelName, else with
// every byte that is not part of valid UTF-8, and every control character,
// written as the four characters \xHH. The result is always valid UTF-8
// without control characters.
std::string DisplayName(absl::string_view name);

}  // namespace ratetrack

#endif  // RATETRACK_SRC_MODEL_NAME_H_
