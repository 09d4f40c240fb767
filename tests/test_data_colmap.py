import hashlib
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfkit.camera_models import FOV, FULL_OPENCV, OPENCV, OPENCV_FISHEYE, PINHOLE
from nerfkit.data import DataError, load_blender, load_scene
from nerfkit.data.colmap import (LENS_OF_MODEL, colmap_from_lens, lens_from_colmap, parse_colmap,
                                 write_colmap_dataset)
from nerfkit.data.colmap_io import (CAMERA_MODELS, ColmapCamera, ColmapImage, ColmapPoints, qvec_to_rotation,
                                    read_cameras, read_images, read_model, read_points3d, rotation_to_qvec,
                                    write_cameras, write_images, write_model, write_points3d)
from nerfkit.data.config import DataConfig
from nerfkit.data.images import read_image, read_mask, resize_image, write_image

FERN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nerf_llff_data" / "fern"


# ---------------------------------------------------------------------------------------------------------
# The model reader and writer.

def random_model(rng, n_points=50):
    cameras = {}
    for i, model in enumerate(CAMERA_MODELS.values(), 1):
        cameras[i] = ColmapCamera(i, model.name, int(rng.integers(10, 5000)), int(rng.integers(10, 5000)),
                                  rng.normal(size=model.n_params))
    images = {}
    for image_id in (7, 3, 12):
        q = rng.normal(size=4)
        k = int(rng.integers(0, 6))
        images[image_id] = ColmapImage(image_id, q / np.linalg.norm(q), rng.normal(size=3), 1 + image_id % 3,
                                       f"sub/img_{image_id}.jpg", rng.uniform(0, 100, size=(k, 2)),
                                       rng.integers(-1, 1000, size=k))
    lengths = rng.integers(0, 5, size=n_points)
    points = ColmapPoints(rng.permutation(10 * n_points)[:n_points] + 1, rng.normal(size=(n_points, 3)),
                          rng.integers(0, 256, size=(n_points, 3)).astype(np.uint8), rng.uniform(0, 2, n_points),
                          lengths, rng.integers(0, 2**31, size=(int(lengths.sum()), 2)))
    return cameras, images, points


@pytest.mark.parametrize("ext", [".bin", ".txt"])
def test_every_camera_model_images_and_points_round_trip(tmp_path, ext):
    cameras, images, points = random_model(np.random.default_rng(0))
    write_model(tmp_path, cameras, images, points, ext)
    got_cams, got_images, got_points = read_model(tmp_path)
    assert set(got_cams) == set(cameras)
    for cam_id, cam in cameras.items():
        got = got_cams[cam_id]
        assert (got.model, got.width, got.height) == (cam.model, cam.width, cam.height)
        assert np.array_equal(got.params, cam.params)  # text keeps every digit too (repr)
    assert list(got_images) == list(images)
    for image_id, im in images.items():
        got = got_images[image_id]
        assert (got.name, got.camera_id) == (im.name, im.camera_id)
        assert np.array_equal(got.qvec, im.qvec) and np.array_equal(got.tvec, im.tvec)
        assert np.array_equal(got.xys, im.xys) and np.array_equal(got.point3d_ids, im.point3d_ids)
    for name in ("ids", "xyz", "rgb", "error", "track_lengths", "tracks"):
        assert np.array_equal(getattr(got_points, name), getattr(points, name)), name
    assert got_points.rgb.dtype == np.uint8


def test_camera_model_table_matches_colmap():
    counts = {name: model.n_params for name, model in CAMERA_MODELS.items()}
    assert counts == {"SIMPLE_PINHOLE": 3, "PINHOLE": 4, "SIMPLE_RADIAL": 4, "RADIAL": 5, "OPENCV": 8,
                      "OPENCV_FISHEYE": 8, "FULL_OPENCV": 12, "FOV": 5, "SIMPLE_RADIAL_FISHEYE": 4,
                      "RADIAL_FISHEYE": 5, "THIN_PRISM_FISHEYE": 12, "RAD_TAN_THIN_PRISM_FISHEYE": 16,
                      "SIMPLE_DIVISION": 4, "DIVISION": 5, "SIMPLE_FISHEYE": 3, "FISHEYE": 4, "EUCM": 6,
                      "EQUIRECTANGULAR": 2}
    assert [m.id for m in CAMERA_MODELS.values()] == list(range(18))


