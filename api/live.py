"""The operator's live page (GET /live) and the one JSON document it polls (GET
/live/data), served by `txmon api` itself so every machine has a live view, Docker or not.

Everything comes from what the API already reads (History: window counts with their
scores, alert records) plus a small reader of its own (LiveFeed) for the two things
History does not keep: when the newest window record reached Kafka (freshness, the way
the exporter's PipelineStalled input measures it) and the dead letters by reason. The
page's assets, uPlot included, ship in the package (static/): no CDN, no internet.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import msgspec
from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.history import History
from api.tail import TopicTail
from txmon.contracts import STATUSES, Alert, DeadLetter, Topics, minute_key
from txmon.contracts.incidents import fold_incidents
from txmon.settings import KafkaSettings

STATIC = Path(__file__).with_name("static")
#: PipelineStalled (prometheus/rules/txmon.yml): no window record for 120 s, held 1 m.
STALL_AFTER_S = 180
_dead_decoder = msgspec.json.Decoder(DeadLetter)


class LiveFeed(TopicTail):
    """Reads the window-counts topic for record times only, and the dead-letter topic
    for its reasons."""

    def __init__(self, settings: KafkaSettings, names: Topics):
        super().__init__(settings, (names.window_counts, names.dead_letter), "api-live")
        self.names = names
        self.newest_window_at: float | None = None
        self.dead_letters: Counter[str] = Counter()

    def apply(self, topic: str, value: bytes | None, at: float) -> None:
        with self.lock:
            if topic == self.names.window_counts:
                self.newest_window_at = max(at, self.newest_window_at or at)
                return
        try:
            reason = _dead_decoder.decode(value).reason.value
        except (msgspec.MsgspecError, TypeError, ValueError):
            reason = "undecodable"
        with self.lock:
            self.dead_letters[reason] += 1


def snapshot(history: History, feed: LiveFeed, minutes: int, stall_after: float) -> dict:
    """What the page shows, as columns (one list per series) so 2,880 minutes stay small."""
    with history.lock:
        windows = sorted(history.windows.values(), key=lambda w: w.start)
    shown = windows[-minutes:]
    alerts = history.recent_alerts(1000)
    totals = Counter()
    for w in windows:
        totals.update(w.counts)
    return {
        "now": time.time(),
        "statuses": list(STATUSES),
        "minutes": [w.start.timestamp() for w in shown],
        "counts": {s: [w.counts.get(s, 0) for w in shown] for s in STATUSES},
        "score": [w.score for w in shown],
        "threshold": [w.threshold for w in shown],
        "freshness": _freshness(windows[-1] if windows else None, feed, stall_after),
        "totals": {"transactions": sum(totals.values()), "windows": len(windows),
                   "late": sum(w.late for w in windows),
                   "by_status": {s: totals.get(s, 0) for s in STATUSES}},
        "dead_letters": _dead_letters(feed),
        "incidents": open_incidents(alerts),
        "alerts": [_alert_row(a) for a in reversed(alerts[-20:])],
    }


def _freshness(newest, feed: LiveFeed, stall_after: float) -> dict:
    with feed.lock:
        at = feed.newest_window_at
    age = None if at is None else max(0.0, time.time() - at)
    return {"minute": None if newest is None else minute_key(newest.start),
            "received_at": at, "age_s": age, "stall_after_s": stall_after,
            "stalled": age is not None and age > stall_after}


def _dead_letters(feed: LiveFeed) -> dict:
    with feed.lock:
        by_reason = dict(feed.dead_letters)
    return {"total": sum(by_reason.values()), "by_reason": by_reason}


def open_incidents(alerts: list[Alert]) -> list[dict]:
    """Incidents whose newest record is not `resolved`, newest first, each with the words
    of its latest record and the worst severity it reached: the fold every reader of the
    alerts topic shares, so the page and the exporter agree on what is open."""
    rows = []
    for inc in fold_incidents(alerts, keep_alerts=True):
        if not inc.open:
            continue
        latest = inc.alerts[-1]
        since = latest.since or inc.start
        rows.append({**_alert_row(latest), "severity": inc.severity,
                     "since": since.isoformat(),
                     "observed": latest.observed, "expected": latest.expected})
    return sorted(rows, key=lambda r: r["since"], reverse=True)


def _alert_row(a: Alert) -> dict:
    return {"incident_id": a.incident_id, "event": a.event, "group": a.group,
            "groups": a.groups or [a.group], "severity": a.severity,
            "minute": minute_key(a.window_start), "statuses": a.statuses,
            "summary": a.summary, "score": a.score, "threshold": a.threshold}


def mount_live(app: FastAPI, state: dict) -> None:
    """GET /live (the page), /live/data (its numbers), /live/static (its assets), and /
    redirecting to the page. `state` holds the API's "history" and "live" once started."""
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    async def home():
        return RedirectResponse("/live")

    @router.get("/live", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "live.html", media_type="text/html")

    @router.get("/live/data")
    async def live_data(minutes: int = Query(1440, ge=1, le=10_080),
                        stall_after: float = Query(STALL_AFTER_S, gt=0, le=86_400)):
        """The live page's numbers: per-status counts, scores and thresholds per minute,
        freshness, totals, dead letters, open incidents and recent alert records."""
        return snapshot(state["history"], state["live"], minutes, stall_after)

    app.include_router(router)
    app.mount("/live/static", StaticFiles(directory=STATIC), name="live-static")
