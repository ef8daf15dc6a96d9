// Package sdktest tests ratetrack.Middleware and ratetrack.NewTransport with
// the real OpenAI and Anthropic Go SDKs (pinned in go.mod) against a local
// fake of their APIs (fakeapi_test.go). It is a module of its own so that
// the binding itself keeps Go 1.19 and no dependency.
package sdktest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	ratetrack "github.com/libratetrack/libratetrack/bindings/go"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

const (
	gptModel    = "gpt-4o-mini"
	gptKey      = "openai/gpt-4o-mini"
	claudeModel = "claude-sonnet-4-5"
	claudeKey   = "anthropic/claude-sonnet-4-5"
)

func TestMain(m *testing.M) {
	if err := ratetrack.Load(""); err != nil {
		fmt.Fprintf(os.Stderr, "cannot load libratetrack (set %s): %v\n", ratetrack.EnvLibrary, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// openTracker opens a private tracker with rpm and a large tpm for both models.
func openTracker(t *testing.T, rpm int, extra string) *ratetrack.Tracker {
	t.Helper()
	cfg := fmt.Sprintf(`{"builtin_tiers": false %s, "limits": {%q: {"rpm": %d, "tpm": 1000000}, %q: {"rpm": %d, "tpm": 1000000}}}`,
		extra, gptKey, rpm, claudeKey, rpm)
	tr, err := ratetrack.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// sdk is one of the two SDKs behind one call signature.
type sdk struct {
	name, key string
	// client returns a call function through the given middlewares (or, if
	// transport, through ratetrack.NewTransport instead of the middleware).
	client func(url string, retries int, tr *ratetrack.Tracker, opts *ratetrack.SDKOptions, probe func(*http.Request, func(*http.Request) (*http.Response, error)) (*http.Response, error)) caller
}

type caller struct {
	call   func(ctx context.Context) error // one request, max tokens 50
	stream func(ctx context.Context) error // one streamed request
}

func openaiSDK(transport bool) sdk {
	return sdk{name: "openai", key: gptKey, client: func(url string, retries int, tr *ratetrack.Tracker, opts *ratetrack.SDKOptions, probe func(*http.Request, func(*http.Request) (*http.Response, error)) (*http.Response, error)) caller {
		o := []option.RequestOption{option.WithBaseURL(url + "/v1"), option.WithAPIKey("test"), option.WithMaxRetries(retries)}
		if probe != nil {
			o = append(o, option.WithMiddleware(probe))
		}
		if transport {
			o = append(o, option.WithHTTPClient(&http.Client{Transport: ratetrack.NewTransport(tr, nil, opts)}))
		} else {
			o = append(o, option.WithMiddleware(ratetrack.Middleware(tr, opts)))
		}
		c := openai.NewClient(o...)
		params := openai.ChatCompletionNewParams{
			Model:               gptModel,
			Messages:            []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello to the rate limiter, politely.")},
			MaxCompletionTokens: openai.Int(50),
		}
		return caller{
			call: func(ctx context.Context) error {
				r, err := c.Chat.Completions.New(ctx, params)
				if err == nil && r.Usage.CompletionTokens == 0 {
					err = errors.New("no usage in the response")
				}
				return err
			},
			stream: func(ctx context.Context) error {
				s := c.Chat.Completions.NewStreaming(ctx, params)
				var usage int64
				for s.Next() {
					usage += s.Current().Usage.CompletionTokens
				}
				if err := s.Err(); err != nil {
					return err
				}
				if usage == 0 {
					return errors.New("the stream carried no usage chunk")
				}
				return s.Close()
			},
		}
	}}
}

func anthropicSDK(transport bool) sdk {
	return sdk{name: "anthropic", key: claudeKey, client: func(url string, retries int, tr *ratetrack.Tracker, opts *ratetrack.SDKOptions, probe func(*http.Request, func(*http.Request) (*http.Response, error)) (*http.Response, error)) caller {
		o := []aoption.RequestOption{aoption.WithBaseURL(url + "/"), aoption.WithAPIKey("test"), aoption.WithMaxRetries(retries)}
		if probe != nil {
			o = append(o, aoption.WithMiddleware(probe))
		}
		if transport {
			o = append(o, aoption.WithHTTPClient(&http.Client{Transport: ratetrack.NewTransport(tr, nil, opts)}))
		} else {
			o = append(o, aoption.WithMiddleware(ratetrack.Middleware(tr, opts)))
		}
		c := anthropic.NewClient(o...)
		params := anthropic.MessageNewParams{
			Model:     claudeModel,
			MaxTokens: 50,
			Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Say hello to the rate limiter, politely."))},
		}
		return caller{
			call: func(ctx context.Context) error {
				r, err := c.Messages.New(ctx, params)
				if err == nil && r.Usage.OutputTokens == 0 {
					err = errors.New("no usage in the response")
				}
				return err
			},
			stream: func(ctx context.Context) error {
				s := c.Messages.NewStreaming(ctx, params)
				var msg anthropic.Message
				for s.Next() {
					if err := msg.Accumulate(s.Current()); err != nil {
						return err
					}
				}
				if err := s.Err(); err != nil {
					return err
				}
				if msg.Usage.OutputTokens == 0 {
					return errors.New("the stream carried no usage")
				}
				return s.Close()
			},
		}
	}}
}

var sdks = []sdk{openaiSDK(false), anthropicSDK(false), openaiSDK(true), anthropicSDK(true)}

func sdkName(s sdk, i int) string {
	if i >= 2 {
		return s.name + "-transport"
	}
	return s.name + "-middleware"
}

func window(t *testing.T, tr *ratetrack.Tracker, model, name string) ratetrack.Window {
	t.Helper()
	s, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s.Models[model][name]
}

// Equal limits on both sides (12 requests a minute): 12 calls, one after
// the other or all at once, get no 429 from the server, and the tracker's
// token count is the server's (settled from usage, not the estimate). The
// 13th call is refused by the tracker (FailFast), not by the server.
func TestEqualLimits(t *testing.T) {
	const n = 12
	for i, s := range sdks {
		for _, concurrent := range []bool{false, true} {
			s, concurrent := s, concurrent
			t.Run(fmt.Sprintf("%s/concurrent=%v", sdkName(s, i), concurrent), func(t *testing.T) {
				api, srv := newFakeAPI(t, n, time.Minute)
				tr := openTracker(t, n, "")
				c := s.client(srv.URL, 2, tr, nil, nil)
				ctx := context.Background()
				errs := make([]error, n)
				if concurrent {
					var wg sync.WaitGroup
					for k := 0; k < n; k++ {
						wg.Add(1)
						go func(k int) { defer wg.Done(); errs[k] = c.call(ctx) }(k)
					}
					wg.Wait()
				} else {
					for k := range errs {
						errs[k] = c.call(ctx)
					}
				}
				for k, err := range errs {
					if err != nil {
						t.Fatalf("call %d: %v", k, err)
					}
				}
				requests, rejected, served, tokens := api.totals()
				if rejected != 0 || served != n || requests != n {
					t.Fatalf("server: %d requests, %d served, %d 429s; want %d, %d, 0", requests, served, rejected, n, n)
				}
				if w := window(t, tr, s.key, "tokens_per_minute"); w.Current != tokens {
					t.Errorf("tracker tokens_per_minute = %d; the server served %d", w.Current, tokens)
				}
				if w := window(t, tr, s.key, "requests_per_minute"); w.Current != n {
					t.Errorf("tracker requests_per_minute = %d; want %d", w.Current, n)
				}
				// One more: the tracker refuses it, the server never sees it.
				fast := s.client(srv.URL, 2, tr, &ratetrack.SDKOptions{FailFast: true}, nil)
				err := fast.call(ctx)
				var le *ratetrack.LimitedError
				if !errors.Is(err, ratetrack.ErrLimited) || !errors.As(err, &le) || le.Model != s.key || le.RetryAfter <= 0 {
					t.Fatalf("call %d = %v; want a *LimitedError for %s", n+1, err, s.key)
				}
				if requests, _, _, _ := api.totals(); requests != n {
					t.Fatalf("the server saw %d requests; want %d", requests, n)
				}
			})
		}
	}
}

// The tracker is configured for 100 requests a minute, the account (the
// fake server) has 3 (its window is 1 s, so that the provider's own
// remaining/reset report runs out within the test). After the first
// response, the learned limit of 3 per minute is enforced: the first burst
// of 8 concurrent calls gets at most its in-flight calls refused by the
// server, and after the provider's reset has passed the tracker still
// refuses (3 of the learned 3 are used this minute), where the configured
// 100 would have let the calls go to the server.
//
// Needs the core's learned-limit enforcement (issue #26).
func TestLearnedLimitIsEnforced(t *testing.T) {
	for i, s := range sdks[:2] {
		s := s
		t.Run(sdkName(s, i), func(t *testing.T) {
			api, srv := newFakeAPI(t, 3, time.Second)
			tr := openTracker(t, 100, "")
			c := s.client(srv.URL, 0, tr, &ratetrack.SDKOptions{FailFast: true}, nil)
			ctx := context.Background()
			if err := c.call(ctx); err != nil { // learns the limit
				t.Fatal(err)
			}
			if w := window(t, tr, s.key, "requests_per_minute"); w.ObservedLimit == nil || *w.ObservedLimit != 3 {
				t.Fatalf("requests_per_minute = %+v; want observed_limit 3", w)
			}
			const burst = 8
			var wg sync.WaitGroup
			errs := make([]error, burst)
			for k := 0; k < burst; k++ {
				wg.Add(1)
				go func(k int) { defer wg.Done(); errs[k] = c.call(ctx) }(k)
			}
			wg.Wait()
			var ok, limited int
			for _, err := range errs {
				switch {
				case err == nil:
					ok++
				case errors.Is(err, ratetrack.ErrLimited):
					limited++
				}
			}
			_, rejected, served, _ := api.totals()
			if served != 3 || rejected > 0 || ok != 2 || limited != burst-2 {
				t.Fatalf("burst: %d ok, %d refused by the tracker; server served %d, sent %d 429s (errors %v)",
					ok, limited, served, rejected, errs)
			}
			// The provider's report (0 remaining, reset within 1 s) runs out;
			// the learned per-minute limit does not.
			time.Sleep(1500 * time.Millisecond)
			err := c.call(ctx)
			if !errors.Is(err, ratetrack.ErrLimited) {
				t.Fatalf("after the provider's reset: %v; want the tracker to refuse (learned limit 3 a minute, 3 used)", err)
			}
			if w := window(t, tr, s.key, "requests_per_minute"); w.Remaining == nil || *w.Remaining != 0 {
				t.Errorf("requests_per_minute = %+v; want remaining 0 (the learned limit is in force)", w)
			}
			if _, rejected, _, _ := api.totals(); rejected != 0 {
				t.Errorf("the server sent %d 429s", rejected)
			}
		})
	}
}

// A 429 with retry-after: 2 blocks every caller of the model for 2 s, on
// the tracker that saw it and on another tracker of the same shm: segment,
// with the SDK's own retries off (the error reaches the caller) and on (the
// SDK retries; the middleware sees the 429 on the first attempt). Checked
// with WaitTime and TryAcquire right after the 429 attempt, from a
// middleware around ratetrack's, not by timing calls.
func Test429BlocksEveryCaller(t *testing.T) {
	for i, s := range sdks[:2] {
		for _, retries := range []int{0, 2} {
			s, retries := s, retries
			t.Run(fmt.Sprintf("%s/retries=%d", sdkName(s, i), retries), func(t *testing.T) {
				segment := fmt.Sprintf("rtgo-sdk-%d-%s-%d", os.Getpid(), s.name, retries)
				t.Cleanup(func() { ratetrack.ShmRemove(segment) })
				extra := fmt.Sprintf(`, "backend": "shm:%s"`, segment)
				tr := openTracker(t, 50, extra)
				other := openTracker(t, 50, extra) // another caller, as another process would be
				api, srv := newFakeAPI(t, 50, time.Minute)
				api.next429(1, "2")

				var mu sync.Mutex
				var after429 []string
				probe := func(req *http.Request, next func(*http.Request) (*http.Response, error)) (*http.Response, error) {
					resp, err := next(req) // ratetrack's middleware is inside: it has seen the response
					if err == nil && resp.StatusCode == http.StatusTooManyRequests {
						mu.Lock()
						defer mu.Unlock()
						for name, trk := range map[string]*ratetrack.Tracker{"same": tr, "other": other} {
							wait, werr := trk.WaitTime(s.key, 1)
							ok, retry, aerr := trk.TryAcquire(s.key, 1)
							if werr != nil || aerr != nil || ok || wait < time.Second || retry < time.Second {
								after429 = append(after429, fmt.Sprintf("%s tracker: wait %v (%v), try_acquire ok=%v retry %v (%v)",
									name, wait, werr, ok, retry, aerr))
							}
						}
						st, _ := other.Stats()
						if p, found := st.Provider[s.key]; !found || p.BlockedForMS < 1000 {
							after429 = append(after429, fmt.Sprintf("other tracker: provider %+v; want blocked_for_ms >= 1000", p))
						}
						after429 = append(after429, "seen")
					}
					return resp, err
				}
				c := s.client(srv.URL, retries, tr, nil, probe)
				err := c.call(context.Background())
				mu.Lock()
				seen := after429
				mu.Unlock()
				if len(seen) != 1 || seen[0] != "seen" {
					t.Fatalf("right after the 429: %v", seen)
				}
				requests, rejected, served, tokens := api.totals()
				if retries == 0 {
					if err == nil {
						t.Fatal("the call succeeded; want the 429 error (retries off)")
					}
					if requests != 1 || rejected != 1 {
						t.Fatalf("server: %d requests, %d 429s; want 1, 1", requests, rejected)
					}
				} else {
					if err != nil {
						t.Fatalf("with the SDK's retries on: %v", err)
					}
					if requests != 2 || rejected != 1 || served != 1 {
						t.Fatalf("server: %d requests, %d 429s, %d served; want 2, 1, 1", requests, rejected, served)
					}
				}
				// Each attempt is one request; the 429 booked no tokens.
				if w := window(t, tr, s.key, "requests_per_minute"); w.Current != uint64(requests) {
					t.Errorf("tracker requests_per_minute = %d; the server got %d", w.Current, requests)
				}
				if w := window(t, other, s.key, "tokens_per_minute"); w.Current != tokens {
					t.Errorf("tracker tokens_per_minute = %d; the server served %d", w.Current, tokens)
				}
			})
		}
	}
}

// Streamed calls settle to the usage of the stream: OpenAI's last chunk
// (the middleware asks for it with stream_options.include_usage) and
// Anthropic's message_start / message_delta.
func TestStreamingSettlesRealUsage(t *testing.T) {
	for i, s := range sdks {
		s := s
		t.Run(sdkName(s, i), func(t *testing.T) {
			api, srv := newFakeAPI(t, 20, time.Minute)
			tr := openTracker(t, 20, "")
			c := s.client(srv.URL, 2, tr, nil, nil)
			for k := 0; k < 3; k++ {
				if err := c.stream(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			streams, includeUsage := api.streamCounts()
			if streams != 3 || (s.name == "openai" && includeUsage != 3) {
				t.Fatalf("server: %d streams, %d with include_usage", streams, includeUsage)
			}
			_, _, _, tokens := api.totals()
			if w := window(t, tr, s.key, "tokens_per_minute"); w.Current != tokens {
				t.Errorf("tracker tokens_per_minute = %d; the server served %d", w.Current, tokens)
			}
			// (The estimate reserved 50 output tokens a call; the fake serves
			// 17, so the count above is the settled one, not the estimate.)
		})
	}
}
