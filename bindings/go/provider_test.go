package ratetrack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ---------------------------------------------------- provider truth (issue 6)

// openAISample is OpenAI's documented example of its rate-limit headers, with
// 2 requests left until a reset in 30s.
func openAISample() http.Header {
	h := http.Header{}
	for k, v := range map[string]string{
		"x-ratelimit-limit-requests":     "60",
		"x-ratelimit-limit-tokens":       "150000",
		"x-ratelimit-remaining-requests": "2",
		"x-ratelimit-remaining-tokens":   "149984",
		"x-ratelimit-reset-requests":     "30s",
		"x-ratelimit-reset-tokens":       "6m0s",
	} {
		h.Set(k, v) // canonicalizes the name: the library matches case-insensitively
	}
	return h
}

const openAIConfig = `{"builtin_tiers": false, "limits": {"openai/m": {"rpm": 500, "tpm": 200000}}}`

func TestObserveHeadersCapsAdmissions(t *testing.T) {
	tr := open(t, openAIConfig)
	if err := tr.ObserveHeaders("openai/m", openAISample()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if ok, retry, err := tr.TryAcquire("openai/m", 10); err != nil || !ok {
			t.Fatalf("request %d after remaining=2: %v, %v, %v", i+1, ok, retry, err)
		}
	}
	ok, retry, err := tr.TryAcquire("openai/m", 10)
	if err != nil || ok || retry <= 0 || retry > 31*time.Second {
		t.Fatalf("3rd request after remaining=2 = %v, %v, %v; want limited for at most ~30s", ok, retry, err)
	}
	s, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	w := s.Models["openai/m"]["requests_per_minute"]
	if w.Limit == nil || *w.Limit != 500 || w.ObservedLimit == nil || *w.ObservedLimit != 60 {
		t.Errorf("requests_per_minute = %+v; want limit 500, observed_limit 60", w)
	}
	if w := s.Models["openai/m"]["tokens_per_minute"]; w.ObservedLimit == nil || *w.ObservedLimit != 150000 {
		t.Errorf("tokens_per_minute = %+v; want observed_limit 150000", w)
	}
	p, ok := s.Provider["openai/m"]
	if !ok || p.Requests == nil || p.Requests.Limit == nil || *p.Requests.Limit != 60 ||
		p.Requests.ResetInMS == nil || *p.Requests.ResetInMS > 30000 || p.Tokens == nil {
		t.Errorf("provider[openai/m] = %+v (requests %+v)", p, p.Requests)
	}
	if p.InputTokens != nil || p.OutputTokens != nil || p.BlockedForMS != 0 {
		t.Errorf("provider[openai/m] has sides or a block nobody reported: %+v", p)
	}
}

func TestObserveHeaderMapAndMalformedHeaders(t *testing.T) {
	tr := open(t, openAIConfig)
	// Malformed and unknown headers are skipped one by one, without error.
	bad := map[string]string{
		"x-ratelimit-limit-requests":     "sixty",
		"x-ratelimit-remaining-requests": "-3",
		"x-ratelimit-reset-tokens":       "soon",
		"x-ratelimit-remaining-tokens":   "1e9",
		"x-ratelimit-limit-tokens":       "5\xff",
		// Not UTF-8 (obs-text from a server): skipped. (A NUL byte is an
		// error: see TestBadInputTable.)
		"x-ratelimit-remaining-requests\xff": "0",
		"x-ratelimit-reset-requests":         "20s",
		"content-type":                       "application/json",
		"":                                   "",
	}
	if err := tr.ObserveHeaderMap("openai/m", bad); err != nil {
		t.Fatalf("ObserveHeaderMap(malformed) = %v", err)
	}
	if err := tr.ObserveHeaders("openai/m", nil); err != nil {
		t.Fatalf("ObserveHeaders(nil) = %v", err)
	}
	for i := 0; i < 5; i++ {
		if ok, _, err := tr.TryAcquire("openai/m", 10); err != nil || !ok {
			t.Fatalf("request %d after malformed headers: %v, %v", i+1, ok, err)
		}
	}
	s, _ := tr.Stats()
	if w := s.Models["openai/m"]["requests_per_minute"]; w.ObservedLimit != nil {
		t.Errorf("malformed headers set observed_limit: %+v", w)
	}
	// The map form works like http.Header: remaining 1 admits exactly one.
	good := map[string]string{"X-RateLimit-Remaining-Requests": "1", "x-ratelimit-reset-requests": "20s"}
	if err := tr.ObserveHeaderMap("openai/m", good); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := tr.TryAcquire("openai/m", 10); !ok {
		t.Fatal("request refused after remaining=1")
	}
	if ok, retry, _ := tr.TryAcquire("openai/m", 10); ok || retry <= 0 {
		t.Fatalf("2nd request after remaining=1 admitted (retry %v)", retry)
	}
	wantKind(t, "ObserveHeaderMap(empty model)", tr.ObserveHeaderMap("", good), ErrInvalid)
}

