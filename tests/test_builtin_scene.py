"""The built-in procedural scene: determinism, Blender layout, ground truth, view dependence, caching, poses."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from nerfkit.cameras import Cameras, look_at
from nerfkit.data import load_blender
from nerfkit.data import builtin
from nerfkit.data.builtin import (SCENE_AABB, BuiltinSceneConfig, builtin_cameras, ensure_builtin_scene,
                                  render_builtin_view, scene_sdf, write_builtin_scene)

TINY = BuiltinSceneConfig(resolution=24, n_train=4, n_val=2, n_test=3)
COUNTS = {"train": TINY.n_train, "val": TINY.n_val, "test": TINY.n_test}


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return write_builtin_scene(tmp_path_factory.mktemp("builtin") / "scene", TINY)


def all_files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_writing_twice_gives_identical_files(scene_dir, tmp_path):
    again = write_builtin_scene(tmp_path / "again", TINY)
    assert all_files(again) == all_files(scene_dir)
    for name in all_files(scene_dir):
        assert (again / name).read_bytes() == (scene_dir / name).read_bytes(), name


def test_files_form_the_blender_layout(scene_dir):
    expected = {f"transforms_{s}.json" for s in COUNTS}
    for split, n in COUNTS.items():
        expected |= {f"{split}/r_{i}{suffix}" for i in range(n) for suffix in (".png", "_depth.npy", "_mask.png")}
    assert set(all_files(scene_dir)) == expected

    alphas = []
    for split, n in COUNTS.items():
        meta = json.loads((scene_dir / f"transforms_{split}.json").read_text())
        assert meta["camera_angle_x"] == TINY.camera_angle_x
        assert [f["file_path"] for f in meta["frames"]] == [f"./{split}/r_{i}" for i in range(n)]
        assert np.asarray(meta["frames"][0]["transform_matrix"]).shape == (4, 4)
        extra = meta["nerfkit"]
        assert extra["aabb"] == list(SCENE_AABB) and extra["generator"].startswith("nerfkit builtin scene v")
        assert extra["near"] == pytest.approx(4.0 - math.sqrt(3)) and extra["far"] == pytest.approx(4.0 + math.sqrt(3))
        assert extra["config"]["resolution"] == 24
        for i in range(n):
            image = Image.open(scene_dir / split / f"r_{i}.png")
            assert image.mode == "RGBA" and image.size == (24, 24)
            alphas.append(np.asarray(image)[..., 3])
            mask = np.asarray(Image.open(scene_dir / split / f"r_{i}_mask.png"))
            assert mask.shape == (24, 24) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
            depth = np.load(scene_dir / split / f"r_{i}_depth.npy")
            assert depth.shape == (24, 24) and depth.dtype == np.float32
    alpha = np.stack(alphas)
    assert (alpha == 0).any() and (alpha == 255).any()
    assert ((alpha > 0) & (alpha < 255)).any(), "supersampling should give edges fractional alpha"

    scene = load_blender(scene_dir)  # the ordinary Blender loader reads it, with the nerfkit bounds
    assert scene.split("train").images.shape == (4, 24, 24, 4)
    assert scene.near == pytest.approx(4.0 - math.sqrt(3)) and scene.aabb.tolist() == list(SCENE_AABB)


def test_written_images_match_the_renderer(scene_dir):
    c2w = builtin_cameras(TINY, "val")[1]
    view = render_builtin_view(c2w, 24, 24, TINY.camera_angle_x, TINY.supersample)
    assert view["rgba"].shape == (24, 24, 4) and view["rgba"].dtype == torch.float32
    assert view["depth"].dtype == torch.float32 and view["mask"].dtype == torch.bool
    on_disk = np.asarray(Image.open(scene_dir / "val" / "r_1.png")).astype(np.float32) / 255
    assert np.abs(on_disk - view["rgba"].numpy()).max() <= 1 / 255 + 1e-6
    assert np.array_equal(np.asarray(Image.open(scene_dir / "val" / "r_1_mask.png")) > 0, view["mask"].numpy())
    rgb, alpha = view["rgba"][..., :3], view["rgba"][..., 3]
    assert (rgb[alpha == 0] == 0).all() and 0.0 <= rgb.min() and rgb.max() <= 1.0
    assert (alpha[view["mask"]] > 0).all()


def test_depth_points_lie_on_the_surface(scene_dir):
    lo, hi = torch.tensor(SCENE_AABB[:3]), torch.tensor(SCENE_AABB[3:])
    for split, n in COUNTS.items():
        meta = json.loads((scene_dir / f"transforms_{split}.json").read_text())
        c2w = torch.tensor([f["transform_matrix"] for f in meta["frames"]])
        cams = Cameras.from_fov(c2w, 24, 24, meta["camera_angle_x"])
        for i in range(n):
            depth = torch.from_numpy(np.load(scene_dir / split / f"r_{i}_depth.npy"))
            mask = torch.from_numpy(np.asarray(Image.open(scene_dir / split / f"r_{i}_mask.png")) > 0)
            assert mask.any() and (~mask).any()
            assert (depth[~mask] == 0).all() and (depth[mask] > 0).all()
            origins, dirs = cams.image_rays(i)
            points = origins[mask] + depth[mask, None] * dirs[mask]
            assert scene_sdf(points).abs().max() < 1e-3
            assert ((points > lo) & (points < hi)).all()
            # Background pixel-centre rays really miss: nothing along them comes near a surface.
            t = torch.linspace(0.5, 8.0, 800)
            samples = origins[~mask][:, None] + t[:, None] * dirs[~mask][:, None]
            assert scene_sdf(samples).min() > 0


def centre_pixel(eye, target, supersample=1):
    """Renders a 21x21 view from ``eye`` looking at ``target``: the centre pixel's ray passes through it.
    Returns the centre pixel's rgb and the 3D point its depth gives."""
    eye, target = torch.tensor(eye), torch.tensor(target)
    c2w = look_at(eye, target, torch.tensor([0.0, 0.0, 1.0]))
    view = render_builtin_view(c2w, 21, 21, 0.5, supersample)
    assert view["mask"][10, 10]
    direction = (target - eye) / torch.linalg.vector_norm(target - eye)
    return view["rgba"][10, 10, :3], eye + view["depth"][10, 10] * direction


