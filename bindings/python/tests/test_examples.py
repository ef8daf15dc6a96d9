"""The agent-loop example (quoted by the README) runs, offline, and does what it says."""

from __future__ import annotations

import os
import re
import subprocess
import sys

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def test_agent_loop_example(library_path: str) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RATETRACK_")}
    environ["RATETRACK_LIBRARY"] = library_path
    proc = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, "agent_loop.py")],
        env=environ, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "anthropic/claude-sonnet-4-20250514 answered 429 (retry-after 1s)" in out
    served = re.search(r"^served: (.*)$", out, re.MULTILINE)
    assert served, out
    counts = dict(re.findall(r"(\S+/\S+) (\d+)", served.group(1)))
    assert set(counts) == {"openai/gpt-4o-mini", "anthropic/claude-sonnet-4-20250514", "gemini/gemini-2.5-flash"}
    assert sum(map(int, counts.values())) == 24 and all(int(n) > 0 for n in counts.values()), out
    # The fake OpenAI answers 429 past the 3 requests its headers announce: the
    # tracker, believing the headers, never sent it one too many.
    assert "remaining requests: 0" in out
    assert "gpt-4o-mini answered 429" not in out
    assert "provider truth for openai/gpt-4o-mini" in out
