#!/usr/bin/env bash
# GPU timings on a lent NVIDIA machine (see ../shared/docs/gpu-device.md), in one call:
# every GPU measurement of the benchmark binary (benches/kmeans.rs, `--mode adapter`,
# `gpu-assign`, `kmeans --device gpu`, `silhouette --device gpu`, `gpu-knn`) and the CPU
# engine on the same machine at the shapes it can afford, for the ratios in BENCHMARKS.md.
#
# Needs, beside this script, in the repository root (both ignored by git):
#   .gpu-bin/kmeans   an x86-64 release build of the bench binary
#                     (cargo bench --bench kmeans --no-run; copy target/release/deps/kmeans-*)
#   .gl/*.deb         the Vulkan loader packages (recipe in gpu-device.md), unpacked into /
#                     only where no libvulkan.so.1 is installed
# Writes to $OUT (default /tmp/gpu-bench-out): results.jsonl (one line per step: its name, exit
# status, wall seconds, arguments and the binary's JSON line), table.md, log.txt (the
# binary's stderr and the step headers), env.txt, dmon.txt (nvidia-smi dmon while it
# ran). Each step runs under `timeout`; a failed step is recorded and the next one runs.
# The whole stays under GPU_BENCH_BUDGET_S seconds (default 420): a step that would
# overrun it gets the time left, and is skipped with less than 20 s left.
set -u

here=$(cd "$(dirname "$0")" && pwd)
ROOT=$PWD
for r in "$here/../.." "$here/.." "$PWD"; do
  if [ -d "$r/.gpu-bin" ]; then ROOT=$(cd "$r" && pwd); break; fi
done
BIN=${GPU_BENCH_BIN:-$ROOT/.gpu-bin/kmeans}
OUT=${OUT:-/tmp/gpu-bench-out}
BUDGET=${GPU_BENCH_BUDGET_S:-420}
mkdir -p "$OUT"
RES=$OUT/results.jsonl
LOG=$OUT/log.txt
ENV=$OUT/env.txt
: >"$RES"
: >"$LOG"
START=$(date +%s)

echo "root $ROOT, binary $BIN, out $OUT" | tee "$ENV"

# The Vulkan loader, unless the machine has one.
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
  for f in "$ROOT"/.gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done
  ldconfig
fi
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; do
  if [ -f "$icd" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then export VK_DRIVER_FILES=$icd; fi
done
mkdir -p -m 700 /tmp/xdg-gpu-bench
export XDG_RUNTIME_DIR=/tmp/xdg-gpu-bench RUST_BACKTRACE=1

{
  echo "date $(date -u +%FT%TZ)"
  echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"
  uname -r
  grep -E '^(PRETTY_NAME)=' /etc/os-release 2>/dev/null
  lscpu 2>/dev/null | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket)'
  echo "nproc $(nproc)"
  free -g 2>/dev/null | head -2
  ldconfig -p 2>/dev/null | grep -i vulkan
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.max.mem,power.limit --format=csv 2>&1
  ls -l "$BIN" 2>&1
} 2>&1 | tee -a "$ENV"

DMON_PID=
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi dmon -s pucm -d 1 -o T >"$OUT/dmon.txt" 2>&1 &
  DMON_PID=$!
fi
stop_dmon() { if [ -n "$DMON_PID" ]; then kill "$DMON_PID" 2>/dev/null; wait "$DMON_PID" 2>/dev/null; DMON_PID=; fi; }
trap stop_dmon EXIT

# step NAME LIMIT_S ARGS...: run the binary with ARGS under a time limit; one line to RES.
step() {
  local name=$1 limit=$2
  shift 2
  local now left
  now=$(date +%s)
  left=$((BUDGET - (now - START)))
  if [ "$left" -lt 20 ]; then
    echo "== $name: skipped, ${left}s of the budget left" | tee -a "$LOG"
    printf '{"step":"%s","rc":null,"skipped":true}\n' "$name" >>"$RES"
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit}s): $*" | tee -a "$LOG"
  local t0 t1 line rc
  t0=$(date +%s.%N)
  line=$(set -o pipefail; timeout -k 5 "$limit" "$BIN" "$@" 2>>"$LOG" | tail -n 1)
  rc=$?
  t1=$(date +%s.%N)
  case "$line" in
    \{*\}) ;;
    *) line='{"error":"no JSON line (see log.txt)"}' ;;
  esac
  local wall
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  printf '{"step":"%s","rc":%s,"wall_s":%s,"args":"%s","result":%s}\n' \
    "$name" "${rc:-null}" "$wall" "$*" "$line" | tee -a "$RES"
  return "$rc"
}

