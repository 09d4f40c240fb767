"""Lens models: camera-frame directions <-> distorted normalised image coordinates.

Everything here works in the OpenCV camera frame (``x`` right, ``y`` down, ``z`` forward) and on *normalised*
image coordinates ``u = (x_pixel - cx) / fx``, ``v = (y_pixel - cy) / fy``; :class:`nerfkit.cameras.Cameras`
converts to pixels and to its OpenGL frame. A camera is a type (an int64) and a parameter vector of length 8,
``params = [k1, k2, k3, k4, k5, k6, p1, p2]``; each model reads only some of them.

For a direction ``d = (X, Y, Z)`` let ``x = X / Z, y = Y / Z`` (the undistorted normalised point),
``r2 = x^2 + y^2``, ``rho = sqrt(X^2 + Y^2)`` and ``theta = atan2(rho, Z)`` (the angle from the optical axis).

``PINHOLE = 0`` (reads nothing)::

    (u, v) = (x, y)

``OPENCV = 1`` (reads k1..k4, p1, p2; nerfstudio's OPENCV; COLMAP's OPENCV, RADIAL and SIMPLE_RADIAL are the
special cases k3 = k4 = 0, then also p1 = p2 = 0, then also k2 = 0)::

    radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3 + k4 r2^4
    u = x radial + 2 p1 x y + p2 (r2 + 2 x^2)
    v = y radial + 2 p2 x y + p1 (r2 + 2 y^2)

``FULL_OPENCV = 3`` (reads k1..k6, p1, p2; COLMAP's FULL_OPENCV): as OPENCV with the rational radial factor::

    radial = (1 + k1 r2 + k2 r2^2 + k3 r2^3) / (1 + k4 r2 + k5 r2^2 + k6 r2^3)

``OPENCV_FISHEYE = 2`` (reads k1..k4; equidistant / Kannala-Brandt; COLMAP's OPENCV_FISHEYE, and
SIMPLE_RADIAL_FISHEYE / RADIAL_FISHEYE with the higher terms zero)::

    theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)
    (u, v) = theta_d (X, Y) / rho

  Written with ``theta = atan2(rho, Z)`` it covers fields of view beyond 180 degrees (``Z <= 0``); the model is
  invertible while ``theta_d`` increases with ``theta`` (``theta <= pi``).

``FOV = 4`` (reads ``omega = k1``; Devernay & Faugeras, COLMAP's FOV)::

    r_d = atan(2 r tan(omega / 2)) / omega        with r = sqrt(r2),  (u, v) = r_d (x, y) / r
    r   = tan(r_d omega) / (2 tan(omega / 2))     (the inverse)

  Both tend to the pinhole as ``omega -> 0``. The ratio ``kappa = 2 tan(omega / 2) / omega`` is replaced by its
  series ``1 + omega^2 / 12 + omega^4 / 120`` when ``omega^2 < 1e-4`` (COLMAP's small-omega threshold), so
  ``omega = 0`` is exactly the pinhole. Here the model is written on directions, ``r_d = atan2(kappa |omega|
  rho, Z) / |omega|``, which equals COLMAP's for ``Z > 0`` (the model is even in ``omega``) and extends it
  continuously to ``r_d |omega| < pi``.
  (COLMAP's own small-omega branch of ``FOVCameraModel::Distortion`` uses the series of the *undistortion*,
  ``1 + omega^2 r^2 / 3 - omega^2 / 12``, whose ``omega^2`` terms have the wrong sign for the distortion; it is
  off by up to about ``omega^2 / 6 < 2e-5`` relative. This module keeps the exact expression there.)

COLMAP's parameter lists map onto the vector as follows (after ``f`` or ``fx, fy`` and ``cx, cy``):
SIMPLE_RADIAL ``k`` -> k1; RADIAL ``k1, k2``; OPENCV ``k1, k2, p1, p2``; FULL_OPENCV ``k1, k2, p1, p2, k3, k4, k5,
k6``; OPENCV_FISHEYE ``k1, k2, k3, k4``; SIMPLE_RADIAL_FISHEYE ``k`` -> k1; RADIAL_FISHEYE ``k1, k2``; FOV
``omega`` -> k1. Unset entries are zero.

Inverses (:func:`unproject`): the perspective models (OPENCV, FULL_OPENCV) solve ``distort(x, y) = (u, v)`` by
Newton's method with the analytic 2x2 Jacobian, starting from ``(x, y) = (u, v)``, a fixed number of iterations
(points whose residual is already below ``tol`` stop moving); the fisheye solves ``theta_d(theta) = r_d`` by 1-D
Newton on ``theta``; FOV and PINHOLE are closed form. Nothing loops over points in Python.

Typical use (what :meth:`nerfkit.cameras.Cameras.rays` does)::

    u, v = (x - cx) / fx, (y - cy) / fy
    dirs = unproject(u, v, cameras.distortion[idx], cameras.camera_type[idx])   # (..., 3), OpenCV frame
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

__all__ = ["PINHOLE", "OPENCV", "OPENCV_FISHEYE", "FULL_OPENCV", "FOV", "CAMERA_TYPES", "N_PARAMS", "check_camera_types",
           "project", "unproject"]

PINHOLE = 0
OPENCV = 1
OPENCV_FISHEYE = 2
FULL_OPENCV = 3
FOV = 4

CAMERA_TYPES = {"PINHOLE": PINHOLE, "OPENCV": OPENCV, "OPENCV_FISHEYE": OPENCV_FISHEYE,
                "FULL_OPENCV": FULL_OPENCV, "FOV": FOV}
"""Lens model name -> type value (the values stored in ``Cameras.camera_type``)."""

N_PARAMS = 8
"""Length of a parameter vector: ``k1, k2, k3, k4, k5, k6, p1, p2``."""

_FOV_SMALL_OMEGA2 = 1e-4  # below this omega^2, kappa(omega) uses its series (COLMAP's threshold)


# ---------------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------------


def project(dirs: Tensor, params: Tensor, camera_type: Tensor | int) -> tuple[Tensor, Tensor]:
    """The forward lens model: camera-frame directions to distorted normalised image coordinates.

    Args:
        dirs: ``(..., 3)`` directions in the OpenCV camera frame (``x`` right, ``y`` down, ``z`` forward), any
            length.
        params: ``(..., 8)`` ``[k1, k2, k3, k4, k5, k6, p1, p2]`` (broadcast against the batch).
        camera_type: ``(...)`` int64 type per point (or one int), mixed types allowed.

    Returns:
        ``(u, v)``, each ``(...)``. Directions the model cannot image give NaN: ``z <= 0`` for PINHOLE, OPENCV and
        FULL_OPENCV; the backward optical axis (``x = y = 0, z <= 0``) for the fisheye and FOV.

    Raises:
        ValueError: a type value that is not one of :data:`CAMERA_TYPES`.
    """
    if dirs.shape[-1] != 3:
        raise ValueError(f"dirs must have shape (..., 3), got {tuple(dirs.shape)}")
    dtype = _float_dtype(dirs, params)
    ctype = torch.as_tensor(camera_type, dtype=torch.long, device=dirs.device)
    shape = torch.broadcast_shapes(dirs.shape[:-1], _param_batch(params), ctype.shape)
    d = dirs.to(dtype).expand(*shape, 3).reshape(-1, 3)
    p = params.to(device=dirs.device, dtype=dtype).expand(*shape, N_PARAMS).reshape(-1, N_PARAMS)
    t = ctype.expand(shape).reshape(-1)
    uv = _dispatch(t, d.new_empty(d.shape[0], 2), _PROJECT, d, p)
    return uv[:, 0].reshape(shape), uv[:, 1].reshape(shape)


def unproject(u: Tensor, v: Tensor, params: Tensor, camera_type: Tensor | int, *, iterations: int = 10,
              tol: float | None = None) -> Tensor:
    """The inverse lens model: distorted normalised image coordinates to camera-frame directions.

    Args:
        u, v: ``(...)`` distorted normalised coordinates, ``((x_pixel - cx) / fx, (y_pixel - cy) / fy)``.
        params: ``(..., 8)`` ``[k1, k2, k3, k4, k5, k6, p1, p2]`` (broadcast against the batch).
        camera_type: ``(...)`` int64 type per point (or one int), mixed types allowed.
        iterations: Newton iterations of the OPENCV / FULL_OPENCV / fisheye inverses.
        tol: residual (in normalised image units) under which a point stops iterating; default the dtype's
            machine epsilon.

    Returns:
        ``(..., 3)`` directions in the OpenCV camera frame, not normalised: ``(x, y, 1)`` for the perspective
        models, unit vectors for the fisheye (their ``z`` is negative beyond 90 degrees from the axis), and
        ``z`` may be ``<= 0`` for FOV when ``r_d * omega >= pi / 2``. The dtype is the promotion of the inputs'.
        Points outside the model's image (beyond a fisheye's image circle, past the fold of a non-monotone
        radial polynomial) have no inverse; their directions are unspecified but finite.

    Finding the types present costs one host synchronisation (``torch.unique``); each type then runs on its
    subset of the batch (the whole batch when there is one type).

    Raises:
        ValueError: a type value that is not one of :data:`CAMERA_TYPES`.
    """
    u, v = torch.as_tensor(u), torch.as_tensor(v)
    dtype = _float_dtype(u, v, params)
    ctype = torch.as_tensor(camera_type, dtype=torch.long, device=u.device)
    shape = torch.broadcast_shapes(u.shape, v.shape, _param_batch(params), ctype.shape)
    uv = torch.stack([u.to(dtype).expand(shape), v.to(device=u.device, dtype=dtype).expand(shape)], -1)
    uv = uv.reshape(-1, 2)
    p = params.to(device=u.device, dtype=dtype).expand(*shape, N_PARAMS).reshape(-1, N_PARAMS)
    t = ctype.expand(shape).reshape(-1)
    tol = torch.finfo(dtype).eps if tol is None else tol
    out = _dispatch(t, uv.new_empty(uv.shape[0], 3), _UNPROJECT, uv, p, iterations=iterations, tol=tol)
    return out.reshape(*shape, 3)


# ---------------------------------------------------------------------------------------------------------------
# Per-model maths on flat inputs: directions (N, 3) or points (N, 2), params (N, 8), types (N,)
# ---------------------------------------------------------------------------------------------------------------


def _project_pinhole(d: Tensor, p: Tensor, t: Tensor) -> Tensor:
    z = torch.where(d[:, 2] > 0, d[:, 2], torch.full_like(d[:, 2], float("nan")))
    return d[:, :2] / z[:, None]


def _unproject_pinhole(uv: Tensor, p: Tensor, t: Tensor, **_) -> Tensor:
    return torch.cat([uv, torch.ones_like(uv[:, :1])], dim=-1)


def _rational_coefficients(p: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Radial factor ``(1 + a1 r2 + .. + a4 r2^4) / (1 + b1 r2 + b2 r2^2 + b3 r2^3)``: ``a (N, 4)``, ``b (N, 3)``.
    OPENCV: ``a = k1..k4, b = 0``; FULL_OPENCV: ``a = (k1, k2, k3, 0), b = k4..k6``."""
    full = (t == FULL_OPENCV)[:, None]
    k = p[:, :6]
    a = torch.cat([k[:, :3], torch.where(full, torch.zeros_like(k[:, 3:4]), k[:, 3:4])], dim=-1)
    b = torch.where(full, k[:, 3:6], torch.zeros_like(k[:, 3:6]))
    return a, b


