#!/bin/sh
# The image's entrypoint: before the Dagster daemon (which starts every run) comes up, create the
# pools the platform's steps use on the instance (`sensor-platform init-instance`, idempotent), so
# that no first use of a pool races to create it. Every other command runs as given.
set -e
if [ "$1" = "dagster-daemon" ]; then
    sensor-platform init-instance
fi
exec "$@"
