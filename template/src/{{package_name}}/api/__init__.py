"""HTTP routes of the service's own API (health and metrics live in their own modules)."""

from fastapi import APIRouter

from . import info

api_router = APIRouter(prefix="/api/v1")
api_router.include_router(info.router)
