#!/usr/bin/env bash
# The Debian package as users install it (test/run_all.sh runs this last):
# builds postgresql-15-cachebust (make deb) and checks it with lintian,
# takes `make install`'s files out of the system PostgreSQL, installs the
# package with apt-get, runs pg_regress (debian/tests/installcheck, as
# autopkgtest does) and one TAP file against the installed files only,
# purges it and checks that no file of ours is left. At the end (also after
# a failure) the package is purged and this tree's `make install` is put
# back, as the suite found the system.
# Run as root, on a tree that `make` has built. PACKAGE_TAP overrides the TAP file.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)
start=$SECONDS

pkg=postgresql-15-cachebust
deb=${pkg}_$(dpkg-parsechangelog -SVersion)_$(dpkg --print-architecture).deb
libdir=$(pg_config --pkglibdir)
extdir=$(pg_config --sharedir)/extension
docdir=/usr/share/doc/$pkg
tap=${PACKAGE_TAP:-test/t/007_surface.pl}
export DEBIAN_FRONTEND=noninteractive

# Every file or directory of ours the system PostgreSQL can see.
ours() { ls -d "$libdir/cachebust.so" "$libdir/bitcode/cachebust"* "$extdir/cachebust"* "$docdir" 2>/dev/null || true; }
installed() { dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -q '^installed$'; }

work=$(mktemp -d /tmp/cachebust-package.XXXXXX)
restore() {
	if installed; then apt-get purge -y -qq "$pkg" >/dev/null; fi
	make -s -C "$src" install
}
trap restore EXIT

echo "-- make deb (build-time pg_regress skipped: the installed package is tested below)"
if ! DEB_BUILD_OPTIONS=nocheck make -s deb >"$work/deb.log" 2>&1; then
	tail -n 60 "$work/deb.log"
	exit 1
fi
dpkg -c "$deb"

echo "-- lintian (an error fails the step; warnings and the rest are shown)"
lintian --fail-on error --display-level ">=pedantic" "$deb"

echo "-- make install's files out of the way"
if installed; then apt-get purge -y -qq "$pkg" >/dev/null; fi
make -s uninstall
if [ -n "$(ours)" ]; then
	echo "left after make uninstall: $(ours)"
	exit 1
fi

echo "-- apt-get install ./$deb"
# (A copy _apt can read: apt would otherwise warn that it fetches as root.)
cp "$deb" "$work/" && chmod 644 "$work/$deb" && chmod 755 "$work"
apt-get install -y -qq --no-install-recommends "$work/$deb" >/dev/null
# Every file of ours the server can see now comes from the package.
for f in $(ours); do
	[ -d "$f" ] && continue
	owner=$(dpkg -S "$f" 2>/dev/null | cut -d: -f1)
	if [ "$owner" != "$pkg" ]; then
		echo "$f is not the package's (owner: ${owner:-none})"
		exit 1
	fi
done
dpkg -L "$pkg" >"$work/files"
for f in "$libdir/cachebust.so" "$extdir/cachebust.control" \
	$(git ls-files 'cachebust--*.sql' | sed "s|^|$extdir/|") "$docdir/README.md.gz" "$docdir/copyright"; do
	grep -qx "$f" "$work/files" || { echo "the package lacks $f"; exit 1; }
done

# The tests run in a copy of the sources without build products: the
# server can only load what the package installed.
tree=$work/tree
mkdir "$tree"
git ls-files -z --cached --others --exclude-standard | tar --null -T - --ignore-failed-read -c | tar -x -C "$tree"

status=0
echo "-- pg_regress against the installed package (debian/tests/installcheck)"
if ! (cd "$tree" && debian/tests/installcheck) >"$work/regress.log" 2>&1; then
	tail -n 80 "$work/regress.log"
	status=1
else
	grep -E '^(test |ok |not ok |#? ?All [0-9]+ tests)' "$work/regress.log" || true
fi

echo "-- $tap against the installed package"
chown -R postgres:postgres "$tree"
if ! (cd "$tree" && runuser -u postgres -- env PATH="$PATH" make -s prove PROVE_TESTS="$tap"); then
	for f in "$tree"/tmp_check/log/*.log; do
		[ -f "$f" ] && { echo "---- $f"; tail -n 60 "$f"; }
	done
	status=1
fi

echo "-- apt-get purge $pkg"
apt-get purge -y -qq "$pkg" >/dev/null
if installed || dpkg-query -W -f='${db:Status-Status}\n' "$pkg" 2>/dev/null | grep -qv '^not-installed$'; then
	echo "$pkg is still known to dpkg: $(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg")"
	status=1
fi
left=$(ours; while read -r f; do if [ -e "$f" ] && [ ! -d "$f" ]; then echo "$f"; fi; done <"$work/files")
if [ -n "$left" ]; then
	echo "left after apt-get purge: $left"
	status=1
fi

[ "$status" -eq 0 ] && rm -rf "$work" || echo "kept: $work"
echo "-- package step: $((SECONDS - start)) s"
exit $status
