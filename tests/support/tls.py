"""Throwaway certificates for the TLS tests, made with the openssl command line (the
`cryptography` package is not installed): a CA, and a server certificate it signs for
127.0.0.1/localhost, as an operator would hand them to `txmon kafka up --tls-*`. They
live in the test's temporary directory only, never in the repository."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SAN = "subjectAltName=IP:127.0.0.1,DNS:localhost"


@dataclass(frozen=True)
class ServerCert:
    cert: Path
    key: Path
    ca: Path

    def flags(self) -> list[str]:
        return ["--tls-cert", str(self.cert), "--tls-key", str(self.key),
                "--tls-ca", str(self.ca)]


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl") or "/usr/bin/openssl"
    proc = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 0, f"openssl {' '.join(args)}: {proc.stderr}"


def make_ca(directory: Path, name: str = "ca") -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-noenc", "-days", "2",
             "-subj", f"/CN=txmon test {name}", "-keyout", str(key), "-out", str(cert),
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    return cert, key


def make_server_cert(directory: Path, ca: tuple[Path, Path] | None = None) -> ServerCert:
    """A server certificate for 127.0.0.1 and localhost, signed by `ca` (a new one by
    default); its key is unencrypted PKCS#8, as `openssl req -noenc` writes it."""
    ca_cert, ca_key = ca or make_ca(directory)
    key, csr, cert = directory / "server-key.pem", directory / "server.csr", \
        directory / "server.pem"
    _openssl("req", "-newkey", "rsa:2048", "-noenc", "-subj", "/CN=localhost",
             "-keyout", str(key), "-out", str(csr), cwd=directory)
    ext = directory / "server.ext"
    ext.write_text(f"{SAN}\nextendedKeyUsage=serverAuth,clientAuth\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert),
             cwd=directory)
    return ServerCert(cert, key, ca_cert)
