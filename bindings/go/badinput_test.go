package ratetrack

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Hostile input (issue #24): what C cannot represent is refused with an
// *Error (ErrInvalid for an argument, ErrConfig for a configuration), never
// cut at a NUL byte. Counts are uint64 and timeouts are contexts, so Go has
// no range, NaN or infinity to refuse; strings must be NUL-free UTF-8.
func TestBadInputTable(t *testing.T) {
	const m = "acme/m"
	tr := open(t, `{"builtin_tiers": false, "limits": {"acme/m": {"rpm": 1000, "tpm": 1000000000}}}`)
	ctx := context.Background()
	grant := func(model string) Grant { return Grant{Model: model, Ticket: 1, Tokens: 1} }

	type call struct {
		name string
		fn   func(s string) error
	}
	strCalls := []call{
		{"CanMake.model", func(s string) error { _, err := tr.CanMake(s, 1); return err }},
		{"Record.model", func(s string) error { return tr.Record(s, 1) }},
		{"RecordTokens.model", func(s string) error { return tr.RecordTokens(s, 1, 1) }},
		{"TryAcquire.model", func(s string) error { _, _, err := tr.TryAcquire(s, 1); return err }},
		{"TryAcquireGrant.model", func(s string) error { _, _, _, err := tr.TryAcquireGrant(s, 1); return err }},
		{"TryAcquireIO.model", func(s string) error { _, _, _, err := tr.TryAcquireIO(s, 1, 1); return err }},
		{"Acquire.model", func(s string) error { _, err := tr.Acquire(ctx, s, 1); return err }},
		{"AcquireIO.model", func(s string) error { _, err := tr.AcquireIO(ctx, s, 1, 1); return err }},
		{"Settle.grant.model", func(s string) error { return tr.Settle(grant(s), 1) }},
		{"SettleIO.grant.model", func(s string) error { return tr.SettleIO(grant(s), 1, 1) }},
		{"WaitTime.model", func(s string) error { _, err := tr.WaitTime(s, 1); return err }},
		{"Pick.models", func(s string) error { _, err := tr.Pick([]string{"other/x", s}, 1, 0); return err }},
		{"ObserveHeaders.model", func(s string) error { return tr.ObserveHeaders(s, nil) }},
		{"ObserveHeaderMap.model", func(s string) error { return tr.ObserveHeaderMap(s, nil) }},
		{"ReportLimited.model", func(s string) error { return tr.ReportLimited(s, "1") }},
		{"ReportLimited.retryAfter", func(s string) error { return tr.ReportLimited(m, "3"+s) }},
		{"ReportLimitedAfter.model", func(s string) error { return tr.ReportLimitedAfter(s, time.Second) }},
		{"Global.tier", func(s string) error { _, err := Global("tier1" + s); return err }},
		{"ShmRemove.name", func(s string) error { return ShmRemove("n" + s) }},
	}
	type row struct {
		name string
		err  error
		kind error
	}
	var rows []row
	for _, c := range strCalls {
		rows = append(rows,
			row{"NUL in " + c.name, c.fn("acme/m\x00evil"), ErrInvalid},
			row{"invalid UTF-8 in " + c.name, c.fn("acme/\xff"), ErrInvalid},
			row{"a lone surrogate's bytes in " + c.name, c.fn("acme/\xed\xa0\x80"), ErrInvalid},
		)
	}
	// A file name is bytes (any but NUL): only the NUL is refused.
	rows = append(rows, row{"NUL in Load.path", Load("/tmp/libratetrack.so.0\x00junk"), ErrInvalid})
	// Headers: a NUL is refused (a name cut at it could read as a real header).
	rows = append(rows,
		row{"NUL in a header name", tr.ObserveHeaders(m, http.Header{"X-Ratelimit-Remaining-Requests\x00x": {"0"}}), ErrInvalid},
		row{"NUL in a header value", tr.ObserveHeaders(m, http.Header{"X-Ratelimit-Remaining-Requests": {"0\x00 left"}}), ErrInvalid},
		row{"NUL in a header map value", tr.ObserveHeaderMap(m, map[string]string{"x-ratelimit-remaining-requests": "0\x00"}), ErrInvalid},
		row{"a negative ReportLimitedAfter", tr.ReportLimitedAfter(m, -time.Second), ErrInvalid},
	)
	// Configurations: JSON text; a NUL, invalid UTF-8 or a non-JSON NaN is ErrConfig.
	configs := map[string]string{
		"NUL":           `{"tier": "tier1"}` + "\x00junk",
		"invalid UTF-8": `{"tier": "tier` + "\xff" + `"}`,
		"NaN":           `{"limits": {"acme/m": {"rpm": NaN}}}`,
		"Infinity":      `{"limits": {"acme/m": {"rpm": Infinity}}}`,
		"2^64":          `{"limits": {"acme/m": {"rpm": 18446744073709551616}}}`,
	}
	for what, cfg := range configs {
		_, err := Open(cfg)
		rows = append(rows,
			row{"Open: " + what, err, ErrConfig},
			row{"Configure: " + what, tr.Configure(cfg), ErrConfig},
			row{"ConfigureGlobal: " + what, ConfigureGlobal(cfg), ErrConfig},
		)
	}
	for _, r := range rows {
		var e *Error
		if !errors.Is(r.err, r.kind) || !errors.As(r.err, &e) || e.Message == "" {
			t.Errorf("%s: got %v, want %v", r.name, r.err, r.kind)
		}
	}

	// Nothing reached the library: no use, no name cut short, no blocking 429.
	s, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Models) != 1 || s.Models[m] == nil {
		t.Errorf("models = %v; want only %s", s.Models, m)
	}
	if w := s.Models[m]["requests_per_minute"]; w.Current != 0 || w.Limit == nil || *w.Limit != 1000 {
		t.Errorf("requests_per_minute = %+v; want nothing used, limit 1000", w)
	}
	if len(s.Provider) != 0 {
		t.Errorf("provider = %+v; want nothing observed", s.Provider)
	}
}

