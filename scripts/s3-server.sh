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
NAME=s3 # of run_server's data dir
INSTALL="scripts/s3-server.sh install"

log() { echo "s3-server: $*" >&2; }

# free_port, retry, env_exports, run_server
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

# new_credentials makes the run's throwaway root user.
new_credentials() {
	ACCESS_KEY=onestone-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
	SECRET_KEY=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
}

start_server() {
	# Credentials through the environment, not the command line.
	ROOT_ACCESS_KEY_ID=$ACCESS_KEY ROOT_SECRET_ACCESS_KEY=$SECRET_KEY \
		"$BIN" --port "127.0.0.1:$PORT" --region "$REGION" --quiet \
		posix "$DATA/root" >"$DATA/server.log" 2>&1 &
	SERVER_PID=$!
}

# ready reports (exit 0) once the bucket can be created (or exists) and an
# object written to it and deleted.
ready() {
	local st
	st=$(s3req PUT "/$BUCKET")
	[ "$st" = 200 ] || [ "$st" = 409 ] || return 1
	st=$(s3req PUT "/$BUCKET/.ready" --data-binary ready)
	[ "$st" = 200 ] && [ "$(s3req DELETE "/$BUCKET/.ready")" = 204 ]
}

print_env() {
	local endpoint=http://127.0.0.1:$PORT
	cat <<EOF
ONESTONE_S3_ENDPOINT=$endpoint
ONESTONE_S3_BUCKET=$BUCKET
AWS_ACCESS_KEY_ID=$ACCESS_KEY
AWS_SECRET_ACCESS_KEY=$SECRET_KEY
AWS_REGION=$REGION
ONESTONE_S3_URL=s3://$BUCKET?endpoint=$endpoint&region=$REGION&use_path_style=true
EOF
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