def test_the_sphere_is_view_dependent_and_the_platform_is_not():
    centre, radius = torch.tensor(builtin._SPHERE_C), builtin._SPHERE_R
    normal = torch.nn.functional.normalize(torch.tensor([0.2, 0.1, 1.0]), dim=0)
    point = centre + radius * normal
    light = torch.nn.functional.normalize(torch.tensor(builtin._LIGHTS[0][0]), dim=0)
    mirror = 2 * (normal @ light) * normal - light  # the highlight of the key light is seen from here
    other = torch.nn.functional.normalize(torch.tensor([0.4, -0.9, 0.6]), dim=0)
    assert normal @ other > 0.3
    rgb_a, hit_a = centre_pixel((point + 3 * mirror).tolist(), point.tolist())
    rgb_b, hit_b = centre_pixel((point + 3 * other).tolist(), point.tolist())
    torch.testing.assert_close(hit_a, point, atol=1e-3, rtol=0)  # the same surface point, seen from both
    torch.testing.assert_close(hit_b, point, atol=1e-3, rtol=0)
    assert (rgb_a - rgb_b).abs().max() > 0.2, (rgb_a, rgb_b)

    spot = torch.tensor([0.75, -0.05, builtin._TOP])  # a diffuse platform point, seen from two sides
    side_a = torch.nn.functional.normalize(torch.tensor([1.0, -0.3, 1.0]), dim=0)
    side_b = torch.nn.functional.normalize(torch.tensor([0.6, 0.8, 0.8]), dim=0)
    rgb_a, hit_a = centre_pixel((spot + 3 * side_a).tolist(), spot.tolist())
    rgb_b, hit_b = centre_pixel((spot + 3 * side_b).tolist(), spot.tolist())
    torch.testing.assert_close(hit_a, spot, atol=1e-3, rtol=0)
    torch.testing.assert_close(hit_b, spot, atol=1e-3, rtol=0)
    torch.testing.assert_close(rgb_a, rgb_b, atol=2e-3, rtol=0)


