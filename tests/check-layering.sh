#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# check-layering.sh -- the layering of docs/architecture.md "Layers and
# layout", checked on the sources (make check). The per-folder include paths
# (DAEMON_CPPFLAGS, ADAPTER_CPPFLAGS, STOMP_CPPFLAGS, AMQP_CPPFLAGS) already
# make `#include "stomp_frame.h"` fail to compile under daemon/; this also
# refuses the spellings an include path cannot stop ("../adapters/...",
# "stomp/stomp_frame.h"). Every quoted include of a file must name, without a
# folder, a header of a folder that file may see:
#   daemon/*          daemon/, and adapters/adapter.h (the adapter contract)
#   adapters/*        daemon/, adapters/
#   adapters/NAME/*   daemon/, adapters/, adapters/NAME/
# and only daemon/kafka*.[ch] include librdkafka or kafka_internal.h.
set -eu
top=${srcdir:-$(dirname "$0")/..}
cd "$top"
status=0

check() { # check FILE DIR... -- FILE's quoted includes are headers in DIRs
    file=$1
    shift
    sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file" |
        while read -r name; do
            [ "$name" = build-config.h ] && continue
            ok=no
            case $name in
            */*) ;;
            *) for dir in "$@"; do
                   if [ "$dir" = adapters/adapter.h ]; then
                       [ "$name" = adapter.h ] && ok=yes
                   elif [ -f "$dir/$name" ]; then
                       ok=yes
                   fi
               done ;;
            esac
            if [ $ok = no ]; then
                echo "check-layering: $file includes \"$name\", outside $*" >&2
                echo x
            fi
        done
}

out=$(
    for f in daemon/*.c daemon/*.h; do check "$f" daemon adapters/adapter.h; done
    for f in adapters/*.c adapters/*.h; do check "$f" daemon adapters; done
    for d in adapters/*/; do
        d=${d%/}
        for f in "$d"/*.c "$d"/*.h; do
            [ -f "$f" ] && check "$f" daemon adapters "$d"
        done
    done
)
[ -z "$out" ] || status=1
# librdkafka is the Kafka layer's alone (architecture "Kafka layer"): only
# daemon/kafka*.[ch] include <librdkafka/...> or kafka_internal.h.
for f in daemon/*.c daemon/*.h adapters/*.c adapters/*.h adapters/*/*.c adapters/*/*.h; do
    [ -f "$f" ] || continue
    case $f in daemon/kafka*) continue ;; esac
    if grep -Eq '^[[:space:]]*#[[:space:]]*include[[:space:]]*(<librdkafka/|"kafka_internal\.h")' "$f"; then
        echo "check-layering: $f includes librdkafka or kafka_internal.h (only daemon/kafka*.c may)" >&2
        status=1
    fi
done
# The engines sit below the core (architecture "Engines"): what they need of
# it comes through engine.h's engine_context, never core_internal.h.
for f in daemon/queue.c daemon/queue_state.c daemon/topic.c daemon/engine.c daemon/engine.h; do
    [ -f "$f" ] || continue
    if grep -Eq '^[[:space:]]*#[[:space:]]*include[[:space:]]*"core_internal\.h"' "$f"; then
        echo "check-layering: $f includes core_internal.h (engines reach the core only through engine.h)" >&2
        status=1
    fi
done
[ $status = 0 ] && echo "check-layering: daemon/ and adapters/ include only what their layer may see"
exit $status
