/*
 * ratetrack._fast: the binding's hot calls without ctypes.
 *
 * ctypes converts every argument of every call through a generic path (most
 * of the ~500 ns a try_acquire took through it, against ~100 ns for its empty
 * call). Here each hot call is one METH_FASTCALL function that takes its
 * arguments in the one form the binding passes them, calls the C function
 * and returns what the Tracker method returns.
 *
 * It does not link libratetrack: bind() resolves the functions with dlsym()
 * on the handle that ratetrack._library already opened with ctypes, so the
 * lookup order and the one-library-per-process rule stay in _library.py.
 *
 * The contract with _tracker.py, for every call function:
 *   - arguments in the fast form: the tracker handle a non-zero int (a
 *     closed tracker never gets here), the model an exact str that encodes
 *     to UTF-8 without a NUL, each count an exact int in 0..2**64-1. The
 *     model is the str itself, not the binding's cached bytes: CPython keeps
 *     a str's UTF-8 with it (an ASCII str's is its own buffer), and that
 *     saves the cache's dict lookup (about 20 ns);
 *   - anything else (bool, float, __index__ object, negative or too large
 *     count, str subclass, lone surrogate, NUL...) returns NotImplemented,
 *     having called nothing: the Tracker method then runs its checked
 *     ctypes path, which raises today's exceptions or converts the value.
 *     So both paths refuse the same input with the same errors;
 *   - otherwise it calls libratetrack and returns the method's result: the
 *     shared admitted Acquire, refusals[ms] or refused(ms), granted(model,
 *     ticket, tokens, output_tokens), a bool, a float or None; a negative
 *     status raises fail(status) (read on this thread, right after the
 *     call, so that rt_last_error() is this call's).
 *
 * The GIL is released around every call into libratetrack, as ctypes does.
 * Measured both ways (bench/bench.py; in-process backend, Python 3.11, a
 * 2-vCPU VM, 2026-12-06): keeping it would save about 30 ns a call (the
 * empty call 36 ns against 67, try_acquire 115 against 145), and with 2 or
 * 4 threads calling at once it never hands the GIL over mid-call, where
 * releasing it sometimes does at every call when the other core is idle
 * (4 threads: 550 ns a call against 105; ctypes does the same, 1,700). But
 * on a Redis backend a call is a network round trip, up to its timeout:
 * holding the GIL would stall every other thread of the process for it, and
 * the async forms' worker threads rely on several calls being in flight at
 * once. A handle does not say which backend it has, and the global tracker
 * can be reconfigured at any time from any language, so the choice cannot
 * be made per tracker here: the module releases, like ctypes. Building with
 * -DRT_FAST_HOLD_GIL (CFLAGS=-DRT_FAST_HOLD_GIL run-bench.sh) keeps the GIL,
 * for that comparison only.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

#include "ratetrack.h"

#if PY_VERSION_HEX < 0x03090000
#define PyObject_Vectorcall _PyObject_Vectorcall /* public from 3.9 */
#endif

/* The library's functions, typed by ratetrack.h's declarations. */
#define RT_FUNCTIONS(X)                                                      \
  X(rt_version_number) X(rt_can_make) X(rt_record) X(rt_record_tokens)       \
  X(rt_try_acquire) X(rt_try_acquire_grant) X(rt_try_acquire_io)             \
  X(rt_settle) X(rt_settle_io) X(rt_wait_time)
#define RT_POINTER(name) static __typeof__(name) *p_##name;
RT_FUNCTIONS(RT_POINTER)

static void *bound_handle;  /* the dlopen handle bind() resolved them from */

/* What the calls return, given by set_results(). */
static PyObject *admitted, *refusals, *refused, *granted, *fail;

/* ---------------------------------------------------------------- arguments */

/* The handle as Tracker keeps it (c_void_p's value; None once closed). Any
 * other non-zero int would be taken as an address, as ctypes would: the
 * functions are private to the binding. */
static int handle_arg(PyObject *o, rt_tracker **out) {
  unsigned long long v;
  if (!PyLong_CheckExact(o)) return 0;
  v = PyLong_AsUnsignedLongLong(o);
  if (v == (unsigned long long)-1 && PyErr_Occurred()) {
    PyErr_Clear();
    return 0;
  }
  if (v == 0 || v > UINTPTR_MAX) return 0;
  *out = (rt_tracker *)(uintptr_t)v;
  return 1;
}

static int model_arg(PyObject *o, const char **out) {
  Py_ssize_t size;
  if (!PyUnicode_CheckExact(o)) return 0;
  /* Cached in the str: no copy for ASCII, one encoding per str otherwise. */
  *out = PyUnicode_AsUTF8AndSize(o, &size);
  if (*out == NULL) {
    PyErr_Clear();
    return 0;
  }
  return memchr(*out, '\0', (size_t)size) == NULL;
}

