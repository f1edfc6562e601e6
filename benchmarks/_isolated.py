"""Run a measurement in its own Python process with an address-space cap; return its JSON result.

Each configuration gets a fresh process, so ``ru_maxrss`` is that configuration's peak memory, and a
configuration that would exhaust the machine is stopped by the cap instead.
"""

from __future__ import annotations

import json
import resource
import subprocess


def run_isolated(python: str, code: str, args: list[str], cap_gb: float) -> dict:
    def limit() -> None:
        cap = int(cap_gb * 1024**3)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    p = subprocess.run([python, "-c", code, *map(str, args)], capture_output=True, text=True, preexec_fn=limit)
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {p.returncode}: {last[:300]}", "mem_cap_gb": cap_gb}
    return json.loads(p.stdout.strip().splitlines()[-1])
