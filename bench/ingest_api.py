"""Ingest API: requests/s and latency of POST /check under load, beside a bare endpoint.

    .venv/bin/python bench/ingest_api.py [--seconds 10] [--connections 32] [--json FILE]

Two servers, one after the other, each a single uvicorn process with the settings `txmon
api` uses (one worker, uvloop and httptools, no access log): the real `txmon api` on
fresh topics of a real broker (each 200 means the transaction was validated and
acknowledged by Kafka), and bench/bare_api.py, FastAPI answering the same JSON without
doing anything (the floor of this framework on this machine). Load: `wrk` (Debian
package wrk; C, one thread, keep-alive connections) with the same body for both; without
wrk, an asyncio httpx client (slower: it competes for the same two cores). Every non-2xx
answer is counted and reported. Target (issue 7): >= 5,000 req/s per API process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import (
    BENCH,
    TXMON,
    Broker,
    free_port,
    fresh_topics,
    print_rows,
    row,
    settings_for,
    worker_env,
    write_json,
)
from pipeline import PY_SPY, summarise_profile

TARGET = 5000
BODY = {"status": "approved", "timestamp": "2026-03-02T16:00:00", "terminal_id": "T-1"}


def wait_up(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("server never answered /healthz")


def run_wrk(url: str, seconds: float, connections: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                     f"wrk.body = {json.dumps(json.dumps(BODY))}\n")
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s",
             script.name, url], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)

    def pct(p: str) -> float:
        value, unit = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) / {"us": 1e6, "ms": 1e3, "s": 1}[unit]

    return {"rps": rps, "requests": total, "non_2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else "", "p50": pct("50"),
            "p99": pct("99"), "tool": "wrk"}


def run_httpx(url: str, seconds: float, connections: int) -> dict:
    import httpx

    async def go():
        lat, bad = [], 0
        end = time.perf_counter() + seconds
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            async def one():
                nonlocal bad
                while time.perf_counter() < end:
                    t = time.perf_counter()
                    r = await client.post(url, json=BODY)
                    lat.append(time.perf_counter() - t)
                    bad += r.status_code >= 300
            start = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(connections)))
            return lat, bad, time.perf_counter() - start

    import numpy as np

    lat, bad, elapsed = asyncio.run(go())
    return {"rps": len(lat) / elapsed, "requests": len(lat), "non_2xx": bad,
            "socket_errors": "", "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)), "tool": "httpx"}


def serve(cmd: list[str], env: dict, port: int, log: Path, load, seconds, connections,
          profile: Path | None = None) -> dict:
    """profile: record the server with py-spy during the measured run (slows it down)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    spy = None
    try:
        wait_up(port, proc)
        load(f"http://127.0.0.1:{port}/check", 2, connections)  # warm-up
        if profile is not None:
            spy = subprocess.Popen([str(PY_SPY), "record", "--pid", str(proc.pid), "--format",
                                    "raw", "--rate", "100", "--nonblocking", "-o", str(profile)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result = load(f"http://127.0.0.1:{port}/check", seconds, connections)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--profile", type=Path, help="py-spy raw output of the real API's run")
    args = ap.parse_args()
    load = run_wrk if shutil.which("wrk") else run_httpx

    with Broker() as bootstrap, tempfile.TemporaryDirectory(prefix="txmon-bench-api-") as tmp:
        settings = settings_for(bootstrap)
        names = fresh_topics(settings, "api")
        env = worker_env(bootstrap, names)
        port = free_port()
        real = serve([TXMON, "api", "--port", str(port)], env, port, Path(tmp) / "api.log",
                     load, args.seconds, args.connections, profile=args.profile)
        port = free_port()
        bare = serve([sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH), "bare_api:app",
                      "--port", str(port), "--log-level", "info", "--no-access-log"], env, port,
                     Path(tmp) / "bare.log", load, args.seconds, args.connections)
    note = (f"{real['tool']}, {args.connections} connections, {args.seconds:g}s; p50 "
            f"{real['p50'] * 1000:.1f} ms (bare {bare['p50'] * 1000:.1f} ms); non-2xx "
            f"{real['non_2xx']} (bare {bare['non_2xx']}) {real['socket_errors']}")
    rows = [
        row("ingest API", "POST /check requests/s", real["rps"], "req/s",
            "bare FastAPI endpoint", bare["rps"], f">= {TARGET:,} req/s",
            real["rps"] >= TARGET and real["non_2xx"] == 0, note=note),
        row("ingest API", "POST /check p99 latency", real["p99"] * 1000, "ms",
            "bare FastAPI endpoint", bare["p99"] * 1000, "", None),
    ]
    print_rows(rows)
    hot = summarise_profile(args.profile) if args.profile else None
    if hot:
        print("\nwhere the API's time goes (py-spy; self % of samples, inclusive %):")
        for func, self_pct, incl in hot:
            print(f"  {self_pct:5.1f}%  {incl:5.1f}%  {func}")
    write_json(args.json, rows, {"real": real, "bare": bare, "profile": hot})
    return 0


if __name__ == "__main__":
    sys.exit(main())