// Every value of a multi-valued header is passed: an unreadable first value
// does not hide a readable second one.
func TestObserveHeadersPassesEveryValue(t *testing.T) {
	tr := open(t, openAIConfig)
	h := http.Header{}
	h.Add("x-ratelimit-remaining-requests", "junk")
	h.Add("x-ratelimit-remaining-requests", "1")
	h.Add("x-ratelimit-reset-requests", "20s")
	if err := tr.ObserveHeaders("openai/m", h); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := tr.TryAcquire("openai/m", 1); !ok {
		t.Fatal("first request refused")
	}
	if ok, _, _ := tr.TryAcquire("openai/m", 1); ok {
		t.Fatal("second request admitted: the second value of the header was not passed")
	}
}

func TestAnthropicHeaders(t *testing.T) {
	tr := open(t, `{"builtin_tiers": false, "limits": {"anthropic/m": {"rpm": 50, "itpm": 30000, "otpm": 8000}}}`)
	reset := time.Now().Add(20 * time.Second).UTC().Format(time.RFC3339)
	err := tr.ObserveHeaderMap("anthropic/m", map[string]string{
		"anthropic-ratelimit-input-tokens-limit":      "40000",
		"anthropic-ratelimit-input-tokens-remaining":  "500",
		"anthropic-ratelimit-input-tokens-reset":      reset,
		"anthropic-ratelimit-output-tokens-limit":     "8000",
		"anthropic-ratelimit-output-tokens-remaining": "7000",
		"anthropic-ratelimit-output-tokens-reset":     reset,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _, err := tr.TryAcquireIO("anthropic/m", 400, 100); err != nil || !ok {
		t.Fatalf("400 input of 500 remaining: %v, %v", ok, err)
	}
	if _, ok, retry, err := tr.TryAcquireIO("anthropic/m", 200, 100); err != nil || ok || retry <= 0 || retry > 21*time.Second {
		t.Fatalf("200 more input with 100 remaining = %v, %v, %v; want limited until the reset", ok, retry, err)
	}
	s, _ := tr.Stats()
	p := s.Provider["anthropic/m"]
	if p.InputTokens == nil || p.InputTokens.Limit == nil || *p.InputTokens.Limit != 40000 || p.OutputTokens == nil {
		t.Errorf("provider[anthropic/m] = %+v", p)
	}
	if w := s.Models["anthropic/m"]["input_tokens_per_minute"]; w.ObservedLimit == nil || *w.ObservedLimit != 40000 {
		t.Errorf("input_tokens_per_minute = %+v; want observed_limit 40000", w)
	}
}

func TestReportLimited(t *testing.T) {
	tr := open(t, `{"builtin_tiers": false, "limits": {"acme/m": {"rpm": 100}}}`)
	if err := tr.ReportLimited("acme/m", "2"); err != nil {
		t.Fatal(err)
	}
	ok, retry, err := tr.TryAcquire("acme/m", 1)
	if err != nil || ok || retry < time.Second || retry > 2*time.Second {
		t.Fatalf("after a 429 with Retry-After 2: %v, %v, %v; want limited, retry in [1s, 2s]", ok, retry, err)
	}
	s, _ := tr.Stats()
	if b := s.Provider["acme/m"].BlockedForMS; b < 1000 || b > 2000 {
		t.Errorf("blocked_for_ms = %d, want in [1000, 2000]", b)
	}
	if c := s.Models["acme/m"]["requests_per_minute"].Current; c != 0 {
		t.Errorf("a refused request was recorded: %d", c)
	}
	// Another model is not blocked.
	if ok, _, _ := tr.TryAcquire("acme/other", 1); !ok {
		t.Error("a 429 on acme/m blocked acme/other")
	}

	// A 429 with an HTTP date three seconds ahead (the date has whole seconds).
	date := time.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat)
	if err := tr.ReportLimited("acme/d", date); err != nil {
		t.Fatal(err)
	}
	if ok, retry, _ := tr.TryAcquire("acme/d", 1); ok || retry < time.Second || retry > 4*time.Second {
		t.Errorf("after a 429 until %s: %v, %v; want limited, retry in [1s, 4s]", date, ok, retry)
	}
	// A Duration is passed as decimal seconds.
	if err := tr.ReportLimitedAfter("acme/f", 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if ok, retry, _ := tr.TryAcquire("acme/f", 1); ok || retry < 500*time.Millisecond || retry > 1500*time.Millisecond {
		t.Errorf("after ReportLimitedAfter(1.5s): %v, %v; want limited, retry in [0.5s, 1.5s]", ok, retry)
	}
	// No Retry-After: one second.
	if err := tr.ReportLimited("acme/n", ""); err != nil {
		t.Fatal(err)
	}
	if ok, retry, _ := tr.TryAcquire("acme/n", 1); ok || retry > time.Second {
		t.Errorf("after a 429 without Retry-After: %v, %v; want limited for at most 1s", ok, retry)
	}
	wantKind(t, "ReportLimited(empty model)", tr.ReportLimited("", "1"), ErrInvalid)
	wantKind(t, "ReportLimited(NUL)", tr.ReportLimited("acme/m", "1\x002"), ErrInvalid)
}

func TestDurationSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{
		2 * time.Second: "2", 1500 * time.Millisecond: "1.5", time.Millisecond: "0.001",
		time.Nanosecond: "0.000000001", 90 * time.Second: "90", 0: "0", -time.Second: "0",
		36 * time.Hour: "129600",
	} {
		if got := durationSeconds(d); got != want {
			t.Errorf("durationSeconds(%v) = %q, want %q", d, got, want)
		}
	}
}

const ioConfig = `{"limits": {"anthropic/m": {"itpm": 1000, "otpm": 100}}}`

func TestInputOutputTokens(t *testing.T) {
	tr := open(t, ioConfig)
	g, ok, _, err := tr.TryAcquireIO("anthropic/m", 900, 100)
	if err != nil || !ok || g.Ticket == 0 || g.Tokens != 900 || g.InputTokens() != 900 || g.OutputTokens != 100 || g.Model != "anthropic/m" {
		t.Fatalf("TryAcquireIO(900, 100) = %+v, %v, %v", g, ok, err)
	}
	if _, ok, retry, err := tr.TryAcquireIO("anthropic/m", 1, 1); err != nil || ok || retry <= 0 {
		t.Fatalf("TryAcquireIO(1, 1) on a full budget = %v, %v, %v; want limited", ok, retry, err)
	}
	// A grant with output tokens is not settled as if all were input.
	wantKind(t, "Settle(io grant)", tr.Settle(g, 910), ErrInvalid)
	if err := tr.SettleIO(g, 900, 10); err != nil {
		t.Fatal(err)
	}
	g2, ok, _, err := tr.TryAcquireIO("anthropic/m", 0, 90)
	if err != nil || !ok {
		t.Fatalf("TryAcquireIO(0, 90) after settling to (900, 10) = %v, %v; want admitted", ok, err)
	}
	s, _ := tr.Stats()
	m := s.Models["anthropic/m"]
	in, out := m["input_tokens_per_minute"], m["output_tokens_per_minute"]
	if in.Limit == nil || *in.Limit != 1000 || in.Current != 900 || out.Limit == nil || *out.Limit != 100 || out.Current != 100 {
		t.Errorf("input window %+v, output window %+v; want 900/1000 and 100/100", in, out)
	}
	if _, ok, _, _ := tr.TryAcquireIO("anthropic/m", 0, 1); ok {
		t.Error("one more output token admitted at 100 of 100")
	}
	// A plain request counts as input only.
	if err := tr.SettleIO(g2, 0, 0); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := tr.TryAcquire("anthropic/m", 100); !ok {
		t.Error("plain request of 100 (input) tokens refused with 100 input left")
	}
	wantKind(t, "TryAcquireIO(too large)", func() error { _, _, _, err := tr.TryAcquireIO("anthropic/m", 10, 101); return err }(), ErrTooLarge)
	// A blocking acquire with sides.
	tr.Reset()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if g, err := tr.AcquireIO(ctx, "anthropic/m", 500, 50); err != nil || g.OutputTokens != 50 {
		t.Fatalf("AcquireIO = %+v, %v", g, err)
	}
}

// Plain grants and input-only io grants settle either way.
func TestSettleIOAndPlainGrantsInteroperate(t *testing.T) {
	tr := open(t, settleConfig)
	g, ok, _, err := tr.TryAcquireGrant("acme/m", 800)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := tr.SettleIO(g, 100, 0); err != nil {
		t.Fatalf("SettleIO(plain grant) = %v", err)
	}
	if _, tok := usage(t, tr); tok != 100 {
		t.Fatalf("tokens after SettleIO(plain grant) = %d, want 100", tok)
	}
	g, ok, _, err = tr.TryAcquireIO("acme/m", 300, 0)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := tr.Settle(g, 50); err != nil {
		t.Fatalf("Settle(io grant without output) = %v", err)
	}
	if _, tok := usage(t, tr); tok != 150 {
		t.Fatalf("tokens after Settle(io grant) = %d, want 150", tok)
	}
	// Token windows count both sides.
	g, ok, _, err = tr.TryAcquireIO("acme/m", 300, 200)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if _, tok := usage(t, tr); tok != 650 {
		t.Fatalf("tokens after io grant of 300+200 = %d, want 650", tok)
	}
	bad := g
	bad.OutputTokens = 201
	wantKind(t, "SettleIO(wrong granted output)", tr.SettleIO(bad, 1, 1), ErrInvalid)
	if err := tr.SettleIO(g, 100, 50); err != nil {
		t.Fatal(err)
	}
	if _, tok := usage(t, tr); tok != 300 {
		t.Fatalf("tokens after SettleIO(100, 50) = %d, want 300", tok)
	}
}

const pickConfig = `{"builtin_tiers": false, "limits": {
	"a/x": {"windows": [{"unit": "requests", "limit": 1, "seconds": 2}, {"unit": "tokens", "limit": 1000, "seconds": 60}]},
	"b/y": {"rpm": 1, "tpm": 1000}}}`

func TestPick(t *testing.T) {
	tr := open(t, pickConfig)
	if ok, _, _ := tr.TryAcquire("a/x", 10); !ok { // spend a/x
		t.Fatal("a/x refused")
	}
	p, err := tr.Pick([]string{"a/x", "b/y"}, 10, 5)
	if err != nil || !p.OK || p.Model != "b/y" || p.Index != 1 || p.Grant.Ticket == 0 ||
		p.Grant.Model != "b/y" || p.Grant.Tokens != 10 || p.Grant.OutputTokens != 5 || p.RetryAfter != 0 {
		t.Fatalf("Pick(a/x spent, b/y) = %+v, %v; want b/y", p, err)
	}
	if err := tr.SettleIO(p.Grant, 8, 2); err != nil {
		t.Fatalf("SettleIO(picked grant) = %v", err)
	}
	s, _ := tr.Stats()
	if c := s.Models["b/y"]["tokens_per_minute"].Current; c != 10 {
		t.Errorf("b/y tokens after settle = %d, want 10", c)
	}
	// All spent: limited (not an error), naming the one that frees first:
	// a/x (2s window), although it is second in the list.
	p, err = tr.Pick([]string{"b/y", "a/x"}, 10, 0)
	if err != nil || p.OK || p.Model != "a/x" || p.Index != 1 || p.Grant != (Grant{}) ||
		p.RetryAfter <= 0 || p.RetryAfter > 3*time.Second {
		t.Fatalf("Pick(all spent) = %+v, %v; want limited, a/x first within ~2s", p, err)
	}
	// Too large for every candidate.
	_, err = tr.Pick([]string{"a/x", "b/y"}, 5000, 0)
	wantKind(t, "Pick(too large for all)", err, ErrTooLarge)
	_, err = tr.Pick(nil, 1, 0)
	wantKind(t, "Pick(no models)", err, ErrInvalid)
	_, err = tr.Pick([]string{"a/x", ""}, 1, 0)
	wantKind(t, "Pick(empty name)", err, ErrInvalid)
	_, err = tr.Pick([]string{"a/x", "b\x00y"}, 1, 0)
	wantKind(t, "Pick(NUL in a name)", err, ErrInvalid)
}

// Concurrent picks never take more than the candidates' combined limits
// (each candidate is one atomic acquire), under the race detector too.
func TestConcurrentPickAdmitsExactlyTheLimits(t *testing.T) {
	tr := open(t, `{"builtin_tiers": false, "limits": {"p/a": {"rpm": 7}, "p/b": {"rpm": 5}, "p/c": {"rpm": 3}}}`)
	models := []string{"p/a", "p/b", "p/c"}
	var admitted [3]atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				p, err := tr.Pick(models, 1, 1)
				if err != nil {
					t.Error(err)
					return
				}
				if p.OK {
					admitted[p.Index].Add(1)
				}
			}
		}()
	}
	wg.Wait()
	for i, want := range []int64{7, 5, 3} {
		if got := admitted[i].Load(); got != want {
			t.Errorf("%s admitted %d, want %d", models[i], got, want)
		}
	}
}

