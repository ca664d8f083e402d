"""`txmon notify` as Alertmanager's webhook receiver, over a raw socket: only a well-framed
body of Alertmanager's shape is printed; anything else gets a 4xx naming why, never a
dropped connection, a traceback or a stuck thread."""

from __future__ import annotations

import copy
import io
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from exporter.notify import MAX_BODY_BYTES, NotifyServer, format_notification

READ_TIMEOUT_S = 0.5

# As Alertmanager 0.27 posts it, with the fields format_notification does not read.
PAYLOAD = {
    "receiver": "txmon-notify", "status": "firing", "version": "4",
    "groupKey": '{}/{severity="critical"}:{alertname="TransactionAnomaly", incident_id="r1"}',
    "truncatedAlerts": 0, "externalURL": "http://127.0.0.1:9093",
    "groupLabels": {"alertname": "TransactionAnomaly", "incident_id": "r1"},
    "commonLabels": {"alertname": "TransactionAnomaly", "severity": "critical"},
    "commonAnnotations": {"summary": "reversed 122/min against ~2 expected"},
    "alerts": [{
        "status": "firing", "startsAt": "2026-03-02T14:34:10.123Z",
        "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "0a1b2c3d4e5f6a7b",
        "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=x",
        "labels": {"alertname": "TransactionAnomaly", "severity": "critical",
                   "group": "reversed", "incident_id": "r1", "monitor": "txmon-local"},
        "annotations": {"summary": "reversed 122/min against ~2 expected",
                        "runbook_url": "docs/runbook.md#transactionanomaly"},
    }],
}


@pytest.fixture
def server() -> Iterator[NotifyServer]:
    """Listening once constructed (bind and listen happen in __init__): a connection made
    before serve_forever's first poll waits in the backlog, so no readiness sleep."""
    srv = NotifyServer("127.0.0.1", 0, out=io.StringIO(), read_timeout=READ_TIMEOUT_S)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def exchange(srv: NotifyServer, raw: bytes) -> tuple[int, str]:
    """Send `raw` as is and read the answer to EOF: (status, its message)."""
    with socket.create_connection(srv.server_address, timeout=5) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    assert response, "connection closed without an answer"
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["message"]


def post(srv: NotifyServer, body: bytes, headers: str | None = None) -> tuple[int, str]:
    if headers is None:
        headers = f"Content-Length: {len(body)}\r\n"
    return exchange(srv, b"POST / HTTP/1.1\r\nHost: notify\r\n"
                    + headers.encode() + b"\r\n" + body)


def printed(srv: NotifyServer) -> str:
    return srv.out.getvalue()


def test_alertmanager_payload_is_printed(server, capsys):
    for payload in (PAYLOAD, {**PAYLOAD, "status": "resolved"}):
        assert post(server, json.dumps(payload).encode()) == (200, "received")
    assert printed(server) == "".join(
        format_notification(p) + "\n" for p in (PAYLOAD, {**PAYLOAD, "status": "resolved"}))
    assert "Traceback" not in capsys.readouterr().err


def test_missing_content_length_is_411(server):
    assert post(server, b"", headers="") == (411, "Content-Length required")
    assert printed(server) == ""


@pytest.mark.parametrize("value", ["-1", "-100", "abc", "1e3", "0x10", "+5", "", "5, 5"])
def test_malformed_content_length_is_400(server, capsys, value):
    """A negative length used to read to EOF past the size limit and deliver; a
    non-numeric one raised out of the handler and dropped the connection."""
    status, message = post(server, json.dumps(PAYLOAD).encode(),
                           headers=f"Content-Length: {value}\r\n")
    assert status == 400 and "Content-Length" in message
    assert printed(server) == ""
    assert "Traceback" not in capsys.readouterr().err


def test_conflicting_content_lengths_are_400(server):
    body = json.dumps(PAYLOAD).encode()
    status, message = post(server, body, headers=f"Content-Length: {len(body)}\r\n"
                                                 "Content-Length: 2\r\n")
    assert status == 400 and "conflicting" in message
    assert printed(server) == ""


