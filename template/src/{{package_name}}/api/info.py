"""``GET /api/v1/info``: what is running here. A small, dependency-free route to start from."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

router = APIRouter(tags=["info"])


class ServiceInfo(BaseModel):
    service: str
    version: str
    environment: str


@router.get("/info")
async def service_info(request: Request) -> ServiceInfo:
    settings = request.app.state.settings
    return ServiceInfo(
        service=settings.service_name,
        version=request.app.version,
        environment=settings.environment,
    )
