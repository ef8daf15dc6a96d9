package ratetrack

// One line for the official OpenAI and Anthropic Go SDKs (and any client of
// their HTTP APIs): an HTTP middleware, and the same as an http.RoundTripper,
// that acquires before every attempt, feeds the provider's answer back and
// settles to the real usage. Only net/http: the SDKs are not dependencies.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// DefaultOutputTokens is the output estimate of a request whose body sets
// none of max_tokens, max_completion_tokens and max_output_tokens, when
// SDKOptions.DefaultOutputTokens is 0.
const DefaultOutputTokens = 1024

// SDKOptions configures Middleware and NewTransport. The zero value (or nil)
// waits for room as long as the request's context allows and names models
// "openai/<model>" or "anthropic/<model>" from the request.
type SDKOptions struct {
	// Provider is the provider part of the tracker's model name
	// ("provider/model"). "": from the request's URL path, "anthropic" for
	// a path with /messages (Anthropic's Messages API), else "openai".
	Provider string
	// Model maps the provider and the request body's "model" to the
	// tracker's model name; nil: provider + "/" + model.
	Model func(provider, model string) string
	// FailFast makes a request with no room fail at once with a
	// *LimitedError instead of waiting.
	FailFast bool
	// MaxWait bounds the wait for room (0: as long as the request's context
	// allows); past it the request fails with a *LimitedError.
	MaxWait time.Duration
	// DefaultOutputTokens is the output estimate when the body sets no
	// max_tokens / max_completion_tokens / max_output_tokens (0: 1024).
	DefaultOutputTokens uint64
	// EstimateInput replaces the input-token estimate; it gets the request's
	// JSON body. nil: EstimateInputTokens.
	EstimateInput func(body []byte) uint64
	// OnError receives what the tracker could not do once the request has
	// gone out (observe headers, report a 429, settle): the response is
	// returned all the same, since the call has happened. nil: log.Printf.
	OnError func(model string, err error)
}

// ErrLimited matches (errors.Is) a *LimitedError.
var ErrLimited = errors.New("ratetrack: rate limited")

// LimitedError is returned by Middleware and NewTransport when a request
// found no room (SDKOptions.FailFast) or did not within SDKOptions.MaxWait.
// Nothing was sent and nothing was booked.
type LimitedError struct {
	Model      string        // the tracker's model name
	RetryAfter time.Duration // how long until it would fit, as the tracker knows now
}

func (e *LimitedError) Error() string {
	return fmt.Sprintf("ratetrack: %s is rate limited; retry in %v", e.Model, e.RetryAfter)
}

// Is makes errors.Is(err, ErrLimited) true.
func (e *LimitedError) Is(target error) bool { return target == ErrLimited }

// Middleware returns an HTTP middleware with the signature of the official
// SDKs' option.Middleware (github.com/openai/openai-go/v3 and
// github.com/anthropics/anthropic-sdk-go/v2), which they call for every
// attempt, their own retries included:
//
//	client := openai.NewClient(option.WithMiddleware(ratetrack.Middleware(tracker, nil)))
//
// For every POST with a JSON body naming a "model" (other requests pass
// through untouched; so do .../count_tokens requests), it:
//   - names the model "provider/model" (see SDKOptions);
//   - estimates the input tokens (EstimateInputTokens) and takes the output
//     from max_completion_tokens, max_tokens or max_output_tokens;
//   - acquires that with AcquireIO before sending, waiting for room (with
//     the request's context, SDKOptions.MaxWait) or failing fast with a
//     *LimitedError;
//   - observes the rate-limit headers of the response;
//   - on a 429, reports it with its Retry-After (or retry-after-ms), so that
//     every caller of the model waits, and settles the attempt to 0 tokens;
//   - settles to the response's real usage (the body is read and restored);
//     for a stream (text/event-stream) as the usage event passes by: OpenAI's
//     last chunk (the middleware sets stream_options.include_usage on a
//     streamed chat completion unless the request says otherwise),
//     Anthropic's message_start and message_delta, the Responses API's
//     response.completed.
//
// Each attempt is one request, as the provider counts it: a retry acquires
// again (waiting out a reported 429 first) and books one more request, and
// the tokens are booked once, by the attempt that succeeded (a failed
// attempt is settled to 0 tokens). An attempt that got no response (a
// transport error) keeps its estimate: the provider may have processed it.
// A 2xx response without usage keeps its estimate too.
func Middleware(t *Tracker, opts *SDKOptions) func(*http.Request, func(*http.Request) (*http.Response, error)) (*http.Response, error) {
	m := newSDKMiddleware(t, opts)
	return m.do
}

