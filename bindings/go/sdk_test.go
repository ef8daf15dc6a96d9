package ratetrack

// The SDK middleware's own rules, with a stand-in for the next handler (no
// network, no SDK: those tests are in sdktest/, a module of their own).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

type fakeNext struct {
	calls  int
	bodies []string
	resp   func(req *http.Request) (*http.Response, error)
}

func (f *fakeNext) do(req *http.Request) (*http.Response, error) {
	f.calls++
	var b []byte
	if req.Body != nil {
		b, _ = io.ReadAll(req.Body)
	}
	f.bodies = append(f.bodies, string(b))
	if int64(len(b)) != req.ContentLength {
		return nil, errors.New("ContentLength does not match the body")
	}
	return f.resp(req)
}

func response(status int, contentType, body string, header ...string) *http.Response {
	h := http.Header{"Content-Type": {contentType}}
	for i := 0; i+1 < len(header); i += 2 {
		h.Set(header[i], header[i+1])
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body))}
}

func post(t *testing.T, path, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://api.test"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func tokensNow(t *testing.T, tr *Tracker, model string) (requests, tokens uint64) {
	t.Helper()
	s, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s.Models[model]["requests_per_minute"].Current, s.Models[model]["tokens_per_minute"].Current
}

func TestEstimateInputTokens(t *testing.T) {
	cases := map[string]uint64{
		`{"model": "m", "messages": [{"role": "user", "content": "12345678"}]}`: 3, // "user" + 8 chars = 12 / 4
		`{"model": "m", "system": "abcd", "messages": []}`:                      1,
		`{"model": "m", "messages": [{"role": "user", "content": "é€😀x"}]}`:     2, // 4 + 4 characters, not bytes
		`{"model": "m"}`: 1,
		`not json`:       1,
	}
	for body, want := range cases {
		if got := EstimateInputTokens([]byte(body)); got != want {
			t.Errorf("EstimateInputTokens(%s) = %d; want %d", body, got, want)
		}
	}
}

// What is not a model call passes through untouched and books nothing.
func TestMiddlewarePassesOtherRequestsThrough(t *testing.T) {
	tr := open(t, `{"builtin_tiers": false}`)
	next := &fakeNext{resp: func(*http.Request) (*http.Response, error) {
		return response(200, "application/json", `{"usage": {"input_tokens": 5, "output_tokens": 5}}`), nil
	}}
	mw := Middleware(tr, nil)
	get, _ := http.NewRequest(http.MethodGet, "http://api.test/v1/models", nil)
	reqs := []*http.Request{
		get,
		post(t, "/v1/files", "not json"),
		post(t, "/v1/messages/batches", `{"requests": []}`),
		post(t, "/v1/messages/count_tokens", `{"model": "claude-x", "messages": []}`),
	}
	for _, req := range reqs {
		if _, err := mw(req, next.do); err != nil {
			t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
		}
	}
	if next.calls != len(reqs) || next.bodies[1] != "not json" {
		t.Fatalf("calls %d, bodies %q", next.calls, next.bodies)
	}
	if s, _ := tr.Stats(); len(s.Models) != 0 {
		t.Fatalf("models booked: %v", s.Models)
	}
}

// A plain response: headers observed, usage settled, the body restored for
// the caller; the estimate is prompt/4 + max_tokens.
func TestMiddlewareSettlesAndRestoresTheBody(t *testing.T) {
	tr := open(t, `{"builtin_tiers": false, "limits": {"anthropic/claude-x": {"rpm": 10, "tpm": 100000}}}`)
	body := `{"usage": {"input_tokens": 30, "output_tokens": 12, "cache_creation_input_tokens": 8}}`
	var estimate uint64
	next := &fakeNext{resp: func(*http.Request) (*http.Response, error) {
		_, estimate = tokensNow(t, tr, "anthropic/claude-x")
		return response(200, "application/json", body, "anthropic-ratelimit-requests-limit", "7"), nil
	}}
	resp, err := Middleware(tr, nil)(post(t, "/v1/messages", `{"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": "12345678"}]}`), next.do)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	if string(got) != body {
		t.Fatalf("body = %q", got)
	}
	if estimate != 3+100 {
		t.Fatalf("booked %d while in flight; want the estimate 103", estimate)
	}
	if r, tok := tokensNow(t, tr, "anthropic/claude-x"); r != 1 || tok != 30+8+12 {
		t.Fatalf("after: %d requests, %d tokens; want 1, 50", r, tok)
	}
	s, _ := tr.Stats()
	if p := s.Provider["anthropic/claude-x"].Requests; p == nil || p.Limit == nil || *p.Limit != 7 {
		t.Fatalf("headers not observed: %+v", s.Provider)
	}
}

