#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# run-suite.sh -- build kbridge and run the whole test suite: Check unit tests
# (make check), the pytest integration suite (make integration) and, in the
# plain build, make distcheck. (.ci/run adds make package-check.)
#   tests/run-suite.sh               plain build in build/plain, -Werror
#   tests/run-suite.sh --sanitizers  ASan+UBSan build in build/sanitizers
#   tests/run-suite.sh --tsan        ThreadSanitizer build in build/tsan
# Set KBRIDGE_TEST_BOOTSTRAP=host:port to run against an external Kafka.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)

variant=plain
configure_flags="--enable-werror"
case "${1:-}" in
--sanitizers)
    variant=sanitizers
    configure_flags="--enable-werror --enable-sanitizers"
    ;;
--tsan)
    variant=tsan
    configure_flags="--enable-werror --enable-tsan"
    ;;
"") ;;
*) echo "run-suite.sh: unknown option '$1' (use --sanitizers, --tsan or nothing)" >&2; exit 2 ;;
esac

jobs=$(nproc 2>/dev/null || echo 2)
# The integration tests spend most of their time waiting (group joins,
# deadlines), so they run on as many pytest-xdist workers as there are cores;
# each worker has its own kbridge-devkafka and every test its own kbridged
# and ephemeral ports. --durations lists the slowest in the log.
pytest_workers="-n $jobs --durations=15"
[ -x configure ] || ./autogen.sh
mkdir -p "build/$variant"
cd "build/$variant"
[ -f Makefile ] || "$top/configure" $configure_flags
make -j"$jobs"
if [ "$variant" = sanitizers ]; then
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=23"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    export LSAN_OPTIONS="suppressions=$top/tests/lsan.supp"
    make check
    # valgrind cannot run an ASan binary; the plain run covers it.
    make integration PYTEST_ARGS="$pytest_workers -m 'not valgrind'"
elif [ "$variant" = tsan ]; then
    # The first race stops the process with exit code 66, which the unit test
    # or the integration test that ran it reports. tests/tsan.supp says why
    # each suppressed report is not kbridge's (docs/testing.md).
    export TSAN_OPTIONS="suppressions=$top/tests/tsan.supp:halt_on_error=1:exitcode=66:second_deadlock_stack=1"
    make check
    # valgrind cannot run a TSan binary either.
    make integration PYTEST_ARGS="$pytest_workers -m 'not valgrind'"
else
    make format-check
    make check
    make integration PYTEST_ARGS="$pytest_workers"
    make distcheck DISTCHECK_CONFIGURE_FLAGS="--enable-werror"
fi
echo "run-suite.sh: $variant suite passed"
