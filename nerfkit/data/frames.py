"""What every format parser produces (:class:`Frames`: cameras and file names, nothing loaded) and the one
path that turns it into a :class:`~nerfkit.data.scene.Scene`: checks, placement in nerfkit's frame, parallel
image loading with cached downscaling, masks, splits.

A parser's job ends at :class:`Frames` in the OpenGL camera convention; everything after is shared, so every
format gets the same checks and error messages."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from PIL import Image

from ..cameras import NDC, N_DISTORTION, Cameras
from .images import load_images, load_masks
from .normalize import aabb_from_cameras, aabb_from_points, placement, transform_points, transform_poses
from .scene import DataError, Scene, Split

if TYPE_CHECKING:
    from .config import DataConfig

__all__ = ["Frames", "finish_scene", "check_pose", "image_size", "hold_out_split", "inside_root",
           "shrunk_folder_factor"]


@dataclass
class Frames:
    """Every image of a dataset with its camera, in the dataset's own world frame (OpenGL cameras).

    Attributes:
        source: the file that described the cameras (named in error messages).
        root: the dataset folder (images must lie inside it).
        image_paths: ``n`` image files.
        c2w: ``(n, 3, 4)`` float64 camera-to-world, OpenGL convention (x right, y up, looking down -z).
        fx, fy, cx, cy: ``(n,)`` intrinsics in pixels, for images of ``width x height``.
        width, height: ``(n,)`` the image size the intrinsics describe (checked against the files).
        splits: image indices per split name (``train`` required; ``val`` / ``test`` optional).
        camera_type: ``(n,)`` lens model (:mod:`nerfkit.camera_models`), default pinhole.
        distortion: ``(n, 8)`` ``k1..k6, p1, p2``, default zeros.
        mask_paths: optional per-image mask files (``None`` entries: no mask for that image).
        points: optional ``(m, 3)`` sparse points (e.g. COLMAP's), used for the scene box.
        near, far: bounds along rays when the format knows them (else derived from the box).
        aabb: optional ``(6,)`` scene box in this frame.
        transform: ``(4, 4)`` similarity the parser already applied (dataset frame -> this frame), e.g. LLFF's
            recentring; composed with the placement that :func:`finish_scene` applies.
        normalize: whether :func:`finish_scene` places the scene by ``cfg.normalize`` (captures) or keeps the
            frame (Blender scenes, LLFF which has its own convention).
        downscale: factor still to apply to the listed images (a parser that picked an ``images_N`` folder
            applied part of ``--data.downscale`` already).
        ndc: render in normalised device coordinates of the first camera (forward-facing scenes).
        forward_facing: the cameras look one way (renders follow a spiral).
        format: the format's name, for reports.
    """

    source: Path
    root: Path
    image_paths: list[Path]
    c2w: np.ndarray
    fx: np.ndarray
    fy: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    width: np.ndarray
    height: np.ndarray
    splits: dict[str, np.ndarray]
    camera_type: np.ndarray | None = None
    distortion: np.ndarray | None = None
    mask_paths: list[Path | None] | None = None
    points: np.ndarray | None = None
    near: float | None = None
    far: float | None = None
    aabb: np.ndarray | None = None
    transform: np.ndarray = field(default_factory=lambda: np.eye(4))
    normalize: bool = True
    downscale: int = 1
    ndc: bool = False
    forward_facing: bool = False
    format: str = ""


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, reading only its header."""
    if not path.is_file():
        raise DataError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as err:
        raise DataError(f"cannot read image {path}: {err}") from err


def inside_root(root: Path, relative: str, where: str) -> Path:
    """``root / relative``, refusing paths that leave the dataset folder (``where`` names the entry).

    The check is on the path as written (``..`` and absolute paths), not on where symbolic links lead, so an
    image folder that is a link to another disk stays usable."""
    base = Path(os.path.abspath(root))
    path = Path(os.path.normpath(base / relative))
    if not path.is_relative_to(base):
        raise DataError(f"{where}: {relative!r} points outside the dataset folder {root}")
    return path


def check_pose(pose, where: str) -> np.ndarray:
    """A camera-to-world matrix as ``(3, 4)`` float64; a clear error (naming ``where``) when it is not a finite
    rigid transform of shape 3x4 or 4x4."""
    try:
        pose = np.asarray(pose, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{where}: malformed pose: {err}") from err
    if pose.shape not in ((4, 4), (3, 4)):
        raise DataError(f"{where}: pose has shape {pose.shape}, expected 4x4 or 3x4")
    if not np.isfinite(pose).all():
        raise DataError(f"{where}: pose has non-finite values")
    rot = pose[:3, :3]
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-3) or np.linalg.det(rot) < 0:
        raise DataError(f"{where}: pose is not a rigid transform (its rotation part is not a rotation)")
    return pose[:3, :4]


def shrunk_folder_factor(root: Path, downscale: int, ready: Callable[[int], bool] = lambda n: True) -> int:
    """The factor ``N`` of the pre-shrunk image folder to read for ``--data.downscale downscale``: the largest
    ``N > 1`` dividing ``downscale`` whose ``root / images_N`` exists and passes the format's own ``ready(N)``
    check (e.g. every listed file present, or masks shrunk alike), else 1 (the full-size ``images``). What is
    left to shrink is ``downscale // N``."""
    for n in range(downscale, 1, -1):
        if downscale % n == 0 and (root / f"images_{n}").is_dir() and ready(n):
            return n
    return 1


def hold_out_split(n: int, hold_every: int) -> dict[str, np.ndarray]:
    """``train`` / ``test`` indices: every ``hold_every``-th image (from the first) is held out; 0 holds out
    none (then ``test`` repeats the training images, so evaluation still runs)."""
    every = np.arange(n)
    if hold_every <= 0 or n < 2:
        return {"train": every, "test": every}
    test = every[::hold_every]
    return {"train": np.setdiff1d(every, test), "test": test}


def _check(frames: Frames) -> None:
    n = len(frames.image_paths)
    src = frames.source
    if n == 0:
        raise DataError(f"{src} lists no images")
    shapes = {"c2w": (n, 3, 4), "fx": (n,), "fy": (n,), "cx": (n,), "cy": (n,), "width": (n,), "height": (n,)}
    for name, shape in shapes.items():
        if np.shape(getattr(frames, name)) != shape:
            raise DataError(f"{src}: internal error, {name} has shape {np.shape(getattr(frames, name))}, "
                            f"expected {shape}")
    for i in range(n):
        check_pose(frames.c2w[i], f"{src}: image {frames.image_paths[i].name}")
    intr = np.stack([frames.fx, frames.fy, frames.cx, frames.cy])
    bad = ~np.isfinite(intr).all(0) | (intr[:2] <= 0).any(0)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{src}: image {frames.image_paths[i].name} has invalid intrinsics fx={frames.fx[i]}, "
                        f"fy={frames.fy[i]}, cx={frames.cx[i]}, cy={frames.cy[i]} (focal lengths must be > 0)")
    if frames.distortion is not None and not np.isfinite(frames.distortion).all():
        raise DataError(f"{src}: distortion parameters have non-finite values")
    if "train" not in frames.splits or len(frames.splits["train"]) == 0:
        raise DataError(f"{src}: the 'train' split is empty")
    for name, idx in frames.splits.items():
        if len(idx) and (np.min(idx) < 0 or np.max(idx) >= n):
            raise DataError(f"{src}: split {name!r} refers to images that do not exist")
    sizes = {(int(w), int(h)) for w, h in zip(frames.width, frames.height)}
    if len(sizes) > 1:
        w, h = int(frames.width[0]), int(frames.height[0])
        i = int(np.argmax((frames.width != w) | (frames.height != h)))
        raise DataError(f"{src}: image {frames.image_paths[i].name} is {frames.width[i]}x{frames.height[i]} but "
                        f"{frames.image_paths[0].name} is {w}x{h}; nerfkit needs one image size per dataset "
                        "(resize the images, keeping the intrinsics consistent)")


