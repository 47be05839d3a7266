# syntax=docker/dockerfile:1
# Staffetta: one image, four services. Run as `staffetta ingress|router|delivery|bounce`.
#
#   docker build -t staffetta:dev .
#   docker run --rm -e STAFFETTA_AMQP_URL=amqp://... staffetta:dev check-config

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: resolve nothing, install exactly uv.lock into /opt/staffetta ---------
FROM ${PYTHON_IMAGE} AS builder

ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/opt/staffetta

WORKDIR /src

# Dependencies first: this layer is reused until uv.lock changes.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

# Then the project itself, installed as a regular (non-editable) package.
COPY services ./services
RUN uv sync --frozen --no-dev --no-editable

# --- runtime: python-slim, no compilers, no uv, no sources -------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="staffetta" \
      org.opencontainers.image.description="SMTP relay for Kubernetes: ingress, router, delivery and bounce services joined by RabbitMQ" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric UID/GID so that Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 staffetta \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/staffetta \
      --no-create-home --shell /usr/sbin/nologin staffetta \
 && mkdir -p /var/lib/staffetta/mail \
 && chown -R 10001:10001 /var/lib/staffetta

COPY --from=builder /opt/staffetta /opt/staffetta

# Bytecode is compiled at build time: the root filesystem can be read-only.
ENV PATH=/opt/staffetta/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STAFFETTA_MAILDIR_ROOT=/var/lib/staffetta/mail

WORKDIR /var/lib/staffetta
USER 10001:10001

# SMTP (MTA), submission, submissions (implicit TLS), HTTP (/healthz /readyz /metrics).
EXPOSE 2525 2587 2465 8080

# Every service drains in-flight work on SIGTERM and exits 0. Health is probed
# by the orchestrator over HTTP, so the image carries no HEALTHCHECK.
STOPSIGNAL SIGTERM
ENTRYPOINT ["staffetta"]
CMD ["--help"]
