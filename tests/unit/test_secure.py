"""The secure broker's pure pieces: listeners with and without TLS, what clients are
told, the TLS flags' refusals, the operator's files copied into the data dir, and the
passwords kept off command lines and in private files."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
from pathlib import Path

import pytest
from support.tls import make_server_cert

from devstack.kafka import secure, server, tls
from devstack.kafka.server import STORAGE_TOOL, LocalKafka
from txmon.errors import UserError

CREDS = {"admin": "a-pw", "txmon": "t-pw", "reader": "r-pw"}


def test_without_tls_every_listener_stays_sasl_plaintext():
    props = secure.server_properties("127.0.0.1", 9092, 9094, secure.Secured(CREDS))
    assert props["listeners"] == "SASL_PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9094"
    assert props["listener.security.protocol.map"] == \
        "CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
    assert props["inter.broker.listener.name"] == "SASL_PLAINTEXT"
    assert not any(k.startswith("ssl.") for k in props)
    env = secure.Secured(CREDS).env_exports("127.0.0.1:9092", "txmon")
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT" and "KAFKA_SSL_CAFILE" not in env


def test_with_tls_clients_brokers_and_controllers_speak_sasl_ssl(tmp_path):
    sec = secure.Secured(CREDS, tmp_path / "tls")
    props = secure.server_properties("127.0.0.1", 9092, 9094, sec)
    assert props["listeners"] == "SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9094"
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:9092"
    assert props["listener.security.protocol.map"] == "CONTROLLER:SASL_SSL,SASL_SSL:SASL_SSL"
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    assert 'username="admin" password="a-pw"' in \
        props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    assert props["ssl.keystore.type"] == props["ssl.truststore.type"] == "PEM"
    assert props["ssl.keystore.location"] == str(tmp_path / "tls" / "keystore.pem")
    assert "ssl.key.password" not in props and "ssl.keystore.password" not in props
    ca = str(tmp_path / "tls" / "ca.pem")
    assert sec.client_config("admin")["ssl.ca.location"] == ca
    env = sec.env_exports("127.0.0.1:9092,127.0.0.1:9102", "txmon")
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and env["KAFKA_SSL_CAFILE"] == ca
    assert env["KAFKA_SASL_PASSWORD"] == "t-pw"


def test_tls_flags_are_refused_without_secure_incomplete_or_missing(tmp_path):
    files = [tmp_path / n for n in ("cert.pem", "key.pem", "ca.pem")]
    for f in files:
        f.write_text("x")
    assert tls.requested(None, None, None, secure=False) is None
    with pytest.raises(UserError, match="need --secure"):
        tls.requested(*files, secure=False)
    with pytest.raises(UserError, match="missing --tls-key"):
        tls.requested(files[0], None, files[2], secure=True)
    with pytest.raises(UserError, match="no such file: --tls-ca"):
        tls.requested(files[0], files[1], tmp_path / "nope.pem", secure=True)
    assert tls.requested(*files, secure=True) == tls.TlsFiles(*files)


def test_install_copies_privately_and_converts_a_traditional_key(tmp_path):
    made = make_server_cert(tmp_path / "certs")
    rsa = tmp_path / "certs" / "rsa-key.pem"
    subprocess.run(["openssl", "pkey", "-in", str(made.key), "-traditional", "-out", str(rsa)],
                   check=True, capture_output=True)
    assert "BEGIN RSA PRIVATE KEY" in rsa.read_text()
    before = rsa.read_text()
    data = tmp_path / "data"
    path = tls.install(tls.TlsFiles(made.cert, rsa, made.ca), data)
    assert tls.installed(data) == path
    keystore = (path / tls.KEYSTORE).read_text()
    assert "BEGIN PRIVATE KEY" in keystore and "BEGIN CERTIFICATE" in keystore
    assert (path / tls.TRUSTSTORE).read_text() == made.ca.read_text()
    assert rsa.read_text() == before  # the operator's file is left alone
    for f in (path, path / tls.KEYSTORE, path / tls.TRUSTSTORE):
        assert stat.S_IMODE(os.stat(f).st_mode) == (0o700 if f.is_dir() else 0o600)


def test_an_encrypted_key_or_a_non_pem_certificate_is_refused(tmp_path):
    made = make_server_cert(tmp_path / "certs")
    locked = tmp_path / "locked.pem"
    subprocess.run(["openssl", "pkey", "-in", str(made.key), "-aes256", "-passout", "pass:pw",
                    "-out", str(locked)], check=True, capture_output=True)
    with pytest.raises(UserError, match="unencrypted"):
        tls.install(tls.TlsFiles(made.cert, locked, made.ca), tmp_path / "d1")
    with pytest.raises(UserError, match="not a PEM certificate"):
        tls.install(tls.TlsFiles(made.key, made.key, made.ca), tmp_path / "d2")


def test_a_secure_data_dir_without_tls_is_not_switched_to_tls(tmp_path):
    made = make_server_cert(tmp_path / "certs")
    data = tmp_path / "data"
    assert secure.prepare(data).tls_dir is None
    (data / "data").mkdir()
    (data / "data" / "meta.properties").write_text("formatted\n")
    with pytest.raises(UserError, match="without TLS"):
        secure.prepare(data, tls.TlsFiles(made.cert, made.key, made.ca))
    loaded = secure.load(Path(data))
    assert loaded is not None and loaded.protocol == "SASL_PLAINTEXT"


def test_unusable_tls_files_leave_a_new_data_dir_untouched(tmp_path):
    made = make_server_cert(tmp_path / "certs")
    data = tmp_path / "data"
    with pytest.raises(UserError, match="not a PEM CA certificate"):
        secure.prepare(data, tls.TlsFiles(made.cert, made.key, made.key))
    assert not data.exists()


def secure_node(tmp_path: Path) -> tuple[LocalKafka, dict[str, str]]:
    creds = {user: secrets.token_urlsafe(24) for user in secure.USERS}
    kafka = LocalKafka(tmp_path / "kafka", port=19092, controller_port=19094)
    secure.make_secure(kafka, secure.Secured(creds))
    return kafka, creds


def test_the_format_command_line_holds_no_password_only_the_private_argfile(tmp_path):
    kafka, creds = secure_node(tmp_path)
    cmd, tool = kafka.format_command("java", tmp_path / "libs")
    assert not [arg for arg in cmd for pw in creds.values() if pw in arg]
    assert cmd[-1] == f"@{kafka.format_argfile}" and STORAGE_TOOL not in cmd
    assert tool[:2] == [STORAGE_TOOL, "format"]
    for user, pw in creds.items():
        assert f"SCRAM-SHA-512=[name={user},password={pw}]" in tool


def test_the_argfile_is_0600_while_the_tool_runs_and_gone_after_success_or_failure(
        tmp_path, monkeypatch):
    kafka, creds = secure_node(tmp_path)
    seen = []

    def run(cmd, returncode, **_):
        path = Path(cmd[-1][1:])
        seen.append((stat.S_IMODE(os.stat(path).st_mode), path.read_text()))
        return subprocess.CompletedProcess(cmd, returncode, "", "Error: no")

    monkeypatch.setattr(server.subprocess, "run", lambda cmd, **kw: run(cmd, 0, **kw))
    kafka._format("java", tmp_path / "libs")
    monkeypatch.setattr(server.subprocess, "run", lambda cmd, **kw: run(cmd, 1, **kw))
    kafka.format_argfile.symlink_to(tmp_path / "planted")  # a stale or planted one
    with pytest.raises(UserError, match="Error: no"):
        kafka._format("java", tmp_path / "libs")
    assert [mode for mode, _ in seen] == [0o600, 0o600]
    assert all(pw in seen[0][1] for pw in creds.values())
    assert not kafka.format_argfile.exists() and not kafka.format_argfile.is_symlink()
    assert not (tmp_path / "planted").exists()


def test_server_properties_with_the_admin_password_stay_0600(tmp_path):
    kafka, creds = secure_node(tmp_path)
    kafka.write_config()
    assert creds[secure.ADMIN] in kafka.properties_file.read_text()
    assert stat.S_IMODE(os.stat(kafka.properties_file).st_mode) == 0o600
