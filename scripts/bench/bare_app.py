"""The baseline: a bare FastAPI app with the generated service's info endpoint, nothing else.

The handler is the generated ``api/info.py`` verbatim (same model, same reads of app state), so the only
difference from the hardened service is its middleware, error handling and wiring. ``/health/live`` is
there for the cold-start probe. The service identity comes from the environment, so both apps answer
byte-identical JSON.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

from fastapi import FastAPI, Request
from pydantic import BaseModel


class ServiceInfo(BaseModel):
    service: str
    version: str
    environment: str


async def service_info(request: Request) -> ServiceInfo:
    settings = request.app.state.settings
    return ServiceInfo(
        service=settings.service_name,
        version=request.app.version,
        environment=settings.environment,
    )


async def live() -> dict[str, str]:
    return {"status": "ok"}


def create_bare_app() -> FastAPI:
    app = FastAPI(version=os.environ.get("BENCH_SERVICE_VERSION", "0.1.0"))
    app.state.settings = SimpleNamespace(
        service_name=os.environ.get("BENCH_SERVICE_NAME", "acme-service"),
        environment=os.environ.get("BENCH_ENVIRONMENT", "development"),
    )
    app.add_api_route("/api/v1/info", service_info, methods=["GET"])
    app.add_api_route("/health/live", live, methods=["GET"])
    return app


app = create_bare_app()
