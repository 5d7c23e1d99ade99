#!/usr/bin/env python3
"""Checks the release metadata against the one version number.

The control file's default_version is the version. META.json (PGXN),
debian/changelog, the package name the README installs and the Makefile's
list of SQL scripts must agree with it; META.json must also be valid against
the PGXN meta spec 1.0.0 (the parts this distribution uses), and
test/install_deps.sh must install the package's build dependencies. The library's
own version (cachebust.version()) is checked by pg_regress (sql/setup.sql).

Run from anywhere: python3 test/check_release.py. Prints TAP-like lines and
exits non-zero on any failure.
"""
import glob
import json
import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$")
# PGXN's license strings (meta spec 1.0.0), and the Debian copyright short
# name each stands for where this project could use it.
PGXN_LICENSES = {
    "agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd", "freebsd",
    "gfdl_1_2", "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1", "lgpl_3_0", "mit",
    "mozilla_1_0", "mozilla_1_1", "openssl", "perl_5", "postgresql", "qpl_1_0", "ssleay",
    "sun", "zlib", "open_source", "restricted", "unrestricted", "unknown",
}
DEBIAN_LICENSE_NAMES = {
    "unknown": "unknown", "postgresql": "PostgreSQL", "mit": "Expat", "bsd": "BSD-3-clause",
    "apache_2_0": "Apache-2.0", "gpl_2": "GPL-2", "gpl_3": "GPL-3", "agpl_3": "AGPL-3",
}
TOP_KEYS = {"name", "version", "abstract", "maintainer", "license", "provides", "meta-spec",
            "description", "generated_by", "tags", "no_index", "prereqs", "release_status",
            "resources"}
REQUIRED_KEYS = ["name", "version", "abstract", "maintainer", "license", "provides", "meta-spec"]
VERSION_RANGE = re.compile(r"^((==|!=|[<>]=?)\s*)?(\d+\.\d+\.\d+\S*)$")

results = []


def check(ok, what, detail=""):
    results.append(ok)
    print(("ok" if ok else "not ok") + f" {len(results)} - {what}" + ("" if ok or not detail else f": {detail}"))
    return ok


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def is_term(s):
    return isinstance(s, str) and len(s) >= 2 and not re.search(r"[/\\\s\x00-\x1f\x7f]", s)


def control_version():
    m = re.search(r"^default_version\s*=\s*'([^']+)'", read("cachebust.control"), re.M)
    if not m:
        check(False, "cachebust.control has a default_version")
        sys.exit(1)
    return m.group(1)


def check_meta(version):
    try:
        meta = json.loads(read("META.json"))
    except (OSError, ValueError) as e:
        check(False, "META.json is readable JSON", str(e))
        return
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    check(not missing, "META.json has every required PGXN key", f"missing {missing}")
    unknown = [k for k in meta if k not in TOP_KEYS and not re.match(r"^[xX]_.", k)]
    check(not unknown, "META.json has no key the spec does not know", f"{unknown}")
    check(meta.get("name") == "cachebust" and is_term(meta.get("name")), "META.json name is cachebust")
    check(meta.get("version") == version, "META.json version is the control file's",
          f"{meta.get('version')!r} != {version!r}")
    check(isinstance(meta.get("abstract"), str) and meta["abstract"].strip() != "", "META.json has an abstract")
    maint = meta.get("maintainer")
    check(isinstance(maint, str) and maint or
          isinstance(maint, list) and maint and all(isinstance(m, str) and m for m in maint),
          "META.json maintainer is a string or a list of strings")
    spec = meta.get("meta-spec", {})
    check(isinstance(spec, dict) and spec.get("version") == "1.0.0", "META.json follows meta-spec 1.0.0")

    lic = meta.get("license")
    names = [lic] if isinstance(lic, str) else list(lic) if isinstance(lic, (list, dict)) else []
    check(bool(names) and (isinstance(lic, dict) or all(n in PGXN_LICENSES for n in names)),
          "META.json license is one the spec knows", f"{lic!r}")

    provides = meta.get("provides", {})
    ext = provides.get("cachebust") if isinstance(provides, dict) else None
    check(isinstance(ext, dict), "META.json provides the cachebust extension")
    if isinstance(ext, dict):
        extra = [k for k in ext if k not in ("file", "version", "abstract", "docfile")
                 and not re.match(r"^[xX]_.", k)]
        check(not extra, "its entry has only the spec's keys", f"{extra}")
        check(ext.get("version") == version, "provides.cachebust.version is the control file's",
              f"{ext.get('version')!r} != {version!r}")
        check(ext.get("file") == f"cachebust--{version}.sql" and os.path.isfile(os.path.join(ROOT, ext["file"])),
              "provides.cachebust.file is the install script of that version", f"{ext.get('file')!r}")
        if "docfile" in ext:
            check(os.path.isfile(os.path.join(ROOT, ext["docfile"])), "provides.cachebust.docfile exists")
    for name, e in (provides.items() if isinstance(provides, dict) else []):
        check(is_term(name) and isinstance(e, dict) and SEMVER.match(str(e.get("version", ""))),
              f"provides.{name} has a SemVer version")

    prereqs = meta.get("prereqs", {})
    pg = prereqs.get("runtime", {}).get("requires", {}).get("PostgreSQL") if isinstance(prereqs, dict) else None
    m = VERSION_RANGE.match(pg) if isinstance(pg, str) else None
    check(bool(m) and (m.group(2) in (None, ">=")) and m.group(3) == "15.0.0",
          "META.json requires PostgreSQL >= 15 at runtime", f"{pg!r}")
    for phase, rels in (prereqs.items() if isinstance(prereqs, dict) else []):
        ok = phase in ("configure", "build", "test", "runtime", "develop") and isinstance(rels, dict) and all(
            rel in ("requires", "recommends", "suggests", "conflicts") and isinstance(reqs, dict) and all(
                r == 0 or r == "0" or isinstance(r, str) and all(VERSION_RANGE.match(p.strip()) for p in r.split(","))
                for r in reqs.values())
            for rel, reqs in rels.items())
        check(ok, f"prereqs.{phase} has the spec's shape")

    if "release_status" in meta:
        check(meta["release_status"] in ("stable", "testing", "unstable"), "META.json release_status is valid")
    if "tags" in meta:
        tags = meta["tags"]
        check(isinstance(tags, list) and tags and all(
            isinstance(t, str) and 2 <= len(t) <= 255 and not re.search(r"[/\\\x00-\x1f\x7f]", t) for t in tags),
            "META.json tags are valid")
    if "resources" in meta:
        res = meta["resources"]
        urls = [res.get("homepage")] if isinstance(res, dict) and "homepage" in res else []
        for k in ("bugtracker", "repository"):
            urls += [v for kk, v in res.get(k, {}).items() if kk in ("web", "url")] if isinstance(res, dict) else []
        check(isinstance(res, dict) and all(isinstance(u, str) and re.match(r"^[a-z+]+://", u) for u in urls),
              "META.json resources are URLs")
    return meta


