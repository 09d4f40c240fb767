"""The shared data path: format detection, frames -> scene checks, placement, image loading and its cache,
masks and ray drawing."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfkit.data import DataError, RaySampler, detect_format, load_blender, load_scene
from nerfkit.data.config import DataConfig
from nerfkit.data.frames import finish_scene, hold_out_split
from nerfkit.data.blender import parse_blender
from nerfkit.data.images import load_images, load_masks, read_image
from nerfkit.data.normalize import placement, transform_points, transform_poses
from nerfkit.data.scene import Split


def folder_digest(root: Path) -> dict:
    """Every file under ``root`` with its content hash and modification time."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_detects_each_format_from_its_files(tmp_path, tiny_scene_dir):
    assert detect_format(tiny_scene_dir) == "blender"
    (tmp_path / "llff").mkdir()
    np.save(tmp_path / "llff" / "poses_bounds.npy", np.zeros((2, 17)))
    assert detect_format(tmp_path / "llff") == "llff"
    for sub in ("sparse/0", "sparse", "colmap/sparse/0"):
        folder = tmp_path / f"colmap-{sub.replace('/', '-')}" / sub
        folder.mkdir(parents=True)
        (folder / "cameras.txt").write_text("# empty\n")
        assert detect_format(folder.parents[len(Path(sub).parts) - 1]) == "colmap"


def test_an_unknown_layout_lists_what_was_looked_for(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(DataError) as info:
        detect_format(tmp_path)
    message = str(info.value)
    for sign in ("transforms_train.json", "transforms.json", "poses_bounds.npy", "sparse/0/cameras.bin", "--data.format"):
        assert sign in message
    with pytest.raises(DataError, match="cannot tell the dataset format"):
        load_scene(DataConfig(path=tmp_path, cache_dir=tmp_path / "cache"))


def test_data_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="is not a folder"):
        load_scene(DataConfig(path=tmp_path / "x.json"))


def test_parallel_loading_matches_reading_each_file(tiny_scene_dir):
    paths = sorted((tiny_scene_dir / "train").glob("r_*[0-9].png"))
    images, size = load_images(paths, threads=2)
    assert size == (24, 24) and images.dtype == np.uint8 and images.shape == (len(paths), 24, 24, 4)
    for i, p in enumerate(paths):
        assert np.array_equal(images[i], read_image(p))


def test_downscaled_copies_are_cached_outside_the_dataset_and_follow_changes(tmp_path, tiny_scene_dir):
    root = shutil.copytree(tiny_scene_dir, tmp_path / "scene")
    cache = tmp_path / "cache"
    before = folder_digest(root)
    cfg = DataConfig(path=root, downscale=2, cache_dir=cache)
    first = load_scene(cfg)
    assert not (cache / "downscaled").exists()  # pixels are decoded per split, on first use
    assert not first.split("train").loaded and len(first.split("train")) == 12
    first.split("train").images
    assert len(list((cache / "downscaled").glob("*.npy"))) == 1  # one entry for the split's images
    assert not first.split("test").loaded
    assert folder_digest(root) == before  # nothing written next to the user's data
    again = load_scene(cfg)
    assert torch.equal(first.split("train").images, again.split("train").images)
    # A changed source image gives a new key: the stale copy is never served.
    image = read_image(root / "train" / "r_0.png")
    image[..., :3] = 255 - image[..., :3]
    from nerfkit.data.images import write_image
    write_image(root / "train" / "r_0.png", image)
    os.utime(root / "train" / "r_0.png", ns=(1, 10**18))
    changed = load_scene(cfg)
    assert not torch.equal(changed.split("train").images[0], first.split("train").images[0])
    assert torch.equal(changed.split("train").images[1:], first.split("train").images[1:])
    assert len(list((cache / "downscaled").glob("*.npy"))) == 2  # the old entry and the new one
    # A damaged cache entry is rebuilt, not trusted.
    for entry in (cache / "downscaled").glob("*.npy"):
        entry.write_bytes(b"broken")
    assert torch.equal(load_scene(cfg).split("train").images, changed.split("train").images)


def test_images_of_different_sizes_are_named(tmp_path, tiny_scene_dir):
    root = shutil.copytree(tiny_scene_dir, tmp_path / "scene")
    from nerfkit.data.images import write_image
    write_image(root / "test" / "r_1.png", np.zeros((20, 24, 4), np.uint8))
    # found when the scene is opened, before training, though test pixels are only decoded for evaluation
    with pytest.raises(DataError, match=r"test/r_1\.png is 24x20.*r_0\.png is 24x24"):
        load_blender(root)


