#!/bin/sh
# install-deps.sh -- install what kbridge needs on Debian 12 with apt-get.
#   packaging/install-deps.sh          build and run kbridged
#   packaging/install-deps.sh --test   also the test clients and tools
# Safe to run again: it only calls apt-get when something is missing.
set -eu

BUILD="build-essential autoconf automake libtool pkg-config librdkafka-dev \
libevent-dev libqpid-proton11-dev libyaml-dev libssl-dev libsystemd-dev libcrypt-dev check"
TEST="python3 python3-pytest python3-yaml python3-stomp python3-qpid-proton \
python3-confluent-kafka kcat ruby-stomp valgrind clang clang-format"

packages="$BUILD"
case "${1:-}" in
--test) packages="$BUILD $TEST" ;;
"") ;;
*) echo "install-deps.sh: unknown option '$1' (use --test or nothing)" >&2; exit 2 ;;
esac

missing=""
for p in $packages; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
    "install ok installed") ;;
    *) missing="$missing $p" ;;
    esac
done
if [ -z "$missing" ]; then
    echo "install-deps.sh: all packages present"
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps.sh: installing$missing"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
