# syntax=docker/dockerfile:1
#
# The `ivr` app: `ivr run` in ARI mode by default (docker-compose.yml also runs it as `ivr run --no-ari`).
#   docker build -t asterisk-ivr .                          # with the offline speech engines
#   docker build --build-arg IVR_EXTRAS= -t asterisk-ivr .   # no extras (e.g. IVR_STT/IVR_TTS=openai)
# Settings come from IVR_* environment variables (ivr/config.py); see docker-compose.yml and .env.example.

ARG PYTHON_IMAGE=python:3.11-slim

# ------------------------------------------------------------------------------------------------ build
FROM ${PYTHON_IMAGE} AS build
# Comma-separated extras of pyproject.toml to install, e.g. "offline" or "offline,uvloop"; empty for none.
ARG IVR_EXTRAS=offline
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
    && mkdir -p /var/cache/ivr/prompts \
    && chown -R ivr:ivr /var/cache/ivr
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
# 9092: AudioSocket (TCP, Asterisk connects here). 9464: the metrics side port planned in issue 7; the app
# does not listen on it yet, so compose neither publishes nor health-checks it.
EXPOSE 9092/tcp 9464/tcp
STOPSIGNAL SIGTERM
CMD ["ivr", "run"]
