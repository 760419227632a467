"""`make demo`: render the default service, install it into its own venv, run it until Ctrl-C.

Nothing external is needed: the defaults use SQLite and in-memory limits.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import copier
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DEV_BIN = Path(sys.executable).parent
URLS = ("/health/live", "/health/ready", "/health", "/metrics", "/docs", "/api/v1/info")


def render(dest: Path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # copier warns that uncommitted template changes are included
        copier.run_copy(
            str(REPO_ROOT), str(dest), defaults=True, overwrite=True, unsafe=True, quiet=True, vcs_ref="HEAD"
        )
    answers = yaml.safe_load((dest / ".copier-answers.yml").read_text(encoding="utf-8"))
    return str(answers["package_name"])


def wait_until_live(base_url: str, server: subprocess.Popen[bytes], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"{base_url}/health/live", timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dest", type=Path, default=REPO_ROOT / "build" / "demo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    dest = args.dest.resolve()

    print(f"==> rendering the default service into {dest}", flush=True)
    package = render(dest)
    print("==> installing it into its own venv (make install)", flush=True)
    env = {**os.environ, "PATH": f"{DEV_BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(["make", "--no-print-directory", "install"], cwd=dest, env=env, check=True)

    base_url = f"http://{args.host}:{args.port}"
    server_env = {**env, "APP_HOST": args.host, "APP_PORT": str(args.port), "APP_ENVIRONMENT": "development"}
    server = subprocess.Popen(
        [str(dest / ".venv" / "bin" / "python"), "-m", package], cwd=dest, env=server_env
    )
    try:
        if not wait_until_live(base_url, server):
            print(f"the service did not come up on {base_url} (is the port free?)", file=sys.stderr)
            return 1
        print("\n==> the service is running; try:")
        for path in URLS:
            print(f"      {base_url}{path}")
        print("    press Ctrl-C to stop\n", flush=True)
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
