#!/usr/bin/env bash
# Installs what building and testing cachebust needs on Debian 12 (as root).
set -euo pipefail
packages=(
	build-essential clang llvm
	postgresql-15 postgresql-server-dev-15 postgresql-contrib
	libhiredis-dev libssl-dev redis-server redis-tools redis-sentinel openssl
	# the Debian package (debian/control's Build-Depends) and its checks
	debhelper postgresql-server-dev-all lintian git
	libgtest-dev libipc-run-perl faketime
	python3-django python3-django-redis python3-redis python3-psycopg2
	python3-sqlalchemy python3-dogpile.cache
	prometheus-postgres-exporter
)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The packaged services are never used: every test starts its own servers.

# Node.js for examples/node (test/t/011_node.pl): a node and npm already on
# the machine are used as they are, else Debian's (Node 18.20, npm 9.2).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends nodejs npm
fi
# The example's pinned packages, installed before the tests copy the tree
# (no package in its lock has an install script).
(cd "$(dirname "$0")/../examples/node" && npm ci --no-audit --no-fund --loglevel=error)
