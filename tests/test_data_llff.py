import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfkit.cameras import NDC, Cameras, ndc_rays
from nerfkit.cli import main
from nerfkit.data import DataError, load_blender, load_scene
from nerfkit.data.config import DataConfig, LLFFConfig
from nerfkit.data.frames import hold_out_split
from nerfkit.data.images import read_image
from nerfkit.data.llff import NDC_AABB, NDC_FAR, parse_llff, write_llff
from nerfkit.eval.video import spiral_cameras

FERN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nerf_llff_data" / "fern"
FERN_FOCAL = 3260.526333  # poses_bounds.npy's focal length for the 4032x3024 originals
TINY_VANILLA = ["--method", "vanilla", "--vanilla.estimator", "coarse-to-fine", "--vanilla.n-coarse", "8", "--vanilla.n-fine", "8",
                "--vanilla.coarse.depth", "2", "--vanilla.coarse.width", "32", "--vanilla.coarse.skips",
                "--vanilla.fine.depth", "2", "--vanilla.fine.width", "32", "--vanilla.fine.skips", "--batch-size", "64",
                "--eval-images", "1", "--no-progress"]


def random_rotation(rng, angle):
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def forward_facing_capture(n=10, seed=0):
    """Cameras on a small patch looking roughly down -z at content 10..40 units away, then carried into an
    arbitrary world frame (rotated, moved, scaled), with their bounds: ``(c2w (n, 3, 4), bounds (n, 2))``."""
    rng = np.random.default_rng(seed)
    world_rot, world_t, world_scale = random_rotation(rng, 1.0), rng.normal(size=3) * 5, 3.0
    c2w = np.zeros((n, 3, 4))
    for i in range(n):
        local_rot = random_rotation(rng, 0.1)
        position = np.array([rng.uniform(-1, 1), rng.uniform(-0.6, 0.6), rng.uniform(-0.2, 0.2)])
        c2w[i, :, :3] = world_rot @ local_rot
        c2w[i, :, 3] = world_scale * world_rot @ position + world_t
    bounds = np.stack([rng.uniform(10, 12, n), rng.uniform(30, 40, n)], axis=1) * world_scale
    return c2w, bounds


def write_capture(root, n=10, size=(8, 6), focal=9.0, downscale=1, seed=0):
    c2w, bounds = forward_facing_capture(n, seed)
    images = np.random.default_rng(seed).integers(0, 256, (n, size[1], size[0], 3), dtype=np.uint8)
    write_llff(root, c2w, focal, bounds, list(images), downscale=downscale)
    return c2w, bounds, images


def data_config(path, tmp_path, **kwargs):
    llff = kwargs.pop("llff", LLFFConfig())
    return DataConfig(path=path, cache_dir=tmp_path / "cache", llff=llff, **kwargs)


def all_cameras(scene):
    """Every image's camera once, in file order (LLFF's splits are index sets over the sorted files)."""
    seen = {}
    for split in scene.splits.values():
        for i, name in enumerate(split.names):
            seen[name] = split.cameras.c2w[i]
    return torch.stack([seen[name] for name in sorted(seen)])


# --- NDC ------------------------------------------------------------------------------------------------


def paper_ndc_rays(o, d, fx, fy, width, height, near):
    """The original NeRF's ndc_rays (its appendix), with un-normalised directions and t in [0, 1]."""
    t = -(near + o[..., 2]) / d[..., 2]
    o = o + t[..., None] * d
    o0 = -1.0 / (width / (2.0 * fx)) * o[..., 0] / o[..., 2]
    o1 = -1.0 / (height / (2.0 * fy)) * o[..., 1] / o[..., 2]
    o2 = 1.0 + 2.0 * near / o[..., 2]
    d0 = -1.0 / (width / (2.0 * fx)) * (d[..., 0] / d[..., 2] - o[..., 0] / o[..., 2])
    d1 = -1.0 / (height / (2.0 * fy)) * (d[..., 1] / d[..., 2] - o[..., 1] / o[..., 2])
    d2 = -2.0 * near / o[..., 2]
    return torch.stack([o0, o1, o2], -1), torch.stack([d0, d1, d2], -1)


