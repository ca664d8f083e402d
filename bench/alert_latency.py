"""End-to-end alert latency: from a window's close to its record on the alerts topic.

    .venv/bin/python bench/alert_latency.py [--live 240] [--tps 100] [--speed 1]
        [--incident denied:x4:3m@60s] [--model FILE] [--json FILE]

A real `txmon process` with a trained model (`txmon train --simulate-days 1`, made in a
temporary directory unless --model is given) on fresh topics. The last
--backfill-minutes of traffic are written at full speed first (the detector judges
nothing before ten minutes of today's traffic), then --live seconds are streamed on a
real-time clock (event time = wall time) at --tps transactions/s with the incident
injected, from this process, with txmon's producer settings (linger 50 ms included).

A window [start, end) closes when the watermark passes end + allowed lateness, i.e. at
wall time end + lateness (`--speed S` runs event time S times faster and maps it back;
the smoke test uses it). Its latency is the Kafka timestamp of the record minus that
instant, for every window-count record (each closed minute: the alert of a minute is
sent in the same step as its count, so these are many samples of the same path) and for
every alert record. Only minutes closed by live traffic count (not the backfill, not the
last one, which closes by the idle timeout). Baseline, in the same run: one Kafka hop,
the transactions' own latency from the producer's timestamp to this process's consumer.
Target: alert p99 <= 1 s.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
from common import (
    TXMON,
    Broker,
    TopicWatcher,
    Workdir,
    Worker,
    fresh_topics,
    print_rows,
    row,
    settings_for,
    worker_env,
)
from tqdm import tqdm

from producer.incidents import parse_incident
from producer.publish import Publisher
from producer.shape import shape_at
from producer.simulate import Scenario, generate
from producer.stream import Pacer, send_paced
from txmon.contracts import Alert
from txmon.settings import ProcessorSettings

TARGET_S = 1.0
LATENESS_MS = int(ProcessorSettings.from_env().lateness_s * 1000)
WINDOW_MS = 60_000


def percentiles(xs: list[float]) -> tuple[float | None, float | None]:
    if not xs:
        return None, None
    return float(np.percentile(xs, 50)), float(np.percentile(xs, 99))


def train(work: Path) -> Path:
    out = work / "model.joblib"
    print("training the detector on a simulated clean day (txmon train --simulate-days 1)")
    subprocess.run([TXMON, "train", "--simulate-days", "1", "--seed", "1", "--out", str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    return out


def peak_rate(tps: float, at: datetime) -> float:
    """The simulator's peak rate that gives `tps` transactions/s at this time of day."""
    level = float(shape_at(np.array([at.timestamp()]))[0])
    return min(max(tps / level, tps), 20_000.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--live", type=float, default=240.0, help="seconds of live event time")
    ap.add_argument("--tps", type=float, default=100.0)
    ap.add_argument("--speed", type=float, default=1.0, help="1 = real time")
    ap.add_argument("--backfill-minutes", type=int, default=20)
    ap.add_argument("--incident", default="denied:x4:3m@60s")
    ap.add_argument("--model", type=Path)
    ap.add_argument("--no-model", action="store_true",
                    help="no detector (warm-up only): window latency without training")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    with Broker() as bootstrap, Workdir() as work:
        settings = settings_for(bootstrap)
        model = Path("/nonexistent/model.joblib") if args.no_model else (
            args.model or train(work))
        names = fresh_topics(settings, "latency")
        env = worker_env(bootstrap, names, TXMON_MODEL_PATH=str(model))
        worker = Worker(env, work, "latency").start()
        watch_counts = TopicWatcher(settings, names.window_counts)
        watch_alerts = TopicWatcher(settings, names.alerts)
        watch_tx = TopicWatcher(settings, names.transactions)
        for w in (watch_counts, watch_alerts, watch_tx):
            w.start()
        try:
            deadline = time.monotonic() + 120
            while worker.assigned() == 0:
                if not worker.alive() or time.monotonic() > deadline:
                    raise SystemExit(f"worker did not start:\n{worker.tail()}")
                time.sleep(0.2)
            # The backfill ends now; the live part starts once it is delivered, so that
            # the one-hop baseline and the live clock see no backlog.
            back_end = datetime.now(UTC).replace(microsecond=0)
            rate = peak_rate(args.tps, back_end)
            if args.backfill_minutes:
                back_pub = Publisher(settings, names.transactions)
                back = Scenario(back_end - timedelta(minutes=args.backfill_minutes), rate,
                                seed=2, duration=args.backfill_minutes * 60)
                for batch in generate(back):
                    back_pub.send(*batch.encode())
                if back_pub.close(120):
                    raise SystemExit("backfill undelivered")
            # Event time of the live part: now (real time) or now, run faster (--speed).
            live_start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
            publisher = Publisher(settings, names.transactions)
            live = Scenario(live_start, rate, seed=1, duration=args.live,
                            incidents=(parse_incident(args.incident),))
            anchor_ms = int(live_start.timestamp() * 1000)
            pacer = Pacer(args.speed, clock=time.time, anchor_ms=anchor_ms)
            pacer.wall0 = live_start.timestamp() if args.speed == 1 else time.time() + 1

            def close_at(end_ms: int) -> float:
                return pacer.wall0 + (end_ms + LATENESS_MS - anchor_ms) / 1000 / args.speed

            bar = tqdm(total=args.live, unit="s", desc="live      ", leave=False,
                       mininterval=1, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}s event time")
            shown = [0.0]

            def on_sent(batch, lo, hi):
                t = (int(batch.ts_ms[hi - 1]) - anchor_ms) / 1000
                bar.update(t - shown[0])
                shown[0] = t

            send_paced(generate(live), publisher.send, pacer, lambda b: b.encode(), on_sent)
            bar.close()
            failed = publisher.close(60)
            if failed:
                raise SystemExit(f"{failed} transactions undelivered")
            live_end_ms = anchor_ms + int(args.live * 1000)
            # Minutes closed by live traffic: end + lateness inside the live part (and,
            # without a backfill, only minutes that hold an event: an empty minute before
            # the first event is never reported).
            first = math.ceil((anchor_ms - LATENESS_MS) / WINDOW_MS) * WINDOW_MS
            if not args.backfill_minutes:
                first = anchor_ms // WINDOW_MS * WINDOW_MS + WINDOW_MS
            ends = list(range(first, live_end_ms - LATENESS_MS + 1, WINDOW_MS))
            wanted = {datetime.fromtimestamp((e - WINDOW_MS) / 1000, UTC)
                      .strftime("%Y-%m-%dT%H:%MZ") for e in ends}
            deadline = time.monotonic() + 60
            while not wanted <= set(watch_counts.windows()):
                if not worker.alive() or time.monotonic() > deadline:
                    raise SystemExit(f"windows {sorted(wanted - set(watch_counts.windows()))}"
                                     f" never closed:\n{worker.tail()}")
                time.sleep(0.5)
            time.sleep(1.0)  # alerts of the last minute, sent in the same step
        finally:
            worker.stop()
            for w in (watch_counts, watch_alerts, watch_tx):
                w.stop()

    windows = watch_counts.windows()
    win_lat, win_seen = [], []
    for wid in sorted(wanted):
        w, ts, seen = windows[wid]
        end_ms = int(w.end.timestamp() * 1000)
        win_lat.append(ts - close_at(end_ms))
        win_seen.append(seen - close_at(end_ms))
    alert_lat, alert_seen, events = [], [], []
    for value, ts, seen in watch_alerts.snapshot():
        a = msgspec.json.decode(value, type=Alert)
        end_ms = int(a.window_end.timestamp() * 1000)
        if a.window_start.strftime("%Y-%m-%dT%H:%MZ") not in wanted:
            continue
        alert_lat.append(ts - close_at(end_ms))
        alert_seen.append(seen - close_at(end_ms))
        events.append(a.event)
    hop = [seen - ts for _, ts, seen in watch_tx.snapshot() if ts >= pacer.wall0]
    hop50, hop99 = percentiles(hop)
    w50, w99 = percentiles(win_lat)
    a50, a99 = percentiles(alert_lat)
    print(f"\nalert latency: {len(win_lat)} live minutes at ~{args.tps:g} tx/s "
          f"(speed {args.speed:g}), incident {args.incident}; {len(alert_lat)} alerts "
          f"({', '.join(events) or 'none'}); one Kafka hop p50 {fmt_ms(hop50)}, "
          f"p99 {fmt_ms(hop99)} over {len(hop):,} transactions")
    print("  window latencies (s): " + " ".join(f"{x:.3f}" for x in win_lat))
    print("  alert latencies (s): " + " ".join(f"{x:.3f}" for x in alert_lat))
    rows = [
        row("latency", f"alert p99 ({len(alert_lat)} alerts)", a99, "s", "one Kafka hop p99",
            hop99, f"<= {TARGET_S:g} s", None if a99 is None else a99 <= TARGET_S,
            note=f"alert p50 {fmt_ms(a50)}; seen by a consumer: p99 "
                 f"{fmt_ms(percentiles(alert_seen)[1])}"),
        row("latency", f"window close -> count p50 ({len(win_lat)} min)", w50, "s",
            "one Kafka hop p50", hop50, "", None),
        row("latency", f"window close -> count p99 ({len(win_lat)} min)", w99, "s",
            "one Kafka hop p99", hop99, f"<= {TARGET_S:g} s",
            None if w99 is None else w99 <= TARGET_S,
            note=f"seen by a consumer: p99 {fmt_ms(percentiles(win_seen)[1])}"),
    ]
    print_rows(rows)
    from common import write_json

    write_json(args.json, rows, {"window_latency_s": win_lat, "alert_latency_s": alert_lat,
                                 "alert_events": events, "speed": args.speed})
    return 0


def fmt_ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.0f} ms"


if __name__ == "__main__":
    sys.exit(main())