// NewTransport is Middleware as an http.RoundTripper over base (nil:
// http.DefaultTransport), for option.WithHTTPClient(&http.Client{Transport:
// ...}) or any other HTTP client.
func NewTransport(t *Tracker, base http.RoundTripper, opts *SDKOptions) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{m: newSDKMiddleware(t, opts), base: base}
}

type transport struct {
	m    *sdkMiddleware
	base http.RoundTripper
}

func (tr *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return tr.m.do(req, tr.base.RoundTrip)
}

type sdkMiddleware struct {
	t    *Tracker
	opts SDKOptions
}

func newSDKMiddleware(t *Tracker, opts *SDKOptions) *sdkMiddleware {
	if t == nil {
		panic("ratetrack: Middleware needs a *Tracker")
	}
	m := &sdkMiddleware{t: t}
	if opts != nil {
		m.opts = *opts
	}
	if m.opts.DefaultOutputTokens == 0 {
		m.opts.DefaultOutputTokens = DefaultOutputTokens
	}
	if m.opts.EstimateInput == nil {
		m.opts.EstimateInput = EstimateInputTokens
	}
	if m.opts.OnError == nil {
		m.opts.OnError = func(model string, err error) { log.Printf("ratetrack: %s: %v", model, err) }
	}
	return m
}

// sdkCall is one tracked attempt.
type sdkCall struct {
	m      *sdkMiddleware
	model  string
	input  uint64
	output uint64
	grant  Grant
}

func (m *sdkMiddleware) do(req *http.Request, next func(*http.Request) (*http.Response, error)) (*http.Response, error) {
	call, req, err := m.prepare(req)
	if err != nil {
		return nil, err
	}
	if call == nil {
		return next(req)
	}
	if err := call.acquire(req.Context()); err != nil {
		return nil, err
	}
	resp, err := next(req)
	if err != nil || resp == nil {
		// No answer: the provider may have processed it; the estimate stays.
		return resp, err
	}
	return call.finish(resp), nil
}

// prepare reads the request's body; a request it does not track comes back
// with call == nil and its body restored. The request returned is a clone
// (the caller's is not modified), with the body to send.
func (m *sdkMiddleware) prepare(req *http.Request) (*sdkCall, *http.Request, error) {
	if req.Method != http.MethodPost || req.Body == nil || req.Body == http.NoBody ||
		strings.HasSuffix(req.URL.Path, "/count_tokens") {
		return nil, req, nil
	}
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("ratetrack: reading the request body: %w", err)
	}
	out := req.Clone(req.Context())
	setBody(out, body)
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return nil, out, nil // not a JSON object: not an API call we know
	}
	var name string
	if json.Unmarshal(fields["model"], &name) != nil || name == "" {
		return nil, out, nil
	}
	provider := m.opts.Provider
	if provider == "" {
		provider = "openai"
		if strings.Contains(req.URL.Path, "/messages") {
			provider = "anthropic"
		}
	}
	model := provider + "/" + name
	if m.opts.Model != nil {
		model = m.opts.Model(provider, name)
	}
	if err := checkText("model", model, CodeInvalid); err != nil {
		return nil, nil, err
	}
	// A streamed chat completion reports its usage only when asked to.
	var stream bool
	_ = json.Unmarshal(fields["stream"], &stream)
	if stream && (strings.HasSuffix(req.URL.Path, "/chat/completions") || strings.HasSuffix(req.URL.Path, "/completions")) {
		var so map[string]json.RawMessage
		_ = json.Unmarshal(fields["stream_options"], &so)
		if _, set := so["include_usage"]; !set {
			if so == nil {
				so = map[string]json.RawMessage{}
			}
			so["include_usage"] = json.RawMessage("true")
			if raw, err := json.Marshal(so); err == nil {
				fields["stream_options"] = raw
				if b, err := json.Marshal(fields); err == nil {
					body = b
					setBody(out, body)
				}
			}
		}
	}
	output := m.opts.DefaultOutputTokens
	for _, k := range []string{"max_completion_tokens", "max_tokens", "max_output_tokens"} {
		var n uint64
		if raw := fields[k]; raw != nil && string(raw) != "null" && json.Unmarshal(raw, &n) == nil {
			output = n
			break
		}
	}
	return &sdkCall{m: m, model: model, input: m.opts.EstimateInput(body), output: output}, out, nil
}

// setBody makes body the request's (replayable) body.
func setBody(req *http.Request, body []byte) {
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	req.ContentLength = int64(len(body))
	if req.Header.Get("Content-Length") != "" {
		req.Header.Set("Content-Length", strconv.Itoa(len(body)))
	}
}

