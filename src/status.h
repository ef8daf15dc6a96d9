// Inside the library errors are absl::Status; the C boundary turns them into
// RT_* codes (StatusToCode). These constructors pin which absl code stands
// for which RT_* code, so no other file needs to know the mapping.
#ifndef RATETRACK_SRC_STATUS_H_
#define RATETRACK_SRC_STATUS_H_

#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "ratetrack.h"

namespace ratetrack {

inline absl::Status InvalidError(absl::string_view msg) {
  return absl::InvalidArgumentError(msg);
}
inline absl::Status ConfigError(absl::string_view msg) {
  return absl::FailedPreconditionError(msg);
}
inline absl::Status TooLargeError(absl::string_view msg) {
  return absl::OutOfRangeError(msg);
}
inline absl::Status BackendError(absl::string_view msg) {
  return absl::UnavailableError(msg);
}
inline absl::Status NoMemError(absl::string_view msg) {
  return absl::ResourceExhaustedError(msg);
}

inline int StatusToCode(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk: return RT_OK;
    case absl::StatusCode::kInvalidArgument: return RT_E_INVALID;
    case absl::StatusCode::kFailedPrecondition: return RT_E_CONFIG;
    case absl::StatusCode::kOutOfRange: return RT_E_TOO_LARGE;
    case absl::StatusCode::kUnavailable: return RT_E_BACKEND;
    case absl::StatusCode::kResourceExhausted: return RT_E_NOMEM;
    default: return RT_E_INTERNAL;
  }
}

}  // namespace ratetrack

#endif  // RATETRACK_SRC_STATUS_H_
