#!/usr/bin/env bash
# The GPU checks that issues 3, 4 and 6 still need, in parts that each fit one call of the device tool (<= 10 min;
# the session's whole device budget is ~15 min, machine start included, so run the parts in this order and stop
# when time runs out). Prepare on the CPU machine first: `python scripts/gpu_prepare.py` (lego subset + wheels),
# then `run` with carry ["device_data", ".whl"] and one of:
#
#   bash scripts/gpu_checks.sh kernels    # CUDA tests of the kernels and fields, Triton vs torch (kernels_gpu.py)
#   bash scripts/gpu_checks.sh lego       # issue 4's GPU protocol: lego 800x800, 2 min of training, 50 test views
#   bash scripts/gpu_checks.sh training   # issue 6: fp32/bf16/fp16, --compile vs eager, DDP over the GPUs present
#
# Each part writes its logs and the benchmarks' JSON records to $OUT (the device tool brings them back; commit the
# records to benchmarks/results/). Nothing in benchmarks/results/ is overwritten.
# GPU_CHECKS_DEVICE=cpu runs the same steps tiny, on a CPU, as a smoke test of this script (Triton interpreted).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
part="${1:-}"
OUT="${OUT:-$PWD/outputs/gpu_checks}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
device="${GPU_CHECKS_DEVICE:-cuda}"
export PYTHONUNBUFFERED=1

if [ -d .whl ] && ls .whl/*.whl > /dev/null 2>&1; then   # packages the device image lacks (scripts/gpu_prepare.py)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/nerfkit_site \
        .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/nerfkit_site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

step() {  # step NAME SECONDS COMMAND...: runs with a time limit, logs to $OUT/NAME.log, says how it ended
    local name="$1" limit="$2"
    shift 2
    echo "== $name (limit ${limit}s): $*"
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 15 "$OUT/$name.log"
    echo "== $name: exit $rc after $((SECONDS - start)) s"
    return 0
}

"$PY" - <<'EOF' | tee "$OUT/machine.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "devices", torch.cuda.device_count(),
      [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
try:
    import triton
    print("triton", triton.__version__)
except ImportError:
    print("triton: not installed")
EOF

case "$part" in
    kernels)
        if [ "$device" = cpu ]; then export TRITON_INTERPRET=1; quick="--quick"; else quick=""; fi
        step tests 330 "$PY" -m pytest -q -x -p no:cacheprovider tests/test_kernels.py tests/test_kernels_grid.py \
            tests/test_hashgrid.py tests/test_nerfacc_interop.py tests/test_camera_models.py tests/test_ngp.py
        step kernels_gpu 180 "$PY" benchmarks/kernels_gpu.py --device "$device" $quick \
            --output "$OUT/kernels_${device}.json"
        ;;
    lego)
        if [ "$device" = cpu ]; then
            args=(--downscale 16 --minutes 0.3 --save-every 6 --curve-stride 10)
        else
            args=(--downscale 1 --minutes 2 --save-every 20 --curve-stride 5)
        fi
        step ngp_lego 520 "$PY" benchmarks/ngp_lego.py --device "$device" --data device_data/lego --test-stride 1 \
            "${args[@]}" --output "$OUT/ngp_lego_${device}.json"
        ;;
    training)
        # throughput from the log windows after the warm-up (a multiple of the log interval)
        if [ "$device" = cpu ]; then steps=80; every=10; gpus=1; else steps=2000; every=50; gpus=$("$PY" -c \
            "import torch; print(torch.cuda.device_count())"); fi
        warm=$((steps / 4 / every * every))
        step precision 240 "$PY" benchmarks/train_precision.py --device "$device" --method ngp --steps "$steps" \
            --warmup "$warm" --log-every "$every" --output "$OUT/train_precision_${device}.json"
        step compile 150 "$PY" benchmarks/train_compile_cpu.py --device "$device" --methods ngp --steps "$steps" \
            --warmup "$warm" --log-every "$every" --output "$OUT/train_compile_${device}.json"
        counts=(1)
        for n in 2 4 8; do [ "$n" -le "$gpus" ] && counts+=("$n"); done
        step ddp 180 "$PY" benchmarks/train_ddp_scaling.py --device "$device" --method ngp --processes "${counts[@]}" \
            --steps "$steps" --warmup "$warm" --log-every "$every" --output "$OUT/train_ddp_scaling_${device}.json"
        ;;
    *)
        echo "usage: bash scripts/gpu_checks.sh kernels|lego|training" >&2
        exit 2
        ;;
esac
ls -la "$OUT"