static int count_arg(PyObject *o, uint64_t *out) {
  if (!PyLong_CheckExact(o)) return 0; /* bool, __index__ objects: checked path */
  *out = PyLong_AsUnsignedLongLong(o);
  if (*out == (uint64_t)-1 && PyErr_Occurred()) { /* negative, or past 2**64-1 */
    PyErr_Clear();
    return 0;
  }
  return 1;
}

#define SLOW() (Py_INCREF(Py_NotImplemented), Py_NotImplemented)

/* Checks the argument count (a bug in the binding, not the user's input). */
static int nargs_ok(Py_ssize_t nargs, Py_ssize_t want, const char *name) {
  if (nargs == want) return 1;
  PyErr_Format(PyExc_TypeError, "_fast.%s takes %zd arguments (%zd given)", name, want, nargs);
  return 0;
}

/* ------------------------------------------------------------------ results */

static PyObject *raise_status(int rc) {
  PyObject *code = PyLong_FromLong(rc), *exc;
  if (code == NULL) return NULL;
  exc = PyObject_Vectorcall(fail, &code, 1, NULL);
  Py_DECREF(code);
  if (exc == NULL) return NULL;
  PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
  Py_DECREF(exc);
  return NULL;
}

/* refusals[ms] (the binding's cache of refusals by their wait) when there,
 * else refused(ms), which makes one and caches it. */
/* The last refusal made, by its wait: callers polling a model at its
 * limit get the same wait many times a millisecond, and this answers them
 * without making an int and looking it up (a refusal then costs what an
 * admission does). Read and written with the GIL held. */
static uint64_t last_refusal_ms;
static PyObject *last_refusal; /* strong, or NULL */

static PyObject *refusal(uint64_t ms) {
  PyObject *arg, *result;
  if (last_refusal != NULL && ms == last_refusal_ms) {
    Py_INCREF(last_refusal);
    return last_refusal;
  }
  arg = PyLong_FromUnsignedLongLong(ms);
  if (arg == NULL) return NULL;
  result = PyDict_GetItemWithError(refusals, arg); /* borrowed */
  if (result != NULL)
    Py_INCREF(result);
  else if (!PyErr_Occurred())
    result = PyObject_Vectorcall(refused, &arg, 1, NULL);
  Py_DECREF(arg);
  if (result != NULL) {
    Py_INCREF(result);
    Py_XSETREF(last_refusal, result);
    last_refusal_ms = ms;
  }
  return result;
}

static PyObject *grant_result(PyObject *model, uint64_t ticket, PyObject *tokens,
                              PyObject *output_tokens) {
  PyObject *args[4] = {model, PyLong_FromUnsignedLongLong(ticket), tokens, output_tokens};
  PyObject *result;
  if (args[1] == NULL) return NULL;
  result = PyObject_Vectorcall(granted, args, 4, NULL);
  Py_DECREF(args[1]);
  return result;
}

static PyObject *none_or_raise(int rc) {
  if (rc < 0) return raise_status(rc);
  Py_RETURN_NONE;
}

/* The call into libratetrack, with the GIL released. */
#ifndef RT_FAST_HOLD_GIL
#define CALL(rc, expr)          \
  do {                          \
    Py_BEGIN_ALLOW_THREADS      \
    rc = expr;                  \
    Py_END_ALLOW_THREADS        \
  } while (0)
#else /* the benchmark's comparison only: never shipped (see the top) */
#define CALL(rc, expr) rc = expr
#endif

/* ---------------------------------------------------------------- the calls */

/* try_acquire(handle, model, tokens) -> Acquire */
static PyObject *try_acquire(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  rt_tracker *t;
  const char *model;
  uint64_t tokens, retry = 0;
  int rc;
  (void)self;
  if (!nargs_ok(nargs, 3, "try_acquire")) return NULL;
  if (!handle_arg(args[0], &t) || !model_arg(args[1], &model) || !count_arg(args[2], &tokens))
    return SLOW();
  CALL(rc, p_rt_try_acquire(t, model, tokens, &retry));
  if (rc == RT_OK) {
    Py_INCREF(admitted);
    return admitted;
  }
  return rc == RT_LIMITED ? refusal(retry) : raise_status(rc);
}

