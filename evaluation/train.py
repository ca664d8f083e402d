"""`txmon train`: fit the detector on history and save it where the worker finds it.

History is per-minute counts from any of: counts files (through the replay parser, the
one reader of those formats), simulated clean days (the simulator's own distribution,
no incidents), or the window-counts topic (what the pipeline itself measured).
"""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime

import msgspec

from processor.detector import DEFAULT_FALSE_ALARM_RATE, Detector
from txmon.contracts import SCORE_THRESHOLD, STATUS_INDEX, STATUSES, WindowCount, topics
from txmon.contracts.minutes import MINUTE_MS, to_ms
from txmon.errors import UserError
from txmon.settings import KafkaSettings, ProcessorSettings, TrainSettings

#: A Monday: simulated training days start here unless told otherwise.
SIMULATED_START = datetime(2026, 3, 2, tzinfo=UTC)

Windows = list[tuple[int, list[int]]]


def windows_from_files(paths: list[str], day: date | None = None) -> Windows:
    from producer.replay import read_counts

    per_minute: dict[int, list[int]] = {}
    for path in paths:
        for minute, status, count in read_counts(path, date=day):
            per_minute.setdefault(to_ms(minute), [0] * len(STATUSES))[STATUS_INDEX[status]] += count
    if not per_minute:
        return []
    # Minutes absent from a counts file had no transactions: they are history too.
    first, last = min(per_minute), max(per_minute)
    return [(t, per_minute.get(t, [0] * len(STATUSES))) for t in range(first, last + 1, MINUTE_MS)]


def windows_from_simulation(days: int, rate: float, seed: int) -> Windows:
    from producer.simulate import Scenario, minute_counts

    frame = minute_counts(Scenario(start=SIMULATED_START, rate=rate, seed=seed,
                                   duration=days * 86_400))
    starts = frame.index.as_unit("ms").asi8.tolist()  # the unit varies with pandas
    return list(zip(starts, frame[list(STATUSES)].to_numpy().tolist(), strict=True))


def windows_from_topic(settings: KafkaSettings, topic: str) -> Windows:
    from txmon.kafka.read import read_to_end

    decoder = msgspec.json.Decoder(WindowCount)
    seen: dict[str, WindowCount] = {}
    for msg in read_to_end(settings, topic, "txmon-train"):
        try:
            window = decoder.decode(msg.value())
        except (msgspec.MsgspecError, TypeError):
            continue
        seen[window.id] = window  # a re-emitted minute is the same minute
    return sorted((to_ms(w.start), [w.counts.get(s, 0) for s in STATUSES])
                  for w in seen.values())


def train(args: argparse.Namespace) -> int:
    windows: Windows = []
    sources = []
    if args.files:
        day = date.fromisoformat(args.date) if args.date else None
        windows += windows_from_files(args.files, day)
        sources.append("files: " + ", ".join(args.files))
    if args.simulate_days:
        rate = TrainSettings.from_env().rate
        windows += windows_from_simulation(args.simulate_days, rate, args.seed)
        sources.append(f"simulated: {args.simulate_days} clean day(s) at {rate:g} tx/s peak")
    if args.from_topic:
        from txmon.kafka.admin import require_kafka

        settings = KafkaSettings.from_env()
        require_kafka(settings)
        windows += windows_from_topic(settings, topics().window_counts)
        sources.append("topic: " + topics().window_counts)
    if not sources:
        raise UserError("nothing to train on: give counts files, --simulate-days or --from-topic")
    if len(windows) < 10:
        raise UserError(f"only {len(windows)} minutes of history: need at least 10")
    rate = args.false_alarm_rate or DEFAULT_FALSE_ALARM_RATE
    detector = Detector.fit(windows, false_alarm_rate=rate, seed=args.seed,
                            source="; ".join(sources))
    out = args.out or ProcessorSettings.from_env().model_path
    detector.save(out)
    meta = detector.meta
    print(f"model {meta['version']} saved to {out}")
    print(f"  trained on {meta['training_windows']} minutes, {meta['training_from']} .. "
          f"{meta['training_to']} ({meta['source']})")
    print(f"  threshold {SCORE_THRESHOLD:.4f} for a false-alarm rate of {rate:g}")
    return 0
