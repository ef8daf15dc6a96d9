package ratetrack

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// The library is opened with dlopen at run time: nothing here links against
// libratetrack. Every rt_ function is resolved with dlsym into a void* and
// called through one of the small trampolines below, which cast it back to
// its C signature (cgo cannot call a C function pointer directly).

// rtgo_dlopen opens path; on failure copies dlerror() into err (same C call,
// so on the same OS thread as the failure).
static void *rtgo_dlopen(const char *path, char *err, size_t errlen) {
	dlerror();
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		const char *e = dlerror();
		strncpy(err, e ? e : "unknown dlopen error", errlen - 1);
		err[errlen - 1] = 0;
	}
	return h;
}

static void *rtgo_dlsym(void *h, const char *name, char *err, size_t errlen) {
	dlerror();
	void *f = dlsym(h, name);
	if (f == NULL) {
		const char *e = dlerror();
		strncpy(err, e ? e : "symbol is NULL", errlen - 1);
		err[errlen - 1] = 0;
	}
	return f;
}

static void rtgo_dlclose(void *h) { dlclose(h); }

typedef struct rt_tracker rt_tracker;

static int rtgo_int_void(void *f) { return ((int (*)(void))f)(); }
static const char *rtgo_cstr_void(void *f) { return ((const char *(*)(void))f)(); }
static const char *rtgo_cstr_int(void *f, int s) { return ((const char *(*)(int))f)(s); }
static void rtgo_free(void *f, void *p) { ((void (*)(void *))f)(p); }
static int rtgo_int_cstr(void *f, const char *s) { return ((int (*)(const char *))f)(s); }
static int rtgo_int_t_cstr(void *f, void *t, const char *s) {
	return ((int (*)(void *, const char *))f)(t, s);
}
static void rtgo_close(void *f, void *t) { ((void (*)(void *))f)(t); }
static int rtgo_int_t(void *f, void *t) { return ((int (*)(void *))f)(t); }
static int rtgo_int_t_m_n_n(void *f, void *t, const char *m, uint64_t a, uint64_t b) {
	return ((int (*)(void *, const char *, uint64_t, uint64_t))f)(t, m, a, b);
}
// Out-parameters are returned by value in a struct, so no Go pointer is
// passed to C (and nothing escapes to the heap).
typedef struct { int rc; uint64_t a; uint64_t b; } rtgo_res;