def _radial_tangential(x: Tensor, y: Tensor, a: Tensor, b: Tensor, p1: Tensor, p2: Tensor, jacobian: bool = False
                       ) -> tuple[Tensor, ...]:
    """Distorted ``(u, v)`` of undistorted ``(x, y)`` (all ``(N,)``), and with ``jacobian`` also the Jacobian
    entries ``du/dx, du/dy (= dv/dx), dv/dy``."""
    x2, y2, xy = x * x, y * y, x * y
    r2 = x2 + y2
    num = 1 + r2 * (a[:, 0] + r2 * (a[:, 1] + r2 * (a[:, 2] + r2 * a[:, 3])))
    den = 1 + r2 * (b[:, 0] + r2 * (b[:, 1] + r2 * b[:, 2]))
    radial = num / den
    u = x * radial + 2 * p1 * xy + p2 * (r2 + 2 * x2)
    v = y * radial + 2 * p2 * xy + p1 * (r2 + 2 * y2)
    if not jacobian:
        return u, v
    dnum = a[:, 0] + r2 * (2 * a[:, 1] + r2 * (3 * a[:, 2] + r2 * 4 * a[:, 3]))
    dden = b[:, 0] + r2 * (2 * b[:, 1] + r2 * 3 * b[:, 2])
    dradial = (dnum * den - num * dden) / (den * den)  # d radial / d r2
    j_xx = radial + 2 * x2 * dradial + 2 * p1 * y + 6 * p2 * x
    j_xy = 2 * xy * dradial + 2 * p1 * x + 2 * p2 * y
    j_yy = radial + 2 * y2 * dradial + 2 * p2 * x + 6 * p1 * y
    return u, v, j_xx, j_xy, j_yy


