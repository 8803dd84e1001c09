#!/usr/bin/env bash
# The Debian packages the test suite needs: quiet when all are present; as root, installs the
# missing ones; otherwise stops at once with the command to run.
#
#   scripts/system-packages.sh           check, and install what is missing when run as root
#   scripts/system-packages.sh --check   check only, never install
#
# EVENTFLOW_PACKAGE_PROBES overrides what is probed, as space-separated `package=probe` pairs; a
# probe with a slash is a path that must be executable, anything else a command on PATH.
set -euo pipefail

probes=${EVENTFLOW_PACKAGE_PROBES:-"postgresql-15=/usr/lib/postgresql/15/bin/postgres
    redis-server=redis-server chromium=/usr/bin/chromium wrk=wrk docker-compose=docker-compose
    systemd=systemd-analyze nginx=/usr/sbin/nginx sqlite3=sqlite3 nodejs=node npm=npm"}

check_only=false
case "${1:-}" in
    "") ;;
    --check) check_only=true ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

missing_packages() {
    local pair package probe
    for pair in $probes; do
        package=${pair%%=*}
        probe=${pair#*=}
        # With a URL the tests use that server; the few that start their own anyway (crash
        # tests) are then reported by the test run itself.
        case $package in
            postgresql-15) [[ -z ${EVENTFLOW_TEST_DATABASE_URL:-} ]] || continue ;;
            redis-server) [[ -z ${EVENTFLOW_TEST_REDIS_URL:-} ]] || continue ;;
        esac
        if [[ $probe == */* ]]; then
            [[ -x $probe ]] || echo "$package"
        else
            command -v "$probe" >/dev/null 2>&1 || echo "$package"
        fi
    done
}

missing=$(missing_packages)
missing=${missing//$'\n'/ }
[[ -z $missing ]] && exit 0

hint="(Instead of postgresql-15 and redis-server, the tests can use existing servers: set
EVENTFLOW_TEST_DATABASE_URL / EVENTFLOW_TEST_REDIS_URL, e.g. postgresql://user@host:5432/db and
redis://host:6379/0.)"

if ! command -v apt-get >/dev/null 2>&1; then
    echo "The test suite needs these Debian packages, and apt-get is not available: $missing" >&2
    echo "Install their equivalents with your system's package manager." >&2
    echo "$hint" >&2
    exit 1
fi

if $check_only || [[ $EUID -ne 0 ]]; then
    echo "The test suite needs system packages that are missing: $missing" >&2
    echo "Install them with:" >&2
    echo "" >&2
    echo "    sudo apt-get install -y $missing" >&2
    echo "" >&2
    echo "$hint" >&2
    exit 1
fi

echo "installing missing system packages: $missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update </dev/null
# shellcheck disable=SC2086 # $missing is a list of package names, split on purpose
apt-get install -y --no-install-recommends $missing </dev/null

still_missing=$(missing_packages)
if [[ -n $still_missing ]]; then
    echo "still missing after apt-get install: ${still_missing//$'\n'/ }" >&2
    exit 1
fi
