"""`st` (schemathesis' CLI), adjusted to this environment.

grafana-client depends on niquests, which installs urllib3-future over urllib3; its pool
container (TrafficPolice) has no `.keys()`, and schemathesis' requests transport counts
open connections through `.keys()` before every request (AttributeError on every case).
This counts them through the container instead; nothing else changes.
It also teaches schemathesis NDJSON (POST /transactions declares `application/x-ndjson`
with the schema of its lines taken together, an array): one JSON value a line.
Run as `python tests/support/schemathesis_cli.py run ...` with the arguments of `st`.
"""

from __future__ import annotations

import json
import sys

import schemathesis
import schemathesis.transport.requests as transport
from requests.adapters import HTTPAdapter


def _count_opened_connections(session) -> int:
    total = 0
    for adapter in session.adapters.values():
        if not isinstance(adapter, HTTPAdapter):
            continue
        for manager in (adapter.poolmanager, *adapter.proxy_manager.values()):
            pools = manager.pools
            if hasattr(pools, "keys"):
                found = [pools.get(key) for key in list(pools.keys())]
            else:  # urllib3-future's TrafficPolice
                found = list(getattr(pools, "_container", {}).values())
            total += sum(getattr(p, "num_connections", 0) or 0 for p in found if p is not None)
    return total


transport._count_opened_connections = _count_opened_connections


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx, value) -> bytes:
    """An array as one element a line; anything else (a negative case) as one line."""
    if isinstance(value, bytes):
        return value
    lines = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(v).encode() + b"\n" for v in lines)

if __name__ == "__main__":
    from schemathesis.cli import schemathesis

    sys.argv[0] = "st"
    sys.exit(schemathesis())
