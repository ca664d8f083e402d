"""The worker SIGKILLed at random points of a reference day and restarted gives the
same windows and alerts as an undisturbed run, 3 trials, and none of them twice: the
merge commits each step's minutes and alerts in one transaction with its state, so Kafka's
own Java consumer, read_committed, finds every window and alert id exactly once.

Four hours of the day's afternoon (13:30-17:29: an hour of warm-up, then its incidents)
are replayed once into one transactions topic: the crashes are the point, and 240
minutes give them places to land. Three trials run at once, one round: a second round
took 120-170 s of a 15-minute suite (TXMON_FAULT_TRIALS asks for more).

The truth for counts is the CSV's pandas pivot; the truth for alerts (and for every
window's full content, scores included) is one undisturbed worker. Each trial is a fresh
worker group (own app id, own state, partial, window and alert topics) over the same
transactions, killed 1-2 times and restarted until it has closed the last minute. A kill
lands at a seeded random moment of the work: a fraction of the time the undisturbed
worker took from ready to its last window but one, counted from this start's readiness.
The last window waits for the idle timeout, so counting to it put most kills after the
work; so did aiming at a number of windows, since the merge commits the minutes of a
preloaded topic in a few large steps.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.faults import (
    Slice,
    WindowWatch,
    fresh_outputs,
    pipeline_env,
    pivot,
    reference_data,
    run_topics,
    slug,
    tally_records,
    tally_windows,
)
from support.kafka import java_read_keys
from support.processor import (
    TXMON,
    Worker,
    processor_env,
    read_alerts,
    read_windows,
    wait_ready,
)
from support.reliability import record

from txmon.contracts.minutes import minute_id
from txmon.kafka.admin import ensure_topics, pipeline_topics

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

TRIALS = int(os.environ.get("TXMON_FAULT_TRIALS", "3"))
PARALLEL = int(os.environ.get("TXMON_FAULT_PARALLEL", "3"))
SEED = int(os.environ.get("TXMON_FAULT_SEED", "20260302"))  # trial n uses SEED + n
#: Four hours of the first day, replayed into the topic before the workers start.
SLICE = Slice("transactions_1.csv", "13h 30", "17h 29")
#: Faster restarts: the killed member leaves the group after this, not the default 10 s.
WORKER_ENV = {"TXMON_WARMUP_WINDOWS": "60", "TXMON_SESSION_TIMEOUT_MS": "6000"}


@pytest.fixture(scope="module")
def day(shared_data_module, kafka_settings, tmp_path_factory):
    """The reference day in a transactions topic, and the undisturbed run's output."""
    source = SLICE.write(shared_data_module, tmp_path_factory.mktemp("day"))
    names = run_topics("t-crash")
    ensure_topics(kafka_settings, pipeline_topics(names))
    base = pipeline_env(kafka_settings, names)
    subprocess.run([TXMON, "replay", str(source), "--no-progress"], env=base, check=True,
                   capture_output=True, timeout=300)
    truth = pivot(source)
    last = minute_id(int(truth.index[-1].timestamp() * 1000))
    calm_names = fresh_outputs(names, "calm")
    env = processor_env(pipeline_env(kafka_settings, calm_names), TXMON_APP_ID=slug("calm"),
                        **WORKER_ENV)
    calm = Worker(env, tmp_path_factory.mktemp("calm")).start()
    watch = WindowWatch(kafka_settings, calm_names.window_counts)
    watch.start()
    try:
        wait_ready([calm])
        ready = time.monotonic()
        # The work's span ends before the last window: that one waits for the idle timeout.
        watch.wait_for(len(truth) - 1, 600, calm.alive)
        span = time.monotonic() - ready
        watch.wait_for(len(truth), 600, calm.alive)
        time.sleep(2)  # alerts of the last window follow it
    finally:
        watch.stop()
        calm.stop()
    windows = read_windows(kafka_settings, calm_names.window_counts)
    alerts = read_alerts(kafka_settings, calm_names.alerts)
    calm_tally = tally_windows(windows, truth)
    assert calm_tally.clean(), f"the undisturbed run is wrong: {calm_tally}"
    assert alerts, "the warm-up model should raise some alerts on this day"
    return dict(names=names, truth=truth, last=last, windows=windows, alerts=alerts,
                span=span)


@pytest.fixture(scope="module")
def shared_data_module():
    return reference_data()