def _project_radtan(d: Tensor, p: Tensor, t: Tensor) -> Tensor:
    xy = _project_pinhole(d, p, t)
    a, b = _rational_coefficients(p, t)
    u, v = _radial_tangential(xy[:, 0], xy[:, 1], a, b, p[:, 6], p[:, 7])
    return torch.stack([u, v], dim=-1)


def _unproject_radtan(uv: Tensor, p: Tensor, t: Tensor, iterations: int, tol: float) -> Tensor:
    a, b = _rational_coefficients(p, t)
    p1, p2 = p[:, 6], p[:, 7]
    u, v = uv[:, 0], uv[:, 1]
    x, y = u, v
    tiny = torch.finfo(uv.dtype).tiny
    for _ in range(iterations):
        ud, vd, j_xx, j_xy, j_yy = _radial_tangential(x, y, a, b, p1, p2, jacobian=True)
        fu, fv = ud - u, vd - v
        det = j_xx * j_yy - j_xy * j_xy
        step = (fu * fu + fv * fv > tol * tol) & (det.abs() > tiny)
        det = torch.where(step, det, torch.ones_like(det))
        x = x - torch.where(step, (fu * j_yy - fv * j_xy) / det, torch.zeros_like(x))
        y = y - torch.where(step, (fv * j_xx - fu * j_xy) / det, torch.zeros_like(y))
    return torch.stack([x, y, torch.ones_like(x)], dim=-1)