def test_frame_checks_name_the_image_and_the_problem(tiny_scene_dir):
    cfg = DataConfig(path=tiny_scene_dir, cache_dir=None)

    def broken(mutate):
        frames = parse_blender(tiny_scene_dir)
        mutate(frames)
        return frames

    with pytest.raises(DataError, match=r"r_1\.png has invalid intrinsics"):
        finish_scene(broken(lambda f: f.fx.__setitem__(1, -3.0)), cfg)
    with pytest.raises(DataError, match="'train' split is empty"):
        finish_scene(broken(lambda f: f.splits.__setitem__("train", np.array([], int))), cfg)
    with pytest.raises(DataError, match=r"r_0\.png is 24x24 but .*transforms_train\.json gives its camera as 30x24"):
        finish_scene(broken(lambda f: f.width.__setitem__(slice(None), 30)), cfg)
    with pytest.raises(DataError, match=r"image r_2\.png: pose has non-finite values"):
        finish_scene(broken(lambda f: f.c2w.__setitem__((2, 0, 3), np.nan)), cfg)
    with pytest.raises(DataError, match=r"r_3\.png is 30x24 but r_0\.png is 24x24; nerfkit needs one image size"):
        finish_scene(broken(lambda f: f.width.__setitem__(3, 30)), cfg)


def test_masks_are_loaded_shrunk_and_checked(tmp_path, tiny_scene_dir):
    frames = parse_blender(tiny_scene_dir)
    frames.mask_paths = [p.with_name(p.stem + "_mask.png") for p in frames.image_paths]
    frames.mask_paths[1] = None  # an image without a mask keeps every pixel
    scene = finish_scene(frames, DataConfig(path=tiny_scene_dir, cache_dir=tmp_path))
    masks = scene.split("train").masks
    alpha = scene.split("train").images[..., 3]
    assert masks.dtype == torch.bool and masks.shape == (12, 24, 24)
    assert masks[1].all()
    assert torch.equal(masks[0], read_image_mask(frames.mask_paths[0]))
    assert (alpha[0][~masks[0]] < 255).all() and (alpha[0][masks[0]] > 0).all()  # the built-in masks mark objects
    frames.downscale = 2
    half = finish_scene(frames, DataConfig(path=tiny_scene_dir, downscale=2, cache_dir=tmp_path))
    assert half.split("train").masks.shape == (12, 12, 12)
    frames.downscale = 1
    assert finish_scene(frames, DataConfig(path=tiny_scene_dir, masks=False, cache_dir=None)).split("train").masks is None
    small = tmp_path / "small_mask.png"
    from nerfkit.data.images import write_image
    write_image(small, np.full((12, 12), 255, np.uint8))
    frames.mask_paths[5] = small
    with pytest.raises(DataError, match=r"mask .*small_mask\.png is 12x12 but its image .*r_5\.png is 24x24"):
        finish_scene(frames, DataConfig(path=tiny_scene_dir, cache_dir=None))


def read_image_mask(path):
    masks, _ = load_masks([path])
    return torch.from_numpy(masks[0])


def test_shrunk_masks_keep_pixels_that_are_mostly_kept():
    from nerfkit.data.images import resize_image
    block = np.array([[255, 255], [255, 0]], np.uint8)  # 3/4 kept -> kept
    assert resize_image(block, 1, 1)[0, 0] >= 128
    block = np.array([[255, 0], [0, 0]], np.uint8)      # 1/4 kept -> dropped
    assert resize_image(block, 1, 1)[0, 0] < 128


def test_sampler_never_draws_masked_pixels(tiny_scene_dir):
    split = load_blender(tiny_scene_dir, splits=("train",)).split("train")
    masks = torch.zeros(split.images.shape[:3], dtype=torch.bool)
    masks[:, 5:9, 10:12] = True  # a few pixels of every image
    masks[3] = False
    sampler = RaySampler(Split(split.images, split.cameras, split.names, masks))
    gen = torch.Generator().manual_seed(0)
    batch = sampler.sample(4096, gen)
    flat = torch.nonzero(masks.reshape(-1))[:, 0]
    expected = split.images.reshape(-1, 4)[flat].float() / 255
    # every drawn colour is one of the kept pixels' colours, and every kept pixel gets drawn
    drawn = {tuple(c) for c in (batch.rgba * 255).round().int().tolist()}
    allowed = {tuple(c) for c in (expected * 255).round().int().tolist()}
    assert drawn <= allowed and len(drawn) == len(allowed)
    with pytest.raises(DataError, match="every pixel of the training images is masked out"):
        RaySampler(Split(split.images, split.cameras, split.names, torch.zeros_like(masks)))


