"""The operator's TLS files for `txmon kafka up --secure --tls-cert --tls-key --tls-ca`.

The broker reads PEM directly (`ssl.keystore.type=PEM`), so no JKS/PKCS#12 store and no
store password exist to be kept somewhere. Kafka's PEM keystore takes the private key
as unencrypted PKCS#8 when `ssl.key.password` is unset; any other unencrypted key
(PKCS#1 `RSA PRIVATE KEY`, SEC1 `EC PRIVATE KEY`) is converted with `openssl pkey`. The
files are copied into `<data dir>/tls` (0600, the dir 0700) rather than referenced: the
broker must not break when the operator moves or rotates them, and the data dir then
says by itself that its broker speaks TLS (`installed`).

Every listener of a TLS broker is TLS, the KRaft controller's too: it costs nothing more
than the same keystore, and on a cluster the quorum's traffic leaves the node. Brokers
and controllers verify each other's certificate against the CA and the host name, so the
certificate must name 127.0.0.1 (subjectAltName IP:127.0.0.1), where every listener binds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from txmon.errors import UserError

TLS_DIR = "tls"
KEYSTORE = "keystore.pem"  # the PKCS#8 key, then the certificate chain
TRUSTSTORE = "ca.pem"
_PKCS8 = "-----BEGIN PRIVATE KEY-----"
_CERT = "-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class TlsFiles:
    """The operator's PEM files: the broker's certificate (chain), its key, the CA."""

    cert: Path
    key: Path
    ca: Path


def requested(cert: Path | None, key: Path | None, ca: Path | None,
              secure: bool) -> TlsFiles | None:
    """The three files if given (all of them, existing, with --secure), else None."""
    given = {"--tls-cert": cert, "--tls-key": key, "--tls-ca": ca}
    if not any(given.values()):
        return None
    if not secure:
        raise UserError("--tls-cert/--tls-key/--tls-ca (TXMON_KAFKA_TLS_*) need --secure: "
                        "TLS carries SASL here")
    missing = [flag for flag, path in given.items() if not path]
    if missing:
        raise UserError(f"TLS needs all of --tls-cert, --tls-key and --tls-ca; "
                        f"missing {', '.join(missing)}")
    absent = [f"{flag} {path}" for flag, path in given.items() if not Path(path).is_file()]
    if absent:
        raise UserError(f"no such file: {', '.join(absent)}")
    return TlsFiles(Path(cert), Path(key), Path(ca))


def tls_dir(data_dir: Path) -> Path:
    return Path(data_dir) / TLS_DIR


def installed(data_dir: Path) -> Path | None:
    """The data dir's TLS dir if its broker speaks TLS, else None."""
    path = tls_dir(data_dir)
    return path if (path / KEYSTORE).is_file() and (path / TRUSTSTORE).is_file() else None


def _pem(path: Path, marker: str, what: str) -> str:
    text = path.read_text(errors="replace")
    if marker not in text:
        raise UserError(f"{path} is not a PEM {what} (no {marker.strip('-')} block)")
    return text if text.endswith("\n") else text + "\n"


def _pkcs8(key: Path) -> str:
    """The key as unencrypted PKCS#8 PEM."""
    text = key.read_text(errors="replace")
    if _PKCS8 in text:
        return text if text.endswith("\n") else text + "\n"
    if "ENCRYPTED" in text or "PRIVATE KEY" not in text:
        raise UserError(f"{key} is not an unencrypted PEM private key")
    openssl = shutil.which("openssl")
    if openssl is None:
        raise UserError(f"{key} is not PKCS#8 and openssl is not installed to convert it: "
                        f"openssl pkey -in {key} -out key-pkcs8.pem")
    proc = subprocess.run([openssl, "pkey", "-in", str(key), "-passin", "pass:"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    if proc.returncode != 0 or _PKCS8 not in proc.stdout:
        raise UserError(f"openssl could not read the key {key}: "
                        f"{(proc.stderr.strip().splitlines() or ['?'])[0]}")
    return proc.stdout


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def read(files: TlsFiles) -> tuple[str, str]:
    """(keystore, truststore) PEM texts; refuses unusable files before anything is
    written to the data dir."""
    keystore = _pkcs8(files.key) + _pem(files.cert, _CERT, "certificate")
    return keystore, _pem(files.ca, _CERT, "CA certificate")


def write(stores: tuple[str, str], data_dir: Path) -> Path:
    """The stores into the data dir's TLS dir (0700, files 0600); that dir."""
    path = tls_dir(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    _write_private(path / KEYSTORE, stores[0])
    _write_private(path / TRUSTSTORE, stores[1])
    return path


def install(files: TlsFiles, data_dir: Path) -> Path:
    """Copy (converting the key if needed) the files into the data dir; its TLS dir."""
    return write(read(files), data_dir)


def server_properties(path: Path) -> dict[str, str]:
    """The SSL settings every SSL listener of the broker shares."""
    return {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(path / KEYSTORE),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(path / TRUSTSTORE),
        "ssl.endpoint.identification.algorithm": "https",
    }


def ca_file(path: Path) -> Path:
    """What clients trust (KAFKA_SSL_CAFILE, librdkafka's ssl.ca.location)."""
    return path / TRUSTSTORE
