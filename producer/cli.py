"""`txmon produce` (simulated stream) and `txmon replay` (recorded files)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from txmon.contracts.topics import Topics
from txmon.errors import UserError
from txmon.settings import flag_help

_FILE_DATE = re.compile(r"^(.*)@(\d{4}-\d{2}-\d{2})$")


def _speed(text: str) -> float | None:
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("speed is a number > 0 or 'max'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("speed is a number > 0 or 'max'")
    return value


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad date {text!r}: use YYYY-MM-DD") from None


def _start(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad start {text!r}: use 2026-03-02T00:00") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topic", help=flag_help(Topics, "transactions", "transactions topic"))
    p.add_argument("--report", type=Path, metavar="FILE",
                   help="also write the totals as JSON to FILE")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(sub: argparse._SubParsersAction) -> None:
    _register_produce(sub)
    _register_replay(sub)


def _register_produce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "produce",
        help="stream simulated transactions (daily shape, status mix, incidents)",
        description="Poisson arrivals shaped like a reference day, with injected incidents "
        "labelled for scoring. Without --start the clock is real time (event time = now).",
    )
    p.add_argument("--rate", type=float, default=10.0,
                   help="mean transactions/s at the busiest hour (default 10, about the "
                   "reference days)")
    end = p.add_mutually_exclusive_group()
    end.add_argument("--duration", help="how much event time to produce, e.g. 90s, 15m, 24h "
                     "(default: until interrupted)")
    end.add_argument("--count", type=int, help="stop after this many transactions")
    p.add_argument("--seed", type=int, help="same seed and start, same events (default: random,"
                   " printed)")
    p.add_argument("--start", type=_start, help="simulated clock start, e.g. 2026-03-02T00:00 "
                   "(UTC unless a zone is given; default: now)")
    p.add_argument("--speed", type=_speed, default=1.0,
                   help="event time per wall time: 1 = real time, 60 = a minute per second, "
                   "max = as fast as possible (default 1)")
    p.add_argument("--incident", action="append", default=[], metavar="SPEC",
                   help="STATUS[,STATUS]:xFACTOR:DURATION[:spike|ramp|burst][@OFFSET], e.g. "
                   "failed:x20:15m or denied:x8:20m:ramp@1h (repeatable)")
    p.add_argument("--outage", action="append", default=[], metavar="SPEC",
                   help="DURATION[:FACTOR][@OFFSET]: approvals × FACTOR (default 0), e.g. "
                   "10m@1h or 10m:0.2 (repeatable)")
    p.add_argument("--silence", action="append", default=[], metavar="SPEC",
                   help="DURATION[:FACTOR][@OFFSET]: all traffic × FACTOR (default 0), e.g. "
                   "45m@1h (it stops) or 1h:0.05 (it dwindles) (repeatable)")
    p.add_argument("--terminals", type=int, default=0, metavar="N",
                   help="simulate N terminals, a few carrying much of the volume (the top 1 %% "
                   "about half); each transaction gets a terminal_id T-0000412 and is keyed "
                   "by it (default 0: no terminal ids)")
    p.add_argument("--slice", action="append", default=[], metavar="SPEC",
                   help="TERMINALS:STATUS|silent:DURATION[@OFFSET]: those terminals' "
                   "transactions all get STATUS, or stop; TERMINALS is T-0000412[,T-...], "
                   "top:N or ranks:A-B, e.g. top:20:failed:15m@1h or "
                   "ranks:100-199:silent:30m; needs --terminals (repeatable)")
    p.add_argument("--labels", type=Path, metavar="FILE",
                   help="append one JSON line per injected incident (default: "
                   "$TXMON_STATE_DIR/labels.jsonl)")
    _common(p)
    p.set_defaults(func=run_produce)


def _register_replay(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "replay",
        help="replay recorded transactions or per-minute counts from CSV files",
        description="Formats (by header): time,status,F1 (reference, per minute, 'HHh MM'); "
        "timestamp,status,count (per minute); timestamp,status[,id,amount,terminal_id] (one "
        "transaction a row). Every file is validated before anything is sent.",
    )
    r.add_argument("files", nargs="+", metavar="FILE[@DATE]",
                   help="CSV file; @YYYY-MM-DD sets the date of a reference-format file")
    r.add_argument("--date", type=_date,
                   help="date of the first reference-format file without @DATE; the next "
                   "ones get the following days (default 2026-03-02)")
    r.add_argument("--speed", type=_speed, default=None,
                   help="1 = real time, 60 = a minute per second, max (default max)")
    r.add_argument("--skip-bad", action="store_true",
                   help="send bad rows to the dead-letter topic and replay the rest "
                   "(default: stop at the first bad row)")
    _common(r)
    r.set_defaults(func=run_replay)


def _print_totals(title: str, totals: dict[str, int], out=sys.stdout) -> None:
    print(title, file=out)
    for status, n in totals.items():
        print(f"  {status:<17}{n:>12,}", file=out)
    print(f"  {'total':<17}{sum(totals.values()):>12,}", file=out)


def _ensure(settings, names, topic: str) -> None:
    """Create the pipeline's topics, and `topic` like the transactions topic if it differs."""
    from dataclasses import replace

    from txmon.kafka.admin import ensure_topics, pipeline_topics

    specs = pipeline_topics(names)
    if topic != names.transactions:
        specs.append(replace(specs[0], name=topic))
    ensure_topics(settings, specs)