// Failures: a 429 books the request, no tokens, and blocks the model for
// retry-after (or retry-after-ms); a 500 books no tokens; a transport error
// and a 2xx without usage keep the estimate.
func TestMiddlewareFailures(t *testing.T) {
	tr := open(t, `{"builtin_tiers": false, "limits": {"openai/a": {"rpm": 10, "tpm": 100000}, "openai/b": {"rpm": 10, "tpm": 100000}}}`)
	mw := Middleware(tr, nil)
	call := func(model string, resp *http.Response, err error) {
		next := &fakeNext{resp: func(*http.Request) (*http.Response, error) { return resp, err }}
		_, gotErr := mw(post(t, "/v1/chat/completions", `{"model": "`+model+`", "max_completion_tokens": 10, "messages": []}`), next.do)
		if gotErr != err {
			t.Fatalf("%s: error %v; want %v", model, gotErr, err)
		}
	}
	call("a", response(429, "application/json", `{"error": {}}`, "Retry-After", "20"), nil)
	if r, tok := tokensNow(t, tr, "openai/a"); r != 1 || tok != 0 {
		t.Fatalf("429: %d requests, %d tokens; want 1, 0", r, tok)
	}
	if w, _ := tr.WaitTime("openai/a", 1); w < 15*time.Second {
		t.Fatalf("after a 429 with retry-after 20: wait %v", w)
	}
	call("b", response(429, "application/json", `{}`, "Retry-After-Ms", "5000"), nil)
	if w, _ := tr.WaitTime("openai/b", 1); w < 4*time.Second || w > 6*time.Second {
		t.Fatalf("after a 429 with retry-after-ms 5000: wait %v", w)
	}
	tr.Reset()
	tr2 := open(t, `{"builtin_tiers": false}`)
	mw = Middleware(tr2, nil)
	call("c", response(500, "application/json", `{}`), nil)
	if r, tok := tokensNow(t, tr2, "openai/c"); r != 1 || tok != 0 {
		t.Fatalf("500: %d requests, %d tokens; want 1, 0", r, tok)
	}
	boom := errors.New("connection reset")
	call("d", nil, boom)
	call("e", response(200, "application/json", `{"id": "x"}`), nil)
	for _, m := range []string{"openai/d", "openai/e"} {
		if r, tok := tokensNow(t, tr2, m); r != 1 || tok != 1+10 {
			t.Fatalf("%s: %d requests, %d tokens; want the estimate kept (1, 11)", m, r, tok)
		}
	}
}

// Streams: include_usage is asked for (unless the request says otherwise),
// the usage event settles as it passes, a stream closed early settles what
// it saw (Anthropic's input, the output reserved) or keeps the estimate.
func TestMiddlewareStreams(t *testing.T) {
	tr := open(t, `{"builtin_tiers": false}`)
	mw := Middleware(tr, nil)
	sse := func(body string) func(*http.Request) (*http.Response, error) {
		return func(*http.Request) (*http.Response, error) { return response(200, "text/event-stream", body), nil }
	}
	openaiStream := "data: {\"choices\": [{\"delta\": {\"content\": \"hi\"}}]}\n\ndata: {\"choices\": [], \"usage\": {\"prompt_tokens\": 21, \"completion_tokens\": 4}}\r\n\r\ndata: [DONE]\n\n"
	next := &fakeNext{resp: sse(openaiStream)}
	resp, err := mw(post(t, "/v1/chat/completions", `{"model": "s1", "stream": true, "max_tokens": 50, "messages": []}`), next.do)
	if err != nil {
		t.Fatal(err)
	}
	var sent map[string]json.RawMessage
	json.Unmarshal([]byte(next.bodies[0]), &sent)
	if string(sent["stream_options"]) != `{"include_usage":true}` {
		t.Fatalf("stream_options sent: %s", sent["stream_options"])
	}
	// Read in small pieces: lines are split across reads.
	var got bytes.Buffer
	buf := make([]byte, 7)
	for {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
	}
	resp.Body.Close()
	if got.String() != openaiStream {
		t.Fatalf("the stream was changed: %q", got.String())
	}
	if _, tok := tokensNow(t, tr, "openai/s1"); tok != 25 {
		t.Fatalf("openai stream: %d tokens; want 25", tok)
	}

	// include_usage false is the caller's choice: kept; no usage, the estimate stays.
	next = &fakeNext{resp: sse("data: {\"choices\": []}\n\ndata: [DONE]\n\n")}
	resp, _ = mw(post(t, "/v1/chat/completions", `{"model": "s2", "stream": true, "stream_options": {"include_usage": false}, "max_tokens": 50, "messages": []}`), next.do)
	io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(next.bodies[0], `"include_usage": false`) {
		t.Fatalf("body changed: %s", next.bodies[0])
	}
	if _, tok := tokensNow(t, tr, "openai/s2"); tok != 1+50 {
		t.Fatalf("no usage: %d tokens; want the estimate 51", tok)
	}

	// Anthropic closed after message_start: its input, and the output reserved.
	start := "event: message_start\ndata: {\"type\": \"message_start\", \"message\": {\"usage\": {\"input_tokens\": 40, \"output_tokens\": 1}}}\n\n"
	next = &fakeNext{resp: sse(start + "event: content_block_delta\ndata: {\"type\": \"content_block_delta\"}\n\n")}
	resp, _ = mw(post(t, "/v1/messages", `{"model": "s3", "stream": true, "max_tokens": 50, "messages": []}`), next.do)
	resp.Body.Read(make([]byte, len(start)+5))
	resp.Body.Close()
	if _, tok := tokensNow(t, tr, "anthropic/s3"); tok != 40+50 {
		t.Fatalf("closed early: %d tokens; want 90", tok)
	}
	if strings.Contains(next.bodies[0], "stream_options") {
		t.Fatalf("stream_options sent to Anthropic: %s", next.bodies[0])
	}
}

