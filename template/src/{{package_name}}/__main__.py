"""``python -m <package>``: run the service under uvicorn, configured from settings.

uvloop and httptools are picked automatically where installed (they are dependencies on Linux). On SIGTERM
readiness turns 503 at once (so load balancers drain the instance), uvicorn stops accepting connections,
lets in-flight requests finish within the shutdown timeout, then runs the lifespan shutdown.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from pydantic import ValidationError

from . import app as app_module
from .health import begin_shutdown
from .logging import configure_logging
from .settings import Settings, describe_errors


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with readiness turned off the moment a shutdown signal arrives."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        begin_shutdown()
        super().handle_exit(sig, frame)


def prepare_multiprocess_metrics() -> None:
    """Workers share metrics through files; start from an empty directory so no stale samples count."""
    directory = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="prometheus-"))
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def main() -> None:
    try:
        settings = Settings()
    except ValidationError as error:
        sys.exit(f"Refusing to start, invalid configuration:\n{describe_errors(error)}")
    configure_logging(settings)
    if settings.workers > 1:
        prepare_multiprocess_metrics()
    options: dict[str, Any] = {
        "factory": True,
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "timeout_graceful_shutdown": settings.shutdown_timeout_seconds,
    }
    target = f"{app_module.__name__}:app_factory"
    if settings.workers > 1:
        # The supervisor forwards SIGTERM to each worker; a worker's lifespan shutdown marks it draining.
        uvicorn.run(target, **options)
    else:
        DrainingServer(uvicorn.Config(target, **options)).run()


if __name__ == "__main__":
    main()
