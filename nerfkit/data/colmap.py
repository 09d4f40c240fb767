"""COLMAP datasets: a sparse model (``cameras`` / ``images`` / ``points3D``, binary or text) beside an ``images``
folder, as COLMAP's workspace, nerfstudio's ``ns-process-data`` and the Mip-NeRF 360 scenes lay them out::

    root/
      images/          the images the model names (names may hold sub-folders)
      images_2/ ...    optional pre-shrunk copies (used for --data.downscale 2, 4, ...)
      masks/           optional per-image masks (same relative name, .png or .jpg; 0 = ignore the pixel)
      sparse/0/        the model (also found in sparse/, colmap/sparse/0, colmap/sparse or root itself)
      train_list.txt   optional split lists (nerfstudio's): image names, one a line; also val_list.txt
                       (or validation_list.txt) and test_list.txt

:func:`parse_colmap` turns COLMAP's world-to-camera poses (OpenCV camera axes) into OpenGL camera-to-world
matrices and its camera models into nerfkit's lens types (:data:`LENS_OF_MODEL`); :func:`write_colmap_dataset`
exports any :class:`~nerfkit.data.scene.Scene` in this layout (fixtures, and converting datasets)."""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..camera_models import FOV, FULL_OPENCV, OPENCV, OPENCV_FISHEYE, PINHOLE
from ..cameras import N_DISTORTION
from .colmap_io import (ColmapCamera, ColmapImage, ColmapPoints, model_files, qvec_to_rotation, read_cameras,
                        read_images, read_points3d, rotation_to_qvec, write_model)
from .frames import Frames, finish_scene, hold_out_split, image_size, shrunk_folder_factor
from .images import write_image
from .scene import DataError, Scene

if TYPE_CHECKING:
    from .config import DataConfig

__all__ = ["load_colmap", "parse_colmap", "write_colmap_dataset", "LENS_OF_MODEL", "lens_from_colmap",
           "colmap_from_lens", "SPLIT_LISTS"]

LENS_OF_MODEL = {
    "SIMPLE_PINHOLE": PINHOLE, "PINHOLE": PINHOLE,
    "SIMPLE_RADIAL": OPENCV, "RADIAL": OPENCV, "OPENCV": OPENCV,
    "FULL_OPENCV": FULL_OPENCV,
    "OPENCV_FISHEYE": OPENCV_FISHEYE, "SIMPLE_RADIAL_FISHEYE": OPENCV_FISHEYE, "RADIAL_FISHEYE": OPENCV_FISHEYE,
    "SIMPLE_FISHEYE": OPENCV_FISHEYE, "FISHEYE": OPENCV_FISHEYE,
    "FOV": FOV,
}
"""The COLMAP camera models nerfkit reads, and the lens type (:mod:`nerfkit.camera_models`) each becomes; each
is the same projection, not an approximation (SIMPLE_FISHEYE / FISHEYE are the equidistant fisheye without
distortion terms)."""

SPLIT_LISTS = {"train": ("train_list.txt",), "val": ("val_list.txt", "validation_list.txt"),
               "test": ("test_list.txt",)}
"""Split list files in the dataset folder (nerfstudio's convention), by split."""

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".JPG", ".JPEG", ".PNG")
_MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")

COLMAP_MODEL_DIRS = ("sparse/0", "sparse", "colmap/sparse/0", "colmap/sparse", ".")
"""Where a COLMAP model (``cameras.{bin,txt}``) is looked for, in this order, relative to the dataset folder."""


def colmap_model_dir(root: Path) -> Path | None:
    """The first of :data:`COLMAP_MODEL_DIRS` under ``root`` holding ``cameras.bin`` or ``cameras.txt``."""
    for sub in COLMAP_MODEL_DIRS:
        folder = root / sub
        if any((folder / f"cameras.{ext}").is_file() for ext in ("bin", "txt")):
            return folder
    return None


