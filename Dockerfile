# asgiws in a container: `docker build -t asgiws .` then `docker run -p 8000:8000 asgiws`
# serves the bundled demo; `docker run ... asgiws myapp.main:app --ws-max-size 1MiB` serves yours.
#
# PYTHON_IMAGE is the base of both stages: a Debian-like image with `python3` and its venv module
# (and groupadd/useradd), as the official python:3.X-slim images are, or Debian with python3-venv.
ARG PYTHON_IMAGE=python:3.12-slim

# ---- build: asgiws and its 'fast' extra (uvloop, websockets) in a self-contained venv ------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN python3 -m venv /opt/asgiws

WORKDIR /src
# Only what building the wheel needs (see .dockerignore): the package and its metadata.
COPY pyproject.toml README.md ./
COPY asgiws ./asgiws
RUN /opt/asgiws/bin/python3 -m pip install '.[fast]'

# ---- runtime: the venv on a clean base, without the build's leftovers ----------------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="asgiws" \
      org.opencontainers.image.description="A WebSocket-first ASGI server" \
      org.opencontainers.image.licenses="MIT"

# A fixed, unprivileged uid, so a platform that checks "runs as non-root" (Kubernetes
# runAsNonRoot) can see it in the image config without resolving a name.
ARG APP_UID=10001
RUN groupadd --gid "${APP_UID}" asgiws \
    && useradd --uid "${APP_UID}" --gid asgiws --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin asgiws \
    && mkdir /app

COPY --from=build /opt/asgiws /opt/asgiws

# ASGIWS_HOST is the image's default only: `-e ASGIWS_HOST=...` or `--host ...` still win, as
# for every option (command line, then environment, then default).
# An image built FROM this one installs its app's requirements into the same venv (pip is in
# it, first on PATH) as root, then switches back to the unprivileged user:
#     USER root
#     RUN python3 -m pip install -r requirements.txt
#     USER 10001:10001
# (examples/docker/ does so for a FastAPI app). The PIP_ settings keep such a layer free of
# pip's cache, its version check and its warning about running as root.
ENV PATH=/opt/asgiws/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    ASGIWS_HOST=0.0.0.0

# Your app goes here (a bind mount or a derived image); --app-dir defaults to the working
# directory. Made above as root, so the server cannot write to its own code.
WORKDIR /app
USER ${APP_UID}:${APP_UID}
EXPOSE 8000

# asgiws runs as PID 1 and handles SIGTERM itself: it stops accepting, closes every WebSocket
# with 1001 and exits 0 within --timeout-graceful-shutdown (30 s; docker stop waits 10 s unless
# told otherwise with -t).
STOPSIGNAL SIGTERM

# App-agnostic: the server accepts TCP connections on the port it was given through ASGIWS_PORT
# (8000 by default). A port given as --port, or --uds / --fd, needs a HEALTHCHECK of your own.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["python3", "-c", "\
import os, socket; \
host = os.environ.get('ASGIWS_HOST') or '127.0.0.1'; \
host = {'0.0.0.0': '127.0.0.1', '::': '::1'}.get(host, host); \
port = int(os.environ.get('ASGIWS_PORT') or 8000); \
socket.create_connection((host, port), timeout=3).close()"]

ENTRYPOINT ["asgiws"]
CMD ["asgiws.demo:app"]
