"""Fetching Kafka's jars with Maven into a cache outside the repo.

A marker file written after a complete download makes every later run a pure cache hit:
no mvn process, no network. A lock keeps two concurrent fetches (two test sessions, a
demo and a test) from writing the same directory.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from devstack.kafka import LOG4J_VERSION, cache_dir, kafka_version
from txmon.errors import UserError

MARKER = ".complete"
# The jars without which the broker cannot start; checked before trusting the marker.
REQUIRED_PREFIXES = ("kafka_2.13-", "kafka-clients-", "log4j-core-", "log4j-slf4j-impl-")
MVN_TIMEOUT_S = 900

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchResult:
    version: str
    libs: Path
    from_cache: bool
    seconds: float
    jars: int


def kafka_home(version: str | None = None, cache: Path | None = None) -> Path:
    version = version or kafka_version()
    return (cache or cache_dir()) / f"kafka-{version}"


def require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise UserError(f"`{name}` not found on PATH: {hint}")
    return path


def java_executable() -> str:
    """java from JAVA_HOME when set, else from PATH (as Kafka's own scripts do)."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    return require_tool("java", "install a JDK 17+ (e.g. apt-get install openjdk-17-jdk-headless)")


def cached(version: str | None = None, cache: Path | None = None) -> Path | None:
    """The libs directory if a complete fetch is cached, else None."""
    home = kafka_home(version, cache)
    libs = home / "libs"
    if not (home / MARKER).is_file() or not libs.is_dir():
        return None
    names = [p.name for p in libs.glob("*.jar")]
    if not all(any(n.startswith(prefix) for n in names) for prefix in REQUIRED_PREFIXES):
        return None
    return libs


def render_pom(version: str) -> str:
    template = resources.files("devstack.kafka").joinpath("pom.xml").read_text()
    return template.replace("@KAFKA_VERSION@", version).replace("@LOG4J_VERSION@", LOG4J_VERSION)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\[[0-9;]*m")


def _mvn_error(output: str) -> str:
    """Maven's first [ERROR] line, without colour codes or its boilerplate."""
    output = _ANSI.sub("", output)
    lines = [ln.strip() for ln in output.splitlines() if "[ERROR]" in ln and ln.strip()]
    msg = lines[0].replace("[ERROR]", "").strip() if lines else (output.strip()[-300:] or "?")
    msg = re.sub(r"^Failed to execute goal on project [^:]+: ", "", msg)
    msg = msg.split(" during a previous attempt")[0].split(" -> [Help")[0]
    return msg[:400]


def fetch(version: str | None = None, cache: Path | None = None) -> FetchResult:
    """Make Kafka `version`'s runtime jars available locally and return where they are."""
    version = version or kafka_version()
    started = time.monotonic()
    libs = cached(version, cache)
    if libs is not None:
        return FetchResult(version, libs, True, time.monotonic() - started,
                           len(list(libs.glob("*.jar"))))
    home = kafka_home(version, cache)
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f"kafka-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        libs = cached(version, cache)  # another process may have finished meanwhile
        if libs is not None:
            return FetchResult(version, libs, True, time.monotonic() - started,
                               len(list(libs.glob("*.jar"))))
        java_executable()
        mvn = require_tool("mvn", "install Apache Maven (e.g. apt-get install maven)")
        home.mkdir(parents=True, exist_ok=True)
        (home / "pom.xml").write_text(render_pom(version))
        staging = home / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        log.info("fetching Kafka %s and its dependencies with mvn into %s (first run only; "
                 "about 30 s)", version, home)
        cmd = [
            # -U: retry artifacts a previous failed attempt marked missing in ~/.m2.
            mvn, "-q", "-B", "-U", "-Dstyle.color=never", "-f", str(home / "pom.xml"),
            "dependency:copy-dependencies", "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=MVN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise UserError(
                f"downloading Kafka {version} with mvn timed out after {MVN_TIMEOUT_S}s"
            ) from None
        if proc.returncode != 0:
            reason = _mvn_error(proc.stdout + proc.stderr)
            raise UserError(f"downloading Kafka {version} with mvn failed: {reason}")
        final = home / "libs"
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        (home / MARKER).write_text(f"kafka {version}\n")
        libs = cached(version, cache)
        if libs is None:
            raise UserError(f"mvn finished but Kafka {version}'s jars are incomplete in {final}")
        return FetchResult(version, libs, False, time.monotonic() - started,
                           len(list(libs.glob("*.jar"))))