def lens_from_colmap(camera: ColmapCamera, source: Path) -> tuple[float, float, float, float, int, np.ndarray]:
    """``(fx, fy, cx, cy, camera_type, distortion (8,))`` of a COLMAP camera (``distortion`` is nerfkit's
    ``k1..k6, p1, p2``); a :class:`DataError` naming ``source`` and the camera for models nerfkit cannot read."""
    model, p = camera.model, np.asarray(camera.params, dtype=np.float64)
    if model not in LENS_OF_MODEL:
        raise DataError(f"{source}: camera {camera.id} uses the COLMAP camera model {model}, which nerfkit does not "
                        f"support (supported: {', '.join(LENS_OF_MODEL)}); undistort the images with COLMAP's "
                        "image_undistorter, or re-run COLMAP with one of these models")
    dist = np.zeros(N_DISTORTION)
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE",
                 "SIMPLE_FISHEYE"):
        fx = fy = p[0]
        cx, cy, extra = p[1], p[2], p[3:]
    else:
        fx, fy, cx, cy, extra = p[0], p[1], p[2], p[3], p[4:]
    if model in ("SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE", "OPENCV_FISHEYE", "FOV"):
        dist[:len(extra)] = extra                          # k (k1, k2, ...) or omega in k1
    elif model == "OPENCV":                                # k1, k2, p1, p2
        dist[[0, 1, 6, 7]] = extra
    elif model == "FULL_OPENCV":                           # k1, k2, p1, p2, k3, k4, k5, k6
        dist[[0, 1, 6, 7, 2, 3, 4, 5]] = extra
    return float(fx), float(fy), float(cx), float(cy), LENS_OF_MODEL[model], dist


def colmap_from_lens(camera_id: int, width: int, height: int, fx: float, fy: float, cx: float, cy: float,
                     camera_type: int, distortion: np.ndarray) -> ColmapCamera:
    """The COLMAP camera of a nerfkit lens (the inverse of :func:`lens_from_colmap`): PINHOLE, OPENCV (FULL_OPENCV
    when ``k3`` is set), OPENCV_FISHEYE, FULL_OPENCV or FOV. nerfkit's OPENCV with ``k4 != 0`` has no COLMAP
    equivalent (``ValueError``)."""
    k1, k2, k3, k4, k5, k6, p1, p2 = (float(v) for v in distortion)
    base = [fx, fy, cx, cy]
    if camera_type == PINHOLE:
        model, extra = "PINHOLE", []
    elif camera_type == OPENCV and k3 == 0.0 and k4 == 0.0:
        model, extra = "OPENCV", [k1, k2, p1, p2]
    elif camera_type == OPENCV and k4 == 0.0:              # a rational factor with denominator 1
        model, extra = "FULL_OPENCV", [k1, k2, p1, p2, k3, 0.0, 0.0, 0.0]
    elif camera_type == OPENCV:
        raise ValueError(f"camera {camera_id}: the OPENCV lens with k4 = {k4} has no COLMAP camera model")
    elif camera_type == OPENCV_FISHEYE:
        model, extra = "OPENCV_FISHEYE", [k1, k2, k3, k4]
    elif camera_type == FULL_OPENCV:
        model, extra = "FULL_OPENCV", [k1, k2, p1, p2, k3, k4, k5, k6]
    elif camera_type == FOV:
        model, extra = "FOV", [k1]
    else:
        raise ValueError(f"camera {camera_id}: unknown lens type {camera_type}")
    return ColmapCamera(camera_id, model, int(width), int(height), np.array(base + extra, dtype=np.float64))


def _colmap_c2w(images: list[ColmapImage], source: Path) -> np.ndarray:
    """OpenGL camera-to-world ``(n, 3, 4)`` of COLMAP's world-to-camera poses (OpenCV camera axes)."""
    qvec = np.stack([np.asarray(im.qvec, dtype=np.float64) for im in images])
    tvec = np.stack([np.asarray(im.tvec, dtype=np.float64) for im in images])
    norm = np.linalg.norm(qvec, axis=-1)
    bad = ~np.isfinite(qvec).all(-1) | ~np.isfinite(tvec).all(-1) | (norm < 1e-8)
    if bad.any():
        im = images[int(np.argmax(bad))]
        raise DataError(f"{source}: image {im.name!r} (id {im.id}) has an invalid pose qvec={list(im.qvec)}, "
                        f"tvec={list(im.tvec)}")
    rot = qvec_to_rotation(qvec)                               # world -> camera
    c2w = np.empty((len(images), 3, 4))
    c2w[:, :, :3] = rot.transpose(0, 2, 1)
    c2w[:, :, 3] = -np.einsum("nji,nj->ni", rot, tvec)        # centre = -R^T t
    c2w[:, :, 1:3] *= -1.0                                     # OpenCV (y down, z forward) -> OpenGL axes
    return c2w


def _safe_name(name: str, source: Path, image: ColmapImage) -> PurePosixPath:
    rel = PurePosixPath(name.replace("\\", "/"))
    if not name or rel.is_absolute() or ".." in rel.parts or ":" in rel.parts[0]:
        raise DataError(f"{source}: image id {image.id} has the name {name!r}, which is not a path inside the "
                        "images folder")
    return rel