def test_ndc_rays_match_the_papers_formula_and_projection():
    g = torch.Generator().manual_seed(0)
    n = 2000
    origins = (torch.rand(n, 3, generator=g, dtype=torch.float64) - 0.5) * 0.6
    dirs = torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.3
    dirs[:, 2] = -1.0 - torch.rand(n, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    ndc = NDC(fx=50.0, fy=55.0, width=64, height=48, near=1.0)
    o, d = ndc_rays(origins, dirs, ndc)
    po, pd = paper_ndc_rays(origins, dirs * 3.0, ndc.fx, ndc.fy, ndc.width, ndc.height, ndc.near)
    torch.testing.assert_close(o, po)
    torch.testing.assert_close(d, pd / pd.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(n, dtype=torch.float64))
    assert torch.allclose(o[:, 2], torch.full((n,), -1.0, dtype=torch.float64))
    # A world point on the ray beyond the near plane projects (the paper's projection) onto the NDC ray.
    depth = 1.5 + 20 * torch.rand(n, 1, generator=g, dtype=torch.float64)
    t_world = (depth + origins[:, 2:]) / -dirs[:, 2:]
    x, y, z = (origins + t_world * dirs).unbind(-1)
    projected = torch.stack([-2 * ndc.fx / ndc.width * x / z, -2 * ndc.fy / ndc.height * y / z, 1 + 2 * ndc.near / z],
                            -1)
    t_ndc = (projected[:, 2] - o[:, 2]) / d[:, 2]
    assert (t_ndc > 0).all() and (t_ndc < NDC_FAR).all()
    torch.testing.assert_close(o + t_ndc[:, None] * d, projected)


# --- loading ----------------------------------------------------------------------------------------------


def test_writer_and_loader_round_trip_the_builtin_scene(tmp_path, tiny_scene_dir):
    blender = load_blender(tiny_scene_dir)
    names = [f"{split}_{i:03d}.png" for split in ("test", "train", "val")
             for i in range(len(blender.split(split)))]
    splits = [blender.split(s) for s in ("test", "train", "val")]
    c2w = torch.cat([blender.to_dataset_frame(s.cameras.c2w) for s in splits]).double().numpy()
    images = torch.cat([s.images for s in splits]).numpy()
    focal = splits[0].cameras.fx[0].item()
    root = tmp_path / "llff"
    write_llff(root, c2w, focal, np.array([blender.near, blender.far]), list(images), names=names)

    scene = load_scene(data_config(root, tmp_path))
    assert scene.info["format"] == "llff" and scene.forward_facing
    n = len(names)
    expected = hold_out_split(n, 8)
    assert len(scene.split("train")) == len(expected["train"]) and len(scene.split("test")) == len(expected["test"])
    assert scene.split("test").names == [names[i] for i in expected["test"]]
    assert scene.split("val").names == scene.split("test").names
    back = scene.to_dataset_frame(all_cameras(scene).double())
    torch.testing.assert_close(back, torch.from_numpy(c2w), atol=1e-5, rtol=0)
    cams = scene.split("train").cameras
    assert (cams.width, cams.height) == (24, 24)
    torch.testing.assert_close(cams.fx, torch.full_like(cams.fx, focal))
    torch.testing.assert_close(cams.fy, torch.full_like(cams.fy, focal))
    torch.testing.assert_close(cams.cx, torch.full_like(cams.cx, 12.0))
    torch.testing.assert_close(cams.cy, torch.full_like(cams.cy, 12.0))
    first = expected["train"][0]
    assert np.array_equal(scene.split("train").images[0].numpy(), images[first])


def test_recentres_rescales_and_uses_ndc_like_nerf(tmp_path):
    root = tmp_path / "capture"
    c2w, bounds, _ = write_capture(root)
    scene = load_scene(data_config(root, tmp_path))
    poses = all_cameras(scene).double()
    # The average camera is the world frame: mean position 0, summed axes along x, y, z.
    torch.testing.assert_close(poses[:, :, 3].mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-6, rtol=0)
    z = poses[:, :, 2].sum(0)
    torch.testing.assert_close(z / z.norm(), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), atol=1e-6, rtol=0)
    assert abs(poses[:, 0, 1].sum().item()) < 1e-5  # the summed up vector lies in the y-z plane
    # The nearest bound becomes 1 / bd_factor; the scale is recorded in the scene's transform.
    assert scene.info["depth_bounds"][0] == pytest.approx(1 / 0.75)
    assert scene.scale == pytest.approx(1 / (bounds.min() * 0.75))
    assert scene.info["depth_bounds"][1] == pytest.approx(bounds.max() * scene.scale)
    # NDC: rays start on the near plane of the average camera and the box is the NDC box.
    cams = scene.split("train").cameras
    assert cams.ndc == NDC(cams.fx[0].item(), cams.fy[0].item(), 8, 6, 1.0)
    assert (scene.near, scene.far) == (0.0, pytest.approx(NDC_FAR))
    assert scene.aabb.tolist() == list(NDC_AABB)
    o, d = cams.image_rays(0)
    assert torch.allclose(o[..., 2], torch.tensor(-1.0)) and (d[..., 2] > 0).all()
    assert (o[..., :2].abs() <= 1.5).all()


