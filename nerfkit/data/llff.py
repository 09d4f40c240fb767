"""LLFF forward-facing captures (``poses_bounds.npy`` + ``images`` / ``images_N``), as the original NeRF read them.

``poses_bounds.npy`` holds one row of 17 numbers per image (images sorted by file name): a ``3 x 5`` matrix
``[R | t | (h, w, f)]`` (camera-to-world in LLFF's camera axes: x down, y right, z backwards; then the
full-resolution image height, width and focal length in pixels), and the near / far depth bounds of the scene
content seen by that image. The principal point is the image centre and pixels are square.

The loader follows NeRF's ``load_llff_data``: camera axes to OpenGL (x right, y up, z backwards), positions and
bounds scaled by ``1 / (min bound * bd_factor)``, then the world moved to the average camera (``recenter_poses``),
optionally onto a unit sphere (``spherify_poses``). That similarity is :attr:`Frames.transform`, so

* **the dataset frame** of an LLFF scene (what :meth:`Scene.to_dataset_frame` returns) is the world frame and
  units of ``poses_bounds.npy`` (COLMAP's, for captures made with LLFF's ``imgs2poses.py``), with cameras in
  OpenGL axes: ``[R[:, 1], -R[:, 0], R[:, 2], t]`` of the file's ``[R | t]``;
* the scene frame is the recentred one: the average camera sits at the origin looking down ``-z``, and the
  nearest depth bound is ``1 / bd_factor`` (1.33 by default).

With NDC (the default for forward-facing scenes) rays are mapped to normalised device coordinates of that
average camera (:func:`nerfkit.cameras.ndc_rays`, near plane at depth 1): the scene box is :data:`NDC_AABB`, the
ray bounds ``0 .. NDC_FAR``. Without NDC (``--no-data.llff.ndc`` or ``--data.llff.spherify``) rays stay in the
scene frame: near ``0.9 *`` the smallest bound, far the largest bound along the widest ray, and the box around
every camera's view frustum between its own bounds.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .frames import Frames, check_pose, finish_scene, hold_out_split, image_size, shrunk_folder_factor
from .normalize import transform_poses
from .scene import DataError, Scene

if TYPE_CHECKING:
    from .config import DataConfig

__all__ = ["load_llff", "parse_llff", "write_llff", "llff_image_folder", "NDC_AABB", "NDC_FAR", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""Image files an LLFF images folder may hold (any case); every one of them is an image of the capture."""

NDC_AABB = (-1.5, -1.5, -1.0, 1.5, 1.5, 1.0)
"""The scene box of an NDC scene: the reference camera's frustum is ``[-1, 1]^3``; x and y reach to 1.5 because
rays of the other training cameras leave the reference frustum. Measured on fern (points spread uniformly in NDC
depth along 200k random training rays): 8.6% of them lie outside ``|x|, |y| <= 1``, 0.07% outside 1.3, none
outside 1.5 (the extremes are |x| = 1.44, |y| = 1.28)."""

NDC_FAR = float(math.sqrt((NDC_AABB[3] - NDC_AABB[0]) ** 2 + (NDC_AABB[4] - NDC_AABB[1]) ** 2
                          + (NDC_AABB[5] - NDC_AABB[2]) ** 2))
"""Far bound of NDC rays: the box diagonal (NDC directions are unit length, so no ray spends longer inside)."""

_FOLDER = re.compile(r"^images(?:_(\d+))?$")


def _found_folders(root: Path) -> dict[int, Path]:
    """Image folders of an LLFF dataset by the factor their name gives (``images`` is 1)."""
    found = {}
    for child in sorted(root.iterdir()) if root.is_dir() else []:
        match = _FOLDER.match(child.name)
        if match and child.is_dir():
            factor = int(match.group(1) or 1)
            if factor >= 1:
                found[factor] = child
    return found


