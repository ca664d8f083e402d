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
#: Longest wait for any one read from a client: a stalled sender must not hold a thread.
READ_TIMEOUT_S = 10.0
STATUSES = ("firing", "resolved")


def parse_notification(body: bytes) -> dict:
    """The notification in `body`, or ValueError saying why it is not one: only what
    Alertmanager sends is printed, never garbage or a half-formatted page."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not UTF-8 JSON: {exc}") from None
    check_notification(payload)
    return payload


def check_notification(payload: object) -> None:
    """ValueError naming the first part of Alertmanager's webhook payload (version 4) that
    format_notification reads and `payload` gets wrong; fields it does not read may be
    anything, so what a newer Alertmanager adds still passes."""
    if not isinstance(payload, dict):
        raise ValueError("not a JSON object")
    if payload.get("version") != "4":
        raise ValueError(f"version is {payload.get('version')!r}, not '4'")
    _check_status(payload, "")
    _check_strings(payload, "groupLabels", "")
    _check_strings(payload, "commonLabels", "")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise ValueError("alerts is not a non-empty list")
    for i, alert in enumerate(alerts):
        where = f"alerts[{i}]"
        if not isinstance(alert, dict):
            raise ValueError(f"{where} is not an object")
        _check_status(alert, f"{where}.")
        _check_strings(alert, "labels", f"{where}.")
        _check_strings(alert, "annotations", f"{where}.")
        if not isinstance(alert.get("startsAt"), str):
            raise ValueError(f"{where}.startsAt is not a string")


def _check_status(obj: dict, where: str) -> None:
    if obj.get("status") not in STATUSES:
        raise ValueError(f"{where}status is {obj.get('status')!r}, not one of {STATUSES}")


def _check_strings(obj: dict, key: str, where: str) -> None:
    value = obj.get(key)
    if not isinstance(value, dict) or not all(
            isinstance(v, str) for v in value.values()):
        raise ValueError(f"{where}{key} is not an object of strings")


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


class _Refused(Exception):
    """A request answered with `code` and nothing delivered."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class _Handler(BaseHTTPRequestHandler):
    server: NotifyServer

    def setup(self) -> None:
        self.timeout = self.server.read_timeout
        super().setup()

    def log_message(self, fmt: str, *args) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    def _answer(self, code: int, message: str) -> None:
        body = (json.dumps({"message": message}) + "\n").encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError as exc:
            log.debug("%s gone before its %d answer: %s", self.address_string(), code, exc)
            self.close_connection = True

    def do_GET(self) -> None:
        self._answer(200, "ok") if self.path in ("/", "/healthz") else self._answer(404, "no")

    def do_POST(self) -> None:
        try:
            payload = parse_notification(self._read_body())
        except _Refused as exc:
            self.close_connection = True  # an unread rest of the body is no next request
            self._answer(exc.code, str(exc))
            return
        except ValueError as exc:
            self._answer(400, f"not an Alertmanager notification: {exc}")
            return
        except OSError as exc:
            log.info("%s gone mid-body: %s", self.address_string(), exc)
            self.close_connection = True
            return
        self.server.deliver(payload)
        self._answer(200, "received")

    def _read_body(self) -> bytes:
        """Exactly the declared body, never more than MAX_BODY_BYTES."""
        length = self._declared_length()
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise _Refused(408, f"body not received within {self.timeout:g} s") from None
        if len(body) < length:
            raise _Refused(400, f"body ended after {len(body)} of {length} bytes")
        return body

    def _declared_length(self) -> int:
        values = self.headers.get_all("Content-Length")
        if not values:
            raise _Refused(411, "Content-Length required")
        if len(set(values)) > 1:
            raise _Refused(400, f"conflicting Content-Length headers: {values}")
        text = values[0].strip()
        if not (text.isascii() and text.isdigit()):
            raise _Refused(400, f"Content-Length {values[0]!r} is not a non-negative integer")
        if int(text) > MAX_BODY_BYTES:
            raise _Refused(413, f"body over {MAX_BODY_BYTES} bytes")
        return int(text)


class NotifyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, slack_url: str | None = None, out=None,
                 read_timeout: float = READ_TIMEOUT_S):
        super().__init__((host, port), _Handler)
        self.slack_url = slack_url
        self.read_timeout = read_timeout
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