// The hot calls: the call and, when it fails, a copy of rt_last_error()
// taken on the same OS thread in the same cgo call (so the Go side need not
// lock the goroutine to its thread). The copy is malloc'd; NULL when the
// call succeeded or the message is empty. The Go side frees it.
// The function pointers and the tracker handle come as integers: cgo checks
// every unsafe.Pointer argument for Go pointers (cgocheck, a few ns each),
// and these are C memory (dlsym's pointers, rt_open's handles).
typedef struct { int rc; uint64_t a; uint64_t b; char *err; } rtgo_hot;
static char *rtgo_err(uintptr_t last_error, int rc) {
	if (rc >= 0) return NULL;
	const char *m = ((const char *(*)(void))last_error)();
	return (m && *m) ? strdup(m) : NULL;
}
static rtgo_hot rtgo_hot_try_acquire(uintptr_t f, uintptr_t le, uintptr_t t, const char *m, uint64_t n) {
	rtgo_hot r = {0, 0, 0, NULL};
	r.rc = ((int (*)(void *, const char *, uint64_t, uint64_t *))f)((void *)t, m, n, &r.a);
	r.err = rtgo_err(le, r.rc);
	return r;
}
static rtgo_hot rtgo_hot_try_acquire_grant(uintptr_t f, uintptr_t le, uintptr_t t, const char *m, uint64_t n) {
	rtgo_hot r = {0, 0, 0, NULL};
	r.rc = ((int (*)(void *, const char *, uint64_t, uint64_t *, uint64_t *))f)((void *)t, m, n, &r.a, &r.b);
	r.err = rtgo_err(le, r.rc);
	return r;
}
static rtgo_hot rtgo_hot_t_m_n(uintptr_t f, uintptr_t le, uintptr_t t, const char *m, uint64_t n) {
	rtgo_hot r = {0, 0, 0, NULL};
	r.rc = ((int (*)(void *, const char *, uint64_t))f)((void *)t, m, n);
	r.err = rtgo_err(le, r.rc);
	return r;
}
static rtgo_hot rtgo_hot_settle(uintptr_t f, uintptr_t le, uintptr_t t, const char *m, uint64_t g,
                                uint64_t granted, uint64_t actual) {
	rtgo_hot r = {0, 0, 0, NULL};
	r.rc = ((int (*)(void *, const char *, uint64_t, uint64_t, uint64_t))f)((void *)t, m, g, granted, actual);
	r.err = rtgo_err(le, r.rc);
	return r;
}
// The benchmark's floor: an empty call the way the hot calls are made.
static int rtgo_hot_int_void(uintptr_t f) { return ((int (*)(void))f)(); }
static rtgo_res rtgo_wait_time(void *f, void *t, const char *m, uint64_t n) {
	rtgo_res r = {0, 0, 0};
	r.rc = ((int (*)(void *, const char *, uint64_t, uint64_t *))f)(t, m, n, &r.a);
	return r;
}
// rt_open_ex / rt_global_get_ex (a string in, a handle out) and
// rt_stats_json_ex (a handle in, a string out): the status and the pointer.
typedef struct { int rc; void *p; } rtgo_pres;
static rtgo_pres rtgo_int_cstr_outptr(void *f, const char *s) {
	rtgo_pres r = {0, NULL};
	rt_tracker *out = NULL;
	r.rc = ((int (*)(const char *, rt_tracker **))f)(s, &out);
	r.p = out;
	return r;
}
static rtgo_pres rtgo_stats_ex(void *f, void *t) {
	rtgo_pres r = {0, NULL};
	char *out = NULL;
	r.rc = ((int (*)(void *, char **))f)(t, &out);
	r.p = out;
	return r;
}
static rtgo_res rtgo_try_acquire_io(void *f, void *t, const char *m, uint64_t in, uint64_t out) {
	rtgo_res r = {0, 0, 0};
	r.rc = ((int (*)(void *, const char *, uint64_t, uint64_t, uint64_t *, uint64_t *))f)(t, m, in, out, &r.a, &r.b);
	return r;
}
static int rtgo_settle_io(void *f, void *t, const char *m, uint64_t g, uint64_t gin, uint64_t gout,
                          uint64_t ain, uint64_t aout) {
	return ((int (*)(void *, const char *, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t))f)(
		t, m, g, gin, gout, ain, aout);
}
// rt_pick: the status, the picked index, the retry-after and the ticket.
typedef struct { int rc; size_t picked; uint64_t retry; uint64_t grant; } rtgo_pick_res;
static rtgo_pick_res rtgo_pick(void *f, void *t, const char *const *models, size_t count,
                               uint64_t in, uint64_t out) {
	rtgo_pick_res r = {0, 0, 0, 0};
	r.rc = ((int (*)(void *, const char *const *, size_t, uint64_t, uint64_t, size_t *, uint64_t *, uint64_t *))f)(
		t, models, count, in, out, &r.picked, &r.retry, &r.grant);
	return r;
}
// The arrays are C memory (one block from cStrings in Go), never Go memory.
static int rtgo_observe_headers(void *f, void *t, const char *m, const char *const *names,
                                const char *const *values, size_t count) {
	return ((int (*)(void *, const char *, const char *const *, const char *const *, size_t))f)(
		t, m, names, values, count);
}
static int rtgo_int_t_cstr_cstr(void *f, void *t, const char *a, const char *b) {
	return ((int (*)(void *, const char *, const char *))f)(t, a, b);
}
// rt_shm_list (a string out only): the status and the string.
static rtgo_pres rtgo_int_outstr(void *f) {
	rtgo_pres r = {0, NULL};
	char *out = NULL;
	r.rc = ((int (*)(char **))f)(&out);
	r.p = out;
	return r;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
	"unsafe"
)

// The version of the C API this binding is written for. A library whose
// major.minor differs is refused (until 1.0 the ABI may change with the minor).
const (
	BindingVersionMajor = 0
	BindingVersionMinor = 1
)

// EnvLibrary is the environment variable naming the library file to load
// when no explicit path is given to Load.
const EnvLibrary = "RATETRACK_LIBRARY"

// SystemLibrary is the name handed to the system loader as the last resort.
const SystemLibrary = "libratetrack.so.0"

// ErrLibraryNotFound matches (errors.Is) a *LoadError: no candidate loaded.
var ErrLibraryNotFound = errors.New("ratetrack: library not found")

// ErrVersionMismatch matches (errors.Is) a *VersionError.
var ErrVersionMismatch = errors.New("ratetrack: library version mismatch")

// LoadError reports that no library could be loaded. Tried lists every place
// that was tried, each with the loader's message.
type LoadError struct {
	Tried []string
}

func (e *LoadError) Error() string {
	return "ratetrack: cannot load libratetrack; tried:\n  " + strings.Join(e.Tried, "\n  ")
}