// EstimateInputTokens is the default input estimate of a request body: the
// characters (not bytes) of every JSON string under "messages", "system",
// "input", "instructions", "prompt" and "tools" (keys excluded, and the
// images and files inline in them: the values of "data", "url",
// "image_url" and "file_data"), divided by 4 and rounded up, at least 1. It is the usual rule of thumb for English
// text (a token is about 4 characters); the settle with the real usage
// corrects it, so it only has to be close enough for admission.
func EstimateInputTokens(body []byte) uint64 {
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return 1
	}
	var chars uint64
	for _, k := range []string{"messages", "system", "input", "instructions", "prompt", "tools"} {
		if raw, ok := fields[k]; ok {
			var v interface{}
			if json.Unmarshal(raw, &v) == nil {
				chars += stringChars(v)
			}
		}
	}
	if n := (chars + 3) / 4; n > 0 {
		return n
	}
	return 1
}

// notText are the keys whose values are images, audio or files inline in a
// request (base64 data, data: URLs), which the providers count by size or
// pixels, not by characters.
var notText = map[string]bool{"data": true, "url": true, "image_url": true, "file_data": true}

func stringChars(v interface{}) uint64 {
	switch x := v.(type) {
	case string:
		return uint64(utf8.RuneCountInString(x))
	case []interface{}:
		var n uint64
		for _, e := range x {
			n += stringChars(e)
		}
		return n
	case map[string]interface{}:
		var n uint64
		for k, e := range x {
			if !notText[k] {
				n += stringChars(e)
			}
		}
		return n
	}
	return 0
}

func (c *sdkCall) acquire(ctx context.Context) error {
	t := c.m.t
	if c.m.opts.FailFast {
		g, ok, retry, err := t.TryAcquireIO(c.model, c.input, c.output)
		if err != nil {
			return err
		}
		if !ok {
			return &LimitedError{Model: c.model, RetryAfter: retry}
		}
		c.grant = g
		return nil
	}
	wctx := ctx
	if c.m.opts.MaxWait > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, c.m.opts.MaxWait)
		defer cancel()
	}
	g, err := t.AcquireIO(wctx, c.model, c.input, c.output)
	if err != nil {
		if ctx.Err() == nil && wctx.Err() != nil { // MaxWait passed, not the caller's context
			wait, _ := t.WaitTime(c.model, c.input+c.output)
			return &LimitedError{Model: c.model, RetryAfter: wait}
		}
		return err
	}
	c.grant = g
	return nil
}

func (c *sdkCall) fail(what string, err error) {
	if err != nil {
		c.m.opts.OnError(c.model, fmt.Errorf("%s: %w", what, err))
	}
}

// finish feeds the response back and arranges the settle.
func (c *sdkCall) finish(resp *http.Response) *http.Response {
	t := c.m.t
	c.fail("observing the rate-limit headers", t.ObserveHeaders(c.model, resp.Header))
	if resp.StatusCode == http.StatusTooManyRequests {
		retryAfter := resp.Header.Get("Retry-After")
		if ms, err := strconv.ParseUint(resp.Header.Get("Retry-After-Ms"), 10, 32); retryAfter == "" && err == nil {
			c.fail("reporting the 429", t.ReportLimitedAfter(c.model, time.Duration(ms)*time.Millisecond))
		} else {
			c.fail("reporting the 429", t.ReportLimited(c.model, retryAfter))
		}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// Refused or failed: one request, no tokens processed.
		c.fail("settling a failed attempt", t.SettleIO(c.grant, 0, 0))
		return resp
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body = &usageStream{body: resp.Body, call: c}
		return resp
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		// Hand the caller what was read and the error; the estimate stays.
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{err}))
		return resp
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var r struct {
		Usage *usageJSON `json:"usage"`
	}
	if json.Unmarshal(body, &r) == nil && r.Usage != nil {
		// A whole answer's usage with no output side (embeddings) generated none.
		if in, ok := r.Usage.input(); ok {
			out, _ := r.Usage.output()
			c.fail("settling", t.SettleIO(c.grant, in, out))
		}
	}
	return resp
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// usageJSON is the "usage" object of OpenAI (prompt_tokens,
// completion_tokens; the Responses API: input_tokens, output_tokens) and
// Anthropic (input_tokens, output_tokens, cache_creation_input_tokens,
// which counts towards the input limits; cache reads do not).
type usageJSON struct {
	PromptTokens     *uint64 `json:"prompt_tokens"`
	CompletionTokens *uint64 `json:"completion_tokens"`
	InputTokens      *uint64 `json:"input_tokens"`
	OutputTokens     *uint64 `json:"output_tokens"`
	CacheCreation    *uint64 `json:"cache_creation_input_tokens"`
}

