// Package ratetrack is the Go binding of libratetrack, a rate-limit tracker
// for LLM APIs shared by every caller of a process.
//
// The C library is loaded at run time with dlopen (see Load for where it is
// looked for); nothing links against it at build time. Every function is safe
// for concurrent use by many goroutines.
//
//	t, err := ratetrack.Global("tier1")
//	ok, retryAfter, err := t.TryAcquire("openai/gpt-4o-mini", 1200)
package ratetrack

import (
	"context"
	"encoding/json"
	"math"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// Tracker is a handle on a libratetrack tracker: the process-wide global one
// (Global) or a private one (Open). Its methods are safe for concurrent use.
type Tracker struct {
	lib    *library
	global bool

	mu      sync.RWMutex   // read-held by calls, write-held by Close
	h       unsafe.Pointer // nil once closed
	cleanup runtime.Cleanup
}

// Grant is an admitted request that can be settled to its real token count
// with (*Tracker).Settle.
type Grant struct {
	Model  string // the model the grant is for
	Ticket uint64 // the library's opaque grant ticket (never 0)
	Tokens uint64 // the tokens the grant was acquired with
}

// Global returns the process-wide global tracker, creating it on first use.
// tier ("tier1", "free", "openai=tier2,anthropic=tier1", ...) applies that
// tier; "" keeps the current one (or, at creation, RATETRACK_TIER, the
// configuration's tier, else "tier1"). Every call returns a handle on the same
// tracker; closing it does nothing. An unknown tier is an ErrConfig error.
func Global(tier string) (*Tracker, error) {
	l, err := lib()
	if err != nil {
		return nil, err
	}
	h, err := l.globalGet(tier)
	if err != nil {
		return nil, err
	}
	return &Tracker{lib: l, global: true, h: h}, nil
}

// Open creates a private tracker, independent of the global one, from a JSON
// configuration ("" for the defaults); see ratetrack.h for the keys. A bad
// configuration is an ErrConfig error naming the offending key. Close it when
// done (it is also closed when garbage collected).
func Open(configJSON string) (*Tracker, error) {
	l, err := lib()
	if err != nil {
		return nil, err
	}
	h, err := l.open(configJSON)
	if err != nil {
		return nil, err
	}
	t := &Tracker{lib: l, h: h}
	t.cleanup = runtime.AddCleanup(t, func(h unsafe.Pointer) { l.closeHandle(h) }, h)
	return t, nil
}

// ConfigureGlobal applies a JSON configuration to the global tracker, before
// or after it is created (keys present replace current values; recorded
// usage is kept).
func ConfigureGlobal(configJSON string) error {
	l, err := lib()
	if err != nil {
		return err
	}
	return l.globalConfigure(configJSON)
}

// ResetGlobal returns the global tracker to "never created" (rt_reset(NULL)):
// its usage is forgotten and GlobalStats returns nil until the next Global
// call, which chooses the tier again as at first creation (its argument,
// RATETRACK_TIER, the configuration's tier, else "tier1"). Until then the old
// tier's limits stay in force. Configuration from ConfigureGlobal is kept.
// Handles already returned by Global stay valid: they act on the emptied
// global.
func ResetGlobal() error {
	l, err := lib()
	if err != nil {
		return err
	}
	return l.reset(nil)
}

// GlobalStats returns the global tracker's usage, or nil if the global has
// not been created, or not been got again with Global since ResetGlobal.
func GlobalStats() (*Stats, error) {
	l, err := lib()
	if err != nil {
		return nil, err
	}
	b, err := l.statsJSON(nil)
	if err != nil {
		return nil, err
	}
	var s *Stats
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, newError(CodeInternal, "rt_stats_json_ex returned bad JSON: "+err.Error())
	}
	return s, nil
}

var errClosed = &Error{Code: CodeInvalid, Message: "tracker is closed"}

// acquire read-locks t against Close and returns its handle.
func (t *Tracker) acquire() (unsafe.Pointer, error) {
	if t.global {
		return t.h, nil
	}
	t.mu.RLock()
	if t.h == nil {
		t.mu.RUnlock()
		return nil, errClosed
	}
	return t.h, nil
}

func (t *Tracker) release() {
	if !t.global {
		t.mu.RUnlock()
	}
}

