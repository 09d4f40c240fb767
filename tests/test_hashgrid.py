"""HashGridEncoder (nerfkit.encoders.hashgrid): levels, indexing, interpolation and gradients against brute force, and
the Triton kernel (nerfkit.kernels.hashgrid_triton) and the compiled CPU loop (nerfkit.kernels.hashgrid_compiled)
against the torch reference.

Kernel tests run on CPU under Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1), or on CUDA.
"""

import math
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from nerfkit import kernels
from nerfkit.encoders import HashGridEncoder
from nerfkit.encoders.hashgrid import hash_grid_corners, hash_grid_encode, level_resolutions

PRIMES = (1, 2654435761, 805459861)
KERNELS_RUN = kernels.triton_available() and (torch.cuda.is_available() or kernels.triton_interpreting())
needs_triton = pytest.mark.skipif(not KERNELS_RUN, reason="triton is not importable, or there is neither a CUDA device "
                                  "nor TRITON_INTERPRET=1, so the Triton kernel cannot run here")
DEVICE = "cuda" if torch.cuda.is_available() and not kernels.triton_interpreting() else "cpu"

# tiny configs with T = 2^6 = 64 rows per level: dense levels (one exactly at (N+1)^D = T) and hashed ones
TINY3 = dict(in_dim=3, n_levels=4, base_resolution=2, per_level_scale=1.5, log2_hashmap_size=6)  # N = 2, 3, 4, 6
TINY2 = dict(in_dim=2, n_levels=3, base_resolution=3, per_level_scale=2.5, log2_hashmap_size=6)  # N = 3, 7, 18


def tiny_encoder(cfg, n_features=2, dtype=torch.float64, seed=0):
    enc = HashGridEncoder(n_features_per_level=n_features, init_scale=1.0, **cfg).to(dtype)
    enc.reset_parameters(torch.Generator().manual_seed(seed))
    return enc


def test_level_resolutions_and_table_sizes_for_known_configs():
    enc = HashGridEncoder(n_levels=4, base_resolution=16, per_level_scale=2.0, log2_hashmap_size=15)
    assert enc.level_resolutions == [16, 32, 64, 128]
    # 17^3 = 4913 <= 2^15 = 32768 < 33^3 = 35937: level 0 dense, the rest hashed into T rows
    assert enc.level_sizes == [4913, 32768, 32768, 32768] and enc.n_dense == 1
    assert enc.offsets.tolist() == [0, 4913, 37681, 70449, 103217]
    assert enc.embeddings.shape == (103217, 2) and enc.out_dim == 8

    enc = HashGridEncoder(n_levels=4, base_resolution=4, max_resolution=32, log2_hashmap_size=12)  # b = 2
    assert enc.per_level_scale == pytest.approx(2.0) and enc.level_resolutions == [4, 8, 16, 32]
    assert enc.level_sizes == [125, 729, 4096, 4096] and enc.n_dense == 2  # 9^3 = 729, 17^3 = 4913 > 4096

    enc = HashGridEncoder(in_dim=2, **{k: v for k, v in TINY2.items() if k != "in_dim"})
    assert enc.level_resolutions == [3, 7, 18] and enc.level_sizes == [16, 64, 64] and enc.n_dense == 2

    res, b = level_resolutions(16, 16, 2048)  # Instant-NGP's default: b = 2^(7/15)
    assert b == pytest.approx(2 ** (7 / 15)) and res[0] == 16 and res[-1] == 2048
    assert res[8] == 212  # 16 * 2^(56/15) = 212.797
    assert level_resolutions(2, 1, 64)[0] == [1, 64]  # 1 * 64^1 is 63.99999999999998 in floating point
    assert HashGridEncoder(n_levels=1, base_resolution=8, max_resolution=8).level_resolutions == [8]
    assert HashGridEncoder().embeddings.abs().max() <= 1e-4  # init_scale


def test_invalid_arguments_raise_value_error():
    for kwargs in (dict(in_dim=1), dict(in_dim=4), dict(n_levels=0), dict(base_resolution=64, max_resolution=32),
                   dict(log2_hashmap_size=0), dict(per_level_scale=0.5)):
        with pytest.raises(ValueError):
            HashGridEncoder(**kwargs)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        HashGridEncoder(n_levels=2, log2_hashmap_size=8)(torch.rand(4, 2))


