package ratetrack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const mini = "openai/gpt-4o-mini"

const childEnv = "RATETRACK_GO_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "load-error" {
		// A fresh process (see TestLoadErrorListsPlaces): dlopen of the
		// system name would find a copy already loaded in this one.
		_, err := openLibrary("/nonexistent/explicit/libratetrack.so.0")
		var le *LoadError
		if errors.As(err, &le) && errors.Is(err, ErrLibraryNotFound) {
			fmt.Printf("tried=%d\n%v", len(le.Tried), err)
		} else {
			fmt.Printf("not a LoadError: %v", err)
		}
		os.Exit(0)
	}
	if err := Load(""); err != nil {
		fmt.Fprintf(os.Stderr, "cannot load libratetrack (set %s): %v\n", EnvLibrary, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// open is Open that fails the test on error and closes at cleanup.
func open(t testing.TB, config string) *Tracker {
	t.Helper()
	tr, err := Open(config)
	if err != nil {
		t.Fatalf("Open(%s): %v", config, err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// freshGlobal resets the global and returns a handle on it with tier1.
func freshGlobal(t *testing.T) *Tracker {
	t.Helper()
	if err := ResetGlobal(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ResetGlobal() })
	g, err := Global("tier1")
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func wantKind(t *testing.T, what string, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("%s: got error %v, want %v", what, err, kind)
	}
	var e *Error
	if !errors.As(err, &e) || e.Message == "" {
		t.Fatalf("%s: %v is not an *Error with a message", what, err)
	}
}

// ---------------------------------------------------------------- unit tests

func TestErrorMapping(t *testing.T) {
	sentinels := map[int]error{
		CodeInvalid: ErrInvalid, CodeConfig: ErrConfig, CodeTooLarge: ErrTooLarge,
		CodeBackend: ErrBackend, CodeNoMem: ErrNoMem, CodeInternal: ErrInternal,
	}
	names := map[int]string{
		CodeInvalid: "RT_E_INVALID", CodeConfig: "RT_E_CONFIG", CodeTooLarge: "RT_E_TOO_LARGE",
		CodeBackend: "RT_E_BACKEND", CodeNoMem: "RT_E_NOMEM", CodeInternal: "RT_E_INTERNAL",
	}
	for code, sentinel := range sentinels {
		err := error(newError(code, "detail"))
		for other, s := range sentinels {
			if got := errors.Is(err, s); got != (other == code) {
				t.Errorf("errors.Is(code %d, sentinel %d) = %v", code, other, got)
			}
		}
		if !errors.Is(fmt.Errorf("wrapped: %w", err), sentinel) {
			t.Errorf("code %d: wrapped error does not match its sentinel", code)
		}
		if msg := err.Error(); !strings.Contains(msg, names[code]) || !strings.Contains(msg, "detail") {
			t.Errorf("code %d: Error() = %q", code, msg)
		}
	}
	unknown := newError(-99, "x")
	for _, s := range sentinels {
		if errors.Is(unknown, s) {
			t.Errorf("unknown code matches %v", s)
		}
	}
	if StatusName(-99) != "RT_STATUS(-99)" || StatusName(CodeLimited) != "RT_LIMITED" {
		t.Error("StatusName")
	}
}

func TestCheckVersion(t *testing.T) {
	for _, n := range []int{100, 101, 199} {
		if err := checkVersion(n, "", "lib"); err != nil {
			t.Errorf("checkVersion(%d) = %v", n, err)
		}
	}
	for _, n := range []int{0, 99, 200, 10100} {
		err := checkVersion(n, "", "/x/lib.so")
		var ve *VersionError
		if !errors.As(err, &ve) || !errors.Is(err, ErrVersionMismatch) {
			t.Fatalf("checkVersion(%d) = %v, want a VersionError", n, err)
		}
		want := fmt.Sprintf("%d.%d.%d", n/10000, n/100%100, n%100)
		if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "0.1") {
			t.Errorf("checkVersion(%d): %q does not name both versions", n, err)
		}
	}
}

// A real shared object claiming version 0.2.3 is refused at load time.
func TestVersionMismatchLibrary(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler to build a fake library")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "fake.c")
	so := filepath.Join(dir, "libfake.so")
	os.WriteFile(src, []byte(`int rt_version_number(void) { return 203; }
const char *rt_version_string(void) { return "0.2.3"; }
`), 0o644)
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", so, src).CombinedOutput(); err != nil {
		t.Skipf("cannot build fake library: %v %s", err, out)
	}
	_, err = openLibrary(so)
	if !errors.Is(err, ErrVersionMismatch) {
		t.Fatalf("openLibrary(fake 0.2.3) = %v, want a version mismatch", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "0.2.3") || !strings.Contains(msg, "0.1") || !strings.Contains(msg, so) {
		t.Errorf("message %q should name both versions and the file", msg)
	}
}

// A library claiming 0.1.0 but lacking rt_open_ex, rt_global_get_ex and
// rt_stats_json_ex is an earlier build: refused as a version mismatch.
func TestLibraryWithoutExFunctionsIsRefused(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler to build a fake library")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "old.c")
	so := filepath.Join(dir, "libold.so")
	code := "int rt_version_number(void) { return 100; }\nconst char *rt_version_string(void) { return \"0.1.0\"; }\n"
	for _, f := range []string{"rt_status_string", "rt_last_error", "rt_free", "rt_global_get",
		"rt_global_configure", "rt_open", "rt_configure", "rt_close", "rt_can_make", "rt_record",
		"rt_try_acquire", "rt_try_acquire_grant", "rt_settle", "rt_wait_time", "rt_reset", "rt_stats_json"} {
		code += "void " + f + "(void) {}\n"
	}
	os.WriteFile(src, []byte(code), 0o644)
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", so, src).CombinedOutput(); err != nil {
		t.Skipf("cannot build fake library: %v %s", err, out)
	}
	_, err = openLibrary(so)
	if !errors.Is(err, ErrVersionMismatch) {
		t.Fatalf("openLibrary(0.1.0 without the _ex functions) = %v, want a version mismatch", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "rt_global_get_ex") || !strings.Contains(msg, so) {
		t.Errorf("message %q should name the missing function and the file", msg)
	}
}

func TestLoadErrorListsPlaces(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=load-error",
		EnvLibrary+"=/nonexistent/env/libratetrack.so.0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	msg := string(out)
	if strings.HasPrefix(msg, "not a LoadError: <nil>") {
		t.Skip("the system loader found an installed libratetrack.so.0")
	}
	for _, want := range []string{"tried=3\n", "path /nonexistent/explicit/libratetrack.so.0: ",
		"$RATETRACK_LIBRARY=/nonexistent/env/libratetrack.so.0: ",
		"system loader libratetrack.so.0: ", "No such file"} {
		if !strings.Contains(msg, want) {
			t.Errorf("load error does not mention %q:\n%s", want, msg)
		}
	}
}

func TestLoadOnce(t *testing.T) {
	if err := Load(""); err != nil {
		t.Fatal(err)
	}
	if err := Load(LibraryPath()); err != nil {
		t.Errorf("Load(same path) = %v", err)
	}
	if err := Load("/some/other/libratetrack.so.0"); err == nil {
		t.Error("Load(other path) after loading succeeded")
	}
	v, n, err := LibraryVersion()
	if err != nil || n/100 != 1 || !strings.HasPrefix(v, "0.1.") {
		t.Errorf("LibraryVersion() = %q, %d, %v", v, n, err)
	}
}

// ------------------------------------------------------------ global tracker

func TestGlobalIsShared(t *testing.T) {
	if err := ResetGlobal(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ResetGlobal() })
	if s, err := GlobalStats(); err != nil || s != nil {
		t.Fatalf("GlobalStats() before creation = %v, %v; want nil, nil", s, err)
	}
	a, err := Global("")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Global("tier1")
	if err != nil {
		t.Fatal(err)
	}
	if !a.IsGlobal() || a.h != b.h {
		t.Fatal("two Global() handles are not the same tracker")
	}
	if err := a.Record(mini, 42); err != nil {
		t.Fatal(err)
	}
	a.Close() // no-op on the global
	s, err := b.Stats()
	if err != nil {
		t.Fatal(err)
	}
	w := s.Models[mini]
	if w["requests_per_minute"].Current != 1 || w["tokens_per_minute"].Current != 42 {
		t.Errorf("usage recorded via one handle not seen via the other: %+v", w)
	}
	if s.Tier != "tier1" || s.Backend != "memory" {
		t.Errorf("tier/backend = %q/%q", s.Tier, s.Backend)
	}
	gs, err := GlobalStats()
	if err != nil || gs == nil || gs.Models[mini]["requests_per_minute"].Current != 1 {
		t.Fatalf("GlobalStats() = %+v, %v", gs, err)
	}
	if _, _, err := a.TryAcquire(mini, 1); err != nil {
		t.Errorf("global handle unusable after Close: %v", err)
	}
}

// rt_reset(NULL): the global's usage is forgotten and GlobalStats is nil until
// the next Global, which chooses the tier again as at first creation. Until
// then the old tier's limits stay in force, and old handles stay valid.
func TestResetGlobalSemantics(t *testing.T) {
	t.Setenv("RATETRACK_TIER", "tier1") // the tier chosen at (re)creation for ""
	old := freshGlobal(t)
	if _, err := Global("tier2"); err != nil {
		t.Fatal(err)
	}
	if err := old.Record(mini, 7); err != nil {
		t.Fatal(err)
	}
	if err := ResetGlobal(); err != nil {
		t.Fatal(err)
	}
	if s, err := GlobalStats(); err != nil || s != nil {
		t.Fatalf("GlobalStats() after ResetGlobal = %+v, %v; want nil, nil", s, err)
	}
	s, err := old.Stats()
	if err != nil {
		t.Fatalf("old handle after ResetGlobal: %v", err)
	}
	rpm := s.Models[mini]["requests_per_minute"]
	if s.Tier != "tier2" || rpm.Limit == nil || *rpm.Limit != 5000 || rpm.Current != 0 {
		t.Errorf("old handle after ResetGlobal: tier %q, rpm %+v; want tier2's limit 5000 and no usage", s.Tier, rpm)
	}
	if err := old.Record(mini, 3); err != nil {
		t.Fatal(err)
	}
	if s, err := GlobalStats(); err != nil || s != nil {
		t.Fatalf("GlobalStats() before the next Global = %+v, %v; want nil, nil", s, err)
	}
	g, err := Global("")
	if err != nil {
		t.Fatal(err)
	}
	gs, err := GlobalStats()
	if err != nil || gs == nil {
		t.Fatalf("GlobalStats() after Global = %+v, %v", gs, err)
	}
	rpm = gs.Models[mini]["requests_per_minute"]
	if gs.Tier != "tier1" || rpm.Limit == nil || *rpm.Limit != 500 || rpm.Current != 1 {
		t.Errorf("after Global(\"\"): tier %q, rpm %+v; want tier1 (limit 500) with the 1 request made since the reset", gs.Tier, rpm)
	}
	if g.h != old.h {
		t.Error("Global after ResetGlobal returned another handle")
	}
}

// The seed scenario: an agent and a tool share gpt-4o-mini (500 rpm).
func TestSeedScenario(t *testing.T) {
	agent := freshGlobal(t)
	tool, err := Global("")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 400; i++ {
		ok, _, err := agent.TryAcquire(mini, 100)
		if err != nil || !ok {
			t.Fatalf("agent request %d: ok=%v err=%v", i, ok, err)
		}
	}
	for i := 0; i < 100; i++ {
		if ok, err := tool.CanMake(mini, 100); err != nil || !ok {
			t.Fatalf("tool request %d: CanMake=%v err=%v", i, ok, err)
		}
		if err := tool.Record(mini, 100); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := agent.CanMake(mini, 100); err != nil || ok {
		t.Errorf("CanMake after 500 requests = %v, %v; want false", ok, err)
	}
	ok, retry, err := tool.TryAcquire(mini, 100)
	if err != nil || ok || retry <= 0 {
		t.Errorf("TryAcquire after 500 requests = %v, %v, %v; want limited with retry > 0", ok, retry, err)
	}
	s, _ := GlobalStats()
	rpm := s.Models[mini]["requests_per_minute"]
	if rpm.Current != 500 || rpm.Limit == nil || *rpm.Limit != 500 || rpm.Remaining == nil || *rpm.Remaining != 0 ||
		rpm.UsagePercent == nil || *rpm.UsagePercent != 100 {
		t.Errorf("requests_per_minute = %+v", rpm)
	}
	if tpd := s.Models[mini]["tokens_per_day"]; tpd.Limit != nil || tpd.Remaining != nil || tpd.UsagePercent != nil || tpd.Current != 50000 {
		t.Errorf("tokens_per_day (unlimited) = %+v; want limit, remaining and usage_percent nil", tpd)
	}
}

// ---------------------------------------------------------------- error kinds

func TestErrorKinds(t *testing.T) {
	tr := open(t, "")
	_, _, err := tr.TryAcquire("", 1)
	wantKind(t, "TryAcquire(empty model)", err, ErrInvalid)
	_, err = tr.CanMake("", 1)
	wantKind(t, "CanMake(empty model)", err, ErrInvalid)
	wantKind(t, "Record(empty model)", tr.Record("", 1), ErrInvalid)
	wantKind(t, "Record(NUL in model)", tr.Record("a/b\x00c", 1), ErrInvalid)
	wantKind(t, "Settle(zero grant)", tr.Settle(Grant{Model: mini}, 1), ErrInvalid)

	_, err = Open("{bad json")
	wantKind(t, "Open(bad JSON)", err, ErrConfig)
	_, err = Open(`{"no_such_key": 1}`)
	wantKind(t, "Open(unknown key)", err, ErrConfig)
	if !strings.Contains(err.Error(), "no_such_key") {
		t.Errorf("config error does not name the key: %v", err)
	}
	wantKind(t, "Configure(bad)", tr.Configure(`{"tier": 5}`), ErrConfig)
	wantKind(t, "ConfigureGlobal(bad)", ConfigureGlobal(`{"limits": [}`), ErrConfig)
	_, err = Global("no-such-tier")
	wantKind(t, "Global(unknown tier)", err, ErrConfig)

	g := freshGlobal(t)
	_, _, err = g.TryAcquire(mini, 300000) // tpm is 200000
	wantKind(t, "TryAcquire(over tpm)", err, ErrTooLarge)
	_, err = g.CanMake(mini, 300000)
	wantKind(t, "CanMake(over tpm)", err, ErrTooLarge)
	_, err = g.WaitTime(mini, 300000)
	wantKind(t, "WaitTime(over tpm)", err, ErrTooLarge)
	_, err = g.Acquire(context.Background(), mini, 300000)
	wantKind(t, "Acquire(over tpm)", err, ErrTooLarge)

	c, _ := Open("")
	c.Close()
	c.Close()
	_, _, err = c.TryAcquire(mini, 1)
	wantKind(t, "TryAcquire(closed)", err, ErrInvalid)
	_, err = c.Stats()
	wantKind(t, "Stats(closed)", err, ErrInvalid)
}

func TestUnknownModelIsAdmittedAndTracked(t *testing.T) {
	tr := open(t, `{"builtin_tiers": false}`)
	for i := 0; i < 3; i++ {
		if ok, _, err := tr.TryAcquire("nobody/knows", 7); err != nil || !ok {
			t.Fatalf("TryAcquire = %v, %v", ok, err)
		}
	}
	s, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if w := s.Models["nobody/knows"]["requests_per_minute"]; w.Current != 3 || w.Limit != nil || w.Remaining != nil || w.UsagePercent != nil {
		t.Errorf("unknown model stats = %+v", s.Models["nobody/knows"])
	}
}

// ------------------------------------------------------------------ freeing

func rssKB(t *testing.T) int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest := strings.TrimPrefix(sc.Text(), "VmRSS:"); rest != sc.Text() {
			n, _ := strconv.Atoi(strings.Fields(rest)[0])
			return n
		}
	}
	t.Skip("no VmRSS")
	return 0
}

func TestStatsDoesNotLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	// A small configuration: the library's stats of the whole tier1 table take
	// about 0.5 ms each, too slow for 100k calls.
	tr := open(t, `{"builtin_tiers": false, "limits": {"acme/a": {"rpm": 5, "tpm": 50, "rpd": 500}, "acme/b": {"rpm": 5, "tpm": 50, "rpd": 500}}}`)
	tr.Record("acme/a", 10)
	raw, err := tr.lib.statsJSON(tr.h)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100000
	const slackKB = 8 * 1024
	// A leak of every string must be well above the slack to be seen.
	if len(raw)*n/1024 < 4*slackKB {
		t.Fatalf("stats JSON is only %d bytes: a leak would not show", len(raw))
	}
	for i := 0; i < 2000; i++ {
		tr.Stats()
	}
	runtime.GC()
	debug.FreeOSMemory()
	before := rssKB(t)
	for i := 0; i < n; i++ {
		if _, err := tr.Stats(); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	debug.FreeOSMemory()
	after := rssKB(t)
	t.Logf("RSS %d KB -> %d KB over %d stats calls (%d-byte JSON)", before, after, n, len(raw))
	if after-before > slackKB {
		t.Errorf("RSS grew by %d KB over %d stats calls", after-before, n)
	}
}

// -------------------------------------------------------------- concurrency

func TestConcurrentTryAcquireAdmitsExactlyTheLimit(t *testing.T) {
	tr := open(t, `{"builtin_tiers": false, "limits": {"acme/m": {"rpm": 100}}}`)
	var admitted, limited atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				ok, retry, err := tr.TryAcquire("acme/m", 1)
				switch {
				case err != nil:
					t.Error(err)
					return
				case ok:
					admitted.Add(1)
				case retry <= 0:
					t.Error("limited with retry-after <= 0")
				default:
					limited.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if admitted.Load() != 100 || limited.Load() != 300 {
		t.Errorf("admitted %d, limited %d; want 100, 300", admitted.Load(), limited.Load())
	}
	s, _ := tr.Stats()
	if c := s.Models["acme/m"]["requests_per_minute"].Current; c != 100 {
		t.Errorf("recorded %d requests, want 100", c)
	}
}

// The hot calls keep checked copies of model names in a small table of
// slots. More names than slots, used in turn from several goroutines (so
// names that share a slot replace each other's copy all the time), each
// reach their own model: every one is counted exactly as often as it was
// passed, and a NUL in a name is still refused every time.
func TestModelNamesSharingSlots(t *testing.T) {
	const names, goroutines, rounds = 3 * modelSlots, 4, 50
	model := func(i int) string { return fmt.Sprintf("slots/%s%d", strings.Repeat("m", i%5), i) }
	tr := open(t, `{"builtin_tiers": false, "limits": {"slots/*": {"rpm": 1000000}}}`)
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				for i := 0; i < names; i++ {
					m := model((i + g) % names)
					if ok, _, err := tr.TryAcquire(m, 1); !ok || err != nil {
						t.Errorf("TryAcquire(%q) = %v, %v", m, ok, err)
						return
					}
					if _, _, err := tr.TryAcquire(m+"\x00x", 1); !errors.Is(err, ErrInvalid) {
						t.Errorf("TryAcquire(%q) = %v, want ErrInvalid", m+"\x00x", err)
						return
					}
				}
			}
		}(g)
	}
	wg.Wait()
	s, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < names; i++ {
		if c := s.Models[model(i)]["requests_per_minute"].Current; c != goroutines*rounds {
			t.Errorf("%s: %d requests, want %d", model(i), c, goroutines*rounds)
		}
	}
	if len(s.Models) != names {
		t.Errorf("%d models in the stats, want %d", len(s.Models), names)
	}
}

