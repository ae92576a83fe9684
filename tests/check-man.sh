#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# check-man.sh -- every manual page in man/ renders with groff's mdoc macros
# without a single warning (make check). groff-base comes with Debian's
# man-db; packaging/install-deps.sh --test installs it where it is missing.
set -eu
top="${srcdir:-.}"
status=0
for page in "$top"/man/*.[1-9]; do
    out=$(LC_ALL=C.UTF-8 groff -mdoc -ww -z -Tutf8 "$page" 2>&1) || status=1
    if [ -n "$out" ]; then
        echo "check-man.sh: $page: $out" >&2
        status=1
    fi
done
exit $status