def test_without_ndc_bounds_and_box_cover_the_frustums(tmp_path):
    root = tmp_path / "capture"
    c2w, bounds, _ = write_capture(root)
    scene = load_scene(data_config(root, tmp_path, llff=LLFFConfig(ndc=False)))
    assert scene.forward_facing and scene.split("train").cameras.ndc is None
    lo_bound, hi_bound = scene.info["depth_bounds"]
    assert scene.near == pytest.approx(0.9 * lo_bound)
    assert scene.far >= hi_bound  # the far bound along the widest (corner) ray
    # Every pixel's ray, between its camera's own depth bounds, stays inside the box and the near/far range.
    scale, aabb = scene.scale, scene.aabb.double()
    for split in scene.splits.values():
        for i in range(len(split)):
            k = int(split.names[i][5:8])
            o, d = (v.double() for v in split.cameras.image_rays(i))
            forward = -split.cameras.c2w[i, :, 2].double()
            for depth in bounds[k] * scale:
                t = depth / (d @ forward)
                assert (t >= scene.near - 1e-5).all() and (t <= scene.far + 1e-5).all()
                points = o + t[..., None] * d
                assert (points >= aabb[:3] - 1e-4).all() and (points <= aabb[3:] + 1e-4).all()


def test_spherify_puts_cameras_on_a_unit_sphere_around_the_focus(tmp_path, tiny_scene_dir):
    blender = load_blender(tiny_scene_dir, splits=("train",))
    c2w = blender.split("train").cameras.c2w.double().numpy()
    root = tmp_path / "ring"
    write_llff(root, c2w, blender.split("train").cameras.fx[0].item(), np.array([blender.near, blender.far]),
               list(blender.split("train").images.numpy()))
    scene = load_scene(data_config(root, tmp_path, llff=LLFFConfig(spherify=True)))
    assert not scene.forward_facing and scene.split("train").cameras.ndc is None
    poses = all_cameras(scene).double()
    assert poses[:, :, 3].norm(dim=-1).square().mean().sqrt().item() == pytest.approx(1.0)
    # The built-in cameras look at the world origin: it becomes the spherified origin.
    origin = scene.transform[:3, 3]
    assert origin.norm().item() < 1e-6
    torch.testing.assert_close(scene.to_dataset_frame(poses), torch.from_numpy(c2w), atol=1e-5, rtol=0)
    assert scene.near == pytest.approx(0.9 * blender.near * scene.scale)


def test_images_folder_choice_and_listing(tmp_path):
    root = tmp_path / "capture"
    c2w, _, images = write_capture(root, size=(8, 6), focal=9.0, downscale=2)  # images_2, described as 16x12
    # --data.downscale 2: images_2 as they are.
    scene = load_scene(data_config(root, tmp_path, downscale=2))
    cams = scene.split("train").cameras
    assert (cams.width, cams.height) == (8, 6) and cams.fx[0].item() == pytest.approx(9.0)
    # --data.downscale 4: images_2 shrunk by 2 more, intrinsics follow.
    scene = load_scene(data_config(root, tmp_path, downscale=4))
    cams = scene.split("train").cameras
    assert (cams.width, cams.height) == (4, 3) and cams.fx[0].item() == pytest.approx(4.5)
    assert parse_llff(root, data_config(root, tmp_path, downscale=4)).downscale == 2
    # --data.downscale 1 or 3: nothing fits; the message names the folders and the fix.
    for factor in (1, 3):
        with pytest.raises(DataError, match=r"has images_2 only\. Pass --data.downscale 2"):
            load_scene(data_config(root, tmp_path, downscale=factor))
    # Other files are ignored, upper-case suffixes count, files are paired with rows in name order.
    folder = root / "images_2"
    (folder / "notes.txt").write_text("not an image")
    (folder / ".DS_Store").write_bytes(b"\0")
    (folder / "image003.png").rename(folder / "image003.PNG")
    frames = parse_llff(root, data_config(root, tmp_path, downscale=2))
    assert [p.name for p in frames.image_paths][2:5] == ["image002.png", "image003.PNG", "image004.png"]