// Each goroutine's error carries its own rt_last_error message, although
// many goroutines fail at once (the message is thread-local in the library).
func TestLastErrorPerGoroutine(t *testing.T) {
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				key := fmt.Sprintf("bad_key_%d_%d_x", g, i)
				_, err := Open(fmt.Sprintf(`{%q: 1}`, key))
				if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), key) {
					t.Errorf("Open with %s: %v", key, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}

// Close racing with calls on other goroutines is safe (run with -race).
func TestCloseWhileInUse(t *testing.T) {
	tr, err := Open("")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				if _, _, err := tr.TryAcquire("x/y", 1); err != nil {
					if !errors.Is(err, ErrInvalid) {
						t.Error(err)
					}
					return
				}
			}
		}()
	}
	time.Sleep(time.Millisecond)
	tr.Close()
	wg.Wait()
}

// -------------------------------------------------- grants, waits, blocking

func TestSettleAndWaitTime(t *testing.T) {
	tr := open(t, `{"builtin_tiers": false, "limits": {"acme/m": {"rpm": 100, "tpm": 1000}}}`)
	g, ok, _, err := tr.TryAcquireGrant("acme/m", 800)
	if err != nil || !ok || g.Ticket == 0 || g.Tokens != 800 || g.Model != "acme/m" {
		t.Fatalf("TryAcquireGrant = %+v, %v, %v", g, ok, err)
	}
	if ok, _ := tr.CanMake("acme/m", 300); ok {
		t.Fatal("300 more tokens fit after 800 of 1000")
	}
	// The window may count a unit up to one bucket (1/60 of the span) plus a
	// clock guard after it left: allow 60s + 2s.
	if w, err := tr.WaitTime("acme/m", 300); err != nil || w <= 0 || w > 62*time.Second {
		t.Errorf("WaitTime = %v, %v; want in (0, 62s]", w, err)
	}
	_, ok, retry, err := tr.TryAcquireGrant("acme/m", 300)
	if err != nil || ok || retry <= 0 {
		t.Errorf("TryAcquireGrant over the limit = %v, %v, %v", ok, retry, err)
	}
	if err := tr.Settle(g, 100); err != nil { // refund 700
		t.Fatal(err)
	}
	if ok, err := tr.CanMake("acme/m", 300); err != nil || !ok {
		t.Errorf("CanMake after refund = %v, %v", ok, err)
	}
	if w, err := tr.WaitTime("acme/m", 300); err != nil || w != 0 {
		t.Errorf("WaitTime after refund = %v, %v; want 0", w, err)
	}
	s, _ := tr.Stats()
	if c := s.Models["acme/m"]["tokens_per_minute"].Current; c != 100 {
		t.Errorf("tokens after settle = %d, want 100", c)
	}
}

