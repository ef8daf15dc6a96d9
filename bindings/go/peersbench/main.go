// Command peersbench times libratetrack's TryAcquire next to
// golang.org/x/time/rate in one process: interleaved rounds, each case timed
// in every round. Run by scripts/bench-peers.sh; figures, not a test.
//
// The limits of a real model: rpm 500, tpm 200,000, rpd 10,000,
// tpd 2,000,000; 100 tokens a decision. Every batch starts from fresh state
// (libratetrack: Reset(); a peer: new limiters), outside the timing.
// Admitting: 400 decisions, all admitted (they fit every limit). Refusing:
// the limit spent first (untimed), then 400 decisions, all refused.
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	ratetrack "github.com/libratetrack/libratetrack/bindings/go"
	"golang.org/x/time/rate"
)

const (
	config = `{"builtin_tiers": false, "limits": {"peers/m": {"rpm": 500, "tpm": 200000, "rpd": 10000, "tpd": 2000000}}}`
	model  = "peers/m"
	tokens = 100
	k      = 400
)

func env(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func limiter(limit int, period time.Duration) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(float64(limit)/period.Seconds()), limit)
}

// four is one limiter per window, composed as a user would: one clock
// read, look at every limiter (TokensAt), and only if all have room
// consume from each (AllowN). Not atomic across windows.
type four [4]*rate.Limiter

func newFour() four {
	return four{limiter(500, time.Minute), limiter(200000, time.Minute),
		limiter(10000, 24*time.Hour), limiter(2000000, 24*time.Hour)}
}

var costs = [4]int{1, tokens, 1, tokens}

func (f four) decide(n int) bool {
	now := time.Now()
	for i, l := range f {
		c := costs[i]
		if c != 1 {
			c = n
		}
		if l.TokensAt(now) < float64(c) {
			return false
		}
	}
	for i, l := range f {
		c := costs[i]
		if c != 1 {
			c = n
		}
		l.AllowN(now, c)
	}
	return true
}

func main() {
	rounds := env("PEERS_ROUNDS", 11)
	batches := env("PEERS_BATCHES", 50)
	t, err := ratetrack.Open(config)
	if err != nil {
		panic(err)
	}
	defer t.Close()
	names := []string{
		"libratetrack TryAcquire (4 windows)",
		"x/time/rate, 4 limiters composed",
		"x/time/rate, 1 limiter (tpm only)",
	}
	var f four
	var one *rate.Limiter
	decide := func(c int) bool {
		switch c {
		case 0:
			ok, _, err := t.TryAcquire(model, tokens)
			if err != nil {
				panic(err)
			}
			return ok
		case 1:
			return f.decide(tokens)
		default:
			return one.AllowN(time.Now(), tokens)
		}
	}
	fresh := func(c int) {
		switch c {
		case 0:
			if err := t.Reset(); err != nil {
				panic(err)
			}
		case 1:
			f = newFour()
		default:
			one = limiter(200000, time.Minute)
		}
	}
	ns := [2][][]float64{make([][]float64, len(names)), make([][]float64, len(names))}
	for round := 0; round <= rounds; round++ {
		for r, refusing := range []bool{false, true} {
			for i := range names {
				c := (i + round) % len(names)
				var total time.Duration
				for b := 0; b < batches; b++ {
					fresh(c)
					if refusing {
						for spent := 0; decide(c); spent++ {
							if spent > 100000 {
								panic("never refused")
							}
						}
					}
					admitted := 0
					start := time.Now()
					for j := 0; j < k; j++ {
						if decide(c) {
							admitted++
						}
					}
					total += time.Since(start)
					if want := map[bool]int{false: k, true: 0}[refusing]; admitted != want {
						panic(fmt.Sprintf("%s: %d of %d admitted", names[c], admitted, k))
					}
				}
				if round > 0 { // round 0 is a warm-up
					ns[r][c] = append(ns[r][c], float64(total.Nanoseconds())/float64(batches*k))
				}
			}
		}
	}
	fmt.Printf("ROUNDS %d x %d batches of %d decisions per case\n", rounds, batches, k)
	for r, kind := range []string{"admitting", "refusing"} {
		for c, name := range names {
			v := make([]string, len(ns[r][c]))
			for i, x := range ns[r][c] {
				v[i] = strconv.FormatFloat(x, 'f', 2, 64)
			}
			fmt.Printf("CASE\tgo\t%s\t%s\t%s\n", kind, name, strings.Join(v, ","))
		}
	}
}
