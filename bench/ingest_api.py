"""Ingest API: requests/s and latency of POST /check under load, beside a bare endpoint.

    .venv/bin/python bench/ingest_api.py [--seconds 10] [--connections 32] [--json FILE]
        [--batch-records 500000] [--batch-size 5000] [--batch-concurrency 4]
        [--batch-runs ndjson:1,array:1,ndjson:2,array:2] [--batch-repeat 2]
        [--batch-profile FILE] [--only-batch]

Two servers, one after the other, each a single uvicorn process with the settings `txmon
api` uses (one worker, uvloop and httptools, no access log): the real `txmon api` on
fresh topics of a real broker (each 200 means the transaction was validated and
acknowledged by Kafka), and bench/bare_api.py, FastAPI answering the same JSON without
doing anything (the floor of this framework on this machine). Load: `wrk` (Debian
package wrk; C, one thread, keep-alive connections) with the same body for both; without
wrk, an asyncio httpx client (slower: it competes for the same two cores). Every non-2xx
answer is counted and reported. Target: >= 5,000 req/s per API process.

Batch ingest: one client process posts batches (`--batch-size` records a
request, `--batch-concurrency` requests in flight on keep-alive connections, asyncio
httpx) of simulated transactions to POST /transactions of a real `txmon api` (NDJSON and
a JSON array, each with one and two worker processes: `--batch-runs`), each run on fresh
topics, each tried `--batch-repeat` times interleaved, the best counting. tx/s runs from
the first request to the last answer (the first body is an untimed warm-up), and each
answer comes after Kafka acknowledged its records; then the transactions topic is read
back and must hold exactly the records sent (and the dead letters none). Baseline in the
same run: a bare confluent-kafka producer, the API's producer settings and a delivery
report per record, publishing the same (key, value) pairs and flushing. Target: >=
100,000 tx/s.
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
    bench_scenario,
    free_port,
    fresh_topics,
    print_rows,
    row,
    settings_for,
    worker_env,
    write_json,
)
from pipeline import PY_SPY, summarise_profile
from tqdm import tqdm

from producer.simulate import generate

TARGET = 5000
BATCH_TARGET = 100_000
BODY = {"status": "approved", "timestamp": "2026-03-02T16:00:00", "terminal_id": "T-1"}


def wait_up(port: int, proc: subprocess.Popen, timeout: float = 60, log: Path | None = None,
            workers: int = 1) -> None:
    """Until /healthz answers and, with a log, every worker process has said it started
    (one answering does not mean all do)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            text = log.read_text(errors="replace") if log else ""
            if log is None or text.count("Application startup complete.") >= workers:
                return
        except OSError:
            pass
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


def simulated(n: int) -> tuple[list[bytes], list[bytes]]:
    """n realistic transactions as the producer encodes them: (keys, values)."""
    keys: list[bytes] = []
    values: list[bytes] = []
    for batch in generate(bench_scenario(n), n):
        k, v = batch.encode()
        keys += k
        values += v
    return keys[:n], values[:n]


def bodies(values: list[bytes], size: int, kind: str) -> list[bytes]:
    chunks = [values[i:i + size] for i in range(0, len(values), size)]
    if kind == "ndjson":
        return [b"\n".join(c) + b"\n" for c in chunks]
    return [b"[" + b",".join(c) + b"]" for c in chunks]


CONTENT_TYPES = {"ndjson": "application/x-ndjson", "array": "application/json"}


def post_batches(url: str, payloads: list[bytes], kind: str, concurrency: int,
                 per_body: int) -> dict:
    """POST every body, `concurrency` at a time; seconds from the first request to the last
    answer, and the answers' totals."""
    import httpx

    headers = {"content-type": CONTENT_TYPES[kind]}
    answers: list[httpx.Response] = []
    bar = tqdm(total=len(payloads) * per_body, unit="tx", unit_scale=True,
               desc=f"POST {kind:<7}", leave=False, mininterval=0.5)

    async def go() -> float:
        todo = iter(payloads)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=300, limits=limits) as client:
            async def one():
                for body in todo:
                    answers.append(await client.post(url, content=body, headers=headers))
                    bar.update(per_body)
            start = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(concurrency)))
            return time.perf_counter() - start

    elapsed = asyncio.run(go())
    bar.close()
    ok = [r.json() for r in answers if r.status_code == 200]
    return {"seconds": elapsed, "requests": len(answers), "non_200": len(answers) - len(ok),
            "accepted": sum(a["accepted"] for a in ok), "rejected": sum(a["rejected"] for a in ok),
            "codes": sorted({r.status_code for r in answers})}