// settleConfig gives acme/m a tpm of 1000.
const settleConfig = `{"builtin_tiers": false, "limits": {"acme/m": {"rpm": 100, "tpm": 1000}}}`

// usage returns acme/m's requests and tokens in the minute windows.
func usage(t *testing.T, tr *Tracker) (requests, tokens uint64) {
	t.Helper()
	s, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	m := s.Models["acme/m"]
	return m["requests_per_minute"].Current, m["tokens_per_minute"].Current
}

func TestSettleTopUp(t *testing.T) {
	tr := open(t, settleConfig)
	g, ok, _, err := tr.TryAcquireGrant("acme/m", 200)
	if err != nil || !ok {
		t.Fatalf("TryAcquireGrant = %v, %v", ok, err)
	}
	if ok, _ := tr.CanMake("acme/m", 700); !ok {
		t.Fatal("700 more tokens do not fit after 200 of 1000")
	}
	if err := tr.Settle(g, 900); err != nil { // top up 700
		t.Fatal(err)
	}
	if r, tok := usage(t, tr); r != 1 || tok != 900 {
		t.Errorf("usage after top-up = %d requests, %d tokens; want 1, 900", r, tok)
	}
	if ok, err := tr.CanMake("acme/m", 200); err != nil || ok {
		t.Errorf("CanMake(200) after top-up to 900 of 1000 = %v, %v; want false", ok, err)
	}
	if ok, err := tr.CanMake("acme/m", 100); err != nil || !ok {
		t.Errorf("CanMake(100) after top-up to 900 of 1000 = %v, %v; want true", ok, err)
	}
}

