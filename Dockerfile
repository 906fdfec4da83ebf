# visassist: one container, SQLite + images in /data. Put it behind a TLS proxy (phones need HTTPS
# for the camera) and publish the UDP ports WebRTC uses, or configure TURN with --ice-server.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    VISASSIST_HOST=0.0.0.0 VISASSIST_PORT=8080 VISASSIST_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY visassist ./visassist
COPY static ./static
COPY templates ./templates
# Editable, so the package finds static/ and templates/ beside it in /app.
RUN pip install --no-cache-dir -e . \
    && useradd --system --home-dir /data --create-home visassist

USER visassist
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"
# In a container, advertise the address browsers can reach: --ice-address or VISASSIST_ICE_ADDRESSES.
ENTRYPOINT ["visassist"]
CMD ["serve"]
