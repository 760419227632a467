"""``create_app(settings)``: the one place where the service is wired together.

Middleware order, outermost first (Starlette's ServerErrorMiddleware wraps them all):
request ID -> access log -> metrics -> router. The request ID comes first so every log line and error
body carries it; the access log and metrics wrap everything below so refused requests are still counted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI

from . import PROJECT_NAME, __version__
from .api import api_router
from .errors import exception_handlers
from .health import HealthRegistry, health_router
from .logging import configure_logging, get_logger
from .metrics import Metrics, metrics_router
from .middleware import RouteTemplates
from .middleware.access_log import AccessLogMiddleware
from .middleware.metrics import MetricsMiddleware
from .middleware.request_id import request_id_options
from .settings import Settings

PROBE_PATHS = ("/health/live", "/health/ready", "/health/startup", "/metrics")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else Settings()
    configure_logging(settings)
    logger = get_logger(__name__)
    metrics = Metrics(service=settings.service_name, version=__version__)
    health = HealthRegistry(
        timeout=settings.health_check_timeout_seconds,
        cache_seconds=settings.health_cache_seconds,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        logger.info(
            "startup_complete",
            service=settings.service_name,
            version=__version__,
            environment=settings.environment,
        )
        health.mark_started()
        try:
            yield
        finally:
            health.mark_stopping()
            logger.info("shutdown_complete")

    docs = settings.effective_docs_enabled
    app = FastAPI(
        title=PROJECT_NAME,
        version=__version__,
        debug=settings.debug,
        lifespan=lifespan,
        exception_handlers=exception_handlers(),
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.health = health

    app.include_router(health_router(health, service=settings.service_name, version=__version__))
    app.include_router(metrics_router(metrics))
    app.include_router(api_router)

    # add_middleware puts each new layer outside the previous one: add innermost first.
    route_templates = RouteTemplates()
    app.add_middleware(MetricsMiddleware, metrics=metrics, route_templates=route_templates)
    app.add_middleware(AccessLogMiddleware, route_templates=route_templates, quiet_paths=PROBE_PATHS)
    app.add_middleware(CorrelationIdMiddleware, **request_id_options())
    return app


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory`` and multi-worker runs: settings from the environment."""
    return create_app()
