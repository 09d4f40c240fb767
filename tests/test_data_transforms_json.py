"""transforms.json datasets, nerfstudio and instant-ngp flavours: flavour detection, round trips through the
writers, intrinsics per frame, lens models, masks, splits, downscaled folders, PLY points, and every error
naming the file and the frame or key."""

import hashlib
import json
import math
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfkit.camera_models import OPENCV, OPENCV_FISHEYE, PINHOLE
from nerfkit.cameras import Cameras
from nerfkit.data import DataError, detect_format, load_blender, load_scene
from nerfkit.data.config import DataConfig
from nerfkit.data.images import read_image, read_mask, resize_image, write_image
from nerfkit.data.normalize import aabb_from_points
from nerfkit.data.transforms_json import (instant_ngp_aabb, load_transforms_json, parse_transforms_json,
                                          read_ply_points, transforms_flavour, write_instant_ngp, write_nerfstudio)


@pytest.fixture(scope="module")
def tiny(tiny_scene_dir):
    """The built-in scene (12 train, 2 val, 3 test views of 24x24) as loaded from its Blender files."""
    return load_blender(tiny_scene_dir)


def cfg_for(root, tmp_path, **kw):
    return DataConfig(path=root, cache_dir=tmp_path / "cache", **kw)


def edit(path: Path, change) -> None:
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def folder_digest(root: Path) -> dict:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def train_cameras(scene, n=None):
    cams = scene.split("train").cameras
    return cams if n is None else cams[list(range(n))]


# --------------------------------------------------------------------------------------------------------------
# Flavours and round trips


def test_flavour_is_nerfstudio_when_the_top_level_or_a_frame_has_a_camera_model(tmp_path):
    path = tmp_path / "transforms.json"
    path.write_text(json.dumps({"camera_model": "OPENCV", "frames": []}))
    assert transforms_flavour(path) == "nerfstudio" and detect_format(tmp_path) == "nerfstudio"
    path.write_text(json.dumps({"frames": [{"file_path": "a.png"}, {"file_path": "b", "camera_model": "PINHOLE"}]}))
    assert transforms_flavour(tmp_path) == "nerfstudio"
    path.write_text(json.dumps({"camera_angle_x": 0.7, "frames": [{"file_path": "a"}]}))
    assert transforms_flavour(path) == "instant-ngp" and detect_format(tmp_path) == "instant-ngp"
    path.write_text('{"frames": [')
    with pytest.raises(DataError, match=r"transforms\.json is not valid JSON"):
        detect_format(tmp_path)


@pytest.mark.parametrize("flavour, writer", [("nerfstudio", write_nerfstudio), ("instant-ngp", write_instant_ngp)])
def test_round_trip_from_the_builtin_scene(tmp_path, tiny, flavour, writer):
    root = tmp_path / "data"
    writer(root, tiny)
    scene = load_scene(cfg_for(root, tmp_path))
    assert scene.info["format"] == flavour
    assert {k: len(v) for k, v in scene.splits.items()} == {"train": 12, "val": 2, "test": 3}
    for name, split in tiny.splits.items():
        got = scene.split(name)
        torch.testing.assert_close(scene.to_dataset_frame(got.cameras.c2w.double()).float(), split.cameras.c2w,
                                   atol=1e-5, rtol=0)
        for attr in ("fx", "fy", "cx", "cy"):
            torch.testing.assert_close(getattr(got.cameras, attr), getattr(split.cameras, attr))
        assert torch.equal(got.images, split.images)
        assert (got.cameras.camera_type == PINHOLE).all()
    if flavour == "nerfstudio":   # placed by --data.normalize: cameras inside [-1, 1]^3
        assert scene.split("train").cameras.c2w[:, :, 3].abs().max() <= 1.0 + 1e-5
    else:                         # the file's frame is kept, and the box holds the scene's [-1, 1]^3
        torch.testing.assert_close(scene.transform, torch.eye(4, dtype=torch.float64))
        box = scene.aabb
        assert (box[:3] <= -1).all() and (box[3:] >= 1).all() and (box[3:] - box[:3] <= 4.0).all()
        # nerfstudio's parser reads the same file (fl_x, fl_y, cx, cy, w, h; no camera_model is its pinhole).
        forced = load_scene(cfg_for(root, tmp_path, format="nerfstudio", hold_every=0))
        torch.testing.assert_close(forced.to_dataset_frame(forced.split("train").cameras.c2w.double()).float(),
                                   tiny.split("train").cameras.c2w, atol=1e-5, rtol=0)