def llff_image_folder(root: Path, downscale: int) -> tuple[Path, int]:
    """The folder to read for ``--data.downscale downscale`` and the factor still to apply to its images.

    ``images_N`` for ``N = downscale`` (``images`` for 1) when it exists; else the coarsest finer folder whose
    factor divides ``downscale`` (e.g. ``images_8`` for 16, shrunk by 2 more); else a :class:`DataError` naming
    the folders found and the fix."""
    found = _found_folders(root)
    if not found:
        others = sorted(c.name for c in root.iterdir() if c.is_dir()) if root.is_dir() else []
        raise DataError(f"{root} has no images folder ('images' or 'images_N' next to poses_bounds.npy)"
                        + (f"; it has: {', '.join(others)}" if others else ""))
    best = shrunk_folder_factor(root, downscale)
    if best == 1 and 1 not in found:
        names = ", ".join(found[m].name for m in sorted(found))
        hint = " or ".join(f"--data.downscale {m}" for m in sorted(found))
        raise DataError(f"{root} has no images folder for --data.downscale {downscale}: it has {names} only. "
                        f"Pass {hint} (or a multiple of it)")
    return found[best], downscale // best


def _list_images(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                  key=lambda p: p.name)


def _read_poses_bounds(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path} not found (an LLFF dataset needs poses_bounds.npy)")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as err:  # numpy raises ValueError / OSError / EOFError ... for corrupt files
        raise DataError(f"{path} is not a readable .npy array: {err}") from err
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 17 or data.shape[0] == 0:
        raise DataError(f"{path} has shape {getattr(data, 'shape', '?')}, expected (N, 17): per image a 3x5 pose "
                        "[R | t | (h, w, f)] and near/far bounds")
    try:
        return data.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{path} does not hold numbers ({data.dtype})") from err


def _avg_pose(c2w: np.ndarray) -> np.ndarray:
    """NeRF's ``poses_avg``: ``(4, 4)`` at the mean position, z the normalised sum of z axes, y from the summed
    up vectors."""
    z = c2w[:, :3, 2].sum(0)
    z = z / np.linalg.norm(z)
    x = np.cross(c2w[:, :3, 1].sum(0), z)
    x = x / np.linalg.norm(x)
    out = np.eye(4)
    out[:3, :4] = np.stack([x, np.cross(z, x), z, c2w[:, :3, 3].mean(0)], axis=1)
    return out


def _spherify(c2w: np.ndarray) -> np.ndarray:
    """NeRF's ``spherify_poses`` as a similarity ``(4, 4)``: origin at the point nearest every optical axis, z along
    the mean camera offset from it, scale so that the cameras' RMS distance is 1."""
    axes, origins = c2w[:, :3, 2], c2w[:, :3, 3]
    proj = np.eye(3)[None] - axes[:, :, None] * axes[:, None, :]
    center = np.linalg.solve((proj.transpose(0, 2, 1) @ proj).mean(0), (proj @ origins[:, :, None]).mean(0))[:, 0]
    z = (origins - center).mean(0)
    z = z / np.linalg.norm(z)
    x = np.cross([0.1, 0.2, 0.3], z)
    x = x / np.linalg.norm(x)
    frame = np.eye(4)
    frame[:3, :4] = np.stack([x, np.cross(z, x), z, center], axis=1)
    inv = np.linalg.inv(frame)
    radius = np.sqrt(np.mean(np.sum((origins @ inv[:3, :3].T + inv[:3, 3]) ** 2, axis=-1)))
    return np.diag([1.0 / radius] * 3 + [1.0]) @ inv


def _frustum_box(c2w: np.ndarray, bounds: np.ndarray, half_w: np.ndarray, half_h: np.ndarray) -> np.ndarray:
    """``(6,)`` box around every camera's centre and its view frustum between its near and far depths (``half_w``,
    ``half_h``: the image half-extent over the focal length)."""
    sx, sy = np.array([-1.0, 1.0, 1.0, -1.0]), np.array([-1.0, -1.0, 1.0, 1.0])
    points = [c2w[:, :3, 3]]
    for k in range(2):
        depth = bounds[:, k][:, None]
        local = np.stack([sx[None] * half_w[:, None] * depth, sy[None] * half_h[:, None] * depth,
                          -np.broadcast_to(depth, (len(c2w), 4))], axis=-1)  # (n, 4, 3)
        points.append((local @ c2w[:, :3, :3].transpose(0, 2, 1) + c2w[:, None, :3, 3]).reshape(-1, 3))
    points = np.concatenate(points)
    return np.concatenate([points.min(0), points.max(0)])