// rt_settle checks the ticket, which carries a keyed check of the grant's
// time and token count: granted_tokens other than the grant's own (or a
// forged or zero ticket) is RT_E_INVALID, and nothing changes.
func TestSettleRejectsImpossibleGrantedTokens(t *testing.T) {
	tr := open(t, settleConfig)
	g, ok, _, err := tr.TryAcquireGrant("acme/m", 800)
	if err != nil || !ok {
		t.Fatalf("TryAcquireGrant = %v, %v", ok, err)
	}
	// 5000 could never have been granted under a tpm of 1000; the others
	// could, but are not this grant's count.
	for _, wrong := range []uint64{5000, 801, 799, 100, 0, ^uint64(0)} {
		bad := g
		bad.Tokens = wrong
		wantKind(t, fmt.Sprintf("Settle(granted %d, grant of 800)", wrong), tr.Settle(bad, 100), ErrInvalid)
		if r, tok := usage(t, tr); r != 1 || tok != 800 {
			t.Fatalf("refused Settle(granted %d) changed usage to %d requests, %d tokens; want 1, 800", wrong, r, tok)
		}
	}
	for _, ticket := range []uint64{0, g.Ticket ^ 1, g.Ticket ^ 1<<40, g.Ticket + 1<<23} {
		bad := g
		bad.Ticket = ticket
		wantKind(t, fmt.Sprintf("Settle(ticket %#x, real %#x)", ticket, g.Ticket), tr.Settle(bad, 100), ErrInvalid)
	}
	if r, tok := usage(t, tr); r != 1 || tok != 800 {
		t.Fatalf("refused settles changed usage to %d requests, %d tokens; want 1, 800", r, tok)
	}
	// The grant itself is untouched and still settles, once.
	if err := tr.Settle(g, 100); err != nil {
		t.Fatalf("Settle(the grant as returned) after refused ones = %v", err)
	}
	if r, tok := usage(t, tr); r != 1 || tok != 100 {
		t.Errorf("usage after refund = %d requests, %d tokens; want 1, 100", r, tok)
	}
}

