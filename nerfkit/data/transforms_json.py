"""``transforms.json`` datasets: nerfstudio's (``ns-process-data``) and instant-ngp's (``colmap2nerf.py``).

Both flavours are one ``transforms.json`` in the dataset folder listing frames (``file_path`` relative to the
folder, ``transform_matrix`` a 4x4 camera-to-world in the OpenGL convention, nerfkit's own, so poses are taken
as they are) with intrinsics at the top level or per frame (a frame's keys override the top level's). A file
whose top level or any frame has ``camera_model`` is nerfstudio's (:func:`transforms_flavour`).

**nerfstudio** (read as nerfstudio's ``nerfstudio_dataparser.py`` does):

* ``camera_model``: ``PINHOLE``, ``OPENCV``, ``OPENCV_FISHEYE`` (and ``SIMPLE_PINHOLE``, ``SIMPLE_RADIAL``,
  ``RADIAL``, which nerfstudio treats like ``OPENCV``); no ``camera_model`` at all is nerfstudio's perspective
  default. The perspective models read ``k1..k4, p1, p2`` as nerfkit's ``OPENCV`` (radial
  ``1 + k1 r^2 + k2 r^4 + k3 r^6 + k4 r^8``), or ``PINHOLE`` when every coefficient is zero (the same rays,
  without the iterative undistortion); ``OPENCV_FISHEYE`` reads ``k1..k4``. ``distortion_params`` (a list
  ``[k1, k2, k3, k4, p1, p2]``, newer nerfstudio) is read too. A frame may carry its own ``camera_model``
  (``ns-process-data`` writes it per frame when COLMAP found several cameras).
* ``fl_x, fl_y, cx, cy, w, h`` are required (top level or per frame).
* frames are sorted by ``file_path`` as nerfstudio sorts them, so ``--data.hold-every N`` holds out the same
  images as nerfstudio's ``--eval-mode interval --eval-interval N``.
* ``train_filenames`` / ``val_filenames`` / ``test_filenames`` give the splits when present (matched to the
  frames' ``file_path`` as paths relative to the folder, as nerfstudio matches them); frames in no list are
  not loaded.
* ``--data.downscale N`` reads ``images_N/<file name>`` (and ``masks_N/<file name>``) when every frame has
  one, as nerfstudio's ``downscale_factor`` does; else the largest ``images_M`` with ``M`` dividing ``N``,
  shrinking the rest of the way; else the full images.
* ``mask_path`` per frame: ``0`` marks pixels to ignore.
* ``ply_file_path``: sparse points (x, y, z of an ASCII or binary PLY) in the file's frame, used for the scene
  box; a missing file is skipped with a warning, as nerfstudio skips it.
* the scene is placed by ``--data.normalize`` (cameras centred and scaled into ``[-1, 1]^3``, as nerfstudio's
  ``auto_orient_and_center_poses`` and ``auto_scale_poses`` do).

**The dataset frame** (what :meth:`Scene.to_dataset_frame` returns) of a nerfstudio file with
``applied_transform`` is the frame *before* that transform: the world frame of the reconstruction it was
converted from (COLMAP's, for ``ns-process-data``), with cameras in OpenGL axes. ``applied_transform`` (and
``applied_scale``) is what the converter already applied, so it becomes :attr:`Frames.transform`, as LLFF's
recentring does; nerfstudio's own ``dataparser_transform`` has the same meaning. A file without it (the
instant-ngp flavour always) has its own frame as the dataset frame. The transform is also kept in
``scene.info["applied_transform"]``.

**instant-ngp** (read as instant-ngp's ``nerf_loader.cu`` does):

* focal lengths from ``x_fov`` / ``y_fov`` (degrees), else ``fl_x`` / ``fl_y``, else ``camera_angle_x`` /
  ``camera_angle_y`` (radians); one axis given means square pixels; a frame's focal lengths replace the top
  level's as a whole.
* ``cx``, ``cy`` default to the image centre; ``w``, ``h`` default to the image file's size.
* ``k1, k2, p1, p2`` (and ``k3, k4``) make an ``OPENCV`` camera when any is non-zero, ``OPENCV_FISHEYE`` with
  ``is_fisheye`` (``k1..k4``). instant-ngp's own non-fisheye lens has only ``k1, k2, p1, p2`` (it stores
  ``p1, p2`` where ``k3, k4`` would go); nerfkit reads ``k3, k4`` as the polynomial terms they name.
* ``file_path`` without an extension: ``.png``, then ``.jpg``, then ``.jpeg`` is tried.
* the scene box is instant-ngp's: a point ``p`` of the file's frame sits at ``p * scale + offset`` in its unit
  cube (``scale`` 0.33 and ``offset`` 0.5 by default, or from ``aabb``) and the box is the cube of side
  ``aabb_scale`` (at most 128) centred at 0.5 there; so the lego scene with ``aabb_scale`` 1 gets
  ``[-1.52, 1.52]^3``. The file's frame is kept (no placement), so the box stays where instant-ngp puts it.
* splits: instant-ngp trains on every frame of ``transforms.json`` and evaluates on a separate file
  (``scripts/run.py --test_transforms``); nerfkit reads sibling ``transforms_val.json`` /
  ``transforms_test.json`` (each parsed like ``transforms.json``) as those splits when they exist, else holds
  out every ``--data.hold-every``-th frame (frames sorted by ``file_path``, in natural order, as instant-ngp
  sorts them).
* a per-frame ``mask_path`` (nerfstudio's key; instant-ngp ignores it) is read as in the nerfstudio flavour.

Not read: depth images, instant-ngp's ``dynamic_mask_*.png`` (non-zero marks pixels to ignore, the opposite of
``mask_path``), ``*.alpha.*`` images, rolling shutter / ``transform_matrix_end`` (the start pose is used),
``n_frames``, ``sharpness``, nerfstudio's ``orientation_override`` and ``fisheye_crop_radius``.

Writers (:func:`write_nerfstudio`, :func:`write_instant_ngp`) export a :class:`Scene` (cameras in its dataset
frame) or cameras and images, e.g. to convert any dataset nerfkit reads.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..camera_models import OPENCV, OPENCV_FISHEYE, PINHOLE
from ..cameras import N_DISTORTION
from .blender import read_json
from .normalize import transform_poses
from .frames import Frames, check_pose, finish_scene, hold_out_split, image_size, inside_root, shrunk_folder_factor
from .scene import DataError, Scene

if TYPE_CHECKING:
    from ..cameras import Cameras
    from .config import DataConfig

__all__ = ["transforms_flavour", "parse_transforms_json", "load_transforms_json", "write_nerfstudio",
           "write_instant_ngp", "read_ply_points", "instant_ngp_aabb", "NERFSTUDIO_CAMERA_MODELS",
           "NGP_SCALE", "NGP_OFFSET", "NGP_MAX_AABB_SCALE", "TRANSFORMS_FILE"]

TRANSFORMS_FILE = "transforms.json"

NERFSTUDIO_CAMERA_MODELS = ("PINHOLE", "OPENCV", "OPENCV_FISHEYE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL")
"""The ``camera_model`` values nerfkit reads (the last three are perspective models nerfstudio reads like
``OPENCV``); nerfstudio's panoramic and orthographic models (``EQUIRECTANGULAR``, ``OMNIDIRECTIONALSTEREO_*``,
``VR180_*``, ``ORTHOPHOTO``, ``FISHEYE624``) are refused."""

NGP_SCALE = 0.33
"""instant-ngp's default ``scale`` (NeRF-frame units to its unit cube)."""
NGP_OFFSET = (0.5, 0.5, 0.5)
"""instant-ngp's default ``offset``."""
NGP_MAX_AABB_SCALE = 128
"""The largest box instant-ngp uses (``2 ** (NERF_CASCADES - 1)``); larger ``aabb_scale`` values are clamped."""