def _atan_ratio(a: Tensor, z: Tensor) -> Tensor:
    """``atan2(a, z) / a`` for ``a >= 0``, continuous at ``a = 0`` where it is ``1 / z`` (for ``z > 0``; NaN for
    ``a = 0, z <= 0``, a direction with no single image point)."""
    eps = torch.finfo(a.dtype).eps
    small = (a * a <= eps * z * z) & (z > 0)
    z_safe = torch.where(small, z, torch.ones_like(z))
    series = (1 - (a / z_safe) ** 2 / 3) / z_safe
    positive = a > 0
    ratio = torch.atan2(a, z) / torch.where(positive, a, torch.ones_like(a))
    ratio = torch.where(positive, ratio, torch.full_like(ratio, float("nan")))
    return torch.where(small, series, ratio)


def _radius(a: Tensor, b: Tensor) -> Tensor:
    """``sqrt(a^2 + b^2)`` with a finite (zero) gradient at the origin, unlike ``torch.hypot``."""
    r2 = a * a + b * b
    positive = r2 > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, r2, torch.ones_like(r2))), torch.zeros_like(r2))


def _fisheye_poly(theta2: Tensor, k: Tensor) -> Tensor:
    """``1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8`` for ``theta2 (N,)``, ``k (N, 4)``."""
    return 1 + theta2 * (k[:, 0] + theta2 * (k[:, 1] + theta2 * (k[:, 2] + theta2 * k[:, 3])))


def _project_fisheye(d: Tensor, p: Tensor, t: Tensor) -> Tensor:
    rho = _radius(d[:, 0], d[:, 1])
    theta = torch.atan2(rho, d[:, 2])
    scale = _atan_ratio(rho, d[:, 2]) * _fisheye_poly(theta * theta, p[:, :4])  # theta_d / rho
    return d[:, :2] * scale[:, None]


def _unproject_fisheye(uv: Tensor, p: Tensor, t: Tensor, iterations: int, tol: float) -> Tensor:
    k = p[:, :4]
    r_d = _radius(uv[:, 0], uv[:, 1])
    theta = r_d
    for _ in range(iterations):
        theta2 = theta * theta
        residual = theta * _fisheye_poly(theta2, k) - r_d
        slope = 1 + theta2 * (3 * k[:, 0] + theta2 * (5 * k[:, 1] + theta2 * (7 * k[:, 2] + theta2 * 9 * k[:, 3])))
        step = (residual.abs() > tol) & (slope > 0)
        slope = torch.where(step, slope, torch.ones_like(slope))
        theta = (theta - torch.where(step, residual / slope, torch.zeros_like(theta))).clamp(0, math.pi)
    # sin(theta) / r_d scales (u, v) to the in-plane part of a unit vector; it tends to 1 as r_d -> 0.
    small = r_d <= math.sqrt(torch.finfo(uv.dtype).eps)
    scale = torch.where(small, torch.ones_like(r_d), torch.sin(theta) / torch.where(small, torch.ones_like(r_d), r_d))
    return torch.cat([uv * scale[:, None], torch.cos(theta)[:, None]], dim=-1)