def test_keypoints_and_tracks_can_be_skipped(tmp_path):
    cameras, images, points = random_model(np.random.default_rng(1))
    write_model(tmp_path, cameras, images, points, ".bin")
    assert all(len(im.xys) == 0 for im in read_images(tmp_path / "images.bin", points2d=False).values())
    light = read_points3d(tmp_path / "points3D.bin", tracks=False)
    assert light.tracks is None and np.array_equal(light.xyz, points.xyz)


def test_points3d_bin_with_1e5_points_loads_fast(tmp_path):
    rng = np.random.default_rng(2)
    m = 100_000
    lengths = rng.integers(2, 8, size=m)
    points = ColmapPoints(np.arange(m) + 1, rng.normal(size=(m, 3)), rng.integers(0, 256, (m, 3)).astype(np.uint8),
                          rng.uniform(size=m), lengths, rng.integers(0, 1000, size=(int(lengths.sum()), 2)))
    write_points3d(tmp_path / "points3D.bin", points)
    start = time.perf_counter()
    got = read_points3d(tmp_path / "points3D.bin")
    took = time.perf_counter() - start
    assert np.array_equal(got.xyz, points.xyz) and np.array_equal(got.tracks, points.tracks)
    assert took < 2.0, f"reading 1e5 points took {took:.2f} s"


def test_quaternions_and_rotations_convert_both_ways():
    rng = np.random.default_rng(3)
    q = rng.normal(size=(500, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    q[q[:, 0] < 0] *= -1
    rot = qvec_to_rotation(q)
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)
    np.testing.assert_allclose(rotation_to_qvec(rot), q, atol=1e-12)
    # Hamilton convention: a quarter turn about z takes x to y.
    np.testing.assert_allclose(qvec_to_rotation([np.sqrt(0.5), 0, 0, np.sqrt(0.5)]) @ [1, 0, 0], [0, 1, 0],
                               atol=1e-12)


@pytest.mark.parametrize("stem", ["cameras", "images", "points3D"])
@pytest.mark.parametrize("cut", [1, 9])
def test_truncated_bin_files_name_the_file(tmp_path, stem, cut):
    cameras, images, points = random_model(np.random.default_rng(4))
    write_model(tmp_path, cameras, images, points, ".bin")
    path = tmp_path / f"{stem}.bin"
    path.write_bytes(path.read_bytes()[:-cut])
    reader = {"cameras": read_cameras, "images": read_images, "points3D": read_points3d}[stem]
    with pytest.raises(DataError, match=rf"{stem}\.bin is truncated or corrupt"):
        reader(path)


def test_corrupt_model_files_name_the_file_and_the_problem(tmp_path):
    write_cameras(tmp_path / "cameras.bin", [ColmapCamera(1, "PINHOLE", 10, 10, np.ones(4))])
    data = bytearray((tmp_path / "cameras.bin").read_bytes())
    data[12:16] = (42).to_bytes(4, "little")  # the model id
    (tmp_path / "cameras.bin").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"cameras\.bin: camera 1 has unknown camera model id 42"):
        read_cameras(tmp_path / "cameras.bin")
    (tmp_path / "cameras.bin").write_bytes(bytes(data[:8]) + b"\xff" * 8)  # absurd count
    with pytest.raises(DataError, match=r"cameras\.bin is truncated or corrupt"):
        read_cameras(tmp_path / "cameras.bin")
    (tmp_path / "cameras.txt").write_text("# comment\n1 PINHOLE 10 10 5 5 5\n")
    with pytest.raises(DataError, match=r"cameras\.txt, line 2: camera 1 \(PINHOLE\) has 3 parameters"):
        read_cameras(tmp_path / "cameras.txt")
    (tmp_path / "cameras.txt").write_text("1 FANCY 10 10 5 5 5\n")
    with pytest.raises(DataError, match=r"cameras\.txt: camera 1 has unknown camera model 'FANCY'"):
        read_cameras(tmp_path / "cameras.txt")
    (tmp_path / "images.txt").write_text("1 1 0 0 0 0 0 zero 1 a.png\n\n")
    with pytest.raises(DataError, match=r"images\.txt, line 1: malformed image line"):
        read_images(tmp_path / "images.txt")
    (tmp_path / "points3D.txt").write_text("1 0 0 0 1 2 3 0.5 7\n")
    with pytest.raises(DataError, match=r"points3D\.txt, line 1"):
        read_points3d(tmp_path / "points3D.txt")
    with pytest.raises(DataError, match=r"nothing\.bin not found"):
        read_cameras(tmp_path / "nothing.bin")


