#!/usr/bin/env bash
# GCS and Azure Blob emulators on loopback, for tests and demos, as
# scripts/s3-server.sh is for S3: fake-gcs-server (built from the Go
# module proxy) and Microsoft's Azurite (from the npm registry).
# docs/object-storage.md says why these and how fast they start.
#
#   scripts/emulator.sh gcs|azure install  install it into the cache
#                                          unless it is there; print its path
#   scripts/emulator.sh gcs|azure path     print the installed path; exit 1
#                                          if it is not installed
#   scripts/emulator.sh gcs|azure run      start it on 127.0.0.1 (a free
#                                          port, throwaway data, fresh
#                                          credentials for Azure), create
#                                          the bucket, print the env lines
#                                          below once it answers, close
#                                          stdout, and stay until SIGTERM
#                                          or SIGINT or the parent's exit
#   scripts/emulator.sh gcs|azure start    `run` in the background: print
#                                          the env lines as shell exports
#   scripts/emulator.sh gcs|azure stop     stop what `start` started
#
# The env lines, gcs:
#   ONESTONE_GCS_ENDPOINT=http://127.0.0.1:PORT
#   ONESTONE_GCS_BUCKET=onestone
#   ONESTONE_GCS_URL=gs://onestone?endpoint=http://127.0.0.1:PORT
# azure:
#   ONESTONE_AZURE_ENDPOINT=http://127.0.0.1:PORT
#   ONESTONE_AZURE_CONTAINER=onestone
#   AZURE_STORAGE_ACCOUNT=...
#   AZURE_STORAGE_KEY=...
#   ONESTONE_AZURE_URL=azblob://onestone?domain=127.0.0.1:PORT&protocol=http&localemu=true
#
# Settings (environment):
#   S3_SERVER_CACHE  where the servers are kept, shared with s3-server.sh
#                    (default ${XDG_CACHE_HOME:-$HOME/.cache}/onestone)
#   EMULATOR_STATE   state of `start`/`stop`
#                    (default $TMPDIR/onestone-emulator-PROVIDER)
#   EMULATOR_READY_SECS  how long `run` waits for the server (default 180)
set -euo pipefail

# The one place that names the emulators and their versions: here for
# fake-gcs-server; for Azurite, scripts/azurite/package.json, whose
# package-lock.json pins Azurite's whole dependency tree, so that a
# dependency's new release cannot change what the tests run on, nor ask
# for a newer Node.js (3.35 is the newest Azurite that takes Node.js 20,
# the machine's; 3.36 and later ask for 22).
GCS_PKG=github.com/fsouza/fake-gcs-server
GCS_VERSION=v1.56.1
AZURITE_DIR=$(dirname "$0")/azurite
AZURITE_VERSION=$(sed -n 's/^ *"azurite": "\(.*\)".*/\1/p' "$AZURITE_DIR/package.json")
# The installed tree is named after the lock file's contents: a changed
# lock installs anew.
AZURITE_TREE=azurite-$AZURITE_VERSION-$(sha256sum "$AZURITE_DIR/package-lock.json" | cut -c1-12)

BUCKET=onestone
PROVIDER=${1:-}
CMD=${2:-}
CACHE=${S3_SERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/onestone}
STATE=${EMULATOR_STATE:-${TMPDIR:-/tmp}/onestone-emulator-$PROVIDER}
READY_SECS=${EMULATOR_READY_SECS:-180}
NAME=$PROVIDER # of run_server's data dir
INSTALL="scripts/emulator.sh $PROVIDER install"

log() { echo "emulator($PROVIDER): $*" >&2; }

# free_port, retry, env_exports, run_server
. "$(dirname "$0")/loopback.sh"

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
	exit 2
}

case $PROVIDER in
gcs) BIN=$CACHE/fake-gcs-server-$GCS_VERSION/fake-gcs-server ;;
azure) BIN=$CACHE/$AZURITE_TREE/node_modules/.bin/azurite-blob ;;
*) usage ;;
esac

# need_node makes sure of Node.js 20 or later and npm: the machine's, or
# else Debian's.
need_node() {
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
		log "Node.js or npm is missing: installing Debian's nodejs and npm"
		retry apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive retry apt-get install -y -qq nodejs npm >&2
	fi
	local major
	major=$(node -p 'process.versions.node.split(".")[0]')
	if [ "$major" -lt 20 ]; then
		log "Node.js $(node --version) is too old: Azurite's pinned dependencies need 20 or later"
		exit 1
	fi
}

