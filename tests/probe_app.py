"""Probe one generated application in-process (run by test_smoke.py inside the shared venv).

Usage: python probe_app.py <package_name>   (with the project's src/ on PYTHONPATH)
Starts the app with its lifespan, probes the health, metrics and error routes, and prints one line per
failed expectation; the exit status is the number of failures.
"""

from __future__ import annotations

import asyncio
import importlib
import sys

from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

REQUEST_ID = "0f8c6a2e-6f1d-4b7e-9a49-2f0f4b5c9e11"


async def probe(package: str) -> list[str]:
    app = importlib.import_module(f"{package}.app").create_app()
    failures = []

    def expect(condition: bool, what: str) -> None:
        if not condition:
            failures.append(what)

    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://probe") as client,
    ):
        for path in ("/health/live", "/health/ready", "/health/startup", "/health"):
            response = await client.get(path)
            expect(response.status_code == 200, f"{path} answered {response.status_code}: {response.text}")
        metrics = await client.get("/metrics")
        expect(metrics.status_code == 200, f"/metrics answered {metrics.status_code}")
        expect("# TYPE http_requests_total counter" in metrics.text, "/metrics lacks http_requests_total")
        missing = await client.get("/no-such-route", headers={"X-Request-ID": REQUEST_ID})
        expect(missing.status_code == 404, f"unknown route answered {missing.status_code}")
        expect(
            missing.headers.get("content-type") == "application/problem+json",
            f"404 content-type is {missing.headers.get('content-type')}",
        )
        expect(missing.headers.get("x-request-id") == REQUEST_ID, "404 did not echo X-Request-ID")
        expect(missing.json().get("request_id") == REQUEST_ID, "404 body lacks the request ID")
    return failures


def main() -> int:
    failures = asyncio.run(probe(sys.argv[1]))
    for failure in failures:
        print(failure)
    return len(failures)


if __name__ == "__main__":
    sys.exit(main())