def test_round_trip_with_downscale_shrinks_images_and_intrinsics(tmp_path, tiny):
    root = tmp_path / "data"
    write_nerfstudio(root, tiny)
    scene = load_scene(cfg_for(root, tmp_path, downscale=2))
    train = scene.split("train")
    assert train.images.shape == (12, 12, 12, 4)
    torch.testing.assert_close(train.cameras.fx, tiny.split("train").cameras.fx / 2)


def test_nerfstudio_uses_images_n_folders_for_downscale(tmp_path, tiny):
    root = tmp_path / "data"
    write_nerfstudio(root, tiny)
    (root / "images_2").mkdir()
    for p in sorted((root / "images").iterdir()):   # shrunk copies, painted so that the test sees which is read
        small = resize_image(read_image(p), 12, 12).copy()
        small[0, 0] = (1, 2, 3, 255)
        write_image(root / "images_2" / p.name, small)
    frames = parse_transforms_json(root, cfg_for(root, tmp_path, downscale=2))
    assert frames.downscale == 1 and all(p.parent.name == "images_2" for p in frames.image_paths)
    assert (frames.width == 12).all() and frames.fx[0] == pytest.approx(tiny.split("train").cameras.fx[0] / 2)
    scene = load_scene(cfg_for(root, tmp_path, downscale=2))
    assert scene.split("train").images.shape == (12, 12, 12, 4)
    assert scene.split("train").images[0, 0, 0].tolist() == [1, 2, 3, 255]
    # --data.downscale 4 with only images_2: images_2, shrunk 2 times more.
    frames = parse_transforms_json(root, cfg_for(root, tmp_path, downscale=4))
    assert frames.downscale == 2 and frames.image_paths[0].parent.name == "images_2"
    assert load_scene(cfg_for(root, tmp_path, downscale=4)).split("train").images.shape == (12, 6, 6, 4)
    # A folder missing one file is not used.
    (root / "images_2" / "frame_00005.png").unlink()
    frames = parse_transforms_json(root, cfg_for(root, tmp_path, downscale=2))
    assert frames.downscale == 2 and frames.image_paths[0].parent.name == "images"


def test_loading_does_not_modify_the_dataset_folder(tmp_path, tiny):
    root = tmp_path / "data"
    write_nerfstudio(root, tiny, points=np.random.default_rng(0).uniform(-1, 1, (50, 3)))
    before = folder_digest(root)
    load_scene(cfg_for(root, tmp_path))
    load_scene(cfg_for(root, tmp_path, downscale=2))
    load_scene(cfg_for(root, tmp_path, format="instant-ngp"))
    assert folder_digest(root) == before


# --------------------------------------------------------------------------------------------------------------
# Intrinsics and lenses


def varied_cameras(tiny, n=6, ctype=PINHOLE, dist=None):
    cams = train_cameras(tiny, n)
    scale = torch.linspace(0.8, 1.2, n)
    dist = torch.zeros(n, 8) if dist is None else torch.as_tensor(dist, dtype=torch.float32).expand(n, 8)
    return Cameras(cams.c2w, cams.fx * scale, cams.fy * scale * 1.1, cams.cx + scale, cams.cy - scale, cams.width,
                   cams.height, torch.full((n,), ctype), dist)


