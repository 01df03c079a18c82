# The AssetBook core and its modules (MQTT bridge) in one image; the command picks the role.
# Build from the repository root:  docker build -f deploy/containers/core.Dockerfile .
# Runs as an unprivileged user with a read-only root file system: everything it writes lives
# in the core home, a volume at /var/lib/assetbook (see deploy/containers/compose.yaml).

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY assetbook ./assetbook
COPY protocol ./protocol
COPY drivers ./drivers
COPY gateway ./gateway
COPY cloud ./cloud
COPY simulators ./simulators
RUN python -m venv /opt/assetbook/venv \
    && /opt/assetbook/venv/bin/pip install --no-cache-dir --disable-pip-version-check .

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 assetbook \
    && useradd --system --uid 10001 --gid assetbook --home-dir /var/lib/assetbook \
        --no-create-home --shell /usr/sbin/nologin assetbook \
    && install -d -m 0700 -o assetbook -g assetbook /var/lib/assetbook
COPY --from=build /opt/assetbook/venv /opt/assetbook/venv
ENV PATH=/opt/assetbook/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ASSETBOOK_HOME=/var/lib/assetbook/core
USER 10001:10001
WORKDIR /var/lib/assetbook
VOLUME ["/var/lib/assetbook"]
# 8443: REST over HTTPS; 8444: the link (WSS) for gateways and modules.
EXPOSE 8443 8444
# The REST health route needs no token; the home's own CA verifies the certificate.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import ssl, sys, urllib.request as r; c = ssl.create_default_context(cafile='/var/lib/assetbook/core/tls/ca.pem'); sys.exit(r.urlopen('https://localhost:8443/api/v1/health', context=c, timeout=4).status != 200)"]
ENTRYPOINT ["assetbook"]
CMD ["core", "run", "--home", "/var/lib/assetbook/core"]
