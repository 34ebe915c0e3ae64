#!/usr/bin/env bash
# GPU check: two epochs of MISR on CUDA with bf16 (the penalty on in the second), one `torchrun --nproc_per_node=1` run, and the same
# training on the CPU, printing the mean step time of each. Run from the repository root on a machine
# with an NVIDIA GPU and the package installed (`. scripts/env.sh`, or any environment with misr).
# MISR_GPU_CHECK_DEVICE=cpu runs every step on the CPU (to test this script where there is no GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
GPU="${MISR_GPU_CHECK_DEVICE:-cuda}"
if [ "$GPU" = cuda ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: no CUDA device is visible to torch ($("$PY" -c 'import torch; print(torch.__version__)')); nothing to check here." >&2
    echo "gpu_check: run this script on a machine with an NVIDIA GPU." >&2
    exit 2
fi
[ "$GPU" = cuda ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export PREFECT_HOME="$work/prefect" PREFECT_SERVER_ANALYTICS_ENABLED=false HF_HUB_OFFLINE=1 DVC_NO_ANALYTICS=1
common=(-S "data.synth.n_clips={train: 1024, valid: 128, valid_ood: 16, test: 16}" -S train.epochs=2 -S train.patience=3 -S model.invariance.warmup_epochs=1 -S "train.seeds=[1111]" -S train.batch_size=64)

"$PY" -m pipelines.cli synth --out "$work/store" "${common[@]}" > /dev/null
step_ms() {
    "$PY" -c 'import json, sys
r = json.load(open(sys.argv[1]))["seeds"]["1111"]
print("%.1f ms/step over %d steps on %s, best valid MAE %.3f" % (r["step_ms"], r["steps"], r["device"], r["best_valid_mae"]))' "$1/summary.json"
}

"$PY" -m pipelines.cli train "$work/store" --out "$work/gpu" --no-flow "${common[@]}" -S "train.device=$GPU" > /dev/null
echo "single process, $GPU (bf16 autocast on cuda): $(step_ms "$work/gpu")"
# checkpoint selection and evaluation agree: the best validation MAE of training is the one evaluate reports
"$PY" -m pipelines.cli evaluate "$work/store" --model "$work/gpu" --out "$work/gpu-eval" "${common[@]}" > /dev/null
"$PY" - "$work" <<'PYEOF'
import json, sys
trained = json.load(open(f"{sys.argv[1]}/gpu/summary.json"))["seeds"]["1111"]["best_valid_mae"]
evaluated = json.load(open(f"{sys.argv[1]}/gpu-eval/metrics_per_seed.json"))["valid"]["1111"]["MAE"]
print(f"best valid MAE in training {trained:.6f}, in misr evaluate (fp32, CPU) {evaluated:.6f}")
assert abs(trained - evaluated) <= 1e-5, "checkpoint selection on the GPU disagrees with misr evaluate"
PYEOF

"$PY" -m torch.distributed.run --nproc_per_node=1 --master_port=29561 -m pipelines.cli train "$work/store" --out "$work/ddp" "${common[@]}" -S "train.device=$GPU" > /dev/null
echo "torchrun DDP, 1 process, $GPU:             $(step_ms "$work/ddp")"

"$PY" -m pipelines.cli train "$work/store" --out "$work/cpu" --no-flow "${common[@]}" -S train.device=cpu > /dev/null
echo "single process, cpu:                      $(step_ms "$work/cpu")"
"$PY" - "$work" <<'PYEOF'
import json, sys
r = {k: json.load(open(f"{sys.argv[1]}/{k}/summary.json"))["seeds"]["1111"]["step_ms"] for k in ("gpu", "ddp", "cpu")}
print(f"speed-up of the GPU over the CPU per step: {r['cpu'] / r['gpu']:.1f}x (DDP overhead on 1 process: {r['ddp'] / r['gpu']:.2f}x)")
PYEOF
