#!/usr/bin/env bash
# A short run of the study's configuration (train/configs/paper.yaml) on one GPU, and what the GPU gives:
#
#   bash train/paper_short.sh OUT_DIR
#
# 1. the GPU checks (tests/test_gpu.py: inference, explanations, CLI and training on CUDA match the CPU)
# 2. a phantom dataset from the data engine (N training images, default 1500; external and phone sets)
# 3. paper.yaml narrowed to ARCHS (default three of the study's ten), 2 folds, EPOCHS epochs (default 10),
#    from scratch (ImageNet weights cannot be fetched offline), best fold per architecture instead of a refit;
#    the rest (preprocessing, batch 64, lr, bf16, channels-last, early stopping) as the study's config says
# 4. inference throughput on the GPU against this machine's CPU, for the bundled demo and the model trained in 3
#
# Everything lands in OUT_DIR: the logs, the trained model's as_ai.json, metrics.json, its card and the
# benchmark figures (bench.json). The data and checkpoints stay in WORK (default /tmp/as-ai-paper-short).
# Needs a CUDA GPU; PYTHON (default python3) must have as-ai's dependencies (lime may come as a wheel in .whl/).
set -uo pipefail
out=${1:?usage: bash train/paper_short.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
py=${PYTHON:-python3}
work=${WORK:-/tmp/as-ai-paper-short}
n=${N:-1500}
epochs=${EPOCHS:-10}
archs=${ARCHS:-"[resnet50.tv_in1k, mobilenetv3_large_100.ra_in1k, densenet201.tv_in1k]"}
cores=$(nproc)
export PYTHONUNBUFFERED=1 GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
if compgen -G ".whl/*.whl" >/dev/null; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/as-ai-site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/as-ai-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
step() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$out/steps.txt"; }

step "machine"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; echo "cpu cores: $cores"
  $py -c "import sys, torch, timm, accelerate; print('python', sys.version.split()[0], '| torch', torch.__version__,
'| timm', timm.__version__, '| accelerate', accelerate.__version__, '| cuda', torch.version.cuda,
'| gpu', torch.cuda.get_device_name() if torch.cuda.is_available() else None)"; } 2>&1 | tee "$out/machine.txt"

step "1. GPU checks"
$py -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tail -25 | tee "$out/gpu_tests.txt"

step "2. phantom data: $n training images"
rm -rf "$work" && mkdir -p "$work"
data_cmd="as-ai synth pxr --out data/pxr --n $n --seed 0 --size 512 --workers $cores"
$py -m as_ai.cli synth pxr --out "$work/data" --n "$n" --seed 0 --size 512 --workers "$cores" 2>&1 | tail -2

step "3. paper.yaml, short: $archs, 2 folds, $epochs epochs"
$py train/diagnosis.py --config train/configs/paper.yaml --data "$work/data" --out "$work/run" \
  --set pretrained=false --set "archs=$archs" --set folds=2 --set "epochs=$epochs" --set final=best_fold \
  --set "loader_workers=$((cores > 13 ? 12 : cores - 1))" --set "data_command=$data_cmd" 2>&1 \
  | grep -v "it/s\]\|s/it\]" | tee "$out/train_log.txt"
for f in model/as_ai.json model/README.md metrics.json config.yaml; do
  [ -f "$work/run/$f" ] && cp "$work/run/$f" "$out/$(basename "$f")"
done

step "4. inference on the GPU against the CPU"
for model in "" "$work/run/model"; do
  [ -n "$model" ] && [ ! -f "$model/as_ai.json" ] && continue
  AS_AI_BENCH_DIR="$out/bench${model:+-paper}" AS_AI_BENCH_MODEL="$model" $py -m pytest -q -s -p no:cacheprovider \
    -m benchmark -o python_files='bench_*.py' tests/benchmarks/bench_gpu.py 2>&1 | grep -E "img/s|passed|failed|rror" \
    | tee -a "$out/bench.txt"
done
step "done"
