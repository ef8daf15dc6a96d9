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
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
	"unsafe"
)

// Tracker is a handle on a libratetrack tracker: the process-wide global one
// (Global) or a private one (Open). Its methods are safe for concurrent use.
type Tracker struct {
	lib    *library
	global bool

	mu sync.RWMutex   // read-held by calls, write-held by Close
	h  unsafe.Pointer // nil once closed
}

// Grant is an admitted request that can be settled to its real token count
// with (*Tracker).Settle or (*Tracker).SettleIO.
//
// A plain grant (TryAcquireGrant, Acquire) counts all its Tokens as input
// tokens and has OutputTokens 0; a grant from TryAcquireIO, AcquireIO or Pick
// carries the input (Tokens) and output (OutputTokens) it reserved.
type Grant struct {
	Model        string // the model the grant is for
	Ticket       uint64 // the library's opaque grant ticket (never 0)
	Tokens       uint64 // the (input) tokens the grant was acquired with
	OutputTokens uint64 // the output tokens reserved (max_tokens); 0 for a plain grant
}

// InputTokens is g.Tokens: the input tokens the grant reserved.
func (g Grant) InputTokens() uint64 { return g.Tokens }

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
	runtime.SetFinalizer(t, (*Tracker).Close) // Close clears it
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
		runtime.SetFinalizer(t, nil)
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