def test_ranks_draw_disjoint_shares_of_one_global_batch(tiny_scene_dir):
    split = load_blender(tiny_scene_dir, splits=("train",)).split("train")

    def draw(rank, world, n, seed=3):
        gen = torch.Generator().manual_seed(seed)
        sampler = RaySampler(split, rank, world)
        return [sampler.sample(n, gen) for _ in range(3)]

    single = draw(0, 1, 64)
    shares = [draw(r, 2, 32) for r in range(2)]
    for step in range(3):
        for key in ("origins", "directions", "rgba"):
            together = torch.cat([getattr(shares[r][step], key) for r in range(2)])
            assert torch.equal(together, getattr(single[step], key))
    assert not torch.equal(shares[0][0].directions, shares[1][0].directions)
    assert torch.equal(draw(0, 1, 64)[2].rgba, single[2].rgba)  # the same seed draws the same rays
    assert not torch.equal(draw(0, 1, 64, seed=4)[0].directions, single[0].directions)
    with pytest.raises(ValueError, match="rank 2 is not in"):
        RaySampler(split, 2, 2)


@pytest.mark.parametrize("orientation", ["up", "pca", "none"])
@pytest.mark.parametrize("center", ["poses", "focus", "none"])
def test_placement_orients_centres_scales_and_maps_back(orientation, center):
    rng = np.random.default_rng(0)
    from nerfkit.cameras import look_at
    eye = torch.from_numpy(rng.normal(size=(30, 3)) * [3.0, 2.0, 0.5] + [5.0, -2.0, 7.0])
    target = torch.tensor([5.0, -2.0, 6.0], dtype=torch.float64).expand_as(eye)
    up = torch.tensor([0.3, 0.2, 0.93], dtype=torch.float64)
    c2w = look_at(eye, target, up / up.norm()).numpy()
    place = placement(c2w, orientation, center, True)
    moved = transform_poses(place, c2w)
    rot = moved[:, :3, :3]
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-9)
    assert np.abs(moved[:, :3, 3]).max() == pytest.approx(1.0)
    if orientation == "up":
        mean_up = moved[:, :3, 1].mean(0)
        np.testing.assert_allclose(mean_up / np.linalg.norm(mean_up), [0, 0, 1], atol=1e-9)
    if orientation == "pca":
        spread = moved[:, :3, 3].var(0)
        assert spread[0] >= spread[1] >= spread[2]
    if center == "poses":
        np.testing.assert_allclose(moved[:, :3, 3].mean(0), 0, atol=1e-9)
    if center == "focus":
        np.testing.assert_allclose(transform_points(place, np.array([[5.0, -2.0, 6.0]]))[0], 0, atol=1e-6)
    # the scene maps back to the dataset's frame exactly
    from nerfkit.data.scene import Scene
    scene = Scene({}, 0.1, 1.0, transform=torch.from_numpy(place))
    back = scene.to_dataset_frame(torch.from_numpy(moved))
    np.testing.assert_allclose(back.numpy(), c2w, atol=1e-9)


def test_hold_out_split_follows_the_llff_protocol():
    split = hold_out_split(20, 8)
    assert split["test"].tolist() == [0, 8, 16] and len(split["train"]) == 17
    assert set(split["train"]) | set(split["test"]) == set(range(20))
    every = hold_out_split(5, 0)
    assert every["train"].tolist() == every["test"].tolist() == list(range(5))


def test_blender_loading_leaves_the_files_untouched(tmp_path, tiny_scene_dir):
    root = shutil.copytree(tiny_scene_dir, tmp_path / "scene")
    before = folder_digest(root)
    load_scene(DataConfig(path=root, downscale=3, cache_dir=tmp_path / "cache"))
    assert folder_digest(root) == before


def test_image_folders_may_be_links_but_paths_may_not_leave_the_dataset(tmp_path, tiny_scene_dir):
    from nerfkit.data.frames import inside_root
    elsewhere = shutil.copytree(tiny_scene_dir / "train", tmp_path / "other-disk" / "train")
    root = tmp_path / "scene"
    root.mkdir()
    for name in ("transforms_train.json", "transforms_test.json"):
        shutil.copy(tiny_scene_dir / name, root / name)
    shutil.copytree(tiny_scene_dir / "test", root / "test")
    (root / "train").symlink_to(elsewhere, target_is_directory=True)
    assert len(load_blender(root, splits=("train", "test")).split("train")) == 12
    for bad in ("../x.png", "/etc/passwd", "train/../../x.png"):
        with pytest.raises(DataError, match="points outside the dataset folder"):
            inside_root(root, bad, "frame 0")


def test_unreadable_images_are_named(tmp_path, tiny_scene_dir):
    root = shutil.copytree(tiny_scene_dir, tmp_path / "scene")
    (root / "test" / "r_2.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"cannot read image .*test/r_2\.png"):  # when the scene is opened
        load_blender(root)
    data = (root / "train" / "r_4.png").read_bytes()
    shutil.copy(tiny_scene_dir / "test" / "r_2.png", root / "test" / "r_2.png")
    (root / "train" / "r_4.png").write_bytes(data[: len(data) // 2])  # a header, then a cut-off image
    scene = load_blender(root)
    with pytest.raises(DataError, match=r"cannot read image .*train/r_4\.png"):  # when its pixels are decoded
        scene.split("train").images