@pytest.mark.parametrize("writer", [write_nerfstudio, write_instant_ngp])
def test_per_frame_intrinsics_may_differ_between_frames(tmp_path, tiny, writer):
    cams = varied_cameras(tiny)
    root = tmp_path / "data"
    path = writer(root, cameras=cams, images=tiny.split("train").images[:6])
    meta = json.loads(path.read_text())
    assert "fl_x" not in meta and "fl_x" in meta["frames"][0] and "w" in meta   # shared size at the top
    scene = load_scene(cfg_for(root, tmp_path, hold_every=0))
    got = scene.split("train").cameras
    for attr in ("fx", "fy", "cx", "cy"):
        torch.testing.assert_close(getattr(got, attr), getattr(cams, attr))


def test_nerfstudio_opencv_and_fisheye_distortion_arrive_in_the_cameras(tmp_path, tiny):
    opencv = [0.1, -0.05, 0.01, -0.002, 0.0, 0.0, 0.001, -0.002]     # k1..k4, (k5, k6), p1, p2
    fisheye = [0.05, 0.01, -0.003, 0.001, 0.0, 0.0, 0.0, 0.0]
    for ctype, dist, model in ((OPENCV, opencv, "OPENCV"), (OPENCV_FISHEYE, fisheye, "OPENCV_FISHEYE")):
        root = tmp_path / model
        path = write_nerfstudio(root, cameras=varied_cameras(tiny, 4, ctype, dist),
                                images=tiny.split("train").images[:4])
        meta = json.loads(path.read_text())
        assert meta["camera_model"] == model and meta["k1"] == pytest.approx(dist[0])
        cams = load_scene(cfg_for(root, tmp_path, hold_every=0)).split("train").cameras
        assert (cams.camera_type == ctype).all()
        torch.testing.assert_close(cams.distortion, torch.tensor(dist).expand(4, 8))

    # Per-frame camera models and coefficients (ns-process-data with several COLMAP cameras), with
    # distortion_params, and the perspective models nerfstudio reads like OPENCV.
    path = tmp_path / "OPENCV" / "transforms.json"

    def mixed(meta):
        for key in ("camera_model", "k1", "k2", "k3", "k4", "p1", "p2"):
            meta.pop(key)
        meta["frames"][0].update(camera_model="OPENCV_FISHEYE", k1=0.2)
        meta["frames"][1].update(camera_model="PINHOLE")
        meta["frames"][2].update(camera_model="OPENCV", distortion_params=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
        meta["frames"][3].update(camera_model="SIMPLE_RADIAL", k1=-0.1)
    edit(path, mixed)
    cams = load_scene(cfg_for(path.parent, tmp_path, hold_every=0)).split("train").cameras
    assert cams.camera_type.tolist() == [OPENCV_FISHEYE, PINHOLE, OPENCV, OPENCV]
    torch.testing.assert_close(cams.distortion[0], torch.tensor([0.2, 0, 0, 0, 0, 0, 0, 0.0]))
    torch.testing.assert_close(cams.distortion[2], torch.tensor([0.1, 0.2, 0.3, 0.4, 0, 0, 0.5, 0.6]))
    torch.testing.assert_close(cams.distortion[3], torch.tensor([-0.1, 0, 0, 0, 0, 0, 0, 0.0]))


def test_instant_ngp_intrinsics_and_lenses(tmp_path, tiny_scene_dir):
    # A NeRF-synthetic style file: camera_angle_x only, file_path without extension, size from the image.
    root = tmp_path / "data"
    shutil.copytree(tiny_scene_dir / "train", root / "train")
    src = json.loads((tiny_scene_dir / "transforms_train.json").read_text())
    meta = {"camera_angle_x": src["camera_angle_x"], "frames": src["frames"][:4]}
    (root / "transforms.json").write_text(json.dumps(meta))
    cams = load_scene(cfg_for(root, tmp_path, hold_every=0)).split("train").cameras
    focal = 0.5 * 24 / math.tan(0.5 * src["camera_angle_x"])
    assert cams.fx.tolist() == pytest.approx([focal] * 4, rel=1e-6) and cams.fy[0] == pytest.approx(focal)
    assert (cams.cx == 12).all() and (cams.camera_type == PINHOLE).all()
    # x_fov (degrees) wins over fl_x and camera_angle_x; a frame's focal lengths replace the top level's.
    meta.update(x_fov=60.0, fl_x=99.0, k1=0.1, k2=0.01, p1=0.001, p2=0.002, cx=11.0)
    meta["frames"][1]["fl_y"] = 20.0
    meta["frames"][2].update(is_fisheye=True, k3=0.3)
    meta["frames"][3].update(k1=0, k2=0, p1=0, p2=0)
    (root / "transforms.json").write_text(json.dumps(meta))
    cams = load_scene(cfg_for(root, tmp_path, hold_every=0)).split("train").cameras
    f60 = 12 / math.tan(math.radians(30))
    assert cams.fx.tolist() == pytest.approx([f60, 20.0, f60, f60], rel=1e-6)
    assert cams.fy.tolist() == pytest.approx([f60, 20.0, f60, f60], rel=1e-6)
    assert cams.cx[0] == 11 and cams.cy[0] == 12
    assert cams.camera_type.tolist() == [OPENCV, OPENCV, OPENCV_FISHEYE, PINHOLE]
    torch.testing.assert_close(cams.distortion[0], torch.tensor([0.1, 0.01, 0, 0, 0, 0, 0.001, 0.002]))
    torch.testing.assert_close(cams.distortion[2], torch.tensor([0.1, 0.01, 0.3, 0, 0, 0, 0, 0]))


def test_instant_ngp_box_follows_scale_offset_and_aabb_scale():
    np.testing.assert_allclose(instant_ngp_aabb({}), [-0.5 / 0.33] * 3 + [0.5 / 0.33] * 3)   # lego: +-1.52
    box = instant_ngp_aabb({"aabb_scale": 4, "scale": 0.5, "offset": [0.5, 0.0, 1.0]})
    np.testing.assert_allclose(box, [-4, -3, -5, 4, 5, 3])
    np.testing.assert_allclose(instant_ngp_aabb({"aabb_scale": 1024}), instant_ngp_aabb({"aabb_scale": 128}))
    np.testing.assert_allclose(instant_ngp_aabb({"aabb": [[0, 0, 0], [2, 1, 1]], "aabb_scale": 2}),
                               [-1, -1.5, -1.5, 3, 2.5, 2.5])


# --------------------------------------------------------------------------------------------------------------
# Masks, splits, points, applied_transform


def hand_written_nerfstudio(root: Path, tiny_scene_dir: Path, n: int = 5) -> Path:
    """A nerfstudio file written as a user would, over the built-in scene's train images and their masks."""
    shutil.copytree(tiny_scene_dir / "train", root / "train")
    src = json.loads((tiny_scene_dir / "transforms_train.json").read_text())
    focal = 0.5 * 24 / math.tan(0.5 * src["camera_angle_x"])
    frames = [{"file_path": f"./train/r_{i}.png", "mask_path": f"train/r_{i}_mask.png",
               "transform_matrix": src["frames"][i]["transform_matrix"]} for i in range(n)]
    meta = {"camera_model": "PINHOLE", "fl_x": focal, "fl_y": focal, "cx": 12, "cy": 12, "w": 24, "h": 24,
            "frames": frames}
    path = root / "transforms.json"
    path.write_text(json.dumps(meta))
    return path


def test_mask_path_gives_split_masks(tmp_path, tiny_scene_dir):
    root = tmp_path / "data"
    hand_written_nerfstudio(root, tiny_scene_dir)
    scene = load_scene(cfg_for(root, tmp_path, hold_every=0))
    masks = scene.split("train").masks
    assert masks is not None and masks.dtype == torch.bool and masks.shape == (5, 24, 24)
    for i in range(5):
        on_disk = read_mask(tiny_scene_dir / "train" / f"r_{i}_mask.png") > 0
        assert np.array_equal(masks[i].numpy(), on_disk)
    assert 0 < masks.float().mean() < 1
    assert load_scene(cfg_for(root, tmp_path, hold_every=0, masks=False)).split("train").masks is None
    # Masks survive a round trip through both writers.
    for writer in (write_nerfstudio, write_instant_ngp):
        out = tmp_path / writer.__name__
        writer(out, scene)
        assert torch.equal(load_scene(cfg_for(out, tmp_path, hold_every=0)).split("train").masks, masks)


def test_split_lists_choose_the_splits(tmp_path, tiny_scene_dir):
    root = tmp_path / "data"
    path = hand_written_nerfstudio(root, tiny_scene_dir)
    edit(path, lambda m: m.update(train_filenames=["train/r_0.png", "./train/r_2.png", "train/r_3.png"],
                                  test_filenames=["train/r_4.png"]))
    scene = load_scene(cfg_for(root, tmp_path))
    assert scene.split("train").names == ["r_0.png", "r_2.png", "r_3.png"]
    assert scene.split("test").names == ["r_4.png"] and "val" not in scene.splits   # r_1 is in no list
    edit(path, lambda m: m.update(test_filenames=["r_4.png"]))
    with pytest.raises(DataError, match=r"test_filenames' lists 'r_4\.png'.*train/r_4\.png") as info:
        load_scene(cfg_for(root, tmp_path))
    assert "transforms.json" in str(info.value)
    edit(path, lambda m: m.pop("train_filenames"))
    with pytest.raises(DataError, match="no 'train_filenames'"):
        load_scene(cfg_for(root, tmp_path))


def test_without_split_lists_every_nth_frame_is_held_out_in_file_name_order(tmp_path, tiny):
    root = tmp_path / "data"
    path = write_nerfstudio(root, tiny)
    edit(path, lambda m: [m.pop(f"{s}_filenames") for s in ("train", "val", "test")] and
         m.update(frames=m["frames"][::-1]))   # file order does not matter: frames are sorted by file_path
    scene = load_scene(cfg_for(root, tmp_path, hold_every=8))
    assert scene.split("test").names == ["frame_00000.png", "frame_00008.png", "frame_00016.png"]
    assert len(scene.split("train")) == 14


def test_instant_ngp_reads_sibling_split_files_else_holds_out(tmp_path, tiny):
    root = tmp_path / "data"
    write_instant_ngp(root, tiny)
    assert sorted(p.name for p in root.glob("*.json")) == ["transforms.json", "transforms_test.json",
                                                           "transforms_val.json"]
    (root / "transforms_val.json").unlink()
    scene = load_scene(cfg_for(root, tmp_path))
    assert {k: len(v) for k, v in scene.splits.items()} == {"train": 12, "test": 3}
    (root / "transforms_test.json").unlink()
    scene = load_scene(cfg_for(root, tmp_path, hold_every=4))
    assert {k: len(v) for k, v in scene.splits.items()} == {"train": 9, "test": 3}


def write_binary_ply(path: Path, points: np.ndarray, big_endian: bool = False) -> None:
    order = ">" if big_endian else "<"
    header = ("ply\nformat binary_{}_endian 1.0\ncomment made by a test\nelement camera 1\nproperty float s\n"
              "element vertex {}\nproperty uchar red\nproperty double x\nproperty double y\nproperty double z\n"
              "element face 0\nproperty list uchar int vertex_indices\nend_header\n"
              ).format("big" if big_endian else "little", len(points))
    body = struct.pack(order + "f", 1.0) + b"".join(struct.pack(order + "Bddd", 7, *p) for p in points)
    path.write_bytes(header.encode() + body)


def test_ply_points_become_the_frames_points(tmp_path, tiny):
    points = np.random.default_rng(1).uniform(-0.8, 0.8, (40, 3))
    root = tmp_path / "data"
    write_nerfstudio(root, tiny, points=points)
    frames = parse_transforms_json(root, cfg_for(root, tmp_path))
    np.testing.assert_allclose(frames.points, points, atol=1e-6)
    for big in (False, True):
        write_binary_ply(root / "sparse_pc.ply", points, big)
        np.testing.assert_allclose(read_ply_points(root / "sparse_pc.ply"), points)
    scene = load_scene(cfg_for(root, tmp_path))   # the box comes from the points (placed with the cameras)
    t = scene.transform.numpy()
    placed = points @ t[:3, :3].T + t[:3, 3]
    np.testing.assert_allclose(scene.aabb.numpy(), aabb_from_points(placed), atol=1e-5)
    (root / "sparse_pc.ply").write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nend_header\n")
    with pytest.raises(DataError, match=r"sparse_pc\.ply: the vertex element has no x, y, z"):
        load_scene(cfg_for(root, tmp_path))
    (root / "sparse_pc.ply").unlink()
    with pytest.warns(UserWarning, match="ply_file_path 'sparse_pc.ply' not found"):
        assert parse_transforms_json(root, cfg_for(root, tmp_path)).points is None


def test_applied_transform_defines_the_dataset_frame(tmp_path, tiny):
    applied = np.array([[1.0, 0, 0, 0.5], [0, 0, 1, 0], [0, -1, 0, -2.0]])   # ns-process-data's, plus a shift
    root = tmp_path / "data"
    path = write_nerfstudio(root, tiny, applied_transform=applied)
    meta = json.loads(path.read_text())
    file_pose = np.array(meta["frames"][0]["transform_matrix"])[:3]
    original = tiny.split("train").cameras.c2w[0].double().numpy()
    np.testing.assert_allclose(file_pose[:, 3], applied[:, :3] @ original[:, 3] + applied[:, 3], atol=1e-6)
    scene = load_transforms_json(root, cfg_for(root, tmp_path))
    np.testing.assert_allclose(scene.info["applied_transform"][:3], applied)
    torch.testing.assert_close(scene.to_dataset_frame(scene.split("train").cameras.c2w.double()).float(),
                               tiny.split("train").cameras.c2w, atol=1e-5, rtol=0)
    edit(path, lambda m: m.update(applied_transform=[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, 0]]))
    with pytest.raises(DataError, match="applied_transform' is not a rotation"):
        load_scene(cfg_for(root, tmp_path))


