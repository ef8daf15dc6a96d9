// Command racer races try_acquire against racers in other processes (and other
// languages) that share the same "shm:NAME" segment: together they are
// admitted exactly LIMIT times.
//
//	racer NAME MODEL LIMIT ATTEMPTS [START_FILE]
//
// It opens a private tracker on shm:NAME with LIMIT requests per hour for
// MODEL, waits until START_FILE exists (if given), calls TryAcquire(MODEL, 1)
// ATTEMPTS times and prints "admitted <N>".
//
//	RATETRACK_LIBRARY=/path/to/libratetrack.so.0 go run ./examples/racer demo openai/gpt-4o-mini 100 200
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	ratetrack "github.com/libratetrack/libratetrack/bindings/go"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "racer:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 4 && len(args) != 5 {
		return errors.New("usage: racer NAME MODEL LIMIT ATTEMPTS [START_FILE]")
	}
	name, model := args[0], args[1]
	limit, err := strconv.ParseUint(args[2], 10, 64)
	if err != nil {
		return fmt.Errorf("LIMIT: %w", err)
	}
	attempts, err := strconv.ParseUint(args[3], 10, 64)
	if err != nil {
		return fmt.Errorf("ATTEMPTS: %w", err)
	}

	config, err := json.Marshal(map[string]any{
		"backend":       "shm:" + name,
		"builtin_tiers": false,
		"limits": map[string]any{
			model: map[string]any{"windows": []map[string]any{
				{"unit": "requests", "limit": limit, "seconds": 3600},
			}},
		},
	})
	if err != nil {
		return err
	}
	t, err := ratetrack.Open(string(config))
	if err != nil {
		return err
	}
	defer t.Close()

	if len(args) == 5 {
		if err := waitFor(args[4], 30*time.Second); err != nil {
			return err
		}
	}

	var admitted uint64
	for i := uint64(0); i < attempts; i++ {
		ok, _, err := t.TryAcquire(model, 1)
		if err != nil {
			return err
		}
		if ok {
			admitted++
		}
	}
	fmt.Printf("admitted %d\n", admitted)
	return nil
}

// waitFor polls every millisecond until path exists, for at most max.
func waitFor(path string, max time.Duration) error {
	deadline := time.Now().Add(max)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %v", path, max)
		}
		time.Sleep(time.Millisecond)
	}
}
