# One image for the backend, the Celery worker and beat, and the migrate step: the role is the
# command. Builder: a virtual environment from uv.lock (runtime dependencies only, their layer
# before the source). Runtime: that venv and the source, non-root, no compilers, read-only root.
#
# PYTHON_IMAGE is the pinned official python image, or its Debian-built stand-in from
# `invoke images.bake`; both offer python3 with venv/ensurepip under /usr/local/bin.
#
# PYPI_MIRROR (compose passes COACH_PYPI_MIRROR) is a PyPI simple index to install uv and the
# locked packages from instead of pypi.org; every file is still checked against uv.lock's hashes.
ARG PYTHON_IMAGE=docker.io/library/python:3.11.14-slim-bookworm
ARG UV_VERSION=0.13.9
# Only target ops (the end of this file) uses it: PostgreSQL's client tools come from it.
ARG POSTGRES_IMAGE=docker.io/library/postgres:17.7-trixie

# uv's own requirement with its uv.lock hashes, so a mirror cannot hand us another uv. A stage
# of its own: the mount below keys on this file's content, so other lock changes keep uv cached.
FROM ${PYTHON_IMAGE} AS uv-pin
ARG UV_VERSION
COPY uv.lock /tmp/uv.lock
RUN python3 -c 'import sys, tomllib; \
uv = next(p for p in tomllib.load(open("/tmp/uv.lock", "rb"))["package"] if p["name"] == "uv"); \
assert uv["version"] == sys.argv[1], "uv.lock pins uv " + uv["version"]; \
print("uv==" + uv["version"], *("--hash=" + f["hash"] for f in [uv["sdist"], *uv["wheels"]]))' \
    "${UV_VERSION}" > /uv.txt

FROM ${PYTHON_IMAGE} AS builder
ARG UV_VERSION
# Only in this stage, which is never exported: a token in the URL stays out of the image and its
# history. The RUN steps read it with printenv: BuildKit prints a step's $VARIABLES expanded.
ARG PYPI_MIRROR=
# Extra dependency groups of uv.lock ("ops": target ops below); empty for the app image.
ARG UV_GROUPS=
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# An extra CA bundle (TLS-intercepting proxies, or hosts whose PyPI access needs the host's
# trust store) arrives as a BuildKit secret: present during these RUN steps, in no layer.
SHELL ["/bin/sh", "-eu", "-c"]
RUN --mount=type=secret,id=build_ca \
    --mount=type=bind,from=uv-pin,source=/uv.txt,target=/tmp/uv.txt \
    if [ -s /run/secrets/build_ca ]; then export PIP_CERT=/run/secrets/build_ca; fi; \
    python3 -m venv /opt/uv; \
    mirror="$(printenv PYPI_MIRROR || :)"; \
    if [ -z "$mirror" ]; then \
        /opt/uv/bin/pip install --no-cache-dir "uv==${UV_VERSION}"; \
    else \
        case "$mirror" in http://*) \
            host="${mirror#http://}"; host="${host##*@}"; export PIP_TRUSTED_HOST="${host%%/*}";; \
        esac; \
        PIP_INDEX_URL="$mirror" /opt/uv/bin/pip install --no-cache-dir \
            --require-hashes -r /tmp/uv.txt; \
    fi

WORKDIR /src
COPY pyproject.toml uv.lock ./
# `uv sync --frozen` downloads from the URLs uv.lock records, whatever index is set. With a
# mirror: export the lock's pins and hashes, install exactly those from it, then check that the
# result is what `uv sync` would have made. The mirror URL (it may carry a token) reaches the
# tools through their environment, never their argv, which `ps` shows to every user.
# $groups unquoted on purpose: zero or more "--group NAME" words (SC2086).
# hadolint ignore=SC2086
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=build_ca \
    if [ -s /run/secrets/build_ca ]; then export SSL_CERT_FILE=/run/secrets/build_ca; fi; \
    mirror="$(printenv PYPI_MIRROR || :)"; \
    groups=""; for g in ${UV_GROUPS}; do groups="$groups --group $g"; done; \
    if [ -z "$mirror" ]; then \
        /opt/uv/bin/uv sync --frozen --no-dev $groups --no-install-project; \
    else \
        /opt/uv/bin/uv export --frozen --no-dev $groups --no-emit-project --quiet \
            --output-file /tmp/requirements.txt; \
        /opt/uv/bin/uv venv --quiet /opt/venv; \
        UV_DEFAULT_INDEX="$mirror" /opt/uv/bin/uv pip sync --require-hashes \
            --python /opt/venv /tmp/requirements.txt; \
        rm /tmp/requirements.txt; \
        /opt/uv/bin/uv sync --frozen --no-dev $groups --no-install-project --check; \
    fi

