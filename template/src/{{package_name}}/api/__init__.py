"""HTTP routes of the service's own API (health and metrics live in their own modules)."""

from fastapi import APIRouter

from . import info, quote

api_router = APIRouter(prefix="/api/v1")
api_router.include_router(info.router)
api_router.include_router(quote.router)
