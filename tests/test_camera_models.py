import math

import pytest
import torch

from nerfkit.camera_models import (CAMERA_TYPES, FOV, FULL_OPENCV, OPENCV, OPENCV_FISHEYE, PINHOLE, project,
                                   unproject)
from nerfkit.cameras import Cameras, look_at, rays_from_pixels

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}  # round trips, on unit directions / normalised coordinates
ALL_TYPES = sorted(CAMERA_TYPES.values())

# Largest angle from the optical axis drawn for each model: 31 degrees (|x, y| <= 0.6) for the perspective models
# with strong random distortion, 100 degrees (a 200-degree field of view) for the fisheye, 80 for FOV.
MAX_ANGLE = {PINHOLE: math.radians(60), OPENCV: math.atan(0.6), FULL_OPENCV: math.atan(0.6),
             OPENCV_FISHEYE: math.radians(100), FOV: math.radians(80)}


def random_params(camera_type, n, dtype=torch.float64, generator=None):
    """Realistic random parameters ``(n, 8)``; every draw is invertible on the angles of ``MAX_ANGLE``."""
    def uniform(*shape, scale):
        return (2 * torch.rand(*shape, dtype=dtype, generator=generator) - 1) * torch.as_tensor(scale, dtype=dtype)

    params = torch.zeros(n, 8, dtype=dtype)
    if camera_type in (OPENCV, FULL_OPENCV):
        params[:, :6] = uniform(n, 6, scale=0.3)
        params[:, 6:] = uniform(n, 2, scale=0.01)
    elif camera_type == OPENCV_FISHEYE:
        # Worst case d(theta_d)/d(theta) at 100 degrees is about 0.23 > 0: monotone.
        params[:, :4] = uniform(n, 4, scale=[0.05, 3e-3, 5e-4, 1e-4])
    elif camera_type == FOV:
        params[:, 0] = 1.2 * torch.rand(n, dtype=dtype, generator=generator)
    return params


def random_directions(n, max_angle, dtype=torch.float64, generator=None):
    """Unit directions ``(n, 3)`` (OpenCV frame) at angles up to ``max_angle`` from the ``+z`` axis."""
    theta = max_angle * torch.rand(n, dtype=dtype, generator=generator)
    phi = 2 * math.pi * torch.rand(n, dtype=dtype, generator=generator)
    return torch.stack([theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos()], dim=-1)


def normalised(d):
    return d / torch.linalg.vector_norm(d, dim=-1, keepdim=True)