def _fov_kappa(omega: Tensor) -> Tensor:
    """``2 tan(omega / 2) / omega``, by its series for small ``omega`` (exactly 1 at ``omega = 0``)."""
    w2 = omega * omega
    small = w2 < _FOV_SMALL_OMEGA2
    omega_safe = torch.where(small, torch.ones_like(omega), omega)
    return torch.where(small, 1 + w2 / 12 + w2 * w2 / 120, 2 * torch.tan(omega_safe / 2) / omega_safe)


def _project_fov(d: Tensor, p: Tensor, t: Tensor) -> Tensor:
    omega = p[:, 0]
    kappa = _fov_kappa(omega)
    rho = _radius(d[:, 0], d[:, 1])
    scale = kappa * _atan_ratio(kappa * omega.abs() * rho, d[:, 2])  # r_d / rho
    return d[:, :2] * scale[:, None]


def _unproject_fov(uv: Tensor, p: Tensor, t: Tensor, **_) -> Tensor:
    # tan(r_d omega) / (r_d 2 tan(omega / 2)) = sinc(r_d omega) / (kappa cos(r_d omega)): keep it as a direction.
    omega = p[:, 0]
    angle = _radius(uv[:, 0], uv[:, 1]) * omega.abs()
    s = torch.sinc(angle / math.pi)  # torch.sinc(x) = sin(pi x) / (pi x)
    return torch.cat([uv * s[:, None], (_fov_kappa(omega) * torch.cos(angle))[:, None]], dim=-1)


# ---------------------------------------------------------------------------------------------------------------
# Dispatch over mixed types
# ---------------------------------------------------------------------------------------------------------------

_Fn = Callable[..., Tensor]
# Families of types that share one implementation (OPENCV and FULL_OPENCV differ only in their coefficients).
_PROJECT: list[tuple[tuple[int, ...], _Fn]] = [
    ((PINHOLE,), _project_pinhole), ((OPENCV, FULL_OPENCV), _project_radtan),
    ((OPENCV_FISHEYE,), _project_fisheye), ((FOV,), _project_fov)]
_UNPROJECT: list[tuple[tuple[int, ...], _Fn]] = [
    ((PINHOLE,), _unproject_pinhole), ((OPENCV, FULL_OPENCV), _unproject_radtan),
    ((OPENCV_FISHEYE,), _unproject_fisheye), ((FOV,), _unproject_fov)]


def _known_types(present: set[int]) -> None:
    unknown = sorted(present - set(CAMERA_TYPES.values()))
    if unknown:
        names = ", ".join(f"{name}={value}" for name, value in CAMERA_TYPES.items())
        raise ValueError(f"unknown camera type value(s) {unknown}; known lens models: {names}")


def check_camera_types(camera_type: Tensor) -> bool:
    """Raises a ``ValueError`` naming any value of ``camera_type (...)`` that is not a lens model of
    :data:`CAMERA_TYPES`; returns whether any is not a pinhole."""
    present = set(torch.unique(camera_type).tolist()) if camera_type.numel() else set()
    _known_types(present)
    return bool(present - {PINHOLE})


def _dispatch(t: Tensor, out: Tensor, table: list[tuple[tuple[int, ...], _Fn]], x: Tensor, p: Tensor,
              **kwargs) -> Tensor:
    """Run each family's function on its subset of the flat batch (the whole batch when only one is present)."""
    present = set(torch.unique(t).tolist()) if t.numel() else set()
    _known_types(present)
    families = [(types, fn) for types, fn in table if present & set(types)]
    if len(families) == 1:
        return families[0][1](x, p, t, **kwargs)
    for types, fn in families:
        mask = t == types[0]
        for other in types[1:]:
            mask = mask | (t == other)
        out[mask] = fn(x[mask], p[mask], t[mask], **kwargs).to(out.dtype)
    return out


def _param_batch(params: Tensor) -> torch.Size:
    if params.shape[-1:] != (N_PARAMS,):
        raise ValueError(f"params must have shape (..., {N_PARAMS}), got {tuple(params.shape)}")
    return params.shape[:-1]


def _float_dtype(*tensors: Tensor) -> torch.dtype:
    dtype = tensors[0].dtype
    for tensor in tensors[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype if dtype.is_floating_point else torch.get_default_dtype()