# --------------------------------------------------------------------------------------------------------------
# Errors


@pytest.fixture
def ns_root(tmp_path, tiny):
    root = tmp_path / "data"
    path = write_nerfstudio(root, tiny)
    edit(path, lambda m: [m.pop(f"{s}_filenames") for s in ("train", "val", "test")])
    return root


def drop_top_intrinsic(key, keep_missing_in):
    def change(meta):
        value = meta.pop(key)
        for i, frame in enumerate(meta["frames"]):
            if i != keep_missing_in:
                frame[key] = value
    return change


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("frames"), "has no 'frames'"),
    (lambda m: m.update(frames=[]), "'frames' is empty"),
    (lambda m: m["frames"][2].pop("file_path"), "frame 2 has no 'file_path'"),
    (lambda m: m["frames"][1].pop("transform_matrix"), r"frame 1 \(images/frame_00001.png\) has no 'transform_matrix'"),
    (lambda m: m["frames"][0]["transform_matrix"][0].__setitem__(3, float("nan")), "frame 0 .*non-finite"),
    (lambda m: m["frames"][0]["transform_matrix"][0].__setitem__(0, 3.0), "frame 0 .*not a rigid transform"),
    (lambda m: m.update(camera_model="EQUIRECTANGULAR"),
     "camera_model 'EQUIRECTANGULAR' is not supported.*OPENCV_FISHEYE"),
    (lambda m: m["frames"][4].update(camera_model="garbage"), r"frame 4 .*camera_model 'garbage' is not supported"),
    (drop_top_intrinsic("fl_x", 3), r"frame 3 \(images/frame_00003.png\) has no 'fl_x'"),
    (drop_top_intrinsic("h", 0), r"frame 0 \(images/frame_00000.png\) has no 'h'"),
    (lambda m: m.update(cx="twelve"), "'cx' is not a number"),
    (lambda m: m.update(w=0), "'w' must be a positive whole number"),
    (lambda m: m["frames"][0].update(file_path="../../etc/passwd"), "frame 0 .*outside the dataset folder"),
    (lambda m: m["frames"][0].update(mask_path="/etc/passwd"), "frame 0 .*mask_path.*outside the dataset folder"),
    (lambda m: m["frames"][5].update(file_path="images/nope.png"), r"frame 5 .*image file not found: .*nope\.png"),
    (lambda m: m["frames"][5].update(mask_path="masks/nope.png"), r"frame 5 .*mask file not found"),
])
def test_malformed_nerfstudio_files_are_reported_with_file_and_frame(tmp_path, ns_root, change, message):
    edit(ns_root / "transforms.json", change)
    with pytest.raises(DataError, match=message) as info:
        load_scene(cfg_for(ns_root, tmp_path))
    assert "transforms.json" in str(info.value)


