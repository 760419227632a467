"""Steady mixed load for the fleet level (tests/test_fleet.py), run with a generated project's Python.

Each of ``--connections`` clients keeps one HTTP connection to the balancer and loops: create an item (a
write) or read one it created, then pause. Every request is tagged with the phase named in
``<control>/phase`` when it was sent (``<control>/started`` appears with the first answer); the run
ends when ``<control>/stop`` exists. The JSON written to ``--out``: per phase the requests sent,
answered 2xx, 4xx or 5xx, failed without an answer (reset, timeout) and latency percentiles, plus the
id of every acknowledged write. It runs in the generated project's venv, which has httpx.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx

WRITE_SHARE = 0.3
RAMP_SECONDS = 2.0


class Recorder:
    def __init__(self, control: Path) -> None:
        self.control = control
        self.phase = "warmup"
        self.counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.latencies: defaultdict[str, list[float]] = defaultdict(list)
        self.acknowledged: list[int] = []
        self.examples: list[str] = []

    def refresh(self) -> bool:
        """Read the phase; False once the run should stop."""
        phase_file = self.control / "phase"
        if phase_file.exists():
            self.phase = phase_file.read_text().strip() or self.phase
        return not (self.control / "stop").exists()

    def outcome(self, phase: str, kind: str, seconds: float, detail: str = "") -> None:
        if not self.counts:
            (self.control / "started").touch()
        self.counts[phase]["sent"] += 1
        self.counts[phase][kind] += 1
        self.latencies[phase].append(seconds)
        if kind != "ok" and len(self.examples) < 20:
            self.examples.append(f"{phase}: {kind} {detail}")


async def client(number: int, url: str, recorder: Recorder, pause: float) -> None:
    mine: list[int] = []
    sequence = 0
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10.0) as http:
        await asyncio.sleep(random.random() * RAMP_SECONDS)  # a steady load, not a burst of cold starts
        while recorder.refresh():
            phase = recorder.phase
            write = not mine or random.random() < WRITE_SHARE
            started = time.perf_counter()
            try:
                if write:
                    sequence += 1
                    name = f"fleet-{number}-{sequence}-{time.time_ns()}"
                    response = await http.post("/api/v1/items", json={"name": name, "description": "load"})
                else:
                    item = random.choice(mine)
                    response = await http.get(f"/api/v1/items/{item}")
            except httpx.HTTPError as error:
                recorder.outcome(phase, "no_answer", time.perf_counter() - started, repr(error))
            else:
                elapsed = time.perf_counter() - started
                if response.status_code >= 500:
                    recorder.outcome(
                        phase, "status_5xx", elapsed, f"{response.status_code} {response.text[:200]}"
                    )
                elif response.status_code >= 400:
                    recorder.outcome(
                        phase, "status_4xx", elapsed, f"{response.status_code} {response.text[:200]}"
                    )
                else:
                    recorder.outcome(phase, "ok", elapsed)
                    if write:
                        mine.append(response.json()["id"])
                        recorder.acknowledged.append(mine[-1])
            await asyncio.sleep(pause)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--pause", type=float, default=0.5)
    parser.add_argument("--control", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    options = parser.parse_args()
    recorder = Recorder(options.control)
    await asyncio.gather(
        *(client(number, options.url, recorder, options.pause) for number in range(options.connections))
    )
    phases = {
        phase: {
            **counts,
            "p50_ms": round(percentile(recorder.latencies[phase], 0.50) * 1000, 1),
            "p99_ms": round(percentile(recorder.latencies[phase], 0.99) * 1000, 1),
            "max_ms": round(max(recorder.latencies[phase], default=0.0) * 1000, 1),
        }
        for phase, counts in recorder.counts.items()
    }
    report = {"phases": phases, "acknowledged": recorder.acknowledged, "examples": recorder.examples}
    options.out.write_text(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
