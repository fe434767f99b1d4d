#!/usr/bin/env bash
# A real S3-compatible object store on loopback, for tests and demos:
# Versity's S3 gateway (versitygw) over a POSIX directory, one process,
# built from the Go module proxy. docs/object-storage.md says why this
# server and not another.
#
#   scripts/s3-server.sh install  build versitygw into the cache unless it
#                                 is there; print its path
#   scripts/s3-server.sh path     print the cached binary's path; exit 1 if
#                                 it is not installed (installs nothing)
#   scripts/s3-server.sh run      start it on 127.0.0.1 (a free port, a
#                                 throwaway data dir, fresh credentials),
#                                 create the bucket, and once a write went
#                                 through print the env lines below on stdout
#                                 and close stdout; then stay until SIGTERM or
#                                 SIGINT, or until the parent process exits,
#                                 and stop the server and remove its data
#   scripts/s3-server.sh start    `run` in the background: print the env
#                                 lines as shell exports and return
#   scripts/s3-server.sh stop     stop what `start` started
#
# The env lines:
#   ONESTONE_S3_ENDPOINT=http://127.0.0.1:PORT
#   ONESTONE_S3_BUCKET=onestone
#   AWS_ACCESS_KEY_ID=...
#   AWS_SECRET_ACCESS_KEY=...
#   AWS_REGION=us-east-1
#   ONESTONE_S3_URL=s3://onestone?endpoint=...&region=us-east-1&use_path_style=true
# e.g. `eval "$(scripts/s3-server.sh start)"; ...; scripts/s3-server.sh stop`.
#
# Settings (environment):
#   S3_SERVER_CACHE  where the binary is kept
#                    (default ${XDG_CACHE_HOME:-$HOME/.cache}/onestone)
#   S3_SERVER_STATE  state of `start`/`stop` (default $TMPDIR/onestone-s3-server)
#   S3_SERVER_READY_SECS  how long `run` waits for the server (default 120)
#   TMPDIR           where the data dir goes; its file system must keep
#                    user extended attributes (ext4, xfs, btrfs do), where
#                    versitygw keeps ETags and metadata
set -euo pipefail

# The one place that names the server and its version.
SERVER_PKG=github.com/versity/versitygw/cmd/versitygw
SERVER_VERSION=v1.8.0

BUCKET=onestone
REGION=us-east-1
CACHE=${S3_SERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/onestone}
BIN=$CACHE/versitygw-$SERVER_VERSION/versitygw
STATE=${S3_SERVER_STATE:-${TMPDIR:-/tmp}/onestone-s3-server}
READY_SECS=${S3_SERVER_READY_SECS:-120}

log() { echo "s3-server: $*" >&2; }

# free_port, retry, env_exports
. "$(dirname "$0")/loopback.sh"

