package ratetrack

import (
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchConfig gives bench/m all four windows with limits never reached.
const benchConfig = `{"builtin_tiers": false, "limits": {"bench/m": {"rpm": 1000000000, "tpm": 1000000000000, "rpd": 1000000000000, "tpd": 1000000000000}}}`

// BenchmarkTryAcquire measures one TryAcquire through the binding (string
// conversion, thread pinning, cgo call, status mapping). run-bench.sh turns
// its ns/op into the "BENCH go try_acquire_ns=<x>" line.
func BenchmarkTryAcquire(b *testing.B) {
	tr := open(b, benchConfig)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if ok, _, err := tr.TryAcquire("bench/m", 10); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkTryAcquireRefused is TryAcquire on a model whose day's one request
// is used: every call is refused. run-bench.sh prints it as refused_ns.
func BenchmarkTryAcquireRefused(b *testing.B) {
	tr := open(b, `{"builtin_tiers": false, "limits": {"bench/spent": {"rpm": 1000000000, "tpm": 1000000000000, "rpd": 1, "tpd": 1000000000000}}}`)
	if ok, _, err := tr.TryAcquire("bench/spent", 10); !ok || err != nil {
		b.Fatal(ok, err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if ok, wait, err := tr.TryAcquire("bench/spent", 10); ok || wait <= 0 || err != nil {
			b.Fatal(ok, wait, err)
		}
	}
}

// BenchmarkTryAcquireParallel is the same from GOMAXPROCS goroutines.
func BenchmarkTryAcquireParallel(b *testing.B) {
	tr := open(b, benchConfig)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ok, _, err := tr.TryAcquire("bench/m", 10); !ok || err != nil {
				b.Error(ok, err)
				return
			}
		}
	})
}

// BenchmarkFFIFloor is the floor under TryAcquire: one cgo call through the
// same trampoline and dlsym pointer to rt_version_number(), which only
// returns a constant. run-bench.sh prints it as floor_ns.
func BenchmarkFFIFloor(b *testing.B) {
	l, err := lib()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if versionNumberCall(l) <= 0 {
			b.Fatal("rt_version_number() <= 0")
		}
	}
}

// threadsConfig gives each of four goroutines a model of its own that admits
// (bench/m0..m3) and one that refuses once its day's one request is used
// (bench/full0..full3), as bench_core does in C.
const threadsConfig = `{"builtin_tiers": false, "limits": {` +
	`"bench/m0": {"rpm": 1000000000, "tpm": 1000000000000, "rpd": 1000000000000, "tpd": 1000000000000}, ` +
	`"bench/m1": {"rpm": 1000000000, "tpm": 1000000000000, "rpd": 1000000000000, "tpd": 1000000000000}, ` +
	`"bench/m2": {"rpm": 1000000000, "tpm": 1000000000000, "rpd": 1000000000000, "tpd": 1000000000000}, ` +
	`"bench/m3": {"rpm": 1000000000, "tpm": 1000000000000, "rpd": 1000000000000, "tpd": 1000000000000}, ` +
	`"bench/full0": {"rpm": 1000000000, "tpm": 1000000000000, "rpd": 1, "tpd": 1000000000000}, ` +
	`"bench/full1": {"rpm": 1000000000, "tpm": 1000000000000, "rpd": 1, "tpd": 1000000000000}, ` +
	`"bench/full2": {"rpm": 1000000000, "tpm": 1000000000000, "rpd": 1, "tpd": 1000000000000}, ` +
	`"bench/full3": {"rpm": 1000000000, "tpm": 1000000000000, "rpd": 1, "tpd": 1000000000000}}}`

// threadCase is one row of BenchmarkThreads: how many goroutines call at
// once, whether each has a model of its own (else all share bench/m0 or
// bench/full0), and whether every call is refused.
type threadCase struct {
	threads  int
	separate bool
	refused  bool
}