def _finish(publisher, totals: dict[str, int], report: Path | None, extra: dict) -> int:
    failed = publisher.close()
    _print_totals("sent" if not failed else "handed to Kafka", totals)
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps({"totals": totals, "total": sum(totals.values()),
                                      "failed": failed, **extra}, default=str) + "\n")
    if failed:
        print(f"error: {failed} of {publisher.sent} deliveries failed "
              f"(first: {publisher.first_error})", file=sys.stderr)
        return 1
    return 0


def _progress(args, total: int | None, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="msg", unit_scale=True, desc=desc, disable=args.no_progress,
                smoothing=0.1, dynamic_ncols=True, file=sys.stderr)


def _scenario(args):
    """The simulated stream the flags describe, checked before any connection is made;
    called once Kafka answers, so that a real-time clock starts then."""
    import secrets

    from producer.incidents import (
        parse_duration,
        parse_incident,
        parse_outage,
        parse_silence,
        parse_slice,
    )
    from producer.simulate import Scenario

    if args.rate <= 0:
        raise UserError("--rate must be > 0")
    if args.count is not None and args.count < 0:
        raise UserError("--count must be >= 0")
    incidents = ([parse_incident(s) for s in args.incident]
                 + [parse_outage(s) for s in args.outage]
                 + [parse_silence(s) for s in args.silence])
    slices = tuple(parse_slice(s) for s in args.slice)
    population = _population(args.terminals, slices)
    duration = parse_duration(args.duration) if args.duration else None
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    return lambda: Scenario(start=args.start or datetime.now(UTC), rate=args.rate, seed=seed,
                            duration=duration, incidents=tuple(incidents),
                            terminals=population, slices=slices)


def _population(size: int, slices: tuple):
    """The --terminals population (None for 0), checked to hold every --slice terminal."""
    from producer.terminals import MAX_TERMINALS, TerminalPopulation, terminal_id

    if not 0 <= size <= MAX_TERMINALS:
        raise UserError(f"--terminals is 0 (none) to {MAX_TERMINALS:,}")
    if not size:
        if slices:
            raise UserError("--slice needs --terminals N: the terminals it names")
        return None
    for s in slices:
        if s.last >= size:
            raise UserError(f"--slice {s.spec}: {terminal_id(s.last)} is not among --terminals "
                            f"{size} (T-0000000 to {terminal_id(size - 1)})")
    return TerminalPopulation(size)


class _Labels:
    """The injected incidents' labels, each appended once the stream reaches its start:
    a scorer tailing the file never sees an incident ahead of its events."""

    def __init__(self, scenario, path: Path):
        self.path = path
        self.pending = sorted(scenario.labels(), key=lambda label: label.start)
        if self.pending:
            path.parent.mkdir(parents=True, exist_ok=True)
            print(f"incident labels -> {path}", file=sys.stderr)

    def write_due(self, now_ms: int) -> None:
        from txmon.contracts import encode

        while self.pending and self.pending[0].start.timestamp() * 1000 <= now_ms:
            with self.path.open("ab") as f:
                f.write(encode(self.pending.pop(0)) + b"\n")


class _Tally:
    """Per-status counts of what was handed to Kafka, shown as a progress bar."""

    def __init__(self, args, total: int | None, desc: str):
        import numpy as np

        from txmon.contracts import STATUSES

        self.counts = np.zeros(len(STATUSES), dtype=np.int64)
        self.bar = _progress(args, total, desc)

    def add(self, batch, lo: int, hi: int) -> None:
        import numpy as np

        self.counts += np.bincount(batch.status[lo:hi], minlength=len(self.counts))
        self.bar.update(hi - lo)

    def run(self, send) -> bool:
        """`send()` to the end or to Ctrl-C; True when interrupted."""
        try:
            send()
        except KeyboardInterrupt:
            return True
        finally:
            self.bar.close()
        return False

    def totals(self) -> dict[str, int]:
        from txmon.contracts import STATUSES

        return {s: int(c) for s, c in zip(STATUSES, self.counts, strict=True)}


def _exit_code(code: int, interrupted: bool) -> int:
    return 130 if interrupted and code == 0 else code