def parse_llff(root: str | Path, cfg: "DataConfig") -> Frames:
    """The cameras of an LLFF dataset, recentred (and rescaled, optionally spherified) as NeRF did; see the module
    docstring for the frames, bounds and box."""
    return _parse(Path(root), cfg)[0]


def _parse(root: Path, cfg: "DataConfig") -> tuple[Frames, np.ndarray]:
    """:func:`parse_llff` and the ``(n, 2)`` depth bounds in scene units."""
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}")
    source = root / "poses_bounds.npy"
    data = _read_poses_bounds(source)
    n = len(data)
    folder, downscale = llff_image_folder(root, cfg.downscale)
    paths = _list_images(folder)
    if len(paths) != n:
        raise DataError(f"{source} has {n} rows (cameras) but {folder} holds {len(paths)} images "
                        f"({', '.join(IMAGE_SUFFIXES)}); they must match one to one, in file-name order")
    for i in range(n):
        if not np.isfinite(data[i]).all():
            raise DataError(f"{source}: row {i} (image {paths[i].name}) has non-finite values")
    bounds = data[:, 15:17].copy()
    bad = (bounds <= 0).any(1) | (bounds[:, 0] > bounds[:, 1])
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{source}: row {i} (image {paths[i].name}) has depth bounds {bounds[i].tolist()}; "
                        "expected 0 < near <= far")
    mats = data[:, :15].reshape(n, 3, 5)
    hwf = mats[:, :, 4]
    bad = (hwf <= 0).any(1)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{source}: row {i} (image {paths[i].name}) has image height, width, focal "
                        f"{hwf[i].tolist()}; all must be > 0")
    # LLFF camera axes (down, right, back) -> OpenGL (right, up, back); the world frame is untouched.
    c2w = np.concatenate([mats[:, :, 1:2], -mats[:, :, 0:1], mats[:, :, 2:4]], axis=2)
    for i in range(n):
        check_pose(c2w[i], f"{source}: row {i} (image {paths[i].name})")

    width, height = image_size(paths[0])
    sx, sy = width / hwf[:, 1], height / hwf[:, 0]
    if np.abs(sx - sy).max() * max(width, height) > 1.5:
        i = int(np.argmax(np.abs(sx - sy)))
        raise DataError(f"{paths[0]} is {width}x{height}, not the shape of the {int(hwf[i, 1])}x{int(hwf[i, 0])} "
                        f"images that {source} row {i} describes (wrong images folder?)")
    fx, fy = hwf[:, 2] * sx, hwf[:, 2] * sy

    # Rescale so that the nearest bound is 1 / bd_factor, then move the world to the average camera.
    scale = 1.0 / (bounds.min() * cfg.llff.bd_factor)
    transform = np.diag([scale, scale, scale, 1.0])
    scaled = c2w.copy()
    scaled[:, :, 3] *= scale
    transform = np.linalg.inv(_avg_pose(scaled)) @ transform
    if cfg.llff.spherify:
        moved = transform_poses(transform, c2w)
        transform = _spherify(moved) @ transform
    poses = transform_poses(transform, c2w)
    s = float(np.cbrt(np.linalg.det(transform[:3, :3])))
    bounds = bounds * s

    ndc = cfg.llff.ndc and not cfg.llff.spherify
    if ndc:
        near, far, aabb = 0.0, NDC_FAR, np.asarray(NDC_AABB, dtype=np.float64)
    else:
        half_w, half_h = width / 2.0 / fx, height / 2.0 / fy
        stretch = float(np.sqrt(1.0 + half_w ** 2 + half_h ** 2).max())  # the corner ray's length per unit depth
        near, far = 0.9 * float(bounds.min()), float(bounds.max()) * stretch
        aabb = _frustum_box(poses, bounds, half_w, half_h)
    splits = hold_out_split(n, cfg.hold_every)
    splits["val"] = splits["test"]
    frames = Frames(source=source, root=root, image_paths=paths, c2w=poses, fx=fx, fy=fy,
                    cx=np.full(n, width / 2.0), cy=np.full(n, height / 2.0), width=np.full(n, width),
                    height=np.full(n, height), splits=splits, near=near, far=far, aabb=aabb, transform=transform,
                    normalize=False, downscale=downscale, ndc=ndc, forward_facing=not cfg.llff.spherify,
                    format="llff")
    return frames, bounds


