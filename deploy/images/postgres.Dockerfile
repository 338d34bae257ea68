# Postgres from Debian's packages, for hosts that reach no image registry (deploy/smoke.sh, air-gapped CI).
# Same interface as the official image as far as compose.yaml uses it: POSTGRES_USER / _PASSWORD / _DB on first
# start, data in /var/lib/postgresql/data, pg_isready, port 5432.
#   docker build -f deploy/images/postgres.Dockerfile --build-arg BASE_IMAGE=mailroom-base:bookworm -t mailroom-postgres deploy/images
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# No cluster from the package's install script: the entrypoint makes one in the volume on first start.
RUN mkdir -p /etc/postgresql-common/createcluster.d \
    && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/no-main-cluster.conf \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql \
    && chmod 700 /var/lib/postgresql/data

COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
# SIGINT is Postgres' fast shutdown: open sessions are ended, everything committed is already on disk.
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
