"""`make bench-instructions`: instructions per request, bare FastAPI vs the generated service, by callgrind.

Timings on a shared 2-core machine move by +-20% from one run to the next; valgrind's callgrind counts
the instructions a process executes, which do not depend on what else the machine is doing. Each app is
called in-process (no server, no sockets: the ASGI call alone) N times after its lifespan started, and once
with no requests; the difference divided by N is the cost of one request. Use it to A/B a hot-path change:
run it before and after, compare the hardened row. About 3 minutes with the default 1000 requests.

The service is rendered from the working tree (or ``--ref``, a commit or tag) into build/bench/service and
installed into the bench venv, as `make bench` does. Needs valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parents[1]
OUT = REPO_ROOT / "build" / "bench"
APPS = ("bare", "hardened")
TOTAL = re.compile(r"^==\d+== (?:Collected :|I\s+refs:)\s*([\d,]+)", re.MULTILINE)
INFO_PATH = "/api/v1/info"
REQUEST_HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"accept", b"application/json"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"user-agent", b"rampart-bench/1"),
]


def instructions_of(valgrind_output: str) -> int:
    """The instruction total callgrind reports at exit ("Collected : N" or "I refs: N")."""
    found = TOTAL.findall(valgrind_output)
    if not found:
        raise ValueError("no instruction total in valgrind's output:\n" + valgrind_output[-2000:])
    return int(found[-1].replace(",", ""))


def per_request(with_requests: int, without: int, requests: int) -> float:
    if requests <= 0:
        raise ValueError("requests must be positive")
    return (with_requests - without) / requests


# -- the child: one app, N requests, run under callgrind ------------------------------------------------


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": INFO_PATH,
        "raw_path": INFO_PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": list(REQUEST_HEADERS),
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _child(app_name: str, package: str, requests: int) -> None:
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    if app_name == "bare":
        sys.path.insert(0, str(BENCH_DIR))
        from bare_app import create_bare_app

        app: Any = create_bare_app()
    else:
        app = __import__(f"{package}.app", fromlist=["create_app"]).create_app()
    async with app.router.lifespan_context(app):
        for _ in range(requests):
            await app(_scope(), _receive, send)
    wrong = [status for status in statuses if status != 200]
    if wrong:
        raise SystemExit(f"{app_name}: {len(wrong)} of {requests} requests did not answer 200: {wrong[:5]}")


# -- the parent ---------------------------------------------------------------------------------------------


def child_env(scratch: Path) -> dict[str, str]:
    """The environment `make bench` gives the apps, with fixed hashing (the same dict and set layouts in
    every run)."""
    from run import clean_environment, service_environment

    return {
        **clean_environment(),
        **service_environment(scratch, "rampart-bench", "0.1.0"),
        "PYTHONHASHSEED": "0",
    }


def count(python: Path, app_name: str, package: str, requests: int, scratch: Path) -> int:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (Debian package valgrind)")
    out_file = scratch / f"callgrind.{app_name}.{requests}"
    command = [
        valgrind,
        "--tool=callgrind",
        f"--callgrind-out-file={out_file}",
        str(python),
        __file__,
        "--child",
        app_name,
        "--package",
        package,
        "--requests",
        str(requests),
    ]
    # The service logs every request: its stdout goes nowhere, as a server's would go to a pipe.
    result = subprocess.run(
        command,
        cwd=OUT / "service",
        env=child_env(scratch),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(
            f"{app_name} with {requests} requests failed under callgrind:\n{result.stderr[-3000:]}"
        )
    return instructions_of(result.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench-python", type=Path, default=OUT / "venv" / "bin" / "python")
    parser.add_argument("--package", default="acme_service", help=argparse.SUPPRESS)
    parser.add_argument("--ref", help="measure the template at this commit or tag, not the working tree")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--child", choices=APPS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.bench_python = args.bench_python.absolute()
    if args.child:
        asyncio.run(_child(args.child, args.package, args.requests))
        return 0
    if args.requests <= 0:
        parser.error("--requests must be positive")
    if not args.bench_python.exists():
        parser.error(f"no bench venv at {args.bench_python}: `make bench-instructions` builds it")
    sys.path.insert(0, str(BENCH_DIR))
    import service

    with tempfile.TemporaryDirectory(prefix="rampart-instructions-") as folder:
        scratch = Path(folder)
        source = (
            service.REPO_ROOT if args.ref is None else service.template_at(args.ref, scratch / "template")
        )
        print(
            f"==> rendering and installing the service from {args.ref or 'the working tree'}", file=sys.stderr
        )
        args.package = str(service.render(OUT / "service", source=source)["package_name"])
        service.install(OUT / "service", args.bench_python)
        runs = [(app, n) for app in APPS for n in (0, args.requests)]
        print(f"==> callgrind: {len(runs)} runs, 2 at a time (a few minutes)", file=sys.stderr)
        with ThreadPoolExecutor(max_workers=2) as pool:
            totals = dict(
                zip(
                    runs,
                    pool.map(
                        lambda run: count(args.bench_python, run[0], args.package, run[1], scratch), runs
                    ),
                    strict=True,
                )
            )
    rows = {app: per_request(totals[app, args.requests], totals[app, 0], args.requests) for app in APPS}
    results = {
        "template": args.ref or "working tree",
        "requests": args.requests,
        "instructions_per_request": rows,
        "ratio": rows["hardened"] / rows["bare"],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "instructions.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"GET {INFO_PATH} called in-process {args.requests} times (minus a run with none), callgrind\n")
    print("| app | instructions per request |\n| --- | --- |")
    for app in APPS:
        print(f"| {app} | {rows[app]:,.0f} |")
    print(f"\nhardened / bare: {results['ratio']:.2f}x; results: {OUT / 'instructions.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
