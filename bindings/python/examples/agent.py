"""An example agent: a main loop and its tools share the GLOBAL tracker.

Simulates LLM calls (no network) to openai/gpt-4o-mini: each call acquires
with an estimate, "runs", then settles with the real token count. Tools run in
threads and use their own global_tracker() handle: it is the same tracker.

Run: RATETRACK_LIBRARY=/path/to/libratetrack.so.0 python examples/agent.py
"""

from __future__ import annotations

import json
import random
import threading

import ratetrack

MODEL = "openai/gpt-4o-mini"


def fake_llm_call(prompt_tokens: int, max_tokens: int) -> int:
    """Pretends to call the API; returns the tokens really used."""
    return prompt_tokens + random.randint(max_tokens // 4, max_tokens)


def call_llm(tracker: ratetrack.Tracker, prompt_tokens: int, max_tokens: int = 400) -> None:
    grant = tracker.acquire(MODEL, prompt_tokens + max_tokens, timeout=10)
    used = fake_llm_call(prompt_tokens, max_tokens)
    tracker.settle(grant, used)


def tool(name: str, calls: int) -> None:
    tracker = ratetrack.global_tracker()  # the same global as the agent's
    for _ in range(calls):
        call_llm(tracker, prompt_tokens=random.randint(100, 800))
    print(f"tool {name}: {calls} calls done")


def main() -> None:
    agent = ratetrack.global_tracker("tier1")
    print(f"libratetrack {ratetrack.version()}, global tier1")
    tools = [threading.Thread(target=tool, args=(f"search-{i}", 20)) for i in range(3)]
    for t in tools:
        t.start()
    for _ in range(40):  # the main agent's own calls
        call_llm(agent, prompt_tokens=random.randint(500, 2000), max_tokens=800)
        if not agent.can_make(MODEL, 2000):
            print(f"agent: would wait {agent.wait_time(MODEL, 2000):.2f}s")
    for t in tools:
        t.join()
    stats = ratetrack.global_stats()
    assert stats is not None
    windows = stats["models"][MODEL]
    print(json.dumps({"tier": stats["tier"], MODEL: windows}, indent=2))
    rpm = windows["requests_per_minute"]
    print(f"requests this minute: {rpm['current']} of {rpm['limit']} ({rpm['usage_percent']:.1f}%)")


if __name__ == "__main__":
    main()
