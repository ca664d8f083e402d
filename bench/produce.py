"""Producer and replay throughput beside the floor: a bare confluent-kafka loop.

    .venv/bin/python bench/produce.py [--messages 1000000] [--repeat 3] [--json FILE]

Three ways of filling a topic, measured in the same run against a real broker (the one
named by KAFKA_BOOTSTRAP_SERVERS, else a private one started with devstack.kafka's LocalKafka
on free ports and stopped at the end):

- floor: pre-serialised keys and values handed to confluent-kafka by txmon's produce
  loop (`txmon.kafka.produce.Sender.send`, one `Producer.produce` a record) with the
  producer's own librdkafka settings (idempotence, lz4, batching): what Python can push
  through confluent-kafka on this machine, with no work per event;
- simulator: `producer.simulate.generate` → vectorised encoding → `Publisher.send`, the
  code path of `txmon produce --speed max`;
- replay: parse the reference CSVs, expand, encode, send: the path of `txmon replay`.

Each is timed to the last delivery (flush included) on a fresh topic; the machine is
shared, so each runs `--repeat` times interleaved and the best run counts. Targets
≥ 300,000 msgs/s and ≥ 50 % of the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from producer import replay  # noqa: E402
from producer.publish import Publisher  # noqa: E402
from producer.simulate import Scenario, generate  # noqa: E402
from producer.stream import Pacer, send_paced  # noqa: E402
from txmon.kafka.admin import TopicSpec, ensure_topics  # noqa: E402
from txmon.kafka.produce import Sender, bulk, producer_config  # noqa: E402
from txmon.settings import KafkaSettings, shared_data_dir  # noqa: E402

TARGET_RATE = 300_000
TARGET_RATIO = 0.5
PARTITIONS = 3


class Broker:
    """KAFKA_BOOTSTRAP_SERVERS if set, else a private LocalKafka stopped on exit."""

    def __init__(self):
        self.kafka = None
        self.bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")

    def __enter__(self) -> str:
        if self.bootstrap:
            return self.bootstrap
        from devstack.kafka.server import LocalKafka
        from devstack.processes import free_port

        data = Path(tempfile.mkdtemp(prefix="txmon-bench-kafka-"))
        self.kafka = LocalKafka(data_dir=data, port=free_port(), controller_port=free_port())
        self.kafka.up(timeout=120)
        self.bootstrap = self.kafka.bootstrap
        return self.bootstrap

    def __exit__(self, *exc):
        if self.kafka is not None:
            self.kafka.down(timeout=20)
            shutil.rmtree(self.kafka.data_dir, ignore_errors=True)


def fresh_topic(settings: KafkaSettings) -> str:
    name = f"bench-produce-{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, [TopicSpec(name, PARTITIONS)])
    return name


def bench_floor(settings, n: int, payload: tuple[list[bytes], list[bytes]]) -> float:
    """Pre-serialised bytes through the bare produce loop: the floor."""
    topic = fresh_topic(settings)
    keys, values = payload
    sender = Sender(producer_config(settings, bulk()))
    bar = tqdm(total=n, unit="msg", unit_scale=True, desc="floor     ", leave=False)
    start = time.perf_counter()
    for i in range(0, n, 50_000):
        sender.send(topic, keys[i : i + 50_000], values[i : i + 50_000])
        bar.update(min(50_000, n - i))
    left = sender.flush(120)
    elapsed = time.perf_counter() - start
    bar.close()
    if left:
        raise SystemExit(f"floor: {left} messages undelivered")
    return elapsed


def _publish(settings, batches, encode, n: int, desc: str) -> float:
    topic = fresh_topic(settings)
    publisher = Publisher(settings, topic)
    bar = tqdm(total=n, unit="msg", unit_scale=True, desc=desc, leave=False)
    start = time.perf_counter()
    send_paced(batches, publisher.send, Pacer(None), encode,
               lambda b, lo, hi: bar.update(hi - lo))
    failed = publisher.close(120)
    elapsed = time.perf_counter() - start
    bar.close()
    if failed or publisher.sent != n:
        raise SystemExit(f"{desc.strip()}: sent {publisher.sent} of {n}, {failed} failed")
    return elapsed


def scenario(n: int) -> Scenario:
    # The busiest hour at a rate that yields n events in about a minute of event time.
    return Scenario(datetime(2026, 3, 2, 17, tzinfo=UTC), rate=n / 55, seed=1)


def bench_simulator(settings, n: int) -> float:
    return _publish(settings, generate(scenario(n), n), lambda b: b.encode(), n, "simulator ")


def reference_files() -> list[Path]:
    files = sorted(shared_data_dir().glob("transactions_*.csv"))
    if not files:
        raise SystemExit(f"no reference files under {shared_data_dir()} (TXMON_DATA_DIR)")
    return files


def bench_replay(settings, copies: int) -> tuple[int, float]:
    files = reference_files()
    start = time.perf_counter()
    parsed = [replay.parse(f, date(2026, 3, 2) + timedelta(days=i))
              for i in range(copies) for f in files[i % len(files) : i % len(files) + 1]]
    n = sum(p.events for p in parsed)
    parse_time = time.perf_counter() - start

    def batches():
        for p in parsed:
            yield from replay.batches(p)

    return n, parse_time + _publish(settings, batches(), lambda b: (b.keys, b.values), n,
                                    "replay    ")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=1_000_000, help="per run (default 1M)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per method; best counts")
    ap.add_argument("--json", type=Path, help="also write the results as JSON")
    ap.add_argument("--profile", action="store_true",
                    help="first print a cProfile of one simulator run: where the time goes")
    args = ap.parse_args()

    with Broker() as bootstrap:
        settings = KafkaSettings.from_env()
        settings = KafkaSettings(**{**settings.__dict__, "bootstrap": bootstrap})
        n = args.messages
        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.runcall(bench_simulator, settings, n)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(10)
        payload = ([], [])
        for b in generate(scenario(n), n):
            k, v = b.encode()
            payload[0].extend(k)
            payload[1].extend(v)
        # Replay enough reference days to match n (each is ~250-310k transactions).
        copies = max(2, round(n / 280_000))
        best = {"floor": None, "simulator": None, "replay": None}
        counts = {"floor": n, "simulator": n}
        for _ in range(args.repeat):
            runs = {
                "floor": lambda: bench_floor(settings, n, payload),
                "simulator": lambda: bench_simulator(settings, n),
            }
            for name, run in runs.items():
                elapsed = run()
                rate = counts[name] / elapsed
                best[name] = max(best[name] or 0, rate)
            m, elapsed = bench_replay(settings, copies)
            counts["replay"] = m
            best["replay"] = max(best["replay"] or 0, m / elapsed)

    floor = best["floor"]
    print(f"\nproducer throughput, best of {args.repeat}, {os.cpu_count()} CPUs, "
          f"broker {bootstrap}, {PARTITIONS} partitions")
    print(f"{'method':<34}{'msgs/run':>10}{'msgs/s':>12}{'vs floor':>10}")
    rows = [("bare confluent-kafka loop (floor)", "floor"),
            ("simulator -> Kafka", "simulator"), ("replay -> Kafka", "replay")]
    ok = True
    for label, key in rows:
        ratio = best[key] / floor
        print(f"{label:<34}{counts[key]:>10,}{best[key]:>12,.0f}{ratio:>9.0%}")
        if key != "floor":
            ok &= best[key] >= TARGET_RATE and ratio >= TARGET_RATIO
    print(f"targets: >= {TARGET_RATE:,} msgs/s and >= {TARGET_RATIO:.0%} of the floor: "
          f"{'met' if ok else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps({"best_msgs_per_s": best, "messages": counts,
                                         "repeat": args.repeat, "targets_met": ok}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