// Waiting, failing fast, MaxWait and the caller's context; a model name
// the tracker refuses is an error before anything is sent.
func TestMiddlewareAdmission(t *testing.T) {
	tr := open(t, `{"builtin_tiers": false, "limits": {"openai/m": {"rpm": 1}}}`)
	next := &fakeNext{resp: func(*http.Request) (*http.Response, error) {
		return response(200, "application/json", `{"usage": {"prompt_tokens": 1, "completion_tokens": 1}}`), nil
	}}
	body := `{"model": "m", "messages": []}`
	if _, err := Middleware(tr, nil)(post(t, "/v1/chat/completions", body), next.do); err != nil {
		t.Fatal(err)
	}
	_, err := Middleware(tr, &SDKOptions{FailFast: true})(post(t, "/v1/chat/completions", body), next.do)
	var le *LimitedError
	if !errors.Is(err, ErrLimited) || !errors.As(err, &le) || le.Model != "openai/m" || le.RetryAfter < time.Second {
		t.Fatalf("FailFast: %v", err)
	}
	_, err = Middleware(tr, &SDKOptions{MaxWait: 20 * time.Millisecond})(post(t, "/v1/chat/completions", body), next.do)
	if !errors.Is(err, ErrLimited) {
		t.Fatalf("MaxWait: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = Middleware(tr, nil)(post(t, "/v1/chat/completions", body).WithContext(ctx), next.do)
	if err != context.DeadlineExceeded {
		t.Fatalf("the caller's context: %v", err)
	}
	_, err = Middleware(tr, &SDKOptions{Model: func(p, m string) string { return p + "/" + m + "\x00" }})(post(t, "/v1/chat/completions", body), next.do)
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("a NUL in the model name: %v", err)
	}
	_, err = Middleware(tr, &SDKOptions{Provider: "azure"})(post(t, "/v1/chat/completions", `{"model": "m", "max_tokens": 1, "messages": []}`), next.do)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := tokensNow(t, tr, "azure/m"); r != 1 || next.calls != 2 {
		t.Fatalf("azure/m: %d requests, %d sent; want 1, 2", r, next.calls)
	}
	// NewTransport is the same over a RoundTripper.
	rt := NewTransport(open(t, `{"builtin_tiers": false}`), roundTripFunc(next.do), nil)
	if _, err := rt.RoundTrip(post(t, "/v1/chat/completions", body)); err != nil || next.calls != 3 {
		t.Fatalf("NewTransport: %v, %d sent", err, next.calls)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// An answer whose usage has no output side (OpenAI embeddings) settles to
// its input and no output: the output reserved is given back.
func TestMiddlewareSettlesUsageWithoutOutput(t *testing.T) {
	tr := open(t, `{"builtin_tiers": false, "limits": {"openai/text-embedding-3-small": {"rpm": 10, "tpm": 100000}}}`)
	next := &fakeNext{resp: func(*http.Request) (*http.Response, error) {
		return response(200, "application/json", `{"object": "list", "data": [], "usage": {"prompt_tokens": 5, "total_tokens": 5}}`), nil
	}}
	if _, err := Middleware(tr, nil)(post(t, "/v1/embeddings", `{"model": "text-embedding-3-small", "input": "hello"}`), next.do); err != nil {
		t.Fatal(err)
	}
	if r, tok := tokensNow(t, tr, "openai/text-embedding-3-small"); r != 1 || tok != 5 {
		t.Fatalf("after: %d requests, %d tokens; want 1, 5 (not the 1024 output tokens reserved)", r, tok)
	}
}

// Images and files inline in a request (base64 data, data: URLs) are not
// text: the estimate skips them.
func TestEstimateSkipsInlineImages(t *testing.T) {
	image := strings.Repeat("iVBORw0KGgo", 40000)
	bodies := []string{
		`{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "12345678"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,` + image + `"}}]}]}`,
		`{"model": "m", "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "` + image + `"}}, {"type": "text", "text": "12345678"}]}]}`,
		`{"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_data": "` + image + `"}, {"type": "input_image", "image_url": "data:image/png;base64,` + image + `"}]}]}`,
	}
	for i, body := range bodies {
		if got := EstimateInputTokens([]byte(body)); got > 100 {
			t.Errorf("body %d: EstimateInputTokens = %d; the image's characters were counted", i, got)
		}
	}
}
