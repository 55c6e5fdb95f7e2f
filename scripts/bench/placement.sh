#!/usr/bin/env bash
# Peak memory and time of placing the documents beyond a sample (issue 9), measured on the
# real server: one collection of N documents × D dimensions; a k-means run on a sample of S
# that places the other N−S, against the same run clustering all N. Prints a Markdown
# table row per run: wall seconds and the server's peak RSS during the run (VmHWM, reset
# after the upload).
#
#   cargo build --release && bash scripts/bench/placement.sh [N] [D] [S] [K]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-500000}; D=${2:-128}; S=${3:-20000}; K=${4:-20}
BIN=target/release/clusterd
WORK=$(mktemp -d /tmp/clusterd-placement-XXXX)
trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
"$BIN" example-data --out "$WORK/docs.parquet" --documents "$N" --dimension "$D" --clusters "$K" >/dev/null

run() {  # $1: label, $2: sample_size JSON
  "$BIN" serve --store "$WORK/store-$1" --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:18089 \
    >"$WORK/log-$1" 2>&1 &
  PID=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:18089/healthz >/dev/null && break; sleep 0.1; done
  curl -sf -X POST http://127.0.0.1:18089/v1/collections/docs/documents -H 'X-Namespace: bench' \
    -H 'Content-Type: application/vnd.apache.parquet' --data-binary @"$WORK/docs.parquet" >/dev/null
  # The upload's own peak is not the run's: reset the high-water mark (Linux clear_refs).
  echo 5 >/proc/$PID/clear_refs
  local base; base=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
  local t0; t0=$(date +%s.%N)
  local out; out=$(curl -sf -X POST http://127.0.0.1:18089/v1/clusters/execute -H 'X-Namespace: bench' \
    -H 'Content-Type: application/json' --data "{\"collection_ids\": [\"docs\"], \"sample_size\": $2,
      \"compute_metrics\": false, \"config\": {\"algorithm\": \"kmeans\",
      \"algorithm_params\": {\"n_clusters\": $K, \"random_state\": 0},
      \"feature_vector\": {\"vector_name\": \"embedding\"}, \"normalize_features\": true}}")
  local t1; t1=$(date +%s.%N)
  local peak; peak=$(awk '/VmHWM/{print $2}' /proc/$PID/status)
  local placed; placed=$(printf '%s' "$out" | python3 -c "import json,sys; print(json.load(sys.stdin).get('placed_documents') or 0)")
  printf '| %s | %d×%d | %s | %s | %.2f | %d | %d |\n' "$1" "$N" "$D" "$2" "$placed" \
    "$(echo "$t1 - $t0" | bc)" $((peak / 1024)) $(((peak - base) / 1024))
  kill $PID; wait $PID 2>/dev/null || true
}
echo "| run | N×D | sample_size | placed | s | peak RSS MB | over idle MB |"
echo "|---|---|---|---|---|---|---|"
run sampled "$S"
run whole null
