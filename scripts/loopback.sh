# Shared by the scripts that run onestone's processes on loopback
# (stream-demo, join-freshness, delta-bytes, replicas-demo, std-freshness,
# stream-scaling); sourced, not run. It gives:
#   PIDS             the background processes to stop on exit (append $!)
#   stop_pids        SIGTERM every one of PIDS, then wait for each
#   wait_for FILE REGEX
#                    print the first match of REGEX in FILE, polling every
#                    0.1 s for up to WAIT_SECS seconds (default 60); on a
#                    timeout print FILE to stderr and return 1
# A script sets WAIT_SECS before it calls wait_for if it needs longer.

PIDS=()

stop_pids() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}

wait_for() {
  local m
  for _ in $(seq 1 $(( ${WAIT_SECS:-60} * 10 ))); do
    if m=$(grep -o -m1 -E "$2" "$1" 2>/dev/null); then echo "$m"; return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for /$2/ in $1:" >&2; cat "$1" >&2; return 1
}