func (u *usageJSON) input() (uint64, bool) {
	switch {
	case u.PromptTokens != nil:
		return *u.PromptTokens, true
	case u.InputTokens != nil:
		n := *u.InputTokens
		if u.CacheCreation != nil {
			n += *u.CacheCreation
		}
		return n, true
	}
	return 0, false
}

func (u *usageJSON) output() (uint64, bool) {
	switch {
	case u.CompletionTokens != nil:
		return *u.CompletionTokens, true
	case u.OutputTokens != nil:
		return *u.OutputTokens, true
	}
	return 0, false
}

func (u *usageJSON) counts() (in, out uint64, ok bool) {
	in, okIn := u.input()
	out, okOut := u.output()
	return in, out, okIn && okOut
}

// maxSSELine bounds the partial line kept while scanning a stream: a line
// longer than that is content, not a usage event, and is skipped.
const maxSSELine = 1 << 20

// usageStream passes a server-sent-events body through unchanged and
// settles the call when the usage goes by (or, with what it has, at the end
// of the stream or at Close).
type usageStream struct {
	body io.ReadCloser
	call *sdkCall

	mu       sync.Mutex
	line     []byte
	skipping bool // inside a line longer than maxSSELine
	in, out  uint64
	haveIn   bool
	settled  bool
}

func (s *usageStream) Read(p []byte) (int, error) {
	n, err := s.body.Read(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scan(p[:n])
	if err != nil {
		s.settleLocked(false)
	}
	return n, err
}

func (s *usageStream) Close() error {
	err := s.body.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked(false)
	return err
}

func (s *usageStream) scan(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if !s.skipping {
				s.line = append(s.line, p...)
				if len(s.line) > maxSSELine {
					s.line, s.skipping = s.line[:0], true
				}
			}
			return
		}
		if !s.skipping {
			s.line = append(s.line, p[:i]...)
			s.event(bytes.TrimRight(s.line, "\r"))
		}
		s.line, s.skipping = s.line[:0], false
		p = p[i+1:]
	}
}

// event reads one line of the stream: a "data:" line with a usage.
func (s *usageStream) event(line []byte) {
	if s.settled || !bytes.HasPrefix(line, []byte("data:")) || !bytes.Contains(line, []byte(`"usage"`)) {
		return
	}
	var ev struct {
		Type    string     `json:"type"`
		Usage   *usageJSON `json:"usage"`
		Message *struct {
			Usage *usageJSON `json:"usage"`
		} `json:"message"`
		Response *struct {
			Usage *usageJSON `json:"usage"`
		} `json:"response"`
	}
	if json.Unmarshal(bytes.TrimSpace(line[len("data:"):]), &ev) != nil {
		return
	}
	switch {
	case ev.Type == "message_start" && ev.Message != nil && ev.Message.Usage != nil:
		// Anthropic: the input now, the output with message_delta.
		if in, ok := ev.Message.Usage.input(); ok {
			s.in, s.haveIn = in, true
		}
	case ev.Type == "message_delta" && ev.Usage != nil:
		if in, ok := ev.Usage.input(); ok {
			s.in, s.haveIn = in, true // newer API versions repeat it here
		}
		if out, ok := ev.Usage.output(); ok && s.haveIn {
			s.out = out
			s.settleLocked(true)
		}
	case ev.Response != nil && ev.Response.Usage != nil: // Responses API: response.completed
		if in, out, ok := ev.Response.Usage.counts(); ok {
			s.in, s.out = in, out
			s.settleLocked(true)
		}
	case ev.Usage != nil: // OpenAI chat completions: the last chunk
		if in, out, ok := ev.Usage.counts(); ok {
			s.in, s.out = in, out
			s.settleLocked(true)
		}
	}
}

// settleLocked settles once: to the real counts when final, else (the
// stream ended or was closed first) to the input seen and the output
// reserved, or not at all (the estimate stays) when no usage went by.
func (s *usageStream) settleLocked(final bool) {
	if s.settled {
		return
	}
	c := s.call
	switch {
	case final:
		c.fail("settling", c.m.t.SettleIO(c.grant, s.in, s.out))
	case s.haveIn:
		c.fail("settling", c.m.t.SettleIO(c.grant, s.in, c.grant.OutputTokens))
	}
	s.settled = true
}