def read_topic(settings, topic: str) -> list[bytes]:
    """Every record value of a topic, up to its high watermarks now."""
    from txmon.kafka.read import read_to_end

    return [msg.value() for msg in read_to_end(settings, topic, "bench-read", deadline_s=120,
                                                on_error=lambda err: None)]


def batch_run(bootstrap: str, tmp: Path, values: list[bytes], kind: str, workers: int,
              args, profile: Path | None = None) -> dict:
    """One `txmon api` on fresh topics, fed every value as `kind` batches; the first batch
    warms the producer up (untimed), the topic is then checked against what was sent.
    profile: py-spy records the API's processes during the timed part (slows it)."""
    settings = settings_for(bootstrap)
    names = fresh_topics(settings, f"batch-{kind}")
    env = worker_env(bootstrap, names)
    port = free_port()
    log = tmp / f"batch-{kind}-{workers}.log"
    payloads = bodies(values, args.batch_size, kind)
    url = f"http://127.0.0.1:{port}/transactions"
    with open(log, "wb") as out:
        proc = subprocess.Popen([TXMON, "api", "--port", str(port), "--workers", str(workers)],
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_up(port, proc, log=log, workers=workers)
        warm = post_batches(url, payloads[:1], kind, 1, args.batch_size)
        spy = None if profile is None else subprocess.Popen(
            [str(PY_SPY), "record", "--pid", str(proc.pid), "--subprocesses", "--format", "raw",
             "--rate", "200", "--nonblocking", "-o", str(profile)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run = post_batches(url, payloads[1:], kind, args.batch_concurrency, args.batch_size)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
    finally:
        stop(proc)
    timed = sum(len(values[i:i + args.batch_size])
                for i in range(args.batch_size, len(values), args.batch_size))
    on_topic = read_topic(settings, names.transactions)
    exact = sorted(on_topic) == sorted(values)
    dead = len(read_topic(settings, names.dead_letter))
    return {**run, "kind": kind, "workers": workers, "tx": timed,
            "tx_per_s": timed / run["seconds"], "warm_non_200": warm["non_200"],
            "on_topic": len(on_topic), "exact": exact, "dead_letters": dead}


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def bare_produce(bootstrap: str, keys: list[bytes], values: list[bytes]) -> dict:
    """The floor: the same (key, value) pairs through one confluent-kafka producer with the
    API's settings, a delivery report each (as the API needs), then flush."""
    from txmon.kafka.produce import REQUEST, Sender, producer_config

    settings = settings_for(bootstrap)
    topic = fresh_topics(settings, "batch-bare").transactions
    sender = Sender(producer_config(settings, REQUEST))
    sender.produce(topic, values[0], keys[0])  # connection and metadata: untimed
    sender.flush(30)
    start = time.perf_counter()
    sender.send(topic, keys[1:], values[1:])
    failed = sender.close(120)
    elapsed = time.perf_counter() - start
    return {"tx_per_s": (len(values) - 1) / elapsed, "seconds": elapsed, "failed": failed}


def batch_rows(bootstrap: str, tmp: Path, args) -> tuple[list[dict], dict]:
    """Each run `--batch-repeat` times, interleaved (the box is shared: a first run is
    often slower), the best counting; likewise the bare producer's."""
    keys, values = simulated(args.batch_records)
    plans = [(kind, int(workers)) for kind, workers in
             (run.split(":") for run in args.batch_runs.split(","))]
    bares, tries = [], []
    for _ in range(args.batch_repeat):
        bares.append(bare_produce(bootstrap, keys, values))
        tries += [batch_run(bootstrap, tmp, values, kind, workers, args)
                  for kind, workers in plans]
    if args.batch_profile:  # an extra, untimed-for-the-table try of the first run
        kind, workers = plans[0]
        batch_run(bootstrap, tmp, values, kind, workers, args, profile=args.batch_profile)
    bare = max(bares, key=lambda b: b["tx_per_s"])
    runs = [max((t for t in tries if (t["kind"], t["workers"]) == plan),
                key=lambda t: t["tx_per_s"]) for plan in plans]
    rows = []
    for run in runs:
        same = [t for t in tries if (t["kind"], t["workers"]) == (run["kind"], run["workers"])]
        ok = all(t["non_200"] == 0 and t["warm_non_200"] == 0 and t["exact"]
                 and t["rejected"] == 0 and t["dead_letters"] == 0 for t in same)
        label = "NDJSON" if run["kind"] == "ndjson" else "JSON array"
        workers = f", --workers {run['workers']}" if run["workers"] > 1 else ""
        tried = ", ".join(f"{t['tx_per_s']:,.0f}" for t in same)
        note = (f"best of {len(same)} ({tried}); "
                f"{run['tx']:,} tx in {run['requests']} requests of {args.batch_size:,}, "
                f"{args.batch_concurrency} in flight, {run['seconds']:.1f}s; topic holds "
                f"{run['on_topic']:,} of {len(values):,} sent, exactly them: "
                f"{'yes' if run['exact'] else 'NO'}; non-200 {run['non_200']}, dead letters "
                f"{run['dead_letters']}")
        rows.append(row("ingest API", f"POST /transactions {label}{workers} tx/s",
                        run["tx_per_s"], "tx/s", "bare confluent-kafka producer",
                        bare["tx_per_s"], f">= {BATCH_TARGET:,} tx/s, exact",
                        ok and run["tx_per_s"] >= BATCH_TARGET, note=note))
    return rows, {"bare": bare, "bare_runs": bares, "runs": tries}


def show_profile(path: Path | None) -> list | None:
    hot = summarise_profile(path) if path else None
    if hot:
        print(f"\nwhere the API's time goes, {path.name} (py-spy; self % of samples, "
              "inclusive %):")
        for func, self_pct, incl in hot:
            print(f"  {self_pct:5.1f}%  {incl:5.1f}%  {func}")
    return hot


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--profile", type=Path, help="py-spy raw output of the real API's run")
    ap.add_argument("--batch-records", type=int, default=500_000,
                    help="transactions posted per batch-ingest run")
    ap.add_argument("--batch-size", type=int, default=5000, help="records per request")
    ap.add_argument("--batch-concurrency", type=int, default=4, help="requests in flight")
    ap.add_argument("--batch-runs", default="ndjson:1,array:1,ndjson:2,array:2",
                    help="batch-ingest runs, FORMAT:WORKERS, in order")
    ap.add_argument("--batch-repeat", type=int, default=2, help="tries per run; best counts")
    ap.add_argument("--batch-profile", type=Path,
                    help="py-spy raw output of one more run of the first batch configuration")
    ap.add_argument("--only-batch", action="store_true", help="skip the /check rows")
    args = ap.parse_args()
    load = run_wrk if shutil.which("wrk") else run_httpx

    with Broker() as bootstrap, tempfile.TemporaryDirectory(prefix="txmon-bench-api-") as tmp:
        batch, batch_raw = batch_rows(bootstrap, Path(tmp), args)
        if args.only_batch:
            print_rows(batch)
            show_profile(args.batch_profile)
            write_json(args.json, batch, {"batch": batch_raw})
            return 0
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
        *batch,
    ]
    print_rows(rows)
    hot = show_profile(args.profile)
    show_profile(args.batch_profile)
    write_json(args.json, rows, {"real": real, "bare": bare, "profile": hot, "batch": batch_raw})
    return 0


if __name__ == "__main__":
    sys.exit(main())
