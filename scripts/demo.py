"""`make demo`: render the default service, install what it needs to run, and serve it until Ctrl-C.

Nothing external is needed: the defaults use SQLite and in-memory limits. Only the service's runtime
dependencies are installed (`uv sync --no-dev`, bytecode compiled), not its dev toolchain (`make install`
in the demo folder adds that), so it answers soon after a cold start. The demo generates an API key for
this run and serves the example quote route's upstream itself, so every example route works; once the
service answers, a short banner gives the URLs and curl lines for a write and a read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType

import copier
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DEV_BIN = Path(sys.executable).parent
START_SECONDS = 60
BANNER_END = "Press Ctrl-C to stop the demo."
QUOTES = (
    "Make it work, make it right, make it fast.",
    "Errors should never pass silently.",
    "Simple is better than complex.",
)


def render(dest: Path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # copier warns that uncommitted template changes are included
        copier.run_copy(
            str(REPO_ROOT), str(dest), defaults=True, overwrite=True, unsafe=True, quiet=True, vcs_ref="HEAD"
        )
    answers = yaml.safe_load((dest / ".copier-answers.yml").read_text(encoding="utf-8"))
    return str(answers["package_name"])


def install_runtime(dest: Path, env: dict[str, str]) -> None:
    """The service and its runtime dependencies only, as the shipped uv.lock pins them: the dev toolchain
    is most of `make install`'s time."""
    uv = str(DEV_BIN / "uv")
    command = [
        uv,
        "sync",
        "--locked",
        "--no-dev",
        "--compile-bytecode",
        "--quiet",
        "--python",
        sys.executable,
    ]
    subprocess.run(command, cwd=dest, env=env, check=True)


class QuoteHandler(BaseHTTPRequestHandler):
    """The example upstream of `GET /api/v1/quote`: `GET /quote` answers `{"text": ...}`."""

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/quote":
            self.send_error(404)
            return
        body = json.dumps({"text": secrets.choice(QUOTES)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the service's own access log already shows each quote request."""


@contextmanager
def quote_upstream(host: str) -> Iterator[str]:
    """Serve the quote upstream on a free port for as long as the demo runs; yield its base URL."""
    server = ThreadingHTTPServer((host, 0), QuoteHandler)
    thread = threading.Thread(target=server.serve_forever, name="quote-upstream", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def wait_until_live(base_url: str, server: subprocess.Popen[bytes], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"{base_url}/health/live", timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def curl(base_url: str, path: str, key: str, *options: str) -> str:
    """A ready-to-paste curl line: errors shown, the body printed even on an error status."""
    return shlex.join(
        ["curl", "-sS", "--fail-with-body", *options, "-H", f"X-API-Key: {key}", base_url + path]
    )


def banner(base_url: str, key: str, elapsed: float) -> str:
    write = curl(
        base_url,
        "/api/v1/items",
        key,
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        '{"name": "first item", "description": "made in the demo"}',
    )
    return "\n".join(
        [
            "",
            f"==> The service answers on {base_url} ({elapsed:.0f} s after the demo started).",
            "",
            f"  API docs (Swagger UI)  {base_url}/docs  (Authorize: paste the key below)",
            f"  the example API        {base_url}/api/v1/items  /api/v1/info  /api/v1/quote",
            f"  probes and metrics     {base_url}/health/ready  {base_url}/health  {base_url}/metrics",
            "",
            f"  API key for this run   {key}",
            "  (a fresh one each run; the service holds only its hash, in APP_API_KEYS)",
            "",
            "  Write an item, read the list, get a quote (its upstream is served by this demo):",
            f"    {write}",
            f"    {curl(base_url, '/api/v1/items', key)}",
            f"    {curl(base_url, '/api/v1/quote', key)}",
            "",
            f"  {BANNER_END} The service's own log lines follow.",
            "",
        ]
    )


def follow(output: Iterable[str]) -> queue.Queue[str | None]:
    """The demo's output lines as they come (None once it ends), read by a thread that keeps the pipe
    drained: for the smoke test and the bench, which start the demo with its output piped."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in output:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, name="demo-output", daemon=True).start()
    return lines


def lines_until_banner_end(lines: queue.Queue[str | None], seconds: float) -> list[str]:
    """The lines up to the banner's last one; TimeoutError when it takes longer, RuntimeError if the demo
    ends first (the lines so far in the message)."""
    deadline = time.monotonic() + seconds
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"no banner within {seconds:g} s:\n{''.join(seen)}") from None
        if line is None:
            raise RuntimeError(f"the demo ended before its banner:\n{''.join(seen)}")
        seen.append(line)
        if BANNER_END in line:
            return seen


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    started = time.monotonic()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dest", type=Path, default=REPO_ROOT / "build" / "demo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    dest = args.dest.resolve()
    signal.signal(signal.SIGTERM, stop_on_sigterm)

    print(f"==> rendering the default service into {dest}", flush=True)
    package = render(dest)
    print(
        "==> installing what it needs to run (uv sync --no-dev; `make install` there adds the dev tools)",
        flush=True,
    )
    env = {**os.environ, "PATH": f"{DEV_BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    install_runtime(dest, env)

    key = secrets.token_urlsafe(24)
    base_url = f"http://{args.host}:{args.port}"
    with quote_upstream(args.host) as upstream_url:
        server_env = {
            **env,
            "APP_HOST": args.host,
            "APP_PORT": str(args.port),
            "APP_ENVIRONMENT": "development",
            "APP_API_KEYS": f"demo:{hashlib.sha256(key.encode()).hexdigest()}",
            "APP_UPSTREAM_URL": upstream_url,
        }
        print("==> starting the service", flush=True)
        server = subprocess.Popen(
            [str(dest / ".venv" / "bin" / "python"), "-m", package], cwd=dest, env=server_env
        )
        try:
            if not wait_until_live(base_url, server, START_SECONDS):
                print(f"the service did not come up on {base_url} (is the port free?)", file=sys.stderr)
                return 1
            print(banner(base_url, key, time.monotonic() - started), flush=True)
            return server.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
