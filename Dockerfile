# One image for every Python service of docker-compose.yml; the command picks the
# service: `process`, `api`, `export`, `notify`, `train`, `produce`, ...
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Metadata first, so code edits do not invalidate the dependency layer's inputs.
COPY pyproject.toml README.md ./
COPY txmon ./txmon
COPY producer ./producer
COPY processor ./processor
COPY exporter ./exporter
COPY api ./api
COPY devstack ./devstack
COPY evaluation ./evaluation
COPY demo ./demo
RUN pip install . \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/txmon --no-create-home --shell /usr/sbin/nologin txmon \
    && mkdir -p /var/lib/txmon \
    && chown txmon:txmon /var/lib/txmon

# Services bind 0.0.0.0 inside the container only when Compose says so (TXMON_*_HOST).
ENV TXMON_STATE_DIR=/var/lib/txmon
USER txmon
WORKDIR /var/lib/txmon
ENTRYPOINT ["txmon"]
CMD ["--help"]