_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
_SLOTS = {"k1": 0, "k2": 1, "k3": 2, "k4": 3, "p1": 6, "p2": 7}  # positions in nerfkit's (8,) vector
_PERSPECTIVE = ("PINHOLE", "OPENCV", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL")
_NGP_EXTENSIONS = (".png", ".jpg", ".jpeg")
_NGP_UNSUPPORTED_LENSES = ("ftheta_p0", "latlong", "equirectangular", "orthographic")
_SPLIT_KEYS = ("train", "val", "test")


# ---------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------


def transforms_flavour(path: str | Path) -> str:
    """``"nerfstudio"`` when the ``transforms.json`` at ``path`` (or in the folder ``path``) has a
    ``camera_model`` at its top level or in any frame, else ``"instant-ngp"``; a :class:`DataError` naming the
    file when it is missing or not a JSON object."""
    path = Path(path)
    if path.is_dir():
        path = path / TRANSFORMS_FILE
    meta = read_json(path)
    if "camera_model" in meta:
        return "nerfstudio"
    frames = meta.get("frames")
    if isinstance(frames, list) and any(isinstance(f, dict) and "camera_model" in f for f in frames):
        return "nerfstudio"
    return "instant-ngp"


def _number(value, where: str, key: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: '{key}' is not a number: {value!r}") from None
    if not math.isfinite(out):
        raise DataError(f"{where}: '{key}' is not finite: {value!r}")
    return out


def _size(value, where: str, key: str) -> int:
    out = _number(value, where, key)
    if out <= 0 or out != round(out):
        raise DataError(f"{where}: '{key}' must be a positive whole number of pixels, got {value!r}")
    return int(round(out))


def _lookup(frame: dict, meta: dict, key: str):
    """The frame's value of ``key``, else the top level's, else ``None``."""
    if key in frame:
        return frame[key]
    return meta.get(key)


def _frame_list(path: Path, meta: dict) -> list[dict]:
    frames = meta.get("frames")
    if frames is None:
        raise DataError(f"{path} has no 'frames'")
    if not isinstance(frames, list):
        raise DataError(f"{path}: 'frames' must be a list, found {type(frames).__name__}")
    if not frames:
        raise DataError(f"{path}: 'frames' is empty (no images)")
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise DataError(f"{path}: frame {i} is not a JSON object")
        if "file_path" not in frame:
            raise DataError(f"{path}: frame {i} has no 'file_path'")
        if not isinstance(frame["file_path"], str) or not frame["file_path"].strip():
            raise DataError(f"{path}: frame {i} 'file_path' must be a non-empty string, got {frame['file_path']!r}")
    return frames


def _relative(file_path: str) -> str:
    """A ``file_path`` as a normalised relative POSIX path (Windows separators accepted, ``./`` dropped)."""
    return str(PurePosixPath(file_path.replace("\\", "/")))


def _pose(frame: dict, where: str) -> np.ndarray:
    key = "transform_matrix" if "transform_matrix" in frame else "transform_matrix_start"
    if key not in frame:
        raise DataError(f"{where} has no 'transform_matrix'")
    return check_pose(frame[key], f"{where} '{key}'")


def _image_file(root: Path, rel: str, where: str) -> Path:
    """The image a ``file_path`` names (trying image extensions when it has none), which must exist."""
    path = inside_root(root, rel, f"{where} file_path")
    if not path.is_file() and path.suffix == "":
        for ext in _NGP_EXTENSIONS:
            candidate = path.parent / (path.name + ext)
            if candidate.is_file():
                return candidate
        raise DataError(f"{where}: image file not found: {path} (also tried {', '.join(_NGP_EXTENSIONS)})")
    if not path.is_file():
        raise DataError(f"{where}: image file not found: {path}")
    return path


def _mask_file(root: Path, frame: dict, where: str) -> Path | None:
    if "mask_path" not in frame:
        return None
    rel = frame["mask_path"]
    if not isinstance(rel, str) or not rel.strip():
        raise DataError(f"{where}: 'mask_path' must be a non-empty string, got {rel!r}")
    path = inside_root(root, _relative(rel), f"{where} mask_path")
    if not path.is_file():
        raise DataError(f"{where}: mask file not found: {path}")
    return path


def _natural_key(text: str) -> list:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text) if part]


