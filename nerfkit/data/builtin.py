"""nerfkit's built-in procedural scene: analytic objects, ray-traced by nerfkit, written as a Blender dataset.

The scene lives in the box ``[-1, 1]^3`` (world ``+z`` up, as in Blender): a round platform carrying a shiny
sphere, a striped rounded box, a torus lying flat and a capsule, each with a smooth low-frequency texture,
lit by ambient light and two directional lights (Lambert), with a view-dependent Blinn-Phong highlight on the
sphere. Rendering is vectorised SDF sphere tracing with supersampled anti-aliasing; the background is
transparent, so the dataset behaves like a Blender RGBA scene. Everything is float32 CPU math with a local
seeded generator: the same config always gives byte-identical files."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..cameras import Cameras, look_at
from ..sampling import ray_aabb_intersect
from .images import write_image

__all__ = ["BuiltinSceneConfig", "SCENE_AABB", "SCENE_VERSION", "builtin_cameras", "render_builtin_view",
           "scene_sdf", "write_builtin_scene", "ensure_builtin_scene"]

SCENE_VERSION = 2
"""Bump whenever the rendered content changes: it is part of the cache key."""
SCENE_AABB = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)


@dataclass
class BuiltinSceneConfig:
    """The built-in procedural scene (rendered by nerfkit on first use, then cached)."""

    resolution: int = 80
    """Image width and height in pixels."""
    n_train: int = 100
    """Number of training views (random poses on the upper hemisphere)."""
    n_val: int = 8
    """Number of validation views (random poses, drawn independently of the training ones)."""
    n_test: int = 12
    """Number of test views (a ring of held-out novel views around the scene)."""
    seed: int = 0
    """Seed of the random training/validation camera poses."""
    camera_distance: float = 4.0
    """Distance of every camera from the scene centre (must stay outside the scene box, > sqrt(3))."""
    camera_angle_x: float = 0.6911112070083618
    """Horizontal field of view in radians (the Blender lego scene's)."""
    supersample: int = 2
    """Sub-pixel rays per pixel along each axis, for anti-aliased edges (2 means 2x2 rays per pixel)."""

    def __post_init__(self) -> None:
        for name in ("resolution", "n_train", "n_val", "n_test", "supersample"):
            if getattr(self, name) < 1:
                raise ValueError(f"--data.builtin.{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.camera_distance > math.sqrt(3.0):
            raise ValueError("--data.builtin.camera-distance must keep the cameras outside the scene box "
                             f"(> 1.74), got {self.camera_distance}")
        if not 0.0 < self.camera_angle_x < math.pi:
            raise ValueError(f"--data.builtin.camera-angle-x must be in (0, pi) radians, got {self.camera_angle_x}")


# ---------------------------------------------------------------------------------------------------------
# Geometry. Every object is an exact signed distance function of points (..., 3) -> (...), so their minimum
# never overestimates the distance to the scene and sphere tracing cannot step through a surface.

_TOP = -0.52                        # the platform's top face; objects stand on it, sunk in by _SINK so that no
_SINK = 0.03                        # surfaces touch tangentially (thin crevices stall sphere tracing)
_PLATE_C, _PLATE_R, _PLATE_H, _PLATE_ROUND = (0.0, 0.0, -0.6), 0.93, 0.08, 0.03
_SPHERE_C, _SPHERE_R = (0.3, 0.25, _TOP - _SINK + 0.52), 0.52
_BOX_C, _BOX_HALF, _BOX_ROUND, _BOX_ANGLE = (-0.38, -0.2, _TOP - _SINK + 0.42), (0.27, 0.27, 0.42), 0.08, 25.0
_TORUS_C, _TORUS_R, _TORUS_r = (0.3, -0.52, _TOP - _SINK + 0.12), 0.3, 0.12
_CAPSULE_A, _CAPSULE_B, _CAPSULE_r = (-0.42, 0.46, _TOP - _SINK + 0.22), (-0.42, 0.46, 0.36), 0.22
OBJECT_NAMES = ("platform", "sphere", "box", "torus", "capsule")


def _local(p: Tensor, centre: tuple, angle_deg: float = 0.0) -> Tensor:
    """Points ``(..., 3)`` in an object's frame: translated to ``centre``, rotated by ``-angle`` about ``z``."""
    q = p - torch.tensor(centre, dtype=p.dtype)
    if angle_deg == 0.0:
        return q
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    x, y, z = q.unbind(-1)
    return torch.stack([c * x + s * y, -s * x + c * y, z], dim=-1)


def _length2(a: Tensor, b: Tensor) -> Tensor:
    return torch.sqrt(a * a + b * b)


def _object_sdfs(p: Tensor) -> Tensor:
    """Signed distances ``(..., 5)`` from points ``(..., 3)`` to each object, in ``OBJECT_NAMES`` order."""
    q = _local(p, _PLATE_C)                                   # rounded cylinder
    dr = _length2(q[..., 0], q[..., 1]) - (_PLATE_R - _PLATE_ROUND)
    dz = q[..., 2].abs() - (_PLATE_H - _PLATE_ROUND)
    plate = (_length2(dr.clamp_min(0), dz.clamp_min(0)) + torch.maximum(dr, dz).clamp_max(0)) - _PLATE_ROUND

    sphere = torch.linalg.vector_norm(_local(p, _SPHERE_C), dim=-1) - _SPHERE_R

    q = _local(p, _BOX_C, _BOX_ANGLE).abs() - (torch.tensor(_BOX_HALF, dtype=p.dtype) - _BOX_ROUND)
    box = torch.linalg.vector_norm(q.clamp_min(0), dim=-1) + q.amax(-1).clamp_max(0) - _BOX_ROUND

    q = _local(p, _TORUS_C)                                   # a ring lying flat on the platform
    torus = _length2(_length2(q[..., 0], q[..., 1]) - _TORUS_R, q[..., 2]) - _TORUS_r

    a, b = torch.tensor(_CAPSULE_A, dtype=p.dtype), torch.tensor(_CAPSULE_B, dtype=p.dtype)
    h = ((p - a) @ (b - a) / (b - a).dot(b - a)).clamp(0, 1)
    capsule = torch.linalg.vector_norm(p - a - h[..., None] * (b - a), dim=-1) - _CAPSULE_r
    return torch.stack([plate, sphere, box, torus, capsule], dim=-1)


def scene_sdf(p: Tensor) -> Tensor:
    """Signed distance ``(...)`` from points ``(..., 3)`` to the scene's surface (negative inside objects)."""
    return _object_sdfs(p).amin(-1)


def _normals(p: Tensor, eps: float = 5e-4) -> Tensor:
    """Unit outward normals ``(n, 3)`` at points ``(n, 3)``: central differences of the SDF."""
    offsets = torch.eye(3, dtype=p.dtype) * eps
    grad = torch.stack([scene_sdf(p + o) - scene_sdf(p - o) for o in offsets], dim=-1)
    return grad / torch.linalg.vector_norm(grad, dim=-1, keepdim=True).clamp_min(1e-12)


# ---------------------------------------------------------------------------------------------------------
# Appearance: smooth textures (a few sinusoid periods per object at most), Lambert + Blinn-Phong shading.

def _platform_albedo(x: Tensor, y: Tensor, z: Tensor) -> tuple:
    ring = 0.08 * torch.cos(3.5 * _length2(x, y))            # warm beige with soft concentric rings
    return 0.7 + ring + 0.05 * torch.sin(2.0 * x + 1.0), 0.66 + ring, 0.58 + ring + 0.05 * torch.cos(2.0 * y)


def _sphere_albedo(x: Tensor, y: Tensor, z: Tensor) -> tuple:
    return (0.8 + 0.1 * torch.sin(4.0 * z), 0.22 + 0.14 * torch.sin(3.5 * x + 2.0 * y),  # red-orange
            0.16 + 0.06 * torch.cos(3.0 * y))


def _box_albedo(x: Tensor, y: Tensor, z: Tensor) -> tuple:
    stripe = 0.5 + 0.5 * torch.sin(14.0 * z + 3.0 * x)       # ~2 broad, slanted, smooth stripes up the box
    return 0.2 + 0.3 * stripe, 0.32 + 0.4 * stripe, torch.full_like(x, 0.72)


def _torus_albedo(x: Tensor, y: Tensor, z: Tensor) -> tuple:
    angle = torch.atan2(y, x)                                 # yellow-green, varying around the ring
    return 0.78 + 0.12 * torch.sin(2.0 * angle), 0.72 + 0.1 * torch.cos(angle), torch.full_like(x, 0.18)


def _capsule_albedo(x: Tensor, y: Tensor, z: Tensor) -> tuple:
    return 0.55 + 0.15 * torch.sin(5.0 * z), 0.3 + 0.1 * torch.cos(3.0 * x), 0.62 + 0.1 * z  # purple


# Per object (OBJECT_NAMES order): texture of local coordinates, and the local frame (centre, angle about z).
_TEXTURES = ((_platform_albedo, _PLATE_C, 0.0), (_sphere_albedo, _SPHERE_C, 0.0), (_box_albedo, _BOX_C, _BOX_ANGLE),
             (_torus_albedo, _TORUS_C, 0.0), (_capsule_albedo, _CAPSULE_A, 0.0))


def _albedo(p: Tensor, obj: Tensor) -> Tensor:
    """Albedo ``(n, 3)`` in [0, 1] at surface points ``(n, 3)`` of objects ``obj (n,)`` (indices into
    ``OBJECT_NAMES``)."""
    out = torch.zeros_like(p)
    for k, (texture, centre, angle) in enumerate(_TEXTURES):
        sel = obj == k
        if sel.any():
            out[sel] = torch.stack(texture(*_local(p[sel], centre, angle).unbind(-1)), dim=-1)
    return out.clamp(0.0, 1.0)


_AMBIENT = 0.3
_LIGHTS = (((0.45, -0.35, 0.82), 0.7), ((-0.6, 0.55, 0.5), 0.35))   # (direction towards the light, intensity)
_SHININESS = {1: (0.65, 32.0)}                                      # object -> (specular strength, exponent)


def _shade(p: Tensor, view_dirs: Tensor) -> Tensor:
    """Colour ``(n, 3)`` in [0, 1] of surface points ``(n, 3)`` seen along unit ``view_dirs (n, 3)``
    (from the camera towards the point)."""
    obj = _object_sdfs(p).argmin(-1)
    normal = _normals(p)
    diffuse = torch.full_like(p[:, :1], _AMBIENT)
    highlight = torch.zeros_like(diffuse)
    strength = torch.zeros_like(diffuse)
    exponent = torch.ones_like(diffuse)
    for k, (s, e) in _SHININESS.items():
        strength[obj == k], exponent[obj == k] = s, e
    for direction, intensity in _LIGHTS:
        light = torch.tensor(direction, dtype=p.dtype)
        light = light / torch.linalg.vector_norm(light)
        n_dot_l = (normal @ light).clamp_min(0)[:, None]
        diffuse = diffuse + intensity * n_dot_l
        half = light - view_dirs
        half = half / torch.linalg.vector_norm(half, dim=-1, keepdim=True).clamp_min(1e-12)
        n_dot_h = (normal * half).sum(-1, keepdim=True).clamp_min(0)
        highlight = highlight + intensity * (n_dot_l > 0) * n_dot_h ** exponent
    return (_albedo(p, obj) * diffuse + strength * highlight).clamp(0.0, 1.0)


# ---------------------------------------------------------------------------------------------------------
# Rendering.

def _trace(origins: Tensor, dirs: Tensor, n_steps: int = 2048, eps: float = 1e-4, min_step: float = 2e-3
           ) -> tuple[Tensor, Tensor]:
    """Sphere traces rays ``(n, 3)`` (unit directions) through the scene box.

    Each step advances a ray by the scene's distance, but by at least ``min_step``: a ray grazing a surface
    would otherwise crawl past it in ever smaller steps. A step that ends inside an object (negative distance)
    is walked back by that distance, which cannot leave the object, so the ray closes in on the entry point.
    A ray is done when ``|distance| < eps`` (a hit) or when it leaves the box (a miss): with the step floor,
    ``n_steps`` is enough for any ray to cross the box, and most finish in 10-40 steps. Rays still marching are
    compacted every step, so the cost follows the rays that need it.

    Returns:
        ``t (n,)`` distance to the first hit (0 where the ray misses) and ``hit (n,)`` bool.
    """
    n = origins.shape[0]
    t_min, t_max, in_box = ray_aabb_intersect(origins, dirs, torch.tensor(SCENE_AABB, dtype=origins.dtype),
                                              near_plane=0.0, miss_value=0.0)
    t_out, hit = torch.zeros(n, dtype=origins.dtype), torch.zeros(n, dtype=torch.bool)
    idx = in_box[:, 0].nonzero().squeeze(1)
    o, d, t, t_end = origins[idx], dirs[idx], t_min[idx, 0], t_max[idx, 0]
    dist = torch.full_like(t, math.inf)
    for _ in range(n_steps):
        if idx.numel() == 0:
            break
        dist = scene_sdf(o + d * t[:, None])
        converged, escaped = dist.abs() < eps, t > t_end
        done = converged | escaped
        if done.any():
            t_out[idx[converged]], hit[idx[converged]] = t[converged], True
            keep = ~done
            idx, o, d, t, t_end, dist = idx[keep], o[keep], d[keep], t[keep], t_end[keep], dist[keep]
        t = t + torch.where(dist < 0, dist, dist.clamp_min(min_step))
    # Rays out of steps (rare): hits if they ended inside or right next to a surface, misses otherwise.
    near = (dist < 5 * eps) & (t <= t_end)
    t_out[idx[near]], hit[idx[near]] = t[near], True
    return t_out, hit


def _pixel_grid(height: int, width: int, s: int) -> tuple[Tensor, Tensor]:
    """Pixel coordinates ``x, y`` of shape ``(H, W, s*s)`` for an ``s x s`` grid of sub-pixel rays
    (``s = 1``: the pixel centres, ``x + 0.5``)."""
    sub = (torch.arange(s, dtype=torch.float32) + 0.5) / s
    y = torch.arange(height, dtype=torch.float32)[:, None, None, None] + sub[None, None, :, None]
    x = torch.arange(width, dtype=torch.float32)[None, :, None, None] + sub[None, None, None, :]
    shape = (height, width, s, s)
    return x.expand(shape).reshape(height, width, s * s), y.expand(shape).reshape(height, width, s * s)


def _render_views(c2w: Tensor, width: int, height: int, camera_angle_x: float, supersample: int) -> dict:
    """Renders ``n`` views at once; ``c2w (n, 3|4, 4)``. Same outputs as :func:`render_builtin_view`, with a
    leading ``n`` dimension."""
    n, s2 = c2w.shape[0], supersample * supersample
    cams = Cameras.from_fov(c2w.float(), width, height, camera_angle_x)
    cam_idx = torch.arange(n)[:, None, None, None]
    xs, ys = _pixel_grid(height, width, supersample)
    xc, yc = _pixel_grid(height, width, 1)
    o_sub, d_sub = cams.rays(cam_idx.expand(n, height, width, s2), xs.expand(n, -1, -1, -1), ys.expand(n, -1, -1, -1))
    o_ctr, d_ctr = cams.rays(cam_idx.expand(n, height, width, 1), xc.expand(n, -1, -1, -1), yc.expand(n, -1, -1, -1))
    origins = torch.cat([o_sub.reshape(-1, 3), o_ctr.reshape(-1, 3)])
    dirs = torch.cat([d_sub.reshape(-1, 3), d_ctr.reshape(-1, 3)])
    t, hit = _trace(origins, dirs)
    n_sub = o_sub.numel() // 3

    color = torch.zeros_like(origins[:n_sub])                  # premultiplied: 0 for missing sub-pixel rays
    sel = hit[:n_sub]
    color[sel] = _shade(origins[:n_sub][sel] + dirs[:n_sub][sel] * t[:n_sub][sel, None], dirs[:n_sub][sel])
    color = color.reshape(n, height, width, s2, 3).mean(3)
    alpha = sel.to(torch.float32).reshape(n, height, width, s2).mean(3)
    rgb = torch.where(alpha[..., None] > 0, color / alpha.clamp_min(1e-8)[..., None], torch.zeros_like(color))
    return {"rgba": torch.cat([rgb.clamp(0.0, 1.0), alpha[..., None]], dim=-1),
            "depth": t[n_sub:].reshape(n, height, width), "mask": hit[n_sub:].reshape(n, height, width)}


def render_builtin_view(c2w: Tensor, width: int, height: int, camera_angle_x: float, supersample: int = 2) -> dict:
    """Ray-traces one view of the built-in scene.

    Args:
        c2w: ``(3, 4)`` or ``(4, 4)`` camera-to-world matrix (OpenGL/Blender convention).
        width, height: image size in pixels; camera_angle_x: horizontal field of view in radians.
        supersample: ``s``: the colour and alpha of a pixel average an ``s x s`` grid of sub-pixel rays.

    Returns:
        ``{"rgba": (H, W, 4) float32`` in [0, 1] with un-premultiplied colour (0 where alpha is 0),
        ``"depth": (H, W) float32`` distance to the first hit along the unit pixel-centre ray (0 where it
        misses), ``"mask": (H, W) bool`` whether the pixel-centre ray hits an object ``}``.
    """
    views = _render_views(c2w[None], width, height, camera_angle_x, supersample)
    return {key: value[0] for key, value in views.items()}


def builtin_cameras(cfg: BuiltinSceneConfig, split: str) -> Tensor:
    """Camera-to-world matrices ``(n, 4, 4)`` float32 of a split, all at ``cfg.camera_distance`` from the
    origin, looking at it with world up ``+z``.

    ``train`` and ``val``: elevations uniform in [15, 65] degrees and azimuths uniform in [0, 360), from
    separate generators seeded by ``cfg.seed``. ``test``: a ring evenly spaced in azimuth with elevations
    alternating 25 / 45 degrees (novel views, not drawn from the training distribution's samples).
    """
    counts = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
    if split not in counts:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(counts)}")
    n = counts[split]
    if split == "test":
        azimuth = (torch.arange(n, dtype=torch.float64) + 0.5) * (2 * math.pi / n)
        elevation = torch.where(torch.arange(n) % 2 == 0, 25.0, 45.0).to(torch.float64).deg2rad()
    else:
        generator = torch.Generator().manual_seed(2 * cfg.seed + (split == "val"))
        azimuth = torch.rand(n, generator=generator, dtype=torch.float64) * (2 * math.pi)
        elevation = (15.0 + 50.0 * torch.rand(n, generator=generator, dtype=torch.float64)).deg2rad()
    eye = cfg.camera_distance * torch.stack([elevation.cos() * azimuth.cos(), elevation.cos() * azimuth.sin(),
                                             elevation.sin()], dim=-1)
    c2w = look_at(eye, torch.zeros_like(eye), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64).expand(n, 1, 4)
    return torch.cat([c2w, bottom], dim=1).float()


def write_builtin_scene(out_dir: str | Path, cfg: BuiltinSceneConfig) -> Path:
    """Renders the scene and writes it in the Blender synthetic layout into ``out_dir`` (created).

    Files: ``transforms_{train,val,test}.json`` (with an extra ``"nerfkit"`` block: scene box, near/far,
    generator, config) and per view ``{split}/r_{i}.png`` (RGBA 8-bit), ``{split}/r_{i}_depth.npy``
    (float32 ``(H, W)``) and ``{split}/r_{i}_mask.png`` (8-bit 0/255). Returns ``out_dir`` as a Path.
    """
    out_dir = Path(out_dir)
    res = cfg.resolution
    chunk = max(1, (1 << 18) // (res * res * (cfg.supersample ** 2 + 1)))   # views per batch, ~256k rays
    extra = {"aabb": list(SCENE_AABB), "near": cfg.camera_distance - math.sqrt(3.0),
             "far": cfg.camera_distance + math.sqrt(3.0), "generator": f"nerfkit builtin scene v{SCENE_VERSION}",
             "config": dataclasses.asdict(cfg)}
    for split in ("train", "val", "test"):
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        poses = builtin_cameras(cfg, split)
        for start in range(0, len(poses), chunk):
            views = _render_views(poses[start:start + chunk], res, res, cfg.camera_angle_x, cfg.supersample)
            for j in range(views["rgba"].shape[0]):
                stem = out_dir / split / f"r_{start + j}"
                write_image(stem.with_name(stem.name + ".png"), views["rgba"][j].numpy())
                np.save(stem.with_name(stem.name + "_depth.npy"), views["depth"][j].numpy())
                write_image(stem.with_name(stem.name + "_mask.png"), views["mask"][j].numpy().astype(np.uint8) * 255)
        frames = [{"file_path": f"./{split}/r_{i}", "transform_matrix": pose.tolist()} for i, pose in enumerate(poses)]
        meta = {"camera_angle_x": cfg.camera_angle_x, "frames": frames, "nerfkit": extra}
        (out_dir / f"transforms_{split}.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out_dir


def builtin_scene_key(cfg: BuiltinSceneConfig) -> str:
    """A short hash of the config and :data:`SCENE_VERSION`: the scene's cache folder is ``builtin-{key}``."""
    payload = json.dumps({"scene_version": SCENE_VERSION, **dataclasses.asdict(cfg)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def ensure_builtin_scene(cache_root: str | Path, cfg: BuiltinSceneConfig) -> Path:
    """The scene's folder ``cache_root / f"builtin-{key}"``, written only if absent.

    The scene is written into a temporary sibling folder that is then renamed into place (atomic on one file
    system), so the folder either holds a complete scene or does not exist; an interrupted write leaves
    nothing behind, and when two processes race the first rename wins.
    """
    final = Path(cache_root) / f"builtin-{builtin_scene_key(cfg)}"
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        os.chmod(tmp, 0o755)                                  # mkdtemp makes it private to the user
        write_builtin_scene(tmp, cfg)
        try:
            os.replace(tmp, final)
        except OSError:                                       # another process finished first: keep its copy
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