install() {
	if [ -x "$BIN" ]; then
		echo "$BIN"
		return
	fi
	local t0=$SECONDS dir tmp
	dir=$(dirname "$BIN")
	mkdir -p "$(dirname "$dir")"
	# Built into a temporary directory beside its place and moved there once
	# it runs: an interrupted build never passes for an installed one.
	tmp=$(mktemp -d "$dir.tmp.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	log "building versitygw $SERVER_VERSION from the Go module proxy (a few minutes the first time)"
	# CGO off: a static binary and no C compiles; GOFLAGS and GOWORK reset
	# so that the caller's settings do not reach this build. Retried: the
	# module downloads cross the network.
	CGO_ENABLED=0 GOWORK=off GOFLAGS=-buildvcs=false GOBIN="$tmp" \
		retry go install -trimpath -ldflags '-s -w' "$SERVER_PKG@$SERVER_VERSION" >&2
	if ! "$tmp/versitygw" --version >/dev/null 2>&1; then
		log "the built versitygw does not run"
		exit 1
	fi
	rm -rf "$dir"
	mv "$tmp" "$dir"
	trap - EXIT
	log "installed $BIN in $((SECONDS - t0))s"
	echo "$BIN"
}

# s3req METHOD PATH [curl args...]: a SigV4-signed request to the server;
# prints the HTTP status. (curl signs; the payload goes unsigned, which
# S3 allows, since curl 7.88 does not hash it itself.)
s3req() {
	local method=$1 path=$2
	shift 2
	curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X "$method" \
		--aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
		-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
		"$@" "http://127.0.0.1:$PORT$path" || true
}

# run_server starts the server, waits until it is ready, prints the env
# lines, and waits for a signal or for the exit of process $1 (if given).
run_server() {
	local watch_pid=${1:-}
	if [ ! -x "$BIN" ]; then
		log "versitygw is not installed: run scripts/s3-server.sh install"
		exit 3
	fi
	DATA=$(mktemp -d "${TMPDIR:-/tmp}/onestone-s3.XXXXXX")
	SERVER_PID=""
	stop_server() {
		if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
			kill -TERM "$SERVER_PID" 2>/dev/null || true
			for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
			kill -KILL "$SERVER_PID" 2>/dev/null || true
			wait "$SERVER_PID" 2>/dev/null || true
		fi
		rm -rf "$DATA"
	}
	trap stop_server EXIT
	trap 'exit 0' TERM INT HUP

	ACCESS_KEY=onestone-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
	SECRET_KEY=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
	local attempt t0=$SECONDS ready="" st
	# A port found free may be taken before the server binds it (another
	# test process starting its own): then the server exits and we retry.
	for attempt in 1 2 3; do
		PORT=$(free_port)
		mkdir -p "$DATA/root"
		# Credentials through the environment, not the command line.
		ROOT_ACCESS_KEY_ID=$ACCESS_KEY ROOT_SECRET_ACCESS_KEY=$SECRET_KEY \
			"$BIN" --port "127.0.0.1:$PORT" --region "$REGION" --quiet \
			posix "$DATA/root" >"$DATA/server.log" 2>&1 &
		SERVER_PID=$!
		# Ready when the bucket can be created (or exists) and an object
		# written to it and deleted.
		while [ $((SECONDS - t0)) -lt "$READY_SECS" ] && kill -0 "$SERVER_PID" 2>/dev/null; do
			st=$(s3req PUT "/$BUCKET")
			if [ "$st" = 200 ] || [ "$st" = 409 ]; then
				st=$(s3req PUT "/$BUCKET/.ready" --data-binary ready)
				if [ "$st" = 200 ] && [ "$(s3req DELETE "/$BUCKET/.ready")" = 204 ]; then
					ready=1
					break
				fi
			fi
			sleep 0.1
		done
		[ -n "$ready" ] && break
		if kill -0 "$SERVER_PID" 2>/dev/null; then break; fi # timed out: no retry
		wait "$SERVER_PID" 2>/dev/null || true
		log "the server exited during start (attempt $attempt):"
		tail -n 20 "$DATA/server.log" >&2
		SERVER_PID=""
		rm -rf "$DATA/root"
	done
	if [ -z "$ready" ]; then
		log "not ready after $((SECONDS - t0))s; the end of its log:"
		tail -n 40 "$DATA/server.log" >&2
		exit 1
	fi
	log "ready in $((SECONDS - t0))s on 127.0.0.1:$PORT (pid $SERVER_PID, data $DATA)"
	local endpoint=http://127.0.0.1:$PORT
	cat <<EOF
ONESTONE_S3_ENDPOINT=$endpoint
ONESTONE_S3_BUCKET=$BUCKET
AWS_ACCESS_KEY_ID=$ACCESS_KEY
AWS_SECRET_ACCESS_KEY=$SECRET_KEY
AWS_REGION=$REGION
ONESTONE_S3_URL=s3://$BUCKET?endpoint=$endpoint&region=$REGION&use_path_style=true
EOF
	exec 1>&-
	# Sleep in the background and wait for it, so that a signal runs the
	# trap at once.
	while kill -0 "$SERVER_PID" 2>/dev/null; do
		if [ -n "$watch_pid" ] && ! kill -0 "$watch_pid" 2>/dev/null; then
			exit 0
		fi
		sleep 1 &
		wait $! || true
	done
	log "the server exited; the end of its log:"
	tail -n 20 "$DATA/server.log" >&2
	exit 1
}

case ${1:-} in
install)
	install
	;;
path)
	[ -x "$BIN" ] || exit 1
	echo "$BIN"
	;;
run)
	run_server "$PPID"
	;;
start)
	# The env lines appear when the server is ready.
	detached_start '^ONESTONE_S3_URL=' bash "$0" run-detached || exit 1
	;;
run-detached)
	run_server ""
	;;
stop)
	detached_stop
	;;
*)
	sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
