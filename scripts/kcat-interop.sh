#!/usr/bin/env bash
# Interoperability check: events produced by kcat (librdkafka) with snappy,
# lz4 and zstd compression into `onestone broker` are consumed correctly by
# ingest.KafkaSource (TestKcatInterop checks counts and every value).
# Usage: scripts/kcat-interop.sh [events per codec, default 5000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}
CODECS="snappy lz4 zstd"

if ! command -v kcat >/dev/null 2>&1; then
	echo "kcat-interop: installing kcat" >&2
	apt-get update -qq && apt-get install -y -qq kcat >/dev/null
fi

go build -o bin/onestone ./cmd/onestone
work=$(mktemp -d)
broker_pid=""
cleanup() {
	if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

topics=""
for c in $CODECS; do topics="${topics:+$topics,}interop-$c"; done
bin/onestone broker --addr 127.0.0.1:0 --partitions 4 --topics "$topics" 2>"$work/broker.log" &
broker_pid=$!
addr=""
for _ in $(seq 1 100); do
	addr=$(sed -n 's/.*listening on \([^ ,]*\).*/\1/p' "$work/broker.log" | head -1)
	[ -n "$addr" ] && break
	sleep 0.1
done
[ -n "$addr" ] || { echo "kcat-interop: broker did not start:" >&2; cat "$work/broker.log" >&2; exit 1; }
echo "kcat-interop: broker on $addr" >&2

# key<TAB>{"event_id":i,...}; price is i/4, exact in binary.
awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++) printf "u%d\t{\"event_id\":%d,\"user_id\":\"u%d\",\"price\":%s,\"tags\":[\"t%d\"],\"click\":%d}\n", i%97, i, i%97, i/4, i%5, i%2 }' >"$work/events"

for c in $CODECS; do
	timeout 60 kcat -P -b "$addr" -t "interop-$c" -z "$c" -K $'\t' -l "$work/events"
	echo "kcat-interop: kcat produced $N events with $c" >&2
done

ONESTONE_KCAT_BROKERS="$addr" ONESTONE_KCAT_TOPICS="$topics" ONESTONE_KCAT_EVENTS="$N" \
	timeout 120 go test -count=1 -run '^TestKcatInterop$' -v ./ingest/ | grep -E '^(---|===|ok|FAIL|\s+kafka_test)' || { echo "kcat-interop: FAILED" >&2; exit 1; }
echo "kcat-interop: OK" >&2
