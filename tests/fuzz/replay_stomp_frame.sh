#!/bin/sh
# replay_stomp_frame.sh -- `make check` test: replays the STOMP frame fuzz seed
# corpus through tests/fuzz/replay_stomp_frame (the fuzz target linked with
# replay_main.c instead of libFuzzer). Any mismatch or crash aborts it.
set -eu
exec ./tests/fuzz/replay_stomp_frame "${srcdir:-.}/tests/fuzz/corpus/stomp_frame"
