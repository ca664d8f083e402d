"""Event schemas on the wire: JSON, validated by msgspec on the way in.

msgspec decodes straight into typed structs and rejects bad fields with a message
that names the field, in about a microsecond: validation is cheap enough for the hot path.
"""

from __future__ import annotations

import base64
import enum
from datetime import UTC, datetime
from typing import Literal, get_args

import msgspec

from txmon.contracts.minutes import EARLIEST, LATEST
from txmon.contracts.statuses import STATUSES as STATUSES  # re-exported: first defined here
from txmon.contracts.statuses import Status

Severity = Literal["info", "warning", "critical"]
#: Least to most severe: an incident's severity is the worst of its steps.
SEVERITIES: tuple[str, ...] = get_args(Severity)
_SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def severity_rank(severity: str) -> int:
    return _SEVERITY_RANK[severity]


def worse(a: str, b: str) -> str:
    """The more severe of two severities; `a` on a tie."""
    return b if _SEVERITY_RANK[b] > _SEVERITY_RANK[a] else a


#: An alert's `score` is the detector's largest per-group score divided by that group's
#: calibrated threshold, so a minute is anomalous from 1.0 whatever the model: the
#: records' `threshold` field and the threshold gauge carry this, not a tuning knob.
SCORE_THRESHOLD = 1.0

#: A transaction larger than this is not a transaction: it goes to the dead letters.
MAX_TRANSACTION_BYTES = 4096


