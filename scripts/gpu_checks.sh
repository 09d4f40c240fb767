#!/usr/bin/env bash
# The GPU checks that issues 3, 4 and 6 still need, in parts that each fit one call of the device tool (<= 10 min;
# the session's whole device budget is ~15 min, machine start included, so run the parts in this order and stop
# when time runs out). Prepare on the CPU machine first: `python scripts/gpu_prepare.py` (lego subset + wheels),
# then `run` with carry ["device_data", ".whl"] and one of:
#
#   bash scripts/gpu_checks.sh essentials # FIRST: what issues 3 and 6 still need, shortened to fit one call (~9 min):
#                                         # the CUDA tests, Triton vs torch, fp32/bf16/fp16, DDP's one-GPU record
#   bash scripts/gpu_checks.sh memory     # issue 6: host and GPU memory along 10,000 steps of ngp (< 5 min)
#   bash scripts/gpu_checks.sh nerfacc    # issue 3's optional interop: nerfacc 0.5.3 JIT-built there, its tests
#   bash scripts/gpu_checks.sh kernels    # CUDA tests of the kernels and fields, Triton vs torch (kernels_gpu.py)
#   bash scripts/gpu_checks.sh lego       # issue 4's GPU protocol: lego 800x800, 2 min of training, 50 test views
#   bash scripts/gpu_checks.sh training   # issue 6: fp32/bf16/fp16, --compile vs eager, DDP over the GPUs present
#
# Each part writes its logs and the benchmarks' JSON records to $OUT (the device tool brings them back; commit the
# records to benchmarks/results/; a record with "complete": false is a step cut off by its time limit, holding the
# runs it finished). Nothing in benchmarks/results/ is overwritten. $OUT/steps.txt says how each step ended.
# GPU_CHECKS_DEVICE=cpu runs the same steps tiny, on a CPU, as a smoke test of this script (Triton interpreted).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
part="${1:-}"
case "$part" in  # a mistyped part costs nothing on the device machine
    essentials|memory|nerfacc|kernels|lego|training) ;;
    *) echo "usage: bash scripts/gpu_checks.sh essentials|memory|nerfacc|kernels|lego|training" >&2; exit 2 ;;
esac
OUT="${OUT:-$PWD/outputs/gpu_checks}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
device="${GPU_CHECKS_DEVICE:-cuda}"
export PYTHONUNBUFFERED=1

