# cellmon: the service image. The state directory is a volume; the config is mounted.
FROM python:3.11.10-slim-bookworm
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY collector ./collector
COPY processors ./processors
COPY simulator ./simulator
COPY config ./config
RUN pip install . && useradd --system --uid 10001 cellmon && mkdir -p /var/lib/cellmon \
    && chown cellmon /var/lib/cellmon
USER cellmon
ENTRYPOINT ["cellmon"]
CMD ["run", "--config", "/app/config/cellmon.compose.yaml"]
