"""Behind TXMON_API_TOKEN (api/app.py BearerToken) is every path but the few that hold no
transaction data (README, HTTP API); tests/unit/test_api_auth.py checks those. Here: of
the API's documented paths only liveness is open, and the right token lets each guarded
route through. Served without the lifespan (no Kafka): a guarded route then fails for
want of its clients, which is past the token check."""

from __future__ import annotations

import asyncio

import httpx

from api.app import create_api, needs_token
from txmon.settings import ApiSettings, KafkaSettings

GUARDED = {("POST", "/check"), ("POST", "/transactions"), ("GET", "/history_counts"),
           ("GET", "/alerts"), ("GET", "/live/data")}


def test_of_the_documented_paths_only_liveness_is_open():
    documented = set(create_api(KafkaSettings(), ApiSettings(token="s3cret")).openapi()["paths"])
    assert {p for p in documented if not needs_token(p)} == {"/healthz"}
    assert {p for _, p in GUARDED} <= documented


def test_the_right_token_lets_every_guarded_route_through():
    app = create_api(KafkaSettings(), ApiSettings(token="s3cret"))

    async def go(headers):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api",
                                     headers=headers) as client:
            return {(m, p): (await client.request(m, p, json={})).status_code
                    for m, p in sorted(GUARDED)}

    without = asyncio.run(go({}))
    right = asyncio.run(go({"Authorization": "Bearer s3cret"}))
    assert set(without.values()) == {401}
    assert 401 not in right.values(), right
