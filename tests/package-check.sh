#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# package-check.sh -- build, lint, install and purge kbridge's packages from a
# `make dist` tarball (docs/testing.md "Packages"; packaging/README.md):
#   - the Debian package: dpkg-buildpackage, lintian (errors and warnings fail
#     the check; there are no overrides), dpkg -i, `kbridged --check-config`
#     on the installed /etc/kbridge/kbridge.yaml without systemd, every man
#     page installed and readable by man(1), the unit in place, then
#     dpkg --purge: the files and /etc/kbridge gone;
#   - the RPM: rpmlint on the spec (filters in packaging/rpm/kbridge.rpmlintrc,
#     each with its reason), rpmbuild -ta on the tarball with Debian's rpm,
#     and the built package's file list checked.
# Usage: tests/package-check.sh TARBALL   (make package-check passes the one
# `make dist` wrote). Needs root for dpkg -i; refuses to run when a kbridge
# package is installed already (it would be replaced, then purged).
set -eu

tarball=$(readlink -f "${1:?usage: package-check.sh kbridge-VERSION.tar.gz}")
top=$(cd "$(dirname "$0")/.." && pwd)
fail() { echo "package-check: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i / dpkg --purge)"
for tool in dpkg-buildpackage dh lintian rpmlint rpmbuild man; do
    command -v "$tool" >/dev/null || fail "$tool not found: run packaging/install-deps.sh --test"
done
if dpkg-query -W -f='${Status}' kbridge 2>/dev/null | grep -q 'install ok installed'; then
    fail "a kbridge package is installed already; remove it first (this check installs and purges its own)"
fi

work=$(mktemp -d /tmp/kbridge-package-check.XXXXXX)
installed=no
cleanup() {
    if [ "$installed" = yes ]; then dpkg --purge kbridge >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

base=$(basename "$tarball" .tar.gz)
version=${base#kbridge-}

# ---- Debian ------------------------------------------------------------------
echo "package-check: building the Debian package of $base"
tar -C "$work" -xzf "$tarball"
cp -a "$work/$base/packaging/debian" "$work/$base/debian"
(cd "$work/$base" && dpkg-buildpackage -us -uc -b >"$work/deb-build.log" 2>&1) ||
    { tail -40 "$work/deb-build.log"; fail "dpkg-buildpackage failed (log above)"; }
arch=$(dpkg --print-architecture)
deb="$work/kbridge_${version}_${arch}.deb"
[ -f "$deb" ] || fail "dpkg-buildpackage wrote no $deb"

echo "package-check: lintian"
# --fail-on error,warning: any E: or W: tag fails; I: and P: tags are shown only
lintian --fail-on error,warning --tag-display-limit 0 "$deb" "$work"/kbridge_*.changes ||
    fail "lintian found errors or warnings in the Debian package"

echo "package-check: installing $deb"
installed=yes
dpkg -i "$deb" >"$work/dpkg-install.log" 2>&1 ||
    { cat "$work/dpkg-install.log"; fail "dpkg -i failed"; }
for path in /usr/sbin/kbridged /usr/bin/kbridgectl /usr/bin/kbridge-devkafka \
    /etc/kbridge/kbridge.yaml /lib/systemd/system/kbridged.service \
    /usr/share/doc/kbridge/configuration.md /usr/share/doc/kbridge/copyright \
    /usr/share/kbridge/ui/index.html /usr/share/kbridge/monitoring/kbridge-alerts.yml; do
    [ -e "$path" ] || fail "the installed package lacks $path"
done
/usr/sbin/kbridged --check-config /etc/kbridge/kbridge.yaml ||
    fail "kbridged --check-config rejects the installed /etc/kbridge/kbridge.yaml"
/usr/sbin/kbridged --version >/dev/null || fail "kbridged --version failed"
/usr/bin/kbridgectl --help >/dev/null || fail "kbridgectl --help failed"
for page in kbridged.8 kbridgectl.8 kbridge-devkafka.1 kbridge.yaml.5; do
    name=${page%.*}
    section=${page##*.}
    man -w "$section" "$name" >/dev/null 2>&1 || fail "man cannot find $name($section)"
    [ -n "$(MANWIDTH=80 man "$section" "$name" 2>/dev/null | head -5)" ] ||
        fail "man $section $name renders nothing"
done

echo "package-check: purging"
dpkg --purge kbridge >"$work/dpkg-purge.log" 2>&1 ||
    { cat "$work/dpkg-purge.log"; fail "dpkg --purge failed"; }
installed=no
for path in /usr/sbin/kbridged /usr/bin/kbridgectl /etc/kbridge /lib/systemd/system/kbridged.service \
    /usr/share/kbridge; do
    [ ! -e "$path" ] || fail "$path is still there after dpkg --purge"
done

# ---- RPM ----------------------------------------------------------------------
echo "package-check: rpmlint on the spec"
rpmlint -r "$top/packaging/rpm/kbridge.rpmlintrc" "$work/$base/packaging/rpm/kbridge.spec" \
    >"$work/rpmlint.log" 2>&1 || { cat "$work/rpmlint.log"; fail "rpmlint found errors"; }
grep -q ' 0 errors, 0 warnings' "$work/rpmlint.log" ||
    { cat "$work/rpmlint.log"; fail "rpmlint found warnings in the spec"; }

echo "package-check: rpmbuild -ta $base.tar.gz"
# Debian's rpm has rpm's own macros but not Fedora's: the systemd and
# package-doc macros the spec uses come from systemd-rpm-macros and
# redhat-rpm-config there. Define what they expand to on Fedora. --nodeps: the
# BuildRequires name Fedora packages, which Debian's rpm database does not hold
# (the Debian equivalents are installed by install-deps.sh).
rpmbuild -ta --nodeps --define "_topdir $work/rpm" \
    --define "_unitdir /usr/lib/systemd/system" \
    --define "_pkgdocdir %{_docdir}/%{name}" \
    --define "systemd_requires %{nil}" \
    --define "systemd_post() :" --define "systemd_preun() :" \
    --define "systemd_postun_with_restart() :" \
    "$tarball" >"$work/rpm-build.log" 2>&1 ||
    { tail -40 "$work/rpm-build.log"; fail "rpmbuild failed (log above)"; }
rpm=$(ls "$work"/rpm/RPMS/*/kbridge-"$version"-*.rpm 2>/dev/null | grep -v debug | head -1)
[ -n "$rpm" ] || fail "rpmbuild wrote no kbridge-$version RPM"
rpm -qlp "$rpm" >"$work/rpm-files.txt" 2>/dev/null || fail "rpm -qlp $rpm failed"
for path in /usr/sbin/kbridged /usr/bin/kbridgectl /etc/kbridge/kbridge.yaml \
    /usr/lib/systemd/system/kbridged.service /usr/share/man/man8/kbridged.8 \
    /usr/share/doc/kbridge/README.md; do
    grep -Eqx "$path(\.gz)?" "$work/rpm-files.txt" || fail "the RPM lacks $path"
done
echo "package-check: passed ($deb and $(basename "$rpm") built, linted, the .deb installed and purged)"