def load_llff(root: str | Path, cfg: "DataConfig") -> Scene:
    """Loads an LLFF dataset (``poses_bounds.npy`` and an ``images`` / ``images_N`` folder).

    Returns:
        a :class:`Scene` with the ``hold_every``-th images (0, 8, 16, ... by default) as ``test`` and ``val``,
        ``forward_facing`` unless spherified, and ``info["depth_bounds"]``: the smallest and largest depth bound in
        scene units (for the spiral render path).
    """
    frames, bounds = _parse(Path(root), cfg)
    scene = finish_scene(frames, cfg)
    scene.info["depth_bounds"] = [float(bounds.min()), float(bounds.max())]
    scene.info["ndc"] = frames.ndc
    return scene


def write_llff(root: str | Path, c2w: np.ndarray, focal: float | np.ndarray, bounds: np.ndarray,
               images: Sequence[np.ndarray], downscale: int = 1, names: Sequence[str] | None = None,
               overwrite: bool = False) -> Path:
    """Writes a dataset in LLFF's layout: ``root/poses_bounds.npy`` and the images as PNGs in ``root/images``
    (``root/images_N`` with ``downscale = N``: the file then describes images ``N`` times larger, as LLFF's
    ``images_N`` folders are shrunk copies).

    Args:
        root: output folder (created).
        c2w: ``(n, 3, 4)`` or ``(n, 4, 4)`` camera-to-world in the OpenGL convention; their world frame becomes the
            file's (what :meth:`Scene.to_dataset_frame` returns after loading).
        focal: focal length in pixels of the written images (scalar or ``(n,)``); LLFF has square pixels and the
            principal point at the image centre.
        bounds: ``(n, 2)`` or ``(2,)`` near / far depth of the content each camera sees (> 0).
        images: ``n`` uint8 ``(H, W, 3|4)`` images of one size.
        names: file names (default ``image000.png``, ...); sorted order must be camera order.
        overwrite: replace an existing ``poses_bounds.npy``.

    Returns:
        the path of ``poses_bounds.npy``.
    """
    from .images import write_image

    root = Path(root)
    c2w = np.asarray(c2w, dtype=np.float64)[:, :3, :4]
    n = len(c2w)
    if len(images) != n:
        raise ValueError(f"{n} cameras but {len(images)} images")
    height, width = images[0].shape[:2]
    if any(im.shape[:2] != (height, width) for im in images):
        raise ValueError("all images must have the same size")
    focal = np.broadcast_to(np.asarray(focal, dtype=np.float64), (n,))
    bounds = np.broadcast_to(np.asarray(bounds, dtype=np.float64), (n, 2))
    if not (bounds > 0).all():
        raise ValueError("depth bounds must be > 0")
    names = [f"image{i:03d}.png" for i in range(n)] if names is None else list(names)
    if len(names) != n or sorted(names) != names:
        raise ValueError("names must be n file names in sorted order (LLFF pairs rows and sorted files)")
    out = root / "poses_bounds.npy"
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists (pass overwrite=True to replace it)")
    hwf = np.stack([np.full(n, height * downscale), np.full(n, width * downscale), focal * downscale], axis=1)
    # OpenGL (right, up, back) -> LLFF (down, right, back).
    mats = np.concatenate([-c2w[:, :, 1:2], c2w[:, :, 0:1], c2w[:, :, 2:4], hwf[:, :, None]], axis=2)
    root.mkdir(parents=True, exist_ok=True)
    folder = root / ("images" if downscale == 1 else f"images_{downscale}")
    for name, image in zip(names, images):
        write_image(folder / name, np.asarray(image))
    np.save(out, np.concatenate([mats.reshape(n, 15), bounds], axis=1))
    return out