def run_produce(args) -> int:
    from producer.publish import Publisher
    from producer.simulate import generate
    from producer.stream import Pacer, send_paced
    from txmon.contracts import topics
    from txmon.kafka.admin import require_kafka
    from txmon.settings import KafkaSettings, state_dir

    make_scenario = _scenario(args)
    settings = KafkaSettings.from_env()
    require_kafka(settings)
    scenario = make_scenario()
    fleet = f", {args.terminals:,} terminals" if args.terminals else ""
    print(f"seed {scenario.seed}, start {scenario.start.isoformat()}, rate {args.rate}/s at "
          f"peak{fleet}, speed {args.speed or 'max'}", file=sys.stderr)
    names = topics()
    topic = args.topic or names.transactions
    _ensure(settings, names, topic)
    publisher = Publisher(settings, topic)
    labels = _Labels(scenario, args.labels or state_dir() / "labels.jsonl")
    tally = _Tally(args, args.count, "produce")
    start_ms = int(scenario.start.timestamp() * 1000)

    def on_sent(batch, lo, hi):
        tally.add(batch, lo, hi)
        labels.write_due(int(batch.ts_ms[hi - 1]))

    def send():
        labels.write_due(start_ms)
        pacer = Pacer(args.speed, anchor_ms=start_ms if args.start is None else None)
        send_paced(generate(scenario, args.count), publisher.send, pacer,
                   lambda b: b.encode(), on_sent)
        if scenario.duration is not None:
            labels.write_due(start_ms + int(scenario.duration * 1000) - 1)

    interrupted = tally.run(send)
    code = _finish(publisher, tally.totals(), args.report, {
        "seed": scenario.seed, "topic": topic, "start": scenario.start.isoformat()})
    return _exit_code(code, interrupted)


def _file_dates(specs: list[str], first: date) -> list[tuple[Path, date | None]]:
    out = []
    for spec in specs:
        match = _FILE_DATE.match(spec)
        out.append((Path(match[1]), date.fromisoformat(match[2])) if match else (Path(spec), None))
    return out


def _parse_files(args) -> list:
    """Every file parsed (and so validated) before anything is sent."""
    from producer import replay

    parsed = []
    next_day = args.date or replay.DEFAULT_DATE
    for path, explicit in _file_dates(args.files, next_day):
        if path.is_dir() or not path.exists():
            raise UserError(f"{path}: no such file")
        with path.open("rb") as f:
            header = f.readline().decode("utf-8-sig", "replace").strip()
        day = explicit
        if explicit is None and replay.detect_format(header.split(",")) == replay.REFERENCE:
            day, next_day = next_day, next_day + timedelta(days=1)
        p = replay.parse(path, day, skip_bad=args.skip_bad)
        parsed.append(p)
        where = f", date {p.date}" if p.date else ""
        bad = f", {len(p.bad)} bad rows" if p.bad else ""
        print(f"{path}: {p.format}{where}, {p.events:,} transactions{bad}", file=sys.stderr)
    return parsed


def _dead_letter_bad_rows(publisher, parsed: list, topic: str) -> int:
    from txmon.contracts import DeadLetter, DeadLetterReason

    bad_rows = [b for p in parsed for b in p.bad]
    for bad in bad_rows:
        publisher.dead_letter(
            DeadLetter.of(bad.raw, reason=DeadLetterReason.BAD_ROW, detail=str(bad),
                          source="replay"),
            key=f"{bad.path}:{bad.line}".encode(),
        )
    if bad_rows:
        print(f"{len(bad_rows)} bad rows sent to {topic}:", file=sys.stderr)
        for bad in bad_rows[:20]:
            print(f"  {bad}", file=sys.stderr)
        if len(bad_rows) > 20:
            print(f"  ... and {len(bad_rows) - 20} more", file=sys.stderr)
    return len(bad_rows)


def run_replay(args) -> int:
    from producer import replay
    from producer.publish import Publisher
    from producer.stream import Pacer, send_paced
    from txmon.contracts import STATUSES, topics
    from txmon.kafka.admin import require_kafka
    from txmon.settings import KafkaSettings

    settings = KafkaSettings.from_env()
    require_kafka(settings)
    parsed = _parse_files(args)
    names = topics()
    topic = args.topic or names.transactions
    _ensure(settings, names, topic)
    publisher = Publisher(settings, topic, dead_letter_topic=names.dead_letter)
    bad_rows = _dead_letter_bad_rows(publisher, parsed, names.dead_letter)
    tally = _Tally(args, sum(p.events for p in parsed), "replay")

    def send():
        pacer = Pacer(args.speed)
        for p in parsed:
            send_paced(replay.batches(p), publisher.send, pacer,
                       lambda b: (b.keys, b.values), tally.add)

    interrupted = tally.run(send)
    totals = tally.totals()
    expected = {s: sum(p.totals()[s] for p in parsed) for s in STATUSES}
    code = _finish(publisher, totals, args.report,
                   {"topic": topic, "bad_rows": bad_rows, "files": [
                       {"path": str(p.path), "format": p.format,
                        "date": p.date.isoformat() if p.date else None,
                        "totals": p.totals()} for p in parsed]})
    if not interrupted and totals != expected:
        print(f"error: sent {totals} but the files sum to {expected}", file=sys.stderr)
        return 1
    return _exit_code(code, interrupted)
