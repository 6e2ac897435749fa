# syntax=docker/dockerfile:1
#
# The `ivr` app: `ivr run` in ARI mode by default (docker-compose.yml runs two replicas in per-call ARI mode
# behind HAProxy, and `ivr run --no-ari`).
#   docker build -t asterisk-ivr .                          # offline speech engines, PostgreSQL records
#   docker build --build-arg IVR_EXTRAS= -t asterisk-ivr .   # no extras (e.g. IVR_STT/IVR_TTS=openai)
# Settings come from IVR_* environment variables (ivr/config.py); see docker-compose.yml and .env.example.

ARG PYTHON_IMAGE=python:3.11-slim

# ------------------------------------------------------------------------------------------------ build
FROM ${PYTHON_IMAGE} AS build
# Comma-separated extras of pyproject.toml to install, e.g. "offline" or "offline,postgres,uvloop"; empty
# for none. "postgres" (psycopg) is what IVR_RECORDS_URL=postgresql://... needs.
ARG IVR_EXTRAS=offline,postgres
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE ./
COPY ivr ./ivr
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install ".${IVR_EXTRAS:+[$IVR_EXTRAS]}"

# ---------------------------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE}
RUN groupadd --system ivr \
    && useradd --system --gid ivr --create-home --home-dir /home/ivr --shell /usr/sbin/nologin ivr \
    && mkdir -p /var/cache/ivr/prompts /var/lib/ivr \
    && chown -R ivr:ivr /var/cache/ivr /var/lib/ivr
COPY --from=build /opt/venv /opt/venv
COPY flows /app/flows

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    IVR_FLOWS=/app/flows \
    IVR_AUDIOSOCKET_LISTEN=0.0.0.0:9092 \
    IVR_PROMPT_CACHE=/var/cache/ivr/prompts

USER ivr
WORKDIR /app
# 9092: AudioSocket (TCP, Asterisk connects here for each call's media). 8765: per-call ARI WebSockets
# (IVR_ARI_MODE=per_call; Asterisk, or a balancer in front, connects here once per call). 9464: /metrics,
# /healthz, /readyz (IVR_METRICS_LISTEN; loopback unless set, as compose sets it for HAProxy's checks).
EXPOSE 9092/tcp 8765/tcp 9464/tcp
STOPSIGNAL SIGTERM
CMD ["ivr", "run"]
