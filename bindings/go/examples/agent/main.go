// Command agent simulates an LLM agent and its tools sharing one model's rate
// limits through the process-wide GLOBAL tracker (no network: calls are
// simulated), then prints the tracker's stats.
//
//	RATETRACK_LIBRARY=/path/to/libratetrack.so.0 go run ./examples/agent
package main

import (
	"context"
	"fmt"
	"log"
	"math/rand"
	"sort"
	"sync"
	"time"

	ratetrack "github.com/libratetrack/libratetrack/bindings/go"
)

const model = "openai/gpt-4o-mini"

// callLLM pretends to call the model: it acquires the estimated tokens
// (prompt + max_tokens) and settles the grant with the "real" usage.
func callLLM(ctx context.Context, who string, prompt, maxTokens uint64) error {
	t, err := ratetrack.Global("") // every caller gets the same global tracker
	if err != nil {
		return err
	}
	g, err := t.Acquire(ctx, model, prompt+maxTokens)
	if err != nil {
		return fmt.Errorf("%s: %w", who, err)
	}
	time.Sleep(time.Duration(rand.Intn(3)) * time.Millisecond) // the "request"
	used := prompt + uint64(rand.Intn(int(maxTokens)))
	return t.Settle(g, used)
}

func main() {
	if _, err := ratetrack.Global("tier1"); err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	// Two tools run alongside the main agent, using the same model.
	for _, tool := range []string{"search-tool", "summarize-tool"} {
		wg.Add(1)
		go func(tool string) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if err := callLLM(ctx, tool, 300, 200); err != nil {
					log.Print(err)
				}
			}
		}(tool)
	}
	for step := 0; step < 30; step++ {
		if err := callLLM(ctx, "agent", 1200, 500); err != nil {
			log.Print(err)
		}
	}
	wg.Wait()

	t, _ := ratetrack.Global("")
	ok, _ := t.CanMake(model, 1000)
	wait, _ := t.WaitTime(model, 1000)
	fmt.Printf("can make another 1000-token call: %v (wait %v)\n", ok, wait)

	stats, err := ratetrack.GlobalStats()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("tier %s, backend %s\n", stats.Tier, stats.Backend)
	windows := stats.Models[model]
	names := make([]string, 0, len(windows))
	for name := range windows {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		w := windows[name]
		limit, percent := "unlimited", "-"
		if w.Limit != nil {
			limit = fmt.Sprint(*w.Limit)
		}
		if w.UsagePercent != nil {
			percent = fmt.Sprintf("%.2f%%", *w.UsagePercent)
		}
		fmt.Printf("  %-22s %8d / %-10s (%s)\n", name, w.Current, limit, percent)
	}
}
