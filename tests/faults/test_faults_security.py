"""Issue 8, item 4 and issue 16: `txmon kafka up --secure` with TLS files (SASL_SSL:
TLS + SCRAM-SHA-512, and ACLs) and every service connecting with credentials and the CA
from the environment; clients without credentials, with a wrong password, beyond their
ACLs, without TLS, or trusting another CA are refused. The API binds to loopback."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from confluent_kafka import KafkaError, Producer
from support.faults import pipeline_env, run_topics, slug
from support.processor import TXMON, Worker, processor_env, read_windows, unique_by_id
from support.reliability import record
from support.tls import make_ca, make_server_cert

from devstack.kafka import secure
from devstack.processes import free_ports
from txmon.contracts import STATUSES
from txmon.kafka import probe_logger
from txmon.kafka.admin import ensure_topics, pipeline_topics
from txmon.settings import KafkaSettings

pytestmark = [pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
DAY = "2026-03-02"
MINUTES = 20


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """`txmon kafka up --secure` with the operator's TLS files, as a user runs it; its
    printed exports, then down."""
    base = tmp_path_factory.mktemp("secure")
    data = base / "kafka"
    certs = make_server_cert(base / "certs")
    port, controller = free_ports(2)
    args = ["--data-dir", str(data), "--port", str(port), "--controller-port", str(controller)]
    env = dict(os.environ, TXMON_KAFKA_HEAP=os.environ.get("TXMON_TEST_KAFKA_HEAP", "384m"))
    for k in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME",
              "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CAFILE"):
        env.pop(k, None)
    up = subprocess.run([TXMON, "kafka", "up", "--secure", *certs.flags(), "--timeout", "180",
                         *args], env=env, capture_output=True, text=True, timeout=240)
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        exports = dict(re.findall(r"^export (\w+)=(\S+)$", up.stdout, re.M))
        yield dict(data=data, args=args, env=env, exports=exports, stdout=up.stdout, base=base)
    finally:
        subprocess.run([TXMON, "kafka", "down", *args], env=env, capture_output=True,
                       timeout=60)


def settings_for(exports: dict[str, str], **change) -> KafkaSettings:
    s = KafkaSettings(bootstrap=exports["KAFKA_BOOTSTRAP_SERVERS"],
                      security_protocol=exports["KAFKA_SECURITY_PROTOCOL"],
                      sasl_mechanism=exports["KAFKA_SASL_MECHANISM"],
                      sasl_username=exports["KAFKA_SASL_USERNAME"],
                      sasl_password=exports["KAFKA_SASL_PASSWORD"],
                      ssl_cafile=exports.get("KAFKA_SSL_CAFILE"))
    return s.model_copy(update=change)


def try_produce(settings: KafkaSettings, topic: str, messages: list[str] | None = None,
                stop_on: str | None = None) -> tuple[bool, list[str]]:
    """(delivered?, the client's error names): one record, a short delivery timeout, or
    until the error named `stop_on`; the errors' texts go to `messages`."""
    errors: list[str] = []
    delivered: list[bool] = []
    texts = messages if messages is not None else []

    def on_error(e: KafkaError) -> None:
        errors.append(e.name())
        texts.append(e.str())

    producer = Producer(settings.confluent(**{
        "message.timeout.ms": 8000, "error_cb": on_error, "logger": probe_logger()}))
    producer.produce(topic, b'{"probe": 1}',
                     on_delivery=lambda err, msg: (delivered.append(err is None),
                                                   err and errors.append(err.name())))
    deadline = time.monotonic() + 15
    while producer.flush(0.2) and time.monotonic() < deadline:
        if stop_on in errors:
            break
    return bool(delivered and delivered[0]), errors


def per_minute_csv(path: Path) -> dict[str, int]:
    """A small per-minute file (timestamp,status,count): its totals by status."""
    totals = dict.fromkeys(STATUSES, 0)
    lines = ["timestamp,status,count"]
    for m in range(MINUTES):
        for i, status in enumerate(STATUSES):
            n = (m * 7 + i * 3) % 11 + (40 if status == "approved" else 0)
            totals[status] += n
            lines.append(f"{DAY}T12:{m:02d}:00Z,{status},{n}")
    path.write_text("\n".join(lines) + "\n")
    return totals


def test_credentials_are_generated_private_and_printed(broker):
    creds = secure.load_credentials(broker["data"])
    assert set(creds) == set(secure.USERS) and len(set(creds.values())) == 3
    mode = stat.S_IMODE(os.stat(secure.credentials_path(broker["data"])).st_mode)
    assert mode == 0o600, oct(mode)
    assert stat.S_IMODE(os.stat(broker["data"]).st_mode) == 0o700
    ex = broker["exports"]
    assert ex["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert ex["KAFKA_SSL_CAFILE"] == str(broker["data"] / "tls" / "ca.pem")
    for name in ("ca.pem", "keystore.pem"):
        path = broker["data"] / "tls" / name
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert ex["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert ex["KAFKA_SASL_USERNAME"] == "txmon"
    assert ex["KAFKA_SASL_PASSWORD"] == creds["txmon"]
    # `status` speaks SASL_SSL to it too (it reads the data dir's credentials and CA).
    st = subprocess.run([TXMON, "kafka", "status", *broker["args"]], env=broker["env"],
                        capture_output=True, text=True, timeout=60)
    assert st.returncode == 0 and st.stdout.startswith("up:"), st.stdout
    # Nothing of it in the repository.
    tracked = subprocess.run(["git", "grep", "-l", "-F", creds["admin"]], cwd=ROOT,
                             capture_output=True, text=True)
    assert tracked.stdout == ""


def test_pipeline_runs_with_credentials_from_the_environment_and_strangers_are_refused(
        broker, tmp_path):
    started = time.monotonic()
    ex = broker["exports"]
    service = settings_for(ex)
    names = run_topics("t-secure")
    ensure_topics(service, pipeline_topics(names))
    creds = secure.load_credentials(broker["data"])
    secure.apply_acls(ex["KAFKA_BOOTSTRAP_SERVERS"], secure.load(broker["data"]),
                      [names.window_counts, names.alerts])
    env = pipeline_env(service, names, **ex)
    csv = tmp_path / "minutes.csv"
    totals = per_minute_csv(csv)

    # Producer (replay), processor (confluent-kafka stage + Faust merge), API, exporter.
    worker = Worker(processor_env(env, TXMON_APP_ID=slug("secure")), tmp_path).start()
    report = tmp_path / "replay.json"
    rep = subprocess.run([TXMON, "replay", str(csv), "--no-progress", "--report", str(report)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert rep.returncode == 0, rep.stderr
    assert json.loads(report.read_text())["totals"] == {k: v for k, v in totals.items() if v}
    api_port, exporter_port = free_ports(2)
    api_log = open(tmp_path / "api.log", "wb")  # noqa: SIM115 - closed below
    api = subprocess.Popen([TXMON, "api", "--port", str(api_port)], env=env, stdout=api_log,
                           stderr=subprocess.STDOUT)
    exporter = subprocess.Popen(
        [TXMON, "export", "--port", str(exporter_port), "--group", slug("exp"),
         "--processor-group", worker.env["TXMON_APP_ID"]],
        env=env, stdout=open(tmp_path / "exporter.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    reader = settings_for(ex, sasl_username="reader", sasl_password=creds["reader"])
    try:
        # The API: loopback only by default, and it publishes through SASL.
        client = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30)
        _wait_http(client, "/healthz", api)
        assert listening_addresses(api_port) == {"127.0.0.1"}
        r = client.post("/check", json={"status": "approved",
                                        "timestamp": f"{DAY}T12:{MINUTES - 1:02d}:30"})
        assert r.status_code == 200, r.text
        totals["approved"] += 1
        # Close the last minute, then read the windows as the read-only user.
        rep = subprocess.run([TXMON, "replay", str(_closing_csv(tmp_path)), "--no-progress"],
                             env=env, capture_output=True, text=True, timeout=120)
        assert rep.returncode == 0, rep.stderr
        last = f"{DAY}T12:{MINUTES - 1:02d}Z"
        deadline = time.monotonic() + 180
        while True:
            windows = unique_by_id(read_windows(reader, names.window_counts), "window")
            if last in windows:
                break
            assert worker.alive(), worker.tail()
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(1)
        got = {s: sum(w.counts[s] for i, w in windows.items() if i <= last) for s in STATUSES}
        assert got == totals
        metrics = _wait_http(httpx.Client(base_url=f"http://127.0.0.1:{exporter_port}"),
                             "/metrics", exporter, contains="txmon_window_last_emitted")
        assert re.search(r"^txmon_window_last_emitted_timestamp_seconds [1-9]", metrics, re.M)
    finally:
        for p in (api, exporter):
            p.terminate()
            p.wait(20)
        api_log.close()
        worker.stop()

    # Refusals: no credentials, a wrong password, a user beyond its ACLs, no TLS, and
    # TLS trusting another CA; the right client still gets through.
    anonymous = KafkaSettings(bootstrap=ex["KAFKA_BOOTSTRAP_SERVERS"])
    ok, errors = try_produce(anonymous, names.transactions)
    assert not ok, "a client without credentials was let in"
    cleartext = settings_for(ex, security_protocol="SASL_PLAINTEXT", ssl_cafile=None)
    ok, cleartext_errors = try_produce(cleartext, names.transactions,
                                       stop_on="_ALL_BROKERS_DOWN")
    assert not ok, "a SASL client without TLS was let in"
    other_ca, _ = make_ca(broker["base"] / "other-ca", "other-ca")
    texts: list[str] = []
    ok, stranger_errors = try_produce(settings_for(ex, ssl_cafile=str(other_ca)),
                                      names.transactions, texts, stop_on="_SSL")
    assert not ok and "_SSL" in stranger_errors, stranger_errors
    assert any("certificate verify failed" in t for t in texts), texts
    assert try_produce(service, names.transactions)[0]
    wrong = settings_for(ex, sasl_password=ex["KAFKA_SASL_PASSWORD"] + "x")
    ok, wrong_errors = try_produce(wrong, names.transactions)
    assert not ok and "_AUTHENTICATION" in wrong_errors, wrong_errors
    ok, reader_errors = try_produce(reader, names.transactions)
    assert not ok and "TOPIC_AUTHORIZATION_FAILED" in reader_errors, reader_errors
    # The reader cannot read what it was not granted either.
    with pytest.raises(Exception, match="(?i)authoriz"):
        _read_strict(reader, names.transactions)
    record("test_faults_security", order=5, fault="SASL_SSL (TLS + SCRAM-SHA-512) + ACLs broker",
           trials=1, records=sum(totals.values()), windows=MINUTES, lost=0, double_counted=0,
           refused=6,
           outcome="replay, processor, API, exporter through SASL_SSL; refused: no "
                   "credentials, wrong password, reader writing, reader reading an "
                   "ungranted topic, SASL without TLS, TLS trusting another CA",
           seconds=round(time.monotonic() - started),
           notes=f"no credentials -> {sorted(set(errors))[:3]}; wrong password -> "
                 f"{sorted(set(wrong_errors))[:3]}; reader producing -> "
                 f"{sorted(set(reader_errors))[:3]}; no TLS -> "
                 f"{sorted(set(cleartext_errors))[:3]}; another CA -> "
                 f"{sorted(set(stranger_errors))[:3]}; API listening on "
                 f"{sorted(listening_addresses_cache)}")


listening_addresses_cache: set[str] = set()


def _closing_csv(tmp_path: Path) -> Path:
    """One transaction per partition key well after the data: its watermark closes the
    last minute everywhere (the idle timeout would too, only later)."""
    path = tmp_path / "closing.csv"
    rows = ["timestamp,status"] + [f"{DAY}T12:{MINUTES + 2:02d}:{s:02d}Z,approved"
                                   for s in range(30)]
    path.write_text("\n".join(rows) + "\n")
    return path


def _read_strict(settings: KafkaSettings, topic: str):
    from confluent_kafka import Consumer, KafkaException

    errors = []
    consumer = Consumer(settings.confluent(**{
        "group.id": slug("denied"), "auto.offset.reset": "earliest", "logger": probe_logger(),
        "error_cb": errors.append}))
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error():
                raise KafkaException(msg.error())
            if errors:
                raise KafkaException(errors[0])
            if msg is not None:
                return msg
        raise AssertionError("neither a record nor an error")
    finally:
        consumer.close()


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on `port` (from /proc/net/tcp{,6})."""
    found = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:
                if len(addr) == 8:
                    found.add(".".join(str(b) for b in reversed(bytes.fromhex(addr))))
                else:
                    found.add(addr)
    listening_addresses_cache.update(found)
    return found


def _wait_http(client: httpx.Client, path: str, proc: subprocess.Popen, contains: str = "",
               timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = client.get(path)
            if r.status_code == 200 and contains in r.text:
                return r.text
        except httpx.TransportError:
            pass
        assert proc.poll() is None, f"{proc.args} exited {proc.returncode}"
        assert time.monotonic() < deadline, f"{path} not ready"
        time.sleep(0.5)


def test_no_kafka_error_name_typos():
    # The names the assertions above look for exist in this librdkafka.
    assert KafkaError._AUTHENTICATION and KafkaError.TOPIC_AUTHORIZATION_FAILED
