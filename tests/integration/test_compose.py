"""docker-compose.yml, checked where no Docker engine runs.

The file is validated against the Compose Specification's JSON Schema
(../shared/schemas/compose-spec.json), then held to the project's rules: pinned images,
healthchecks, dependency conditions, no committed secret, host ports on loopback only,
every bind-mounted path present, every `txmon` command and flag real, every variable in
.env.example, and the monitoring configs (Prometheus targets, Alertmanager webhook,
Grafana provisioning) pointing at services and ports that exist.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
PACKAGES = ("txmon", "producer", "processor", "exporter")
LOOPBACK = "127.0.0.1"
EXEMPT_LABEL = "org.txmon.healthcheck-exempt"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|WEBHOOK|CREDENTIAL|PRIVATE|_KEY$", re.I)
VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
REFERENCE_ONLY = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-|:\?[^}]*)?\}$")


def shared_dir() -> Path:
    return Path(os.environ.get("TXMON_SHARED_DIR") or ROOT.parent / "shared")


def interpolate(value: str) -> str:
    """Compose interpolation with defaults only (no .env): what a bare `up` would see."""

    def sub(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            return f"<required {name}>"
        return ""

    return VAR_RE.sub(sub, value)


@pytest.fixture(scope="module")
def text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def compose(text) -> dict:
    return yaml.safe_load(text)  # resolves the YAML anchors and merge keys (<<)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def built(services) -> dict:
    """The services built from our Dockerfile (entrypoint `txmon`)."""
    return {name: s for name, s in services.items() if "build" in s}


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def healthcheck_enabled(service: dict) -> bool:
    hc = service.get("healthcheck")
    return bool(hc) and not hc.get("disable") and bool(hc.get("test"))


def one_shot(service: dict) -> bool:
    return str(service.get("restart", "no")) == "no"


def bind_mounts(service: dict) -> list[tuple[str, str, bool]]:
    """(host path, container path, read-only) of every bind mount."""
    out = []
    for vol in service.get("volumes", []):
        if isinstance(vol, dict):
            if vol.get("type") == "bind":
                out.append((vol["source"], vol["target"], bool(vol.get("read_only"))))
            continue
        parts = vol.split(":")
        if parts[0].startswith((".", "/", "~")):
            out.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    return out


# --- the specification ---


def test_validates_against_compose_spec(compose):
    schema_path = shared_dir() / "schemas" / "compose-spec.json"
    if not schema_path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{schema_path} missing in CI")
        pytest.skip(f"{schema_path} not found (set TXMON_SHARED_DIR)")
    schema = json.loads(schema_path.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_expected_services(services):
    expected = {"kafka", "processor", "exporter", "api", "producer", "prometheus",
                "alertmanager", "notify", "grafana"}
    assert expected <= set(services), expected - set(services)
    assert services["producer"].get("profiles") == ["demo"]
    assert services["kafka"]["image"].startswith("apache/kafka:")


# --- images ---


def image_tag(image: str) -> str | None:
    image = interpolate(image).split("@", 1)[0]
    name = image.rsplit("/", 1)[-1]
    return name.split(":", 1)[1] if ":" in name else None


def test_every_image_pinned(services):
    for name, s in services.items():
        assert "image" in s, f"{name}: no image (built services need a tagged image name too)"
        tag = image_tag(s["image"])
        assert tag and tag != "latest", f"{name}: image {s['image']!r} is not pinned"
        assert re.search(r"\d", tag), f"{name}: tag {tag!r} names no version"


def test_built_services_share_one_image(built):
    assert built, "no service is built from the Dockerfile"
    assert len({s["image"] for s in built.values()}) == 1
    for name, s in built.items():
        build = s["build"] if isinstance(s["build"], dict) else {"context": s["build"]}
        assert (ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).exists()
        assert "entrypoint" not in s, f"{name}: the image's entrypoint is `txmon`"


def test_kafka_image_matches_pinned_broker_version(services):
    """The Compose broker and `txmon kafka up` run the same Kafka release."""
    from devstack.kafka import KAFKA_VERSION

    assert image_tag(services["kafka"]["image"]) == KAFKA_VERSION


# --- the Dockerfile ---


def test_dockerfile():
    lines = [ln.strip() for ln in DOCKERFILE.read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    froms = [ln.split()[1] for ln in lines if ln.upper().startswith("FROM ")]
    assert froms and all(image_tag(f) not in (None, "latest") for f in froms), froms
    assert froms[-1].startswith("python:3.11"), froms
    users = [ln.split()[1] for ln in lines if ln.upper().startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    assert any(ln == 'ENTRYPOINT ["txmon"]' for ln in lines)
    ignored = {ln.strip().rstrip("/") for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")}
    for ln in lines:
        if ln.upper().startswith("COPY ") and "--from" not in ln:
            for src in ln.split()[1:-1]:
                assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repo"
                assert src not in ignored, f"{src} is excluded by .dockerignore"
    copied = {src.rstrip("/") for ln in lines if ln.upper().startswith("COPY ")
              for src in ln.split()[1:-1]}
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    missing = [p.rstrip("*") for p in packages if p.rstrip("*") not in copied]
    assert not missing, f"the image installs without {missing}: COPY them in the Dockerfile"


# --- healthchecks and dependencies ---


def test_healthcheck_or_documented_exemption(services):
    for name, s in services.items():
        if healthcheck_enabled(s):
            hc = s["healthcheck"]
            assert hc["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: {hc['test']}"
            assert "interval" in hc and "retries" in hc, name
            continue
        reason = (s.get("labels") or {}).get(EXEMPT_LABEL, "")
        assert len(reason) > 20, f"{name}: no healthcheck and no {EXEMPT_LABEL} label saying why"
        assert one_shot(s), f"{name}: only one-shot jobs may go without a healthcheck"


def test_depends_on_conditions(services):
    for name, s in services.items():
        deps = s.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on needs the long form with conditions"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            cond = spec.get("condition")
            assert cond, f"{name} -> {dep}: no condition"
            if cond == "service_healthy":
                assert healthcheck_enabled(services[dep]), f"{name} waits for {dep}'s health"
            if cond == "service_completed_successfully":
                assert one_shot(services[dep]), f"{name} waits for {dep} to exit"
            if not s.get("profiles"):
                assert not services[dep].get("profiles"), (
                    f"{name} (default profile) depends on {dep}, which runs only in a profile")
    needs_kafka = [n for n, s in services.items() if "KAFKA_BOOTSTRAP_SERVERS" in env_of(s)
                   and n != "train"]
    for name in needs_kafka:
        deps = services[name].get("depends_on") or {}
        assert deps.get("kafka", {}).get("condition") == "service_healthy", name


# --- secrets, variables, ports ---


def test_no_literal_secrets(services, text):
    for name, s in services.items():
        for key, value in env_of(s).items():
            if SECRET_NAME.search(key):
                assert REFERENCE_ONLY.match(value), (
                    f"{name}: {key} must come from the environment as ${{VAR}}, "
                    f"${{VAR:-}} or ${{VAR:?...}}, not {value!r}")
    for m in VAR_RE.finditer(text):
        if SECRET_NAME.search(m.group(1)) and m.group(2) in (":-", "-"):
            assert m.group(3) == "", f"{m.group(0)}: a secret gets no default value"
    assert ".env" in (ROOT / ".gitignore").read_text().split(), ".env must be git-ignored"
    tracked = subprocess.run(["git", "ls-files", ".env"], cwd=ROOT, capture_output=True,
                             text=True).stdout.strip()
    assert not tracked, ".env is committed"


def read_env_example() -> dict[str, str]:
    out = {}
    for ln in ENV_EXAMPLE.read_text().splitlines():
        if ln.strip() and not ln.lstrip().startswith("#"):
            key, _, value = ln.partition("=")
            out[key.strip()] = value.strip()
    return out


def test_env_example_covers_every_variable(text):
    used = {m.group(1) for m in VAR_RE.finditer(text)}
    listed = read_env_example()
    assert used - set(listed) == set(), f".env.example misses {sorted(used - set(listed))}"
    assert set(listed) - used == set(), f".env.example lists unused {sorted(set(listed) - used)}"
    for key, value in listed.items():
        if SECRET_NAME.search(key):
            assert value == "", f".env.example: {key} must be an empty placeholder"
    # Defaults in .env.example agree with the file's own defaults.
    for m in VAR_RE.finditer(text):
        if m.group(2) in (":-", "-") and listed.get(m.group(1)):
            assert listed[m.group(1)] == m.group(3), f"{m.group(1)}: .env.example disagrees"


def test_required_password_for_grafana(services):
    value = env_of(services["grafana"])["GF_SECURITY_ADMIN_PASSWORD"]
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", value), value


def test_host_ports_on_loopback_only(services):
    published = {}
    for name, s in services.items():
        for port in s.get("ports", []):
            if isinstance(port, dict):
                assert port.get("host_ip") == LOOPBACK, f"{name}: {port}"
                published[name] = port
                continue
            resolved = interpolate(str(port))
            assert resolved.startswith(LOOPBACK + ":"), f"{name}: {port} is not bound to loopback"
            assert resolved.count(":") == 2, f"{name}: {port} needs host_ip:host:container"
            published[name] = resolved
    # Only what a user opens: the UIs, the API and Kafka for host clients.
    assert set(published) <= {"kafka", "api", "prometheus", "alertmanager", "grafana"}, published
    for internal in ("processor", "exporter", "notify"):
        assert internal not in published


def test_bind_mounts_exist(services):
    mounts = [(n, *m) for n, s in services.items() for m in bind_mounts(s)]
    assert mounts, "no bind mounts found"
    for name, host, _target, read_only in mounts:
        path = (ROOT / host).resolve()
        assert path.exists(), f"{name}: {host} does not exist in the repo"
        assert path.is_relative_to(ROOT), f"{name}: {host} is outside the repo"
        assert read_only, f"{name}: configuration mount {host} should be :ro"


def test_named_volumes_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, s in services.items():
        for vol in s.get("volumes", []):
            source = vol.get("source") if isinstance(vol, dict) else vol.split(":")[0]
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name}: volume {source} not declared"


# --- the txmon commands ---


def txmon_help(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "txmon.cli", *args, "--help"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def command_of(service: dict) -> list[str]:
    cmd = service.get("command")
    return [interpolate(c) for c in (cmd.split() if isinstance(cmd, str) else cmd)]


def built_service_names() -> list[str]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return sorted(n for n, s in data.items() if "build" in s)


@pytest.mark.parametrize("name", built_service_names())
def test_txmon_command_exists(name, built):
    cmd = command_of(built[name])
    assert cmd and not cmd[0].startswith("-"), f"{name}: command {cmd} names no subcommand"
    top = txmon_help()
    assert top.returncode == 0, top.stderr
    listed = re.findall(r"^\s{4}(\S+)\s", top.stdout, re.M)
    assert cmd[0] in listed, f"{name}: `txmon {cmd[0]}` is not a txmon command ({listed})"
    result = txmon_help(cmd[0])
    assert result.returncode == 0, result.stderr
    flags = [c.split("=", 1)[0] for c in cmd[1:] if c.startswith("--")]
    for flag in flags:
        assert re.search(rf"(^|[\s,\[]){re.escape(flag)}\b", result.stdout), (
            f"{name}: `txmon {cmd[0]}` has no {flag}")


def test_environment_names_are_read_by_txmon(built):
    """A misspelt variable would be silently ignored: every one must appear in the code."""
    sources = "\n".join(p.read_text() for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
    for name, s in built.items():
        for key in env_of(s):
            assert key in sources, f"{name}: {key} is read nowhere in {PACKAGES}"


# --- the monitoring configs point at real services ---


def listening(service: dict) -> tuple[set[int], bool]:
    """Ports a built service serves (from its *_PORT variables) and whether it binds 0.0.0.0."""
    env = env_of(service)
    ports = {int(interpolate(v)) for k, v in env.items() if k.endswith("_PORT")}
    public = any(k.endswith("_HOST") and v == "0.0.0.0" for k, v in env.items())
    return ports, public


def mount_target(service: dict, host: str) -> str | None:
    want = (ROOT / host).resolve()
    return next((t for h, t, _ in bind_mounts(service) if (ROOT / h).resolve() == want), None)


def test_prometheus_scrapes_real_services(services):
    prom = services["prometheus"]
    config_file = next(a.split("=", 1)[1] for a in prom["command"]
                       if a.startswith("--config.file="))
    hosts = {h for h, t, _ in bind_mounts(prom) if t == config_file}
    assert hosts, f"nothing mounted at {config_file}"
    config = yaml.safe_load((ROOT / hosts.pop()).read_text())
    for pattern in config.get("rule_files", []):
        rules_dir = str(Path(config_file).parent / Path(pattern).parent)
        assert any(t == rules_dir for _, t, _ in bind_mounts(prom)), f"{rules_dir} not mounted"
    targets = [t for job in config["scrape_configs"] for sc in job.get("static_configs", [])
               for t in sc["targets"]]
    targets += [t for am in config["alerting"]["alertmanagers"]
                for sc in am["static_configs"] for t in sc["targets"]]
    for target in targets:
        host, port = target.rsplit(":", 1)
        if host in ("localhost", "127.0.0.1"):
            continue
        assert host in services, f"Prometheus target {target}: no such service"
        if "build" in services[host]:
            ports, public = listening(services[host])
            assert int(port) in ports, f"{target}: {host} serves {ports}"
            assert public, f"{target}: {host} binds loopback only inside its container"


def test_alertmanager_notifies_the_notify_service(services):
    am = services["alertmanager"]
    config_file = next(a.split("=", 1)[1] for a in am["command"]
                       if a.startswith("--config.file="))
    host = next(h for h, t, _ in bind_mounts(am) if t == config_file)
    config = yaml.safe_load((ROOT / host).read_text())
    urls = [w["url"] for r in config["receivers"] for w in r.get("webhook_configs", [])]
    assert urls
    for url in urls:
        m = re.match(r"https?://([^:/]+):(\d+)", url)
        assert m and m.group(1) in services, f"webhook {url}: no such service"
        ports, public = listening(services[m.group(1)])
        assert int(m.group(2)) in ports and public, f"webhook {url}: not served there"


def test_grafana_provisioning_mounted_where_it_points(services):
    grafana = services["grafana"]
    assert mount_target(grafana, "grafana/provisioning") == "/etc/grafana/provisioning"
    dashboards_at = mount_target(grafana, "grafana/dashboards")
    providers = [p for f in sorted((ROOT / "grafana/provisioning/dashboards").glob("*.y*ml"))
                 for p in yaml.safe_load(f.read_text()).get("providers", [])]
    assert providers, "no dashboard provider provisioned"
    for p in providers:
        assert p["options"]["path"] == dashboards_at, (p["options"]["path"], dashboards_at)
    assert list((ROOT / "grafana/dashboards").glob("*.json")), "no dashboards to provision"
    for f in sorted((ROOT / "grafana/provisioning/datasources").glob("*.y*ml")):
        for ds in yaml.safe_load(f.read_text()).get("datasources", []):
            m = re.match(r"https?://([^:/]+):(\d+)", ds.get("url", ""))
            assert m and m.group(1) in services, f"datasource {ds.get('url')}: no such service"


# --- the services, run outside Docker with their Compose command and environment ---


def test_services_start_and_pass_their_healthchecks(built, txmon_env, tmp_path):
    """Each Python service started as Compose starts it (same command, same variables)
    against the test broker, then probed with its own healthcheck command. Only what a
    container changes is translated: the broker address, the state volume's path, free
    ports instead of the fixed ones, and loopback instead of 0.0.0.0 (tests bind nothing
    else); the static tests above check the 0.0.0.0 variables themselves."""
    from devstack.processes import free_port

    state = tmp_path / "compose-state"
    state.mkdir()
    ports: dict[int, int] = {}

    def localize(value: str) -> str:
        return interpolate(value).replace("/var/lib/txmon", str(state))

    def service_env(service: dict) -> dict[str, str]:
        env = dict(txmon_env)
        for key, value in env_of(service).items():
            if key in ("KAFKA_BOOTSTRAP_SERVERS", "TXMON_APP_ID"):
                continue  # the test broker, and a group of this test's own
            value = localize(value)
            if key.endswith("_HOST") and value == "0.0.0.0":
                value = LOOPBACK
            if key.endswith("_PORT"):
                value = str(ports.setdefault(int(value), free_port()))
            env[key] = value
        return env

    def argv(service: dict) -> list[str]:
        return [sys.executable, "-m", "txmon.cli", *(localize(c) for c in command_of(service))]

    started = time.monotonic()
    jobs = {n: s for n, s in built.items() if not healthcheck_enabled(s) and not s.get("profiles")}
    for name, service in jobs.items():
        done = subprocess.run(argv(service), env=service_env(service), cwd=ROOT, timeout=300,
                              capture_output=True, text=True)
        assert done.returncode == 0, f"{name}: {done.stderr[-2000:]}"
        print(f"{name}: completed after {time.monotonic() - started:.1f}s")
    if "train" in jobs:
        assert (state / "model.joblib").exists(), "train wrote no model where processor reads it"

    daemons = {n: s for n, s in built.items() if healthcheck_enabled(s)}
    assert {"processor", "api", "exporter", "notify"} <= set(daemons)
    procs: dict[str, subprocess.Popen] = {}
    logs: dict[str, Path] = {}
    try:
        for name, service in daemons.items():
            logs[name] = tmp_path / f"{name}.log"
            with logs[name].open("w") as log:
                procs[name] = subprocess.Popen(argv(service), env=service_env(service), cwd=ROOT,
                                               stdout=log, stderr=subprocess.STDOUT)
        pending = dict(daemons)
        deadline = time.monotonic() + 180
        while pending and time.monotonic() < deadline:
            for name, service in list(pending.items()):
                assert procs[name].poll() is None, (
                    f"{name} exited: {logs[name].read_text()[-2000:]}")
                test = [sys.executable if a == "python" else a
                        for a in service["healthcheck"]["test"][1:]]
                for compose_port, port in ports.items():
                    test = [a.replace(f":{compose_port}/", f":{port}/") for a in test]
                probe = subprocess.run(test, capture_output=True, timeout=30)
                if probe.returncode == 0:
                    del pending[name]
                    print(f"{name}: healthy after {time.monotonic() - started:.1f}s")
            time.sleep(1)
        assert not pending, {n: logs[n].read_text()[-1500:] for n in pending}
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
