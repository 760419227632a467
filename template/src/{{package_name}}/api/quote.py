"""``GET /api/v1/quote``: an example route that depends on an upstream and degrades gracefully.

While the upstream's circuit breaker is open, the route answers at once with a fallback marked
``degraded`` instead of making every caller wait for a dependency that is known to be down.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from ..clients.upstream import UpstreamClient
from ..errors import UpstreamError, problem_responses
from ..resilience.breaker import CircuitOpen

router = APIRouter(tags=["example"])
FALLBACK_TEXT = "Quotes are unavailable right now; this is the fallback answer."


class Quote(BaseModel):
    text: str
    degraded: bool = False


@router.get("/quote", responses=problem_responses(502, 503, 504))
async def get_quote(request: Request) -> Quote:
    upstream: UpstreamClient = request.app.state.upstream
    try:
        answer = await upstream.get_json("/quote")
    except CircuitOpen:
        return Quote(text=FALLBACK_TEXT, degraded=True)
    if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
        raise UpstreamError(f"{upstream.name} answered without a quote text.")
    return Quote(text=answer["text"])
