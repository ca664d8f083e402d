"""`txmon grafana sync`: the dashboards and incident annotations, into an existing Grafana.

For users who cannot provision Grafana from grafana/provisioning (a managed Grafana, a
shared one). Idempotent: dashboards are overwritten by uid, an incident's annotation is
found by its tag and patched (it gets its end when the incident resolves), never doubled.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from txmon.contracts.incidents import Incident

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
DASHBOARDS_DIR = REPO / "grafana" / "dashboards"
DATASOURCE_UID = "txmon-prometheus"
ANNOTATION_TAG = "txmon"


@dataclass
class SyncResult:
    dashboards: int = 0
    datasource: str = "unchanged"
    annotations_created: int = 0
    annotations_updated: int = 0
    annotations_unchanged: int = 0


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


def _ms(dt) -> int:
    return int(dt.timestamp() * 1000)


def incident_tags(incident: Incident) -> list[str]:
    return [ANNOTATION_TAG, f"incident:{incident.incident_id}", f"group:{incident.group}",
            f"severity:{incident.severity}"]


def sync(api, incidents: list[Incident], *, dashboards: list[dict],
         prometheus_url: str | None = None, folder_uid: str | None = None,
         dashboard_uid: str | None = "txmon-overview") -> SyncResult:
    """`api` is a grafana_client.GrafanaApi."""
    from grafana_client.client import GrafanaClientError

    result = SyncResult()
    try:
        api.datasource.get_datasource_by_uid(DATASOURCE_UID)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        if prometheus_url:
            api.datasource.create_datasource({
                "uid": DATASOURCE_UID, "name": "txmon Prometheus", "type": "prometheus",
                "access": "proxy", "url": prometheus_url, "isDefault": False,
                "jsonData": {"timeInterval": "15s"},
            })
            result.datasource = "created"
        else:
            result.datasource = "missing"
            log.warning("Grafana has no datasource with uid %s: pass --prometheus-url to "
                        "create it, or the panels will show no data", DATASOURCE_UID)

    for dashboard in dashboards:
        body = {"dashboard": {**dashboard, "id": None}, "overwrite": True,
                "message": "txmon grafana sync"}
        if folder_uid:
            body["folderUid"] = folder_uid
        api.dashboard.update_dashboard(body)
        result.dashboards += 1

    for incident in incidents:
        tags = incident_tags(incident)
        text = incident.describe()
        start = _ms(incident.start)
        end = _ms(incident.end) if incident.end is not None else start
        found = api.annotations.find_annotations(tags=tags[:2], limit=10)
        if found:
            current = found[0]
            if current.get("timeEnd") == end and current.get("text") == text:
                result.annotations_unchanged += 1
                continue
            api.annotations.partial_update_annotation(
                current["id"], time_from=start, time_to=end, tags=tags, text=text)
            result.annotations_updated += 1
        else:
            api.annotations.add_annotation(dashboard_uid=dashboard_uid, time_from=start,
                                           time_to=end, tags=tags, text=text)
            result.annotations_created += 1
    return result


def run_sync(grafana, settings, names, *, folder_uid: str | None = None,
             timeout: float = 10.0) -> SyncResult:
    """`grafana`: the GrafanaSettings (url, token, the Prometheus URL for a missing
    datasource); `settings` and `names`: the Kafka connection and topics to read alerts from."""
    from grafana_client import GrafanaApi

    from exporter.consume import read_topic
    from txmon.contracts import Alert
    from txmon.contracts.incidents import fold_incidents

    bad = []
    alerts = read_topic(settings, names.alerts, Alert, on_bad=lambda v, e: bad.append(e))
    if bad:
        log.warning("%d undecodable records on %s skipped", len(bad), names.alerts)
    api = GrafanaApi.from_url(grafana.url, credential=grafana.token, timeout=timeout)
    return sync(api, fold_incidents(alerts), dashboards=load_dashboards(),
                prometheus_url=grafana.prometheus_url, folder_uid=folder_uid)