def _distortion(frame: dict, meta: dict, where: str) -> dict[str, float]:
    """``k1..k4, p1, p2``: each from the frame (its key, then its ``distortion_params``), else the top level,
    else 0."""
    out = {}
    for j, key in enumerate(_DISTORTION_KEYS):
        value = 0.0
        for level, name in ((frame, "frame"), (meta, "top level")):
            if key in level:
                value = _number(level[key], where, key)
                break
            params = level.get("distortion_params")
            if params is not None:
                if not isinstance(params, list) or len(params) < 6:
                    raise DataError(f"{where}: 'distortion_params' ({name}) must be a list [k1, k2, k3, k4, p1, "
                                    f"p2], got {params!r}")
                value = _number(params[j], where, f"distortion_params[{j}]")
                break
        out[key] = value
    return out


def _distortion_vector(coeffs: dict[str, float], keys: Sequence[str]) -> np.ndarray:
    vec = np.zeros(N_DISTORTION)
    for key in keys:
        vec[_SLOTS[key]] = coeffs[key]
    return vec


def _transform4(value, path: Path, key: str) -> np.ndarray:
    """A 3x4 / 4x4 similarity (rotation times a positive uniform scale, then a translation) as ``(4, 4)``."""
    try:
        mat = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{path}: '{key}' is not a matrix: {err}") from None
    if mat.shape not in ((3, 4), (4, 4)) or not np.isfinite(mat).all():
        raise DataError(f"{path}: '{key}' must be a finite 3x4 or 4x4 matrix, got shape {mat.shape}")
    if mat.shape == (4, 4) and not np.allclose(mat[3], [0.0, 0.0, 0.0, 1.0]):
        raise DataError(f"{path}: '{key}' has a last row {mat[3].tolist()}, expected [0, 0, 0, 1]")
    out = np.eye(4)
    out[:3] = mat[:3]
    det = np.linalg.det(out[:3, :3])
    scale = np.cbrt(det) if det > 0 else 0.0
    if scale <= 0 or not np.allclose(out[:3, :3] @ out[:3, :3].T, scale**2 * np.eye(3), atol=1e-4 * scale**2):
        raise DataError(f"{path}: '{key}' is not a rotation with a uniform positive scale (nerfkit needs a "
                        "similarity to map its scene back to the dataset frame)")
    return out


