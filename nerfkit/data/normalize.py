"""Placing a captured scene in nerfkit's frame: orientation, centre, scale, and the scene box.

Every function works on float64 numpy arrays in the OpenGL camera convention. A placement is a ``(4, 4)``
similarity ``T`` (``T[:3, :3] = s R``, ``T[:3, 3] = t``): points move as ``x' = s R x + t`` and cameras keep
orthonormal rotations (:func:`transform_poses`)."""

from __future__ import annotations

import numpy as np

__all__ = ["placement", "transform_poses", "transform_points", "focus_point", "aabb_from_points",
           "aabb_from_cameras", "rotation_between"]


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The ``(3, 3)`` rotation taking unit vector ``a`` to unit vector ``b`` by the shortest arc."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(np.dot(a, b))
    if c < -1.0 + 1e-10:  # opposite: half a turn about any axis orthogonal to a
        axis = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def focus_point(c2w: np.ndarray) -> np.ndarray:
    """The point ``(3,)`` nearest (least squares) to every camera's optical axis."""
    origins, axes = c2w[:, :3, 3], -c2w[:, :3, 2]
    axes = axes / np.linalg.norm(axes, axis=-1, keepdims=True)
    proj = np.eye(3)[None] - axes[:, :, None] * axes[:, None, :]
    return np.linalg.lstsq(proj.sum(0), (proj @ origins[:, :, None]).sum(0), rcond=None)[0][:, 0]


def placement(c2w: np.ndarray, orientation: str = "up", center: str = "poses", scale: bool = True) -> np.ndarray:
    """The similarity ``(4, 4)`` that orients, centres and scales a scene from its cameras ``c2w (n, 3, 4)``.

    Args:
        orientation: ``'up'`` turns the cameras' mean up vector to ``+z``; ``'pca'`` aligns the principal axes
            of the camera positions with x, y, z (largest spread on x, smallest on z, z pointing along the mean
            up vector); ``'none'`` keeps the axes.
        center: ``'poses'`` (mean camera position), ``'focus'`` (the point the cameras look at) or ``'none'``.
        scale: scale so that every camera position lies in ``[-1, 1]^3``.
    """
    positions = c2w[:, :3, 3]
    up = c2w[:, :3, 1].mean(0)
    if orientation == "up":
        rot = rotation_between(up, np.array([0.0, 0.0, 1.0])) if np.linalg.norm(up) > 1e-9 else np.eye(3)
    elif orientation == "pca":
        centred = positions - positions.mean(0)
        _, vecs = np.linalg.eigh(centred.T @ centred)          # ascending eigenvalues
        rot = vecs[:, ::-1].T.copy()                          # rows: largest, middle, smallest spread
        if rot[2] @ up < 0:
            rot[2] *= -1
        if np.linalg.det(rot) < 0:
            rot[0] *= -1
    elif orientation == "none":
        rot = np.eye(3)
    else:
        raise ValueError(f"unknown orientation {orientation!r} (up, pca or none)")
    if center == "poses":
        origin = positions.mean(0)
    elif center == "focus":
        origin = focus_point(c2w)
    elif center == "none":
        origin = np.zeros(3)
    else:
        raise ValueError(f"unknown center {center!r} (poses, focus or none)")
    s = 1.0
    if scale:
        extent = np.abs((positions - origin) @ rot.T).max()
        s = 1.0 / extent if extent > 1e-12 else 1.0
    out = np.eye(4)
    out[:3, :3] = s * rot
    out[:3, 3] = -s * rot @ origin
    return out


def transform_poses(transform: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """Cameras ``(n, 3, 4)`` moved by a similarity ``(4, 4)``: rotations turn, positions move and scale."""
    s = np.cbrt(abs(np.linalg.det(transform[:3, :3])))
    rot = transform[:3, :3] / s
    out = np.empty_like(c2w)
    out[:, :3, :3] = rot @ c2w[:, :3, :3]
    out[:, :3, 3] = c2w[:, :3, 3] @ transform[:3, :3].T + transform[:3, 3]
    return out


def transform_points(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points ``(m, 3)`` moved by a similarity ``(4, 4)``."""
    return points @ transform[:3, :3].T + transform[:3, 3]


def aabb_from_points(points: np.ndarray, margin: float = 0.1, percentile: float = 0.5) -> np.ndarray:
    """A box ``(6,)`` around the ``percentile``..``100 - percentile`` range of ``points (m, 3)`` (robust to stray
    points), enlarged by ``margin`` of its size on every side."""
    lo, hi = np.percentile(points, percentile, axis=0), np.percentile(points, 100.0 - percentile, axis=0)
    pad = (hi - lo) * margin
    return np.concatenate([lo - pad, hi + pad])


def aabb_from_cameras(c2w: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """A cube ``(6,)`` centred on the cameras' bounding box, as wide as its largest side, enlarged by ``margin``
    (cameras of a capture surround the subject, so the subject lies inside)."""
    positions = c2w[:, :3, 3]
    lo, hi = positions.min(0), positions.max(0)
    centre, half = (lo + hi) / 2.0, max(float((hi - lo).max()) / 2.0, 1e-3) * (1.0 + margin)
    return np.concatenate([centre - half, centre + half])
