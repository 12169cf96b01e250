#!/bin/sh
# The demo: install what is needed, build, start a local nats-server with
# JetStream, run choria-adapterd on a sample configuration, publish Choria
# registration messages and show them arriving in the stream.
#
#   tests/demo.sh [COUNT]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/_build/demo"
count=${1:-10}

missing=""
for p in $(grep -v '^#' "$top/.ci/packages"); do
	dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "== installing:$missing"
	"$top/.ci/install-deps"
fi

echo "== building in $build"
[ -x "$top/configure" ] || (cd "$top" && autoreconf -fi)
mkdir -p "$build"
cd "$build"
[ -f Makefile ] || "$top/configure" -q
make -s -j"$(nproc)" >/dev/null
make -s -j"$(nproc)" tools >/dev/null

work=$(mktemp -d /tmp/cad-demo-XXXXXX)
server_pid=""
daemon_pid=""
cleanup() {
	[ -z "$daemon_pid" ] || kill "$daemon_pid" 2>/dev/null || true
	[ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="nats://127.0.0.1:$port"
echo "== nats-server with JetStream on $url"
nats-server -a 127.0.0.1 -p "$port" -js -sd "$work/store" -l "$work/nats-server.log" &
server_pid=$!
for _ in $(seq 50); do
	tests/tools/stream-dump --create "$url" NODES 'choria.node_metadata.>' >/dev/null 2>&1 && break
	sleep 0.2
done
echo "== stream NODES captures choria.node_metadata.>"

mkdir -p "$work/modules"
for so in modules/*/.libs/*.so; do ln -sf "$build/$so" "$work/modules/"; done
sed "s|@URL@|$url|g" "$top/conf/demo.conf.in" > "$work/choria-adapterd.conf"
echo "== checking the configuration"
./choria-adapterd -t -c "$work/choria-adapterd.conf" -M "$work/modules"

echo "== starting choria-adapterd"
./choria-adapterd -c "$work/choria-adapterd.conf" -M "$work/modules" 2>"$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 50); do
	grep -q running "$work/daemon.log" && break
	sleep 0.2
done
sleep 0.3

echo "== publishing $count Choria registration messages on choria.discovery"
tests/tools/choria-publish "$url" choria.discovery "$count"
sleep 1

echo "== what arrived in the stream (first 5)"
tests/tools/stream-dump "$url" NODES 5

echo "== stopping choria-adapterd (SIGTERM)"
kill -TERM "$daemon_pid"
wait "$daemon_pid" || true
daemon_pid=""
echo "== its log"
cat "$work/daemon.log"