// A ticket is valid only for the tracker that issued it.
func TestSettleRejectsTicketFromAnotherTracker(t *testing.T) {
	a := open(t, settleConfig)
	b := open(t, settleConfig)
	ga, ok, _, err := a.TryAcquireGrant("acme/m", 800)
	if err != nil || !ok {
		t.Fatalf("a.TryAcquireGrant = %v, %v", ok, err)
	}
	if _, ok, _, err := b.TryAcquireGrant("acme/m", 800); err != nil || !ok {
		t.Fatalf("b.TryAcquireGrant = %v, %v", ok, err)
	}
	wantKind(t, "b.Settle(a's grant)", b.Settle(ga, 100), ErrInvalid)
	if r, tok := usage(t, b); r != 1 || tok != 800 {
		t.Errorf("b's usage after refusing a's grant = %d requests, %d tokens; want 1, 800", r, tok)
	}
	if r, tok := usage(t, a); r != 1 || tok != 800 {
		t.Errorf("a's usage after b refused its grant = %d requests, %d tokens; want 1, 800", r, tok)
	}
	if err := a.Settle(ga, 100); err != nil {
		t.Fatalf("a.Settle(a's grant) = %v", err)
	}
	if _, tok := usage(t, a); tok != 100 {
		t.Errorf("a's tokens after refund = %d, want 100", tok)
	}
}