# Without an adapter nothing below means anything: stop early and say why, so that the
# device time left can go to a corrected rerun.
if ! step adapter 60 --mode adapter; then
  echo "== no adapter; loader diagnostics" | tee -a "$LOG"
  ls -l /usr/local/nvidia/share/vulkan/icd.d /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>&1 | tee -a "$LOG"
  VK_LOADER_DEBUG=error,warn,info timeout 30 "$BIN" --mode adapter 2>&1 | head -60 | tee -a "$LOG"
  exit 1
fi

# The shapes (overridable, for a trial at tiny sizes on lavapipe).
NB=${NB:-1000000} KB=${KB:-1000}   # the big k-means: N=1M, d=768, k=1000
NM=${NM:-200000} KM=${KM:-100}     # the shape of the CPU rows in BENCHMARKS.md
D=${D:-768}
NS=${NS:-100000} DS=${DS:-384}     # exact silhouette, k=20
NK=${NK:-100000} DK=${DK:-128}     # neighbour kernels, k=16
K='--init random --tol 0 --box 1'
# GPU: the assignment kernel alone, then whole k-means fits (random init: k-means++ runs
# on the CPU and would dominate), the exact silhouette, the neighbour kernels.
step gpu-assign-mid 90 --mode gpu-assign --n "$NM" --d "$D" --k "$KM" --reps 10 --box 1
step gpu-assign-big 150 --mode gpu-assign --n "$NB" --d "$D" --k "$KB" --reps 5 --box 1
step gpu-kmeans-mid 120 --mode kmeans --device gpu --n "$NM" --d "$D" --k "$KM" --max-iter 20 $K
step gpu-kmeans-big 180 --mode kmeans --device gpu --n "$NB" --d "$D" --k "$KB" --max-iter 10 $K
step gpu-silhouette 120 --mode silhouette --device gpu --kernel 1 --n "$NS" --d "$DS" --k 20 --box 1
# The kNN step runs its CPU twin too (same process, answers compared).
step gpu-knn 180 --mode gpu-knn --n "$NK" --d "$DK" --k 16 --clusters 50
# CPU engine, same machine, same data.
step cpu-kmeans-mid 120 --mode kmeans --device cpu --n "$NM" --d "$D" --k "$KM" --max-iter 20 $K
step cpu-gemm-mid 60 --mode gemm --n "$NM" --d "$D" --k "$KM" --reps 5 --box 1
step cpu-silhouette 180 --mode silhouette --device cpu --n "$NS" --d "$DS" --k 20 --box 1
step cpu-kmeans-big 150 --mode kmeans --device cpu --n "$NB" --d "$D" --k "$KB" --max-iter 3 $K
stop_dmon

# A compact table of what came back (python3 where there is one; the raw lines otherwise).
python3 - "$RES" >"$OUT/table.md" 2>>"$LOG" <<'EOF' || cp "$RES" "$OUT/table.md"
import json, sys
PEAK = 67000.0  # H200 SXM fp32 GFLOP/s, vendor datasheet
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| step | rc | wall s | key numbers |")
print("|---|---|---|---|")
for r in rows:
    res = r.get("result") or {}
    keys = []
    for key in ("name", "backend", "driver_info", "seconds", "seconds_per_iter", "n_iter",
                "inertia", "labels_hash", "silhouette", "kernel_seconds", "kernel_gflops",
                "e2e_seconds_best", "e2e_gflops", "upload_seconds", "check_label_mismatches",
                "check_max_rel_sq_diff", "knn_kernel_seconds", "knn_kernel_gflops",
                "knn_gpu_seconds", "knn_cpu_seconds", "knn_rows_differing",
                "radius_kernel_seconds", "dense_gpu_seconds", "dense_cpu_seconds",
                "dense_rows_differing", "gflops", "kernel", "warnings", "error"):
        if key in res and res[key] is not None:
            v = res[key]
            if isinstance(v, float):
                v = f"{v:.4g}"
            keys.append(f"{key}={v}")
    if isinstance(res.get("kernel"), dict):
        res["silhouette_kernel_gflops"] = res["kernel"].get("gflops")
    for key in ("kernel_gflops", "knn_kernel_gflops", "radius_kernel_gflops",
                "silhouette_kernel_gflops"):
        v = res.get(key)
        if isinstance(v, float):
            keys.append(f"{key[:-7]}_pct_of_peak={100 * v / PEAK:.1f}%")
    print(f"| {r['step']} | {r.get('rc')} | {r.get('wall_s', '')} | {'; '.join(keys)} |")
EOF
cat "$OUT/table.md"
echo "total $(( $(date +%s) - START )) s"
