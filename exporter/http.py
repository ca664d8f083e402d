"""The exporter's HTTP side: /metrics for Prometheus, /ready for whoever must know that
the numbers are whole (tests, Compose healthchecks, an operator after a restart).

/metrics answers from the first second, so Prometheus' `up` keeps meaning "the process
is alive" and ExporterDown stays quiet during a long catch-up; what it carries before
/ready turns 200 is only the exporter's own health (see exporter/metrics.py).
"""

from __future__ import annotations

import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from exporter.metrics import PipelineMetrics


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:  # one line per scrape would drown the log
        pass


def app(metrics: PipelineMetrics, progress=lambda: ""):
    """WSGI app: /ready is 200 once caught up, else 503 saying how far it has read."""
    serve_metrics = make_wsgi_app(metrics.registry)

    def dispatch(environ, start_response):
        if environ.get("PATH_INFO") not in ("/ready", "/-/ready"):
            return serve_metrics(environ, start_response)
        ready = metrics.ready.is_set()
        body = ("ready\n" if ready else f"catching up: {progress()}\n").encode()
        start_response("200 OK" if ready else "503 Service Unavailable",
                       [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    return dispatch


def serve(host: str, port: int, metrics: PipelineMetrics, progress=lambda: ""):
    """Start serving in a daemon thread; returns the server (`shutdown()` stops it)."""
    server = make_server(host, port, app(metrics, progress), _Server,
                         handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="exporter-http", daemon=True).start()
    return server
