#!/usr/bin/env bash
# report-check.sh: train a small model with --report and check that the
# report page renders in headless Chromium (Debian's chromium package,
# installed with apt-get if missing). Usage: scripts/report-check.sh [WORKDIR]
# Leaves WORKDIR/report/index.html and WORKDIR/screenshot.png.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d /tmp/report-check.XXXXXX)}
mkdir -p "$work"

if ! command -v chromium >/dev/null 2>&1; then
	echo "report-check: installing chromium" >&2
	apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

go build -o "$work/onestone" ./cmd/onestone
"$work/onestone" gen --rows 40000 --out "$work/data" >/dev/null
# A small model so that this takes seconds.
spec="$work/data/spec.yaml"
sed -i '/^model:/,$d' "$spec"
cat >>"$spec" <<'YAML'
model:
  arch: mmoe
  experts: 4
  expert_hidden: [32]
  tower: [16]
  embedding_dim: 8
train:
  batch_size: 512
  eval_every: 20
YAML
"$work/onestone" train --quiet --spec "$spec" --data "$work/data/train-*.parquet" \
	--valid "$work/data/test-*.parquet" --out "$work/models" --max-steps 100 --eval-limit 5000 \
	--report "$work/report" >/dev/null

page="$work/report/index.html"
shot="$work/screenshot.png"
rm -f "$shot"
chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
	--hide-scrollbars --window-size=1200,2400 --screenshot="$shot" "file://$page" >/dev/null 2>&1 || true

if [[ ! -s "$shot" ]]; then
	echo "report-check: FAIL: chromium wrote no screenshot of $page" >&2
	exit 1
fi
size=$(stat -c %s "$shot")
# A blank 1200x2400 page compresses to a few KB; a page with plots is far larger.
if ((size < 50000)); then
	echo "report-check: FAIL: screenshot $shot is only $size bytes (blank page?)" >&2
	exit 1
fi
# Every image the page names must exist.
for img in $(grep -o 'src="[^"]*"' "$page" | sed 's/src="//; s/"$//'); do
	if [[ ! -s "$work/report/$img" ]]; then
		echo "report-check: FAIL: $img is missing" >&2
		exit 1
	fi
done
echo "report-check: OK: $shot ($size bytes) of $page"