// Two trackers on the same "shm:" segment (as two processes would be) share
// a reported 429.
func TestSharedMemoryReportLimited(t *testing.T) {
	name := fmt.Sprintf("gotest-issue6-%d-%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() { ShmRemove(name) })
	config := `{"backend": "shm:` + name + `", "builtin_tiers": false, "limits": {"acme/m": {"rpm": 100}}}`
	a, b := open(t, config), open(t, config)
	if ok, _, err := b.TryAcquire("acme/m", 1); err != nil || !ok {
		t.Fatalf("b before the 429: %v, %v", ok, err)
	}
	if err := a.ReportLimited("acme/m", "5"); err != nil {
		t.Fatal(err)
	}
	ok, retry, err := b.TryAcquire("acme/m", 1)
	if err != nil || ok || retry < 3*time.Second || retry > 5*time.Second {
		t.Fatalf("b after a's 429 (Retry-After 5) = %v, %v, %v; want limited ~5s", ok, retry, err)
	}
	s, _ := b.Stats()
	if s.Backend != "shm:"+name || s.Provider["acme/m"].BlockedForMS == 0 {
		t.Errorf("b's stats: backend %q, provider %+v", s.Backend, s.Provider)
	}
	// Headers observed through one are seen by the other too.
	if err := a.ObserveHeaderMap("acme/m", map[string]string{
		"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "30s"}); err != nil {
		t.Fatal(err)
	}
	s, _ = b.Stats()
	if r := s.Provider["acme/m"].Requests; r == nil || r.Limit == nil || *r.Limit != 60 {
		t.Errorf("b does not see a's observed headers: %+v", r)
	}
}

// A 0.1 build without the provider-truth functions still loads (the rest
// works); the new methods then fail with ErrVersionMismatch naming the
// function.
func TestLibraryWithoutProviderTruth(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler to build a fake library")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "old.c")
	so := filepath.Join(dir, "libold.so")
	code := "int rt_version_number(void) { return 100; }\nconst char *rt_version_string(void) { return \"0.1.0\"; }\n"
	for _, f := range []string{"rt_status_string", "rt_last_error", "rt_free", "rt_global_get_ex",
		"rt_global_configure", "rt_open_ex", "rt_configure", "rt_close", "rt_can_make", "rt_record",
		"rt_try_acquire", "rt_try_acquire_grant", "rt_settle", "rt_wait_time", "rt_reset", "rt_stats_json_ex"} {
		code += "void " + f + "(void) {}\n"
	}
	os.WriteFile(src, []byte(code), 0o644)
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", so, src).CombinedOutput(); err != nil {
		t.Skipf("cannot build fake library: %v %s", err, out)
	}
	l, err := openLibrary(so)
	if err != nil {
		t.Fatalf("openLibrary(0.1.0 without provider truth) = %v", err)
	}
	// (The fake stays loaded: a small leak in the test process only.)
	checks := map[string]error{
		"rt_try_acquire_io":  func() error { _, _, _, err := l.tryAcquireIO(nil, "m", 1, 1); return err }(),
		"rt_settle_io":       l.settleIO(nil, "m", 1, 1, 1, 1, 1),
		"rt_pick":            func() error { _, _, _, _, err := l.pick(nil, []string{"m"}, 1, 1); return err }(),
		"rt_observe_headers": l.observeHeaders(nil, "m", nil, nil),
		"rt_report_limited":  l.reportLimited(nil, "m", ""),
		"rt_metrics_text":    func() error { _, err := l.metricsText(nil); return err }(),
		"rt_shm_list":        func() error { _, err := l.shmList(); return err }(),
		"rt_shm_remove":      l.shmRemove("x"),
		"rt_record_tokens":   l.recordTokens(nil, "m", 1, 1),
	}
	for fn, err := range checks {
		if !errors.Is(err, ErrVersionMismatch) || !strings.Contains(err.Error(), fn) {
			t.Errorf("%s missing: got %v, want a version mismatch naming it", fn, err)
		}
	}
}

// ------------------------------------------------------ metrics and shm

func TestMetricsText(t *testing.T) {
	tr := open(t, `{"builtin_tiers": false, "limits": {"acme/m": {"rpm": 2}}}`)
	for i, want := range []bool{true, true, false} {
		if ok, _, err := tr.TryAcquire("acme/m", 1); err != nil || ok != want {
			t.Fatalf("TryAcquire #%d = %v, %v; want %v", i+1, ok, err, want)
		}
	}
	text, err := tr.MetricsText()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`ratetrack_admitted_total{model="acme/m"} 2` + "\n",
		`ratetrack_refused_total{model="acme/m"} 1` + "\n",
		"# HELP ratetrack_admitted_total ", "# TYPE ratetrack_admitted_total counter\n",
		"# HELP ratetrack_refused_total ", "# TYPE ratetrack_refused_total counter\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics text lacks %q:\n%s", want, text)
		}
	}
	if _, err := GlobalMetricsText(); err != nil {
		t.Errorf("GlobalMetricsText: %v", err)
	}
	tr.Close()
	if _, err := tr.MetricsText(); !errors.Is(err, ErrInvalid) {
		t.Errorf("MetricsText on a closed tracker = %v, want ErrInvalid", err)
	}
}