def test_image_size_different_from_w_h_names_the_image_and_the_file(tmp_path, ns_root):
    edit(ns_root / "transforms.json", lambda m: m.update(w=32, h=30))
    with pytest.raises(DataError, match=r"frame_00000\.png is 24x24 but .*transforms\.json gives its camera as 32x30"):
        load_scene(cfg_for(ns_root, tmp_path))


def test_mask_of_another_size_names_mask_and_image(tmp_path, ns_root):
    write_image(ns_root / "masks" / "m.png", np.full((10, 10), 255, np.uint8))
    edit(ns_root / "transforms.json", lambda m: m["frames"][0].update(mask_path="masks/m.png"))
    with pytest.raises(DataError, match=r"mask .*m\.png is 10x10 but its image .*frame_00000\.png is 24x24"):
        load_scene(cfg_for(ns_root, tmp_path))


def test_malformed_json_is_reported(tmp_path, ns_root):
    (ns_root / "transforms.json").write_text('{"camera_model": "OPENCV", ')
    with pytest.raises(DataError, match=r"transforms\.json is not valid JSON"):
        load_scene(cfg_for(ns_root, tmp_path))
    with pytest.raises(DataError, match=r"transforms\.json is not valid JSON"):
        load_scene(cfg_for(ns_root, tmp_path, format="nerfstudio"))