// runThreadCase times calls TryAcquires in all from c.threads goroutines on
// one tracker; the wall time from their release to the last one's end, per
// call (all goroutines' calls: bench_core's real time per iteration).
// Returns the number of calls answered otherwise than the case expects.
func runThreadCase(tr *Tracker, c threadCase, calls int) (nsPerCall float64, wrong int64) {
	per := calls / c.threads
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	var bad atomic.Int64
	for g := 0; g < c.threads; g++ {
		model := "bench/m"
		if c.refused {
			model = "bench/full"
		}
		if c.separate {
			model += strconv.Itoa(g)
		} else {
			model += "0"
		}
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			var n int64
			for i := 0; i < per; i++ {
				ok, wait, err := tr.TryAcquire(model, 10)
				if err != nil || ok == c.refused || (c.refused && wait <= 0) {
					n++
				}
			}
			bad.Add(n)
		}()
	}
	ready.Wait()
	t0 := time.Now()
	close(start)
	done.Wait()
	return float64(time.Since(t0).Nanoseconds()) / float64(per*c.threads), bad.Load()
}

// medianRange is the median of v and its range, as "median min max".
func medianRange(v []float64) (med, lo, hi float64) {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2], s[0], s[len(s)-1]
}

// BenchmarkThreads prints the thread rows of scripts/bench.sh: TryAcquire
// admitted and refused from 1, 2 and 4 goroutines at once on one private
// Tracker, on one model and on a model each. Every case runs once in each
// of 11 rounds (after a warm-up round), in an order that rotates every
// round; a row gives the medians of its rounds and the median and range of
// the per-round ratios refused / admitted. Figures, not a test: it fails
// only if a call is answered otherwise than its case expects. It ignores
// b.N: run it with -benchtime 1x (run-bench.sh does). Prints:
//
//	THREAD_ROW go threads=<n> models=<one|each> admitted_ns=<x> refused_ns=<x> ratio=<x> ratio_min=<x> ratio_max=<x>
func BenchmarkThreads(b *testing.B) {
	tr := open(b, threadsConfig)
	for g := 0; g < 4; g++ {
		if ok, _, err := tr.TryAcquire("bench/full"+strconv.Itoa(g), 10); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
	var cases []threadCase
	for _, n := range []int{1, 2, 4} {
		for _, sep := range []bool{false, true} {
			if n == 1 && sep {
				continue // one goroutine: one model either way
			}
			cases = append(cases, threadCase{n, sep, false}, threadCase{n, sep, true})
		}
	}
	const rounds, calls = 11, 200_000
	ns := make(map[threadCase][]float64)
	for r := -1; r < rounds; r++ { // round -1: warm-up, not kept
		for i := range cases {
			c := cases[(i+r+len(cases))%len(cases)]
			t, wrong := runThreadCase(tr, c, calls)
			if wrong != 0 {
				b.Fatalf("%+v: %d calls answered otherwise", c, wrong)
			}
			if r >= 0 {
				ns[c] = append(ns[c], t)
			}
		}
	}
	b.StopTimer()
	fmt.Printf("THREADS go: a thread is a goroutine (GOMAXPROCS=%d) calling one private Tracker; "+
		"%d calls a case in each of %d interleaved rounds; ns = wall time per call, all goroutines' calls\n",
		runtime.GOMAXPROCS(0), calls, rounds)
	for i := 0; i < len(cases); i += 2 {
		a, r := ns[cases[i]], ns[cases[i+1]]
		ratios := make([]float64, len(a))
		for k := range a {
			ratios[k] = r[k] / a[k]
		}
		am, _, _ := medianRange(a)
		rm, _, _ := medianRange(r)
		q, lo, hi := medianRange(ratios)
		models := "one"
		if cases[i].separate {
			models = "each"
		}
		fmt.Printf("THREAD_ROW go threads=%d models=%s admitted_ns=%.1f refused_ns=%.1f ratio=%.2f ratio_min=%.2f ratio_max=%.2f\n",
			cases[i].threads, models, am, rm, q, lo, hi)
	}
}
