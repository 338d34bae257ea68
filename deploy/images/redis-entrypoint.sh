#!/bin/sh
# Like the official image: `redis-server …` without a config file runs with protected mode off (the container
# network is the boundary; with no password, protected mode would answer only loopback).
set -eu
if [ "${1:-redis-server}" = redis-server ]; then
    [ "$#" -gt 0 ] && shift
    set -- redis-server --protected-mode no "$@"
fi
exec "$@"