def _find_with_suffixes(folder: Path, rel: PurePosixPath, suffixes: tuple[str, ...]) -> Path | None:
    for candidate in [folder / rel] + [folder / rel.with_suffix(s) for s in suffixes]:
        if candidate.is_file():
            return candidate
    return None


def _pick_image_folder(root: Path, downscale: int, use_masks: bool) -> tuple[str, int]:
    """``(folder name, factor it is shrunk by)``: the largest ``images_N`` with ``N`` dividing ``downscale`` (and,
    when the dataset has masks, a ``masks_N`` beside it), else ``images``."""
    # with full-size masks only, the full-size images are shrunk together with them instead
    n = shrunk_folder_factor(root, downscale, lambda n: not (use_masks and (root / "masks").is_dir())
                             or (root / f"masks_{n}").is_dir())
    return ("images", 1) if n == 1 else (f"images_{n}", n)


def _read_splits(root: Path, names: list[str], hold_every: int) -> dict[str, np.ndarray]:
    lists = {split: next((root / f for f in files if (root / f).is_file()), None)
             for split, files in SPLIT_LISTS.items()}
    if all(path is None for path in lists.values()):
        return hold_out_split(len(names), hold_every)
    if lists["train"] is None:
        given = ", ".join(p.name for p in lists.values() if p is not None)
        raise DataError(f"{root} has split lists ({given}) but no train_list.txt")
    index = {name: i for i, name in enumerate(names)}
    splits = {}
    for split, path in lists.items():
        if path is None:
            continue
        try:
            wanted = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"cannot read the split list {path}: {err}") from err
        missing = [w for w in wanted if w.replace("\\", "/") not in index]
        if missing:
            raise DataError(f"{path} names {len(missing)} image(s) that the COLMAP model does not have, e.g. "
                            f"{missing[0]!r}")
        splits[split] = np.array(sorted(index[w.replace("\\", "/")] for w in wanted), dtype=np.int64)
    return splits


