"""Level 4: `make demo` as a newcomer meets it. Its banner's curl lines, run as printed, write an item, read
it back and get a quote from the upstream the demo serves; the key it prints is really required; Ctrl-C
ends it cleanly."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from variants import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))

import demo

pytestmark = pytest.mark.smoke

# A bound on a hang, not a timing goal: a cold install on a loaded machine must still fit.
BANNER_SECONDS = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def curl(line: str) -> dict[str, object]:
    """Run one of the banner's curl lines as a shell would split it; its body, parsed."""
    result = subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"{line}\nexit {result.returncode}: {result.stdout}{result.stderr}"
    body: dict[str, object] = json.loads(result.stdout)
    return body


def test_demo_banner_curl_lines_work_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, str(REPO_ROOT / "scripts" / "demo.py"), "--dest", str(tmp_path / "demo")]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the cleanup below reaches the service too
        env={name: value for name, value in os.environ.items() if not name.startswith("APP_")},
    )
    assert process.stdout is not None
    output = demo.follow(process.stdout)
    try:
        printed = demo.lines_until_banner_end(output, BANNER_SECONDS)
        banner = "".join(printed)
        base_url = f"http://127.0.0.1:{port}"
        assert f"{base_url}/docs" in banner
        assert f"{base_url}/api/v1/items" in banner
        curls = [line.strip() for line in printed if line.strip().startswith("curl ")]
        write, read, quote = curls
        [key] = re.findall(r"API key for this run\s+(\S+)", banner)
        assert all(key in line for line in curls)

        created = curl(write)
        assert created["name"] == "first item"
        listed = curl(read)
        assert created in listed["items"]  # type: ignore[operator]
        answer = curl(quote)
        assert answer["degraded"] is False
        assert answer["text"] in demo.QUOTES

        without_key = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{base_url}/api/v1/items"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert without_key.stdout == "401"

        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the demo and the service, its whole group
        assert process.wait(timeout=60) == 0
        rest = []
        while (line := output.get(timeout=10)) is not None:
            rest.append(line)
        said = banner + "".join(rest)
        assert "shutdown_complete" in said
        assert "Traceback" not in said
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
