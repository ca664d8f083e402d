"""`txmon report`: the day at a glance, as a PNG, for someone without Grafana.

Per-status counts per closed minute from the window-counts topic (each window id once),
incidents from the alerts topic shaded, every alert marked where it fired.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from txmon.contracts import STATUSES, Alert, WindowCount
from txmon.contracts.incidents import fold_incidents

PROBLEM_STATUSES = ("denied", "reversed", "failed", "backend_reversed")
GROUP_COLOURS = ("tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive")


def parse_time(text: str) -> datetime:
    """ISO 8601; without a zone it means UTC, like every event time in txmon."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        from txmon.errors import UserError

        raise UserError(f"not an ISO 8601 time: {text!r} (e.g. 2026-03-02T14:00)") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def select_windows(windows: list[WindowCount], start: datetime | None, end: datetime | None,
                   ) -> list[WindowCount]:
    """Each window id once (re-emissions are identical), inside [start, end), by time."""
    unique: dict[str, WindowCount] = {}
    for wc in windows:
        ws = _utc(wc.start)
        if (start is None or ws >= start) and (end is None or ws < end):
            unique.setdefault(wc.id, wc)
    return sorted(unique.values(), key=lambda w: w.start)


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def render(windows: list[WindowCount], alerts: list[Alert], out: Path, *,
           start: datetime | None = None, end: datetime | None = None,
           title: str | None = None) -> dict:
    """Draw the figure into `out`; returns what it drew (for the CLI's summary and tests)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    windows = select_windows(windows, start, end)
    if not windows:
        from txmon.errors import UserError

        raise UserError("no closed windows in the requested period")
    t0 = start or _utc(windows[0].start)
    t1 = end or _utc(windows[-1].end)
    incidents = [i for i in fold_incidents(alerts)
                 if _utc(i.start) < t1 and (i.end is None or _utc(i.end) > t0)]
    in_range = [a for a in {a.id: a for a in alerts}.values()
                if t0 <= _utc(a.window_start) < t1]
    times = [_utc(w.start) for w in windows]
    scored = [(t, w.score, w.threshold) for t, w in zip(times, windows, strict=True)
              if w.score is not None]

    rows = 3 if scored else 2
    fig, axes = plt.subplots(rows, 1, figsize=(15, 3.2 * rows + 1), sharex=True,
                             gridspec_kw={"height_ratios": [1, 1.4, 0.8][:rows]})
    _draw_counts(axes[0], axes[1], times, windows)
    _shade_incidents(axes, incidents, t1)
    _mark_alerts(axes[2] if scored else axes[1], in_range, scored=bool(scored))
    if scored:
        _draw_scores(axes[2], scored)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_xlim(t0, t1)
    axes[1].legend(loc="upper left", fontsize=8, ncol=4)
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=UTC))
    axes[-1].set_xlabel("UTC (window start)")
    total = sum(w.total for w in windows)
    fig.suptitle(title or f"txmon: transactions per minute, {t0:%Y-%m-%d %H:%M} to "
                 f"{t1:%Y-%m-%d %H:%M} UTC: {total:,} transactions, "
                 f"{len(incidents)} incident(s), {len(in_range)} alert record(s)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return {"windows": len(windows), "transactions": total, "incidents": len(incidents),
            "alerts": len(in_range), "out": str(out)}


def _draw_counts(top, mid, times: list[datetime], windows: list[WindowCount]) -> None:
    """Approvals on their own panel: they run two orders of magnitude above the rest."""
    series = {s: [w.counts.get(s, 0) for w in windows] for s in STATUSES}
    top.plot(times, series["approved"], color="tab:green", lw=0.8, label="approved")
    top.set_ylabel("approved / min")
    for status in STATUSES:
        if status == "approved" or not any(series[status]):
            continue
        problem = status in PROBLEM_STATUSES
        mid.plot(times, series[status], label=status, lw=1.0 if problem else 0.6,
                 alpha=1.0 if problem else 0.6)
    mid.set_ylabel("other statuses / min")


def _shade_incidents(axes, incidents: list, t1: datetime) -> None:
    colours: dict[str, str] = {}
    for inc in incidents:
        colour = colours.setdefault(inc.group, GROUP_COLOURS[len(colours) % len(GROUP_COLOURS)])
        stop = _utc(inc.end) if inc.end is not None else t1
        for ax in axes:
            ax.axvspan(_utc(inc.start), stop, color=colour, alpha=0.15, lw=0)
    top = axes[0]
    if not colours:
        top.legend(loc="upper left", fontsize=8)
        return
    from matplotlib.patches import Patch

    counts = {g: sum(1 for i in incidents if i.group == g) for g in colours}
    top.legend(handles=[*top.get_legend_handles_labels()[0],
                        *(Patch(color=c, alpha=0.3, label=f"incident: {g} ({counts[g]})")
                          for g, c in colours.items())], loc="upper left", fontsize=8)


#: Marker, colour and size per alert event.
ALERT_MARKS = {"open": ("v", "tab:red", 36), "update": ("|", "tab:red", 16),
               "resolved": ("^", "tab:green", 36)}


def _mark_alerts(target, alerts: list[Alert], *, scored: bool) -> None:
    """At their score on the score panel (the one scale they share), or as a rug along
    the top of the counts panel when windows carry no score."""
    for event, (marker, colour, size) in ALERT_MARKS.items():
        chosen = [a for a in alerts if a.event == event]
        if not chosen:
            continue
        xs = [_utc(a.window_start) for a in chosen]
        label = f"alert: {event} ({len(chosen)})"
        if scored:
            target.scatter(xs, [a.score for a in chosen], marker=marker, color=colour, s=size,
                           zorder=5, label=label)
        else:
            target.scatter(xs, [1.0] * len(xs), marker=marker, color=colour, s=size, zorder=5,
                           transform=target.get_xaxis_transform(), clip_on=False, label=label)


def _draw_scores(ax, scored: list[tuple]) -> None:
    ax.plot([t for t, _, _ in scored], [s for _, s, _ in scored], lw=0.8,
            color="tab:blue", label="detector score")
    with_threshold = [(t, th) for t, _, th in scored if th is not None]
    if with_threshold:
        ax.plot([t for t, _ in with_threshold], [th for _, th in with_threshold], lw=1,
                ls="--", color="black", label="threshold")
    ax.set_ylabel("score")
    ax.legend(loc="upper left", fontsize=8, ncol=5)
