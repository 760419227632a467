"""HTTP routes of the service's own API (health and metrics live in their own modules)."""

from fastapi import APIRouter

from ..errors import problem_responses
from . import info, quote

# Every API route can be refused at the edge (auth, body size, rate limit) or fail unexpectedly.
api_router = APIRouter(prefix="/api/v1", responses=problem_responses(401, 413, 429, 500, 503))
api_router.include_router(info.router)
api_router.include_router(quote.router)