def parse_colmap(root: str | Path, downscale: int = 1, hold_every: int = 8, masks: bool = True) -> Frames:
    """The cameras of a COLMAP dataset (see the module docstring for the layout).

    Args:
        root: the dataset folder.
        downscale: the factor the images will be shrunk by; an ``images_N`` folder does part (or all) of it when
            ``N`` divides ``downscale``, and :attr:`Frames.downscale` is what is left.
        hold_every: hold-out split (every ``hold_every``-th image by name is a test image) when the folder has
            no split lists.
        masks: look for a ``masks`` folder.

    Returns:
        :class:`Frames` sorted by image name, in COLMAP's world frame (OpenGL cameras), with the model's 3D points,
        ``source`` the cameras file, ``normalize=True`` (placed by ``--data.normalize``), near/far left to
        :func:`finish_scene`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}")
    if downscale < 1:
        raise DataError(f"downscale must be >= 1, got {downscale}")
    model_dir = colmap_model_dir(root)
    if model_dir is None:
        looked = ", ".join(str(root / sub / "cameras.{bin,txt}") for sub in COLMAP_MODEL_DIRS)
        raise DataError(f"{root} is not a COLMAP dataset: no cameras file (looked for {looked})")
    files = model_files(model_dir)
    cameras_path = files["cameras"]
    assert cameras_path is not None
    if files["images"] is None:
        expected = model_dir / f"images{cameras_path.suffix}"
        hint = (" (this folder also has poses_bounds.npy: --data.format llff reads it)"
                if (root / "poses_bounds.npy").is_file() else "")
        raise DataError(f"{expected} not found: the COLMAP model in {model_dir} has {cameras_path.name} but no "
                        f"images file, so there are no camera poses{hint}")
    images_path = files["images"]
    cameras = read_cameras(cameras_path)
    records = sorted(read_images(images_path, points2d=False).values(), key=lambda im: im.name)
    if not records:
        raise DataError(f"{images_path} lists no images (the reconstruction registered none)")

    # Lenses, one per camera that an image uses.
    lenses = {}
    for im in records:
        if im.camera_id not in cameras:
            raise DataError(f"{images_path}: image {im.name!r} (id {im.id}) uses camera {im.camera_id}, which "
                            f"{cameras_path} does not define")
        if im.camera_id not in lenses:
            lenses[im.camera_id] = lens_from_colmap(cameras[im.camera_id], cameras_path)
    fx, fy, cx, cy = (np.array([lenses[im.camera_id][k] for im in records]) for k in range(4))
    camera_type = np.array([lenses[im.camera_id][4] for im in records], dtype=np.int64)
    distortion = np.stack([lenses[im.camera_id][5] for im in records])
    width = np.array([cameras[im.camera_id].width for im in records], dtype=np.int64)
    height = np.array([cameras[im.camera_id].height for im in records], dtype=np.int64)
    c2w = _colmap_c2w(records, images_path)

    # Images (and masks): the full-size folder, or a pre-shrunk images_N doing part of the downscale.
    if not (root / "images").is_dir():
        raise DataError(f"{root / 'images'} not found: the images that {images_path} names belong in the images "
                        "folder of the dataset")
    folder, shrunk = _pick_image_folder(root, downscale, masks)
    rel_names = [_safe_name(im.name, images_path, im) for im in records]
    paths = []
    for im, rel in zip(records, rel_names):
        if shrunk == 1:
            path = root / "images" / rel
            if not path.is_file():
                raise DataError(f"image file not found: {path} ({images_path} lists it as image id {im.id})")
        else:
            found = _find_with_suffixes(root / folder, rel, _IMAGE_SUFFIXES)
            if found is None:
                raise DataError(f"image file not found: {root / folder / rel} ({folder} is used for --data.downscale "
                                f"{downscale} and must hold every image of {images_path}; image id {im.id})")
            path = found
        paths.append(path)
    if shrunk > 1:  # intrinsics for the files' actual size (rounding differs between tools)
        file_w, file_h = image_size(paths[0])
        cam_w, cam_h = int(width[0]), int(height[0])
        if abs(file_w - cam_w / shrunk) > 1 or abs(file_h - cam_h / shrunk) > 1:
            raise DataError(f"image {paths[0]} is {file_w}x{file_h}, but {cameras_path} gives its camera as "
                            f"{cam_w}x{cam_h}, which is {cam_w / shrunk:g}x{cam_h / shrunk:g} shrunk {shrunk} times: "
                            f"{folder} does not hold the images shrunk by {shrunk}")
        sx, sy = file_w / cam_w, file_h / cam_h
        fx, cx, fy, cy = fx * sx, cx * sx, fy * sy, cy * sy
        width = np.rint(width * sx).astype(np.int64)
        height = np.rint(height * sy).astype(np.int64)

    mask_paths = None
    mask_folder = root / ("masks" if shrunk == 1 else f"masks_{shrunk}")
    if masks and mask_folder.is_dir():
        mask_paths = []
        for rel in rel_names:  # COLMAP's own convention (name + .png), then nerfstudio's (same stem)
            colmap_style = mask_folder / (str(rel) + ".png")
            mask_paths.append(colmap_style if colmap_style.is_file()
                              else _find_with_suffixes(mask_folder, rel, _MASK_SUFFIXES))
        if all(p is None for p in mask_paths):
            mask_paths = None

    points = None
    if files["points3D"] is not None:
        xyz = read_points3d(files["points3D"], tracks=False).xyz
        xyz = xyz[np.isfinite(xyz).all(-1)]
        points = xyz if len(xyz) else None

    return Frames(source=cameras_path, root=root, image_paths=paths, c2w=c2w, fx=fx, fy=fy, cx=cx, cy=cy,
                  width=width, height=height, splits=_read_splits(root, [str(r) for r in rel_names], hold_every),
                  camera_type=camera_type, distortion=distortion, mask_paths=mask_paths, points=points,
                  normalize=True, downscale=downscale // shrunk, format="colmap")


def load_colmap(root: Path, cfg: "DataConfig") -> Scene:
    """Loads a COLMAP dataset (``--data.format colmap``): :func:`parse_colmap`, then the shared checks, placement
    (``--data.normalize``), image loading and splits of :func:`~nerfkit.data.frames.finish_scene`.

    Near/far are derived by :func:`finish_scene` from the scene box (the sparse points' box when the model has
    points)."""
    return finish_scene(parse_colmap(root, cfg.downscale, cfg.hold_every, cfg.masks), cfg)


def _export_names(splits: dict) -> dict[tuple[str, int], str]:
    """A PNG file name for every ``(split, index)``. Entries with the same pixels and pose (an image listed in two
    splits) share one file, named after their first occurrence: ``{stem}.png`` when those names are unique, else
    ``{split}/{stem}.png``, else ``{split}/{index}_{stem}.png``."""
    first: dict[bytes, tuple[str, int]] = {}
    same_as: dict[tuple[str, int], tuple[str, int]] = {}
    for s, split in splits.items():
        for i in range(len(split)):
            digest = hashlib.blake2b(split.images[i].cpu().contiguous().numpy().tobytes())
            digest.update(split.cameras.c2w[i].cpu().double().contiguous().numpy().tobytes())
            same_as[s, i] = first.setdefault(digest.digest(), (s, i))
    unique = list(first.values())
    stem = {(s, i): PurePosixPath(splits[s].names[i]).stem for s, i in unique}
    for scheme in (lambda s, i: f"{stem[s, i]}.png", lambda s, i: f"{s}/{stem[s, i]}.png",
                   lambda s, i: f"{s}/{i:05d}_{stem[s, i]}.png"):
        names = {key: scheme(*key) for key in unique}
        if len(set(names.values())) == len(names):
            return {key: names[canon] for key, canon in same_as.items()}
    raise AssertionError("unreachable: {split}/{index}_{stem} names are unique")


def write_colmap_dataset(scene: Scene, root: str | Path, binary: bool = True, points: np.ndarray | None = None,
                         colors: np.ndarray | None = None) -> Path:
    """Exports a scene as a COLMAP dataset that :func:`load_colmap` reads back: ``images/`` (PNG), ``masks/``
    (when the scene has masks), ``sparse/0/{cameras,images,points3D}.{bin|txt}`` and the split lists.

    Poses are written in the scene's dataset frame (:meth:`Scene.to_dataset_frame`), so a dataset loaded from
    any format converts to COLMAP in its own frame; cameras with equal intrinsics and lens share one COLMAP camera.
    Images are written as ``{stem}.png`` when those names are unambiguous (an image listed in two splits with the
    same pixels and pose is written once), else as ``{split}/{stem}.png`` (a Blender scene's ``r_0`` is in every
    split), else ``{split}/{index}_{stem}.png``.

    Args:
        scene: the scene to export.
        root: the new dataset folder (must not exist, or be empty).
        binary: ``.bin`` model files, else ``.txt``.
        points: optional ``(m, 3)`` sparse points in the dataset frame (for the scene box); none by default.
        colors: optional ``(m, 3)`` uint8 colours of ``points`` (grey by default).

    Returns:
        ``root``.
    """
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} exists and is not an empty folder; export into a new folder")
    splits = scene.splits
    names = _export_names(splits)
    entries: dict[str, tuple[str, int]] = {}   # output name -> the first (split, index) written under it
    lists: dict[str, list[str]] = {}
    for split_name, split in splits.items():
        lists[split_name] = [names[split_name, i] for i in range(len(split))]
        for i, out in enumerate(lists[split_name]):
            entries.setdefault(out, (split_name, i))

    cameras: dict[tuple, ColmapCamera] = {}
    images: list[ColmapImage] = []
    for image_id, (out, (split_name, i)) in enumerate(sorted(entries.items()), 1):
        split = splits[split_name]
        cams = split.cameras
        key = (float(cams.fx[i]), float(cams.fy[i]), float(cams.cx[i]), float(cams.cy[i]),
               int(cams.camera_type[i]), tuple(float(v) for v in cams.distortion[i]))
        if key not in cameras:
            cameras[key] = colmap_from_lens(len(cameras) + 1, cams.width, cams.height, *key[:5], np.array(key[5]))
        c2w = scene.to_dataset_frame(cams.c2w[i:i + 1].double())[0].numpy()
        c2w_cv = c2w.copy()
        c2w_cv[:, 1:3] *= -1.0                                   # OpenGL -> OpenCV camera axes
        rot = c2w_cv[:, :3].T                                    # world -> camera
        images.append(ColmapImage(image_id, rotation_to_qvec(rot), -rot @ c2w_cv[:, 3], cameras[key].id, out))
        write_image(root / "images" / out, split.images[i].cpu().numpy())
        if split.masks is not None:
            write_image(root / "masks" / out, split.masks[i].cpu().numpy().astype(np.uint8) * 255)

    colmap_points = None
    if points is not None:
        xyz = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        rgb = np.full((len(xyz), 3), 128, np.uint8) if colors is None else np.asarray(colors, np.uint8).reshape(-1, 3)
        colmap_points = ColmapPoints(np.arange(1, len(xyz) + 1), xyz, rgb, np.zeros(len(xyz)))
    write_model(root / "sparse" / "0", list(cameras.values()), images, colmap_points, ".bin" if binary else ".txt")
    for split_name, listed in lists.items():
        file = {"train": "train_list.txt", "val": "val_list.txt", "test": "test_list.txt"}.get(split_name)
        if file is not None:
            (root / file).write_text("\n".join(listed) + "\n", encoding="utf-8")
    return root
