import os
from pathlib import Path

import pytest
import torch

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
