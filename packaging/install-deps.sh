#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# install-deps.sh -- install what kbridge needs on Debian 12 with apt-get.
#   packaging/install-deps.sh          build and run kbridged
#   packaging/install-deps.sh --test   also the test clients and tools
# Safe to run again: it only calls apt-get when something is missing.
set -eu

BUILD="build-essential autoconf automake libtool pkg-config librdkafka-dev \
libevent-dev libqpid-proton11-dev libyaml-dev libjansson-dev librabbitmq-dev libssl-dev libsystemd-dev libcrypt-dev \
libjemalloc-dev libwslay-dev check"
TEST="python3 python3-pytest python3-pytest-xdist python3-yaml python3-stomp python3-qpid-proton \
python3-confluent-kafka python3-pika kcat ruby-stomp valgrind clang libclang-rt-14-dev clang-format openssl chromium python3-websocket \
ruby-bunny amqp-tools librabbitmq-client-java default-jdk-headless golang-go golang-github-rabbitmq-amqp091-go-dev \
php-cli php-amqplib rabbitmq-server activemq groff-base"
# tests/package-check.sh (make package-check): build, lint, install and purge the packages
PACKAGING="dpkg-dev debhelper lintian rpm rpmlint man-db"

packages="$BUILD"
case "${1:-}" in
--test) packages="$BUILD $TEST $PACKAGING" ;;
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
# Node.js and npm run the rhea (AMQP) test client; a node from elsewhere will do.
if [ "${1:-}" = "--test" ]; then
    command -v node >/dev/null 2>&1 || missing="$missing nodejs"
    command -v npm >/dev/null 2>&1 || missing="$missing npm"
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ -z "$missing" ]; then
    echo "install-deps.sh: all packages present"
else
    echo "install-deps.sh: installing$missing"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi
# The Node.js test clients (version pinned in package.json), from npm's registry.
if [ "${1:-}" = "--test" ]; then
    clients="$(cd "$(dirname "$0")/.." && pwd)/tests/integration/clients"
    if [ ! -d "$clients/node_modules/rhea" ] || [ ! -d "$clients/node_modules/@stomp/stompjs" ]; then
        echo "install-deps.sh: npm install in $clients"
        (cd "$clients" && npm ci --no-audit --no-fund --loglevel=error)
    fi
fi
