# Shared by the scripts that run onestone's processes or its test servers
# on loopback (stream-demo, join-freshness, delta-bytes, replicas-demo,
# std-freshness, stream-scaling, s3-server, emulator); sourced, not run.
# It gives:
#   PIDS             the background processes to stop on exit (append $!)
#   stop_pids        stop PIDS newest first: SIGTERM one, wait for it,
#                    then the next, so that a stream trainer or a server
#                    stops (final checkpoint, publish, commit) while the
#                    broker and the store it talks to still run
#   wait_for FILE REGEX
#                    print the first match of REGEX in FILE, polling every
#                    0.1 s for up to WAIT_SECS seconds (default 60); on a
#                    timeout print FILE to stderr and return 1
#   free_port        print a loopback TCP port in 20000-29999 that nothing
#                    listens on (below Linux's ephemeral range, so that
#                    outgoing connections do not take it meanwhile)
#   retry CMD...     run CMD up to RETRY_TRIES times (default 4), waiting
#                    5, 15, 45 s between tries, for installs from a
#                    registry over a network that may fail for a moment;
#                    return CMD's last status
#   env_exports FILE print FILE's KEY=VALUE lines as shell-quoted exports
#                    (a URL holds '&'; a base64 key ends in '=')
#   detached_start READY CMD..., detached_stop
#                    a server script's `start` and `stop`, with $STATE,
#                    $READY_SECS and log set by the script
#   run_server [WATCH_PID]
#                    a test server script's `run`: with $BIN, $NAME (of
#                    its data dir), $INSTALL (the command that installs
#                    it), $READY_SECS, log, and the script's new_credentials,
#                    start_server (starts $BIN on $PORT with its log in
#                    $DATA/server.log, sets SERVER_PID), ready (exit 0 once
#                    it serves) and print_env (its env lines)
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

free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 10000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  echo "no free loopback port found" >&2
  return 1
}

retry() {
  local try=1 tries=${RETRY_TRIES:-4} wait=5 st
  while :; do
    "$@" && return 0
    st=$?
    if [ "$try" -ge "$tries" ]; then
      echo "failed $tries times (status $st): $*" >&2
      return "$st"
    fi
    echo "failed (status $st, try $try of $tries), again in ${wait}s: $*" >&2
    sleep "$wait"
    try=$((try + 1))
    wait=$((wait * 3))
  done
}

env_exports() {
  local line
  while IFS= read -r line; do
    printf 'export %s=%q\n' "${line%%=*}" "${line#*=}"
  done <"$1"
}

# detached_start READY CMD...: the `start` command of a server script
# (scripts/s3-server.sh, scripts/emulator.sh). It runs CMD, the script's
# own run-detached, in a session of its own, with stdout to $STATE/env
# and stderr to $STATE/log, and prints the export lines of $STATE/env
# once a line matching the grep pattern READY is there (the server
# prints them when it is ready). It fails with the log when the server
# exits first or READY_SECS pass. A server still running from an earlier
# start ($STATE/pid) is reused.
detached_start() {
  local ready=$1
  shift
  mkdir -p "$STATE"
  if [ -f "$STATE/pid" ] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null; then
    log "already running (pid $(cat "$STATE/pid"))"
    env_exports "$STATE/env"
    return 0
  fi
  setsid "$@" >"$STATE/env" 2>"$STATE/log" </dev/null &
  echo $! >"$STATE/pid"
  for _ in $(seq 1 $((READY_SECS * 5))); do
    if grep -q "$ready" "$STATE/env" 2>/dev/null; then
      env_exports "$STATE/env"
      return 0
    fi
    if ! kill -0 "$(cat "$STATE/pid")" 2>/dev/null; then break; fi
    sleep 0.2
  done
  cat "$STATE/log" >&2
  return 1
}

# detached_stop stops the server detached_start started: SIGTERM, then
# up to 30 s for it to exit.
detached_stop() {
  [ -f "$STATE/pid" ] || return 0
  local pid
  pid=$(cat "$STATE/pid")
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$STATE/pid" "$STATE/env"
}

# run_server starts the server, waits until it is ready, prints the env
# lines, and waits for a signal or for the exit of process $1 (if given).
# A port found free may be taken before the server binds it (another test
# process starting its own): then the server exits and it retries.
run_server() {
  local watch_pid=${1:-}
  if [ ! -x "$BIN" ]; then
    log "not installed: run $INSTALL"
    exit 3
  fi
  DATA=$(mktemp -d "${TMPDIR:-/tmp}/onestone-$NAME.XXXXXX")
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

  new_credentials
  local attempt t0=$SECONDS ok=""
  for attempt in 1 2 3; do
    PORT=$(free_port)
    mkdir -p "$DATA/root"
    start_server
    while [ $((SECONDS - t0)) -lt "$READY_SECS" ] && kill -0 "$SERVER_PID" 2>/dev/null; do
      if ready; then
        ok=1
        break
      fi
      sleep 0.1
    done
    [ -n "$ok" ] && break
    if kill -0 "$SERVER_PID" 2>/dev/null; then break; fi # timed out: no retry
    wait "$SERVER_PID" 2>/dev/null || true
    log "the server exited during start (attempt $attempt):"
    tail -n 20 "$DATA/server.log" >&2
    SERVER_PID=""
    rm -rf "$DATA/root"
  done
  if [ -z "$ok" ]; then
    log "not ready after $((SECONDS - t0))s; the end of its log:"
    tail -n 40 "$DATA/server.log" >&2
    exit 1
  fi
  log "ready in $((SECONDS - t0))s on 127.0.0.1:$PORT (pid $SERVER_PID, data $DATA)"
  print_env
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