# ---------------------------------------------------------------------------------------------------------
# Lens models.

@pytest.mark.parametrize("model, params, lens, dist", [
    ("SIMPLE_PINHOLE", [100, 12, 11], PINHOLE, {}),
    ("PINHOLE", [100, 90, 12, 11], PINHOLE, {}),
    ("SIMPLE_RADIAL", [100, 12, 11, 0.1], OPENCV, {0: 0.1}),
    ("RADIAL", [100, 12, 11, 0.1, -0.2], OPENCV, {0: 0.1, 1: -0.2}),
    ("OPENCV", [100, 90, 12, 11, 0.1, -0.2, 0.01, -0.02], OPENCV, {0: 0.1, 1: -0.2, 6: 0.01, 7: -0.02}),
    ("FULL_OPENCV", [100, 90, 12, 11, 0.1, -0.2, 0.01, -0.02, 0.3, 0.4, 0.5, 0.6], FULL_OPENCV,
     {0: 0.1, 1: -0.2, 2: 0.3, 3: 0.4, 4: 0.5, 5: 0.6, 6: 0.01, 7: -0.02}),
    ("OPENCV_FISHEYE", [100, 90, 12, 11, 0.1, -0.2, 0.3, -0.4], OPENCV_FISHEYE, {0: 0.1, 1: -0.2, 2: 0.3, 3: -0.4}),
    ("SIMPLE_RADIAL_FISHEYE", [100, 12, 11, 0.1], OPENCV_FISHEYE, {0: 0.1}),
    ("RADIAL_FISHEYE", [100, 12, 11, 0.1, -0.2], OPENCV_FISHEYE, {0: 0.1, 1: -0.2}),
    ("SIMPLE_FISHEYE", [100, 12, 11], OPENCV_FISHEYE, {}),
    ("FISHEYE", [100, 90, 12, 11], OPENCV_FISHEYE, {}),
    ("FOV", [100, 90, 12, 11, 0.8], FOV, {0: 0.8}),
])
def test_colmap_models_map_to_nerfkit_lenses(model, params, lens, dist):
    fx, fy, cx, cy, ctype, got = lens_from_colmap(ColmapCamera(5, model, 24, 22, np.array(params, float)),
                                                  Path("cameras.bin"))
    one_focal = len(params) - len(dist) == 3 or model == "SIMPLE_FISHEYE"
    assert (fx, fy, cx, cy) == ((100, 100, 12, 11) if one_focal else (100, 90, 12, 11))
    assert ctype == lens
    want = np.zeros(8)
    for i, v in dist.items():
        want[i] = v
    assert np.array_equal(got, want)
    back = colmap_from_lens(5, 24, 22, fx, fy, cx, cy, ctype, got)  # and back, to the same lens
    assert lens_from_colmap(back, Path("cameras.bin"))[4:5] == (lens,)
    assert np.array_equal(lens_from_colmap(back, Path("cameras.bin"))[5], want)


