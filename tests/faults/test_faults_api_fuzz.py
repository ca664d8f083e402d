"""Issue 8, item 3 (the HTTP part): schemathesis fuzzes `txmon api` from its own OpenAPI
schema (examples, coverage of edge values, random positive and negative cases): no
request may get a 5xx, POST /transactions included, as a JSON array and as NDJSON. The
worker's part (10,000 fuzzed records) is tests/integration/test_processor_bad_input.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from support.processor import TXMON
from support.reliability import record

from devstack.processes import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ST = [sys.executable, str(Path(__file__).parent.parent / "support" / "schemathesis_cli.py")]
EXAMPLES = 150  # per operation and phase
SEED = 8


def test_api_fuzzed_from_its_own_schema_gives_no_5xx(txmon_env, tmp_path):
    started = time.monotonic()
    env = dict(txmon_env, TXMON_API_MAX_BODY_BYTES="4096")
    port = free_port()
    log = open(tmp_path / "api.log", "wb")  # noqa: SIM115 - closed below
    api = subprocess.Popen([TXMON, "api", "--port", str(port)], env=env, stdout=log,
                           stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    har = tmp_path / "requests.har"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert api.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "api.log").read_text()[-2000:]
            time.sleep(0.5)
        run = subprocess.run(
            [*ST, "run", f"{base}/openapi.json", "--checks", "not_a_server_error",
             "--phases", "examples,coverage,fuzzing", "-n", str(EXAMPLES), "--seed", str(SEED),
             "--workers", "1", "--no-color", "--generation-database", "none",
             "--request-timeout", "30", "--report", "har", "--report-har-path", str(har)],
            capture_output=True, text=True, timeout=480, cwd=tmp_path)
        assert api.poll() is None, "the API died under fuzzing"
        health = httpx.get(base + "/healthz", timeout=5).status_code
    finally:
        api.terminate()
        api.wait(20)
        log.close()
    entries = json.loads(har.read_text())["log"]["entries"]
    codes = Counter(e["response"]["status"] for e in entries)
    by_op = Counter(f"{e['request']['method']} {httpx.URL(e['request']['url']).path}"
                    for e in entries)
    server_errors = [e for e in entries if e["response"]["status"] >= 500]
    summary = (f"{len(entries)} requests; status codes {dict(sorted(codes.items()))}; "
               f"by operation {dict(sorted(by_op.items()))}")
    print("\n" + summary)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert not server_errors, server_errors[0]["request"]
    assert health == 200
    assert len(entries) >= 100 and {"POST /check", "POST /transactions", "GET /history_counts",
                                    "GET /alerts"} <= set(by_op), summary
    sent = Counter(e["request"].get("postData", {}).get("mimeType", "").split(";")[0]
                   for e in entries if httpx.URL(e["request"]["url"]).path == "/transactions")
    assert sent["application/json"] and sent["application/x-ndjson"], sent
    record("test_faults_api_fuzz", order=4, fault="HTTP API fuzzed (schemathesis)",
           trials=1, records=len(entries), crashes=0,
           outcome=f"no 5xx; API alive; codes {dict(sorted(codes.items()))}",
           seconds=round(time.monotonic() - started),
           notes=f"schemathesis phases examples, coverage, fuzzing; -n {EXAMPLES}, seed "
                 f"{SEED}; {summary}")