def _trial(n: int, day, kafka_settings, tmp_path) -> dict:
    rng = random.Random(SEED + n)
    total = len(day["truth"])
    delays = [round(rng.uniform(0.05, 0.95) * day["span"], 1)
              for _ in range(rng.choice((1, 2)))]
    names = fresh_outputs(day["names"], f"trial{n}")
    env = processor_env(pipeline_env(kafka_settings, names), TXMON_APP_ID=slug(f"trial{n}"),
                        **WORKER_ENV)
    worker = Worker(env, tmp_path, f"trial{n}").start()
    watch = WindowWatch(kafka_settings, names.window_counts)
    watch.start()
    at = []
    try:
        for delay in delays:
            wait_ready([worker])
            time.sleep(delay)  # the fault's moment, drawn from the seed
            at.append(watch.count())
            worker.kill()
            worker.start()
        watch.wait_for(total, 600, worker.alive)
        time.sleep(2)
    except AssertionError as exc:
        raise AssertionError(f"trial {n}: {exc}\n{worker.tail()}") from None
    finally:
        watch.stop()
        worker.stop()
    windows = read_windows(kafka_settings, names.window_counts)
    alerts = read_alerts(kafka_settings, names.alerts)
    outside = java_read_keys(kafka_settings, names.window_counts, names.alerts)
    last_start = max(w.start for w in day["windows"] if w.id <= day["last"])
    return dict(
        kills=len(delays), delays=delays, killed_at=at,
        outside_twice=len(outside) - len(set(outside)),
        counts=tally_windows(windows, day["truth"]),
        windows=tally_records([w for w in windows if w.id <= day["last"]],
                              [w for w in day["windows"] if w.id <= day["last"]]),
        alerts=tally_records([a for a in alerts if a.window_start <= last_start],
                             [a for a in day["alerts"] if a.window_start <= last_start]),
    )


def test_sigkilled_worker_equals_an_undisturbed_run(day, kafka_settings, tmp_path):
    started = time.monotonic()

    def trial(n: int) -> dict:
        t0 = time.monotonic()
        r = _trial(n, day, kafka_settings, tmp_path)
        print(f"trial {n}: kills {r['delays']} s after ready, with {r['killed_at']} "
              f"windows out, "
              f"counts {r['counts']}, windows {r['windows']}, alerts {r['alerts']}, "
              f"read twice by the Java consumer {r['outside_twice']}, "
              f"{time.monotonic() - t0:.0f}s", flush=True)
        return r

    # Trials are independent worker groups, so several run at once: a worker spends much
    # of its time waiting on the broker, and the wall time of the trials matters in CI.
    with ThreadPoolExecutor(PARALLEL) as pool:
        results = list(pool.map(trial, range(TRIALS)))
    crashes = sum(r["kills"] for r in results)
    record(
        "test_faults_worker_crash", order=1, fault="worker SIGKILL + restart",
        trials=TRIALS, crashes=crashes, records=day["truth"].to_numpy().sum().item() * TRIALS,
        windows=len(day["truth"]) * TRIALS,
        alerts=len({a.id for a in day["alerts"]}) * TRIALS,
        lost=sum(r["counts"].lost + r["windows"].lost + r["alerts"].lost for r in results),
        double_counted=sum(r["counts"].double_counted for r in results),
        duplicated=sum(r["windows"].duplicated + r["alerts"].duplicated for r in results),
        reemitted=sum(r["windows"].reemitted + r["alerts"].reemitted for r in results),
        outcome=(f"equal to the undisturbed run ({PARALLEL} trials at a time)" if all(
            r["counts"].clean() and r["windows"].clean() and r["alerts"].clean()
            for r in results) else "FAILED: differs from the CSV or the undisturbed run"),
        seconds=round(time.monotonic() - started),
        notes=f"{SLICE} ({day['truth'].to_numpy().sum()} transactions, "
              f"{len(day['truth'])} minutes) replayed once; seed {SEED}; the undisturbed "
              f"worker's {day['span']:.0f} s from ready to its last window but one; kills (s after "
              "ready, windows out then) "
              + "; ".join(", ".join(f"{d} s/{w}" for d, w in zip(r["delays"], r["killed_at"],
                                                                strict=True))
                          for r in results)
              + "; re-emitted windows "
              + str(sum(r["windows"].reemitted for r in results))
              + ", alerts " + str(sum(r["alerts"].reemitted for r in results))
              + "; ids a read_committed Java consumer read twice "
              + str(sum(r["outside_twice"] for r in results))
              + "".join(f"; FAILED trial {n}: counts {r['counts']!r}, windows {r['windows']}, "
                        f"alerts {r['alerts']!r}"
                        for n, r in enumerate(results)
                        if not (r["counts"].clean() and r["windows"].clean()
                                and r["alerts"].clean())),
    )
    for n, r in enumerate(results):
        assert r["counts"].clean(), f"trial {n}: counts differ from the CSV: {r['counts']}"
        assert r["windows"].clean(), f"trial {n}: windows differ: {r['windows']}"
        assert r["alerts"].clean(), f"trial {n}: alerts differ: {r['alerts']}"
        assert r["windows"].reemitted == r["alerts"].reemitted == 0, f"trial {n}: {r}"
        assert r["outside_twice"] == 0, f"trial {n}: read twice outside txmon: {r}"