// Is makes errors.Is(err, ErrLibraryNotFound) true.
func (e *LoadError) Is(target error) bool { return target == ErrLibraryNotFound }

// VersionError reports a library whose major.minor differs from the binding's.
type VersionError struct {
	Path    string // the file that was loaded
	Library string // the library's version, "MAJOR.MINOR.PATCH"
	Binding string // the binding's version, "MAJOR.MINOR"
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("ratetrack: %s is libratetrack %s, but this binding needs %s.x",
		e.Path, e.Library, e.Binding)
}

// Is makes errors.Is(err, ErrVersionMismatch) true.
func (e *VersionError) Is(target error) bool { return target == ErrVersionMismatch }

// library is one dlopen'ed libratetrack and its resolved functions.
type library struct {
	path    string
	version string // rt_version_string
	handle  unsafe.Pointer

	// rt_ function pointers from dlsym, called through the rtgo_ trampolines.
	fnVersionNumber, fnVersionString, fnStatusString, fnLastError, fnFree unsafe.Pointer
	fnGlobalGetEx, fnGlobalConfigure, fnOpenEx, fnConfigure, fnClose      unsafe.Pointer
	fnCanMake, fnRecord, fnTryAcquire, fnTryAcquireGrant, fnSettle        unsafe.Pointer
	fnWaitTime, fnReset, fnStatsJSONEx                                    unsafe.Pointer

	// Model names passed to the hot calls, NUL-terminated, in a small table
	// (a slot per name, chosen by modelSlot): a caller's loop usually passes
	// the same few, and then a name is neither checked nor copied again (one
	// atomic load and one string comparison). Goroutines on different
	// models each keep theirs (one shared last name was replaced at every
	// call, a copy and an allocation each).
	models [modelSlots]atomic.Pointer[cModel]

	// Provider truth (optional: nil in an earlier 0.1 build, whose other
	// functions still work; the methods using them then fail with
	// ErrVersionMismatch).
	fnTryAcquireIO, fnSettleIO, fnPick, fnObserveHeaders, fnReportLimited unsafe.Pointer

	// Metrics and shared-memory management (optional too, same policy).
	fnMetricsText, fnShmList, fnShmRemove unsafe.Pointer

	// Tokens for a request already counted (optional too, same policy).
	fnRecordTokens unsafe.Pointer
}

var (
	loaded atomic.Pointer[library] // set once, never cleared
	loadMu sync.Mutex
)

// Load loads libratetrack now, instead of lazily at the first call. The
// library is looked for, in this order: path (if not ""), the file named by
// the environment variable RATETRACK_LIBRARY (if set), then the system
// loader's "libratetrack.so.0". The first file that opens is used; if none
// does, the *LoadError names every place tried with the loader's message.
// A library whose major.minor differs from the binding's 0.1 is refused with
// a *VersionError.
//
// The library is loaded once per process and shared: once loaded, Load("")
// and Load(samePath) return nil, and Load(otherPath) returns an error. A
// failed load is not remembered, so Load may be called again. A path with a
// NUL byte is an ErrInvalid error (dlopen would stop at it).
func Load(path string) error {
	_, err := loadLib(path)
	return err
}

func loadLib(path string) (*library, error) {
	if strings.IndexByte(path, 0) >= 0 { // dlopen would stop at it and load another file
		return nil, newError(CodeInvalid, fmt.Sprintf("library path %q contains a NUL byte", path))
	}
	if l := loaded.Load(); l != nil {
		if path != "" && path != l.path {
			return nil, fmt.Errorf("ratetrack: library already loaded from %s, cannot load %s", l.path, path)
		}
		return l, nil
	}
	loadMu.Lock()
	defer loadMu.Unlock()
	if l := loaded.Load(); l != nil {
		return loadLib(path)
	}
	l, err := openLibrary(path)
	if err != nil {
		return nil, err
	}
	loaded.Store(l)
	return l, nil
}

// lib returns the process's library, loading it lazily.
func lib() (*library, error) {
	if l := loaded.Load(); l != nil {
		return l, nil
	}
	return loadLib("")
}

// candidates is the lookup order, as (description, dlopen argument) pairs.
func candidates(path string) [][2]string {
	var c [][2]string
	if path != "" {
		c = append(c, [2]string{"path " + path, path})
	}
	if env := os.Getenv(EnvLibrary); env != "" {
		c = append(c, [2]string{"$" + EnvLibrary + "=" + env, env})
	}
	return append(c, [2]string{"system loader " + SystemLibrary, SystemLibrary})
}