/* try_acquire_grant(handle, model, tokens) -> Acquire with a Grant */
static PyObject *try_acquire_grant(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  rt_tracker *t;
  const char *model;
  uint64_t tokens, retry = 0, ticket = 0;
  int rc;
  (void)self;
  if (!nargs_ok(nargs, 3, "try_acquire_grant")) return NULL;
  if (!handle_arg(args[0], &t) || !model_arg(args[1], &model) || !count_arg(args[2], &tokens))
    return SLOW();
  CALL(rc, p_rt_try_acquire_grant(t, model, tokens, &retry, &ticket));
  if (rc == RT_OK) {
    PyObject *zero = PyLong_FromLong(0), *result;
    if (zero == NULL) return NULL;
    result = grant_result(args[1], ticket, args[2], zero);
    Py_DECREF(zero);
    return result;
  }
  return rc == RT_LIMITED ? refusal(retry) : raise_status(rc);
}

/* try_acquire_io(handle, model, input_tokens, output_tokens) -> Acquire with a Grant */
static PyObject *try_acquire_io(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  rt_tracker *t;
  const char *model;
  uint64_t in, out, retry = 0, ticket = 0;
  int rc;
  (void)self;
  if (!nargs_ok(nargs, 4, "try_acquire_io")) return NULL;
  if (!handle_arg(args[0], &t) || !model_arg(args[1], &model) || !count_arg(args[2], &in) ||
      !count_arg(args[3], &out))
    return SLOW();
  CALL(rc, p_rt_try_acquire_io(t, model, in, out, &retry, &ticket));
  if (rc == RT_OK) return grant_result(args[1], ticket, args[2], args[3]);
  return rc == RT_LIMITED ? refusal(retry) : raise_status(rc);
}

/* can_make(handle, model, tokens) -> bool */
static PyObject *can_make(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  rt_tracker *t;
  const char *model;
  uint64_t tokens;
  int rc;
  (void)self;
  if (!nargs_ok(nargs, 3, "can_make")) return NULL;
  if (!handle_arg(args[0], &t) || !model_arg(args[1], &model) || !count_arg(args[2], &tokens))
    return SLOW();
  CALL(rc, p_rt_can_make(t, model, tokens));
  if (rc < 0) return raise_status(rc);
  return PyBool_FromLong(rc == 1);
}

/* record(handle, model, tokens) -> None */
static PyObject *record(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  rt_tracker *t;
  const char *model;
  uint64_t tokens;
  int rc;
  (void)self;
  if (!nargs_ok(nargs, 3, "record")) return NULL;
  if (!handle_arg(args[0], &t) || !model_arg(args[1], &model) || !count_arg(args[2], &tokens))
    return SLOW();
  CALL(rc, p_rt_record(t, model, tokens));
  return none_or_raise(rc);
}

/* record_tokens(handle, model, input_tokens, output_tokens) -> None */
static PyObject *record_tokens(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  rt_tracker *t;
  const char *model;
  uint64_t in, out;
  int rc;
  (void)self;
  if (!nargs_ok(nargs, 4, "record_tokens")) return NULL;
  if (!handle_arg(args[0], &t) || !model_arg(args[1], &model) || !count_arg(args[2], &in) ||
      !count_arg(args[3], &out))
    return SLOW();
  CALL(rc, p_rt_record_tokens(t, model, in, out));
  return none_or_raise(rc);
}

/* settle(handle, model, ticket, granted_tokens, actual_tokens) -> None */
static PyObject *settle(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  rt_tracker *t;
  const char *model;
  uint64_t ticket, granted_tokens, actual;
  int rc;
  (void)self;
  if (!nargs_ok(nargs, 5, "settle")) return NULL;
  if (!handle_arg(args[0], &t) || !model_arg(args[1], &model) || !count_arg(args[2], &ticket) ||
      !count_arg(args[3], &granted_tokens) || !count_arg(args[4], &actual))
    return SLOW();
  CALL(rc, p_rt_settle(t, model, ticket, granted_tokens, actual));
  return none_or_raise(rc);
}

/* settle_io(handle, model, ticket, granted_in, granted_out, actual_in, actual_out) -> None */
static PyObject *settle_io(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  rt_tracker *t;
  const char *model;
  uint64_t n[5];
  int rc, i;
  (void)self;
  if (!nargs_ok(nargs, 7, "settle_io")) return NULL;
  if (!handle_arg(args[0], &t) || !model_arg(args[1], &model)) return SLOW();
  for (i = 0; i < 5; i++)
    if (!count_arg(args[2 + i], &n[i])) return SLOW();
  CALL(rc, p_rt_settle_io(t, model, n[0], n[1], n[2], n[3], n[4]));
  return none_or_raise(rc);
}