def _splits_from_lists(path: Path, meta: dict, root: Path, keys: list[str]) -> dict[str, np.ndarray] | None:
    """Indices of nerfstudio's ``{split}_filenames`` lists (``keys``: the frames' normalised relative paths)."""
    present = [s for s in _SPLIT_KEYS if f"{s}_filenames" in meta]
    if not present:
        return None
    if "train" not in present:
        raise DataError(f"{path} has {', '.join(f'{s}_filenames' for s in present)} but no 'train_filenames'")
    index = {key: i for i, key in enumerate(keys)}
    by_name: dict[str, list[str]] = {}
    for key in keys:
        by_name.setdefault(PurePosixPath(key).name, []).append(key)
    splits = {}
    for split in present:
        names = meta[f"{split}_filenames"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError(f"{path}: '{split}_filenames' must be a list of file names")
        idx = []
        for name in names:
            key = _relative(name)
            if key not in index:
                near = by_name.get(PurePosixPath(key).name)
                hint = f" (a frame has file_path {near[0]!r}; names are paths relative to {root})" if near else ""
                raise DataError(f"{path}: '{split}_filenames' lists {name!r}, which is not the file_path of any "
                                f"frame{hint}")
            idx.append(index[key])
        splits[split] = np.array(sorted(set(idx)), dtype=np.int64)
    if len(splits["train"]) == 0:
        raise DataError(f"{path}: 'train_filenames' is empty")
    return splits


def _downscale_folder(root: Path, names: list[str], mask_names: list[str], downscale: int) -> int:
    """The largest ``N`` dividing ``downscale`` for which ``images_N`` (and ``masks_N``) hold every file."""
    return shrunk_folder_factor(root, downscale, lambda n: all((root / f"images_{n}" / name).is_file()
                                                               for name in names)
                                and all((root / f"masks_{n}" / name).is_file() for name in mask_names))


def _parse_nerfstudio(root: Path, path: Path, meta: dict, cfg: "DataConfig") -> Frames:
    frames = _frame_list(path, meta)
    rels = [_relative(f["file_path"]) for f in frames]
    order = sorted(range(len(frames)), key=lambda i: PurePosixPath(rels[i]).parts)   # nerfstudio sorts by path
    frames, rels = [frames[i] for i in order], [rels[i] for i in order]
    where = [f"{path}: frame {order[k]} ({rels[k]})" for k in range(len(frames))]
    for rel, w in zip(rels, where):   # a path leaving the folder is refused even on frames no split lists
        inside_root(root, rel, f"{w} file_path")

    splits = _splits_from_lists(path, meta, root, rels)
    if splits is None:
        splits = hold_out_split(len(frames), cfg.hold_every)
    else:  # keep only the frames some split lists
        used = np.unique(np.concatenate(list(splits.values())))
        remap = np.full(len(frames), -1)
        remap[used] = np.arange(len(used))
        splits = {s: remap[idx] for s, idx in splits.items()}
        frames, rels, where = [frames[i] for i in used], [rels[i] for i in used], [where[i] for i in used]
    n = len(frames)

    top_model = meta.get("camera_model")
    c2w, intr, sizes = np.empty((n, 3, 4)), np.empty((n, 4)), np.empty((n, 2), dtype=np.int64)
    ctype, dist = np.zeros(n, dtype=np.int64), np.zeros((n, N_DISTORTION))
    paths, masks = [], []
    for i, frame in enumerate(frames):
        w = where[i]
        c2w[i] = _pose(frame, w)
        for j, key in enumerate(("fl_x", "fl_y", "cx", "cy")):
            value = _lookup(frame, meta, key)
            if value is None:
                raise DataError(f"{w} has no '{key}' (nor has the top level of {path.name}): nerfstudio needs "
                                "fl_x, fl_y, cx, cy, w, h")
            intr[i, j] = _number(value, w, key)
        for j, key in enumerate(("w", "h")):
            value = _lookup(frame, meta, key)
            if value is None:
                raise DataError(f"{w} has no '{key}' (nor has the top level of {path.name}): nerfstudio needs "
                                "fl_x, fl_y, cx, cy, w, h")
            sizes[i, j] = _size(value, w, key)
        model = frame.get("camera_model", top_model)
        if model is not None and (not isinstance(model, str) or model.upper() not in NERFSTUDIO_CAMERA_MODELS):
            raise DataError(f"{w}: camera_model {model!r} is not supported (nerfkit reads "
                            f"{', '.join(NERFSTUDIO_CAMERA_MODELS)})")
        model = "PINHOLE" if model is None else model.upper()
        coeffs = _distortion(frame, meta, w)
        if model == "OPENCV_FISHEYE":
            ctype[i], dist[i] = OPENCV_FISHEYE, _distortion_vector(coeffs, ("k1", "k2", "k3", "k4"))
        elif any(coeffs.values()):
            ctype[i], dist[i] = OPENCV, _distortion_vector(coeffs, _DISTORTION_KEYS)
        paths.append(_image_file(root, rels[i], w))
        masks.append(_mask_file(root, frame, w) if cfg.masks else None)

    # --data.downscale: nerfstudio's images_N / masks_N folders hold shrunk copies under the same file names.
    uniform = bool((sizes == sizes[0]).all())   # (else finish_scene reports the differing sizes)
    folder = _downscale_folder(root, [p.name for p in paths], [m.name for m in masks if m is not None],
                               cfg.downscale) if cfg.downscale > 1 and uniform else 1
    if folder > 1:
        paths = [inside_root(root, f"images_{folder}/{p.name}", w) for p, w in zip(paths, where)]
        masks = [None if m is None else inside_root(root, f"masks_{folder}/{m.name}", w)
                 for m, w in zip(masks, where)]
        file_w, file_h = image_size(paths[0])
        want_w, want_h = sizes[0] / folder
        if abs(file_w - want_w) >= 1 or abs(file_h - want_h) >= 1:
            raise DataError(f"{paths[0]} is {file_w}x{file_h} but {path} gives its camera as {sizes[0, 0]}x"
                            f"{sizes[0, 1]}, which shrunk {folder} times is {want_w:g}x{want_h:g}")
        sx, sy = file_w / sizes[:, 0], file_h / sizes[:, 1]
        intr *= np.stack([sx, sy, sx, sy], axis=1)
        sizes[:] = (file_w, file_h)

    points = None
    if "ply_file_path" in meta:
        ply = meta["ply_file_path"]
        if not isinstance(ply, str) or not ply.strip():
            raise DataError(f"{path}: 'ply_file_path' must be a file name, got {ply!r}")
        ply_path = inside_root(root, _relative(ply), f"{path}: ply_file_path")
        if ply_path.is_file():
            points = read_ply_points(ply_path)
        else:
            warnings.warn(f"{path}: ply_file_path {ply!r} not found; loading without sparse points", stacklevel=3)

    transform = np.eye(4)
    if "applied_transform" in meta:
        transform = _transform4(meta["applied_transform"], path, "applied_transform")
    if "applied_scale" in meta:
        scale = _number(meta["applied_scale"], str(path), "applied_scale")
        if scale <= 0:
            raise DataError(f"{path}: 'applied_scale' must be > 0, got {scale}")
        transform = np.diag([scale, scale, scale, 1.0]) @ transform

    return Frames(source=path, root=root, image_paths=paths, c2w=c2w, fx=intr[:, 0], fy=intr[:, 1], cx=intr[:, 2],
                  cy=intr[:, 3], width=sizes[:, 0].copy(), height=sizes[:, 1].copy(), splits=splits,
                  camera_type=ctype, distortion=dist, mask_paths=masks if any(m is not None for m in masks) else None,
                  points=points, transform=transform, normalize=True, downscale=cfg.downscale // folder,
                  format="nerfstudio")


def _ngp_focal(level: dict, width: int, height: int, where: str) -> tuple[float, float] | None:
    """instant-ngp's ``read_focal_length`` on one level: ``{x,y}_fov`` (degrees), ``fl_{x,y}``,
    ``camera_angle_{x,y}`` (radians); ``None`` when the level gives none."""
    def axis(name: str, res: int) -> float | None:
        if f"{name}_fov" in level:
            deg = _number(level[f"{name}_fov"], where, f"{name}_fov")
            if not 0 < deg < 180:
                raise DataError(f"{where}: '{name}_fov' = {deg} is not a field of view in (0, 180) degrees")
            return 0.5 * res / math.tan(0.5 * math.radians(deg))
        if f"fl_{name}" in level:
            return _number(level[f"fl_{name}"], where, f"fl_{name}")
        if f"camera_angle_{name}" in level:
            rad = _number(level[f"camera_angle_{name}"], where, f"camera_angle_{name}")
            if not 0 < rad < math.pi:
                raise DataError(f"{where}: 'camera_angle_{name}' = {rad} is not a field of view in (0, pi) radians")
            return 0.5 * res / math.tan(0.5 * rad)
        return None

    fx, fy = axis("x", width), axis("y", height)
    if fx is None and fy is None:
        return None
    return (fx if fx is not None else fy), (fy if fy is not None else fx)


def _parse_ngp_file(root: Path, path: Path, cfg: "DataConfig") -> dict:
    """One instant-ngp json: per-frame poses, intrinsics, lens, files (frames in natural ``file_path`` order)."""
    meta = read_json(path)
    frames = _frame_list(path, meta)
    rels = [_relative(f["file_path"]) for f in frames]
    order = sorted(range(len(frames)), key=lambda i: _natural_key(rels[i]))
    out = {"c2w": [], "intr": [], "size": [], "ctype": [], "dist": [], "paths": [], "masks": [], "meta": meta}
    file_size = None
    for i in order:
        frame, w = frames[i], f"{path}: frame {i} ({rels[i]})"
        out["c2w"].append(_pose(frame, w))
        image = _image_file(root, rels[i], w)
        out["paths"].append(image)
        out["masks"].append(_mask_file(root, frame, w) if cfg.masks else None)
        for level, name in ((meta, f"{path} (top level)"), (frame, w)):
            for key in _NGP_UNSUPPORTED_LENSES:
                if key in level:
                    raise DataError(f"{name}: the '{key}' lens of instant-ngp is not supported (nerfkit reads "
                                    "perspective cameras with k1, k2, k3, k4, p1, p2, or is_fisheye)")
        size = []
        for key in ("w", "h"):
            value = _lookup(frame, meta, key)
            if value is None:
                if file_size is None:
                    file_size = image_size(image)
                size.append(file_size[len(size)])
            else:
                size.append(_size(value, w, key))
        width, height = size
        focal = _ngp_focal(frame, width, height, w) or _ngp_focal(meta, width, height, f"{path} (top level)")
        if focal is None:
            raise DataError(f"{w}: no focal length (give camera_angle_x, fl_x or x_fov, at the top level or per "
                            "frame)")
        cx, cy = (_lookup(frame, meta, key) for key in ("cx", "cy"))
        cx = width / 2.0 if cx is None else _number(cx, w, "cx")
        cy = height / 2.0 if cy is None else _number(cy, w, "cy")
        coeffs = {key: _number(v, w, key) for key in _DISTORTION_KEYS
                  if (v := _lookup(frame, meta, key)) is not None}
        coeffs = {key: coeffs.get(key, 0.0) for key in _DISTORTION_KEYS}
        fisheye = bool(_lookup(frame, meta, "is_fisheye") or False)
        if not any(coeffs.values()):   # instant-ngp: a lens with all-zero parameters is a pinhole
            out["ctype"].append(PINHOLE)
            out["dist"].append(np.zeros(N_DISTORTION))
        elif fisheye:
            out["ctype"].append(OPENCV_FISHEYE)
            out["dist"].append(_distortion_vector(coeffs, ("k1", "k2", "k3", "k4")))
        else:
            out["ctype"].append(OPENCV)
            out["dist"].append(_distortion_vector(coeffs, _DISTORTION_KEYS))
        out["intr"].append((focal[0], focal[1], cx, cy))
        out["size"].append((width, height))
    return out


def instant_ngp_aabb(meta: dict, where: str = "transforms.json") -> np.ndarray:
    """The scene box ``(6,)`` instant-ngp uses for a ``transforms.json`` top level ``meta``, in the file's
    frame: the cube of side ``aabb_scale`` (default 1, at most :data:`NGP_MAX_AABB_SCALE`) centred at 0.5 in
    instant-ngp's unit cube, mapped back through ``p -> p * scale + offset`` (``scale`` and ``offset`` from the
    file, or from its ``aabb`` as instant-ngp derives them)."""
    scale = _number(meta.get("scale", NGP_SCALE), where, "scale")
    raw = meta.get("offset", list(NGP_OFFSET))
    if isinstance(raw, list):
        if len(raw) != 3:
            raise DataError(f"{where}: 'offset' must be a number or a list of 3, got {raw!r}")
        offset = np.array([_number(v, where, "offset") for v in raw])
    else:
        offset = np.full(3, _number(raw, where, "offset"))
    if "aabb" in meta:
        try:
            box = np.asarray(meta["aabb"], dtype=np.float64)
        except (TypeError, ValueError):
            box = np.zeros(0)
        if box.shape != (2, 3) or not np.isfinite(box).all():
            raise DataError(f"{where}: 'aabb' must be [[xmin, ymin, zmin], [xmax, ymax, zmax]], got {meta['aabb']!r}")
        scale = 1.0 / max(float(np.abs(box[1] - box[0]).max()), 1e-6)
        offset = 0.5 - scale * (box[0] + box[1]) / 2.0
    if scale <= 0:
        raise DataError(f"{where}: 'scale' must be > 0, got {scale}")
    aabb_scale = _number(meta.get("aabb_scale", 1), where, "aabb_scale")
    if aabb_scale <= 0:
        raise DataError(f"{where}: 'aabb_scale' must be > 0, got {aabb_scale}")
    half = 0.5 * min(aabb_scale, NGP_MAX_AABB_SCALE)
    return np.concatenate([(0.5 - half - offset) / scale, (0.5 + half - offset) / scale])


def _parse_instant_ngp(root: Path, path: Path, cfg: "DataConfig") -> Frames:
    parts = {"train": _parse_ngp_file(root, path, cfg)}
    for split in ("val", "test"):
        sibling = root / f"transforms_{split}.json"
        if sibling.is_file():
            parts[split] = _parse_ngp_file(root, sibling, cfg)
    if len(parts) > 1:
        splits, start = {}, 0
        for split, part in parts.items():
            splits[split] = np.arange(start, start + len(part["paths"]))
            start += len(part["paths"])
    else:
        splits = hold_out_split(len(parts["train"]["paths"]), cfg.hold_every)

    def cat(key):
        return [v for part in parts.values() for v in part[key]]

    intr, size = np.array(cat("intr"), dtype=np.float64), np.array(cat("size"), dtype=np.int64)
    masks = cat("masks")
    return Frames(source=path, root=root, image_paths=cat("paths"), c2w=np.stack(cat("c2w")), fx=intr[:, 0],
                  fy=intr[:, 1], cx=intr[:, 2], cy=intr[:, 3], width=size[:, 0].copy(), height=size[:, 1].copy(),
                  splits=splits, camera_type=np.array(cat("ctype"), dtype=np.int64), distortion=np.stack(cat("dist")),
                  mask_paths=masks if any(m is not None for m in masks) else None,
                  aabb=instant_ngp_aabb(parts["train"]["meta"], str(path)), normalize=False,
                  downscale=cfg.downscale, format="instant-ngp")


def parse_transforms_json(root: str | Path, cfg: "DataConfig | None" = None, flavour: str | None = None) -> Frames:
    """The cameras of the ``transforms.json`` dataset in ``root`` (see the module docstring).

    Args:
        root: the dataset folder.
        cfg: data settings (``downscale``, ``masks``, ``hold_every``); default :class:`DataConfig` values.
        flavour: ``"nerfstudio"`` or ``"instant-ngp"``; ``None`` tells it from the file
            (:func:`transforms_flavour`).
    """
    from .config import DataConfig

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}")
    cfg = cfg if cfg is not None else DataConfig(path=root, cache_dir=None)  # type: ignore[arg-type]
    path = root / TRANSFORMS_FILE
    if not path.is_file():
        raise DataError(f"{root} is not a transforms.json dataset: {TRANSFORMS_FILE} not found")
    flavour = transforms_flavour(path) if flavour is None else flavour
    if flavour == "nerfstudio":
        return _parse_nerfstudio(root, path, read_json(path), cfg)
    if flavour == "instant-ngp":
        return _parse_instant_ngp(root, path, cfg)
    raise DataError(f"unknown transforms.json flavour {flavour!r} (nerfstudio or instant-ngp)")


