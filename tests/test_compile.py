"""``--compile``: compiled fields train like eager ones; a compiler that fails falls back to eager code."""

import functools
import warnings

import pytest
import torch

from nerfkit.methods import VanillaConfig
from nerfkit.fields import VanillaFieldConfig
from nerfkit.train.checkpoint import latest_checkpoint
from nerfkit.train.trainer import train

from test_train import tiny_config


def small_vanilla(**kwargs) -> VanillaConfig:
    field = VanillaFieldConfig(depth=2, width=32, skips=(), color_width=16, pos_freqs=4, dir_freqs=2)
    return VanillaConfig(n_coarse=8, n_fine=8, coarse=field, fine=field, **kwargs)


def final_model(cfg) -> dict:
    return latest_checkpoint(cfg.output / "checkpoints")[1]["model"]


def broken_backend(graph, example_inputs):
    """A compiler backend that raises, as a missing C++ compiler does."""
    raise RuntimeError("no C++ compiler found")


def broken_backward_backend():
    """A backend whose forward compiles but whose backward compiler raises: AOTAutograd would defer the failing
    backward to the first backward(), where it would end the run, unless it is compiled with the forward."""
    from torch._dynamo.backends.common import aot_autograd

    def broken_backward(graph, example_inputs):
        raise RuntimeError("backward lowering failed")

    return aot_autograd(fw_compiler=lambda graph, example_inputs: graph, bw_compiler=broken_backward)


@pytest.mark.parametrize("backend, cause", [(lambda: broken_backend, "no C++ compiler found"),
                                            (broken_backward_backend, "backward lowering failed")],
                         ids=["forward", "backward"])
def test_a_failing_compiler_falls_back_to_eager_with_one_warning(tmp_path, tiny_scene_dir, monkeypatch, backend,
                                                                 cause):
    """A compiler failure, in the forward or the backward pass: one warning, then the eager code, so the run ends
    exactly where an eager run ends."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=backend()))
    cache = tiny_scene_dir.parent
    compiled = tiny_config(tmp_path / "compiled", cache, steps=4, save_every=100, compile=True, device="cpu",
                           vanilla=small_vanilla())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert train(compiled).step == 4
    messages = [str(w.message) for w in caught if "--compile" in str(w.message)]
    assert len(messages) == 1 and cause in messages[0] and "eager" in messages[0]
    eager = tiny_config(tmp_path / "eager", cache, steps=4, save_every=100, device="cpu", vanilla=small_vanilla())
    train(eager)
    a, b = final_model(compiled), final_model(eager)
    assert a.keys() == b.keys()  # compiling changes no state_dict key: checkpoints stay interchangeable
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_compiled_calls_leave_nothing_behind(monkeypatch):
    """Each call of a compiled field enters the context that compiles backward with forward; a context built per
    call left an entry in the thread's context at every exit (~220 bytes a call, for the whole run)."""
    import contextvars

    from nerfkit.methods import VanillaNeRF
    from nerfkit.train.compile import compile_fields

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    model = VanillaNeRF(small_vanilla(), 0.5, 4.0, torch.tensor([-1.0, -1, -1, 1, 1, 1]))
    field = getattr(model, compile_fields(model)[0])
    x = torch.rand(64, 3)
    field.query_density(x)
    before = len(contextvars.copy_context())
    for _ in range(200):
        field.query_density(x)
    assert len(contextvars.copy_context()) == before


@pytest.mark.slow
def test_compiled_fields_train_like_eager_ones(tmp_path, tiny_scene_dir):
    """torch.compile of the occupancy-grid field (forward for training, query_density for grid updates and early
    stopping) on CPU: the same parameters as eager code after a few steps, up to float rounding. Slow: the
    C++ compilation takes about a minute on 2 cores."""
    cache = tiny_scene_dir.parent
    runs = {}
    for name, compile_ in (("eager", False), ("compiled", True)):
        cfg = tiny_config(tmp_path / name, cache, steps=6, save_every=100, eval_images=0, compile=compile_,
                          device="cpu", vanilla=small_vanilla(stratified=False))
        cfg.data.background = "white"
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no fallback: the compiler works here
            train(cfg)
        runs[name] = final_model(cfg)
    for key, value in runs["eager"].items():
        torch.testing.assert_close(runs["compiled"][key], value, rtol=1e-4, atol=1e-5, msg=key)
