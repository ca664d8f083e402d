"""`txmon notify`: Alertmanager's webhook receiver.

Prints each notification in a form an operator reads at a glance and, when
SLACK_WEBHOOK_URL is set, forwards the same text to Slack's incoming webhook. Stdlib only:
it must keep working when everything else is on fire.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
SLACK_TIMEOUT_S = 10.0


def format_notification(payload: dict) -> str:
    """One header line per notification, one line per alert: what, how bad, where to look."""
    status = str(payload.get("status", "?")).upper()
    alerts = payload.get("alerts") or []
    group = payload.get("groupLabels") or {}
    name = group.get("alertname") or (payload.get("commonLabels") or {}).get("alertname", "?")
    grouping = ", ".join(f"{k}={v}" for k, v in sorted(group.items()) if k != "alertname")
    lines = [f"[{status}] {name}: {len(alerts)} alert(s)" + (f" ({grouping})" if grouping
                                                                else "")]
    for alert in alerts:
        labels = alert.get("labels") or {}
        notes = alert.get("annotations") or {}
        extra = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())
                          if k not in ("alertname", "severity"))
        lines.append(
            f"  - {str(alert.get('status', '?')).upper()} {labels.get('severity', '?')}"
            f" {labels.get('alertname', name)}"
            + (f" [{extra}]" if extra else "")
            + f" since {alert.get('startsAt', '?')}"
        )
        if notes.get("summary"):
            lines.append(f"    {notes['summary']}")
        if notes.get("description"):
            lines.append(f"    {notes['description']}")
        if notes.get("runbook_url"):
            lines.append(f"    runbook: {notes['runbook_url']}")
    return "\n".join(lines)


def forward_to_slack(url: str, text: str, timeout: float = SLACK_TIMEOUT_S) -> None:
    body = json.dumps({"text": text}).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()


class _Handler(BaseHTTPRequestHandler):
    server: NotifyServer

    def log_message(self, fmt: str, *args) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    def _answer(self, code: int, message: str) -> None:
        body = (json.dumps({"message": message}) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(200, "ok") if self.path in ("/", "/healthz") else self._answer(404, "no")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._answer(413, f"body over {MAX_BODY_BYTES} bytes")
            return
        try:
            payload = json.loads(self.rfile.read(length) or b"null")
            if not isinstance(payload, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            self._answer(400, f"not an Alertmanager notification: {exc}")
            return
        self.server.deliver(payload)
        self._answer(200, "received")


class NotifyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, slack_url: str | None = None, out=None):
        super().__init__((host, port), _Handler)
        self.slack_url = slack_url
        self.out = out or sys.stdout
        self._lock = threading.Lock()

    def deliver(self, payload: dict) -> None:
        text = format_notification(payload)
        with self._lock:
            print(text, file=self.out, flush=True)
        if self.slack_url:
            try:
                forward_to_slack(self.slack_url, text)
            except (urllib.error.URLError, OSError) as exc:
                # Alertmanager has done its part; a retry from it would duplicate the
                # printed notification. Say it loudly instead.
                log.error("forwarding to Slack failed: %s", exc)


def serve(host: str, port: int, slack_url: str | None) -> int:
    import signal

    from txmon.errors import UserError

    try:
        server = NotifyServer(host, port, slack_url)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from None

    def _stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    print(f"txmon notify: listening on http://{host}:{port}/"
          + (" (forwarding to Slack)" if slack_url else ""), flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0
