# One image for every docker-compose service: api, worker, migrate, ray-head and ray-worker.
#   docker build -t hwnas .        (docker compose build does the same)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# PyTorch's CPU build first, pinned, from PyTorch's own CPU index: the project's `torch>=2.13,<2.14`
# is then already satisfied, so `pip install .` never pulls a CUDA build (gigabytes). In the sandbox
# this project is developed in, `pip install torch==2.13.0` resolves the same pin from a local wheel
# (pip's find-links; see the Makefile); a real build fetches it from TORCH_INDEX_URL.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY search_spaces search_spaces
COPY latency_lut latency_lut
COPY nas nas
COPY api api
RUN pip install . && pip check

# Run as an unprivileged user. /data holds the SQLite fallback and the artifact directory; compose
# mounts a named volume on /data/artifacts, which Docker seeds with this directory's owner.
RUN useradd --create-home --uid 10001 --user-group hwnas \
    && mkdir -p /data/artifacts \
    && chown -R hwnas:hwnas /data
USER hwnas
WORKDIR /home/hwnas

ENV HWNAS_DATABASE_URL=sqlite:////data/hwnas.db \
    HWNAS_ARTIFACT_DIR=/data/artifacts \
    HWNAS_LOG_FORMAT=json

EXPOSE 8000
# The API's own health endpoint (open, checks the database); python instead of curl, which the slim
# image lacks. urlopen raises on a 503, so an unreachable database marks the container unhealthy.
# Services that serve no HTTP (worker, ray-*) override or disable this in docker-compose.yml.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v1/health', timeout=4)"]

# Alone (`docker run -p 8000:8000 hwnas`): API + embedded worker on SQLite under /data.
CMD ["hwnas", "serve", "--host", "0.0.0.0", "--port", "8000"]