def load_transforms_json(root: str | Path, cfg: "DataConfig | None" = None, flavour: str | None = None) -> Scene:
    """Loads a nerfstudio or instant-ngp ``transforms.json`` dataset (:func:`parse_transforms_json`, then
    :func:`~nerfkit.data.frames.finish_scene`). ``scene.info`` gains ``"applied_transform"`` (the ``(4, 4)``
    dataset frame -> file frame transform, identity when the file has none)."""
    from .config import DataConfig

    cfg = cfg if cfg is not None else DataConfig(path=Path(root), cache_dir=None)  # type: ignore[arg-type]
    frames = parse_transforms_json(root, cfg, flavour)
    scene = finish_scene(frames, cfg)
    scene.info["applied_transform"] = frames.transform.tolist()
    return scene


# ---------------------------------------------------------------------------------------------------------------
# PLY points
# ---------------------------------------------------------------------------------------------------------------

_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def read_ply_points(path: str | Path) -> np.ndarray:
    """The ``x, y, z`` of a PLY file's ``vertex`` element as ``(m, 3)`` float64 (ASCII or binary, either byte
    order; rows with non-finite values are dropped). A :class:`DataError` naming the file when it cannot be
    read."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from err
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise DataError(f"{path} is not a PLY file (no 'ply' ... 'end_header' header)")
    body_start = data.index(b"\n", end) + 1 if b"\n" in data[end:] else len(data)
    fmt, elements = None, []          # elements: [name, count, [(name, type | ("list", count_t, item_t))]]
    for line in data[:end].decode("ascii", errors="replace").splitlines()[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        try:
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                elements.append([words[1], int(words[2]), []])
            elif words[0] == "property" and words[1] == "list":
                elements[-1][2].append((words[4], ("list", _PLY_TYPES[words[2]], _PLY_TYPES[words[3]])))
            elif words[0] == "property":
                elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
        except (IndexError, KeyError, ValueError):
            raise DataError(f"{path}: malformed PLY header line {line!r}") from None
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise DataError(f"{path}: unknown PLY format {fmt!r}")
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise DataError(f"{path} has no 'vertex' element")
    vertex = elements[names.index("vertex")]
    props = [p[0] for p in vertex[2]]
    if not {"x", "y", "z"} <= set(props):
        raise DataError(f"{path}: the vertex element has no x, y, z properties (it has {', '.join(props)})")
    if any(isinstance(t, tuple) for _, t in vertex[2]):
        raise DataError(f"{path}: vertex elements with list properties are not supported")
    count = vertex[1]
    try:
        if fmt == "ascii":
            lines = data[body_start:].decode("ascii").splitlines()
            skip = sum(e[1] for e in elements[: names.index("vertex")])
            rows = [line.split() for line in lines[skip: skip + count]]
            table = np.array(rows, dtype=np.float64).reshape(count, len(props))
            xyz = table[:, [props.index(a) for a in "xyz"]]
        else:
            order = "<" if fmt == "binary_little_endian" else ">"
            offset = body_start
            for name, n, eprops in elements[: names.index("vertex")]:
                if any(isinstance(t, tuple) for _, t in eprops):
                    raise DataError(f"{path}: element {name!r} with list properties comes before 'vertex' "
                                    "(not supported)")
                offset += n * np.dtype([(p, order + t) for p, t in eprops]).itemsize
            dtype = np.dtype([(p, order + t) for p, t in vertex[2]])
            table = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
            xyz = np.stack([table[a].astype(np.float64) for a in "xyz"], axis=1)
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read {count} vertices: {err}") from None
    return xyz[np.isfinite(xyz).all(axis=1)]


def _write_ply(path: Path, points: np.ndarray) -> None:
    lines = ["ply", "format ascii 1.0", f"element vertex {len(points)}", "property float x", "property float y",
             "property float z", "end_header"]
    lines += [f"{x:.8g} {y:.8g} {z:.8g}" for x, y, z in points]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")


# ---------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------


def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _gather(scene: Scene | None, cameras, images, masks, splits) -> dict:
    """Flat arrays of everything a writer needs, from a scene (its splits in order, cameras in its dataset
    frame) or from cameras + images."""
    if scene is not None:
        if cameras is not None or images is not None:
            raise ValueError("give a scene, or cameras and images, not both")
        order = [s for s in _SPLIT_KEYS if s in scene.splits] + [s for s in scene.splits if s not in _SPLIT_KEYS]
        parts = [scene.splits[s] for s in order]
        c2w = np.concatenate([_numpy(scene.to_dataset_frame(p.cameras.c2w.double())) for p in parts])
        cams = [p.cameras for p in parts]
        imgs = [im for p in parts for im in _numpy(p.images)]
        msks = []
        for p in parts:
            msks += [None] * len(p) if p.masks is None else list(_numpy(p.masks))
        splits, start = {}, 0
        for s, p in zip(order, parts):
            splits[s] = np.arange(start, start + len(p))
            start += len(p)

        def cat(attr):
            return np.concatenate([_numpy(getattr(c, attr)).astype(np.float64) for c in cams])

        out = {"fx": cat("fx"), "fy": cat("fy"), "cx": cat("cx"), "cy": cat("cy"), "dist": cat("distortion"),
               "ctype": np.concatenate([_numpy(c.camera_type) for c in cams]).astype(np.int64),
               "width": cams[0].width, "height": cams[0].height}
    else:
        if cameras is None or images is None:
            raise ValueError("give a scene, or cameras and images")
        c2w = _numpy(cameras.c2w).astype(np.float64)[:, :3, :4]
        imgs = list(_numpy(images)) if not isinstance(images, (list, tuple)) else [_numpy(i) for i in images]
        n = len(c2w)
        if len(imgs) != n:
            raise ValueError(f"{n} cameras but {len(imgs)} images")
        msks = [None] * n if masks is None else [None if m is None else _numpy(m) for m in masks]
        if len(msks) != n:
            raise ValueError(f"{n} cameras but {len(msks)} masks")
        splits = {"train": np.arange(n)} if splits is None else {k: np.asarray(v, dtype=np.int64)
                                                                  for k, v in splits.items()}
        out = {a: _numpy(getattr(cameras, a)).astype(np.float64) for a in ("fx", "fy", "cx", "cy")}
        out.update(dist=_numpy(cameras.distortion).astype(np.float64),
                   ctype=_numpy(cameras.camera_type).astype(np.int64), width=cameras.width, height=cameras.height)
    for im in imgs:
        if im.shape[:2] != (out["height"], out["width"]):
            raise ValueError(f"an image is {im.shape[1]}x{im.shape[0]} but the cameras are "
                             f"{out['width']}x{out['height']}")
    if "train" not in splits:
        raise ValueError("splits must include 'train'")
    out.update(c2w=c2w, images=imgs, masks=msks, splits=splits)
    return out


def _write_files(root: Path, data: dict, overwrite: bool) -> tuple[list[str], list[str | None]]:
    from .images import write_image

    root.mkdir(parents=True, exist_ok=True)
    for name in (TRANSFORMS_FILE, "transforms_val.json", "transforms_test.json"):
        if (root / name).exists() and not overwrite:
            raise FileExistsError(f"{root / name} exists (pass overwrite=True to replace it)")
    names, mask_names = [], []
    for i, (image, mask) in enumerate(zip(data["images"], data["masks"])):
        name = f"images/frame_{i:05d}.png"
        write_image(root / name, np.asarray(image))
        names.append(name)
        if mask is None:
            mask_names.append(None)
            continue
        mask_name = f"masks/frame_{i:05d}.png"
        write_image(root / mask_name, np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8))
        mask_names.append(mask_name)
    return names, mask_names


def _shared(values: list[dict]) -> dict:
    """The key/value pairs every dict of ``values`` has identically."""
    first = values[0]
    return {k: v for k, v in first.items() if all(k in d and d[k] == v for d in values[1:])}


def _matrix(c2w: np.ndarray) -> list:
    return np.concatenate([c2w, [[0.0, 0.0, 0.0, 1.0]]]).tolist()


def write_nerfstudio(root: str | Path, scene: Scene | None = None, *, cameras: "Cameras | None" = None,
                     images=None, masks=None, splits: dict[str, Sequence[int]] | None = None,
                     points: np.ndarray | None = None, applied_transform: np.ndarray | None = None,
                     overwrite: bool = False) -> Path:
    """Writes a dataset in nerfstudio's layout: ``root/transforms.json``, ``images/frame_00000.png``, ...,
    ``masks/frame_00000.png`` (0/255) for images with masks, ``sparse_pc.ply`` with ``points``.

    Intrinsics, ``camera_model`` and distortion go to the top level when every frame shares them, else into
    each frame. The splits are written as ``{split}_filenames`` lists.

    Args:
        root: output folder (created).
        scene: a scene to export: every split in order (train, val, test), cameras in its dataset frame
            (:meth:`Scene.to_dataset_frame`), images at their loaded size, masks when the split has them.
        cameras, images, masks, splits: instead of a scene: ``n`` cameras (their world is the dataset frame),
            ``n`` uint8 ``(H, W, 3|4)`` images, optional ``n`` masks (``(H, W)``, 0 = ignore, or ``None``
            entries), optional ``{split: indices}`` (default: all ``train``).
        points: optional ``(m, 3)`` sparse points in the dataset frame.
        applied_transform: optional ``(3|4, 4)`` rotation (times a uniform scale) + translation recorded as
            nerfstudio's ``applied_transform``: poses and points are written moved by it, so loading gives the
            cameras back in the frame they were given in.
        overwrite: replace an existing ``transforms.json``.

    Returns:
        the path of ``transforms.json``.

    Raises:
        ValueError: a lens nerfstudio cannot describe (nerfkit's ``FULL_OPENCV`` or ``FOV``), mismatched inputs.
    """
    root = Path(root)
    data = _gather(scene, cameras, images, masks, splits)
    c2w = data["c2w"]
    transform = None
    if applied_transform is not None:
        transform = _transform4(applied_transform, root / TRANSFORMS_FILE, "applied_transform")
        c2w = transform_poses(transform, c2w)
    per_frame = []
    for i in range(len(c2w)):
        t = int(data["ctype"][i])
        d = data["dist"][i]
        entry = {"fl_x": float(data["fx"][i]), "fl_y": float(data["fy"][i]), "cx": float(data["cx"][i]),
                 "cy": float(data["cy"][i]), "w": int(data["width"]), "h": int(data["height"])}
        if t == PINHOLE:
            entry["camera_model"] = "PINHOLE"
        elif t == OPENCV:
            entry["camera_model"] = "OPENCV"
            entry.update({k: float(d[_SLOTS[k]]) for k in _DISTORTION_KEYS})
        elif t == OPENCV_FISHEYE:
            entry["camera_model"] = "OPENCV_FISHEYE"
            entry.update({k: float(d[_SLOTS[k]]) for k in ("k1", "k2", "k3", "k4")})
        else:
            raise ValueError(f"camera {i} has lens type {t}, which nerfstudio cannot describe (it reads PINHOLE, "
                             "OPENCV and OPENCV_FISHEYE)")
        per_frame.append(entry)
    names, mask_names = _write_files(root, data, overwrite)
    shared = _shared(per_frame)
    meta: dict = dict(shared)
    frames = []
    for i, entry in enumerate(per_frame):
        frame = {"file_path": names[i], "transform_matrix": _matrix(c2w[i])}
        frame.update({k: v for k, v in entry.items() if k not in shared})
        if mask_names[i] is not None:
            frame["mask_path"] = mask_names[i]
        frames.append(frame)
    meta["frames"] = frames
    for split in _SPLIT_KEYS:
        if split in data["splits"]:
            meta[f"{split}_filenames"] = [names[i] for i in data["splits"][split]]
    if transform is not None:
        meta["applied_transform"] = transform[:3].tolist()
    if points is not None:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if transform is not None:
            pts = pts @ transform[:3, :3].T + transform[:3, 3]
        _write_ply(root / "sparse_pc.ply", pts)
        meta["ply_file_path"] = "sparse_pc.ply"
    out = root / TRANSFORMS_FILE
    out.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out


def _ngp_box_params(aabb: np.ndarray, scale: float | None) -> tuple[float, list[float], int]:
    """``scale``, ``offset``, ``aabb_scale`` whose instant-ngp box is the smallest power-of-two cube (in units of
    ``1 / scale``) centred on ``aabb`` that holds it."""
    lo, hi = aabb[:3], aabb[3:]
    side = float((hi - lo).max())
    scale = NGP_SCALE if scale is None else float(scale)
    if side * scale > NGP_MAX_AABB_SCALE:
        scale = NGP_MAX_AABB_SCALE / side
    aabb_scale = 1
    while aabb_scale < side * scale * (1 - 1e-9) and aabb_scale < NGP_MAX_AABB_SCALE:
        aabb_scale *= 2
    offset = (0.5 - scale * (lo + hi) / 2.0).tolist()
    return scale, offset, aabb_scale


def write_instant_ngp(root: str | Path, scene: Scene | None = None, *, cameras: "Cameras | None" = None,
                      images=None, masks=None, splits: dict[str, Sequence[int]] | None = None,
                      aabb: Sequence[float] | None = None, scale: float | None = None,
                      overwrite: bool = False) -> Path:
    """Writes a dataset in instant-ngp's layout: ``root/transforms.json`` with the training frames, and
    ``transforms_val.json`` / ``transforms_test.json`` for the other splits (what :func:`load_transforms_json`
    reads back as splits; give instant-ngp's ``run.py`` the test file as ``--test_transforms``). Images go to
    ``images/frame_00000.png``, ...; masks (nerfkit extension, instant-ngp ignores them) to ``masks/`` with a
    per-frame ``mask_path``.

    Intrinsics (``fl_x, fl_y, cx, cy, w, h, camera_angle_x, camera_angle_y``) and the lens (``k1, k2, p1, p2``;
    ``is_fisheye`` with ``k1..k4``) go to the top level when every frame of a file shares them, else per frame.

    Args:
        root: output folder (created).
        scene: a scene to export (cameras in its dataset frame, its box mapped there), or:
        cameras, images, masks, splits: ``n`` cameras (their world is the dataset frame), ``n`` uint8 images,
            optional masks, optional ``{"train"|"val"|"test": indices}`` (default: all ``train``).
        aabb: ``(6,)`` box to encode in the dataset frame (default: the scene's, else the cameras' box); written
            as ``scale``, ``offset`` and the smallest power-of-two ``aabb_scale`` whose box holds it.
        scale: instant-ngp's ``scale`` (default :data:`NGP_SCALE`, lowered when the box would exceed
            ``aabb_scale`` 128).
        overwrite: replace existing files.

    Raises:
        ValueError: a lens instant-ngp cannot describe (``FULL_OPENCV``, ``FOV``, ``OPENCV`` with ``k3`` or
            ``k4``), splits other than train/val/test, mismatched inputs.
    """
    root = Path(root)
    data = _gather(scene, cameras, images, masks, splits)
    unknown = set(data["splits"]) - set(_SPLIT_KEYS)
    if unknown:
        raise ValueError(f"instant-ngp files hold the splits train, val, test; got {sorted(unknown)}")
    if aabb is None and scene is not None and scene.aabb is not None:
        box = _numpy(scene.aabb).astype(np.float64)
        corners = np.array(np.meshgrid(*[[box[i], box[i + 3]] for i in range(3)], indexing="ij")).reshape(3, -1).T
        inv = np.linalg.inv(_numpy(scene.transform).astype(np.float64))
        corners = corners @ inv[:3, :3].T + inv[:3, 3]
        aabb = np.concatenate([corners.min(0), corners.max(0)])
    if aabb is None:
        from .normalize import aabb_from_cameras

        aabb = aabb_from_cameras(data["c2w"])
    ngp_scale, offset, aabb_scale = _ngp_box_params(np.asarray(aabb, dtype=np.float64), scale)
    per_frame = []
    for i in range(len(data["c2w"])):
        t, d = int(data["ctype"][i]), data["dist"][i]
        w, h = int(data["width"]), int(data["height"])
        fx, fy = float(data["fx"][i]), float(data["fy"][i])
        entry = {"camera_angle_x": 2.0 * math.atan(0.5 * w / fx), "camera_angle_y": 2.0 * math.atan(0.5 * h / fy),
                 "fl_x": fx, "fl_y": fy, "cx": float(data["cx"][i]), "cy": float(data["cy"][i]), "w": w, "h": h}
        if t == OPENCV:
            if d[_SLOTS["k3"]] or d[_SLOTS["k4"]]:
                raise ValueError(f"camera {i}: instant-ngp's OpenCV lens has only k1, k2, p1, p2 (k3, k4 are set)")
            entry.update({k: float(d[_SLOTS[k]]) for k in ("k1", "k2", "p1", "p2")})
        elif t == OPENCV_FISHEYE:
            entry.update({"is_fisheye": True, **{k: float(d[_SLOTS[k]]) for k in ("k1", "k2", "k3", "k4")}})
        elif t != PINHOLE:
            raise ValueError(f"camera {i} has lens type {t}, which instant-ngp cannot describe (pinhole, OpenCV "
                             "k1, k2, p1, p2, or fisheye k1..k4)")
        per_frame.append(entry)
    names, mask_names = _write_files(root, data, overwrite)
    for split in ("val", "test", "train"):   # transforms.json last: a folder is detected once complete
        out = root / (TRANSFORMS_FILE if split == "train" else f"transforms_{split}.json")
        if split not in data["splits"]:
            if split != "train" and out.exists() and overwrite:
                out.unlink()  # a stale split file from an earlier export would be read back as a split
            continue
        idx = [int(i) for i in data["splits"][split]]
        shared = _shared([per_frame[i] for i in idx]) if idx else {}
        meta = {**shared, "aabb_scale": aabb_scale, "scale": ngp_scale, "offset": offset}
        frames = []
        for i in idx:
            frame = {"file_path": names[i], "transform_matrix": _matrix(data["c2w"][i])}
            frame.update({k: v for k, v in per_frame[i].items() if k not in shared})
            if mask_names[i] is not None:
                frame["mask_path"] = mask_names[i]
            frames.append(frame)
        meta["frames"] = frames
        out.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return root / TRANSFORMS_FILE
