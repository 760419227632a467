"""Closed-loop HTTP/1.1 load generator for `make bench`, used when `wrk` is not installed; also parses wrk.

Hand-written because the Python load tools (locust, httpx loops) cost far more CPU per request than the
server under test: this one keeps N keep-alive connections busy with raw asyncio protocols on uvloop,
records every request's latency in the measured window, and reads the server's CPU time (utime + stime
from /proc/<pid>/stat) at the exact edges of that window, so CPU per request holds even when the
generator, not the server, is the bottleneck.

    python loadgen.py --port 8000 --path /api/v1/info --connections 10 --warmup 1 --duration 5 --pid 1234

prints one JSON object: requests, errors, seconds, rps, latencies (p50/p90/p99/max in ms), server CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from array import array
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import process_cpu_seconds, process_wait_seconds
from report import latency_summary

# What a typical API client sends; the same bytes go to every server under test.
REQUEST_HEADERS = (
    ("Accept", "application/json"),
    ("Accept-Encoding", "gzip, deflate"),
    ("User-Agent", "rampart-bench/1"),
)


def build_request(host: str, port: int, path: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in REQUEST_HEADERS)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def response_length(buffer: bytes | bytearray) -> tuple[int, int] | None:
    """(status, total bytes) of the first complete HTTP/1.1 response in ``buffer``; None if incomplete.

    Handles Content-Length and chunked bodies (BaseHTTPMiddleware apps may stream).
    """
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = bytes(buffer[:head_end]).lower()
    status = int(head[9:12])
    body_start = head_end + 4
    marker = head.find(b"\r\ncontent-length:")
    if marker >= 0:
        value_end = head.find(b"\r\n", marker + 2)
        length = int(head[marker + 17 : value_end if value_end >= 0 else None])
        total = body_start + length
        return (status, total) if len(buffer) >= total else None
    if b"\r\ntransfer-encoding: chunked" in head:
        position = body_start
        while True:
            size_end = buffer.find(b"\r\n", position)
            if size_end < 0:
                return None
            size = int(bytes(buffer[position:size_end]).split(b";")[0], 16)
            position = size_end + 2 + size + 2
            if len(buffer) < position:
                return None
            if size == 0:
                return status, position
    return status, body_start  # no body (e.g. 204)


class Recorder:
    def __init__(self) -> None:
        self.measuring = False
        self.latencies = array("q")
        self.requests = 0
        self.errors = 0


class Connection(asyncio.Protocol):
    def __init__(self, request: bytes, recorder: Recorder) -> None:
        self.request = request
        self.recorder = recorder
        self.buffer = bytearray()
        self.sent_at = 0
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        self.sent_at = time.perf_counter_ns()
        assert self.transport is not None
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        parsed = response_length(self.buffer)
        if parsed is None:
            return
        status, length = parsed
        del self.buffer[:length]
        recorder = self.recorder
        if recorder.measuring:
            recorder.requests += 1
            recorder.latencies.append(time.perf_counter_ns() - self.sent_at)
            if status != 200:
                recorder.errors += 1
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)


async def run_load(
    host: str, port: int, path: str, connections: int, warmup: float, duration: float, pid: int | None
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    request = build_request(host, port, path)
    protocols = []
    for _ in range(connections):
        _, protocol = await loop.create_connection(lambda: Connection(request, recorder), host, port)
        protocols.append(protocol)
    await asyncio.sleep(warmup)
    cpu_before = process_cpu_seconds(pid) if pid else 0.0
    wait_before = process_wait_seconds(pid) if pid else 0.0
    own_before = time.process_time()
    started = time.perf_counter()
    recorder.measuring = True
    await asyncio.sleep(duration)
    recorder.measuring = False
    seconds = time.perf_counter() - started
    cpu_after = process_cpu_seconds(pid) if pid else 0.0
    wait = process_wait_seconds(pid) - wait_before if pid else float("nan")
    own_cpu = time.process_time() - own_before
    lost = sum(1 for protocol in protocols if protocol.closed.done())
    for protocol in protocols:
        if protocol.transport is not None:
            protocol.transport.close()
    server_cpu = cpu_after - cpu_before
    return {
        "generator": "python",
        "connections": connections,
        "requests": recorder.requests,
        "errors": recorder.errors,
        "connections_lost": lost,
        "seconds": seconds,
        "rps": recorder.requests / seconds,
        **latency_summary(recorder.latencies),
        "server_cpu_seconds": server_cpu if pid else None,
        "server_cpu_us_per_request": (server_cpu / recorder.requests * 1e6)
        if pid and recorder.requests
        else None,
        "server_cpu_utilisation": server_cpu / seconds if pid else None,
        "server_cpu_wait_share": wait / seconds,
        "generator_cpu_utilisation": own_cpu / seconds,
    }


_WRK_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests, req/s, errors and latency percentiles from ``wrk --latency`` output."""
    result: dict[str, Any] = {"generator": "wrk"}
    total = re.search(r"^\s*(\d+) requests in ([\d.]+)(\w+)", output, re.MULTILINE)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if total is None or rps is None:
        raise ValueError(f"unexpected wrk output:\n{output}")
    result["requests"] = int(total.group(1))
    result["rps"] = float(rps.group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output, re.MULTILINE
    )
    result["errors"] = (int(non_2xx.group(1)) if non_2xx else 0) + (
        sum(int(value) for value in socket_errors.groups()) if socket_errors else 0
    )
    for name, key in (("50", "p50_ms"), ("90", "p90_ms"), ("99", "p99_ms")):
        match = re.search(rf"^\s+{name}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
        result[key] = float(match.group(1)) * _WRK_UNITS_MS[match.group(2)] if match else float("nan")
    latency_max = re.search(r"^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)", output, re.MULTILINE)
    result["max_ms"] = (
        float(latency_max.group(1)) * _WRK_UNITS_MS[latency_max.group(2)] if latency_max else float("nan")
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--pid", type=int, help="the server's pid, to read its CPU time over the window")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # plain asyncio still works, it just saturates sooner
        runner = asyncio.run
    else:
        runner = uvloop.run
    result = runner(
        run_load(args.host, args.port, args.path, args.connections, args.warmup, args.duration, args.pid)
    )
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
