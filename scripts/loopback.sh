# Shared by the scripts that run onestone's processes on loopback
# (stream-demo, join-freshness, delta-bytes, replicas-demo, std-freshness,
# stream-scaling); sourced, not run. It gives:
#   PIDS             the background processes to stop on exit (append $!)
#   stop_pids        stop PIDS newest first: SIGTERM one, wait for it,
#                    then the next, so that a stream trainer or a server
#                    stops (final checkpoint, publish, commit) while the
#                    broker and the store it talks to still run
#   wait_for FILE REGEX
#                    print the first match of REGEX in FILE, polling every
#                    0.1 s for up to WAIT_SECS seconds (default 60); on a
#                    timeout print FILE to stderr and return 1
# A script sets WAIT_SECS before it calls wait_for if it needs longer.

PIDS=()

stop_pids() {
  local i pid
  for (( i = ${#PIDS[@]} - 1; i >= 0; i-- )); do
    pid=${PIDS[i]}
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

wait_for() {
  local m
  for _ in $(seq 1 $(( ${WAIT_SECS:-60} * 10 ))); do
    if m=$(grep -o -m1 -E "$2" "$1" 2>/dev/null); then echo "$m"; return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for /$2/ in $1:" >&2; cat "$1" >&2; return 1
}