// openLibrary tries every candidate (without caching the result).
func openLibrary(path string) (*library, error) {
	var tried []string
	for _, c := range candidates(path) {
		h, err := dlopen(c[1])
		if err != nil {
			tried = append(tried, c[0]+": "+err.Error())
			continue
		}
		l, err := resolve(h, c[1])
		if err != nil {
			C.rtgo_dlclose(h)
			return nil, err
		}
		return l, nil
	}
	return nil, &LoadError{Tried: tried}
}

func dlopen(path string) (unsafe.Pointer, error) {
	var buf [512]C.char
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	h := C.rtgo_dlopen(cpath, &buf[0], C.size_t(len(buf)))
	if h == nil {
		return nil, errors.New(C.GoString(&buf[0]))
	}
	return h, nil
}

// resolve looks up every rt_ symbol and checks the version. Only the
// status-returning rt_open_ex, rt_global_get_ex and rt_stats_json_ex are used
// (not rt_open, rt_global_get, rt_stats_json, whose NULL has no status code);
// a 0.1 library lacking them is an earlier build, refused as a version
// mismatch.
func resolve(h unsafe.Pointer, path string) (*library, error) {
	l := &library{path: path, handle: h}
	syms := []struct {
		name string
		dst  *unsafe.Pointer
	}{
		{"rt_version_number", &l.fnVersionNumber}, {"rt_version_string", &l.fnVersionString},
		{"rt_status_string", &l.fnStatusString}, {"rt_last_error", &l.fnLastError},
		{"rt_free", &l.fnFree}, {"rt_global_get_ex", &l.fnGlobalGetEx},
		{"rt_global_configure", &l.fnGlobalConfigure}, {"rt_open_ex", &l.fnOpenEx},
		{"rt_configure", &l.fnConfigure}, {"rt_close", &l.fnClose},
		{"rt_can_make", &l.fnCanMake}, {"rt_record", &l.fnRecord},
		{"rt_try_acquire", &l.fnTryAcquire}, {"rt_try_acquire_grant", &l.fnTryAcquireGrant},
		{"rt_settle", &l.fnSettle}, {"rt_wait_time", &l.fnWaitTime},
		{"rt_reset", &l.fnReset}, {"rt_stats_json_ex", &l.fnStatsJSONEx},
	}
	// Check the version first: an older or newer library may lack symbols,
	// and "wrong version" is the more useful message then.
	var buf [512]C.char
	for _, s := range syms[:2] {
		name := C.CString(s.name)
		*s.dst = C.rtgo_dlsym(h, name, &buf[0], C.size_t(len(buf)))
		C.free(unsafe.Pointer(name))
		if *s.dst == nil {
			return nil, fmt.Errorf("ratetrack: %s is not libratetrack: %s", path, C.GoString(&buf[0]))
		}
	}
	n := int(C.rtgo_int_void(l.fnVersionNumber))
	version := C.GoString(C.rtgo_cstr_void(l.fnVersionString))
	if err := checkVersion(n, version, path); err != nil {
		return nil, err
	}
	for _, s := range syms[2:] {
		name := C.CString(s.name)
		*s.dst = C.rtgo_dlsym(h, name, &buf[0], C.size_t(len(buf)))
		C.free(unsafe.Pointer(name))
		if *s.dst == nil {
			return nil, fmt.Errorf("%w: %s (libratetrack %s) lacks %s, so it is not the build this binding needs: %s",
				ErrVersionMismatch, path, version, s.name, C.GoString(&buf[0]))
		}
	}
	l.version = version
	optional := []struct {
		name string
		dst  *unsafe.Pointer
	}{
		{"rt_try_acquire_io", &l.fnTryAcquireIO}, {"rt_settle_io", &l.fnSettleIO},
		{"rt_pick", &l.fnPick}, {"rt_observe_headers", &l.fnObserveHeaders},
		{"rt_report_limited", &l.fnReportLimited},
		{"rt_metrics_text", &l.fnMetricsText}, {"rt_shm_list", &l.fnShmList},
		{"rt_shm_remove", &l.fnShmRemove},
		{"rt_record_tokens", &l.fnRecordTokens},
	}
	for _, s := range optional {
		name := C.CString(s.name)
		*s.dst = C.rtgo_dlsym(h, name, &buf[0], C.size_t(len(buf))) // nil if absent
		C.free(unsafe.Pointer(name))
	}
	return l, nil
}

// need returns nil if fn (the rt_ function name) was resolved, else an
// ErrVersionMismatch error naming it: the library is an earlier 0.1 build.
func (l *library) need(fn unsafe.Pointer, name string) error {
	if fn != nil {
		return nil
	}
	return fmt.Errorf("%w: %s (libratetrack %s) lacks %s; it needs a later 0.1 build",
		ErrVersionMismatch, l.path, l.version, name)
}

