"""Time-to-quality of the methods on the built-in scene (the main job's data), side by side in one run.

Trains each method with its default settings for the same wall time and evaluates it on the test split (white
background, the scene's resolution): vanilla NeRF with coarse-to-fine sampling, vanilla NeRF with the occupancy
grid, and Instant-NGP (every other setting at its default). Decides which deserves to be ``nerfkit train``'s
default; writes benchmarks/results/methods_builtin.json.

    python benchmarks/methods_builtin.py [--seconds 173]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

from nerfkit.cli import load_run  # noqa: E402
from nerfkit.eval.render import evaluate_split, render_camera  # noqa: E402
from nerfkit.train.config import DataConfig, TrainConfig  # noqa: E402
from nerfkit.train.trainer import train  # noqa: E402

DEFAULT_VARIANTS = ["vanilla --vanilla.estimator coarse-to-fine", "vanilla --vanilla.estimator occgrid", "ngp"]
"""Run unless ``--variants`` names others: the defaults of each method and sampler. Other variants: ngp with a
chosen marching step, e.g. ``"ngp --ngp.occgrid.steps-per-diagonal 256"``, or MLP width, e.g.
``"ngp --ngp.field.hidden-dim 64"``."""


def parse_variant(name: str) -> dict:
    """The settings a variant's name states: ``vanilla --vanilla.estimator coarse-to-fine | occgrid``, ``ngp``,
    ``ngp --ngp.occgrid.steps-per-diagonal N`` or ``ngp --ngp.field.hidden-dim N``."""
    words = name.split()
    if len(words) == 3 and words[:2] == ["vanilla", "--vanilla.estimator"] and words[2] in ("coarse-to-fine",
                                                                                              "occgrid"):
        return dict(method="vanilla", estimator=words[2])
    if words == ["ngp"]:
        return dict(method="ngp")
    if len(words) == 3 and words[:2] == ["ngp", "--ngp.occgrid.steps-per-diagonal"] and words[2].isdigit() \
            and int(words[2]) >= 1:
        return dict(method="ngp", steps_per_diagonal=int(words[2]))
    if len(words) == 3 and words[:2] == ["ngp", "--ngp.field.hidden-dim"] and words[2].isdigit() \
            and int(words[2]) >= 1:
        return dict(method="ngp", hidden_dim=int(words[2]))
    raise argparse.ArgumentTypeError(f"unknown variant {name!r}: 'vanilla --vanilla.estimator coarse-to-fine', "
                                     "'vanilla --vanilla.estimator occgrid', 'ngp', "
                                     "'ngp --ngp.occgrid.steps-per-diagonal N' or 'ngp --ngp.field.hidden-dim N'")


def variant_name(name: str) -> str:
    """``--variants`` values: a name :func:`parse_variant` understands, else argparse's error naming it."""
    parse_variant(name)
    return name


def run(name: str, seconds: float, cache: Path) -> dict:
    spec = parse_variant(name)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(output=Path(tmp), data=DataConfig(cache_dir=cache), method=spec["method"], steps=10**7,
                          max_time=seconds, eval_every=0, eval_images=0, save_every=10**7, log_every=25,
                          progress=False)
        if "estimator" in spec:
            cfg.vanilla.estimator = spec["estimator"]
        if "steps_per_diagonal" in spec:
            cfg.ngp.occgrid.steps_per_diagonal = spec["steps_per_diagonal"]
        if "hidden_dim" in spec:
            cfg.ngp.field.hidden_dim = spec["hidden_dim"]
        result = train(cfg)
        lines = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
        _, model, scene, _ = load_run(Path(tmp), None, "cpu")
        test = scene.split("test")
        for view in range(len(test)):  # warm-up: compilation (each new shape the march meets) is not rendering time
            render_camera(model, test.cameras, view, "white")
        report = evaluate_split(model, test, "white")
    logged = [r for r in lines if "samples_per_ray" in r]
    return {"variant": name, "train_seconds": result.elapsed, "steps": result.step,
            "test_psnr": report["psnr"], "test_ssim": report["ssim"], "test_images": report["n_images"],
            "resolution": report["resolution"], "render_seconds_per_image": report["seconds_per_image"],
            "samples_per_ray": sum(r["samples_per_ray"] for r in logged) / max(len(logged), 1),
            "rays_per_s": sum(r["rays_per_s"] for r in logged) / max(len(logged), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=173.0, help="training wall time per method")
    parser.add_argument("--variants", nargs="+", type=variant_name, default=DEFAULT_VARIANTS,
                        help="see parse_variant")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "methods_builtin.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        runs = [run(name, args.seconds, Path(cache)) for name in args.variants]
    record = {"benchmark": "methods on the built-in scene, default settings, equal training wall time",
              "protocol": "mean per-image PSNR/SSIM over the test split, white background", "runs": runs,
              "machine": machine_info()}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2))
    print(f"{'variant':>44} {'steps':>7} {'rays/s':>9} {'samples/ray':>12} {'PSNR':>7} {'SSIM':>7} {'s/image':>8}")
    for r in runs:
        print(f"{r['variant']:>44} {r['steps']:>7} {r['rays_per_s']:>9,.0f} {r['samples_per_ray']:>12.1f} "
              f"{r['test_psnr']:>7.2f} {r['test_ssim']:>7.4f} {r['render_seconds_per_image']:>8.2f}")
    print(f"{runs[0]['test_images']} test views at {runs[0]['resolution'][0]}x{runs[0]['resolution'][1]}, white "
          f"background; {args.seconds:.0f} s of training each; machine: {record['machine']['cpu']}, "
          f"{record['machine']['torch_threads']} threads")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
