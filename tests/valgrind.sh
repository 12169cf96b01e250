#!/bin/sh
# The daemon under valgrind's memcheck: a local nats-server, a few hundred
# signed requests verified against a CA and written by the file stream,
# three reloads (one that adds an adapter and changes the first, one of a
# file that does not parse, one back to the first file), as many requests
# again, then SIGTERM. Passes when every message arrived, the daemon
# stopped cleanly, and memcheck saw no error and no definite leak.
#
#   tests/valgrind.sh BUILD [COUNT]
#
# BUILD is a build folder without sanitizers (memcheck and ASan cannot
# share a process); its tools are built if needed. The daemon's log and
# memcheck's report stay in BUILD/valgrind/.
set -eu
build=$(cd "$1" && pwd)
count=${2:-300}
work="$build/valgrind"

make -C "$build" -s tools >/dev/null
rm -rf "$work"
mkdir -p "$work/modules"
for so in "$build"/modules/*/.libs/*.so; do ln -s "$so" "$work/modules/"; done

server_pid=""
daemon_pid=""
cleanup() {
	[ -z "$daemon_pid" ] || kill -KILL "$daemon_pid" 2>/dev/null || true
	[ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
	wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# Wait up to $1 tenths of a second for the command that follows.
wait_for() {
	n=$1
	shift
	while ! "$@" 2>/dev/null; do
		n=$((n - 1))
		[ "$n" -gt 0 ] || return 1
		sleep 0.1
	done
}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="nats://127.0.0.1:$port"
nats-server -a 127.0.0.1 -p "$port" -l "$work/nats-server.log" &
server_pid=$!

"$build/tests/tools/choria-publish" --pki "$work"
# The configuration: node_data with $1 ingest workers, and the block $2.
write_conf() {
	cat >"$work/next.conf" <<EOF
identity = "valgrind"
adapter node_data {
    ingest {
        type     = "choria"
        servers  = {"$url"}
        topic    = "choria.discovery"
        protocol = "request"
        workers  = $1
        security = "verify"
        ca       = "$work/ca.pem"
    }
    stream {
        type = "file"
        path = "$work/messages.jsonl"
    }
}
${2:-}
EOF
	mv "$work/next.conf" "$work/choria-adapterd.conf"
}
write_conf 2

libtool="$build/libtool"
"$libtool" --mode=execute valgrind --tool=memcheck --error-exitcode=99 \
	--leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
	--num-callers=30 --log-file="$work/memcheck.log" \
	"$build/choria-adapterd" -c "$work/choria-adapterd.conf" -M "$work/modules" \
	2>"$work/daemon.log" &
daemon_pid=$!

running() { grep -q ' running ' "$work/daemon.log"; }
if ! wait_for 1200 running; then
	echo "the daemon did not start under valgrind: see $work/daemon.log"
	exit 1
fi
"$build/tests/tools/choria-publish" "$url" choria.discovery "$count" request "$work" >/dev/null

arrived() { [ "$(wc -l <"$work/messages.jsonl")" -ge "$count" ]; }
if ! wait_for 3000 arrived; then
	echo "$(wc -l <"$work/messages.jsonl" 2>/dev/null || echo 0) of $count messages arrived:" \
		"see $work/daemon.log"
	exit 1
fi

# Write the file (`write_conf ARGS`, or one that does not parse for
# "broken"), send SIGHUP, and wait for the N-th log line VERDICT.
reload() {
	verdict=$1
	nth=$2
	shift 2
	if [ "$1" = "broken" ]; then
		echo "adapter {" >"$work/choria-adapterd.conf"
	else
		write_conf "$@"
	fi
	kill -HUP "$daemon_pid"
	reloaded() { [ "$(grep -c "$verdict" "$work/daemon.log")" -ge "$nth" ]; }
	if ! wait_for 1200 reloaded; then
		echo "reload $nth ($verdict) did not end under valgrind: see $work/daemon.log"
		exit 1
	fi
}
reload "configuration reloaded" 1 1 "adapter extra {
    ingest { type = \"choria\" servers = {\"$url\"} topic = \"choria.extra\" security = \"none\" }
    stream { type = \"file\" path = \"$work/extra.jsonl\" }
}"
reload "reload of" 1 broken
reload "configuration reloaded" 2 2
"$build/tests/tools/choria-publish" "$url" choria.discovery "$count" request "$work" >/dev/null
count=$((count * 2))
if ! wait_for 3000 arrived; then
	echo "$(wc -l <"$work/messages.jsonl" 2>/dev/null || echo 0) of $count messages arrived" \
		"after the reloads: see $work/daemon.log"
	exit 1
fi

kill -TERM "$daemon_pid"
rc=0
wait "$daemon_pid" || rc=$?
daemon_pid=""
if [ "$rc" -ne 0 ]; then
	echo "the daemon exited with $rc under valgrind: see $work/memcheck.log"
	grep -E 'ERROR SUMMARY|definitely lost' "$work/memcheck.log" || true
	exit 1
fi
if ! grep -q 'ERROR SUMMARY: 0 errors' "$work/memcheck.log"; then
	echo "memcheck found errors: see $work/memcheck.log"
	exit 1
fi
echo "$count verified messages across three reloads, no memcheck error, no definite leak"