// RecordTokens books inputTokens and outputTokens to a request to model that
// was already counted (by TryAcquire, Acquire, Record, ...), without counting
// another request (rt_record_tokens): for callback-style code that learns a
// call's usage after the fact and holds no Grant. The tokens are added to the
// model's token windows now (request windows unchanged) and count against
// what the provider said remains. Always recorded, even past a limit. A
// library without rt_record_tokens (an earlier 0.1 build) gives an error
// matching ErrVersionMismatch.
func (t *Tracker) RecordTokens(model string, inputTokens, outputTokens uint64) error {
	h, err := t.acquire()
	if err != nil {
		return err
	}
	defer t.release()
	return t.lib.recordTokens(h, model, inputTokens, outputTokens)
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

// TryAcquireIO is TryAcquireGrant with the two sides counted apart
// (rt_try_acquire_io): reserve the prompt's inputTokens and outputTokens =
// max_tokens, then SettleIO the grant with the response's real counts.
// Windows of input or output tokens count their side; token windows count
// both. The grant is the zero Grant unless ok.
func (t *Tracker) TryAcquireIO(model string, inputTokens, outputTokens uint64) (g Grant, ok bool, retryAfter time.Duration, err error) {
	h, err := t.acquire()
	if err != nil {
		return Grant{}, false, 0, err
	}
	defer t.release()
	rc, ms, ticket, err := t.lib.tryAcquireIO(h, model, inputTokens, outputTokens)
	if err != nil {
		return Grant{}, false, 0, err
	}
	if rc != CodeOK {
		return Grant{}, false, millis(ms), nil
	}
	return Grant{Model: model, Ticket: ticket, Tokens: inputTokens, OutputTokens: outputTokens}, true, 0, nil
}

// Acquire waits until a request of tokens tokens to model fits, records it
// and returns its Grant. It sleeps for the tracker's retry-after between
// attempts and returns ctx.Err() if ctx ends first (nothing recorded), or an
// ErrTooLarge error at once if the request can never fit.
func (t *Tracker) Acquire(ctx context.Context, model string, tokens uint64) (Grant, error) {
	return waitFor(ctx, func() (Grant, bool, time.Duration, error) { return t.TryAcquireGrant(model, tokens) })
}

// AcquireIO is Acquire with input and output tokens counted apart (see
// TryAcquireIO).
func (t *Tracker) AcquireIO(ctx context.Context, model string, inputTokens, outputTokens uint64) (Grant, error) {
	return waitFor(ctx, func() (Grant, bool, time.Duration, error) {
		return t.TryAcquireIO(model, inputTokens, outputTokens)
	})
}

// waitFor calls try until it admits (or fails), sleeping for its
// retry-after in between, or until ctx ends.
func waitFor(ctx context.Context, try func() (Grant, bool, time.Duration, error)) (Grant, error) {
	var timer *time.Timer
	for {
		if err := ctx.Err(); err != nil {
			return Grant{}, err
		}
		g, ok, wait, err := try()
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
//
// A grant that reserved output tokens (OutputTokens > 0) must be settled with
// SettleIO: Settle refuses it with an ErrInvalid error rather than book the
// whole count as input.
func (t *Tracker) Settle(g Grant, actualTokens uint64) error {
	if g.OutputTokens != 0 {
		return newError(CodeInvalid, "the grant reserved output tokens: settle it with SettleIO(grant, input, output)")
	}
	h, err := t.acquire()
	if err != nil {
		return err
	}
	defer t.release()
	return t.lib.settle(h, g.Model, g.Ticket, g.Tokens, actualTokens)
}

// SettleIO settles a grant to the real input and output token counts (as the
// response's usage reports them), rt_settle_io: each window is settled for
// its own unit, at the moment of the grant. The grant's Tokens and
// OutputTokens are passed as granted_input and granted_output, so pass the
// Grant as returned (any grant: a plain one reserved its tokens as input).
// Settle each grant once.
func (t *Tracker) SettleIO(g Grant, actualInput, actualOutput uint64) error {
	h, err := t.acquire()
	if err != nil {
		return err
	}
	defer t.release()
	return t.lib.settleIO(h, g.Model, g.Ticket, g.Tokens, g.OutputTokens, actualInput, actualOutput)
}

// PickResult is the answer of Pick. When OK, Grant is the admitted request
// on Model (models[Index]). When not OK (limited: not an error), Model and
// Index name the candidate that frees up first and RetryAfter is its wait.
type PickResult struct {
	OK         bool
	Model      string
	Index      int
	Grant      Grant         // the zero Grant unless OK
	RetryAfter time.Duration // 0 when OK
}

// Pick acquires on the first of models (in order of preference) that can
// take a request of inputTokens and outputTokens now (rt_pick), each with
// one atomic acquire. When none can, the result is not OK and names the
// candidate that frees up first, with its wait. A request that exceeds a
// limit of every candidate outright is an ErrTooLarge error; no models, or
// an empty name, is ErrInvalid.
func (t *Tracker) Pick(models []string, inputTokens, outputTokens uint64) (PickResult, error) {
	h, err := t.acquire()
	if err != nil {
		return PickResult{}, err
	}
	defer t.release()
	rc, i, ms, ticket, err := t.lib.pick(h, models, inputTokens, outputTokens)
	if err != nil {
		return PickResult{}, err
	}
	if i < 0 || i >= len(models) {
		return PickResult{}, newError(CodeInternal, fmt.Sprintf("rt_pick: index %d of %d candidates", i, len(models)))
	}
	r := PickResult{Model: models[i], Index: i}
	if rc != CodeOK {
		r.RetryAfter = millis(ms)
		return r, nil
	}
	r.OK = true
	r.Grant = Grant{Model: models[i], Ticket: ticket, Tokens: inputTokens, OutputTokens: outputTokens}
	return r, nil
}

// ObserveHeaders feeds a response's rate-limit headers back
// (rt_observe_headers): OpenAI's x-ratelimit-* and Anthropic's
// anthropic-ratelimit-* (names case-insensitive). Afterwards the tracker
// never believes in more capacity than the provider reported. An
// http.Header can be passed as is; every value of a multi-valued header is
// passed. Unknown or malformed headers are skipped, including names or
// values that are not valid UTF-8 (net/http passes obs-text bytes through);
// a NUL byte in a name or value is an ErrInvalid error and nothing is
// observed (C would cut the text short at it; no HTTP stack delivers one).
func (t *Tracker) ObserveHeaders(model string, headers map[string][]string) error {
	var names, values []string
	var err error
	for name, vs := range headers {
		for _, v := range vs {
			if names, values, err = appendHeader(names, values, name, v); err != nil {
				return err
			}
		}
	}
	return t.observe(model, names, values)
}

// ObserveHeaderMap is ObserveHeaders for single-valued headers.
func (t *Tracker) ObserveHeaderMap(model string, headers map[string]string) error {
	var names, values []string
	var err error
	for name, v := range headers {
		if names, values, err = appendHeader(names, values, name, v); err != nil {
			return err
		}
	}
	return t.observe(model, names, values)
}

// appendHeader adds one pair, skips it if it is not UTF-8 (malformed, as the
// library skips its own), or refuses a NUL byte.
func appendHeader(names, values []string, name, value string) ([]string, []string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return names, values, checkText("header name", name, CodeInvalid)
	}
	if strings.IndexByte(value, 0) >= 0 {
		return names, values, checkText("header value", value, CodeInvalid)
	}
	if !utf8.ValidString(name) || !utf8.ValidString(value) {
		return names, values, nil
	}
	return append(names, name), append(values, value), nil
}

func (t *Tracker) observe(model string, names, values []string) error {
	h, err := t.acquire()
	if err != nil {
		return err
	}
	defer t.release()
	return t.lib.observeHeaders(h, model, names, values)
}

// ReportLimited reports a 429 from the provider (rt_report_limited): model is
// refused (TryAcquire not ok, the remaining time as the retry-after) until
// the time the Retry-After header says, delay seconds ("30", "1.5") or an
// HTTP date. "" or an unreadable value: 1 second. At most a day. On a shared
// backend ("shm:", Redis) every process sharing it is stopped too.
func (t *Tracker) ReportLimited(model, retryAfter string) error {
	h, err := t.acquire()
	if err != nil {
		return err
	}
	defer t.release()
	return t.lib.reportLimited(h, model, retryAfter)
}

// ReportLimitedAfter is ReportLimited with the delay as a Duration (passed
// as decimal seconds; 0 blocks nothing). A negative delay is an ErrInvalid
// error, as it is in every binding.
func (t *Tracker) ReportLimitedAfter(model string, retryAfter time.Duration) error {
	if retryAfter < 0 {
		return newError(CodeInvalid, fmt.Sprintf("retry-after %v is negative", retryAfter))
	}
	return t.ReportLimited(model, durationSeconds(retryAfter))
}

// durationSeconds formats d as decimal seconds ("2", "1.5", "0.001"), never
// with an exponent; a negative d is "0".
func durationSeconds(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	s := strconv.FormatInt(int64(d/time.Second), 10)
	if frac := d % time.Second; frac != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%09d", int64(frac)), "0")
	}
	return s
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

// MetricsText returns t's usage in the Prometheus text exposition format
// (version 0.0.4, rt_metrics_text), to serve on the agent's own HTTP server:
// ratetrack_info, ratetrack_window_usage/_limit/_remaining/_observed_limit
// {model,window}, ratetrack_admitted_total/ratetrack_refused_total{model}
// (this process's TryAcquire and Pick decisions), ratetrack_blocked_seconds,
// ratetrack_backend_errors_total and ratetrack_backend_up.
func (t *Tracker) MetricsText() (string, error) {
	h, err := t.acquire()
	if err != nil {
		return "", err
	}
	defer t.release()
	return t.lib.metricsText(h)
}

// GlobalMetricsText is MetricsText of the global tracker (rt_metrics_text
// with NULL); before the global is created it is a single comment line.
func GlobalMetricsText() (string, error) {
	l, err := lib()
	if err != nil {
		return "", err
	}
	return l.metricsText(nil)
}

// ShmSegment is one "shm:NAME" shared-memory segment in /dev/shm, from
// rt_shm_list. The fields read from the segment's header (LayoutVersion,
// Models, Capacity, CreatorPID, CreatedUnixMS) are nil when the header could
// not be read or is not libratetrack's; Error then says why, if known.
type ShmSegment struct {
	Name          string  `json:"name"`  // NAME of "shm:NAME"
	Path          string  `json:"path"`  // "/dev/shm/ratetrack.NAME"
	Bytes         uint64  `json:"bytes"` // size of the file
	Mode          string  `json:"mode"`  // permissions, octal: "0600"
	UID           uint32  `json:"uid"`   // owner
	Compatible    bool    `json:"compatible"`
	LayoutVersion *uint32 `json:"layout_version,omitempty"`
	Models        *uint64 `json:"models,omitempty"`   // model slots in use
	Capacity      *uint64 `json:"capacity,omitempty"` // model slots in all
	CreatorPID    *int64  `json:"creator_pid,omitempty"`
	CreatedUnixMS *int64  `json:"created_unix_ms,omitempty"`
	Error         string  `json:"error,omitempty"`
}

// ShmList lists the shared-memory segments in /dev/shm (rt_shm_list); an
// empty (non-nil) slice when there are none.
func ShmList() ([]ShmSegment, error) {
	l, err := lib()
	if err != nil {
		return nil, err
	}
	text, err := l.shmList()
	if err != nil {
		return nil, err
	}
	segs := []ShmSegment{}
	if err := json.Unmarshal([]byte(text), &segs); err != nil {
		return nil, newError(CodeInternal, "rt_shm_list returned bad JSON: "+err.Error())
	}
	return segs, nil
}

// ShmRemove removes (unlinks) the segment NAME (rt_shm_remove). Processes
// that have it mapped keep using their mapping, so stop them first or the
// budget splits in two. A bad or unknown NAME is an ErrInvalid error.
func ShmRemove(name string) error {
	l, err := lib()
	if err != nil {
		return err
	}
	return l.shmRemove(name)
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
	// tokens_per_day, requests_per_<N>s / tokens_per_<N>s,
	// input_tokens_... / output_tokens_... (e.g. input_tokens_per_minute),
	// and <unit>_per_calendar_day.
	Models map[string]map[string]Window `json:"models"`
	// Provider maps a model to what its provider said (headers observed,
	// 429s reported); nil when nothing was.
	Provider map[string]ProviderState `json:"provider,omitempty"`
}

// ProviderState is what the provider last said about one model. Each of
// Requests, Tokens, InputTokens and OutputTokens is nil when no header
// reported it.
type ProviderState struct {
	// BlockedForMS is how long, in ms, the model stays refused after a
	// reported 429 (0: not blocked).
	BlockedForMS uint64          `json:"blocked_for_ms"`
	Requests     *ProviderReport `json:"requests,omitempty"`
	Tokens       *ProviderReport `json:"tokens,omitempty"`
	InputTokens  *ProviderReport `json:"input_tokens,omitempty"`
	OutputTokens *ProviderReport `json:"output_tokens,omitempty"`
}

// ProviderReport is one reported limit; each field is nil when the
// provider did not say (the library sends null).
type ProviderReport struct {
	Remaining *uint64 `json:"remaining"`
	ResetInMS *uint64 `json:"reset_in_ms"` // ms until the reported reset
	Limit     *uint64 `json:"limit"`
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
	// ObservedLimit is the provider's own limit where it differs from the
	// configured one (from observed headers; per-minute windows); nil
	// otherwise.
	ObservedLimit *uint64 `json:"observed_limit,omitempty"`
	// ResetsAtMidnight is the IANA zone of a calendar-day window ("" for
	// other windows).
	ResetsAtMidnight string `json:"resets_at_midnight,omitempty"`
}