func findSegment(t *testing.T, name string) *ShmSegment {
	t.Helper()
	segs, err := ShmList()
	if err != nil {
		t.Fatal(err)
	}
	for i := range segs {
		if segs[i].Name == name {
			return &segs[i]
		}
	}
	return nil
}

func TestShmListAndRemove(t *testing.T) {
	name := fmt.Sprintf("gotest-shmlist-%d-%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() { ShmRemove(name) }) // if the test stops early (else ErrInvalid, ignored)
	tr := open(t, `{"backend": "shm:`+name+`", "builtin_tiers": false, "shm_models": 8, "limits": {"acme/m": {"rpm": 10}}}`)
	if ok, _, err := tr.TryAcquire("acme/m", 1); err != nil || !ok {
		t.Fatalf("TryAcquire = %v, %v", ok, err)
	}
	tr.Close()
	seg := findSegment(t, name)
	if seg == nil {
		t.Fatalf("ShmList does not show segment %q", name)
	}
	if seg.Path != "/dev/shm/ratetrack."+name || seg.Bytes == 0 || seg.Mode != "0600" ||
		seg.UID != uint32(os.Getuid()) || !seg.Compatible {
		t.Errorf("segment = %+v", *seg)
	}
	if seg.Capacity == nil || *seg.Capacity != 8 || seg.Models == nil || *seg.Models < 1 ||
		seg.CreatorPID == nil || *seg.CreatorPID != int64(os.Getpid()) ||
		seg.LayoutVersion == nil || seg.CreatedUnixMS == nil || *seg.CreatedUnixMS <= 0 {
		t.Errorf("segment header fields = %+v", *seg)
	}
	if err := ShmRemove(name); err != nil {
		t.Fatal(err)
	}
	if seg := findSegment(t, name); seg != nil {
		t.Errorf("segment still listed after ShmRemove: %+v", *seg)
	}
	if err := ShmRemove(name); !errors.Is(err, ErrInvalid) {
		t.Errorf("second ShmRemove = %v, want ErrInvalid", err)
	}
	if err := ShmRemove("../bad name"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ShmRemove(bad name) = %v, want ErrInvalid", err)
	}
}

// RecordTokens books tokens to a request already counted: the token windows
// grow, the request windows do not, and it counts against the provider's
// remaining tokens. Past a limit it is still recorded.
func TestRecordTokens(t *testing.T) {
	tr := open(t, `{"builtin_tiers": false, "limits": {"acme/m": {"rpm": 10, "tpm": 100, "itpm": 1000, "otpm": 1000}}}`)
	if ok, _, err := tr.TryAcquire("acme/m", 0); err != nil || !ok {
		t.Fatalf("TryAcquire = %v, %v", ok, err)
	}
	if err := tr.RecordTokens("acme/m", 30, 12); err != nil {
		t.Fatal(err)
	}
	s, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	w := s.Models["acme/m"]
	if w["requests_per_minute"].Current != 1 || w["tokens_per_minute"].Current != 42 ||
		w["input_tokens_per_minute"].Current != 30 || w["output_tokens_per_minute"].Current != 12 {
		t.Fatalf("windows = %+v; want 1 request, 42 tokens (30 in, 12 out)", w)
	}
	// Past the token limit: still recorded, and the next request is refused.
	if err := tr.RecordTokens("acme/m", 100, 0); err != nil {
		t.Fatalf("RecordTokens past the limit = %v; want it recorded", err)
	}
	s, _ = tr.Stats()
	if got := s.Models["acme/m"]["tokens_per_minute"].Current; got != 142 {
		t.Fatalf("tokens_per_minute = %d; want 142", got)
	}
	if ok, _, err := tr.TryAcquire("acme/m", 1); err != nil || ok {
		t.Fatalf("TryAcquire past the token limit = %v, %v; want refused", ok, err)
	}
	if err := tr.RecordTokens("", 1, 1); !errors.Is(err, ErrInvalid) {
		t.Fatalf("RecordTokens(empty model) = %v; want ErrInvalid", err)
	}
	// The provider's report: 50 tokens remain; 50 booked leaves none.
	p := open(t, `{"builtin_tiers": false, "limits": {"openai/m": {"rpm": 100, "tpm": 100000}}}`)
	if err := p.ObserveHeaders("openai/m", map[string][]string{
		"X-Ratelimit-Remaining-Tokens": {"50"}, "X-Ratelimit-Reset-Tokens": {"1m0s"}}); err != nil {
		t.Fatal(err)
	}
	if err := p.RecordTokens("openai/m", 50, 0); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := p.TryAcquire("openai/m", 1); err != nil || ok {
		t.Fatalf("TryAcquire after booking the provider's remaining tokens = %v, %v; want refused", ok, err)
	}
}