// checkVersion refuses a library version number (as rt_version_number:
// major*10000 + minor*100 + patch) whose major.minor is not the binding's.
func checkVersion(number int, version, path string) error {
	if number/100 == BindingVersionMajor*100+BindingVersionMinor {
		return nil
	}
	if version == "" {
		version = fmt.Sprintf("%d.%d.%d", number/10000, number/100%100, number%100)
	}
	return &VersionError{Path: path, Library: version,
		Binding: fmt.Sprintf("%d.%d", BindingVersionMajor, BindingVersionMinor)}
}

// LibraryVersion returns the version of the loaded library, as
// "MAJOR.MINOR.PATCH" and as MAJOR*10000+MINOR*100+PATCH. It loads the
// library if needed.
func LibraryVersion() (version string, number int, err error) {
	l, err := lib()
	if err != nil {
		return "", 0, err
	}
	return C.GoString(C.rtgo_cstr_void(l.fnVersionString)), int(C.rtgo_int_void(l.fnVersionNumber)), nil
}

// versionNumberCall calls rt_version_number(), a C function that only
// returns a constant, the way the hot calls reach the library (cgo, a C
// trampoline, the pointer dlsym gave, passed as an integer): the
// benchmark's floor.
func versionNumberCall(l *library) int {
	return int(C.rtgo_hot_int_void(addr(l.fnVersionNumber)))
}

// addr is a pointer to C memory (a function from dlsym, a tracker handle)
// as the integer the hot trampolines take: cgo checks no integer argument
// for Go pointers, as it checks each unsafe.Pointer one.
func addr(p unsafe.Pointer) C.uintptr_t { return C.uintptr_t(uintptr(p)) }

// LibraryPath returns the path or name the library was loaded from, or "" if
// it has not been loaded yet.
func LibraryPath() string {
	if l := loaded.Load(); l != nil {
		return l.path
	}
	return ""
}

// statusString is the library's static description of a status code.
func (l *library) statusString(code int) string {
	return C.GoString(C.rtgo_cstr_int(l.fnStatusString, C.int(code)))
}

// fail builds the error for a negative status. It must be called on the OS
// thread that made the failing call (the caller holds runtime.LockOSThread),
// because rt_last_error is thread-local.
func (l *library) fail(code int) error {
	msg := C.GoString(C.rtgo_cstr_void(l.fnLastError))
	if msg == "" {
		msg = l.statusString(code)
	}
	return newError(code, msg)
}

// checkText is the one check of every string the binding passes to C: C
// would stop at a NUL byte (reading "a/b\x00c" as "a/b"), and the C API
// takes UTF-8 only. Such a string is refused with an *Error of kind code
// (CodeInvalid for an argument, CodeConfig for a configuration); what names
// the argument.
func checkText(what, s string, code int) error {
	if strings.IndexByte(s, 0) >= 0 {
		return newError(code, fmt.Sprintf("%s %s contains a NUL byte", what, quoteShort(s)))
	}
	if !utf8.ValidString(s) {
		return newError(code, fmt.Sprintf("%s %s is not valid UTF-8", what, quoteShort(s)))
	}
	return nil
}

// quoteShort is s quoted for a message, its middle elided past 80 bytes.
func quoteShort(s string) string {
	if len(s) > 80 {
		return fmt.Sprintf("%q...%q", s[:40], s[len(s)-30:])
	}
	return fmt.Sprintf("%q", s)
}

// cstr returns s as a NUL-terminated C string in Go memory (valid for one
// cgo call: cgo pins it while the call runs; the library only borrows it).
// This avoids malloc/free per call. A string checkText refuses is an
// ErrInvalid error.
func cstr(what, s string) (*C.char, error) {
	return cstrKind(what, s, CodeInvalid)
}

// cstrKind is cstr with the kind of the error for a refused string.
func cstrKind(what, s string, code int) (*C.char, error) {
	if err := checkText(what, s, code); err != nil {
		return nil, err
	}
	b := make([]byte, len(s)+1)
	copy(b, s)
	return (*C.char)(unsafe.Pointer(&b[0])), nil
}

// cstrOrNil is cstrKind, with "" as NULL.
func cstrOrNil(what, s string, code int) (*C.char, error) {
	if s == "" {
		return nil, nil
	}
	return cstrKind(what, s, code)
}

// cModel is a model name that passed checkText and its NUL-terminated copy.
type cModel struct {
	s string
	b []byte
}

// modelSlots is the size of library.models.
const modelSlots = 16