COPY coach ./coach
COPY backend ./backend
COPY worker ./worker
RUN python3 -m compileall -q coach backend worker


FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://example.invalid/code-learning-coach
LABEL org.opencontainers.image.title="code-learning-coach" \
      org.opencontainers.image.description="Code Learning Coach: API, Celery worker and beat" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"

# A fixed uid/gid so volume ownership is predictable across rebuilds and hosts.
# The volume mount points exist, owned by the app user, so new named volumes inherit that.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin app \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/coach /var/lib/beat

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder --chown=root:root /src/coach /app/coach
COPY --from=builder --chown=root:root /src/backend /app/backend
COPY --from=builder --chown=root:root /src/worker /app/worker

# OTEL_SEMCONV_STABILITY_OPT_IN=http: the stable HTTP span attribute names (http.request.method,
# url.path, ...), not whatever each instrumentation release defaults to; in the image, so that
# every stack that runs it (development, production, Swarm) has them.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    APP_VERSION=${VERSION} \
    APP_REVISION=${REVISION} \
    DATA_DIR=/tmp/coach \
    OTEL_SEMCONV_STABILITY_OPT_IN=http
WORKDIR /app
USER 10001:10001
EXPOSE 8000

# Exec form and stdlib only: no curl in the image, no shell needed.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "coach.probe", "http://127.0.0.1:8000/health/live"]
CMD ["gunicorn", "--config", "backend/gunicorn.conf.py", "backend.app:app"]


# --- Target ops: the scheduled backups (service `backup`, docker-compose.prod.yml) ----------
# Built with UV_GROUPS=ops: the runtime above with the ops/ package's few extra imports, the
# ops/ package, and PostgreSQL's client tools of the server's major. pg_dump refuses a server
# newer than itself, and Debian bookworm has no PostgreSQL 17 client (nor has
# bookworm-backports), so the tools come out of the server's own image (POSTGRES_IMAGE,
# Debian trixie layout) with every library they link, the dynamic loader and libc included:
# they run on trixie's glibc through that loader, the rest of the image stays bookworm.
FROM ${POSTGRES_IMAGE} AS pgclient
SHELL ["/bin/sh", "-eu", "-c"]
# No pipefail in dash: a failing ldd leaves a library out, and the stage ops's
# `pg_dump --version` (run through these very files) then fails the build.
# hadolint ignore=DL4006
RUN set -- /usr/lib/postgresql/*/bin; [ "$#" -eq 1 ] && [ -d "$1" ] \
        || { echo "expected one /usr/lib/postgresql/<major>/bin, found: $*" >&2; exit 1; }; \
    install -d /opt/pgclient/bin /opt/pgclient/lib; \
    for tool in pg_dump pg_restore psql; do \
        cp "$1/$tool" "/opt/pgclient/bin/$tool.real"; \
        ldd "$1/$tool" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' \
            | while read -r lib; do cp -L "$lib" "/opt/pgclient/lib/${lib##*/}"; done; \
        printf '#!/bin/sh\nexec /opt/pgclient/lib/ld-linux-x86-64.so.2 --library-path /opt/pgclient/lib --argv0 %s /opt/pgclient/bin/%s.real "$@"\n' \
            "$tool" "$tool" > "/opt/pgclient/$tool"; \
        chmod 0755 "/opt/pgclient/$tool"; \
    done; \
    test -x /opt/pgclient/lib/ld-linux-x86-64.so.2

FROM runtime AS ops
LABEL org.opencontainers.image.title="code-learning-coach-ops" \
      org.opencontainers.image.description="Code Learning Coach: scheduled backups"
# Root on purpose: why, above the HEALTHCHECK below.
# hadolint ignore=DL3002,DL3066
USER root
COPY --from=pgclient /opt/pgclient/bin /opt/pgclient/bin
COPY --from=pgclient /opt/pgclient/lib /opt/pgclient/lib
COPY --from=pgclient /opt/pgclient/pg_dump /opt/pgclient/pg_restore /opt/pgclient/psql \
     /usr/local/bin/
COPY --chown=root:root ops /app/ops
# The tools run here, on this image's kernel interface and loader: a broken copy fails the build.
RUN ["/bin/sh", "-euc", "pg_dump --version && pg_restore --version && psql --version \
     && python -m compileall -q /app/ops && python -c 'import ops.data.scheduled'"]
# Root, on purpose: the backups directory is shared with the host's CLI, which runs as root
# and writes 0600 files (ops/data/private.py). The compose service drops every capability.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "coach.probe", "http://127.0.0.1:9110/metrics"]
CMD ["python", "-m", "ops.data.scheduled"]