def check_debian(version, meta):
    first = read("debian/changelog").splitlines()[0]
    m = re.match(r"^cachebust \(([^)]+)\) ", first)
    check(bool(m), "debian/changelog starts with a cachebust entry", first)
    deb_version = m.group(1) if m else ""
    upstream = deb_version.rsplit("-", 1)[0]
    check(upstream == version, "debian/changelog's upstream version is the control file's",
          f"{deb_version!r} for {version!r}")
    control_in = read("debian/control.in")
    check(re.search(r"^Package: postgresql-PGVERSION-cachebust$", control_in, re.M) is not None,
          "debian/control.in builds postgresql-PGVERSION-cachebust")
    pgversions = [v.strip() for v in read("debian/pgversions").splitlines() if v.strip() and not v.startswith("#")]
    check(pgversions == ["15"], "debian/pgversions is 15", f"{pgversions}")

    # test/install_deps.sh installs every build dependency (make deb on a fresh machine).
    m = re.search(r"^Build-Depends:((?:\n .*)+)", read("debian/control"), re.M)
    build_deps = {re.sub(r"[\s(<\[].*", "", d.strip()) for d in (m.group(1) if m else "").split(",") if d.strip()}
    build_deps = {"debhelper" if d == "debhelper-compat" else d for d in build_deps}
    deps_script = read("test/install_deps.sh")
    listed = set(re.findall(r"[a-z0-9][a-z0-9.+-]+", deps_script[deps_script.find("packages=("):deps_script.find("\n)")]))
    check(bool(build_deps) and build_deps <= listed, "test/install_deps.sh installs debian/control's Build-Depends",
          f"missing {sorted(build_deps - listed)}")

    # The README's apt line names the package this changelog builds.
    names = re.findall(r"postgresql-\d+-cachebust_([0-9][^_\s]*)_", read("README.md"))
    check(bool(names) and all(n == deb_version for n in names),
          "README installs the .deb of this version", f"{sorted(set(names))} for {deb_version!r}")

    archives = re.findall(r"cachebust-(\d[^\s`/]*?)\.(?:zip|tar\.gz)", read("README.md"))
    check(all(a == version for a in archives), "README names the PGXN archives of this version",
          f"{sorted(set(archives))} for {version!r}")

    # One license, said the same way in META.json, debian/copyright and the tree.
    lic = meta.get("license") if meta else None
    licenses = set(re.findall(r"^License: (\S+)", read("debian/copyright"), re.M))
    check(isinstance(lic, str) and licenses == {DEBIAN_LICENSE_NAMES.get(lic, "?")},
          "debian/copyright's license is META.json's", f"{lic!r} vs {sorted(licenses)}")
    has_file = any(os.path.exists(os.path.join(ROOT, f)) for f in ("LICENSE", "LICENSE.md", "COPYING"))
    check(has_file == (lic != "unknown"), "a license file exists exactly when META.json names a license")


def check_scripts(version):
    # Every script in the tree is installed (make install, the .deb, PGXN).
    makefile = read("Makefile").replace("\\\n", " ")
    m = re.search(r"^DATA\s*=\s*(.*)$", makefile, re.M)
    data = set(m.group(1).split()) if m else set()
    scripts = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "cachebust--*.sql"))}
    check(scripts == data, "the Makefile's DATA is every cachebust--*.sql",
          f"not installed {sorted(scripts - data)}, missing {sorted(data - scripts)}")
    check(f"cachebust--{version}.sql" in scripts, "an install script exists for the control file's version")


def main():
    version = control_version()
    check(bool(SEMVER.match(version)), f"the control file's version {version} is SemVer (PGXN needs it)")
    meta = check_meta(version)
    check_debian(version, meta)
    check_scripts(version)
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