// modelSlot is the slot of library.models for the name s (not empty): from
// its length and two of its bytes, which is enough to set apart the few
// names a process uses (two that share a slot replace each other's copy,
// as every name did when there was one slot).
func modelSlot(s string) int {
	return int((uint(len(s))*31 + uint(s[len(s)-1])*7 + uint(s[len(s)/2])) % modelSlots)
}

// model is cstr("model", s), reusing the copy of s made when it was last
// seen. A copy is Go memory that is never written once made, so goroutines
// can pass it to C at once (cgo pins it for each call).
func (l *library) model(s string) (*C.char, error) {
	if s == "" {
		return cstr("model", s)
	}
	slot := &l.models[modelSlot(s)]
	if c := slot.Load(); c != nil && c.s == s {
		return (*C.char)(unsafe.Pointer(&c.b[0])), nil
	}
	cm, err := cstr("model", s)
	if err != nil {
		return nil, err
	}
	slot.Store(&cModel{s: s, b: unsafe.Slice((*byte)(unsafe.Pointer(cm)), len(s)+1)})
	return cm, nil
}

// hotCheck turns a hot call's status and copied message into an error
// (the same error fail builds), freeing the copy.
func (l *library) hotCheck(rc C.int, msg *C.char) error {
	if rc >= 0 {
		return nil
	}
	text := ""
	if msg != nil {
		text = C.GoString(msg)
		C.free(unsafe.Pointer(msg))
	}
	if text == "" {
		text = l.statusString(int(rc))
	}
	return newError(int(rc), text)
}

// The calls below are the thin layer over the C functions. Each one that can
// fail locks the goroutine to its OS thread from the call until rt_last_error
// has been read (rt_last_error is thread-local), and frees what it must.
// Handles are passed as unsafe.Pointer (C memory, never Go memory).

// check turns a status into an error. Call it with the OS thread locked.
func (l *library) check(rc C.int) error {
	if rc < 0 {
		return l.fail(int(rc))
	}
	return nil
}

func (l *library) globalGet(tier string) (unsafe.Pointer, error) {
	ct, err := cstrOrNil("tier", tier, CodeInvalid)
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return l.handleOrError(C.rtgo_int_cstr_outptr(l.fnGlobalGetEx, ct))
}

func (l *library) open(config string) (unsafe.Pointer, error) {
	cc, err := cstrOrNil("configuration", config, CodeConfig)
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return l.handleOrError(C.rtgo_int_cstr_outptr(l.fnOpenEx, cc))
}

// handleOrError is the handle from rt_open_ex / rt_global_get_ex, or the
// error of their status code (RT_E_CONFIG, RT_E_INVALID, RT_E_NOMEM, ...).
// Call it with the OS thread locked.
func (l *library) handleOrError(r C.rtgo_pres) (unsafe.Pointer, error) {
	if err := l.check(r.rc); err != nil {
		return nil, err
	}
	if r.rc != 0 || r.p == nil {
		return nil, newError(CodeInternal, fmt.Sprintf("status %d without a handle", int(r.rc)))
	}
	return r.p, nil
}

func (l *library) globalConfigure(config string) error {
	cc, err := cstrKind("configuration", config, CodeConfig)
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return l.check(C.rtgo_int_cstr(l.fnGlobalConfigure, cc))
}

func (l *library) configure(h unsafe.Pointer, config string) error {
	cc, err := cstrKind("configuration", config, CodeConfig)
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return l.check(C.rtgo_int_t_cstr(l.fnConfigure, h, cc))
}

func (l *library) closeHandle(h unsafe.Pointer) { C.rtgo_close(l.fnClose, h) }

func (l *library) canMake(h unsafe.Pointer, model string, tokens uint64) (bool, error) {
	cm, err := l.model(model)
	if err != nil {
		return false, err
	}
	r := C.rtgo_hot_t_m_n(addr(l.fnCanMake), addr(l.fnLastError), addr(h), cm, C.uint64_t(tokens))
	return r.rc == 1, l.hotCheck(r.rc, r.err)
}

func (l *library) record(h unsafe.Pointer, model string, tokens uint64) error {
	cm, err := l.model(model)
	if err != nil {
		return err
	}
	r := C.rtgo_hot_t_m_n(addr(l.fnRecord), addr(l.fnLastError), addr(h), cm, C.uint64_t(tokens))
	return l.hotCheck(r.rc, r.err)
}

func (l *library) recordTokens(h unsafe.Pointer, model string, in, out uint64) error {
	if err := l.need(l.fnRecordTokens, "rt_record_tokens"); err != nil {
		return err
	}
	cm, err := cstr("model", model)
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return l.check(C.rtgo_int_t_m_n_n(l.fnRecordTokens, h, cm, C.uint64_t(in), C.uint64_t(out)))
}

