"""Reading and writing COLMAP sparse models: ``cameras``, ``images`` and ``points3D``, binary (``.bin``) or text
(``.txt``), as COLMAP's ``doc/format.rst`` describes them.

Binary files are little-endian::

    cameras.bin   uint64 n; n x [int32 camera_id, int32 model_id, uint64 width, uint64 height, float64 params[k]]
                  (k is fixed by the model, see :data:`CAMERA_MODELS`)
    images.bin    uint64 n; n x [uint32 image_id, float64 qw qx qy qz, float64 tx ty tz, uint32 camera_id,
                  name (UTF-8, NUL-terminated), uint64 n2d, n2d x (float64 x, float64 y, int64 point3D_id)]
    points3D.bin  uint64 n; n x [uint64 point3D_id, float64 x y z, uint8 r g b, float64 error, uint64 track_len,
                  track_len x (uint32 image_id, uint32 point2D_idx)]

Text files hold one camera / one 3D point per line and two lines per image (the pose line, then the 2D points,
possibly empty); lines starting with ``#`` are comments. An image's ``(qvec, tvec)`` maps world points into its
camera (OpenCV axes: ``x`` right, ``y`` down, ``z`` forward): ``X_cam = R(qvec) X_world + tvec``; the quaternion
is Hamilton, scalar first.

Records are read with numpy where it matters: a ``points3D.bin`` of 1e5 points is parsed by one pass over the
record lengths and a few vectorised gathers; keypoints and tracks can be skipped altogether. Every problem with a
file (missing, truncated, corrupt, unknown camera model) raises :class:`~nerfkit.data.scene.DataError` naming it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .scene import DataError

__all__ = ["CameraModel", "CAMERA_MODELS", "CAMERA_MODEL_IDS", "ColmapCamera", "ColmapImage", "ColmapPoints",
           "read_cameras", "read_images", "read_points3d", "write_cameras", "write_images", "write_points3d",
           "read_model", "write_model", "model_files", "qvec_to_rotation", "rotation_to_qvec"]


@dataclass(frozen=True)
class CameraModel:
    """One of COLMAP's camera models: its id in binary files, its name in text files, its parameters in order."""

    id: int
    name: str
    params: tuple[str, ...]

    @property
    def n_params(self) -> int:
        return len(self.params)


def _model(id: int, name: str, params: str) -> CameraModel:
    return CameraModel(id, name, tuple(p.strip() for p in params.split(",")))


CAMERA_MODELS: dict[str, CameraModel] = {m.name: m for m in [
    _model(0, "SIMPLE_PINHOLE", "f, cx, cy"),
    _model(1, "PINHOLE", "fx, fy, cx, cy"),
    _model(2, "SIMPLE_RADIAL", "f, cx, cy, k"),
    _model(3, "RADIAL", "f, cx, cy, k1, k2"),
    _model(4, "OPENCV", "fx, fy, cx, cy, k1, k2, p1, p2"),
    _model(5, "OPENCV_FISHEYE", "fx, fy, cx, cy, k1, k2, k3, k4"),
    _model(6, "FULL_OPENCV", "fx, fy, cx, cy, k1, k2, p1, p2, k3, k4, k5, k6"),
    _model(7, "FOV", "fx, fy, cx, cy, omega"),
    _model(8, "SIMPLE_RADIAL_FISHEYE", "f, cx, cy, k"),
    _model(9, "RADIAL_FISHEYE", "f, cx, cy, k1, k2"),
    _model(10, "THIN_PRISM_FISHEYE", "fx, fy, cx, cy, k1, k2, p1, p2, k3, k4, sx1, sy1"),
    _model(11, "RAD_TAN_THIN_PRISM_FISHEYE", "fx, fy, cx, cy, k0, k1, k2, k3, k4, k5, p0, p1, s0, s1, s2, s3"),
    _model(12, "SIMPLE_DIVISION", "f, cx, cy, k"),
    _model(13, "DIVISION", "fx, fy, cx, cy, k"),
    _model(14, "SIMPLE_FISHEYE", "f, cx, cy"),
    _model(15, "FISHEYE", "fx, fy, cx, cy"),
    _model(16, "EUCM", "fx, fy, cx, cy, alpha, beta"),
    _model(17, "EQUIRECTANGULAR", "w, h"),
]}
"""Every camera model COLMAP defines (``src/colmap/sensor/models.h``), by name; ids 11-17 came with COLMAP 3.10+."""
CAMERA_MODEL_IDS: dict[int, CameraModel] = {m.id: m for m in CAMERA_MODELS.values()}
"""The same models by their id in ``cameras.bin``."""


