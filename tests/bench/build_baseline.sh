#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# build_baseline.sh REV DIR -- build commit REV of this repository in DIR
# (DIR/src: the sources from `git archive`, DIR/build: an optimised build like
# the current one) for `make bench-regression`, which runs the benchmark
# against that build and the current one side by side. Prints DIR/build.
set -eu
rev=$1
dir=$2
top=$(cd "$(dirname "$0")/../.." && pwd)
commit=$(git -C "$top" rev-parse --verify "$rev^{commit}")
stamp="$dir/build/.kbridge-baseline-$commit"
if [ ! -f "$stamp" ]; then
    rm -rf "$dir"
    mkdir -p "$dir/src" "$dir/build"
    git -C "$top" archive "$commit" | tar -x -C "$dir/src"
    (cd "$dir/src" && ./autogen.sh) >"$dir/build.log" 2>&1
    (cd "$dir/build" && ../src/configure && make -j"$(nproc)") >>"$dir/build.log" 2>&1 || {
        echo "build_baseline.sh: building $rev failed, see $dir/build.log" >&2
        exit 1
    }
    touch "$stamp"
fi
echo "$dir/build"