// tryAcquire returns the status (RT_OK or RT_LIMITED) and the retry-after in ms.
func (l *library) tryAcquire(h unsafe.Pointer, model string, tokens uint64) (int, uint64, error) {
	cm, err := l.model(model)
	if err != nil {
		return 0, 0, err
	}
	r := C.rtgo_hot_try_acquire(addr(l.fnTryAcquire), addr(l.fnLastError), addr(h), cm, C.uint64_t(tokens))
	return int(r.rc), uint64(r.a), l.hotCheck(r.rc, r.err)
}

// tryAcquireGrant returns the status, the retry-after in ms and the ticket.
func (l *library) tryAcquireGrant(h unsafe.Pointer, model string, tokens uint64) (int, uint64, uint64, error) {
	cm, err := l.model(model)
	if err != nil {
		return 0, 0, 0, err
	}
	r := C.rtgo_hot_try_acquire_grant(addr(l.fnTryAcquireGrant), addr(l.fnLastError), addr(h), cm, C.uint64_t(tokens))
	return int(r.rc), uint64(r.a), uint64(r.b), l.hotCheck(r.rc, r.err)
}

func (l *library) settle(h unsafe.Pointer, model string, ticket, granted, actual uint64) error {
	cm, err := l.model(model)
	if err != nil {
		return err
	}
	r := C.rtgo_hot_settle(addr(l.fnSettle), addr(l.fnLastError), addr(h), cm, C.uint64_t(ticket), C.uint64_t(granted), C.uint64_t(actual))
	return l.hotCheck(r.rc, r.err)
}

// waitTime returns the wait in ms.
func (l *library) waitTime(h unsafe.Pointer, model string, tokens uint64) (uint64, error) {
	cm, err := cstr("model", model)
	if err != nil {
		return 0, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := C.rtgo_wait_time(l.fnWaitTime, h, cm, C.uint64_t(tokens))
	return uint64(r.a), l.check(r.rc)
}

// reset calls rt_reset; h == nil is the global.
func (l *library) reset(h unsafe.Pointer) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return l.check(C.rtgo_int_t(l.fnReset, h))
}

// statsJSON calls rt_stats_json_ex (h == nil: the global), copies the text
// and frees the library's string with rt_free. The error kind is the status
// code's (RT_E_INVALID, RT_E_NOMEM, ...).
func (l *library) statsJSON(h unsafe.Pointer) ([]byte, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := C.rtgo_stats_ex(l.fnStatsJSONEx, h)
	if r.p != nil {
		defer C.rtgo_free(l.fnFree, r.p)
	}
	if err := l.check(r.rc); err != nil {
		return nil, err
	}
	if r.rc != 0 || r.p == nil {
		return nil, newError(CodeInternal, fmt.Sprintf("rt_stats_json_ex: status %d without a string", int(r.rc)))
	}
	p := (*C.char)(r.p)
	return C.GoBytes(r.p, C.int(C.strlen(p))), nil
}

// cStrings copies ss into ONE C allocation: an array of len(ss) char*
// followed by the NUL-terminated strings they point at. Only C memory is
// passed to the library, so no Go pointer to a Go pointer crosses cgo.
// Returns (nil, no-op) for an empty ss; free must be called after the C call.
// A string checkText refuses is an ErrInvalid error; what names the strings.
func cStrings(what string, ss []string) (arr **C.char, free func(), err error) {
	if len(ss) == 0 {
		return nil, func() {}, nil
	}
	ptrBytes := len(ss) * int(unsafe.Sizeof((*C.char)(nil)))
	total := ptrBytes
	for _, s := range ss {
		if err := checkText(what, s, CodeInvalid); err != nil {
			return nil, nil, err
		}
		total += len(s) + 1
	}
	block := C.malloc(C.size_t(total))
	if block == nil {
		return nil, nil, newError(CodeNoMem, "cannot allocate the C string array")
	}
	ptrs := unsafe.Slice((**C.char)(block), len(ss))
	data := unsafe.Slice((*byte)(unsafe.Add(block, ptrBytes)), total-ptrBytes)
	off := 0
	for i, s := range ss {
		copy(data[off:], s)
		data[off+len(s)] = 0
		ptrs[i] = (*C.char)(unsafe.Pointer(&data[off]))
		off += len(s) + 1
	}
	return &ptrs[0], func() { C.free(block) }, nil
}

