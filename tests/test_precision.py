"""Mixed precision: fields and rendering under bf16 and fp16 autocast on CPU, bf16 training quality, fp16 refused on CPU."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from nerfkit.cli import main
from nerfkit.fields import VanillaFieldConfig
from nerfkit.fields.ngp import NGPField, NGPFieldConfig
from nerfkit.methods import NGPConfig, InstantNGP, VanillaConfig, VanillaNeRF
from nerfkit.methods.occgrid import OccGridConfig
from nerfkit.train.precision import (CPU_KERNEL_CACHE_ENTRIES, CPU_KERNEL_CACHES, autocast,
                                     bound_cpu_kernel_caches)
from nerfkit.train.trainer import train

from test_train import tiny_config

CPU = torch.device("cpu")
BOX = torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])


def small_field() -> VanillaFieldConfig:
    return VanillaFieldConfig(depth=2, width=32, skips=(), color_width=16, pos_freqs=4, dir_freqs=2)


@pytest.mark.parametrize("low", ["bf16", "fp16"])
def test_hash_grid_field_under_autocast_returns_float32_close_to_fp32(low):
    """The hash table is read in float32 and the density's exponential and the colour's sigmoid run in float32;
    only the tiny MLPs run in bf16 or fp16, so outputs and the table's gradient stay close to the fp32 ones.
    (fp16 training is for CUDA; torch's CPU autocast runs the same fp16 casts, so they are checked here.)"""
    torch.manual_seed(0)
    field = NGPField(NGPFieldConfig(n_levels=4, log2_hashmap_size=12, max_resolution=64, hidden_dim=32), BOX)
    with torch.no_grad():  # a table with some structure, so that densities vary
        field.encoder.embeddings.normal_(0.0, 0.5)
    x, d = torch.rand(4096, 3) * 2 - 1, torch.nn.functional.normalize(torch.randn(4096, 3), dim=-1)
    results = {}
    for precision in ("fp32", low):
        field.zero_grad()
        with autocast(precision, CPU):
            rgb, sigma = field(x, d)
        assert rgb.dtype == sigma.dtype == torch.float32
        (rgb.sum() + sigma.sum()).backward()
        grad = field.encoder.embeddings.grad
        assert grad.dtype == torch.float32 and torch.isfinite(grad).all()
        results[precision] = rgb, sigma, grad.clone()
    (rgb32, sigma32, grad32), (rgb16, sigma16, grad16) = results["fp32"], results[low]
    torch.testing.assert_close(rgb16, rgb32, atol=2e-2, rtol=0)
    torch.testing.assert_close(sigma16, sigma32, atol=0.05 * float(sigma32.detach().abs().max()), rtol=0.05)
    assert torch.nn.functional.cosine_similarity(grad16.flatten(), grad32.flatten(), dim=0) > 0.99


@pytest.mark.parametrize("low", ["bf16", "fp16"])
@pytest.mark.parametrize("method", ["occgrid", "coarse-to-fine", "ngp"])
def test_methods_render_in_float32_under_autocast(method, low):
    """Volume rendering (transmittance, weights, composited colour) stays float32 under autocast, and the
    rendered colours are close to fp32's."""
    torch.manual_seed(0)
    if method == "ngp":
        cfg = NGPConfig(field=NGPFieldConfig(n_levels=4, log2_hashmap_size=12, max_resolution=32, hidden_dim=16),
                        occgrid=OccGridConfig(resolution=16, steps_per_diagonal=64))
        model = InstantNGP(cfg, 0.5, 4.0, BOX)
    else:
        model = VanillaNeRF(VanillaConfig(n_coarse=16, n_fine=16, coarse=small_field(), fine=small_field(),
                                          estimator=method), 0.5, 4.0, BOX)
    origins = torch.tensor([0.0, 0.0, 3.0]).expand(256, 3)
    directions = torch.nn.functional.normalize(torch.randn(256, 3) * 0.2 + torch.tensor([0.0, 0.0, -1.0]), dim=-1)
    outputs = {}
    for precision in ("fp32", low):
        with autocast(precision, CPU):
            out = model(origins, directions, torch.ones(3), torch.Generator().manual_seed(1))
        assert out["rgb"].dtype == out["opacity"].dtype == torch.float32
        outputs[precision] = out
    torch.testing.assert_close(outputs[low]["rgb"], outputs["fp32"]["rgb"], atol=3e-2, rtol=0)
    torch.testing.assert_close(outputs[low]["opacity"], outputs["fp32"]["opacity"], atol=3e-2, rtol=0)


def test_bf16_training_reaches_within_half_a_db_of_fp32(tmp_path, tiny_scene_dir):
    """150 steps on the 24x24 built-in scene with the default sampler (occupancy grid): bf16 autocast ends
    within 0.5 dB of fp32 on the validation images (about 17.9 dB each when written; untrained: about 10 dB)."""
    psnr = {}
    for precision in ("fp32", "bf16"):
        cfg = tiny_config(tmp_path / precision, tiny_scene_dir.parent, steps=150, batch_size=256, lr=1e-2,
                          save_every=1000, eval_images=2, precision=precision,
                          vanilla=VanillaConfig(n_coarse=16, n_fine=16, coarse=small_field(), fine=small_field()))
        psnr[precision] = train(cfg).val_psnr
    assert psnr["fp32"] > 15.0
    assert psnr["bf16"] > psnr["fp32"] - 0.5, psnr


def test_fp16_on_a_cpu_is_refused_clearly(tmp_path, capsys):
    assert main(["train", "--precision", "fp16", "--device", "cpu", "--output", str(tmp_path / "o")]) == 2
    assert "--precision fp16 needs a CUDA device (training on cpu); on a CPU use --precision bf16" \
        in capsys.readouterr().err


def test_bf16_on_a_cpu_bounds_the_kernel_caches_the_user_left_unset(monkeypatch):
    env = {k: v for k, v in os.environ.items() if k not in CPU_KERNEL_CACHES}
    env["LRU_CACHE_CAPACITY"] = "7"  # the user's own setting stays
    monkeypatch.setattr(os, "environ", env)
    assert bound_cpu_kernel_caches("fp32", CPU) == [] and "ONEDNN_PRIMITIVE_CACHE_CAPACITY" not in env
    assert bound_cpu_kernel_caches("bf16", torch.device("cuda")) == []
    assert bound_cpu_kernel_caches("bf16", CPU) == ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"]
    assert env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(CPU_KERNEL_CACHE_ENTRIES) and env["LRU_CACHE_CAPACITY"] == "7"


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(),
                    reason="this CPU has no bf16 instructions: bf16 products do not go through oneDNN's caches")