# ---------------------------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("camera_type", ALL_TYPES)
def test_unproject_of_project_returns_the_direction(camera_type, dtype, device):
    g = torch.Generator().manual_seed(camera_type)
    n = 2000
    params = random_params(camera_type, n, dtype, g).to(device)
    dirs = random_directions(n, MAX_ANGLE[camera_type], dtype, g).to(device)
    u, v = project(dirs, params, camera_type)
    assert u.shape == v.shape == (n,) and u.dtype == dtype and u.device.type == device
    back = unproject(u, v, params, camera_type)
    assert back.shape == (n, 3) and back.dtype == dtype
    torch.testing.assert_close(normalised(back), dirs, rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("camera_type", ALL_TYPES)
def test_project_of_unproject_returns_the_image_point(camera_type, dtype):
    g = torch.Generator().manual_seed(100 + camera_type)
    n = 2000
    params = random_params(camera_type, n, torch.float64, g)
    # Image points inside each camera's image of the drawn cone (drawn in float64, then rounded to dtype).
    u, v = project(random_directions(n, MAX_ANGLE[camera_type], torch.float64, g), params, camera_type)
    u, v, params = u.to(dtype), v.to(dtype), params.to(dtype)
    u2, v2 = project(unproject(u, v, params, camera_type), params, camera_type)
    torch.testing.assert_close(u2, u, rtol=0, atol=TOL[dtype])
    torch.testing.assert_close(v2, v, rtol=0, atol=TOL[dtype])


# ---------------------------------------------------------------------------------------------------------------
# Values by hand
# ---------------------------------------------------------------------------------------------------------------


def test_opencv_matches_the_formula_on_one_point():
    # x = 0.2, y = -0.1: r2 = 0.05, radial = 1 + 0.1 * 0.05 + 0.01 * 0.05^2 = 1.005025,
    # u = 0.2 * 1.005025 + 2 * 0.001 * (0.2 * -0.1) + 0.002 * (0.05 + 2 * 0.04) = 0.201005 - 0.00004 + 0.00026,
    # v = -0.1 * 1.005025 + 2 * 0.002 * (0.2 * -0.1) + 0.001 * (0.05 + 2 * 0.01) = -0.1005025 - 0.00008 + 0.00007.
    params = torch.tensor([0.1, 0.01, 0.0, 0.0, 0.0, 0.0, 0.001, 0.002], dtype=torch.float64)
    u, v = project(torch.tensor([0.2, -0.1, 1.0], dtype=torch.float64), params, OPENCV)
    assert u.item() == pytest.approx(0.201225, abs=1e-15)
    assert v.item() == pytest.approx(-0.1005125, abs=1e-15)
    # Any positive depth along the ray gives the same point, and unproject recovers (x, y, 1).
    u2, v2 = project(torch.tensor([0.6, -0.3, 3.0], dtype=torch.float64), params, OPENCV)
    assert (u2.item(), v2.item()) == pytest.approx((0.201225, -0.1005125), abs=1e-15)
    d = unproject(torch.tensor(0.201225, dtype=torch.float64), torch.tensor(-0.1005125, dtype=torch.float64),
                  params, OPENCV)
    torch.testing.assert_close(d, torch.tensor([0.2, -0.1, 1.0], dtype=torch.float64), rtol=0, atol=1e-14)


def test_opencv_reads_k3_k4_in_the_radial_polynomial():
    # radial = 1 + k3 r2^3 + k4 r2^4 with r2 = 0.25: 1 + 0.5 * 0.015625 + 0.25 * 0.00390625.
    params = torch.tensor([0.0, 0.0, 0.5, 0.25, 9.0, 9.0, 0.0, 0.0], dtype=torch.float64)  # k5, k6 unread
    u, v = project(torch.tensor([0.5, 0.0, 1.0], dtype=torch.float64), params, OPENCV)
    assert u.item() == pytest.approx(0.5 * (1 + 0.5 * 0.015625 + 0.25 * 0.00390625), abs=1e-15)
    assert v.item() == 0.0


def test_full_opencv_matches_the_rational_formula_on_one_point():
    # x = 0.2, y = -0.1, r2 = 0.05: radial = (1 + 0.1 r2 + 0.01 r2^2 + 0.001 r2^3) / (1 + 0.05 r2 + 0.002 r2^2
    # + 0.0001 r2^3) = 1.005025125 / 1.0025050125; the tangential terms are those of the OPENCV test.
    params = torch.tensor([0.1, 0.01, 0.001, 0.05, 0.002, 0.0001, 0.001, 0.002], dtype=torch.float64)
    radial = 1.005025125 / 1.0025050125
    u, v = project(torch.tensor([0.2, -0.1, 1.0], dtype=torch.float64), params, FULL_OPENCV)
    assert u.item() == pytest.approx(0.2 * radial - 0.00004 + 0.00026, abs=1e-15)
    assert v.item() == pytest.approx(-0.1 * radial - 0.00008 + 0.00007, abs=1e-15)


def test_fisheye_matches_the_formula_including_behind_the_camera():
    params = torch.tensor([0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    # (sqrt(3), 0, 1) is 60 degrees off-axis: theta_d = pi/3 (1 + 0.1 (pi/3)^2), along +u.
    u, v = project(torch.tensor([math.sqrt(3.0), 0.0, 1.0], dtype=torch.float64), params, OPENCV_FISHEYE)
    assert u.item() == pytest.approx(math.pi / 3 * (1 + 0.1 * (math.pi / 3) ** 2), abs=1e-14)
    assert v.item() == pytest.approx(0.0, abs=1e-15)
    # (0, -1, -1) is 135 degrees off-axis (behind the image plane), along -v: theta_d = 3pi/4 (1 + 0.1 (3pi/4)^2).
    u, v = project(torch.tensor([0.0, -1.0, -1.0], dtype=torch.float64), params, OPENCV_FISHEYE)
    assert u.item() == pytest.approx(0.0, abs=1e-15)
    assert v.item() == pytest.approx(-0.75 * math.pi * (1 + 0.1 * (0.75 * math.pi) ** 2), abs=1e-14)
    d = unproject(u, v, params, OPENCV_FISHEYE)
    torch.testing.assert_close(normalised(d), torch.tensor([0.0, -1.0, -1.0], dtype=torch.float64) / math.sqrt(2),
                               rtol=0, atol=1e-14)


def test_fov_matches_colmap_formula_in_both_omega_branches():
    # (0.3, 0.4, 1): r = 0.5, r_d = atan(2 r tan(omega / 2)) / omega, (u, v) = r_d (0.6, 0.8).
    d = torch.tensor([0.3, 0.4, 1.0], dtype=torch.float64)
    # 0.005 is in the small-omega branch (omega^2 < 1e-4), where COLMAP's distortion series has flipped signs.
    for omega in (0.5, 1.1, 0.011, 0.005):
        params = torch.tensor([omega, 0, 0, 0, 0, 0, 0, 0], dtype=torch.float64)
        r_d = math.atan(2 * 0.5 * math.tan(omega / 2)) / omega
        u, v = project(d, params, FOV)
        assert (u.item(), v.item()) == pytest.approx((0.6 * r_d, 0.8 * r_d), abs=1e-14, rel=1e-13)
        # Undistortion (COLMAP's): r = tan(r_d omega) / (2 tan(omega / 2)).
        back = unproject(u, v, params, FOV)
        r = math.tan(r_d * omega) / (2 * math.tan(omega / 2))
        torch.testing.assert_close(back[:2] / back[2], torch.tensor([0.6 * r, 0.8 * r], dtype=torch.float64),
                                   rtol=1e-13, atol=0)


# ---------------------------------------------------------------------------------------------------------------
# Degenerate and limiting cases
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("camera_type", [OPENCV, FULL_OPENCV, FOV])
def test_zero_distortion_is_the_pinhole(camera_type, dtype):
    g = torch.Generator().manual_seed(7)
    dirs = random_directions(500, math.radians(70), dtype, g)
    zeros = torch.zeros(8, dtype=dtype)
    u0, v0 = project(dirs, zeros, PINHOLE)
    u, v = project(dirs, zeros, camera_type)
    torch.testing.assert_close(u, u0, rtol=1e-6 if dtype == torch.float32 else 1e-14, atol=0)
    torch.testing.assert_close(v, v0, rtol=1e-6 if dtype == torch.float32 else 1e-14, atol=0)
    torch.testing.assert_close(u0, dirs[:, 0] / dirs[:, 2])
    d = unproject(u0, v0, zeros, camera_type)
    torch.testing.assert_close(d, unproject(u0, v0, zeros, PINHOLE), rtol=0, atol=0)
    torch.testing.assert_close(d, torch.stack([u0, v0, torch.ones_like(u0)], -1), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fisheye_without_distortion_is_equidistant(dtype):
    g = torch.Generator().manual_seed(8)
    dirs = random_directions(500, math.radians(170), dtype, g)
    zeros = torch.zeros(8, dtype=dtype)
    u, v = project(dirs, zeros, OPENCV_FISHEYE)
    theta = torch.atan2(torch.hypot(dirs[:, 0], dirs[:, 1]), dirs[:, 2])
    torch.testing.assert_close(torch.hypot(u, v), theta)  # theta_d = theta
    d = unproject(u, v, zeros, OPENCV_FISHEYE)
    torch.testing.assert_close(torch.linalg.vector_norm(d, dim=-1), torch.ones_like(u))
    torch.testing.assert_close(d, dirs, rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("camera_type", ALL_TYPES)
def test_points_on_and_near_the_optical_axis_are_finite(camera_type, dtype):
    params = random_params(camera_type, 1, dtype, torch.Generator().manual_seed(9)).expand(4, 8)
    tiny = torch.tensor([0.0, 1e-30, 1e-12, 1e-6], dtype=dtype)
    u, v = project(torch.stack([tiny, -tiny, torch.ones_like(tiny)], -1), params, camera_type)
    assert torch.isfinite(u).all() and torch.isfinite(v).all()
    assert u[0] == 0 and v[0] == 0
    # To first order every model is the identity, except FOV which magnifies by 2 tan(omega / 2) / omega.
    omega = params[0, 0].item()
    slope = 2 * math.tan(omega / 2) / omega if camera_type == FOV else 1.0
    torch.testing.assert_close(u, tiny * slope, rtol=1e-5, atol=0)
    d = unproject(tiny, -tiny, params, camera_type)
    assert torch.isfinite(d).all()
    torch.testing.assert_close(normalised(d[0]), torch.tensor([0.0, 0.0, 1.0], dtype=dtype), rtol=0, atol=0)
    torch.testing.assert_close(d[:, 0] / d[:, 2], tiny / slope, rtol=1e-5, atol=0)


@pytest.mark.parametrize("camera_type", ALL_TYPES)
def test_gradients_match_finite_differences_and_are_finite_on_the_axis(camera_type):
    # Not needed for ray generation, but keeps lens parameters optimisable; the Newton loops are differentiated
    # through, which converges to the implicit derivative.
    params = random_params(camera_type, 1, torch.float64, torch.Generator().manual_seed(3)).requires_grad_()
    u = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    v = torch.tensor([-0.2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u, v, p: unproject(u, v, p, camera_type), (u, v, params), atol=1e-6,
                                    fast_mode=True)
    zero = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    unproject(zero, zero, params, camera_type).sum().backward()
    axis = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    sum(project(axis, params, camera_type)).sum().backward()
    assert torch.isfinite(zero.grad).all() and torch.isfinite(axis.grad).all()


def test_fisheye_sees_beyond_180_degrees_and_perspective_models_do_not():
    zeros = torch.zeros(8, dtype=torch.float64)
    behind = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    u, v = project(behind, zeros, OPENCV_FISHEYE)
    assert u.item() == pytest.approx(0.75 * math.pi)
    d = unproject(u, v, zeros, OPENCV_FISHEYE)
    assert d[2] < 0
    for camera_type in (PINHOLE, OPENCV, FULL_OPENCV):
        u, v = project(behind, zeros, camera_type)
        assert torch.isnan(u) and torch.isnan(v)


# ---------------------------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mixed_types_in_one_batch_match_single_type_calls(dtype):
    g = torch.Generator().manual_seed(11)
    n = 3000
    types = torch.randint(0, len(ALL_TYPES), (n,), generator=g)
    params = torch.zeros(n, 8, dtype=dtype)
    dirs = torch.zeros(n, 3, dtype=dtype)
    for camera_type in ALL_TYPES:
        mask = types == camera_type
        params[mask] = random_params(camera_type, int(mask.sum()), dtype, g)
        dirs[mask] = random_directions(int(mask.sum()), MAX_ANGLE[camera_type], dtype, g)
    # A (2, 1500) batch, to check that shapes other than (n,) come back unchanged.
    u, v = project(dirs.view(2, -1, 3), params.view(2, -1, 8), types.view(2, -1))
    assert u.shape == (2, n // 2)
    back = unproject(u, v, params.view(2, -1, 8), types.view(2, -1))
    assert back.shape == (2, n // 2, 3)
    torch.testing.assert_close(normalised(back).view(n, 3), dirs, rtol=0, atol=TOL[dtype])
    u, v, back = u.reshape(n), v.reshape(n), back.reshape(n, 3)
    for camera_type in ALL_TYPES:
        mask = types == camera_type
        u1, v1 = project(dirs[mask], params[mask], camera_type)
        torch.testing.assert_close(u[mask], u1, rtol=0, atol=0)
        torch.testing.assert_close(v[mask], v1, rtol=0, atol=0)
        torch.testing.assert_close(back[mask], unproject(u1, v1, params[mask], camera_type), rtol=0, atol=0)


def test_parameters_broadcast_against_the_points():
    params = torch.tensor([0.1, -0.05, 0.0, 0.0, 0.0, 0.0, 0.001, 0.0])
    u = torch.linspace(-0.4, 0.4, 12).view(3, 4)
    d = unproject(u, u.flip(0), params, OPENCV)  # one parameter vector, one type for a (3, 4) grid
    assert d.shape == (3, 4, 3) and d.dtype == torch.float32
    u2, v2 = project(d, params, torch.full((3, 4), OPENCV))
    torch.testing.assert_close(u2, u)
    torch.testing.assert_close(v2, u.flip(0))


def test_unknown_camera_type_raises_a_clear_error():
    u = torch.zeros(3)
    with pytest.raises(ValueError, match=r"unknown camera type.*\[7\].*PINHOLE=0"):
        unproject(u, u, torch.zeros(3, 8), torch.tensor([0, 7, 1]))
    with pytest.raises(ValueError, match=r"unknown camera type.*\[-1\]"):
        project(torch.ones(3, 3), torch.zeros(8), torch.tensor([-1, 0, 0]))
    # Through Cameras: the type is checked where the cameras are built.
    with pytest.raises(ValueError, match=r"unknown camera type.*\[9\].*PINHOLE=0"):
        Cameras(torch.eye(4)[None], 10.0, 10.0, 5.0, 5.0, 10, 10, camera_type=torch.tensor([9]))


# ---------------------------------------------------------------------------------------------------------------
# Through Cameras
# ---------------------------------------------------------------------------------------------------------------


def test_distorted_camera_rays_pass_through_the_points_they_image():
    """World points -> (by hand) OpenCV camera frame -> project -> pixels -> Cameras.rays: each ray must hit its
    point. Cameras: OPENCV, fisheye (seeing points up to 100 degrees off-axis) and a pinhole in one set."""
    dtype = torch.float64
    g = torch.Generator().manual_seed(12)
    eye = torch.tensor([[3.0, -2.0, 1.5], [-1.0, 4.0, 0.5], [0.5, 0.5, 5.0]], dtype=dtype)
    c2w = look_at(eye, torch.zeros(3, 3, dtype=dtype), torch.tensor([0.0, 0.0, 1.0], dtype=dtype))
    types = torch.tensor([OPENCV, OPENCV_FISHEYE, PINHOLE])
    dist = torch.stack([random_params(OPENCV, 1, dtype, g)[0], random_params(OPENCV_FISHEYE, 1, dtype, g)[0],
                        torch.zeros(8, dtype=dtype)])
    fx = torch.tensor([300.0, 150.0, 200.0], dtype=dtype)
    fy = torch.tensor([310.0, 150.0, 200.0], dtype=dtype)
    cams = Cameras(c2w, fx, fy, torch.tensor([320.5, 300.0, 320.0]), torch.tensor([240.0, 310.0, 240.0]), 640, 480,
                   camera_type=types, distortion=dist)

    n = 600
    idx = torch.arange(n) % 3
    # Points at random depths along random directions of each camera's cone (OpenCV camera frame) ...
    max_angle = torch.tensor([MAX_ANGLE[OPENCV], math.radians(100), math.radians(40)], dtype=dtype)[idx]
    theta = torch.rand(n, dtype=dtype, generator=g) * max_angle
    phi = 2 * math.pi * torch.rand(n, dtype=dtype, generator=g)
    dirs_cv = torch.stack([theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos()], -1)
    depth = 0.5 + 4 * torch.rand(n, dtype=dtype, generator=g)
    # ... placed in the world by the documented convention: OpenGL camera axes = (x, -y, -z) of OpenCV's.
    dirs_gl = dirs_cv * torch.tensor([1.0, -1.0, -1.0], dtype=dtype)
    points = (c2w[idx, :, :3] @ (depth[:, None] * dirs_gl)[..., None]).squeeze(-1) + c2w[idx, :, 3]

    # World -> camera by hand (R^T (p - t)), OpenGL -> OpenCV, then the lens model and the intrinsics.
    p_gl = (c2w[idx, :, :3].transpose(-1, -2) @ (points - c2w[idx, :, 3])[..., None]).squeeze(-1)
    p_cv = p_gl * torch.tensor([1.0, -1.0, -1.0], dtype=dtype)
    u, v = project(p_cv, dist[idx], types[idx])
    x, y = fx[idx] * u + cams.cx[idx], fy[idx] * v + cams.cy[idx]

    origins, rays = cams.rays(idx, x, y)
    assert origins.shape == rays.shape == (n, 3)
    torch.testing.assert_close(torch.linalg.vector_norm(rays, dim=-1), torch.ones(n, dtype=dtype))
    to_point = points - origins
    along = (to_point * rays).sum(-1)
    torch.testing.assert_close(along, depth)  # the point is in front, at its depth along the unit ray
    off_ray = torch.linalg.vector_norm(to_point - along[:, None] * rays, dim=-1)
    assert off_ray.max() < 1e-9
    assert (theta[idx == 1] > math.pi / 2).any()  # some fisheye points were behind the image plane

    # The pinhole camera in a distorted set gives the same rays as the undistorted path.
    pin = idx == 2
    o_ref, d_ref = rays_from_pixels(c2w[idx[pin]], fx[idx[pin]], fy[idx[pin]], cams.cx[idx[pin]], cams.cy[idx[pin]],
                                    x[pin], y[pin])
    torch.testing.assert_close(rays[pin], d_ref, rtol=0, atol=1e-14)
    torch.testing.assert_close(origins[pin], o_ref)
