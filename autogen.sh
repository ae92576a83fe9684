#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# autogen.sh -- regenerate the autotools build files from a fresh clone.
set -e
cd "$(dirname "$0")"
mkdir -p m4 build-aux
autoreconf --install --force