def test_bf16_products_of_ever_new_shapes_do_not_grow_the_process_once_bounded():
    """What training's varying sample counts do to bf16 matrix products on a CPU: with both caches at their
    default (1024 entries) 1500 new shapes grew the process by ~0.6-0.9 GB on the machine this was written on;
    bounded, by ~70 MB. Run in a fresh process: the bound must come before the process's first bf16 product."""
    script = textwrap.dedent("""
        import torch
        from nerfkit.train.precision import bound_cpu_kernel_caches
        from nerfkit.train.trainer import _memory_mb
        bound_cpu_kernel_caches("bf16", torch.device("cpu"))
        def rss_mb():
            return _memory_mb(torch.device("cpu"))["host_mem_mb"]
        w = torch.randn(32, 32).bfloat16()
        for n in range(1000, 1100):
            torch.randn(n, 32).bfloat16() @ w
        before = rss_mb()
        for n in range(2000, 3500):
            torch.randn(n, 32).bfloat16() @ w
        print(rss_mb() - before)
    """)
    env = {k: v for k, v in os.environ.items() if k not in CPU_KERNEL_CACHES}
    if not os.path.exists("/proc/self/statm"):
        pytest.skip("needs /proc (Linux) to read the process's resident memory")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.split()[-1]) < 250.0, out.stdout