# --------------------------------------------------------------------------------------------------- brute force


def brute_force(point, enc):
    """Per level: [(row, weight)] of the 2^D corners (corner c = offsets (c & 1, c >> 1 & 1, ...)) and the features,
    from the conventions spelled out in nerfkit.encoders.hashgrid, in Python floats and ints."""
    table, size = enc.embeddings.detach().double().tolist(), 2 ** enc.log2_hashmap_size
    corners, feats = [], []
    for level, n in enumerate(enc.level_resolutions):
        pos = [min(max(v, 0.0), 1.0) * n for v in point]
        i0 = [min(math.floor(p), n - 1) for p in pos]
        frac = [p - i for p, i in zip(pos, i0)]
        level_corners = []
        for c in range(2 ** enc.in_dim):
            bits = [(c >> d) & 1 for d in range(enc.in_dim)]
            v = [i + b for i, b in zip(i0, bits)]
            if (n + 1) ** enc.in_dim <= size:
                row = sum(vd * (n + 1) ** d for d, vd in enumerate(v))
            else:
                h = 0
                for vd, prime in zip(v, PRIMES):
                    h ^= vd * prime
                row = h % size
            weight = math.prod(f if b else 1.0 - f for f, b in zip(frac, bits))
            level_corners.append((enc.offsets[level].item() + row, weight))
        corners.append(level_corners)
        feats += [sum(w * table[r][f] for r, w in level_corners) for f in range(enc.n_features_per_level)]
    return corners, feats


def probe_points(in_dim, generator, n_random=6):
    special = [[0.0] * in_dim, [1.0] * in_dim, [0.5] * in_dim, [1.0, 0.0, 1.0][:in_dim], [1 / 3, 0.7, 0.999][:in_dim],
               [-0.3, 1.2, 0.4][:in_dim], [2.0, -1.0, 0.25][:in_dim]]  # the last two are clamped
    return torch.cat([torch.tensor(special, dtype=torch.float64),
                      torch.rand(n_random, in_dim, generator=generator, dtype=torch.float64)])


