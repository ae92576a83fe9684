#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# fuzz.sh SRCDIR SECONDS NAME [LIBFUZZER_OPTION...] -- what `make fuzz-*`
# runs in the build tree (tests/fuzz/include.am): fuzzes tests/fuzz/fuzz_NAME
# for SECONDS on a fresh copy of the seed corpus SRCDIR/tests/fuzz/corpus/NAME
# in tests/fuzz/NAME.corpus (new inputs it finds stay there until the next
# run), then prints libFuzzer's final figures. Inputs that crash are written
# to tests/fuzz/crash-*.
set -eu
srcdir=$1
seconds=$2
name=$3
shift 3
corpus=tests/fuzz/$name.corpus
rm -rf "$corpus"
mkdir -p "$corpus"
cp "$srcdir/tests/fuzz/corpus/$name"/* "$corpus"/
chmod u+w "$corpus"/*
cd tests/fuzz
exec "./fuzz_$name" -max_total_time="$seconds" -print_final_stats=1 "$@" "$name.corpus"
