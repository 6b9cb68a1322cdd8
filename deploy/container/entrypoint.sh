#!/bin/sh
# Container entrypoint: migrate the database, then run the service.
#
#   (no arguments) or "serve ..."  rotator db upgrade, then exec rotator serve ...
#   anything else                  exec rotator <arguments> (no migration)
#
# Several replicas may start at once against one PostgreSQL database; the
# upgrade is idempotent, and one that loses the race (or finds the database
# not reachable yet) is retried a few times before the container gives up.
# ROTATOR_MIGRATE=0 skips the upgrade (when a separate job runs it).
set -eu

if [ "$#" -eq 0 ]; then
    set -- serve
fi

if [ "$1" = "serve" ] && [ "${ROTATOR_MIGRATE:-1}" != "0" ]; then
    attempt=1
    until rotator db upgrade; do
        if [ "$attempt" -ge 5 ]; then
            echo "rotator-entrypoint: database migration failed $attempt times; giving up" >&2
            exit 1
        fi
        echo "rotator-entrypoint: migration attempt $attempt failed; retrying in $((attempt * 3)) s" >&2
        sleep $((attempt * 3))
        attempt=$((attempt + 1))
    done
fi

exec rotator "$@"