def test_ensure_writes_once_and_keys_on_the_config(tmp_path):
    cfg = BuiltinSceneConfig(resolution=16, n_train=2, n_val=1, n_test=1)
    first = ensure_builtin_scene(tmp_path, cfg)
    assert first.parent == tmp_path and first.name.startswith("builtin-")
    assert (first / "transforms_test.json").is_file()
    stamps = {p: p.stat().st_mtime_ns for p in first.rglob("*")}
    again = ensure_builtin_scene(tmp_path, BuiltinSceneConfig(resolution=16, n_train=2, n_val=1, n_test=1))
    assert again == first
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*")} == stamps
    other = ensure_builtin_scene(tmp_path, BuiltinSceneConfig(resolution=16, n_train=2, n_val=1, n_test=1, seed=1))
    assert other != first and other.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, other.name])  # no temporaries left


def test_an_interrupted_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def fail(out_dir, cfg):
        (out_dir / "train").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(builtin, "write_builtin_scene", fail)
    with pytest.raises(KeyboardInterrupt):
        ensure_builtin_scene(tmp_path, BuiltinSceneConfig(resolution=16, n_train=2, n_val=1, n_test=1))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_cameras_sit_on_the_upper_hemisphere_looking_at_the_origin(split):
    cfg = BuiltinSceneConfig(n_train=20, n_val=6, n_test=8, camera_distance=3.5)
    c2w = builtin_cameras(cfg, split)
    assert c2w.shape == ({"train": 20, "val": 6, "test": 8}[split], 4, 4) and c2w.dtype == torch.float32
    torch.testing.assert_close(c2w[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(len(c2w), 4))
    rot, eye = c2w[:, :3, :3], c2w[:, :3, 3]
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, torch.eye(3).expand_as(rot), atol=1e-5, rtol=0)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(len(rot)), atol=1e-5)
    torch.testing.assert_close(torch.linalg.vector_norm(eye, dim=-1), torch.full((len(eye),), 3.5))
    elevation = torch.rad2deg(torch.asin(eye[:, 2] / 3.5))
    assert (elevation > 15 - 1e-3).all() and (elevation < 65 + 1e-3).all()
    torch.testing.assert_close(-rot[:, :, 2], -eye / 3.5, atol=1e-5, rtol=0)  # -z points at the origin
    assert (rot[:, 2, 1] > 0).all()  # image up has a positive world-z component (no roll)


def test_train_and_val_poses_are_seeded_and_distinct():
    cfg = BuiltinSceneConfig(n_train=8, n_val=8)
    train, val = builtin_cameras(cfg, "train"), builtin_cameras(cfg, "val")
    assert torch.equal(train, builtin_cameras(BuiltinSceneConfig(n_train=8, n_val=8), "train"))
    assert not torch.allclose(train, val)
    assert not torch.allclose(train, builtin_cameras(BuiltinSceneConfig(n_train=8, seed=1), "train"))
    test = builtin_cameras(BuiltinSceneConfig(n_test=12), "test")
    azimuth = torch.atan2(test[:, 1, 3], test[:, 0, 3])
    steps = torch.remainder(azimuth.roll(-1) - azimuth, 2 * math.pi)
    torch.testing.assert_close(steps, torch.full((12,), 2 * math.pi / 12), atol=1e-5, rtol=0)  # an even ring
    with pytest.raises(ValueError, match="split"):
        builtin_cameras(cfg, "everything")