# --- errors -----------------------------------------------------------------------------------------------


def _edit_rows(root, edit):
    path = root / "poses_bounds.npy"
    data = np.load(path)
    data = edit(data)
    np.save(path, data)


@pytest.mark.parametrize("damage, message", [
    (lambda root: _edit_rows(root, lambda a: a[:, :15]), r"poses_bounds\.npy has shape \(10, 15\), expected \(N, 17\)"),
    (lambda root: _edit_rows(root, lambda a: a[0]), r"poses_bounds\.npy has shape \(17,\)"),
    (lambda root: _edit_rows(root, lambda a: np.where(np.arange(10)[:, None] == 3, np.nan, a)),
     r"poses_bounds\.npy: row 3 \(image image003\.png\) has non-finite values"),
    (lambda root: _edit_rows(root, lambda a: np.where((np.arange(10)[:, None] == 5) & (np.arange(17) == 15), 0.0, a)),
     r"poses_bounds\.npy: row 5 \(image image005\.png\) has depth bounds .*expected 0 < near <= far"),
    (lambda root: _edit_rows(root, lambda a: a[:9]), r"poses_bounds\.npy has 9 rows .* holds 10 images"),
    (lambda root: (root / "images" / "image009.png").unlink(), r"poses_bounds\.npy has 10 rows .* holds 9 images"),
    (lambda root: (root / "poses_bounds.npy").write_bytes(b"\x93NUMPY garbage"),
     r"poses_bounds\.npy is not a readable \.npy array"),
    (lambda root: shutil.rmtree(root / "images"), r"capture has no images folder"),
    (lambda root: _edit_rows(root, lambda a: np.where((np.arange(10)[:, None] == 2) & (np.arange(17) == 0), 5.0, a)),
     r"poses_bounds\.npy: row 2 \(image image002\.png\): pose is not a rigid transform"),
    (lambda root: _edit_rows(root, lambda a: np.where((np.arange(10)[:, None] == 4) & (np.arange(17) == 14), -1.0, a)),
     r"poses_bounds\.npy: row 4 \(image image004\.png\) has image height, width, focal .* must be > 0"),
    (lambda root: _edit_rows(root, lambda a: np.where(np.arange(17) == 4, 60.0, a)),
     r"image000\.png is 8x6, not the shape of the 8x60 images .*wrong images folder"),
])
def test_malformed_datasets_are_reported_with_the_file(tmp_path, damage, message):
    root = tmp_path / "capture"
    write_capture(root)
    damage(root)
    with pytest.raises(DataError, match=message):
        load_scene(data_config(root, tmp_path))


def test_writer_refuses_to_overwrite(tmp_path):
    root = tmp_path / "capture"
    write_capture(root)
    with pytest.raises(FileExistsError):
        write_capture(root)


# --- spiral path ------------------------------------------------------------------------------------------


def test_spiral_circles_the_average_camera_and_looks_at_the_focus_depth(tmp_path):
    root = tmp_path / "capture"
    write_capture(root)
    scene = load_scene(data_config(root, tmp_path))
    reference = Cameras(all_cameras(scene), scene.split("train").cameras.fx[0], scene.split("train").cameras.fy[0],
                        4.0, 3.0, 8, 6, ndc=scene.split("train").cameras.ndc)
    near, far = scene.info["depth_bounds"]
    path = spiral_cameras(reference, 40, near, far)
    assert len(path) == 40 and path.ndc == reference.ndc and (path.width, path.height) == (8, 6)
    positions = path.c2w[:, :, 3].double()
    offsets = reference.c2w[:, :, 3].double()  # the average camera is the identity after recentring
    radii = torch.quantile(offsets.abs(), 0.9, dim=0)
    # LLFF's path: (r_x cos, -r_y sin, -r_z sin(theta / 2)) around the average camera, two turns.
    theta = torch.linspace(0, 4 * math.pi, 41, dtype=torch.float64)[:-1]
    expected = torch.stack([torch.cos(theta), -torch.sin(theta), -torch.sin(theta / 2)], -1) * radii
    torch.testing.assert_close(positions, expected, atol=1e-4, rtol=0)
    focus_depth = 1 / (0.25 / (0.9 * near) + 0.75 / (5 * far))
    to_focus = torch.tensor([0.0, 0.0, -focus_depth], dtype=torch.float64) - positions
    forward = -path.c2w[:, :, 2].double()
    torch.testing.assert_close(forward, to_focus / to_focus.norm(dim=-1, keepdim=True), atol=1e-5, rtol=0)
    assert (path.c2w[:, 1, 1] > 0.9).all()  # upright
    with pytest.raises(ValueError, match="focus_depth"):
        spiral_cameras(reference, 4)


