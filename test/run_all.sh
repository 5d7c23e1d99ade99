#!/usr/bin/env bash
# Runs the whole cachebust test suite on a Debian 12 machine:
#   the release metadata (one version number), unit tests of the core (plain,
#   then under ASan+UBSan), a bounded fuzz run of the template parser, the
#   PGXN archives (make dist builds), pg_regress on a temporary preloaded
#   instance, the TAP integration tests against real PostgreSQL and Redis
#   servers, and last the Debian package: built, installed with apt-get,
#   tested as installed, purged.
# Run as root (it installs packages and the extension) or with sudo rights.
# PostgreSQL refuses to run as root, so server tests run as `postgres` on a
# copy of the tree that user owns.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)

if [ "$(id -u)" -ne 0 ]; then
	exec sudo -E "$0" "$@"
fi

bash test/install_deps.sh

jobs=$(nproc)
export FUZZ_SECONDS=${FUZZ_SECONDS:-15}

echo "== release metadata: META.json, debian/changelog, README against the control file's version"
python3 test/check_release.py

echo "== build and install"
make -s -j"$jobs"
make -s install

echo "== unit tests"
make -s unit
echo "== unit tests under AddressSanitizer and UBSan"
make -s unit-sanitize
echo "== fuzzing (template parser, glob matcher, key slot), ${FUZZ_SECONDS}s each"
make -s fuzz
echo "== make dist: the PGXN archives hold what a build needs, and build"
bash test/check_dist.sh

# A copy the unprivileged user can write (results, tmp_check, logs).
work=$(mktemp -d /tmp/cachebust-test.XXXXXX)
cp -a "$src/." "$work/"
chown -R postgres:postgres "$work"
as_postgres() { runuser -u postgres -- env PATH="$PATH" "$@"; }

status=0
echo "== pg_regress"
if ! (cd "$work" && as_postgres make -s installcheck); then
	cat "$work/regression.diffs" 2>/dev/null || true
	status=1
fi
# CI shows only the end of what this script prints, so a failed TAP file's
# name and logs are printed again at the very end (see report_failures).
failed_tap=()
# run_tap <tree> [env...]: `make prove` in <tree>, remembering failed files.
run_tap() {
	local tree=$1; shift
	local out="$tree/prove.out"
	if (cd "$tree" && as_postgres env "$@" make -s prove PROVE_FLAGS="${PROVE_FLAGS:-}") 2>&1 | tee "$out"; [ "${PIPESTATUS[0]}" -eq 0 ]; then
		return 0
	fi
	# prove's summary names each failed file as "test/t/NNN_name.pl (Wstat: ...".
	local t
	for t in $(sed -n 's|^\(test/t/[^ ]*\.pl\) *(Wstat.*|\1|p' "$out"); do
		failed_tap+=("$tree:$t")
	done
	[ ${#failed_tap[@]} -gt 0 ] || failed_tap+=("$tree:(prove failed before its summary; see $out)")
	return 1
}
report_failures() {
	local entry tree t name f
	for entry in "${failed_tap[@]}"; do
		tree=${entry%%:*}; t=${entry#*:}
		name=$(basename "$t" .pl)
		echo "---- FAILED: $t (in $tree)"
		f="$tree/tmp_check/log/regress_log_$name"
		[ -f "$f" ] && { echo "---- $f (its not-ok lines, then the end)"; grep -n -A8 '^not ok' "$f" | head -n 80; tail -n 40 "$f"; }
		for f in "$tree"/tmp_check/log/"$name"_*.log; do
			[ -f "$f" ] && { echo "---- $f"; tail -n 40 "$f"; }
		done
	done
	for entry in "${failed_tap[@]}"; do echo "FAILED: ${entry#*:} (${entry%%:*})"; done
}

echo "== TAP integration tests"
run_tap "$work" || status=1

echo "== TAP core tests again, watch() making row triggers instead of statement triggers"
# In a tree of its own: a failed test's data directories stay for inspection.
work_rows=$(mktemp -d /tmp/cachebust-test-rows.XXXXXX)
cp -a "$src/." "$work_rows/"
chown -R postgres:postgres "$work_rows"
row_tests="test/t/001_delivery.pl test/t/003_failures.pl test/t/004_outages.pl test/t/005_isolation.pl test/t/006_lifecycle.pl test/t/007_surface.pl test/t/013_replicas.pl test/t/023_row_refresh.pl"
run_tap "$work_rows" CACHEBUST_WATCH_CAPTURE=row PROVE_TESTS="$row_tests" || status=1

# Last, since it swaps `make install`'s files for the package's (and puts
# them back when it ends).
echo "== Debian package: make deb, lintian, apt-get install, pg_regress and a TAP file against it, apt-get purge"
if ! bash test/package_test.sh; then
	status=1
fi

[ ${#failed_tap[@]} -eq 0 ] || report_failures
[ "$status" -eq 0 ] && rm -rf "$work" "$work_rows" || echo "test trees kept in $work and $work_rows"
exit $status
