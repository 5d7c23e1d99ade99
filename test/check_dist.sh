#!/usr/bin/env bash
# `make dist` (PGXN archives from git archive of HEAD): the .tar.gz and the
# .zip hold the same files, exactly what building, installing and
# `make installcheck` need, and the unpacked tarball builds and installs
# (into a staging directory, not the system).
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" cachebust.control)
dist=cachebust-$version
work=$(mktemp -d /tmp/cachebust-dist.XXXXXX)
trap 'rm -rf "$work"' EXIT

make -s dist
failed=0
fail() { echo "not ok - $*"; failed=1; }

tar -tzf "$dist.tar.gz" | grep -v '/$' | sort >"$work/tar.list"
unzip -Z1 "$dist.zip" | grep -v '/$' | sort >"$work/zip.list"
cmp -s "$work/tar.list" "$work/zip.list" || fail "the .zip and the .tar.gz hold different files"

# Every file under the archive's one top directory, and no other kind.
expected_re="^$dist/(Makefile|cachebust\.control|cachebust--[0-9.]+(--[0-9.]+)?\.sql|META\.json|README\.md|test/regress\.conf|src/(core|pg)/.+\.(cpp|hpp)|sql/[a-z_]+\.sql|expected/[a-z_]+\.out)$"
if grep -Ev "$expected_re" "$work/tar.list" >"$work/extra"; then
	fail "files a build does not need: $(tr '\n' ' ' <"$work/extra")"
fi
for f in $(git ls-files 'cachebust--*.sql' cachebust.control Makefile META.json 'src/*.cpp' 'src/*.hpp' 'sql/*.sql' 'expected/*.out' test/regress.conf); do
	grep -qx "$dist/$f" "$work/tar.list" || fail "missing from the archive: $f"
done

tar -xzf "$dist.tar.gz" -C "$work"
if make -s -C "$work/$dist" -j"$(nproc)" >"$work/build.log" 2>&1 &&
	make -s -C "$work/$dist" install DESTDIR="$work/stage" >>"$work/build.log" 2>&1; then
	for f in "$(pg_config --pkglibdir)/cachebust.so" "$(pg_config --sharedir)/extension/cachebust.control" \
		$(git ls-files 'cachebust--*.sql' | sed "s|^|$(pg_config --sharedir)/extension/|"); do
		[ -f "$work/stage$f" ] || fail "the archive's make install does not install $f"
	done
else
	tail -n 30 "$work/build.log"
	fail "the unpacked $dist.tar.gz does not build and install"
fi

rm -f "$dist.tar.gz" "$dist.zip"
[ "$failed" -eq 0 ] && echo "ok - make dist: $dist.tar.gz and .zip ($(wc -l <"$work/tar.list") files) build and install"
exit "$failed"