def test_every_nerfstudio_colmap_model_is_supported():
    for model in ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE",
                  "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE", "FULL_OPENCV", "FOV"):
        assert model in LENS_OF_MODEL


# ---------------------------------------------------------------------------------------------------------
# Datasets.

@pytest.fixture(scope="module")
def source_scene(tiny_scene_dir):
    return load_blender(tiny_scene_dir)


@pytest.fixture(scope="module")
def colmap_dir(source_scene, tmp_path_factory):
    """The built-in scene exported as a binary COLMAP dataset (shared: tests copy it before changing it)."""
    return write_colmap_dataset(source_scene, tmp_path_factory.mktemp("export") / "scene")


def copy_dataset(src, tmp_path):
    return Path(shutil.copytree(src, tmp_path / "scene"))


def load(root, tmp_path, **kwargs):
    return load_scene(DataConfig(path=root, cache_dir=tmp_path / "cache", **kwargs))


def by_name(split):
    return {name: i for i, name in enumerate(split.names)}


@pytest.mark.parametrize("binary", [True, False])
def test_export_and_load_round_trip(source_scene, tmp_path, binary):
    root = write_colmap_dataset(source_scene, tmp_path / "export", binary=binary)
    suffix = ".bin" if binary else ".txt"
    assert (root / "sparse" / "0" / f"cameras{suffix}").is_file()
    scene = load(root, tmp_path)  # format detected from sparse/0
    assert scene.info["format"] == "colmap"
    assert scene.info["source"].endswith(f"cameras{suffix}")
    assert {k: len(v) for k, v in scene.splits.items()} == {k: len(v) for k, v in source_scene.splits.items()}
    for split_name, src in source_scene.splits.items():
        got = scene.split(split_name)
        order = [by_name(got)[name] for name in src.names]  # COLMAP images come sorted by name
        torch.testing.assert_close(scene.to_dataset_frame(got.cameras.c2w[order].double()),
                                   src.cameras.c2w.double(), atol=1e-5, rtol=0)
        for attr in ("fx", "fy", "cx", "cy"):
            torch.testing.assert_close(getattr(got.cameras, attr)[order], getattr(src.cameras, attr))
        assert (got.cameras.width, got.cameras.height) == (src.cameras.width, src.cameras.height)
        assert torch.equal(got.images[order], src.images)
        assert not got.cameras.distorted
    # Placed by --data.normalize: every camera inside [-1, 1]^3, the box from the cameras (no points exported).
    assert scene.split("train").cameras.c2w[:, :, 3].abs().max() <= 1.0 + 1e-5
    assert scene.near < scene.far


def test_images_are_sorted_by_name_and_held_out_without_split_lists(colmap_dir, tmp_path):
    root = copy_dataset(colmap_dir, tmp_path)
    for name in ("train_list.txt", "val_list.txt", "test_list.txt"):
        (root / name).unlink()
    model = root / "sparse" / "0"
    images = read_images(model / "images.bin")
    shuffled = [images[k] for k in np.random.default_rng(0).permutation(list(images))]
    write_images(model / "images.bin", shuffled)
    frames = parse_colmap(root, hold_every=4)
    names = [p.relative_to(root / "images").as_posix() for p in frames.image_paths]
    assert names == sorted(names) and len(names) == 17
    assert list(frames.splits["test"]) == [0, 4, 8, 12, 16]
    scene = load(root, tmp_path, hold_every=4)
    assert set(scene.splits) == {"train", "test"} and len(scene.split("test")) == 5


def test_distorted_opencv_camera_comes_back_in_the_cameras(colmap_dir, tmp_path):
    root = copy_dataset(colmap_dir, tmp_path)
    path = root / "sparse" / "0" / "cameras.bin"
    (cam,) = read_cameras(path).values()
    assert cam.model == "PINHOLE"
    fx, fy, cx, cy = cam.params
    write_cameras(path, [ColmapCamera(cam.id, "OPENCV", cam.width, cam.height,
                                      np.array([fx, fy, cx, cy, 0.05, -0.02, 0.001, -0.002]))])
    cams = load(root, tmp_path).split("train").cameras
    assert cams.distorted and (cams.camera_type == OPENCV).all()
    want = torch.tensor([0.05, -0.02, 0, 0, 0, 0, 0.001, -0.002])
    torch.testing.assert_close(cams.distortion, want.expand(len(cams), 8))
    torch.testing.assert_close(cams.fx, torch.full((len(cams),), float(fx)))


