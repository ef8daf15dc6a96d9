package ratetrack

import "fmt"

// Status codes of the C API (pinned: they never change meaning).
const (
	CodeOK       = 0  // RT_OK: done / admitted
	CodeLimited  = 1  // RT_LIMITED: not now (not an error)
	CodeInvalid  = -1 // RT_E_INVALID: bad argument
	CodeConfig   = -2 // RT_E_CONFIG: bad configuration or unknown tier
	CodeTooLarge = -3 // RT_E_TOO_LARGE: the cost exceeds a limit outright
	CodeBackend  = -4 // RT_E_BACKEND: the shared store failed
	CodeNoMem    = -5 // RT_E_NOMEM: out of memory
	CodeInternal = -6 // RT_E_INTERNAL: a bug in libratetrack
)

// Error is a failure reported by libratetrack: Code is the negative status
// code (which alone says what happened) and Message the library's detail
// (rt_last_error), or the status description when there is none.
//
// Use errors.Is with the sentinels (ErrInvalid, ErrConfig, ...) to test the
// kind: an *Error matches the sentinel of its Code.
type Error struct {
	Code    int
	Message string
}

// Sentinels for errors.Is, one per status code.
var (
	ErrInvalid  = &Error{Code: CodeInvalid, Message: "invalid argument"}
	ErrConfig   = &Error{Code: CodeConfig, Message: "configuration error"}
	ErrTooLarge = &Error{Code: CodeTooLarge, Message: "cost exceeds a limit outright"}
	ErrBackend  = &Error{Code: CodeBackend, Message: "backend failure"}
	ErrNoMem    = &Error{Code: CodeNoMem, Message: "out of memory"}
	ErrInternal = &Error{Code: CodeInternal, Message: "internal error"}
)

func (e *Error) Error() string {
	return fmt.Sprintf("ratetrack: %s: %s", StatusName(e.Code), e.Message)
}

// Is reports whether target is an *Error with the same Code, so that
// errors.Is(err, ratetrack.ErrConfig) is true for every configuration error.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// StatusName is the C name of a status code ("RT_E_CONFIG"), or
// "RT_STATUS(<n>)" for a code this binding does not know.
func StatusName(code int) string {
	switch code {
	case CodeOK:
		return "RT_OK"
	case CodeLimited:
		return "RT_LIMITED"
	case CodeInvalid:
		return "RT_E_INVALID"
	case CodeConfig:
		return "RT_E_CONFIG"
	case CodeTooLarge:
		return "RT_E_TOO_LARGE"
	case CodeBackend:
		return "RT_E_BACKEND"
	case CodeNoMem:
		return "RT_E_NOMEM"
	case CodeInternal:
		return "RT_E_INTERNAL"
	}
	return fmt.Sprintf("RT_STATUS(%d)", code)
}

// newError maps a negative status code to its error. The kind is chosen by
// the code alone; msg is only the detail.
func newError(code int, msg string) *Error {
	return &Error{Code: code, Message: msg}
}
