import math

import pytest
import torch

from nerfkit.cameras import Cameras, look_at


def identity_camera(width=4, height=2, focal=2.0):
    c2w = torch.eye(4)[None, :3, :4].clone()
    return Cameras(c2w, focal, focal, width / 2, height / 2, width, height)


def test_identity_camera_gives_known_pixel_centre_rays():
    cams = identity_camera()
    origins, dirs = cams.image_rays(0)
    assert origins.shape == dirs.shape == (2, 4, 3)
    assert torch.all(origins == 0)
    # Pixel (column 0, row 0) has its centre at (0.5, 0.5): x = (0.5 - 2) / 2, y = -(0.5 - 1) / 2, z = -1.
    expected = torch.tensor([-0.75, 0.25, -1.0])
    torch.testing.assert_close(dirs[0, 0], expected / expected.norm())
    # Bottom-right pixel (3, 1): centre (3.5, 1.5).
    expected = torch.tensor([0.75, -0.25, -1.0])
    torch.testing.assert_close(dirs[1, 3], expected / expected.norm())
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(2, 4))


def test_rays_follow_camera_pose_and_translation():
    # Camera at (1, 2, 3) rotated 90 degrees about +y: its -z (forward) axis points along world -x.
    rot = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    c2w = torch.cat([rot, torch.tensor([[1.0], [2.0], [3.0]])], dim=1)[None]
    cams = Cameras(c2w, 10.0, 10.0, 5.0, 5.0, 10, 10)
    origins, dirs = cams.rays(torch.tensor([0]), torch.tensor([5.0]), torch.tensor([5.0]))  # principal point
    torch.testing.assert_close(origins[0], torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(dirs[0], torch.tensor([-1.0, 0.0, 0.0]))


def test_from_fov_matches_blender_focal():
    cams = Cameras.from_fov(torch.eye(4)[None], 800, 800, 0.6911112070083618)
    assert cams.fx.item() == pytest.approx(1111.1111, rel=1e-5)
    assert cams.cx.item() == 400.0
    half = cams.scaled(0.5)
    assert (half.width, half.height) == (400, 400)
    assert half.fx.item() == pytest.approx(555.5555, rel=1e-5)


def test_look_at_points_minus_z_at_target_with_orthonormal_frame():
    eye = torch.tensor([[3.0, -2.0, 1.5]])
    c2w = look_at(eye, torch.zeros(1, 3), torch.tensor([0.0, 0.0, 1.0]))
    rot = c2w[0, :, :3]
    torch.testing.assert_close(rot @ rot.T, torch.eye(3), atol=1e-6, rtol=0)
    forward = -rot[:, 2]
    torch.testing.assert_close(forward, -eye[0] / eye[0].norm())
    assert rot[2, 1] > 0  # camera up has a positive world-z component
    assert math.isclose(torch.linalg.det(rot).item(), 1.0, rel_tol=1e-5)


def test_bad_camera_shapes_are_rejected():
    with pytest.raises(ValueError, match="c2w"):
        Cameras(torch.eye(3)[None], 1.0, 1.0, 0.5, 0.5, 1, 1)
    with pytest.raises(ValueError, match="image size"):
        Cameras(torch.eye(4)[None], 1.0, 1.0, 0.5, 0.5, 0, 1)
