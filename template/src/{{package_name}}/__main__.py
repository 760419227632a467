"""``python -m <package>``: run the service under uvicorn, configured from settings.

uvloop and httptools are picked automatically where installed (they are dependencies on Linux). On SIGTERM
uvicorn stops accepting connections, lets in-flight requests finish within the shutdown timeout, then runs
the lifespan shutdown.
"""

from __future__ import annotations

import sys

import uvicorn
from pydantic import ValidationError

from . import app as app_module
from .logging import configure_logging
from .settings import Settings, describe_errors


def main() -> None:
    try:
        settings = Settings()
    except ValidationError as error:
        sys.exit(f"Refusing to start, invalid configuration:\n{describe_errors(error)}")
    configure_logging(settings)
    uvicorn.run(
        f"{app_module.__name__}:app_factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="auto",
        http="auto",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
    )


if __name__ == "__main__":
    main()
