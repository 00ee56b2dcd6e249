#!/usr/bin/env bash
# The one GPU check: the CUDA tests, then the throughput benchmark; everything into OUTDIR.
#
#     bash benchmarks/gpu_check.sh [OUTDIR]        # default OUTDIR: ${OUT:-benchmarks/gpu_results}
#
# For one CUDA GPU (an H100 or H200); it ends within 8 minutes (480 s), in four steps:
#   1. the GPU's name, torch's version, the commit               (seconds)      -> OUTDIR/env.txt
#   2. tests/test_gpu.py, test_backends.py, test_cache.py        (timeout 210 s) -> OUTDIR/tests.txt
#      fast paths vs the dense-mask path, compiled vs eager, KV cache on CUDA, bf16 + compile
#      baselines, fused AdamW; the flex and compile tests spend most of the time compiling
#   3. benchmarks/gpu_throughput.py --seconds 45 --find-batch    (timeout: what is left of 470 s,
#      at least 250 s)  -> OUTDIR/throughput.txt and OUTDIR/throughput.json
#      armd, ar, mdm, armd-sbp: each compiles (30-50 s), is timed (up to 45 s) and, but SBP, searches
#      its largest micro-batch (about 15 s). --budget (the timeout less 25 s) shortens the timed
#      part where all four would not fit. The JSON is rewritten after every run, and on the
#      timeout's SIGTERM the script still prints the report of the runs that finished.
#   4. benchmarks/gpu_adapt.py --steps 40                        (timeout 110 s, reserved from step 3)
#      GPT-2 small (pretrained where the hub is cached, else random) into an ARMD: the gpt2-small-adapt
#      recipe's throughput and that its loss goes down -> OUTDIR/adapt.txt and OUTDIR/adapt.json;
#      it says "skipped" where there is no GPU or no transformers
# Exit status: the tests' if they failed (the benchmark runs anyway), else the benchmark's (124: timeout).
set -u -o pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUTDIR="${1:-${OUT:-$ROOT/benchmarks/gpu_results}}"  # a relative OUTDIR is taken from the caller's directory
mkdir -p "$OUTDIR" && OUTDIR="$(cd "$OUTDIR" && pwd)" || exit 2
cd "$ROOT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
SECONDS=0  # bash's clock: seconds since this line

{
    date -u +"%Y-%m-%dT%H:%M:%SZ"
    nvidia-smi -L || echo "nvidia-smi: not available"
    "$PY" -c "import torch; print('torch', torch.__version__, '| CUDA', torch.version.cuda, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
    git rev-parse --short HEAD 2>/dev/null && git status --short 2>/dev/null | head -20
} 2>&1 | tee "$OUTDIR/env.txt"

echo "== CUDA tests (timeout 210 s)"
timeout --kill-after=5 210 "$PY" -m pytest -q -p no:cacheprovider -o addopts="" -rs --durations=15 \
    tests/test_gpu.py tests/test_backends.py tests/test_cache.py 2>&1 | tee "$OUTDIR/tests.txt"
tests_rc=$?

left=$((470 - 110 - SECONDS))  # 470: 5 s of kill grace and 5 s of slack under 8 minutes; 110 s for step 4
echo "== throughput benchmark (timeout $left s, budget $((left - 25)) s)"
timeout --kill-after=5 "$left" "$PY" benchmarks/gpu_throughput.py --seconds 45 --find-batch \
    --budget $((left - 25)) --json "$OUTDIR/throughput.json" 2>&1 | tee "$OUTDIR/throughput.txt"
bench_rc=$?

echo "== GPT-2 into ARMD (timeout 110 s)"
timeout --kill-after=5 105 "$PY" benchmarks/gpu_adapt.py --steps 40 --json "$OUTDIR/adapt.json" 2>&1 \
    | tee "$OUTDIR/adapt.txt"

echo "== done in $SECONDS s: tests exit $tests_rc, benchmark exit $bench_rc; files in $OUTDIR"
if [ "$tests_rc" -ne 0 ]; then exit "$tests_rc"; fi
exit "$bench_rc"
