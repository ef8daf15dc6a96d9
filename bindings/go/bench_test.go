package ratetrack

import "testing"

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
