"""Tests for the real spherical-harmonics direction encoder."""

import math

import pytest
import torch

from nerfkit.encoders import SHEncoder


def _random_dirs(n: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, 3, generator=g, dtype=dtype)
    return v / v.norm(dim=-1, keepdim=True)


def _fibonacci_sphere(n: int) -> torch.Tensor:
    """``n`` near-uniform points on S^2 (equal-area cells, each of weight ``4 pi / n``)."""
    i = torch.arange(n, dtype=torch.float64)
    z = 1.0 - (2.0 * i + 1.0) / n
    r = torch.sqrt(1.0 - z * z)
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=-1)


def _band_slices(degree: int):
    return [(l, slice(l * l, (l + 1) * (l + 1))) for l in range(degree)]


def _reference_sh(dirs: torch.Tensor, degree: int) -> torch.Tensor:
    """Independent real SH (Condon-Shortley phase) from the associated-Legendre recurrence."""
    x, y, z = dirs.unbind(-1)
    ct = z
    st = torch.sqrt(torch.clamp(1.0 - z * z, min=0.0))
    phi = torch.atan2(y, x)
    cols = []
    for l in range(degree):
        for m in range(-l, l + 1):
            am = abs(m)
            # P_l^{|m|}(cos theta) with Condon-Shortley phase
            p_mm = (-1) ** am * math.prod(range(1, 2 * am, 2)) * st ** am
            if l == am:
                p = p_mm
            else:
                p_prev, p = p_mm, ct * (2 * am + 1) * p_mm
                for ll in range(am + 2, l + 1):
                    p_prev, p = p, ((2 * ll - 1) * ct * p - (ll + am - 1) * p_prev) / (ll - am)
            k = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - am) / math.factorial(l + am))
            if m == 0:
                cols.append(k * p)
            elif m > 0:
                cols.append(math.sqrt(2.0) * k * p * torch.cos(m * phi))
            else:
                cols.append(math.sqrt(2.0) * k * p * torch.sin(am * phi))
    return torch.stack(cols, dim=-1)


@pytest.mark.parametrize("degree", [1, 2, 3, 4])
def test_output_shape_and_out_dim(degree):
    enc = SHEncoder(degree)
    assert enc.out_dim == degree ** 2
    dirs = _random_dirs(2 * 5 * 7, dtype=torch.float32).reshape(2, 5, 7, 3)
    out = enc(dirs)
    assert out.shape == (2, 5, 7, degree ** 2)
    assert out.dtype == torch.float32
    assert enc(dirs[0, 0, 0]).shape == (degree ** 2,)
    assert enc(dirs.double()).dtype == torch.float64


def test_default_degree_is_instant_ngp():
    assert SHEncoder().out_dim == 16


@pytest.mark.parametrize("degree", [1, 2, 3, 4])
def test_orthonormal_fibonacci_quadrature(degree):
    n = 40_000
    y = SHEncoder(degree)(_fibonacci_sphere(n))
    gram = y.T @ y * (4.0 * math.pi / n)
    assert torch.allclose(gram, torch.eye(degree ** 2, dtype=torch.float64), atol=1e-3)


def test_orthonormal_monte_carlo():
    n = 200_000
    y = SHEncoder(4)(_random_dirs(n, seed=1))
    gram = y.T @ y * (4.0 * math.pi / n)
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=2e-2)


def test_parity_and_homogeneity_per_band():
    dirs = _random_dirs(500, seed=2)
    enc = SHEncoder(4)
    y, y_neg = enc(dirs), enc(-dirs)
    t = 1.7
    y_scaled = enc(t * dirs)
    for l, sl in _band_slices(4):
        torch.testing.assert_close(y_neg[:, sl], (-1) ** l * y[:, sl])
        torch.testing.assert_close(y_scaled[:, sl], t ** l * y[:, sl])


def test_band_energy_is_rotation_invariant():
    dirs = _random_dirs(1000, seed=3)
    y = SHEncoder(4)(dirs)
    for l, sl in _band_slices(4):
        energy = (y[:, sl] ** 2).sum(-1)
        torch.testing.assert_close(energy, torch.full_like(energy, (2 * l + 1) / (4.0 * math.pi)))


def test_rotation_acts_orthogonally_within_bands():
    """Y_l(R v) = D_l(R) Y_l(v) for an orthogonal D_l: fit D_l by least squares and check it."""
    dirs = _random_dirs(400, seed=4)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64))
    enc = SHEncoder(4)
    y, y_rot = enc(dirs), enc(dirs @ q.T)
    for l, sl in _band_slices(4):
        d = torch.linalg.lstsq(y[:, sl], y_rot[:, sl]).solution
        torch.testing.assert_close(y[:, sl] @ d, y_rot[:, sl])
        torch.testing.assert_close(d.T @ d, torch.eye(2 * l + 1, dtype=torch.float64))


def test_matches_reference_formula():
    dirs = _random_dirs(300, seed=6)
    torch.testing.assert_close(SHEncoder(4)(dirs), _reference_sh(dirs, 4))


def test_hand_computed_values():
    enc = SHEncoder(4)
    c0 = 0.28209479177387814
    c1 = 0.4886025119029199
    # north pole: only the m = 0 functions survive, Y_l0 = sqrt((2l + 1) / (4 pi))
    expected = torch.zeros(16, dtype=torch.float64)
    for l in range(4):
        expected[l * l + l] = math.sqrt((2 * l + 1) / (4.0 * math.pi))
    out = enc(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(out, expected)
    assert out[0].item() == pytest.approx(c0)
    assert out[2].item() == pytest.approx(c1)
    # +x axis
    out = enc(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    expected = torch.zeros(16, dtype=torch.float64)
    expected[0] = c0
    expected[3] = -c1
    expected[6] = -0.31539156525252005  # C2[2] * (2z^2 - x^2 - y^2)
    expected[8] = 0.5462742152960396  # C2[4] * (x^2 - y^2)
    expected[13] = 0.4570457994644658  # C3[4] * x (4z^2 - x^2 - y^2) = -C3[4]
    expected[15] = -0.5900435899266435  # C3[6] * x (x^2 - 3y^2)
    torch.testing.assert_close(out, expected)
    # +y axis, band 1
    out = enc(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(out[1:4], torch.tensor([-c1, 0.0, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("degree", [0, 5, -1, 2.0, True])
def test_bad_degree_raises(degree):
    with pytest.raises(ValueError, match="degree"):
        SHEncoder(degree)


@pytest.mark.parametrize("shape", [(4, 2), (4, 4), (3, 1), ()])
def test_bad_shape_raises(shape):
    with pytest.raises(ValueError, match="3"):
        SHEncoder(4)(torch.zeros(shape))


def test_gradients_flow_to_directions():
    dirs = _random_dirs(64, seed=7).requires_grad_(True)
    out = SHEncoder(4)(dirs)
    out.pow(2).sum().backward()  # depends on the directions through every band > 0
    assert dirs.grad is not None and torch.isfinite(dirs.grad).all()
    assert dirs.grad.abs().sum() > 0
    dirs64 = _random_dirs(8, seed=8).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda d: SHEncoder(4)(d), (dirs64,))