func TestAcquireBlocksUntilTheWindowFrees(t *testing.T) {
	tr := open(t, `{"builtin_tiers": false, "limits": {"acme/m": {"windows": [{"unit": "requests", "limit": 2, "seconds": 1}]}}}`)
	// Generous bounds (the machine may be loaded): 4 acquires at 2 per second
	// must block for about a second, never less, and far less than a minute.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	for i := 0; i < 4; i++ {
		g, err := tr.Acquire(ctx, "acme/m", 5)
		if err != nil || g.Ticket == 0 {
			t.Fatalf("Acquire %d = %+v, %v", i, g, err)
		}
	}
	if el := time.Since(start); el < 900*time.Millisecond || el > 15*time.Second {
		t.Errorf("4 acquires at 2 per second took %v, want about 1s", el)
	}
	s, _ := tr.Stats()
	if w := s.Models["acme/m"]["requests_per_1s"]; w.Limit == nil || *w.Limit != 2 {
		t.Errorf("requests_per_1s = %+v (windows: %v)", w, s.Models["acme/m"])
	}
}

func TestAcquireHonoursContext(t *testing.T) {
	tr := open(t, `{"builtin_tiers": false, "limits": {"acme/m": {"rpm": 1}}}`)
	if _, err := tr.Acquire(context.Background(), "acme/m", 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := tr.Acquire(ctx, "acme/m", 0)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire past deadline = %v", err)
	}
	// Ignoring ctx would wait for the minute window (~60s); allow for load.
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("Acquire returned after %v, want about 200ms", el)
	}
	s, _ := tr.Stats()
	if c := s.Models["acme/m"]["requests_per_minute"].Current; c != 1 {
		t.Errorf("a timed-out Acquire recorded something: %d", c)
	}
}

func TestResetAndConfigure(t *testing.T) {
	tr := open(t, `{"builtin_tiers": false, "limits": {"acme/m": {"rpm": 1}}}`)
	if ok, _, _ := tr.TryAcquire("acme/m", 0); !ok {
		t.Fatal("first request refused")
	}
	if ok, _, _ := tr.TryAcquire("acme/m", 0); ok {
		t.Fatal("second request admitted at rpm 1")
	}
	if err := tr.Reset(); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := tr.TryAcquire("acme/m", 0); !ok {
		t.Fatal("request refused after Reset")
	}
	if err := tr.Configure(`{"limits": {"acme/m": {"rpm": 5}}}`); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := tr.TryAcquire("acme/m", 0); !ok {
		t.Fatal("request refused after raising the limit")
	}
}
