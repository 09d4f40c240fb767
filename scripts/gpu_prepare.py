"""Prepares the GPU checks (scripts/gpu_checks.sh) on the CPU machine, for the device tool's machine.

That machine runs nerfkit from the checkout with its own torch and Triton, has no network and no ../shared, and
takes at most 64 MiB of the working tree and carried folders per call. This writes two git-ignored folders to name in
the call's ``carry``:

* ``device_data/lego``: lego's 100 training views and every 4th test view (50 views: r_0, r_4, ..., r_196) with
  a ``transforms_test.json`` listing only those, ~63 MB;
* ``.whl``: wheels of the pure-Python packages nerfkit needs that the device image lacks (tyro and what it needs
  there; ``--wheels`` adds more), for the image's Python 3.12.

    python scripts/gpu_prepare.py [--data ../shared/data/nerf_synthetic/lego] [--test-every 4]

Then, with the device tool: ``run`` with ``carry: ["device_data", ".whl"]`` and the command
``bash scripts/gpu_checks.sh kernels`` (then ``lego``, then ``training``; see that script).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 64 * 2 ** 20
WHEELS = ["tyro==1.0.17", "docstring-parser==0.18.0", "typeguard==4.6.1",
          "nerfacc==0.5.3", "rich==15.0.0", "ninja==1.13.2"]
"""tyro (nerfkit's command line, and the training benchmarks' configs) with what it needs beyond the device image's
packages (typing-extensions is there); nerfacc 0.5.3 (its CUDA code is compiled at first import, with ninja: the
``nerfacc`` part of gpu_checks.sh), with rich, which it imports (rich's own dependencies are needed only for what
nerfacc does not use). 0.6 MiB in all."""


def copy_lego(src: Path, dst: Path, test_every: int) -> int:
    """Copies lego's training split and every ``test_every``-th test view; returns the bytes written."""
    if not (src / "transforms_train.json").is_file():
        sys.exit(f"{src} is not the Blender lego folder (no transforms_train.json); pass --data")
    if dst.exists():
        shutil.rmtree(dst)
    (dst / "train").mkdir(parents=True)
    (dst / "test").mkdir()
    shutil.copy2(src / "transforms_train.json", dst / "transforms_train.json")
    for image in sorted((src / "train").glob("*.png")):
        shutil.copy2(image, dst / "train" / image.name)
    meta = json.loads((src / "transforms_test.json").read_text())
    frames = meta["frames"][::test_every]
    for frame in frames:
        name = Path(frame["file_path"]).name + ".png"
        shutil.copy2(src / "test" / name, dst / "test" / name)
    (dst / "transforms_test.json").write_text(json.dumps({**meta, "frames": frames}, indent=1))
    return sum(p.stat().st_size for p in dst.rglob("*") if p.is_file())


def download_wheels(dst: Path, names: list[str]) -> int:
    """Downloads pure-Python wheels of ``names`` for Python 3.12 into ``dst``; returns the bytes written."""
    dst.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "-d", str(dst), *names], check=True)
    return sum(p.stat().st_size for p in dst.glob("*.whl"))


def tracked_bytes() -> int:
    """Bytes of the files git tracks: they travel with every call."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    return sum((ROOT / f.decode()).stat().st_size for f in files if f and (ROOT / f.decode()).is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / ".." / "shared" / "data" / "nerf_synthetic" / "lego")
    parser.add_argument("--test-every", type=int, default=4, help="copy every N-th test view")
    parser.add_argument("--wheels", nargs="*", default=[], help="more NAME==VERSION to carry")
    args = parser.parse_args()
    if args.test_every < 1:
        sys.exit("--test-every must be >= 1")
    data = copy_lego(args.data, ROOT / "device_data" / "lego", args.test_every)
    wheels = download_wheels(ROOT / ".whl", WHEELS + args.wheels)
    tree = tracked_bytes()
    total = data + wheels + tree
    print(f"device_data/lego {data / 2 ** 20:.1f} MiB, .whl {wheels / 2 ** 20:.1f} MiB, tracked files "
          f"{tree / 2 ** 20:.1f} MiB: {total / 2 ** 20:.1f} of the 64 MiB a call may carry")
    if total > LIMIT:
        sys.exit("too much for one call: raise --test-every")


if __name__ == "__main__":
    main()
