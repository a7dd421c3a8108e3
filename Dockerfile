# A relay in a container: `xfer serve` on $PORT (8765 unless set), as a non-root user.
#   docker build -t xfer .
#   docker run --rm -p 8765:8765 xfer
#   docker run --rm -p 8765:8765 xfer xfer serve --trust-proxy 10.0.0.0/8 --public-url wss://xfer.example
# docs/deploy.md has the rest (several relays behind nginx, TLS, health checks).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8765

WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install '.[redis]' && rm -rf /build   # the redis extra: --redis / XFER_REDIS work in the image

RUN useradd --system --no-create-home --shell /usr/sbin/nologin xfer
USER xfer
WORKDIR /tmp

EXPOSE 8765
# slim has no curl: Python itself asks /healthz (plain HTTP; see docs/deploy.md when xfer serves TLS itself).
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8765'), timeout=4)"
# Exec form: SIGTERM from `docker stop` reaches xfer, which tells its peers to come back later (1012).
CMD ["xfer", "serve"]
