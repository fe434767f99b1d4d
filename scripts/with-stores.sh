#!/usr/bin/env bash
# Runs a command with the object store test servers started once for it:
# versitygw (S3, scripts/s3-server.sh), fake-gcs-server and Azurite
# (scripts/emulator.sh), each on a free loopback port, started at the
# same time. Their env lines (ONESTONE_S3_ENDPOINT, ONESTONE_GCS_ENDPOINT,
# ONESTONE_AZURE_ENDPOINT, the buckets and the throwaway credentials) are
# exported to the command, so that every test process of a `go test`
# run shares them (internal/s3test uses an outside store when its
# variable is set) instead of starting its own. `make test` runs its
# `go test` lines through it.
#
#   scripts/with-stores.sh CMD [ARGS...]
#
# The servers stop, and their data goes, when the command ends, fails or
# is interrupted, or when this script is killed (each server's script
# watches this one). Exit status: the command's; 1 if an installed server
# does not start.
#
# A server whose variable is already set (an outside store) is not
# started, nor one that is not installed: the tests then start nothing
# for it either, and fail (CI) or skip with the hint to install it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
log() { echo "with-stores: $*" >&2; }

if [ $# -eq 0 ]; then
	sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
	exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/onestone-stores.XXXXXX")
started=() # provider:pid
stop_all() {
	local s
	# A server that died during the command says why.
	for s in "${started[@]}"; do
		kill -0 "${s#*:}" 2>/dev/null || cat "$tmp/${s%%:*}.log" >&2
	done
	for s in "${started[@]}"; do kill -TERM "${s#*:}" 2>/dev/null || true; done
	for s in "${started[@]}"; do wait "${s#*:}" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap stop_all EXIT
# The command runs in the foreground, in this process group: an
# interrupt from the terminal reaches it and the servers' scripts too.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# provider, the variable an outside store sets, the script and its args.
servers=(
	"s3 ONESTONE_S3_ENDPOINT s3-server.sh"
	"gcs ONESTONE_GCS_ENDPOINT emulator.sh gcs"
	"azure ONESTONE_AZURE_ENDPOINT emulator.sh azure"
)
t0=$SECONDS
for s in "${servers[@]}"; do
	read -r name var script args <<<"$s"
	if [ -n "${!var:-}" ]; then
		log "$name: $var is set; using that store"
		continue
	fi
	# shellcheck disable=SC2086 # args is one word or none
	if ! bash "$here/$script" $args path >/dev/null 2>&1; then
		log "$name: not installed (scripts/$script ${args:+$args }install); its tests start nothing"
		continue
	fi
	# `run` prints the env lines once the server is ready and stays until
	# SIGTERM or this script's exit.
	# shellcheck disable=SC2086
	bash "$here/$script" $args run >"$tmp/$name.env" 2>"$tmp/$name.log" </dev/null &
	started+=("$name:$!")
done

ready_secs=${STORES_READY_SECS:-300}
for s in "${started[@]}"; do
	name=${s%%:*}
	pid=${s#*:}
	# The last env line of each script is its _URL one.
	until grep -q '_URL=' "$tmp/$name.env" 2>/dev/null; do
		if ! kill -0 "$pid" 2>/dev/null || [ $((SECONDS - t0)) -ge "$ready_secs" ]; then
			log "$name did not start:"
			cat "$tmp/$name.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	while IFS= read -r line; do
		export "${line%%=*}=${line#*=}"
	done <"$tmp/$name.env"
done
[ ${#started[@]} -eq 0 ] || log "started ${started[*]%%:*} in $((SECONDS - t0))s"

"$@"