def _corners(aabb: np.ndarray) -> np.ndarray:
    """The 8 corners ``(8, 3)`` of a box ``(6,)``."""
    return np.array(np.meshgrid(*[[aabb[i], aabb[i + 3]] for i in range(3)], indexing="ij")).reshape(3, -1).T


def finish_scene(frames: Frames, cfg: "DataConfig", name: str | None = None) -> Scene:
    """Checks ``frames``, places the scene (``cfg.normalize`` when ``frames.normalize``), loads images (and
    masks, with ``cfg.masks``) shrunk by ``frames.downscale`` and builds the :class:`Scene`."""
    _check(frames)
    c2w, transform = frames.c2w.copy(), frames.transform.copy()
    points, aabb, near, far = frames.points, frames.aabb, frames.near, frames.far
    if frames.normalize:
        norm = cfg.normalize
        place = placement(c2w, norm.orientation, norm.center, norm.scale)
        scale = float(np.cbrt(abs(np.linalg.det(place[:3, :3]))))
        near = None if near is None else near * scale  # distances along rays scale with the scene
        far = None if far is None else far * scale
        c2w = transform_poses(place, c2w)
        transform = place @ transform
        if points is not None:
            points = transform_points(place, points)
        if aabb is not None:  # the moved box's corners, boxed again
            moved = transform_points(place, _corners(aabb))
            aabb = np.concatenate([moved.min(0), moved.max(0)])
    if aabb is None:
        use_points = points is not None and len(points) >= 8 and cfg.normalize.aabb_from != "cameras"
        if cfg.normalize.aabb_from == "points" and not use_points:
            raise DataError(f"{frames.source}: --data.normalize.aabb-from points, but the dataset has no sparse "
                            "points")
        aabb = aabb_from_points(points) if use_points else aabb_from_cameras(c2w)

    # Headers only, now: a missing or mis-sized file is reported before any training, though pixels are
    # decoded per split on first use.
    full_w, full_h = image_size(frames.image_paths[0])
    want_w, want_h = int(frames.width[0]), int(frames.height[0])
    if (full_w, full_h) != (want_w, want_h):
        raise DataError(f"image {frames.image_paths[0]} is {full_w}x{full_h} but {frames.source} gives its camera "
                        f"as {want_w}x{want_h}")
    for path in frames.image_paths[1:]:
        if (size := image_size(path)) != (full_w, full_h):
            raise DataError(f"image {path} is {size[0]}x{size[1]} but {frames.image_paths[0]} is {full_w}x{full_h}: "
                            "all images of a dataset must have the same size")
    mask_paths = None
    if cfg.masks and frames.mask_paths is not None and any(p is not None for p in frames.mask_paths):
        mask_paths = frames.mask_paths
        for image, mask in zip(frames.image_paths, mask_paths):
            if mask is not None and (size := image_size(mask)) != (full_w, full_h):
                raise DataError(f"mask {mask} is {size[0]}x{size[1]} but its image {image} is {full_w}x{full_h}")
    width, height = full_w // frames.downscale, full_h // frames.downscale
    if width < 1 or height < 1:
        raise DataError(f"--data.downscale {frames.downscale} is too large for {full_w}x{full_h} images")

    n = len(frames.image_paths)
    ctype = np.zeros(n, dtype=np.int64) if frames.camera_type is None else frames.camera_type
    dist = np.zeros((n, N_DISTORTION)) if frames.distortion is None else frames.distortion
    cams = Cameras(torch.from_numpy(c2w).float(), torch.from_numpy(frames.fx).float(),
                   torch.from_numpy(frames.fy).float(), torch.from_numpy(frames.cx).float(),
                   torch.from_numpy(frames.cy).float(), want_w, want_h, torch.from_numpy(ctype),
                   torch.from_numpy(dist).float()).resized(width, height)
    if frames.ndc:
        cams.ndc = NDC(float(cams.fx[0]), float(cams.fy[0]), width, height, 1.0)
    names = [p.name for p in frames.image_paths]
    loaded: dict[tuple, tuple] = {}  # splits listing the same images share one copy

    def loader(idx: list[int]):
        def load() -> tuple[torch.Tensor, torch.Tensor | None]:
            key = tuple(idx)
            if key not in loaded:
                images, _ = load_images([frames.image_paths[i] for i in idx], frames.downscale, cfg.cache_dir)
                masks = None
                if mask_paths is not None:
                    given = [j for j, i in enumerate(idx) if mask_paths[i] is not None]
                    masks = np.ones(images.shape[:3], dtype=bool)
                    if given:
                        masks[given] = load_masks([mask_paths[idx[j]] for j in given], frames.downscale,
                                                  cfg.cache_dir)[0]
                    masks = torch.from_numpy(masks)
                loaded[key] = (torch.from_numpy(images), masks)
            return loaded[key]
        return load

    splits = {}
    for split, idx in frames.splits.items():
        idx = [int(i) for i in idx]
        if idx:
            splits[split] = Split.lazy(loader(idx), cams[idx], [names[i] for i in idx])
    if near is None or far is None:  # from the cameras to the farthest corner of the box
        reach = np.linalg.norm(_corners(aabb)[None] - c2w[:, None, :3, 3], axis=-1).max()
        near = 0.01 * float(reach) if near is None else near
        far = float(reach) if far is None else far
    info = {"format": frames.format, "downscale": cfg.downscale, "source": str(frames.source),
            "n_images": n, "full_size": [full_w, full_h]}
    return Scene(splits, float(near), float(far), torch.tensor(aabb, dtype=torch.float32),
                 name=name or frames.root.name, info=info, transform=torch.from_numpy(transform),
                 forward_facing=frames.forward_facing)
