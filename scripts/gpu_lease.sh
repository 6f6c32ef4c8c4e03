#!/bin/bash
# One short GPU lease, as one command (docs/training.md, "On a GPU"): the CUDA tests, then the
# ViT-S pretraining preset mae-s-desc-gpu stopped by SIGINT at a deadline (the loop writes a
# checkpoint at the next step boundary), then its encoder exported as float16 in parts under
# 16 MiB. Run from the repository root on a machine whose python3 has a CUDA torch:
#
#   OUT=DIR DEADLINE=SECONDS bash scripts/gpu_lease.sh [pretrain overrides ...]
#
# DEADLINE (default 480) counts from the script's start. Python packages the machine lacks
# (tyro, docstring_parser, typeguard on this project's lease image) may be put in .whl/ as
# wheels; they are installed to /tmp/site first.
T0=$(date +%s)
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD/src
mkdir -p "$OUT"
L=$OUT/logs.txt
since() { echo $(( $(date +%s) - T0 )); }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  nproc
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
} 2>&1 | tee -a "$L"
echo "=== gpu tests at $(since) s" | tee -a "$L"
timeout 150 python3 -m pytest -p no:warnings -p no:cacheprovider -m gpu -rA --tb=short \
  --durations=0 tests/geometry/test_gpu.py tests/train/test_gpu.py > "$OUT/gpu_tests.log" 2>&1
echo "gpu tests rc $? at $(since) s" | tee -a "$L"
left=$(( ${DEADLINE:-480} - $(since) ))
echo "=== pretrain, $left s left, at $(since) s" | tee -a "$L"
# each log line stamped with the seconds since the script started (the log has no clock)
timeout -k 40 -s INT "$left" python3 -m nufm.cli pretrain --preset mae-s-desc-gpu \
  --run-dir /tmp/run --logging.no-progress "$@" 2>&1 | python3 -u -c "
import sys, time
for line in sys.stdin:
    print(f'{time.time() - $T0:7.1f} {line}', end='', flush=True)" > "$OUT/pretrain.log"
echo "pretrain rc ${PIPESTATUS[0]} at $(since) s" | tee -a "$L"
python3 -m nufm.cli export /tmp/run /tmp/model --half --encoder-only 2>&1 | tail -2 | tee -a "$L"
cat /tmp/run/config.yaml >> "$L"
cp /tmp/run/metrics.jsonl "$OUT/"
cp /tmp/model/config.json "$OUT/model_config.json"
split -b 15M /tmp/model/model.safetensors "$OUT/model.safetensors.part-"
sha256sum /tmp/model/model.safetensors | tee -a "$L"
echo "=== done at $(since) s" | tee -a "$L"