@pytest.mark.parametrize("cfg", [TINY3, TINY2], ids=["3d", "2d"])
def test_corner_rows_weights_and_features_match_brute_force(cfg):
    enc = tiny_encoder(cfg, n_features=3)
    x = probe_points(enc.in_dim, torch.Generator().manual_seed(1))
    rows, weights = hash_grid_corners(x, enc.offsets, enc.resolutions, enc.log2_hashmap_size)
    out = enc(x)
    assert 0 < enc.n_dense < enc.n_levels  # dense and hashed levels
    for p, point in enumerate(x.tolist()):
        corners, feats = brute_force(point, enc)
        assert rows[p].tolist() == [[r for r, _ in level] for level in corners]
        torch.testing.assert_close(weights[p], torch.tensor([[w for _, w in level] for level in corners],
                                                            dtype=torch.float64), rtol=0, atol=1e-15)
        torch.testing.assert_close(out[p], torch.tensor(feats, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    # each level's rows stay inside its own block of the table
    lo, hi = enc.offsets[:-1, None, None], enc.offsets[1:, None, None]
    assert ((rows.transpose(0, 1) >= lo) & (rows.transpose(0, 1) < hi)).all()


def test_interpolation_is_exact_at_grid_vertices():
    enc = tiny_encoder(TINY3)
    g = torch.Generator().manual_seed(2)
    for level, n in enumerate(enc.level_resolutions):
        vertices = torch.randint(0, n + 1, (8, 3), generator=g)
        vertices[0], vertices[1] = 0, n  # the corners of the unit cube, x = 1 included
        out = enc(vertices.double() / n)[:, level * 2:(level + 1) * 2]
        for vertex, feat in zip(vertices.tolist(), out):
            corners, _ = brute_force([v / n for v in vertex], enc)
            (row,) = [r for r, w in corners[level] if w > 0.5]
            torch.testing.assert_close(feat, enc.embeddings[row].detach(), rtol=0, atol=1e-12)


def test_interpolation_is_continuous_across_cell_faces():
    enc = tiny_encoder(TINY3)
    g = torch.Generator().manual_seed(3)
    for level, n in enumerate(enc.level_resolutions):
        for d in range(3):
            x = torch.rand(6, 3, generator=g, dtype=torch.float64)
            x[:, d] = torch.randint(1, n, (6,), generator=g).double() / n  # on an inner face of this level
            below, above = x.clone(), x.clone()
            below[:, d] -= 1e-9
            above[:, d] += 1e-9
            jump = (enc(below) - enc(above)).abs().max()
            assert jump < 1e-6, (level, d, jump)  # features are O(1) (init_scale=1): a wrong corner would show


def test_output_shape_dtype_and_clamping():
    enc = HashGridEncoder(n_levels=3, n_features_per_level=4, log2_hashmap_size=8, base_resolution=2,
                          max_resolution=8)
    x = torch.rand(2, 5, 3)
    out = enc(x)
    assert out.shape == (2, 5, 12) and out.dtype == torch.float32 and enc.out_dim == 12
    assert enc(torch.zeros(0, 3)).shape == (0, 12)
    assert enc(x.double()).dtype == torch.float32  # the table's dtype
    assert enc.double()(x).dtype == torch.float64
    outside = torch.tensor([[-0.5, 0.3, 1.5], [2.0, -1e-3, 0.5], [1.0 + 1e-6, 0.2, -7.0]], dtype=torch.float64)
    torch.testing.assert_close(enc(outside), enc(outside.clamp(0, 1)), rtol=0, atol=0)
    outside.requires_grad_(True)
    (grad,) = torch.autograd.grad(enc(outside).sum(), outside)
    assert (grad[(outside < 0) | (outside > 1)] == 0).all()


def test_table_gradient_equals_brute_force_weights():
    """A one-hot output gradient (point p, level l, feature f) puts the corners' weights in column f of their rows
    (summed where corners share a row)."""
    enc = tiny_encoder(TINY3)
    x = probe_points(3, torch.Generator().manual_seed(4), n_random=3)
    out = enc(x)
    for p, level, f in [(0, 0, 0), (1, 3, 1), (3, 2, 0), (4, 1, 1), (6, 2, 1), (8, 3, 0), (9, 1, 0)]:
        grad_out = torch.zeros_like(out)
        grad_out[p, level * 2 + f] = 1.0
        (grad,) = torch.autograd.grad(out, enc.embeddings, grad_out, retain_graph=True)
        want = torch.zeros_like(grad)
        for row, w in brute_force(x[p].tolist(), enc)[0][level]:
            want[row, f] += w
        torch.testing.assert_close(grad, want, rtol=0, atol=1e-15)


@pytest.mark.parametrize("cfg", [TINY3, TINY2], ids=["3d", "2d"])
def test_reference_passes_gradcheck(cfg):
    enc = tiny_encoder(cfg)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(64, enc.in_dim, generator=g, dtype=torch.float64)
    # positions at least 1e-3 away from every level's cell faces, where the encoding is smooth
    pos = x[:, None, :] * enc.resolutions.double()[:, None]
    x = x[((pos - pos.round()).abs() > 1e-3).flatten(1).all(1)][:5]
    assert len(x) == 5
    x.requires_grad_(True)
    table = enc.embeddings.detach().clone().requires_grad_(True)

    def fn(points, emb):
        return hash_grid_encode(points, emb, enc.offsets, enc.resolutions, enc.log2_hashmap_size)

    assert torch.autograd.gradcheck(fn, (x, table), eps=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------ compiled loop (CPU fast path)


def compiled_or_skip(fn):
    """``fn()``, skipped where this machine cannot compile (the encoder then warns and uses the reference)."""
    from nerfkit.kernels import hashgrid_compiled

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    if not hashgrid_compiled.compiled_encoding_available():
        pytest.skip(f"torch.compile cannot build the fused loop here: {[str(w.message) for w in caught]}")
    return out


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # from torch.compile's own imports
@pytest.mark.parametrize("cfg,n_features,dtype", [(TINY3, 2, torch.float32), (TINY2, 3, torch.float64)],
                         ids=["3d-f2-fp32", "2d-f3-fp64"])
def test_compiled_loop_matches_reference(cfg, n_features, dtype):
    """Forward and the table's gradient, on 700 points (some outside [0, 1], the cube's corners, shared rows and
    hash collisions), against :func:`hash_grid_encode`; two batch sizes through one compiled graph."""
    from nerfkit.kernels.hashgrid_compiled import hash_grid_encode_compiled

    enc = tiny_encoder(cfg, n_features, dtype)
    g = torch.Generator().manual_seed(11)
    for n in (700, 301):
        x = torch.rand(n, enc.in_dim, generator=g, dtype=dtype) * 1.2 - 0.1
        x[0], x[1] = 0.0, 1.0
        grad_out = torch.randn(n, enc.out_dim, generator=g, dtype=dtype)
        args = (enc.offsets, enc.resolutions, enc.log2_hashmap_size)
        table = enc.embeddings.detach().clone().requires_grad_(True)
        out = compiled_or_skip(lambda: hash_grid_encode_compiled(x, table, *args))
        out.backward(grad_out)
        ref_table = enc.embeddings.detach().clone().requires_grad_(True)
        ref = hash_grid_encode(x, ref_table, *args)
        ref.backward(grad_out)
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
        assert out.dtype == dtype and out.shape == (n, enc.out_dim)
        torch.testing.assert_close(out, ref, **tol)
        torch.testing.assert_close(table.grad, ref_table.grad, **tol)
        assert table.grad.abs().sum() > 0


def test_folded_level_order_alternates_fine_and_coarse():
    """The compiled loops visit the levels finest, coarsest, second finest, ...: every level once, and each half
    of the order (what each of 2 threads gets) holds half the levels with a similar sum of level indices."""
    from nerfkit.kernels.hashgrid_compiled import folded_order

    assert folded_order(1) == [0] and folded_order(2) == [1, 0] and folded_order(3) == [2, 0, 1]
    assert folded_order(8) == [7, 0, 6, 1, 5, 2, 4, 3]
    for n in range(1, 20):
        order = folded_order(n)
        assert sorted(order) == list(range(n))
        if n % 4 == 0:  # 2 equal halves: level sums within one pair of each other
            first, second = sum(order[:n // 2]), sum(order[n // 2:])
            assert abs(first - second) <= n // 2 and first + second == n * (n - 1) // 2
    # coarse to fine, the first half held the n/2 coarsest levels: sums 6 and 22 for 8 levels
    assert sum(folded_order(8)[:4]) == 14


def test_loop_constants_are_derived_once_per_encoder_configuration():
    """The compiled loops' per-level constants are computed once per (offsets, resolutions, dimension, table size)
    and are the reference's constants in the folded order; another configuration gets its own."""
    from nerfkit.kernels.hashgrid_compiled import _level_constants, _loop_constants, folded_order

    a = HashGridEncoder(3, 4, 2, 10, 4, 64)
    b = HashGridEncoder(3, 4, 2, 12, 4, 64)
    key = (tuple(a.offsets.tolist()), tuple(a.resolutions.tolist()), 3, 10, torch.device("cpu"))
    const = _loop_constants(*key)
    assert _loop_constants(*key) is const
    other = _loop_constants(tuple(b.offsets.tolist()), tuple(b.resolutions.tolist()), 3, 12, torch.device("cpu"))
    assert other is not const and other.sizes != const.sizes
    mult, hashed, offs = _level_constants(a.offsets, a.resolutions, 3, 10)
    order = torch.tensor(folded_order(4))
    assert const.order_list == folded_order(4) and torch.equal(const.order, order)
    assert torch.equal(const.inverse[order], torch.arange(4))
    for got, want in ((const.resolutions, a.resolutions), (const.mult, mult), (const.hashed, hashed),
                      (const.offsets, offs)):
        assert torch.equal(got, want[order])
    assert const.sizes == a.level_sizes


def test_compiled_loop_rows_use_reduced_primes_in_int32_where_they_fit():
    """The fused loops hash with the primes' low bits (32-bit products): the same rows as the reference's full
    64-bit products, on fine hashed levels where those exceed 2^32; int64 where 32 bits could overflow."""
    from nerfkit.kernels.hashgrid_compiled import _cells_t, _corner, _level_constants

    resolutions = torch.tensor([4, 300, 4096])
    log2 = 10
    sizes = [min((int(r) + 1) ** 3, 2 ** log2) for r in resolutions]
    offsets = torch.tensor([0, *torch.tensor(sizes).cumsum(0).tolist()])
    mult, hashed, offs = _level_constants(offsets, resolutions, 3, log2)
    assert mult.dtype == offs.dtype == torch.int32 and hashed.tolist() == [False, True, True]
    x = torch.rand(500, 3, generator=torch.Generator().manual_seed(3))
    x[0] = 1.0
    cell, frac = _cells_t(x.t().contiguous(), resolutions, mult.dtype)
    ref_rows, ref_w = hash_grid_corners(x, offsets, resolutions, log2)
    for c in range(8):
        rows, w = _corner(cell, frac, c, mult[:, None], hashed[:, None], offs[:, None], 2 ** log2 - 1)
        assert torch.equal(rows.t().long(), ref_rows[:, :, c].long())
        torch.testing.assert_close(w.t(), ref_w[:, :, c])
    # 2048 * (2^24 - 1) does not fit 32 bits
    big = torch.tensor([16, 2048])
    mult, _, offs = _level_constants(torch.tensor([0, 17 ** 3, 17 ** 3 + 2 ** 24]), big, 3, 24)
    assert mult.dtype == offs.dtype == torch.int64


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_encoder_takes_the_compiled_loop_only_where_it_applies(monkeypatch):
    """compile=True: the fused loop for batches of MIN_POINTS or more whose positions need no gradient; the
    reference (with the positions' gradient) otherwise."""
    from nerfkit.kernels import hashgrid_compiled

    calls = []
    monkeypatch.setattr(hashgrid_compiled, "hash_grid_encode_compiled",
                        lambda *a, _f=hashgrid_compiled.hash_grid_encode_compiled: calls.append(a[0].shape) or _f(*a))
    enc = tiny_encoder(TINY3, dtype=torch.float32)
    enc.compile = True
    x = torch.rand(2, 300, 3)  # (..., 3) batches are flattened
    out = compiled_or_skip(lambda: enc(x))
    assert calls == [(600, 3)] and out.shape == (2, 300, 8)
    enc(x[:, :10])  # small: the reference
    x.requires_grad_(True)
    enc(x).sum().backward()  # positions need a gradient: the reference
    assert calls == [(600, 3)] and x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_compiled_backward_runs_on_the_calling_thread(monkeypatch):
    """The table gradient starts no thread and hands no work to a thread pool: Python threads that start OpenMP
    regions make libgomp put its idle workers to sleep in every operator of the process (a lego training step
    took 91 instead of 77 ms with the levels on a thread pool)."""
    enc = tiny_encoder(TINY3, dtype=torch.float32)
    enc.compile = True
    x = torch.rand(600, 3)
    compiled_or_skip(lambda: enc(x).sum().backward())  # compiles first (the compiler may use threads)
    handed = []
    monkeypatch.setattr(threading.Thread, "start", lambda self, _f=threading.Thread.start: handed.append(self)
                        or _f(self))
    monkeypatch.setattr(ThreadPoolExecutor, "submit", lambda self, *a, _f=ThreadPoolExecutor.submit, **k:
                        handed.append(a) or _f(self, *a, **k))
    enc.embeddings.grad = None
    enc(x).sum().backward()
    assert enc.embeddings.grad.abs().sum() > 0 and handed == []


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_encoder_takes_an_encoding_from_a_gradient_free_pass_and_computes_only_its_gradient():
    """``encoder(x, encoded)`` on the fused loop: ``encoded`` is the output (not recomputed) and the table gets
    the gradient of ``encoder(x)``; where the loop does not run (a small batch) ``encoded`` is ignored; a
    wrongly shaped one is refused by name."""
    enc = tiny_encoder(TINY3, dtype=torch.float32)
    enc.compile = True
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 300, 3, generator=g)
    grad_out = torch.randn(2, 300, enc.out_dim, generator=g)
    with torch.no_grad():
        encoded = compiled_or_skip(lambda: enc(x))
    assert enc.takes_encoded(x)
    plain = enc(x)
    plain.backward(grad_out)
    expected, enc.embeddings.grad = enc.embeddings.grad.clone(), None
    out = enc(x, encoded)
    out.backward(grad_out)
    assert torch.equal(out, plain) and torch.equal(enc.embeddings.grad, expected)
    assert torch.equal(enc(x, encoded + 1.0), encoded + 1.0)  # taken as given: the loop did not run
    small = x[:, :10]
    assert not enc.takes_encoded(small)
    assert torch.equal(enc(small, torch.zeros(2, 10, enc.out_dim)), enc(small))
    with pytest.raises(ValueError, match="encoded has shape"):
        enc(x, encoded[:, :5])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_compiled_loop_given_wrong_inputs_raises_their_error_and_stays_on():
    """A caller's mistake (mismatched shapes) is reported as the function's own error, not taken for a compiler
    failure that would turn the fast path off for the rest of the process."""
    from nerfkit.kernels.compiled import CompiledLoop

    def add(a, b):
        return a * 2.0 + b

    loop = CompiledLoop(add, "a test loop")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = loop(torch.ones(300, 3), torch.ones(300, 3))
    if out is None:
        pytest.skip(f"torch.compile cannot build C++ here: {[str(w.message) for w in caught]}")
    assert torch.equal(out, torch.full((300, 3), 3.0))
    with pytest.raises(RuntimeError, match="must match the size"):
        loop(torch.ones(300, 3), torch.ones(200, 3))
    assert loop.available and torch.equal(loop(torch.ones(50, 3), torch.ones(50, 3)), torch.full((50, 3), 3.0))


def fails_to_compile(*args):
    raise torch._dynamo.exc.TorchDynamoException("no C++ compiler found")


def fresh_compiled_encoding(monkeypatch, compile_fn):
    """New, not yet compiled loops of the hash encoding, which ``compile_fn`` (standing for torch.compile)
    will build at their first call."""
    from nerfkit.kernels import compiled, hashgrid_compiled

    monkeypatch.setattr(torch, "compile", compile_fn)
    forward = compiled.CompiledLoop(hashgrid_compiled._forward, "the compiled hash encoding")
    monkeypatch.setattr(hashgrid_compiled, "_FORWARD", forward)
    monkeypatch.setattr(hashgrid_compiled, "_BACKWARD", compiled.CompiledLoop(
        hashgrid_compiled._backward_terms, "the compiled hash encoding", group=forward))


def test_compiler_failure_warns_once_and_falls_back(monkeypatch):
    from nerfkit.kernels import hashgrid_compiled

    fresh_compiled_encoding(monkeypatch, lambda fn, **kwargs: fails_to_compile)
    enc = tiny_encoder(TINY3, dtype=torch.float32)
    enc.compile = True
    x = torch.rand(400, 3)
    with pytest.warns(RuntimeWarning, match="compiled hash encoding is unavailable.*no C\\+\\+ compiler"):
        out = enc(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        again = enc(x)
    ref = hash_grid_encode(x, enc.embeddings, enc.offsets, enc.resolutions, enc.log2_hashmap_size)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(again, ref)
    assert not hashgrid_compiled.compiled_encoding_available()


def test_a_backward_that_fails_to_compile_still_gives_the_table_gradient(monkeypatch):
    """Inductor builds the backward loop at the first backward pass: a failure there warns once, this pass computes
    the same terms eagerly, and the whole compiled encoding (forward too) turns off."""
    from nerfkit.kernels import hashgrid_compiled

    # the forward loop runs uncompiled; the backward's compilation fails
    fresh_compiled_encoding(monkeypatch, lambda fn, **kwargs: fails_to_compile
                            if fn is hashgrid_compiled._backward_terms else fn)
    enc = tiny_encoder(TINY3, dtype=torch.float32)
    enc.compile = True
    x, grad_out = torch.rand(400, 3), torch.randn(400, enc.out_dim)
    with pytest.warns(RuntimeWarning, match="compiled hash encoding is unavailable.*no C\\+\\+ compiler"):
        (enc(x) * grad_out).sum().backward()
    assert not hashgrid_compiled.compiled_encoding_available()
    table = enc.embeddings.detach().clone().requires_grad_(True)
    ref = hash_grid_encode(x, table, enc.offsets, enc.resolutions, enc.log2_hashmap_size)
    (ref * grad_out).sum().backward()
    torch.testing.assert_close(enc.embeddings.grad, table.grad)


# ---------------------------------------------------------------------------------------------------------- Triton


def values_and_grads(fn, x, table, grad_out):
    """fn(x, table), and the gradients of sum(out * grad_out) w.r.t. the table and x."""
    x, table = x.detach().clone().requires_grad_(True), table.detach().clone().requires_grad_(True)
    out = fn(x, table)
    grad_table, grad_x = torch.autograd.grad(out, (table, x), grad_out)
    return out.detach(), grad_table, grad_x


@needs_triton
@pytest.mark.parametrize("cfg,n_features,dtype,block", [
    (TINY3, 2, torch.float32, None), (TINY3, 3, torch.float64, 8), (TINY3, 1, torch.float32, 16),
    (TINY2, 2, torch.float32, None), (TINY2, 4, torch.float64, 32),
], ids=["3d-f2-fp32", "3d-f3-fp64", "3d-f1-fp32", "2d-f2-fp32", "2d-f4-fp64"])
def test_triton_matches_reference(monkeypatch, cfg, n_features, dtype, block):
    """block None: HashGridEncoder.forward with NERFKIT_KERNELS=triton; else the kernel wrapper at that block size
    (45 points: a partial last block)."""
    from nerfkit.kernels.hashgrid_triton import hash_grid_encode_triton

    enc = tiny_encoder(cfg, n_features, dtype).to(DEVICE)
    g = torch.Generator().manual_seed(7)
    x = (torch.rand(45, enc.in_dim, generator=g, dtype=dtype) * 1.2 - 0.1).to(DEVICE)  # some outside [0, 1]
    x[0], x[1] = 0.0, 1.0
    grad_out = torch.randn(45, enc.out_dim, generator=g, dtype=dtype).to(DEVICE)
    rows, _ = hash_grid_corners(x.double(), enc.offsets, enc.resolutions, enc.log2_hashmap_size)
    hashed_rows = rows[:, enc.n_dense:].flatten()
    assert hashed_rows.unique().numel() < hashed_rows.numel()  # rows shared by several points / collisions
    args = (enc.offsets, enc.resolutions, enc.log2_hashmap_size)

    monkeypatch.setenv(kernels.ENV_VAR, "torch")
    want = values_and_grads(lambda p, t: hash_grid_encode(p, t, *args), x, enc.embeddings, grad_out)
    monkeypatch.setenv(kernels.ENV_VAR, "triton")
    if block is None:
        got = values_and_grads(lambda p, t: torch.func.functional_call(enc, {"embeddings": t}, (p,)), x,
                               enc.embeddings, grad_out)
    else:
        got = values_and_grads(lambda p, t: hash_grid_encode_triton(p, t, *args, block=block), x, enc.embeddings,
                               grad_out)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    for a, b, name in zip(got, want, ("output", "table gradient", "position gradient")):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        torch.testing.assert_close(a, b, **tol, msg=lambda m, name=name: f"{name}: {m}")


@needs_triton
def test_forward_takes_the_selected_path(monkeypatch):
    from nerfkit.kernels import hashgrid_triton

    calls = []
    monkeypatch.setattr(hashgrid_triton, "hash_grid_encode_triton",
                        lambda *a, _f=hashgrid_triton.hash_grid_encode_triton, **k: calls.append(1) or _f(*a, **k))
    enc = tiny_encoder(TINY3, dtype=torch.float32).to(DEVICE)
    x = torch.rand(3, 3, device=DEVICE)
    monkeypatch.setenv(kernels.ENV_VAR, "torch")
    enc(x)
    assert calls == []
    monkeypatch.setenv(kernels.ENV_VAR, "triton")
    assert enc(torch.zeros(0, 3, device=DEVICE)).shape == (0, 8)
    x.requires_grad_(True)
    enc(x).sum().backward()
    assert calls == [1, 1] and x.grad.shape == (3, 3) and enc.embeddings.grad is not None