@pytest.mark.parametrize("model, params", [("THIN_PRISM_FISHEYE", 12), ("EUCM", 6)])
def test_unsupported_camera_model_names_file_camera_and_model(colmap_dir, tmp_path, model, params):
    root = copy_dataset(colmap_dir, tmp_path)
    path = root / "sparse" / "0" / "cameras.bin"
    (cam,) = read_cameras(path).values()
    write_cameras(path, [ColmapCamera(cam.id, model, cam.width, cam.height, np.ones(params))])
    with pytest.raises(DataError, match=rf"cameras\.bin: camera {cam.id} uses the COLMAP camera model {model}, "
                                        r"which nerfkit does not support \(supported: SIMPLE_PINHOLE, PINHOLE, "):
        load(root, tmp_path)


def test_missing_images_file_is_named(colmap_dir, tmp_path):
    root = copy_dataset(colmap_dir, tmp_path)
    (root / "sparse" / "0" / "images.bin").unlink()
    with pytest.raises(DataError, match=r"sparse/0/images\.bin not found: the COLMAP model in .* has cameras\.bin "
                                        "but no images file"):
        load(root, tmp_path, format="colmap")


def test_truncated_images_bin_is_named_when_loading(colmap_dir, tmp_path):
    root = copy_dataset(colmap_dir, tmp_path)
    path = root / "sparse" / "0" / "images.bin"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=r"images\.bin is truncated or corrupt"):
        load(root, tmp_path)


def test_missing_image_file_is_named(colmap_dir, tmp_path):
    root = copy_dataset(colmap_dir, tmp_path)
    (root / "images" / "train" / "r_1.png").unlink()
    with pytest.raises(DataError, match=r"image file not found: .*images/train/r_1\.png \(.*images\.bin lists it"):
        load(root, tmp_path)


def test_camera_size_must_match_the_image_files(colmap_dir, tmp_path):
    root = copy_dataset(colmap_dir, tmp_path)
    path = root / "sparse" / "0" / "cameras.bin"
    (cam,) = read_cameras(path).values()
    write_cameras(path, [ColmapCamera(cam.id, cam.model, 32, 32, cam.params)])
    with pytest.raises(DataError, match=r"image .*images/test/r_0\.png is 24x24 but .*sparse/0/cameras\.bin gives its "
                                        "camera as 32x32"):
        load(root, tmp_path)


def test_split_list_naming_an_unknown_image_is_reported(colmap_dir, tmp_path):
    root = copy_dataset(colmap_dir, tmp_path)
    (root / "test_list.txt").write_text("test/r_0.png\nnope.png\n")
    with pytest.raises(DataError, match=r"test_list\.txt names 1 image\(s\) that the COLMAP model does not have, "
                                        "e.g. 'nope.png'"):
        load(root, tmp_path)