@dataclass
class ColmapCamera:
    """One entry of ``cameras.{bin,txt}``: ``params`` ``(k,)`` float64 in the order of ``CAMERA_MODELS[model]``."""

    id: int
    model: str
    width: int
    height: int
    params: np.ndarray


@dataclass
class ColmapImage:
    """One registered image of ``images.{bin,txt}``.

    Attributes:
        qvec: ``(4,)`` world-to-camera rotation as a unit quaternion ``(w, x, y, z)``.
        tvec: ``(3,)`` world-to-camera translation (the camera centre is ``-R^T tvec``).
        name: the file name relative to the images folder (may contain ``/``).
        xys: ``(k, 2)`` float64 keypoints in pixels (empty when not read).
        point3d_ids: ``(k,)`` int64 3D point of each keypoint, ``-1`` for none.
    """

    id: int
    qvec: np.ndarray
    tvec: np.ndarray
    camera_id: int
    name: str
    xys: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    point3d_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass
class ColmapPoints:
    """All of ``points3D.{bin,txt}`` as arrays (``m`` points).

    Attributes:
        ids: ``(m,)`` int64 point ids.
        xyz: ``(m, 3)`` float64 positions in the model's world frame.
        rgb: ``(m, 3)`` uint8 colours.
        error: ``(m,)`` float64 mean reprojection error in pixels.
        track_lengths: ``(m,)`` int64 observations per point, or ``None`` when tracks were not read.
        tracks: ``(sum(track_lengths), 2)`` int64 ``(image_id, point2D_idx)`` of every observation, point after
            point, or ``None``.
    """

    ids: np.ndarray
    xyz: np.ndarray
    rgb: np.ndarray
    error: np.ndarray
    track_lengths: np.ndarray | None = None
    tracks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls) -> "ColmapPoints":
        return cls(np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0),
                   np.zeros(0, np.int64), np.zeros((0, 2), np.int64))


# ---------------------------------------------------------------------------------------------------------
# Rotations.