class Transaction(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One payment attempt. `timestamp` is event time; without a zone it means UTC."""

    id: str
    status: Status
    timestamp: datetime
    amount: float | None = None
    terminal_id: str | None = None


class WindowCount(msgspec.Struct, kw_only=True):
    """One closed minute. `id` is the window start, so a re-emission is recognisable."""

    id: str
    start: datetime
    end: datetime
    counts: dict[str, int]
    total: int
    late: int = 0
    #: The detector's score of this window and its threshold (None while warming up):
    #: the exporter's score gauge and the dashboards need every window's score, not only
    #: the anomalous ones carried by alerts.
    score: float | None = None
    threshold: float | None = None
    #: Source partitions of the transactions topic that fell silent while the others
    #: flowed (processor/sources.py): counted as zeros, named here.
    quiet_sources: list[int] = []


class WindowPartial(msgspec.Struct, kw_only=True):
    """Internal: one source partition's closed windows and how far it has closed.

    `windows` maps window start (ms) to the status counts in STATUSES order plus, last,
    the late events charged to that window (`MinuteCounts.of` names them). Sent with the
    same content again after a crash, so the merge overwrites rather than adds.
    """

    partition: int
    closed_until: int | None
    idle: bool = False
    windows: dict[int, list[int]] = {}
    #: Wall-clock send time (ms): lets the merge tell a stale idle claim from a fresh one.
    sent_ms: int = 0
    #: Per window start: its terminals' heavy-hitters summary (processor/sketch.py wire
    #: rows), bounded whatever the fleet; absent when no event carried a terminal.
    slices: dict[int, list[list[int | str]]] = {}


#: An alert record's step of its incident, in the order they happen.
AlertEvent = Literal["open", "update", "resolved"]
ALERT_EVENTS: tuple[str, ...] = get_args(AlertEvent)


class Alert(msgspec.Struct, kw_only=True):
    """One step of an incident on the alerts topic, keyed by `id`.

    `id` is deterministic (incident and window), so replays and restarts re-emit the same
    alert rather than a new one, and consumers deduplicate by it. One incident is one
    episode: every status group that goes wrong while it is open joins it (`groups`),
    while `group`, the one that opened it, stays fixed for routing. `summary` is the line
    a person reads (Alertmanager annotation, `txmon notify`, `txmon alerts`), so every
    consumer shows the same words.
    """

    id: str
    incident_id: str
    event: AlertEvent
    group: str
    window_start: datetime
    window_end: datetime
    statuses: list[str]
    observed: dict[str, int]
    expected: dict[str, float]
    score: float
    threshold: float
    severity: Severity
    model_version: str
    #: Every group the incident involves so far, `group` first.
    groups: list[str] = []
    #: "reversed 122/min against ~2 expected, approved 62 against ~300, since 14:33 UTC".
    summary: str = ""
    #: Start of the incident's first anomalous minute.
    since: datetime | None = None
    #: From `since` to this window's end.
    duration_s: int = 0
    runbook_url: str = ""
    #: The evidence at fault in this minute: statuses, `volume` (all traffic missing),
    #: `source` (a transactions partition silent while the others flow), `slice_<group>`
    #: (terminals failing on their own), `slice_silence` (busy terminals gone silent).
    causes: list[str] = []
    #: Per group of the incident, the terminals this minute names (at most three): for a
    #: rise, those with the most extra events; for an outage, the silent ones.
    terminals: dict[str, list[str]] = {}


class IncidentLabel(msgspec.Struct, kw_only=True):
    """Ground truth for one injected incident, written by the simulator (JSON lines).

    Detection is scored against these: `statuses` are the statuses whose rate was changed,
    `[start, end)` the event-time span, `kind` the rate profile (spike, ramp, burst, bursty,
    outage: approvals fall; silence: every status falls) and `factor` the multiplier
    reached (below 1 for an outage or a silence). A `slice` changes only some terminals'
    transactions, named in `terminals`, so that "which terminals" can be scored too: they
    all get the one status in `statuses` (factor 1, the share of them that does), or they
    send nothing (every status; factor 0, as a silence). A `source` is one partition of
    the transactions topic sending nothing (`txmon evaluate` only).
    """

    id: str
    kind: Literal["spike", "ramp", "burst", "bursty", "outage", "silence", "slice", "source"]
    statuses: list[str]
    start: datetime
    end: datetime
    factor: float
    spec: str = ""
    terminals: list[str] = []


class DeadLetterReason(enum.StrEnum):
    MALFORMED_JSON = "malformed_json"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    UNKNOWN_STATUS = "unknown_status"
    BAD_TIMESTAMP = "bad_timestamp"
    FUTURE = "future"
    OVERSIZED = "oversized"
    LATE = "late"
    BAD_ROW = "bad_row"


#: The most of a refused record's bytes its dead letter keeps. Every record short enough
#: to be a transaction (MAX_TRANSACTION_BYTES) is kept whole, and an oversized one keeps
#: sixteen times that, plenty to see what was sent; in base64 that is 87,384 bytes, so a
#: dead letter stays far under the 1,000,000 bytes a producer sends by default
#: (message.max.bytes) and is never itself refused for its size.
DEAD_LETTER_PAYLOAD_MAX = 64 * 1024


class DeadLetter(msgspec.Struct, kw_only=True):
    """A record we could not use, kept with why and where it came from.

    `payload_b64` carries the original bytes untouched (they may not be UTF-8), their
    first DEAD_LETTER_PAYLOAD_MAX bytes when `truncated`; `payload_bytes` is the
    original size (None in dead letters written before it was recorded). Build one with
    `DeadLetter.of`, which fills the three consistently.
    """

    reason: DeadLetterReason
    detail: str
    source: str
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    payload_b64: str = ""
    at: datetime = msgspec.field(default_factory=lambda: datetime.now(UTC))
    payload_bytes: int | None = None
    truncated: bool = False

    @classmethod
    def of(cls, payload: bytes, **fields) -> DeadLetter:
        """A dead letter of `payload`, cut to DEAD_LETTER_PAYLOAD_MAX bytes with its
        original size kept; `fields` are the others (reason, detail, source, where)."""
        return cls(payload_b64=cls.wrap(payload), payload_bytes=len(payload),
                   truncated=len(payload) > DEAD_LETTER_PAYLOAD_MAX, **fields)

    @property
    def payload(self) -> bytes:
        return base64.b64decode(self.payload_b64)

    @staticmethod
    def wrap(payload: bytes) -> str:
        """base64 of at most DEAD_LETTER_PAYLOAD_MAX bytes of `payload`: prefer `of`,
        which also records whether it was cut."""
        return base64.b64encode(payload[:DEAD_LETTER_PAYLOAD_MAX]).decode("ascii")


class InvalidTransaction(ValueError):
    """Why a record is not a valid transaction, as a dead-letter reason and a detail."""

    def __init__(self, reason: DeadLetterReason, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


_encoder = msgspec.json.Encoder()
_tx_decoder = msgspec.json.Decoder(Transaction)


def encode(obj: msgspec.Struct) -> bytes:
    return _encoder.encode(obj)


def decoder(kind: type[msgspec.Struct]) -> msgspec.json.Decoder:
    return msgspec.json.Decoder(kind)


def _classify(message: str) -> DeadLetterReason:
    if "Object missing required field" in message:
        return DeadLetterReason.MISSING_FIELD
    if "$.status" in message:
        return DeadLetterReason.UNKNOWN_STATUS
    if "$.timestamp" in message:
        return DeadLetterReason.BAD_TIMESTAMP
    return DeadLetterReason.INVALID_FIELD


def decode_transaction(data: bytes, max_bytes: int = MAX_TRANSACTION_BYTES) -> Transaction:
    """Decode and validate one transaction, or raise InvalidTransaction with the reason.

    The timestamp comes back timezone-aware in UTC, whatever offset it was written with.
    """
    if len(data) > max_bytes:
        raise InvalidTransaction(
            DeadLetterReason.OVERSIZED, f"{len(data)} bytes > limit {max_bytes}"
        )
    try:
        tx = _tx_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise InvalidTransaction(_classify(str(exc)), str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidTransaction(DeadLetterReason.MALFORMED_JSON, str(exc)) from None
    except RecursionError:  # msgspec's depth limit, hit by arrays nested in an extra field
        raise InvalidTransaction(DeadLetterReason.MALFORMED_JSON,
                                 "nested too deeply to decode") from None
    ts = tx.timestamp
    if ts.tzinfo is not UTC:  # msgspec gives `Z` the UTC singleton: most events skip this
        ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
        tx.timestamp = ts
    if not EARLIEST <= ts < LATEST:
        raise InvalidTransaction(DeadLetterReason.BAD_TIMESTAMP, f"out of range: {ts.isoformat()}")
    return tx


def message_key(tx: Transaction) -> bytes:
    """Key by terminal when known (a terminal's events stay in order), else by id."""
    return (tx.terminal_id or tx.id).encode()