func TestBadInputEdgesAccepted(t *testing.T) {
	tr := open(t, `{"builtin_tiers": false, "limits": {"acme/m": {"rpm": 1000}}}`)
	// A header that is not UTF-8 is skipped like any malformed one (net/http
	// passes obs-text bytes through); the other headers are used.
	h := http.Header{
		"X-Ratelimit-Remaining-Requests": {"0\xff"},
		"X-Ratelimit-Limit-Requests":     {"60"},
	}
	if err := tr.ObserveHeaders("openai/m", h); err != nil {
		t.Fatalf("ObserveHeaders(a header not UTF-8) = %v; want it skipped", err)
	}
	s, _ := tr.Stats()
	if p := s.Provider["openai/m"].Requests; p == nil || p.Remaining != nil || p.Limit == nil || *p.Limit != 60 {
		t.Errorf("provider requests = %+v; want limit 60 and no remaining", p)
	}
	// The largest count is a count; a zero delay blocks nothing; UTF-8 is text.
	if _, err := tr.CanMake("acme/m", ^uint64(0)); err != nil {
		t.Errorf("CanMake(2^64-1) = %v", err)
	}
	if err := tr.ReportLimitedAfter("acme/m", 0); err != nil {
		t.Errorf("ReportLimitedAfter(0) = %v", err)
	}
	if ok, _, err := tr.TryAcquire("acme/é-\U0001F600", 1); err != nil || !ok {
		t.Errorf("TryAcquire(UTF-8 name) = %v, %v", ok, err)
	}
	// Go's timeouts are contexts: an expired one (a negative timeout) returns
	// ctx.Err() at once, trying nothing.
	ctx, cancel := context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	if _, err := tr.Acquire(ctx, "acme/m", 1); err != context.DeadlineExceeded {
		t.Errorf("Acquire(expired context) = %v; want DeadlineExceeded", err)
	}
	if !strings.Contains(quoteShort(strings.Repeat("x", 200)), "...") {
		t.Error("quoteShort does not elide long strings")
	}
}