def add_shrunk_copies(root, factor, invert=True):
    """images_N with every image shrunk by ``factor`` (colours inverted, so a test can tell which folder was read)."""
    for path in sorted((root / "images").rglob("*.png")):
        image = read_image(path)
        small = resize_image(image, image.shape[1] // factor, image.shape[0] // factor)
        if invert:
            small = small.copy()
            small[..., :3] = 255 - small[..., :3]
        write_image(root / f"images_{factor}" / path.relative_to(root / "images"), small)


def folder(root, path):
    return path.relative_to(root).parts[0]


def test_images_n_folder_serves_the_downscale(colmap_dir, source_scene, tmp_path):
    root = copy_dataset(colmap_dir, tmp_path)
    add_shrunk_copies(root, 2)
    full_fx = float(source_scene.split("train").cameras.fx[0])
    frames = parse_colmap(root, downscale=2)
    assert frames.downscale == 1 and all(folder(root, p) == "images_2" for p in frames.image_paths)
    assert (frames.width[0], frames.height[0]) == (12, 12) and frames.fx[0] == pytest.approx(full_fx / 2)
    scene = load(root, tmp_path, downscale=2)
    train = scene.split("train")
    assert train.images.shape[1:3] == (12, 12)
    assert train.cameras.fx[0].item() == pytest.approx(full_fx / 2, rel=1e-6)
    on_disk = read_image(root / "images_2" / "train" / train.names[0])
    assert np.array_equal(train.images[0].numpy(), on_disk)
    # --data.downscale 4 with only images_2: images_2 shrunk by 2 more.
    frames = parse_colmap(root, downscale=4)
    assert frames.downscale == 2 and folder(root, frames.image_paths[0]) == "images_2"
    quarter = load(root, tmp_path, downscale=4).split("train")
    assert quarter.images.shape[1:3] == (6, 6)
    assert quarter.cameras.fx[0].item() == pytest.approx(full_fx / 4, rel=1e-6)
    # --data.downscale 3: no images_3, so the full-size images are shrunk.
    frames = parse_colmap(root, downscale=3)
    assert frames.downscale == 3 and folder(root, frames.image_paths[0]) == "images"


def test_images_n_of_the_wrong_size_is_reported(colmap_dir, tmp_path):
    root = copy_dataset(colmap_dir, tmp_path)
    add_shrunk_copies(root, 4)
    shutil.move(root / "images_4", root / "images_2")  # 6x6 images where 12x12 belong
    with pytest.raises(DataError, match=r"images_2/test/r_0\.png is 6x6, but .*cameras\.bin gives its camera as 24x24"):
        parse_colmap(root, downscale=2)


def add_masks(root, tiny_scene_dir):
    """nerfstudio-style masks, masks/<image name, suffix .png>, from the built-in scene's object masks."""
    for split in ("train", "val", "test"):
        (root / "masks" / split).mkdir(parents=True)
        for path in (tiny_scene_dir / split).glob("r_*_mask.png"):
            shutil.copy(path, root / "masks" / split / path.name.replace("_mask", ""))


def test_masks_folder_gives_masks(colmap_dir, tiny_scene_dir, tmp_path):
    root = copy_dataset(colmap_dir, tmp_path)
    add_masks(root, tiny_scene_dir)
    scene = load(root, tmp_path)
    train = scene.split("train")
    assert train.masks is not None and train.masks.shape == (12, 24, 24)
    for i, name in enumerate(train.names):
        assert np.array_equal(train.masks[i].numpy(), read_mask(root / "masks" / "train" / name) > 0)
    assert 0 < train.masks.float().mean() < 1
    assert load(root, tmp_path, masks=False).split("train").masks is None
    again = load(write_colmap_dataset(scene, tmp_path / "again"), tmp_path).split("train")  # masks are exported
    assert torch.equal(again.masks[[by_name(again)[name] for name in train.names]], train.masks)
    # Masks only at full size: an images_2 folder is passed over, so images and masks stay aligned.
    add_shrunk_copies(root, 2)
    frames = parse_colmap(root, downscale=2)
    assert folder(root, frames.image_paths[0]) == "images" and frames.downscale == 2
    assert frames.mask_paths is not None and folder(root, frames.mask_paths[0]) == "masks"
    assert load(root, tmp_path, downscale=2).split("train").masks.shape == (12, 12, 12)
    # With masks_2 beside images_2, both pre-shrunk folders are used.
    for path in sorted((root / "masks").rglob("*.png")):
        small = resize_image(read_mask(path), 12, 12)
        write_image(root / "masks_2" / path.relative_to(root / "masks"), small)
    frames = parse_colmap(root, downscale=2)
    assert folder(root, frames.image_paths[0]) == "images_2" and frames.downscale == 1
    assert folder(root, frames.mask_paths[0]) == "masks_2"
    half = load(root, tmp_path, downscale=2).split("train")
    assert np.array_equal(half.masks[0].numpy(), read_mask(root / "masks_2" / "train" / half.names[0]) > 0)


def file_hashes(root):
    return {p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_loading_leaves_the_dataset_untouched(colmap_dir, tiny_scene_dir, tmp_path):
    root = copy_dataset(colmap_dir, tmp_path)
    add_masks(root, tiny_scene_dir)
    before = file_hashes(root)
    load(root, tmp_path, downscale=2)
    load(root, tmp_path)
    assert file_hashes(root) == before


def test_export_writes_sparse_points_for_the_box(source_scene, tmp_path):
    pts = np.random.default_rng(5).uniform(-0.5, 0.5, size=(200, 3))
    root = write_colmap_dataset(source_scene, tmp_path / "export", binary=False, points=pts)
    frames = parse_colmap(root)
    np.testing.assert_allclose(frames.points, pts)
    scene = load(root, tmp_path)
    box = scene.aabb.numpy()
    moved = pts @ scene.transform[:3, :3].numpy().T + scene.transform[:3, 3].numpy()
    assert (box[:3] <= moved.min(0) + 1e-4).all() and (box[3:] >= moved.max(0) - 1e-4).all()
    with pytest.raises(FileExistsError):
        write_colmap_dataset(source_scene, root)


# ---------------------------------------------------------------------------------------------------------
# The real LLFF fern capture's model (cameras.bin and points3D.bin, but no images.bin).

@pytest.fixture
def fern_model():
    model = FERN / "sparse" / "0"
    if not (model / "cameras.bin").is_file() or not (model / "points3D.bin").is_file():
        pytest.skip(f"the real fern COLMAP model is not at {model} (it lives in ../shared/data outside the repo)")
    return model


def test_reads_real_fern_cameras_and_points(fern_model):
    (cam,) = read_cameras(fern_model / "cameras.bin").values()
    assert (cam.model, cam.width, cam.height) == ("SIMPLE_RADIAL", 4032, 3024)
    assert cam.params[0] > 1000 and tuple(cam.params[1:3]) == (2016.0, 1512.0)
    points = read_points3d(fern_model / "points3D.bin")
    assert len(points) > 1000 and np.isfinite(points.xyz).all()
    assert len(points.tracks) == points.track_lengths.sum() and (points.track_lengths >= 2).all()
    assert (points.tracks[:, 0] >= 1).all()  # image ids


def test_real_fern_as_colmap_reports_the_missing_images_bin(fern_model, tmp_path):
    with pytest.raises(DataError, match=r"fern/sparse/0/images\.bin not found.*poses_bounds\.npy"):
        load(fern_model.parents[1], tmp_path, format="colmap")


def test_reexport_of_a_loaded_colmap_scene_keeps_every_image(colmap_dir, tmp_path):
    # Without split lists and with --data.hold-every 0, 'test' repeats 'train', and train holds train/r_0.png,
    # test/r_0.png, ... whose file names (r_0.png) repeat with different pixels.
    root = copy_dataset(colmap_dir, tmp_path)
    for name in ("train_list.txt", "val_list.txt", "test_list.txt"):
        (root / name).unlink()
    scene = load(root, tmp_path, hold_every=0)
    again = write_colmap_dataset(scene, tmp_path / "again")
    listed = (again / "train_list.txt").read_text().split()
    assert len(listed) == len(set(listed)) == 17
    assert (again / "test_list.txt").read_text().split() == listed  # the same images, written once
    assert len(list((again / "images").rglob("*.png"))) == 17
    back = load(again, tmp_path)
    assert len(back.split("train")) == len(back.split("test")) == 17
    src, got = scene.split("train"), back.split("train")
    assert sorted(map(bytes, src.images.flatten(1).numpy())) == sorted(map(bytes, got.images.flatten(1).numpy()))