/* wait_time(handle, model, tokens) -> float seconds */
static PyObject *wait_time(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  rt_tracker *t;
  const char *model;
  uint64_t tokens, wait = 0;
  int rc;
  (void)self;
  if (!nargs_ok(nargs, 3, "wait_time")) return NULL;
  if (!handle_arg(args[0], &t) || !model_arg(args[1], &model) || !count_arg(args[2], &tokens))
    return SLOW();
  CALL(rc, p_rt_wait_time(t, model, tokens, &wait));
  if (rc < 0) return raise_status(rc);
  return PyFloat_FromDouble((double)wait / 1000.0);
}

/* floor() -> int: rt_version_number() through this module, for the benchmark
 * (what an empty call costs here, as the ctypes floor does there). */
static PyObject *floor_call(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  int v;
  (void)self;
  (void)args;
  if (!nargs_ok(nargs, 0, "floor")) return NULL;
  CALL(v, p_rt_version_number());
  return PyLong_FromLong(v);
}

/* ------------------------------------------------------------------- set-up */

/* bind(handle): resolves the functions in the library ctypes opened
 * (CDLL._handle). Once per process: a second, other handle is refused. */
static PyObject *bind(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  void *handle;
  (void)self;
  if (!nargs_ok(nargs, 1, "bind")) return NULL;
  handle = PyLong_AsVoidPtr(args[0]);
  if (handle == NULL) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "_fast.bind: NULL handle");
    return NULL;
  }
  if (bound_handle != NULL) {
    if (handle == bound_handle) Py_RETURN_NONE;
    PyErr_SetString(PyExc_RuntimeError, "_fast.bind: already bound to another library");
    return NULL;
  }
#define RT_RESOLVE(name)                                                          \
  {                                                                               \
    void *sym = dlsym(handle, #name);                                             \
    if (sym == NULL) {                                                            \
      PyErr_Format(PyExc_OSError, "_fast.bind: %s is not in the library", #name); \
      return NULL;                                                                \
    }                                                                             \
    memcpy(&p_##name, &sym, sizeof sym);                                          \
  }
  RT_FUNCTIONS(RT_RESOLVE)
#undef RT_RESOLVE
  bound_handle = handle;
  Py_RETURN_NONE;
}

/* set_results(admitted, refusals, refused, granted, fail): what the calls
 * return (see the top). */
static PyObject *set_results(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  PyObject **slots[5] = {&admitted, &refusals, &refused, &granted, &fail};
  int i;
  (void)self;
  if (!nargs_ok(nargs, 5, "set_results")) return NULL;
  if (!PyDict_CheckExact(args[1])) {
    PyErr_SetString(PyExc_TypeError, "_fast.set_results: refusals must be a dict");
    return NULL;
  }
  for (i = 2; i < 5; i++)
    if (!PyCallable_Check(args[i])) {
      PyErr_Format(PyExc_TypeError, "_fast.set_results: argument %d is not callable", i + 1);
      return NULL;
    }
  for (i = 0; i < 5; i++) {
    Py_INCREF(args[i]);
    Py_XSETREF(*slots[i], args[i]);
  }
  Py_CLEAR(last_refusal); /* made by the refused() given before */
  Py_RETURN_NONE;
}

/* bound() -> bool: whether bind() and set_results() were both called. */
static PyObject *bound(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  return PyBool_FromLong(bound_handle != NULL && fail != NULL);
}

#define FAST(name, doc) {#name, (PyCFunction)(void (*)(void))name, METH_FASTCALL, doc}
static PyMethodDef methods[] = {
    FAST(try_acquire, "try_acquire(handle, model, tokens)"),
    FAST(try_acquire_grant, "try_acquire_grant(handle, model, tokens)"),
    FAST(try_acquire_io, "try_acquire_io(handle, model, input_tokens, output_tokens)"),
    FAST(can_make, "can_make(handle, model, tokens)"),
    FAST(record, "record(handle, model, tokens)"),
    FAST(record_tokens, "record_tokens(handle, model, input_tokens, output_tokens)"),
    FAST(settle, "settle(handle, model, ticket, granted_tokens, actual_tokens)"),
    FAST(settle_io, "settle_io(handle, model, ticket, granted_in, granted_out, actual_in, actual_out)"),
    FAST(wait_time, "wait_time(handle, model, tokens)"),
    {"floor", (PyCFunction)(void (*)(void))floor_call, METH_FASTCALL,
     "floor(): rt_version_number() through this module (the benchmark's empty call)"},
    FAST(bind, "bind(dlopen_handle): resolves the functions in the library ctypes opened"),
    FAST(set_results, "set_results(admitted, refusals, refused, granted, fail)"),
    {"bound", bound, METH_NOARGS, "bound(): whether bind() and set_results() were called"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "ratetrack._fast",
    "The binding's hot calls without ctypes (see _tracker.py); private.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fast(void) { return PyModule_Create(&module); }
