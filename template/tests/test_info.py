from __future__ import annotations

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

pytestmark = pytest.mark.anyio


async def test_info_names_the_running_service(app: FastAPI, client: AsyncClient) -> None:
    response = await client.get("/api/v1/info")
    assert response.status_code == 200
    assert response.json() == {
        "service": app.state.settings.service_name,
        "version": app.version,
        "environment": "development",
    }


async def test_openapi_docs_are_served_in_development(client: AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    schema = (await client.get("/openapi.json")).json()
    assert "/api/v1/info" in schema["paths"]
    assert "/metrics" not in schema["paths"]
