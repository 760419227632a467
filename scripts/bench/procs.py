"""Servers under test: start one pinned to a CPU, time its way to the first 200, read its CPU and memory.

Hand-written: it is a thin layer over subprocess and /proc (the measurements are Linux's own counters).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
UVICORN_FLAGS = ("--loop", "uvloop", "--http", "httptools", "--workers", "1", "--no-access-log")


class ServerFailed(RuntimeError):
    """A server under test did not come up; the message carries the tail of its output."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_pinning(cpu: int) -> list[str]:
    """``taskset -c N`` when there is a CPU N and taskset to pin to it; nothing otherwise."""
    if shutil.which("taskset") is None or (os.cpu_count() or 1) <= cpu:
        return []
    return ["taskset", "-c", str(cpu)]


def process_cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_wait_seconds(pid: int) -> float:
    """Time the process's main thread spent runnable but waiting for a CPU (/proc/<pid>/schedstat): how
    much other work on the machine held the server back."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def rss_mb(pid: int) -> float:
    """Resident memory (VmRSS) of a process in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def http_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    """The status of a GET on 127.0.0.1:port; None while nothing listens."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
            connection.sendall(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
            )
            head = connection.recv(64)
    except OSError:
        return None
    try:
        return int(head[9:12])
    except ValueError:
        return None


class Server:
    """One server process; ``started_in`` is the wall time from spawn to its first 200 on ``probe``."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log: Path,
        cpu: int = 0,
        probe: str = "/health/live",
    ) -> None:
        self.name = name
        self.port = free_port()
        self.command = [*cpu_pinning(cpu), *command, "--host", "127.0.0.1", "--port", str(self.port)]
        self.env = dict(env)
        self.cwd = cwd
        self.log = log
        self.probe = probe
        self.process: subprocess.Popen[bytes] | None = None
        self.started_in = float("nan")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60.0) -> float:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as output:
            began = time.perf_counter()
            self.process = subprocess.Popen(
                self.command, cwd=self.cwd, env=self.env, stdout=output, stderr=subprocess.STDOUT
            )
        deadline = began + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise ServerFailed(self._failure(f"exited with {self.process.returncode} before answering"))
            if http_status(self.port, self.probe) == 200:
                self.started_in = time.perf_counter() - began
                return self.started_in
            time.sleep(0.002)
        self.stop()
        raise ServerFailed(self._failure(f"gave no 200 on {self.probe} within {timeout:g}s"))

    def _failure(self, what: str) -> str:
        tail = self.log.read_text(errors="replace").splitlines()[-30:] if self.log.exists() else []
        return (
            f"the {self.name} server {what}\n  command: {' '.join(self.command)}\n"
            f"  output ({self.log}):\n    " + "\n    ".join(tail)
        )

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise ServerFailed(self._failure("is no longer running"))

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def say(message: str) -> None:
    """Progress on stderr: stdout carries only the report."""
    print(f"==> {message}", file=sys.stderr, flush=True)