@pytest.mark.parametrize("change, message", [
    (lambda m: [m.pop(k) for k in ("fl_x", "fl_y", "camera_angle_x", "camera_angle_y")],
     r"frame 0 .*no focal length"),
    (lambda m: m["frames"][1].update(latlong=True), r"frame 1 .*'latlong' lens of instant-ngp is not supported"),
    (lambda m: m["frames"][2].update(file_path="images/missing"), r"frame 2 .*image file not found.*\.png, \.jpg"),
    (lambda m: m.update(aabb_scale=-1), "'aabb_scale' must be > 0"),
    (lambda m: m["frames"][0].pop("transform_matrix"), "frame 0 .*has no 'transform_matrix'"),
])
def test_malformed_instant_ngp_files_are_reported(tmp_path, tiny, change, message):
    root = tmp_path / "data"
    write_instant_ngp(root, tiny)
    edit(root / "transforms.json", change)
    with pytest.raises(DataError, match=message) as info:
        load_scene(cfg_for(root, tmp_path))
    assert "transforms.json" in str(info.value)


def test_instant_ngp_tries_png_then_jpg_for_paths_without_extension(tmp_path, tiny):
    root = tmp_path / "data"
    write_instant_ngp(root, tiny)
    image = read_image(root / "images" / "frame_00001.png")[..., :3]
    (root / "images" / "frame_00001.png").unlink()
    write_image(root / "images" / "frame_00001.jpg", image)
    edit(root / "transforms.json", lambda m: [f.update(file_path=f["file_path"][:-4]) for f in m["frames"]])
    frames = parse_transforms_json(root, cfg_for(root, tmp_path))
    assert [p.name for p in frames.image_paths[:3]] == ["frame_00000.png", "frame_00001.jpg", "frame_00002.png"]
