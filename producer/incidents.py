"""Injected incidents: their command-line spelling, their effect on rates, their labels.

Spelling (offsets are from the start of the stream, event time):

    --incident STATUS[,STATUS...]:xFACTOR:DURATION[:KIND][@OFFSET]
        failed:x20:15m                 failed ×20 for 15 minutes, from 5 minutes in
        denied:x8:20m:ramp@1h          denied rising linearly ×1 → ×8 over 20 min, from 1 h
        reversed,backend_reversed:x30:3m:burst@2h30m
    --outage DURATION[:FACTOR][@OFFSET]
        10m@1h                         approvals collapse to 0 for 10 minutes, from 1 h
        10m:0.2                        approvals fall to 20 % (a partial outage)
    --silence DURATION[:FACTOR][@OFFSET]
        45m@11h                        all traffic stops for 45 minutes, from 11 h
        1h:0.05@14h                    all traffic dwindles to 5 % for an hour
    --slice TERMINALS:EFFECT:DURATION[@OFFSET]        (needs a terminal population)
        T-0000412,T-0000977:failed:15m@1h   these two terminals' transactions all fail
        top:20:denied:30m              the 20 busiest terminals' are all denied
        ranks:500-999:silent:45m@11h   terminals of rank 500..999 send nothing

Kinds: `spike` (default) multiplies the status rate by FACTOR for the whole duration;
`ramp` rises linearly from ×1 to ×FACTOR across it (a slow degradation) and then stops;
`burst` is a spike of at most BURST_MAX_SECONDS (a short, sharp incident, labelled apart
so that scores can be reported per kind); `bursty` is an episode as real ones go, minute
by minute: about BURSTY_QUIET of its minutes look normal (×1), the others swing between
×FACTOR^0.3 and ×FACTOR (log-uniform), drawn from the spec so a replay is identical.
An outage multiplies the approved rate by FACTOR (default 0): the other statuses keep
their rates, as in the reference day where approvals fell at 17h. A silence multiplies
every status by FACTOR (default 0): the terminals, their network or the gateway in front
of them are down, so no status count rises and none falls alone. Several incidents
multiply.

A slice acts on events, not rates: within its span, every transaction of its terminals
gets the status EFFECT (the slice fails or is denied while the rest of the fleet is
normal), or, with `silent`, is not sent. Overlapping slices: silent wins, otherwise the
last given. It is what a fault at one merchant, one firmware or one acquirer link looks
like, and why the totals can look normal while a group of terminals is down.

A multiplier acts on the status's normal rate: ×20 of a status that hardly occurs at
night is still hardly anything, which is what real low-volume incidents look like.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from producer.terminals import rank_of, terminal_id
from txmon.contracts import STATUSES, IncidentLabel
from txmon.errors import UserError

#: Where an incident without @OFFSET starts: late enough for a few normal minutes first.
DEFAULT_OFFSET_SECONDS = 300
BURST_MAX_SECONDS = 300
KINDS = ("spike", "ramp", "burst", "bursty")
#: Share of a bursty episode's minutes that look normal.
BURSTY_QUIET = 1 / 3
#: A slice's effect that sends nothing (any other effect is a status).
SILENT = "silent"

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(text: str) -> float:
    """`90s`, `15m`, `2h30m`, `1d`, or a plain number of seconds → seconds."""
    text = text.strip().lower()
    try:
        value = float(text)
    except ValueError:
        match = _DURATION.match(text)
        if not text or not match or not any(match.groups()):
            raise UserError(f"bad duration {text!r}: use e.g. 90s, 15m, 2h30m") from None
        d, h, m, s = match.groups()
        value = int(d or 0) * 86400 + int(h or 0) * 3600 + int(m or 0) * 60 + float(s or 0)
    if value < 0:
        raise UserError(f"bad duration {text!r}: negative")
    return value


@dataclass(frozen=True)
class Incident:
    """A change of some statuses' rates over [offset, offset + duration) seconds."""

    statuses: tuple[str, ...]
    kind: str
    factor: float
    duration: float
    offset: float = DEFAULT_OFFSET_SECONDS
    spec: str = ""

    def profile(self, t: np.ndarray) -> np.ndarray:
        """Rate multiplier at seconds `t` since the stream start (1 outside the incident)."""
        t = np.asarray(t, dtype=np.float64)
        inside = (t >= self.offset) & (t < self.offset + self.duration)
        if self.kind == "ramp":
            frac = (t - self.offset) / self.duration
            level = 1.0 + (self.factor - 1.0) * np.clip(frac, 0.0, 1.0)
        elif self.kind == "bursty":
            level = self._swings()[np.clip((t - self.offset) // 60, 0, None).astype(np.int64)
                                   .clip(max=int(self.duration // 60))]
        else:
            level = np.full_like(t, self.factor)
        return np.where(inside, level, 1.0)

    def _swings(self) -> np.ndarray:
        """A bursty episode's multiplier per minute (one past the end, for clipping)."""
        rng = np.random.default_rng(zlib.crc32(f"{self.spec}@{self.offset}".encode()))
        n = int(self.duration // 60) + 1
        swing = self.factor ** rng.uniform(0.3, 1.0, n)
        return np.where(rng.random(n) < BURSTY_QUIET, 1.0, swing)

    def label(self, stream_start: datetime) -> IncidentLabel:
        start = stream_start + timedelta(seconds=self.offset)
        end = start + timedelta(seconds=self.duration)
        kind = self.kind
        return IncidentLabel(
            id=f"{kind}-{'+'.join(self.statuses)}-{start:%Y%m%dT%H%M%SZ}",
            kind=kind,
            statuses=list(self.statuses),
            start=start,
            end=end,
            factor=self.factor,
            spec=self.spec,
        )


def _split_offset(spec: str) -> tuple[str, float]:
    if "@" not in spec:
        return spec, DEFAULT_OFFSET_SECONDS
    body, _, offset = spec.rpartition("@")
    return body, parse_duration(offset)


def parse_incident(spec: str) -> Incident:
    """Parse `--incident` (see the module docstring); a bad spec is a UserError."""
    try:
        body, offset = _split_offset(spec)
        parts = body.split(":")
        if len(parts) not in (3, 4):
            raise UserError("expected STATUS[,STATUS]:xFACTOR:DURATION[:KIND][@OFFSET]")
        statuses = tuple(s.strip() for s in parts[0].split(",") if s.strip())
        unknown = [s for s in statuses if s not in STATUSES]
        if not statuses or unknown:
            raise UserError(f"unknown status {unknown or parts[0]!r}; one of {', '.join(STATUSES)}")
        if not parts[1].lower().startswith("x"):
            raise UserError(f"factor {parts[1]!r} must look like x20")
        try:
            factor = float(parts[1][1:])
        except ValueError:
            raise UserError(f"factor {parts[1]!r} must look like x20") from None
        if factor < 0:
            raise UserError("factor must be >= 0")
        duration = parse_duration(parts[2])
        if duration <= 0:
            raise UserError("duration must be > 0")
        kind = parts[3].strip().lower() if len(parts) == 4 else "spike"
        if kind not in KINDS:
            raise UserError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
        if kind == "burst" and duration > BURST_MAX_SECONDS:
            raise UserError(f"a burst lasts at most {BURST_MAX_SECONDS // 60} minutes; use spike")
    except UserError as exc:
        raise UserError(f"--incident {spec}: {exc}") from None
    return Incident(statuses, kind, factor, duration, offset, spec)


def _parse_drop(flag: str, spec: str) -> tuple[float, float, float]:
    """`DURATION[:FACTOR][@OFFSET]` of --outage and --silence: (factor, duration, offset)."""
    try:
        body, offset = _split_offset(spec)
        parts = body.split(":")
        if len(parts) not in (1, 2):
            raise UserError("expected DURATION[:FACTOR][@OFFSET]")
        duration = parse_duration(parts[0])
        if duration <= 0:
            raise UserError("duration must be > 0")
        try:
            factor = float(parts[1]) if len(parts) == 2 else 0.0
        except ValueError:
            raise UserError(f"factor {parts[1]!r} is not a number") from None
        if not 0.0 <= factor < 1.0:
            raise UserError(f"{flag.removeprefix('--')} factor is in [0, 1)")
    except UserError as exc:
        raise UserError(f"{flag} {spec}: {exc}") from None
    return factor, duration, offset


def parse_outage(spec: str) -> Incident:
    """Parse `--outage DURATION[:FACTOR][@OFFSET]`: approvals × FACTOR (default 0)."""
    factor, duration, offset = _parse_drop("--outage", spec)
    return Incident(("approved",), "outage", factor, duration, offset, spec)


def parse_silence(spec: str) -> Incident:
    """Parse `--silence DURATION[:FACTOR][@OFFSET]`: every status × FACTOR (default 0)."""
    factor, duration, offset = _parse_drop("--silence", spec)
    return Incident(STATUSES, "silence", factor, duration, offset, spec)


def rate_multipliers(incidents: tuple[Incident, ...] | list[Incident], t: np.ndarray) -> np.ndarray:
    """Per-status multipliers at seconds `t` since the stream start: shape (len(t), 7)."""
    out = np.ones((len(t), len(STATUSES)), dtype=np.float64)
    for incident in incidents:
        column = incident.profile(t)
        for status in incident.statuses:
            out[:, STATUSES.index(status)] *= column
    return out


@dataclass(frozen=True)
class Slice:
    """Some terminals' transactions over [offset, offset + duration) seconds: all given the
    status `effect`, or not sent (`silent`). `ranks`: the terminals, by rank."""

    ranks: range | tuple[int, ...]
    effect: str
    duration: float
    offset: float = DEFAULT_OFFSET_SECONDS
    spec: str = ""

    @property
    def last(self) -> int:
        """The highest rank named: the population must be larger."""
        return max(self.ranks)

    def active(self, t: np.ndarray) -> np.ndarray:
        """Whether seconds `t` since the stream start are inside the slice's span."""
        t = np.asarray(t, dtype=np.float64)
        return (t >= self.offset) & (t < self.offset + self.duration)

    def members(self, ranks: np.ndarray) -> np.ndarray:
        """Whether each of these terminal ranks belongs to the slice."""
        if isinstance(self.ranks, range):
            return (ranks >= self.ranks.start) & (ranks < self.ranks.stop)
        return np.isin(ranks, np.asarray(self.ranks, dtype=ranks.dtype))

    def terminal_ids(self) -> list[str]:
        return [terminal_id(r) for r in self.ranks]

    def label(self, stream_start: datetime) -> IncidentLabel:
        start = stream_start + timedelta(seconds=self.offset)
        ids = self.terminal_ids()
        who = ids[0] if len(ids) == 1 else f"{ids[0]}+{len(ids) - 1}"
        silent = self.effect == SILENT
        return IncidentLabel(
            id=f"slice-{self.effect}-{who}-{start:%Y%m%dT%H%M%SZ}",
            kind="slice",
            statuses=list(STATUSES) if silent else [self.effect],
            start=start,
            end=start + timedelta(seconds=self.duration),
            factor=0.0 if silent else 1.0,
            spec=self.spec,
            terminals=ids,
        )


_RANKS = re.compile(r"^(\d+)-(\d+)$")


def _slice_terminals(text: str) -> range | tuple[int, ...]:
    """`top:N`, `ranks:A-B` or `T-0000412[,T-...]` → the ranks they name."""
    kind, _, arg = text.strip().partition(":")
    if kind == "top":
        if not arg.strip().isdecimal() or int(arg) < 1:
            raise UserError(f"{text!r}: top:N takes a number of terminals >= 1")
        return range(int(arg))
    if kind == "ranks":
        match = _RANKS.match(arg.strip())
        if not match or int(match[1]) > int(match[2]):
            raise UserError(f"{text!r}: ranks:A-B takes two ranks, A <= B, e.g. ranks:10-19")
        return range(int(match[1]), int(match[2]) + 1)
    ids = [t for t in text.split(",") if t.strip()]
    ranks = [rank_of(t) for t in ids]
    bad = [t for t, r in zip(ids, ranks, strict=True) if r is None]
    if not ids or bad:
        raise UserError(f"terminal {(bad or [text])[0]!r} is not an id like {terminal_id(412)}"
                        " (or use top:N, ranks:A-B)")
    return tuple(sorted(set(ranks)))


def parse_slice(spec: str) -> Slice:
    """Parse `--slice TERMINALS:EFFECT:DURATION[@OFFSET]` (see the module docstring)."""
    try:
        body, offset = _split_offset(spec)
        parts = body.rsplit(":", 2)
        if len(parts) != 3:
            raise UserError("expected TERMINALS:EFFECT:DURATION[@OFFSET]")
        effect = parts[1].strip().lower()
        if effect not in (*STATUSES, SILENT):
            raise UserError(f"effect {parts[1]!r} is a status ({', '.join(STATUSES)}) "
                            f"or {SILENT}")
        duration = parse_duration(parts[2])
        if duration <= 0:
            raise UserError("duration must be > 0")
        ranks = _slice_terminals(parts[0])
    except UserError as exc:
        raise UserError(f"--slice {spec}: {exc}") from None
    return Slice(ranks, effect, duration, offset, spec)
