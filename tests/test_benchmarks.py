"""The benchmarks still run: the primitives' comparison at its smoke size (each pair is checked for agreement
inside the script, which fails otherwise)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_primitives_benchmark_runs_at_its_quick_size(tmp_path):
    out = tmp_path / "primitives.json"
    proc = subprocess.run([sys.executable, "benchmarks/primitives_cpu.py", "--quick", "--repeats", "1",
                           "--naive-repeats", "1", "--output", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(out.read_text())
    names = [row["primitive"].strip() for row in record["rows"]]
    assert len(names) == 21 and len(set(names)) == 21
    assert all(row["nerfkit_ms"] > 0 and row["naive_ms"] > 0 for row in record["rows"])
    assert {"searchsorted (packed, image-like)", "importance_sampling (packed, image-like)",
            "exclusive_prod (packed, image-like)", "PropNetEstimator.sampling"} <= set(names)