// tryAcquireIO returns the status, the retry-after in ms and the ticket.
func (l *library) tryAcquireIO(h unsafe.Pointer, model string, in, out uint64) (int, uint64, uint64, error) {
	if err := l.need(l.fnTryAcquireIO, "rt_try_acquire_io"); err != nil {
		return 0, 0, 0, err
	}
	cm, err := cstr("model", model)
	if err != nil {
		return 0, 0, 0, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := C.rtgo_try_acquire_io(l.fnTryAcquireIO, h, cm, C.uint64_t(in), C.uint64_t(out))
	return int(r.rc), uint64(r.a), uint64(r.b), l.check(r.rc)
}

func (l *library) settleIO(h unsafe.Pointer, model string, ticket, gin, gout, ain, aout uint64) error {
	if err := l.need(l.fnSettleIO, "rt_settle_io"); err != nil {
		return err
	}
	cm, err := cstr("model", model)
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return l.check(C.rtgo_settle_io(l.fnSettleIO, h, cm, C.uint64_t(ticket),
		C.uint64_t(gin), C.uint64_t(gout), C.uint64_t(ain), C.uint64_t(aout)))
}

// pick returns the status (RT_OK or RT_LIMITED), the picked index, the
// retry-after in ms and the ticket.
func (l *library) pick(h unsafe.Pointer, models []string, in, out uint64) (int, int, uint64, uint64, error) {
	if err := l.need(l.fnPick, "rt_pick"); err != nil {
		return 0, 0, 0, 0, err
	}
	arr, free, err := cStrings("model", models)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer free()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := C.rtgo_pick(l.fnPick, h, arr, C.size_t(len(models)), C.uint64_t(in), C.uint64_t(out))
	return int(r.rc), int(r.picked), uint64(r.retry), uint64(r.grant), l.check(r.rc)
}

// observeHeaders passes names and values (same length) as two C arrays of
// one C block.
func (l *library) observeHeaders(h unsafe.Pointer, model string, names, values []string) error {
	if err := l.need(l.fnObserveHeaders, "rt_observe_headers"); err != nil {
		return err
	}
	cm, err := cstr("model", model)
	if err != nil {
		return err
	}
	n := len(names)
	arr, free, err := cStrings("header", append(names[:n:n], values...))
	if err != nil {
		return err
	}
	defer free()
	var cn, cv **C.char
	if n > 0 {
		all := unsafe.Slice(arr, 2*n)
		cn, cv = &all[0], &all[n]
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return l.check(C.rtgo_observe_headers(l.fnObserveHeaders, h, cm, cn, cv, C.size_t(n)))
}

// reportLimited calls rt_report_limited; retryAfter "" is NULL.
func (l *library) reportLimited(h unsafe.Pointer, model, retryAfter string) error {
	if err := l.need(l.fnReportLimited, "rt_report_limited"); err != nil {
		return err
	}
	cm, err := cstr("model", model)
	if err != nil {
		return err
	}
	cr, err := cstrOrNil("retry-after", retryAfter, CodeInvalid)
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return l.check(C.rtgo_int_t_cstr_cstr(l.fnReportLimited, h, cm, cr))
}

// takeString copies the library's string of an out-parameter call (r from
// rtgo_stats_ex / rtgo_int_outstr) and frees it with rt_free. Call it with
// the OS thread locked.
func (l *library) takeString(fn string, r C.rtgo_pres) (string, error) {
	if r.p != nil {
		defer C.rtgo_free(l.fnFree, r.p)
	}
	if err := l.check(r.rc); err != nil {
		return "", err
	}
	if r.rc != 0 || r.p == nil {
		return "", newError(CodeInternal, fmt.Sprintf("%s: status %d without a string", fn, int(r.rc)))
	}
	return C.GoString((*C.char)(r.p)), nil
}

// metricsText calls rt_metrics_text (h == nil: the global).
func (l *library) metricsText(h unsafe.Pointer) (string, error) {
	if err := l.need(l.fnMetricsText, "rt_metrics_text"); err != nil {
		return "", err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return l.takeString("rt_metrics_text", C.rtgo_stats_ex(l.fnMetricsText, h))
}

// shmList calls rt_shm_list: the JSON array of segments.
func (l *library) shmList() (string, error) {
	if err := l.need(l.fnShmList, "rt_shm_list"); err != nil {
		return "", err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return l.takeString("rt_shm_list", C.rtgo_int_outstr(l.fnShmList))
}

// shmRemove calls rt_shm_remove.
func (l *library) shmRemove(name string) error {
	if err := l.need(l.fnShmRemove, "rt_shm_remove"); err != nil {
		return err
	}
	cn, err := cstr("segment name", name)
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return l.check(C.rtgo_int_cstr(l.fnShmRemove, cn))
}
