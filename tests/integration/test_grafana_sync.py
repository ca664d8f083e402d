"""`txmon grafana sync` against a loopback server speaking Grafana's documented HTTP API
(/api/datasources, /api/dashboards/db, /api/annotations), with incidents read from the
real alerts topic. Re-running it changes nothing; a resolution patches the annotation."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
from datetime import UTC, datetime, timedelta

from support.obs import REPO, TXMON, RecordingServer, alert_key, make_alert, produce

DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
T0 = datetime(2026, 3, 2, 14, 33, tzinfo=UTC)


class FakeGrafana(RecordingServer):
    """Answers like Grafana 10/11 for the few endpoints the sync uses, keeping state."""

    def __init__(self):
        self.annotations: dict[int, dict] = {}
        self.datasources: set[str] = set()
        super().__init__({
            ("GET", "/api/datasources/uid/"): self.get_datasource,
            ("POST", "/api/datasources"): self.add_datasource,
            ("POST", "/api/dashboards/db"): lambda r: (200, {
                "id": 1, "uid": r["json"]["dashboard"]["uid"], "status": "success",
                "version": 1, "url": "/d/" + r["json"]["dashboard"]["uid"]}),
            ("GET", "/api/annotations"): self.find_annotations,
            ("POST", "/api/annotations"): self.add_annotation,
            ("PATCH", "/api/annotations/"): self.patch_annotation,
        })

    def get_datasource(self, request):
        uid = request["path"].rsplit("/", 1)[-1]
        if uid in self.datasources:
            return 200, {"uid": uid, "type": "prometheus"}
        return 404, {"message": "Data source not found"}

    def add_datasource(self, request):
        self.datasources.add(request["json"]["uid"])
        return 200, {"message": "Datasource added", "id": 1, "name": request["json"]["name"]}

    def find_annotations(self, request):
        query = urllib.parse.parse_qs(urllib.parse.urlparse(request["path"]).query)
        tags = set(query.get("tags", []))
        found = [{"id": i, **a} for i, a in self.annotations.items() if tags <= set(a["tags"])]
        return 200, found

    def add_annotation(self, request):
        new_id = len(self.annotations) + 1
        self.annotations[new_id] = dict(request["json"])
        return 200, {"message": "Annotation added", "id": new_id}

    def patch_annotation(self, request):
        ann_id = int(request["path"].rsplit("/", 1)[-1])
        self.annotations[ann_id].update(
            {k: v for k, v in request["json"].items() if v is not None})
        return 200, {"message": "Annotation patched"}

    def calls(self, method, prefix):
        return [r for r in self.requests if r["method"] == method
                and r["path"].startswith(prefix)]


def sync(env, grafana, *extra):
    proc = subprocess.run([TXMON, "grafana", "sync", "--url", grafana.url, "--token",
                           "glsa_test_token", *extra], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_grafana_sync_requests(kafka_settings, unique_topics, txmon_env):
    m = timedelta(minutes=1)
    produce(kafka_settings, unique_topics.alerts, [
        make_alert("rev-1", "open", "reversed", T0),
        make_alert("rev-1", "update", "reversed", T0 + m),
        make_alert("rev-1", "resolved", "reversed", T0 + 30 * m),
        make_alert("den-1", "open", "denied", T0 + 2 * m, severity="warning"),
        make_alert("den-1", "open", "denied", T0 + 2 * m, severity="warning"),  # re-emitted
    ], key=alert_key)
    grafana = FakeGrafana()
    try:
        out = sync(txmon_env, grafana, "--prometheus-url", "http://127.0.0.1:9090")
        assert "2 created" in out, out
        for request in grafana.requests:
            assert request["headers"]["Authorization"] == "Bearer glsa_test_token"

        (ds,) = grafana.calls("POST", "/api/datasources")
        assert ds["json"]["uid"] == "txmon-prometheus" and ds["json"]["type"] == "prometheus"
        assert ds["json"]["url"] == "http://127.0.0.1:9090"

        uploads = grafana.calls("POST", "/api/dashboards/db")
        assert len(uploads) == len(DASHBOARDS)
        for request, path in zip(uploads, DASHBOARDS, strict=True):
            body = request["json"]
            assert body["overwrite"] is True
            assert body["dashboard"]["uid"] == json.loads(path.read_text())["uid"]
            assert body["dashboard"]["id"] is None

        posted = {a["tags"][1]: a for a in (r["json"] for r in
                                             grafana.calls("POST", "/api/annotations"))}
        assert set(posted) == {"incident:rev-1", "incident:den-1"}
        rev = posted["incident:rev-1"]
        assert rev["time"] == int(T0.timestamp() * 1000)
        assert rev["timeEnd"] == int((T0 + 31 * m).timestamp() * 1000)
        assert rev["dashboardUID"] == "txmon-overview"
        assert {"txmon", "group:reversed", "severity:critical"} <= set(rev["tags"])
        assert "reversed 120 vs 20 expected" in rev["text"]
        den = posted["incident:den-1"]
        assert den["time"] == den["timeEnd"]  # still open: a point in time

        # Again: nothing new is created.
        before = len(grafana.requests)
        out = sync(txmon_env, grafana)
        assert "0 created, 0 updated, 2 unchanged" in out, out
        assert not [r for r in grafana.requests[before:]
                    if r["method"] in ("POST", "PATCH") and "annotations" in r["path"]]

        # The denied incident resolves: its annotation gets an end, by PATCH.
        produce(kafka_settings, unique_topics.alerts,
                [make_alert("den-1", "resolved", "denied", T0 + 9 * m, severity="warning")],
                key=alert_key)
        out = sync(txmon_env, grafana)
        assert "0 created, 1 updated, 1 unchanged" in out, out
        (patch,) = grafana.calls("PATCH", "/api/annotations/")
        assert patch["json"]["timeEnd"] == int((T0 + 10 * m).timestamp() * 1000)
        assert len(grafana.annotations) == 2
    finally:
        grafana.stop()


def test_grafana_sync_error_is_one_line(txmon_env):
    proc = subprocess.run([TXMON, "grafana", "sync"], env={**txmon_env, "GRAFANA_URL": ""},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--url" in proc.stderr
