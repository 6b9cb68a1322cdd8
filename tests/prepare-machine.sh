#!/usr/bin/env bash
# Makes this machine ready for the test suite; `make test` runs it first, so the
# README's test command works on a fresh machine with only Python, make and apt-get.
#
# - System tools the suite uses: installed with apt-get when missing and running as
#   root; otherwise it stops at once with the exact command to run.
# - PostgreSQL on 127.0.0.1:5432 (or ROTATOR_TEST_POSTGRES_URL's server): started
#   when its cluster is installed here but down. A server is not installed: which
#   user and authentication it takes is the machine owner's choice.
#
# The suite does not skip a test whose tool is missing: it fails. This script is
# where the tool comes from.
set -euo pipefail

# command on PATH -> Debian package that provides it
tools=(
  "chromium:chromium"                 # renders the HTML report (tests/alerts)
  "shellcheck:shellcheck"             # lints the deploy scripts (tests/deploy)
  "systemd-analyze:systemd"           # verifies the systemd unit (tests/deploy)
  "pg_isready:postgresql-client"      # waits for PostgreSQL below
  "promtool:prometheus"               # checks and unit-tests the alert rules, and the
                                      # server runs one test (tests/deploy, tests/service);
                                      # its systemd service is not used
)

missing=()
for entry in "${tools[@]}"; do
  command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry#*:}")
done

apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "The test suite needs these system packages: $*" >&2
    echo "Install them, then run make test again:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y $*" >&2
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "The test suite needs these Debian packages (or their equivalents): $*" >&2
    echo "This machine has no apt-get: install them with its package manager." >&2
    exit 1
  fi
  echo "Installing system packages the test suite uses: $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

# The suite starts its own Prometheus on a free loopback port with temporary storage;
# the service the package sets up is not wanted (and would hold port 9090).
if [[ " ${missing[*]-} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi

# PostgreSQL: the suite runs every store test on it as well as on SQLite.
pg_host=127.0.0.1
pg_port=5432
if [ -n "${ROTATOR_TEST_POSTGRES_URL:-}" ]; then
  # postgresql+psycopg://user@host:port/db -> host, port
  hostport=$(printf '%s' "$ROTATOR_TEST_POSTGRES_URL" | sed -E 's#^[^/]*//([^@/]*@)?([^/?]*).*#\2#')
  pg_host=${hostport%%:*}
  [ "$hostport" = "$pg_host" ] || pg_port=${hostport##*:}
fi

if ! pg_isready -h "$pg_host" -p "$pg_port" -q; then
  if [ "$pg_host" = 127.0.0.1 ] || [ "$pg_host" = localhost ]; then
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$version" ]; then
      echo "Starting PostgreSQL $version"
      pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    fi
    for _ in $(seq 1 30); do
      pg_isready -h "$pg_host" -p "$pg_port" -q && break
      sleep 1
    done
  fi
fi
if ! pg_isready -h "$pg_host" -p "$pg_port" -q; then
  echo "PostgreSQL is not reachable at $pg_host:$pg_port; the suite needs it." >&2
  echo "Start it (pg_ctlcluster <version> main start), or set ROTATOR_TEST_POSTGRES_URL" >&2
  echo "to a server where this user may CREATE DATABASE." >&2
  exit 1
fi