# Packages the device image lacks (scripts/gpu_prepare.py), from the carried wheels only: that machine has no
# network. Should pip fail (or be missing), the wheels are unpacked instead (all pure Python but ninja's binary,
# which is made executable); a failure here is said
# and the steps still run (the kernel benchmark and most of the tests need none of these packages).
if [ -d .whl ] && ls .whl/*.whl > /dev/null 2>&1; then
    site=/tmp/nerfkit_site
    if ! "$PY" -m pip install -q --no-index --find-links .whl --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$site" .whl/*.whl > "$OUT/pip.log" 2>&1; then
        echo "pip install of .whl failed (see $OUT/pip.log); unpacking the wheels into $site instead"
        mkdir -p "$site"
        for wheel in .whl/*.whl; do
            "$PY" -m zipfile -e "$wheel" "$site" >> "$OUT/pip.log" 2>&1 || echo "could not unpack $wheel"
        done
        # ninja's wheel holds a binary (not Python): put it where pip would, executable
        mkdir -p "$site/bin"
        for binary in "$site"/ninja-*.data/scripts/ninja; do
            [ -f "$binary" ] && chmod +x "$binary" && ln -sf "$binary" "$site/bin/ninja"
        done
    fi
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# step NAME SECONDS COMMAND...: runs with a time limit (SIGTERM, then SIGKILL 10 s later should the command not
# end: a process stuck in a CUDA call or a torchrun worker must not hold the machine), logs to $OUT/NAME.log (the
# benchmarks write their JSON records progressively, so a step cut off keeps its finished runs) and says how it
# ended, also in $OUT/steps.txt. A failing or timed-out step never stops the later ones (no `set -e`).
step() {
    local name="$1" limit="$2"
    shift 2
    echo "== $name (limit ${limit}s): $*"
    local start=$SECONDS
    timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    local how="exit $rc"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then how="exit $rc: cut off at its ${limit} s limit"; fi
    tail -n 15 "$OUT/$name.log"
    echo "== $name: $how after $((SECONDS - start)) s"
    echo "$name: $how after $((SECONDS - start)) s (limit ${limit} s)" >> "$OUT/steps.txt"
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
if command -v nvidia-smi > /dev/null; then timeout -k 5 20 nvidia-smi >> "$OUT/machine.txt" 2>&1; fi

KERNEL_TESTS=(tests/test_kernels.py tests/test_kernels_grid.py tests/test_hashgrid.py tests/test_nerfacc_interop.py
              tests/test_camera_models.py tests/test_ngp.py)
case "$part" in
    essentials)
        # One call (<= 600 s) for the items issues 3 and 6 cannot close without a GPU, most important first; the
        # limits add up to 555 s. The longer versions are the kernels and training parts.
        if [ "$device" = cpu ]; then export TRITON_INTERPRET=1; quick="--quick"; steps=80; every=10; cap=(--max-processes 1)
        else quick=""; steps=600; every=50; cap=(); fi
        warm=$((steps / 4 / every * every))
        # (not the nerfacc comparisons: building nerfacc takes minutes, the nerfacc part does it)
        step tests 220 "$PY" -m pytest -v --tb=short --maxfail=10 -p no:cacheprovider "${KERNEL_TESTS[@]}" \
            tests/test_precision.py tests/test_train_robustness.py --deselect tests/test_nerfacc_interop.py \
            -k "not sigkill and not host_memory"
        step kernels_gpu 110 "$PY" benchmarks/kernels_gpu.py --device "$device" $quick \
            --output "$OUT/kernels_${device}.json"
        step precision 150 "$PY" benchmarks/train_precision.py --device "$device" --method ngp --steps "$steps" \
            --warmup "$warm" --log-every "$every" --output "$OUT/train_precision_${device}.json"
        step ddp 75 "$PY" benchmarks/train_ddp_scaling.py --device "$device" --method ngp --processes 1 2 4 8 \
            ${cap[@]+"${cap[@]}"} --steps "$((steps / 2))" --warmup "$((warm / 2 / every * every))" \
            --log-every "$every" --output "$OUT/train_ddp_scaling_${device}.json"
        ;;
    memory)
        if [ "$device" = cpu ]; then args=(--steps 300 --warmup 100 --log-every 50)
        else args=(--steps 10000 --warmup 1000 --log-every 100); fi
        step memory 300 "$PY" benchmarks/memory_long_run.py --device "$device" "${args[@]}" \
            --output "$OUT/memory_long_run_${device}.json"
        ;;
    nerfacc)
        # nerfacc 0.5.3 (carried as a wheel with rich and ninja) builds its CUDA code at first import (JIT, with
        # the image's nvcc, for this GPU only); then the interop tests compare it with nerfkit on random inputs.
        export MAX_JOBS="${MAX_JOBS:-16}"
        if [ "$device" != cpu ]; then
            export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')}"
        fi
        export PATH="/tmp/nerfkit_site/bin:$PATH"  # ninja's binary, from its wheel
        step nerfacc_build 360 "$PY" -c "import nerfacc; from nerfacc.cuda._backend import _C; \
print('nerfacc', nerfacc.__version__, 'CUDA code built:', _C is not None)"
        step nerfacc_tests 120 "$PY" -m pytest -v --tb=short -p no:cacheprovider tests/test_nerfacc_interop.py
        ;;
    kernels)
        if [ "$device" = cpu ]; then export TRITON_INTERPRET=1; quick="--quick"; else quick=""; fi
        # -v: each test's outcome is in the log as it ends (a cut-off run keeps them); --maxfail, not -x: one
        # failure does not hide the other tests' results
        step tests 330 "$PY" -m pytest -v --tb=short --maxfail=10 -p no:cacheprovider "${KERNEL_TESTS[@]}"
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
        # DDP: 1 2 4 8 processes are always asked for; the benchmark runs those the GPUs present allow and records
        # the others as skipped, with the limitation (one GPU: "only 1 GPU present: 2, 4, 8 processes not run").
        # The CPU smoke test stands in for one GPU (--max-processes 1).
        if [ "$device" = cpu ]; then steps=80; every=10; cap=(--max-processes 1); else steps=2000; every=50; cap=(); fi
        warm=$((steps / 4 / every * every))
        step precision 240 "$PY" benchmarks/train_precision.py --device "$device" --method ngp --steps "$steps" \
            --warmup "$warm" --log-every "$every" --output "$OUT/train_precision_${device}.json"
        step compile 150 "$PY" benchmarks/train_compile_cpu.py --device "$device" --methods ngp --steps "$steps" \
            --warmup "$warm" --log-every "$every" --output "$OUT/train_compile_${device}.json"
        step ddp 180 "$PY" benchmarks/train_ddp_scaling.py --device "$device" --method ngp --processes 1 2 4 8 \
            ${cap[@]+"${cap[@]}"} --steps "$steps" --warmup "$warm" --log-every "$every" \
            --output "$OUT/train_ddp_scaling_${device}.json"
        ;;
esac
ls -la "$OUT"