def test_over_the_limit_is_413_before_reading(server):
    status, _ = post(server, b"", headers=f"Content-Length: {MAX_BODY_BYTES + 1}\r\n")
    assert status == 413
    assert printed(server) == ""


def test_only_the_declared_length_is_read(server):
    """Bytes past Content-Length are not part of the body: a valid notification followed
    by junk is the valid notification."""
    body = json.dumps(PAYLOAD).encode()
    status, _ = post(server, body + b"trailing junk",
                     headers=f"Content-Length: {len(body)}\r\n")
    assert status == 200
    assert printed(server) == format_notification(PAYLOAD) + "\n"


def test_stalled_body_times_out_with_408(server, capsys):
    """A sender that declares a body and stops must not hold a thread for ever."""
    with socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: notify\r\nContent-Length: 100\r\n\r\n{")
        answer = sock.recv(65536)
    assert answer.split()[1] == b"408"
    assert printed(server) == ""
    assert "Traceback" not in capsys.readouterr().err
    assert post(server, json.dumps(PAYLOAD).encode())[0] == 200


def test_silent_connection_is_closed(server):
    with socket.create_connection(server.server_address, timeout=5) as sock:
        assert sock.recv(65536) == b""


def test_body_shorter_than_declared_is_400(server):
    with socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: notify\r\nContent-Length: 100\r\n\r\n{}")
        sock.shutdown(socket.SHUT_WR)
        answer = sock.recv(65536)
    assert answer.split()[1] == b"400"
    assert printed(server) == ""


@pytest.mark.parametrize("body", [
    b"not json", b"\xff\xfe{}", json.dumps(PAYLOAD).encode("utf-16"), b"[" * 100_000, b"",
    b"[1, 2]", b'"firing"', b"null", b"4",
], ids=["text", "bad-utf8", "utf16", "deep", "empty", "list", "string", "null", "number"])
def test_not_json_object_is_400(server, capsys, body):
    status, message = post(server, body)
    assert status == 400 and message.startswith("not an Alertmanager notification")
    assert printed(server) == ""
    assert "Traceback" not in capsys.readouterr().err


def _broken(path: str, value: object) -> dict:
    """PAYLOAD with the part at dotted `path` set to `value` (deleted when ...)."""
    payload = copy.deepcopy(PAYLOAD)
    *parents, last = path.split(".")
    target = payload
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is ...:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return payload


SHAPES = [
    ("version", ..., "version"),
    ("version", "3", "version"),
    ("status", "pending", "status"),
    ("alerts", ..., "alerts"),
    ("alerts", {"0": {}}, "alerts"),
    ("alerts", [], "alerts"),
    ("alerts.0", "firing", "alerts[0] is not an object"),
    ("alerts.0.labels", ["alertname"], "alerts[0].labels"),
    ("alerts.0.labels", ..., "alerts[0].labels"),
    ("alerts.0.labels.severity", {"level": 1}, "alerts[0].labels"),
    ("alerts.0.annotations", "x", "alerts[0].annotations"),
    ("alerts.0.status", None, "alerts[0].status"),
    ("alerts.0.startsAt", 1772462050, "alerts[0].startsAt"),
    ("groupLabels", None, "groupLabels"),
    ("commonLabels", [], "commonLabels"),
]


@pytest.mark.parametrize(("path", "value", "reason"), SHAPES,
                         ids=[f"{path}={value!r}" for path, value, _ in SHAPES])
def test_wrong_shape_is_400_with_reason(server, capsys, path, value, reason):
    """Used to raise AttributeError in format_notification (dropped connection) or print
    a page made of reprs."""
    status, message = post(server, json.dumps(_broken(path, value)).encode())
    assert status == 400 and reason in message, message
    assert printed(server) == ""
    assert "Traceback" not in capsys.readouterr().err
