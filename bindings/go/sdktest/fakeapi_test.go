package sdktest

// A local stand-in for the OpenAI and Anthropic APIs, enough for the real
// SDKs: POST /v1/chat/completions and POST /v1/messages, plain and streamed
// (server-sent events), with the providers' rate-limit headers, usage, and
// 429 + retry-after when its own limit is exceeded.

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeAPI limits requests per fixed window of its own (window; limit per
// window) and counts the tokens it served.
type fakeAPI struct {
	limit       int           // requests per window
	window      time.Duration // the server's window (fixed, from its first request)
	tokenLimit  uint64        // reported as the tokens limit (never enforced)
	outputCap   uint64        // output tokens of a reply: min(max_tokens, outputCap)
	respondWait time.Duration // how long each admitted request takes

	mu           sync.Mutex
	windowStart  time.Time
	inWindow     int
	force429     int    // the next force429 requests get a 429 ...
	retryAfter   string // ... with this retry-after
	requests     int    // every request received
	rejected     int    // 429s sent
	served       int    // 2xx sent
	input        uint64 // tokens served
	output       uint64
	includeUsage int // streamed chat completions that asked for usage
	streams      int // streamed requests
}

func newFakeAPI(t *testing.T, limit int, window time.Duration) (*fakeAPI, *httptest.Server) {
	f := &fakeAPI{limit: limit, window: window, tokenLimit: 1000000, outputCap: 17}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

// serverTokens is the fake's tokenizer: different from the client's
// estimate on purpose, so that a settle is visible.
func serverTokens(text string) uint64 { return uint64(len(text))/3 + 5 }

func (f *fakeAPI) totals() (requests, rejected, served int, tokens uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests, f.rejected, f.served, f.input + f.output
}

type fakeRequest struct {
	Model               string          `json:"model"`
	Messages            json.RawMessage `json:"messages"`
	System              json.RawMessage `json:"system"`
	MaxTokens           *uint64         `json:"max_tokens"`
	MaxCompletionTokens *uint64         `json:"max_completion_tokens"`
	Stream              bool            `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	anthropic := r.URL.Path == "/v1/messages"
	if r.Method != http.MethodPost || (!anthropic && r.URL.Path != "/v1/chat/completions") {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	var req fakeRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Model == "" {
		http.Error(w, `{"error": {"message": "bad request"}}`, http.StatusBadRequest)
		return
	}
	maxOut := uint64(math.MaxUint64)
	if req.MaxCompletionTokens != nil {
		maxOut = *req.MaxCompletionTokens
	} else if req.MaxTokens != nil {
		maxOut = *req.MaxTokens
	}
	in := serverTokens(string(req.Messages) + string(req.System))
	out := f.outputCap
	if maxOut < out {
		out = maxOut
	}

	f.mu.Lock()
	now := time.Now()
	f.requests++
	if f.windowStart.IsZero() || now.Sub(f.windowStart) >= f.window {
		f.windowStart, f.inWindow = now, 0
	}
	reset := f.window - now.Sub(f.windowStart)
	admitted := f.force429 == 0 && f.inWindow < f.limit
	retryAfter := ""
	if f.force429 > 0 {
		f.force429--
		retryAfter = f.retryAfter
	} else if !admitted {
		retryAfter = strconv.Itoa(int(math.Ceil(reset.Seconds())))
	}
	if admitted {
		f.inWindow++
		f.served++
		f.input += in
		f.output += out
		if req.Stream {
			f.streams++
			if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
				f.includeUsage++
			}
		}
	} else {
		f.rejected++
	}
	remaining := f.limit - f.inWindow
	tokensLeft := f.tokenLimit - (f.input + f.output)
	f.mu.Unlock()

	h := w.Header()
	if anthropic {
		resetAt := now.Add(reset).UTC().Format(time.RFC3339)
		h.Set("anthropic-ratelimit-requests-limit", strconv.Itoa(f.limit))
		h.Set("anthropic-ratelimit-requests-remaining", strconv.Itoa(remaining))
		h.Set("anthropic-ratelimit-requests-reset", resetAt)
		h.Set("anthropic-ratelimit-tokens-limit", strconv.FormatUint(f.tokenLimit, 10))
		h.Set("anthropic-ratelimit-tokens-remaining", strconv.FormatUint(tokensLeft, 10))
		h.Set("anthropic-ratelimit-tokens-reset", resetAt)
	} else {
		d := reset.Round(time.Millisecond).String()
		h.Set("x-ratelimit-limit-requests", strconv.Itoa(f.limit))
		h.Set("x-ratelimit-remaining-requests", strconv.Itoa(remaining))
		h.Set("x-ratelimit-reset-requests", d)
		h.Set("x-ratelimit-limit-tokens", strconv.FormatUint(f.tokenLimit, 10))
		h.Set("x-ratelimit-remaining-tokens", strconv.FormatUint(tokensLeft, 10))
		h.Set("x-ratelimit-reset-tokens", d)
	}
	if !admitted {
		h.Set("retry-after", retryAfter)
		h.Set("content-type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		if anthropic {
			fmt.Fprint(w, `{"type": "error", "error": {"type": "rate_limit_error", "message": "rate limited"}}`)
		} else {
			fmt.Fprint(w, `{"error": {"message": "rate limited", "type": "requests", "code": "rate_limit_exceeded"}}`)
		}
		return
	}
	if f.respondWait > 0 {
		time.Sleep(f.respondWait)
	}
	switch {
	case anthropic && req.Stream:
		h.Set("content-type", "text/event-stream")
		events := []string{
			"message_start", fmt.Sprintf(`{"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": %q, "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": %d, "output_tokens": 1}}}`, req.Model, in),
			"content_block_start", `{"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}`,
			"ping", `{"type": "ping"}`,
			"content_block_delta", `{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}`,
			"content_block_delta", `{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there"}}`,
			"content_block_stop", `{"type": "content_block_stop", "index": 0}`,
			"message_delta", fmt.Sprintf(`{"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": %d}}`, out),
			"message_stop", `{"type": "message_stop"}`,
		}
		for i := 0; i < len(events); i += 2 {
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", events[i], events[i+1])
			w.(http.Flusher).Flush()
		}
	case anthropic:
		h.Set("content-type", "application/json")
		fmt.Fprintf(w, `{"id": "msg_1", "type": "message", "role": "assistant", "model": %q, "content": [{"type": "text", "text": "Hello there"}], "stop_reason": "end_turn", "stop_sequence": null, "usage": {"input_tokens": %d, "output_tokens": %d}}`, req.Model, in, out)
	case req.Stream:
		h.Set("content-type", "text/event-stream")
		chunk := func(choices, usage string) {
			fmt.Fprintf(w, "data: {\"id\": \"chatcmpl-1\", \"object\": \"chat.completion.chunk\", \"created\": %d, \"model\": %q, \"choices\": %s%s}\n\n", now.Unix(), req.Model, choices, usage)
			w.(http.Flusher).Flush()
		}
		chunk(`[{"index": 0, "delta": {"role": "assistant", "content": "Hello"}, "finish_reason": null}]`, "")
		chunk(`[{"index": 0, "delta": {"content": " there"}, "finish_reason": null}]`, "")
		chunk(`[{"index": 0, "delta": {}, "finish_reason": "stop"}]`, "")
		if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
			chunk(`[]`, fmt.Sprintf(`, "usage": {"prompt_tokens": %d, "completion_tokens": %d, "total_tokens": %d}`, in, out, in+out))
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	default:
		h.Set("content-type", "application/json")
		fmt.Fprintf(w, `{"id": "chatcmpl-1", "object": "chat.completion", "created": %d, "model": %q, "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": %d, "completion_tokens": %d, "total_tokens": %d}}`, now.Unix(), req.Model, in, out, in+out)
	}
}

// next429 makes the next n requests get a 429 with retry-after.
func (f *fakeAPI) next429(n int, retryAfter string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.force429, f.retryAfter = n, retryAfter
}

func (f *fakeAPI) streamCounts() (streams, includeUsage int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.streams, f.includeUsage
}