def qvec_to_rotation(qvec: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` of quaternions ``(..., 4)`` ``(w, x, y, z)`` (normalised first)."""
    q = np.asarray(qvec, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def rotation_to_qvec(rot: np.ndarray) -> np.ndarray:
    """Unit quaternions ``(..., 4)`` ``(w, x, y, z)``, ``w >= 0``, of rotation matrices ``(..., 3, 3)``: the
    eigenvector of the largest eigenvalue of the symmetric 4x4 matrix of ``rot`` (robust for every angle and
    for matrices that are only nearly orthonormal)."""
    r = np.asarray(rot, dtype=np.float64)
    rxx, rxy, rxz = r[..., 0, 0], r[..., 0, 1], r[..., 0, 2]
    ryx, ryy, ryz = r[..., 1, 0], r[..., 1, 1], r[..., 1, 2]
    rzx, rzy, rzz = r[..., 2, 0], r[..., 2, 1], r[..., 2, 2]
    k = np.stack([
        np.stack([rxx - ryy - rzz, rxy + ryx, rxz + rzx, rzy - ryz], -1),
        np.stack([rxy + ryx, ryy - rxx - rzz, ryz + rzy, rxz - rzx], -1),
        np.stack([rxz + rzx, ryz + rzy, rzz - rxx - ryy, ryx - rxy], -1),
        np.stack([rzy - ryz, rxz - rzx, ryx - rxy, rxx + ryy + rzz], -1),
    ], -2) / 3.0
    _, vecs = np.linalg.eigh(k)
    xyzw = vecs[..., :, -1]
    q = np.concatenate([xyzw[..., 3:], xyzw[..., :3]], -1)
    return np.where(q[..., :1] < 0, -q, q)


# ---------------------------------------------------------------------------------------------------------
# Binary reading helpers.

class _Reader:
    """A cursor over a file's bytes that turns every overrun into a DataError naming the file."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.buf = path.read_bytes()
        except FileNotFoundError as err:
            raise DataError(f"{path} not found") from err
        except OSError as err:
            raise DataError(f"cannot read {path}: {err}") from err
        self.off = 0

    def need(self, n: int, what: str) -> None:
        if self.off + n > len(self.buf):
            raise DataError(f"{self.path} is truncated or corrupt: {what} needs {n} bytes at byte {self.off}, but "
                            f"the file has {len(self.buf)} bytes")

    def unpack(self, fmt: str, what: str) -> tuple:
        size = struct.calcsize(fmt)
        self.need(size, what)
        out = struct.unpack_from(fmt, self.buf, self.off)
        self.off += size
        return out

    def count(self, what: str, min_record: int) -> int:
        """The leading ``uint64`` record count, checked against the file size (``min_record`` bytes each)."""
        (n,) = self.unpack("<Q", f"the number of {what}")
        if n * min_record > len(self.buf) - self.off:
            raise DataError(f"{self.path} is truncated or corrupt: it says it holds {n} {what}, which need at least "
                            f"{n * min_record} bytes, but only {len(self.buf) - self.off} follow")
        return n

    def done(self) -> None:
        if self.off != len(self.buf):
            raise DataError(f"{self.path} is corrupt: {len(self.buf) - self.off} unexpected bytes after the last "
                            f"record (at byte {self.off})")


def _text_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as err:
        raise DataError(f"{path} not found") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not a COLMAP text file (not UTF-8 text: {err})") from err
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from err


def _is_binary(path: Path) -> bool:
    if path.suffix == ".bin":
        return True
    if path.suffix == ".txt":
        return False
    raise ValueError(f"{path}: a COLMAP model file ends in .bin or .txt")


def _model_by_name(name: str, path: Path, camera_id: int) -> CameraModel:
    if name not in CAMERA_MODELS:
        raise DataError(f"{path}: camera {camera_id} has unknown camera model {name!r} (COLMAP's models are: "
                        f"{', '.join(CAMERA_MODELS)})")
    return CAMERA_MODELS[name]


# ---------------------------------------------------------------------------------------------------------
# cameras

def read_cameras(path: str | Path) -> dict[int, ColmapCamera]:
    """The cameras of ``cameras.bin`` or ``cameras.txt`` (by suffix), by camera id."""
    path = Path(path)
    cameras: dict[int, ColmapCamera] = {}
    if _is_binary(path):
        r = _Reader(path)
        for i in range(r.count("cameras", 24)):
            cam_id, model_id, width, height = r.unpack("<IiQQ", f"camera record {i}")
            if model_id not in CAMERA_MODEL_IDS:
                raise DataError(f"{path}: camera {cam_id} has unknown camera model id {model_id} (COLMAP's models "
                                f"are: {', '.join(f'{m.id} {m.name}' for m in CAMERA_MODEL_IDS.values())}); the "
                                "file may be corrupt")
            model = CAMERA_MODEL_IDS[model_id]
            params = r.unpack(f"<{model.n_params}d", f"the {model.name} parameters of camera {cam_id}")
            cameras[cam_id] = ColmapCamera(cam_id, model.name, width, height, np.array(params, dtype=np.float64))
        r.done()
        return cameras
    for lineno, line in enumerate(_text_lines(path), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        where = f"{path}, line {lineno}"
        if len(parts) < 4:
            raise DataError(f"{where}: expected 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...', got {line!r}")
        try:
            cam_id, width, height = int(parts[0]), int(parts[2]), int(parts[3])
            params = np.array([float(p) for p in parts[4:]], dtype=np.float64)
        except ValueError as err:
            raise DataError(f"{where}: malformed camera line {line!r}: {err}") from err
        model = _model_by_name(parts[1], path, cam_id)
        if len(params) != model.n_params:
            raise DataError(f"{where}: camera {cam_id} ({model.name}) has {len(params)} parameters, the model has "
                            f"{model.n_params} ({', '.join(model.params)})")
        cameras[cam_id] = ColmapCamera(cam_id, model.name, width, height, params)
    return cameras


def write_cameras(path: str | Path, cameras: dict[int, ColmapCamera] | list[ColmapCamera]) -> None:
    """Writes ``cameras.bin`` or ``cameras.txt`` (by suffix)."""
    path = Path(path)
    cams = list(cameras.values()) if isinstance(cameras, dict) else list(cameras)
    for cam in cams:
        model = CAMERA_MODELS.get(cam.model)
        if model is None:
            raise ValueError(f"camera {cam.id}: unknown COLMAP camera model {cam.model!r}")
        if len(cam.params) != model.n_params:
            raise ValueError(f"camera {cam.id}: {model.name} takes {model.n_params} parameters, got {len(cam.params)}")
    if _is_binary(path):
        out = [struct.pack("<Q", len(cams))]
        for cam in cams:
            out.append(struct.pack("<IiQQ", cam.id, CAMERA_MODELS[cam.model].id, cam.width, cam.height))
            out.append(np.asarray(cam.params, dtype="<f8").tobytes())
        path.write_bytes(b"".join(out))
        return
    lines = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
             f"# Number of cameras: {len(cams)}"]
    for cam in cams:
        lines.append(" ".join([str(cam.id), cam.model, str(cam.width), str(cam.height)]
                              + [repr(float(p)) for p in cam.params]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------
# images

_POINT2D = np.dtype([("xy", "<f8", (2,)), ("id", "<i8")])


def read_images(path: str | Path, points2d: bool = True) -> dict[int, ColmapImage]:
    """The registered images of ``images.bin`` or ``images.txt`` (by suffix), by image id. With
    ``points2d=False`` the keypoints are skipped (their arrays stay empty)."""
    path = Path(path)
    images: dict[int, ColmapImage] = {}
    if _is_binary(path):
        r = _Reader(path)
        for i in range(r.count("images", 73)):
            rec = r.unpack("<I7dI", f"image record {i}")
            image_id, qvec, tvec, cam_id = rec[0], np.array(rec[1:5]), np.array(rec[5:8]), rec[8]
            end = r.buf.find(b"\0", r.off)
            if end < 0:
                raise DataError(f"{path} is truncated or corrupt: the name of image {image_id} has no end")
            try:
                name = r.buf[r.off:end].decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path} is corrupt: the name of image {image_id} is not UTF-8: {err}") from err
            r.off = end + 1
            (n2d,) = r.unpack("<Q", f"the keypoint count of image {image_id}")
            r.need(n2d * _POINT2D.itemsize, f"the {n2d} keypoints of image {image_id}")
            image = ColmapImage(image_id, qvec, tvec, cam_id, name)
            if points2d:
                pts = np.frombuffer(r.buf, dtype=_POINT2D, count=n2d, offset=r.off)
                image.xys, image.point3d_ids = pts["xy"].astype(np.float64), pts["id"].astype(np.int64)
            r.off += n2d * _POINT2D.itemsize
            images[image_id] = image
        r.done()
        return images
    lines = _text_lines(path)
    i = 0
    while i < len(lines):
        line, lineno = lines[i].strip(), i + 1
        i += 1
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        where = f"{path}, line {lineno}"
        if len(parts) < 10:
            raise DataError(f"{where}: expected 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME', got {line!r}")
        try:
            image_id, cam_id = int(parts[0]), int(parts[8])
            pose = np.array([float(p) for p in parts[1:8]])
        except ValueError as err:
            raise DataError(f"{where}: malformed image line {line!r}: {err}") from err
        image = ColmapImage(image_id, pose[:4], pose[4:], cam_id, " ".join(parts[9:]))
        keypoints = lines[i].split() if i < len(lines) else []  # the keypoint line follows, even when empty
        i += 1
        if points2d and keypoints:
            if len(keypoints) % 3:
                raise DataError(f"{path}, line {lineno + 1}: the keypoints of image {image_id} are not triples "
                                "X Y POINT3D_ID")
            try:
                table = np.array(keypoints, dtype=np.float64).reshape(-1, 3)
            except ValueError as err:
                raise DataError(f"{path}, line {lineno + 1}: malformed keypoints of image {image_id}: {err}") from err
            image.xys, image.point3d_ids = table[:, :2].copy(), table[:, 2].astype(np.int64)
        images[image_id] = image
    return images


def write_images(path: str | Path, images: dict[int, ColmapImage] | list[ColmapImage]) -> None:
    """Writes ``images.bin`` or ``images.txt`` (by suffix), keypoints included."""
    path = Path(path)
    imgs = list(images.values()) if isinstance(images, dict) else list(images)
    for im in imgs:
        if not im.name or any(c in im.name for c in "\0\n\r") or (not _is_binary(path) and " " in im.name):
            raise ValueError(f"image {im.id}: name {im.name!r} cannot be stored in {path.name}")
    if _is_binary(path):
        out = [struct.pack("<Q", len(imgs))]
        for im in imgs:
            out.append(struct.pack("<I7dI", im.id, *np.asarray(im.qvec, float), *np.asarray(im.tvec, float),
                                   im.camera_id))
            out.append(im.name.encode("utf-8") + b"\0")
            pts = np.empty(len(im.xys), dtype=_POINT2D)
            pts["xy"], pts["id"] = np.asarray(im.xys).reshape(-1, 2), im.point3d_ids
            out.append(struct.pack("<Q", len(pts)) + pts.tobytes())
        path.write_bytes(b"".join(out))
        return
    lines = ["# Image list with two lines of data per image:",
             "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
             "#   POINTS2D[] as (X, Y, POINT3D_ID)", f"# Number of images: {len(imgs)}"]
    for im in imgs:
        pose = [repr(float(v)) for v in (*im.qvec, *im.tvec)]
        lines.append(" ".join([str(im.id), *pose, str(im.camera_id), im.name]))
        lines.append(" ".join(f"{x!r} {y!r} {int(p)}" for (x, y), p in
                              zip(np.asarray(im.xys, float).reshape(-1, 2).tolist(), im.point3d_ids)))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------
# points3D

_POINT_HEAD = np.dtype([("id", "<u8"), ("xyz", "<f8", (3,)), ("rgb", "u1", (3,)), ("error", "<f8"),
                        ("track", "<u8")])  # 51 bytes, packed


def read_points3d(path: str | Path, tracks: bool = True) -> ColmapPoints:
    """The 3D points of ``points3D.bin`` or ``points3D.txt`` (by suffix). With ``tracks=False`` the observations
    are skipped (``track_lengths`` / ``tracks`` are ``None``)."""
    path = Path(path)
    if _is_binary(path):
        return _read_points_bin(path, tracks)
    ids, heads, lengths, track_tokens = [], [], [], []
    for lineno, line in enumerate(_text_lines(path), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) < 8 or (len(parts) - 8) % 2:
            raise DataError(f"{path}, line {lineno}: expected 'POINT3D_ID X Y Z R G B ERROR' and (IMAGE_ID, "
                            f"POINT2D_IDX) pairs, got {len(parts)} fields")
        ids.append(parts[0])
        heads.extend(parts[1:8])
        if tracks:
            lengths.append((len(parts) - 8) // 2)
            track_tokens.extend(parts[8:])
    try:  # one conversion per column kind: Python's float()/int() over flat lists is the fast path
        table = np.array(list(map(float, heads)), dtype=np.float64).reshape(-1, 7)
        out = ColmapPoints(np.array(list(map(int, ids)), dtype=np.int64), table[:, :3].copy(),
                           table[:, 3:6].astype(np.uint8), table[:, 6].copy())
        if tracks:
            out.track_lengths = np.array(lengths, dtype=np.int64)
            out.tracks = np.array(list(map(int, track_tokens)), dtype=np.int64).reshape(-1, 2)
    except (ValueError, OverflowError) as err:
        raise DataError(f"{path}: malformed point line: {err}") from err
    return out


def _read_points_bin(path: Path, tracks: bool) -> ColmapPoints:
    r = _Reader(path)
    n = r.count("points", _POINT_HEAD.itemsize)
    buf, size = r.buf, len(r.buf)
    starts, lengths = [], []
    off, track_at = r.off, struct.Struct("<Q").unpack_from
    try:
        for _ in range(n):  # the only per-point Python work: hop from record to record
            (length,) = track_at(buf, off + 43)
            starts.append(off)
            lengths.append(length)
            off += 51 + 8 * length
    except struct.error:
        raise DataError(f"{path} is truncated or corrupt: point record {len(starts)} of {n} needs 51 bytes at byte "
                        f"{off}, but the file has {size} bytes") from None
    if off > size:
        raise DataError(f"{path} is truncated or corrupt: the track of point record {n - 1} ends at byte {off}, but "
                        f"the file has {size} bytes")
    if off != size:
        raise DataError(f"{path} is corrupt: {size - off} unexpected bytes after the last record (at byte {off})")
    raw = np.frombuffer(buf, dtype=np.uint8)
    start, length = np.array(starts, dtype=np.int64), np.array(lengths, dtype=np.int64)
    heads = raw[start[:, None] + np.arange(51)].view(_POINT_HEAD)[:, 0]
    out = ColmapPoints(heads["id"].astype(np.int64), heads["xyz"].astype(np.float64), heads["rgb"].copy(),
                       heads["error"].astype(np.float64))
    if tracks:
        total = int(length.sum())
        first = np.cumsum(length) - length                       # index of each point's first observation
        entry = np.repeat(start + 51, length) + 8 * (np.arange(total) - np.repeat(first, length))
        pairs = raw[entry[:, None] + np.arange(8)].view("<u4")   # (total, 2)
        out.track_lengths, out.tracks = length, pairs.astype(np.int64)
    return out


def write_points3d(path: str | Path, points: ColmapPoints) -> None:
    """Writes ``points3D.bin`` or ``points3D.txt`` (by suffix); points without tracks get empty ones."""
    path = Path(path)
    m = len(points)
    lengths = np.zeros(m, np.int64) if points.track_lengths is None else np.asarray(points.track_lengths, np.int64)
    tracks = np.zeros((0, 2), np.int64) if points.tracks is None else np.asarray(points.tracks).reshape(-1, 2)
    if len(tracks) != lengths.sum():
        raise ValueError(f"points: {len(tracks)} track entries, but the track lengths add up to {lengths.sum()}")
    ends = np.cumsum(lengths)
    if _is_binary(path):
        heads = np.empty(m, dtype=_POINT_HEAD)
        heads["id"], heads["xyz"], heads["rgb"] = points.ids, points.xyz, points.rgb
        heads["error"], heads["track"] = points.error, lengths
        head_bytes = heads.tobytes()
        track_bytes = np.ascontiguousarray(tracks, dtype="<u4").tobytes()
        out = [struct.pack("<Q", m)]
        for i in range(m):
            out.append(head_bytes[51 * i:51 * (i + 1)])
            out.append(track_bytes[8 * (ends[i] - lengths[i]):8 * ends[i]])
        path.write_bytes(b"".join(out))
        return
    lines = ["# 3D point list with one line of data per point:",
             "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
             f"# Number of points: {m}"]
    flat = tracks.reshape(-1).tolist()
    ends_list, lengths_list = ends.tolist(), lengths.tolist()
    for pid, (x, y, z), (r, g, b), err, end, length in zip(np.asarray(points.ids).tolist(),
                                                          np.asarray(points.xyz, float).tolist(),
                                                          np.asarray(points.rgb).tolist(),
                                                          np.asarray(points.error, float).tolist(),
                                                          ends_list, lengths_list):
        track = " ".join(map(str, flat[2 * (end - length):2 * end]))
        lines.append(f"{pid} {x!r} {y!r} {z!r} {r} {g} {b} {err!r} {track}".rstrip())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------
# Whole models.

def model_files(folder: str | Path) -> dict[str, Path | None]:
    """The ``cameras`` / ``images`` / ``points3D`` files of a model folder: ``.bin`` when present (COLMAP prefers
    the binary files), else ``.txt``, else ``None``."""
    folder = Path(folder)
    found: dict[str, Path | None] = {}
    for stem in ("cameras", "images", "points3D"):
        found[stem] = next((folder / f"{stem}{ext}" for ext in (".bin", ".txt") if (folder / f"{stem}{ext}").is_file()),
                           None)
    return found


def read_model(folder: str | Path, points2d: bool = True, tracks: bool = True
               ) -> tuple[dict[int, ColmapCamera], dict[int, ColmapImage], ColmapPoints]:
    """Cameras, images and points of the model in ``folder`` (each file binary or text); every file must exist."""
    folder = Path(folder)
    files = model_files(folder)
    for stem, path in files.items():
        if path is None:
            raise DataError(f"{folder / (stem + '.bin')} not found (nor {stem}.txt): a COLMAP model needs cameras, "
                            "images and points3D files")
    return (read_cameras(files["cameras"]), read_images(files["images"], points2d),
            read_points3d(files["points3D"], tracks))


def write_model(folder: str | Path, cameras: dict[int, ColmapCamera] | list[ColmapCamera],
                images: dict[int, ColmapImage] | list[ColmapImage], points: ColmapPoints | None = None,
                ext: str = ".bin") -> None:
    """Writes ``cameras``, ``images`` and ``points3D`` files (``ext`` ``.bin`` or ``.txt``) into ``folder``
    (created if needed); ``points=None`` writes an empty ``points3D`` file."""
    if ext not in (".bin", ".txt"):
        raise ValueError(f"ext must be '.bin' or '.txt', got {ext!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_cameras(folder / f"cameras{ext}", cameras)
    write_images(folder / f"images{ext}", images)
    write_points3d(folder / f"points3D{ext}", ColmapPoints.empty() if points is None else points)