# install builds or installs the emulator into a temporary directory
# beside its place and moves it there once it is whole and runs: a broken
# or interrupted install never passes for an installed one. Network steps
# are retried.
install() {
	if [ -x "$BIN" ]; then
		echo "$BIN"
		return
	fi
	local t0=$SECONDS dir tmp
	case $PROVIDER in
	gcs) dir=$(dirname "$BIN") ;;
	azure) dir=$CACHE/$AZURITE_TREE ;;
	esac
	mkdir -p "$CACHE"
	tmp=$(mktemp -d "$dir.tmp.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	case $PROVIDER in
	gcs)
		log "building fake-gcs-server $GCS_VERSION from the Go module proxy (minutes the first time)"
		CGO_ENABLED=0 GOWORK=off GOFLAGS=-buildvcs=false GOBIN="$tmp" \
			retry go install -trimpath -ldflags '-s -w' "$GCS_PKG@$GCS_VERSION" >&2
		if ! "$tmp/fake-gcs-server" -help >/dev/null 2>&1; then
			log "the built fake-gcs-server does not run"
			exit 1
		fi
		;;
	azure)
		need_node
		log "installing azurite $AZURITE_VERSION from the npm registry (the tree scripts/azurite/package-lock.json pins)"
		cp "$AZURITE_DIR/package.json" "$AZURITE_DIR/package-lock.json" "$tmp/"
		# No install scripts: Azurite's tree has none to run.
		(cd "$tmp" && retry npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
			--loglevel=error --fetch-retries=4 >&2)
		local v
		v=$("$tmp/node_modules/.bin/azurite-blob" --version 2>&1) || true
		if [ "$v" != "$AZURITE_VERSION" ]; then
			log "the installed azurite-blob does not run (--version said: $v)"
			exit 1
		fi
		;;
	esac
	rm -rf "$dir"
	mv "$tmp" "$dir"
	trap - EXIT
	log "installed $BIN in $((SECONDS - t0))s"
	echo "$BIN"
}

# azreq METHOD PATH QUERY: a request to Azurite signed with the account's
# shared key (the scheme of Azure Storage's "Authorize with Shared Key");
# prints the HTTP status. PATH is /CONTAINER[/BLOB]; QUERY is k:v lines
# of the canonicalized query, e.g. "restype:container".
azreq() {
	local method=$1 path=$2 query=$3 date version=2021-08-06 sts sig url
	date=$(LC_ALL=C TZ=GMT date '+%a, %d %b %Y %H:%M:%S GMT')
	sts="$method"$'\n\n\n\n\n\n\n\n\n\n\n\n'"x-ms-date:$date"$'\n'"x-ms-version:$version"$'\n'"/$ACCOUNT/$ACCOUNT$path"
	url="http://127.0.0.1:$PORT/$ACCOUNT$path"
	if [ -n "$query" ]; then
		sts+=$'\n'"$query"
		url+="?${query/:/=}"
	fi
	sig=$(printf '%s' "$sts" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$(printf '%s' "$KEY" | base64 -d | od -An -tx1 | tr -d ' \n')" -binary | base64 -w0)
	curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X "$method" \
		-H "x-ms-date: $date" -H "x-ms-version: $version" -H 'Content-Length: 0' \
		-H "Authorization: SharedKey $ACCOUNT:$sig" "$url" || true
}

# ready reports (exit 0) once the bucket exists.
ready() {
	local st
	case $PROVIDER in
	gcs)
		st=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST \
			-H 'Content-Type: application/json' -d "{\"name\":\"$BUCKET\"}" \
			"http://127.0.0.1:$PORT/storage/v1/b?project=onestone" || true)
		[ "$st" = 200 ] || [ "$st" = 409 ]
		;;
	azure)
		st=$(azreq PUT "/$BUCKET" restype:container)
		[ "$st" = 201 ] || [ "$st" = 409 ]
		;;
	esac
}

start_server() {
	case $PROVIDER in
	gcs)
		"$BIN" -scheme http -host 127.0.0.1 -port "$PORT" \
			-external-url "http://127.0.0.1:$PORT" -public-host "127.0.0.1:$PORT" \
			-backend memory -log-level error >"$DATA/server.log" 2>&1 &
		;;
	azure)
		# Credentials through the environment, not the command line; data
		# in memory (the working directory catches any file it writes).
		(cd "$DATA/root" && AZURITE_ACCOUNTS="$ACCOUNT:$KEY" exec "$BIN" \
			--blobHost 127.0.0.1 --blobPort "$PORT" --inMemoryPersistence \
			--skipApiVersionCheck --disableProductStyleUrl --silent) >"$DATA/server.log" 2>&1 &
		;;
	esac
	SERVER_PID=$!
}

print_env() {
	local ep=http://127.0.0.1:$PORT
	case $PROVIDER in
	gcs)
		cat <<EOF
ONESTONE_GCS_ENDPOINT=$ep
ONESTONE_GCS_BUCKET=$BUCKET
ONESTONE_GCS_URL=gs://$BUCKET?endpoint=$ep
EOF
		;;
	azure)
		cat <<EOF
ONESTONE_AZURE_ENDPOINT=$ep
ONESTONE_AZURE_CONTAINER=$BUCKET
AZURE_STORAGE_ACCOUNT=$ACCOUNT
AZURE_STORAGE_KEY=$KEY
ONESTONE_AZURE_URL=azblob://$BUCKET?domain=127.0.0.1:$PORT&protocol=http&localemu=true
EOF
		;;
	esac
}

# new_credentials makes the run's throwaway account and key (Azurite's;
# fake-gcs-server takes none).
new_credentials() {
	ACCOUNT=onestone$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
	KEY=$(head -c 32 /dev/urandom | base64 -w0)
}

case $CMD in
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
	detached_start '_URL=' bash "$0" "$PROVIDER" run-detached || exit 1
	;;
run-detached)
	run_server ""
	;;
stop)
	detached_stop
	;;
*)
	usage
	;;
esac