def test_train_and_render_an_llff_capture_from_the_cli(tmp_path, capsys):
    root = tmp_path / "capture"
    write_capture(root, n=9, size=(16, 12), focal=14.0)
    run = tmp_path / "run"
    assert main(["train", "--output", str(run), "--steps", "4", "--data.path", str(root), "--data.cache-dir",
                 str(tmp_path / "cache")] + TINY_VANILLA) == 0
    assert "trained 4 steps" in capsys.readouterr().out
    assert main(["render", "--run", str(run), "--frames", "3", "--device", "cpu"]) == 0
    assert (run / "spiral.mp4").stat().st_size > 0 and "3 frames, 16x12" in capsys.readouterr().out
    assert main(["render", "--run", str(run), "--frames", "2", "--path", "orbit", "--output",
                 str(run / "orbit.gif")]) == 0
    assert (run / "orbit.gif").stat().st_size > 0


# --- the real fern capture --------------------------------------------------------------------------------


@pytest.fixture
def fern_dir():
    if not ((FERN / "poses_bounds.npy").is_file() and (FERN / "images_8").is_dir()):
        pytest.skip(f"the real fern capture is not at {FERN} (it lives in ../shared/data outside the repo)")
    return FERN


def test_loads_real_fern(fern_dir, tmp_path):
    scene = load_scene(DataConfig(path=fern_dir, downscale=8, cache_dir=tmp_path))
    assert scene.info["format"] == "llff" and scene.forward_facing
    assert len(scene.split("train")) == 17 and len(scene.split("test")) == 3
    assert scene.split("test").names == ["image000.png", "image008.png", "image016.png"]
    train = scene.split("train")
    assert train.images.shape == (17, 378, 504, 3)
    assert train.cameras.fx[0].item() == pytest.approx(FERN_FOCAL / 8, rel=1e-5)
    assert train.cameras.fy[0].item() == pytest.approx(FERN_FOCAL / 8, rel=1e-5)
    poses = all_cameras(scene).double()
    assert poses[:, :, 3].mean(0).abs().max().item() < 1e-5
    assert scene.info["depth_bounds"][0] == pytest.approx(1 / 0.75)
    assert (scene.near, scene.far) == (0.0, pytest.approx(NDC_FAR))
    # Back in the file's frame: the rows of poses_bounds.npy in OpenGL axes.
    rows = np.load(fern_dir / "poses_bounds.npy")[:, :15].reshape(-1, 3, 5)
    file_c2w = np.concatenate([rows[:, :, 1:2], -rows[:, :, 0:1], rows[:, :, 2:4]], axis=2)
    torch.testing.assert_close(scene.to_dataset_frame(poses), torch.from_numpy(file_c2w), atol=1e-4, rtol=0)
    assert np.array_equal(scene.split("test").images[1].numpy(), read_image(fern_dir / "images_8" / "image008.png"))


def test_fern_at_full_resolution_names_the_folder_it_has(fern_dir, tmp_path):
    with pytest.raises(DataError, match=r"has images_8 only\. Pass --data.downscale 8"):
        load_scene(DataConfig(path=fern_dir, downscale=1, cache_dir=tmp_path))


def test_fern_trains_and_renders_a_spiral_from_the_cli(fern_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--output", str(run), "--steps", "5", "--data.path", str(fern_dir), "--data.downscale",
                 "64", "--data.cache-dir", str(tmp_path / "cache")] + TINY_VANILLA) == 0
    assert main(["render", "--run", str(run), "--frames", "2", "--output", str(run / "spiral.gif")]) == 0
    assert (run / "spiral.gif").stat().st_size > 0
    assert "2 frames, 63x47" in capsys.readouterr().out
