# visassist: one node in a container, as an unprivileged user. Data (SQLite, images) in /data; the
# database moves to PostgreSQL with --database-url (compose.yaml). Put it behind a TLS proxy (phones
# need HTTPS for the camera; compose.yaml uses Caddy) and give it TURN (docs/turn.md) or publish the
# UDP it uses.
#
#   docker build -t visassist .
#
# PYTHON_IMAGE: any Debian-based image with Python 3.11 and its venv module (python:3.11-slim by
# default; a registry mirror's copy, or a local one, where Docker Hub cannot be reached).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/visassist/bin:$PATH \
    VISASSIST_HOST=0.0.0.0 VISASSIST_PORT=8080 VISASSIST_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY visassist ./visassist
COPY static ./static
COPY templates ./templates
# A virtualenv owned by root: the service user can run it, not change it. Editable, so the package
# finds static/ and templates/ beside it in /app.
RUN python3 -m venv /opt/visassist \
    && /opt/visassist/bin/pip install --no-cache-dir -e . \
    && useradd --system --uid 10001 --user-group --home-dir /data --create-home --shell /usr/sbin/nologin visassist

# By number, so a platform that insists on non-root (Kubernetes runAsNonRoot) can check it.
USER 10001:10001
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('VISASSIST_PORT', '8080'), timeout=2)"]
# In a container, advertise the address browsers (or coturn) can reach: VISASSIST_ICE_ADDRESSES.
ENTRYPOINT ["visassist"]
CMD ["serve"]