// Close frees a private tracker; later calls on it return an ErrInvalid
// error. It waits for calls in progress. Closing the global handle, or
// closing twice, does nothing.
func (t *Tracker) Close() error {
	if t.global {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.h != nil {
		t.cleanup.Stop()
		t.lib.closeHandle(t.h)
		t.h = nil
	}
	return nil
}

// IsGlobal reports whether t is the process-wide global tracker.
func (t *Tracker) IsGlobal() bool { return t.global }

// Configure applies a JSON configuration to t (keys present replace current
// values; "limits" replaces the configured limits as a whole; usage is kept).
func (t *Tracker) Configure(configJSON string) error {
	h, err := t.acquire()
	if err != nil {
		return err
	}
	defer t.release()
	return t.lib.configure(h, configJSON)
}

// CanMake reports whether a request of tokens tokens to model would fit every
// window now. It records nothing. A cost that can never fit is ErrTooLarge.
func (t *Tracker) CanMake(model string, tokens uint64) (bool, error) {
	h, err := t.acquire()
	if err != nil {
		return false, err
	}
	defer t.release()
	return t.lib.canMake(h, model, tokens)
}

// Record records that a request to model using tokens tokens happened now
// (even past a limit: it already happened).
func (t *Tracker) Record(model string, tokens uint64) error {
	h, err := t.acquire()
	if err != nil {
		return err
	}
	defer t.release()
	return t.lib.record(h, model, tokens)
}

// TryAcquire checks and records one request in one atomic step. It returns
// ok == true when admitted (and recorded); ok == false with retryAfter > 0
// when limited (nothing recorded; being limited is not an error); an
// ErrTooLarge error when the cost can never fit.
func (t *Tracker) TryAcquire(model string, tokens uint64) (ok bool, retryAfter time.Duration, err error) {
	h, err := t.acquire()
	if err != nil {
		return false, 0, err
	}
	defer t.release()
	rc, ms, err := t.lib.tryAcquire(h, model, tokens)
	if err != nil {
		return false, 0, err
	}
	return rc == CodeOK, millis(ms), nil
}

// TryAcquireGrant is TryAcquire that also returns a Grant, to Settle with the
// real token count once known. The grant is the zero Grant unless ok.
func (t *Tracker) TryAcquireGrant(model string, tokens uint64) (g Grant, ok bool, retryAfter time.Duration, err error) {
	h, err := t.acquire()
	if err != nil {
		return Grant{}, false, 0, err
	}
	defer t.release()
	rc, ms, ticket, err := t.lib.tryAcquireGrant(h, model, tokens)
	if err != nil {
		return Grant{}, false, 0, err
	}
	if rc != CodeOK {
		return Grant{}, false, millis(ms), nil
	}
	return Grant{Model: model, Ticket: ticket, Tokens: tokens}, true, 0, nil
}

// Acquire waits until a request of tokens tokens to model fits, records it
// and returns its Grant. It sleeps for the tracker's retry-after between
// attempts and returns ctx.Err() if ctx ends first (nothing recorded), or an
// ErrTooLarge error at once if the request can never fit.
func (t *Tracker) Acquire(ctx context.Context, model string, tokens uint64) (Grant, error) {
	var timer *time.Timer
	for {
		if err := ctx.Err(); err != nil {
			return Grant{}, err
		}
		g, ok, wait, err := t.TryAcquireGrant(model, tokens)
		if err != nil || ok {
			return g, err
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		} else {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return Grant{}, ctx.Err()
		case <-timer.C:
		}
	}
}

// Settle books the real token count of a grant (a refund or a top-up) at the
// moment of the grant; see rt_settle in ratetrack.h. Settle each grant once,
// on the tracker that issued it, with the Grant as returned (its Tokens are
// passed as granted_tokens). The library checks the ticket: a grant from
// another tracker, a forged ticket, or Tokens other than the grant's own is
// an ErrInvalid error, and nothing is changed.
func (t *Tracker) Settle(g Grant, actualTokens uint64) error {
	h, err := t.acquire()
	if err != nil {
		return err
	}
	defer t.release()
	return t.lib.settle(h, g.Model, g.Ticket, g.Tokens, actualTokens)
}

// WaitTime returns how long until a request of tokens tokens to model would
// fit (0: now). It records nothing. "Never" is an ErrTooLarge error.
func (t *Tracker) WaitTime(model string, tokens uint64) (time.Duration, error) {
	h, err := t.acquire()
	if err != nil {
		return 0, err
	}
	defer t.release()
	ms, err := t.lib.waitTime(h, model, tokens)
	if err != nil {
		return 0, err
	}
	return millis(ms), nil
}

// Reset clears all recorded usage of t, keeping its limits and tier. On the
// global handle it clears only usage; use ResetGlobal to forget the global.
func (t *Tracker) Reset() error {
	h, err := t.acquire()
	if err != nil {
		return err
	}
	defer t.release()
	return t.lib.reset(h)
}

// Stats returns t's usage: every model with limits, and every model used.
func (t *Tracker) Stats() (Stats, error) {
	var s Stats
	h, err := t.acquire()
	if err != nil {
		return s, err
	}
	b, err := t.lib.statsJSON(h)
	t.release()
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, newError(CodeInternal, "rt_stats_json_ex returned bad JSON: "+err.Error())
	}
	return s, nil
}

// millis converts milliseconds to a Duration, saturating (RT_WAIT_NEVER).
func millis(ms uint64) time.Duration {
	if ms > uint64(math.MaxInt64/int64(time.Millisecond)) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(ms) * time.Millisecond
}

// Stats is a tracker's usage, from rt_stats_json_ex.
type Stats struct {
	Tier    string `json:"tier"`
	Backend string `json:"backend"`
	// Models maps a model ("openai/gpt-4o-mini") to its windows by name:
	// requests_per_minute, tokens_per_minute, requests_per_day,
	// tokens_per_day, and requests_per_<N>s / tokens_per_<N>s.
	Models map[string]map[string]Window `json:"models"`
}

// Window is the usage of one window. Limit, Remaining and UsagePercent are
// nil when the window is unlimited (the library sends null); UsagePercent is
// otherwise 0 to 100 (or more when usage was recorded past the limit),
// rounded to three decimals.
type Window struct {
	Current      uint64   `json:"current"`
	Limit        *uint64  `json:"limit"`
	Remaining    *uint64  `json:"remaining"`
	UsagePercent *float64 `json:"usage_percent"`
}
