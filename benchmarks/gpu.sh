#!/usr/bin/env bash
# Every GPU measurement and GPU test of the speed work, in at most 8 minutes on one GPU.
#
#   bash benchmarks/gpu.sh            (from the repository root; PYTHON picks the interpreter)
#
# 1. The GPU-only tests: the step under CUDA graphs keeps D frozen in G's step and computes
#    the eager gradients; the trainer's CUDA settings.
# 2. The throughput benchmark at 64 px, conv_dim 64, side by side with the reference recipe:
#    batch 128 with every variant (bf16 and fp32, NCHW and channels_last, compile, and CUDA
#    graphs through compile's reduce-overhead mode), then batch 256 and 512. Each records
#    images/s, the share of the GPU's bf16 peak and the peak GPU memory.
# Results: benchmarks/results/gpu-batch{128,256,512}.json; then `python -m benchmarks.docs`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
# 6,144 images: whole batches at 128, 256 and 512; about 50 steps an epoch at 128.
IMAGES=6144

"$PYTHON" -c 'import torch; assert torch.cuda.is_available(), "no CUDA GPU"; print(torch.cuda.get_device_name(0))'
timeout 120 "$PYTHON" -m pytest -q -x tests/test_throughput.py tests/test_trainer.py -k "cuda or graphs or fused"
timeout 240 "$PYTHON" -m benchmarks.throughput --device cuda --sizes 64 --images "$IMAGES" \
    --batch-size 128 --compile --out benchmarks/results/gpu-batch128.json
for batch in 256 512; do
    timeout 60 "$PYTHON" -m benchmarks.throughput --device cuda --sizes 64 --images "$IMAGES" \
        --batch-size "$batch" --repeats 2 --out "benchmarks/results/gpu-batch$batch.json"
done
