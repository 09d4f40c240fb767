import os

# Triton kernels run on CPU under Triton's interpreter when there is no GPU. Triton reads TRITON_INTERPRET when a
# kernel is defined (decorated); nerfkit imports its Triton modules lazily, on the first call taking the Triton path,
# so setting the flag here, before torch or any test module is imported, is early enough. It is set first and
# withdrawn again if torch then finds a CUDA device (a real GPU compiles the kernels); a value the user set stays.
_SET_INTERPRET = "TRITON_INTERPRET" not in os.environ
os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

if _SET_INTERPRET and torch.cuda.is_available():
    del os.environ["TRITON_INTERPRET"]

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

LEGO = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nerf_synthetic" / "lego"


@pytest.fixture(scope="session")
def tiny_scene_dir(tmp_path_factory):
    """A small built-in scene (24x24, few views), written once per test session."""
    from nerfkit.data.builtin import BuiltinSceneConfig, ensure_builtin_scene

    cfg = BuiltinSceneConfig(resolution=24, n_train=12, n_val=2, n_test=3)
    return ensure_builtin_scene(tmp_path_factory.mktemp("cache"), cfg)


@pytest.fixture
def lego_dir():
    if not (LEGO / "transforms_train.json").is_file():
        pytest.skip(f"the real lego scene is not at {LEGO} (it lives in ../shared/data outside the repo)")
    return LEGO
