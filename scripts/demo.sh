#!/usr/bin/env bash
# The main job on an embedded default: generate an impression log with known
# probabilities, fit the feature spec, train an MMoE (CTR + ESMM CVR),
# evaluate it next to the ceiling the true probabilities reach, then serve
# it and score one request. Run by `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/onestone}
DATA=${DATA:-data/demo}
MODELS=${MODELS:-models/demo}
ROWS=${ROWS:-2000000}

echo "== 1. generate $ROWS impressions into $DATA"
rm -rf "$DATA" "$MODELS"
$BIN gen --rows "$ROWS" --out "$DATA" | tee /tmp/onestone-demo-gen.txt

echo "== 2. inspect and fit the feature spec"
$BIN inspect "$DATA/test-00000.parquet" | head -40
$BIN fit --spec "$DATA/spec.yaml" --data "$DATA/train-*.parquet"

echo "== 3. train (progress on stderr)"
$BIN train --spec "$DATA/spec.yaml" --data "$DATA/train-*.parquet" --valid "$DATA/test-00000.parquet" --out "$MODELS"

echo "== 4. evaluate, beside the ceiling of the true probabilities"
$BIN eval --model "$MODELS/latest" --data "$DATA/test-00000.parquet" | tee /tmp/onestone-demo-eval.txt
# The model's AUC as a share of the ceiling the true probabilities reach.
# Both AUCs come from one implementation (internal/auc: exact, ties one half).
awk '/^ceiling/ { for (i = 1; i <= NF; i++) { if ($i == "CTR") ctr = $(i+2); if ($i == "CTCVR") ctcvr = $(i+2) }
                  gsub(",", "", ctr); gsub(",", "", ctcvr) }
     FNR != NR && $1 == "ctr"   { m_ctr = $2 }
     FNR != NR && $1 == "ctcvr" { m_ctcvr = $2 }
     END { printf "CTR   AUC %.4f = %.3f of the ceiling %.4f\nCTCVR AUC %.4f = %.3f of the ceiling %.4f\n", m_ctr, m_ctr/ctr, ctr, m_ctcvr, m_ctcvr/ctcvr, ctcvr }' \
  /tmp/onestone-demo-gen.txt /tmp/onestone-demo-eval.txt

echo "== 5. serve the model and score one request"
LOG=$(mktemp)
$BIN serve --models "$MODELS" --addr 127.0.0.1:0 --poll=-1s 2>"$LOG" &
SERVE_PID=$!
trap 'kill $SERVE_PID 2>/dev/null || true; rm -f "$LOG"' EXIT
URL=
for _ in $(seq 1 200); do
  ADDR=$(grep -o 'addr=[0-9.:]*' "$LOG" | head -1 | cut -d= -f2 || true)
  if [ -n "$ADDR" ] && curl -fsS "http://$ADDR/readyz" >/dev/null 2>&1; then URL="http://$ADDR"; break; fi
  sleep 0.1
done
[ -n "$URL" ] || { echo "server did not become ready:"; cat "$LOG"; exit 1; }
REQ='{"context": {"user_id": 42, "age": 31, "user_tags": ["tag_08", "tag_11"], "user_activity": 5.0, "device": "ios", "hour": 20, "position": 1},
      "candidates": [{"item_id": 7, "category": "cat_03", "brand": "brand_0012", "price": 19.9, "item_popularity": 1.2},
                     {"item_id": 1234, "category": "cat_07", "brand": "brand_0040", "price": 120.0, "item_popularity": -0.5},
                     {"item_id": 999, "category": "cat_01", "brand": "brand_0002", "price": 5.5, "item_popularity": 0.3}],
      "top_k": 3}'
echo "POST $URL/v1/score"
echo "$REQ"
echo "answer:"
curl -fsS -X POST -H 'Content-Type: application/json' -d "$REQ" "$URL/v1/score"
echo
kill -TERM $SERVE_PID
wait $SERVE_PID 2>/dev/null || true
trap - EXIT
rm -f "$LOG"
echo "== demo done"
