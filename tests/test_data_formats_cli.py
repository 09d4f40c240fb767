"""``nerfkit train --data.path <folder>`` on every format, with the format told from the folder; the Blender
built-in scene converted by nerfkit's own writers."""

import json

import pytest
import torch

from nerfkit.cli import main
from nerfkit.data import detect_format, load_blender

TINY = ["--method", "vanilla", "--vanilla.fine.depth", "2", "--vanilla.fine.width", "32", "--vanilla.fine.skips",
        "--vanilla.occgrid.resolution", "16", "--batch-size", "128", "--eval-images", "1", "--no-progress",
        "--steps", "6", "--data.hold-every", "4"]


def export(fmt: str, scene, root):
    if fmt == "nerfstudio":
        from nerfkit.data.transforms_json import write_nerfstudio
        write_nerfstudio(root, scene)
    elif fmt == "instant-ngp":
        from nerfkit.data.transforms_json import write_instant_ngp
        write_instant_ngp(root, scene)
    elif fmt == "colmap":
        from nerfkit.data.colmap import write_colmap_dataset
        write_colmap_dataset(scene, root)
    return root


@pytest.mark.parametrize("fmt", ["nerfstudio", "instant-ngp", "colmap"])
def test_train_and_eval_on_each_format_from_the_cli(tmp_path, tiny_scene_dir, fmt, capsys):
    root = export(fmt, load_blender(tiny_scene_dir), tmp_path / fmt)
    assert detect_format(root) == fmt
    run = tmp_path / "run"
    argv = ["train", "--data.path", str(root), "--output", str(run), "--data.cache-dir", str(tmp_path / "cache")]
    assert main(argv + TINY) == 0
    out = capsys.readouterr().out
    assert "trained 6 steps" in out
    saved = json.loads((run / "config.json").read_text())
    assert saved["data"]["path"] == str(root) and saved["data"]["format"] == "auto"
    assert main(["eval", "--run", str(run), "--device", "cpu"]) == 0
    results = json.loads((run / "eval-test" / "results.json").read_text())
    assert results["n_images"] >= 2 and results["resolution"] == [24, 24]
    # The run records the scene's placement, and a render's cameras map back to the dataset's frame: the
    # built-in scene's test cameras circle its origin at distance 4, and so does the orbit, whatever frame
    # the format's loader moved the scene into.
    placed = json.loads((run / "scene.json").read_text())
    assert len(placed["transform"]) == 4 and placed["splits"]["train"] >= 9
    assert main(["render", "--run", str(run), "--frames", "3", "--output", str(run / "orbit.gif")]) == 0
    poses = json.loads((run / "orbit.json").read_text())
    positions = torch.tensor(poses["dataset_frame"], dtype=torch.float64)[:, :, 3]
    torch.testing.assert_close(positions.norm(dim=-1), torch.full((3,), 4.0, dtype=torch.float64), rtol=2e-3,
                               atol=0)
    assert poses["scene_transform"] == placed["transform"]


def test_a_forced_format_that_does_not_fit_is_a_clear_error(tmp_path, tiny_scene_dir, capsys):
    argv = ["train", "--data.path", str(tiny_scene_dir), "--data.format", "llff", "--output", str(tmp_path / "r")]
    assert main(argv + TINY) == 2
    err = capsys.readouterr().err
    assert "poses_bounds.npy" in err and "Traceback" not in err
