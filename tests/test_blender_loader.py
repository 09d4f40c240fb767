import json
import shutil

import numpy as np
import pytest
import torch

from nerfkit.data import DataError, load_blender
from nerfkit.data.images import read_image


def test_loads_builtin_scene_in_blender_layout(tiny_scene_dir):
    scene = load_blender(tiny_scene_dir)
    assert set(scene.splits) == {"train", "val", "test"}
    train = scene.split("train")
    assert train.images.shape == (12, 24, 24, 4) and train.images.dtype == torch.uint8
    meta = json.loads((tiny_scene_dir / "transforms_train.json").read_text())
    torch.testing.assert_close(train.cameras.c2w[0], torch.tensor(meta["frames"][0]["transform_matrix"])[:3])
    focal = 0.5 * 24 / np.tan(0.5 * meta["camera_angle_x"])
    assert train.cameras.fx[0].item() == pytest.approx(focal, rel=1e-5)
    assert scene.aabb is not None and scene.near < scene.far
    on_disk = read_image(tiny_scene_dir / "train" / "r_0.png")
    assert np.array_equal(train.images[0].numpy(), on_disk)


def test_downscale_shrinks_images_and_intrinsics(tiny_scene_dir):
    full = load_blender(tiny_scene_dir, splits=("train",))
    half = load_blender(tiny_scene_dir, downscale=2, splits=("train",))
    assert half.split("train").images.shape == (12, 12, 12, 4)
    assert half.split("train").cameras.fx[0].item() == pytest.approx(full.split("train").cameras.fx[0].item() / 2)
    # Area averaging preserves the mean premultiplied colour and the mean alpha.
    def premultiplied_mean(image):
        rgba = image.float() / 255.0
        return torch.cat([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], -1).mean(dim=(0, 1))

    a = premultiplied_mean(full.split("train").images[0])
    b = premultiplied_mean(half.split("train").images[0])
    torch.testing.assert_close(a, b, atol=0.01, rtol=0)


def test_loads_real_lego(lego_dir):
    scene = load_blender(lego_dir, downscale=8, splits=("train", "test"))
    assert scene.split("train").images.shape == (100, 100, 100, 4)
    assert len(scene.split("test")) == 200
    assert scene.split("train").cameras.fx[0].item() == pytest.approx(1111.111 / 8, rel=1e-4)
    assert (scene.near, scene.far) == (2.0, 6.0)


def copy_scene(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_missing_folder_and_files_give_clear_errors(tmp_path, tiny_scene_dir):
    with pytest.raises(DataError, match="dataset folder not found"):
        load_blender(tmp_path / "nope")
    with pytest.raises(DataError, match="transforms_train.json not found"):
        load_blender(tmp_path)
    root = copy_scene(tiny_scene_dir, tmp_path / "scene")
    (root / "train" / "r_3.png").unlink()
    with pytest.raises(DataError, match=r"image file not found: .*r_3\.png"):
        load_blender(root)


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m.pop("camera_angle_x"), "no 'camera_angle_x'"),
    (lambda m: m.update(frames=[]), "split is empty"),
    (lambda m: m["frames"][1].pop("transform_matrix"), "frame 1 has no 'transform_matrix'"),
    (lambda m: m["frames"][0]["transform_matrix"][0].__setitem__(3, float("nan")), "non-finite"),
    (lambda m: m["frames"][0]["transform_matrix"][0].__setitem__(0, 3.0), "not a rigid transform"),
    (lambda m: m["frames"][0].update(file_path="../../etc/passwd"), "outside the dataset folder"),
])
def test_malformed_transforms_are_reported_with_the_file(tmp_path, tiny_scene_dir, mutate, message):
    root = copy_scene(tiny_scene_dir, tmp_path / "scene")
    path = root / "transforms_train.json"
    meta = json.loads(path.read_text())
    mutate(meta)
    path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=message) as info:
        load_blender(root)
    assert "transforms_train.json" in str(info.value)


def test_invalid_json_is_reported(tmp_path, tiny_scene_dir):
    root = copy_scene(tiny_scene_dir, tmp_path / "scene")
    (root / "transforms_train.json").write_text("{not json")
    with pytest.raises(DataError, match="transforms_train.json is not valid JSON"):
        load_blender(root)
