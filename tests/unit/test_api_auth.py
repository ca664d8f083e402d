"""Which paths need TXMON_API_TOKEN (api/app.py BearerToken): liveness, metrics, docs and
the live page's assets are open; whatever reads or writes transactions is not. The app
is served without its lifespan (no Kafka): an open path answers, a guarded one answers
401 before any route runs."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from api.app import create_api, needs_token
from txmon.settings import ApiSettings, KafkaSettings

GUARDED = [("POST", "/check"), ("POST", "/transactions"), ("GET", "/history_counts"),
           ("GET", "/alerts"), ("GET", "/live/data"), ("GET", "/anything/else")]
OPEN = [("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/openapi.json"),
        ("GET", "/docs"), ("GET", "/live"), ("GET", "/live/static/live.js")]


def answers(token: str | None, calls, headers=None) -> list[int]:
    app = create_api(KafkaSettings(), ApiSettings(token=token))

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api",
                                     follow_redirects=True) as client:
            return [(await client.request(m, p, headers=headers)).status_code
                    for m, p in calls]

    return asyncio.run(go())


def test_with_a_token_the_data_paths_need_it_and_the_open_ones_do_not():
    assert answers("s3cret", GUARDED) == [401] * len(GUARDED)
    assert answers("s3cret", OPEN) == [200] * len(OPEN)


def test_the_right_token_passes_and_a_wrong_one_does_not():
    assert answers("s3cret", [("GET", "/live/data")],
                   {"Authorization": "Bearer wrong"}) == [401]
    [status] = answers("s3cret", [("GET", "/anything/else")],
                       {"Authorization": "Bearer s3cret"})
    assert status == 404, "past the token check, the router itself answers"


def test_without_a_token_nothing_is_checked():
    assert answers(None, [("GET", "/healthz"), ("GET", "/metrics")]) == [200, 200]


@pytest.mark.parametrize(("path", "needed"), [
    ("/healthz", False), ("/metrics", False), ("/live/static/x.css", False),
    ("/live", False), ("/live/data", True), ("/livex", True), ("/healthz/x", True)])
def test_needs_token_is_exact_about_paths(path, needed):
    assert needs_token(path) is needed
