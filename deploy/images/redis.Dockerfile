# Redis from Debian's packages, for hosts that reach no image registry (deploy/smoke.sh, air-gapped CI).
# Runs the command it is given (compose.yaml passes `redis-server --appendonly yes …`), data in /data.
#   docker build -f deploy/images/redis.Dockerfile --build-arg BASE_IMAGE=mailroom-base:bookworm -t mailroom-redis deploy/images
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server redis-tools \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data \
    && chown redis:redis /data

COPY redis-entrypoint.sh /usr/local/bin/redis-entrypoint.sh
WORKDIR /data
USER redis
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/redis-entrypoint.sh"]
CMD ["redis-server"]
