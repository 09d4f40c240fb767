"""Multi-process training (DDP) on CPU with the gloo backend, launched as users launch it: torchrun."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nerfkit.cli import main
from nerfkit.train.distributed import launch_command

from test_cli import TINY_NGP

REPO = Path(__file__).resolve().parents[1]
HELPER = str(Path(__file__).resolve().parent / "ddp_helper.py")
TINY = ["--method", "vanilla", "--data.builtin.resolution", "24", "--data.builtin.n-train", "12", "--data.builtin.n-val", "2",
        "--data.builtin.n-test", "3", "--vanilla.n-coarse", "8", "--vanilla.n-fine", "8",
        "--vanilla.coarse.depth", "2", "--vanilla.coarse.width", "32", "--vanilla.coarse.skips",
        "--vanilla.fine.depth", "2", "--vanilla.fine.width", "32", "--vanilla.fine.skips",
        "--vanilla.occgrid.resolution", "16", "--eval-images", "0", "--no-progress", "--device", "cpu"]


def torchrun(args: list[str], timeout: float = 240) -> tuple[subprocess.CompletedProcess, float]:
    """Runs ``torchrun --standalone --nproc_per_node 2 ARGS`` (a free port is picked); returns the process and
    its wall time. The timeout keeps a hanging run from hanging the test suite."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    return proc, time.monotonic() - start


def states(folder: Path) -> dict[str, dict]:
    return {p.stem: torch.load(p, weights_only=True) for p in sorted(folder.glob("rank*-step*.pt"))}


def test_two_processes_train_like_one_process_with_the_combined_batch(tmp_path, tiny_scene_dir):
    """2 ranks x 32 rays = 1 process x 64 rays: the same rays (one global batch, each rank its half), gradients
    averaged by DDP, so the same parameters up to float rounding. Model randomness is switched off (no
    stratification, white background) so that both runs compute the same thing."""
    cache = tiny_scene_dir.parent
    common = ["--data.cache-dir", str(cache), "--data.background", "white", "--vanilla.no-stratified",
              "--vanilla.estimator", "coarse-to-fine", "--steps", "8", "--save-every", "8", "--warmup-steps", "0"]
    proc, _ = torchrun(["-m", "nerfkit", "train", "--output", str(tmp_path / "two"), "--batch-size", "32",
                        *common, *TINY])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("trained 8 steps") == 1  # only rank 0 reports

    assert main(["train", "--output", str(tmp_path / "one"), "--batch-size", "64", *common, *TINY]) == 0
    two_state = torch.load(tmp_path / "two" / "checkpoints" / "step-00000008.pt", weights_only=True)
    one_state = torch.load(tmp_path / "one" / "checkpoints" / "step-00000008.pt", weights_only=True)
    assert two_state["world_size"] == 2 and len(two_state["rng"]["ranks"]) == 2
    assert two_state["model"].keys() == one_state["model"].keys()
    for key, value in one_state["model"].items():
        torch.testing.assert_close(two_state["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    # Adam barely depends on the gradients' scale (where they are large against its eps), so equal parameters
    # alone might not tell averaged gradients from summed ones; its moments do (summed gradients would double
    # exp_avg and quadruple exp_avg_sq)
    for index, moments in one_state["optimizer"]["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            want, got = moments[name], two_state["optimizer"]["state"][index][name]
            torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3 * float(want.abs().max()), msg=name)
            assert float(want.abs().max()) > 0


def test_occupancy_grid_and_model_stay_identical_on_every_rank_and_resume_exactly(tmp_path, tiny_scene_dir):
    """The default sampler (occupancy grid, stratified, random backgrounds): ranks draw different random numbers,
    rank 0's grid is sent to the others after each update, and every rank ends each checkpoint interval with
    bit-identical parameters and grid. A 2-process resume from the middle checkpoint ends exactly where the
    uninterrupted 2-process run ended (each rank gets its own random streams back)."""
    cache = str(tiny_scene_dir.parent)
    dump = tmp_path / "dump"
    dump.mkdir()
    run = ["--data.cache-dir", cache, "--steps", "12", "--save-every", "6", "--keep-checkpoints", "5",
           "--batch-size", "32", "--vanilla.occgrid.update-every", "2", "--vanilla.occgrid.warmup-steps", "4",
           *TINY]
    proc, _ = torchrun([HELPER, "dump", str(dump), "--", "train", "--output", str(tmp_path / "a"), *run])
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = states(dump)
    assert set(found) == {"rank0-step6", "rank1-step6", "rank0-step12", "rank1-step12"}
    for step in (6, 12):
        rank0, rank1 = found[f"rank0-step{step}"], found[f"rank1-step{step}"]
        for key in rank0:
            assert torch.equal(rank0[key], rank1[key]), (step, key)
    grid = found["rank0-step12"]
    assert grid["occgrid.estimator.occs"].abs().sum() > 0  # the grid was updated (random cells after warm-up)
    assert not torch.equal(found["rank0-step6"]["occgrid.estimator.occs"], grid["occgrid.estimator.occs"])

    checkpoints = tmp_path / "b" / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copy(tmp_path / "a" / "checkpoints" / "step-00000006.pt", checkpoints)
    proc, _ = torchrun(["-m", "nerfkit", "train", "--output", str(tmp_path / "b"), "--resume", *run])
    assert proc.returncode == 0, proc.stderr[-3000:]
    straight = torch.load(tmp_path / "a" / "checkpoints" / "step-00000012.pt", weights_only=True)
    resumed = torch.load(checkpoints / "step-00000012.pt", weights_only=True)
    for key, value in straight["model"].items():
        assert torch.equal(resumed["model"][key], value), key


def test_ngp_ranks_agree_on_the_adaptive_batch_size(tmp_path, tiny_scene_dir):
    """Instant-NGP sets the rays of the next step from the samples of the last one: ranks use the mean over all
    ranks, so their batch sizes (and models) stay equal while the batch size adapts."""
    dump = tmp_path / "dump"
    dump.mkdir()
    proc, _ = torchrun([HELPER, "dump", str(dump), "--", "train", "--output", str(tmp_path / "run"),
                        "--data.cache-dir", str(tiny_scene_dir.parent), "--steps", "12", "--save-every", "4",
                        "--device", "cpu", "--eval-images", "0", *TINY_NGP,
                        "--ngp.field.no-compile-encoder", "--ngp.occgrid.no-compile-march"])  # kernels not under test
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = states(dump)
    assert len(found) == 6
    for step in (4, 8, 12):
        rank0, rank1 = found[f"rank0-step{step}"], found[f"rank1-step{step}"]
        for key in rank0:
            assert torch.equal(rank0[key], rank1[key]), (step, key)
    assert {float(found[f"rank0-step{s}"]["values"][0]) for s in (4, 8, 12)} != {128.0}  # it adapted


def test_ranks_that_drift_apart_are_detected(tmp_path, tiny_scene_dir):
    """Without sending rank 0's grid to the other ranks (patched out here), the ranks' grids drift apart (each
    draws its own random cells), and the check at the first checkpoint stops the run with a clear message."""
    dump = tmp_path / "dump"
    dump.mkdir()
    helper = tmp_path / "no_broadcast.py"
    helper.write_text("from nerfkit.train.distributed import World\nWorld.broadcast_buffers = lambda self, m: None\n"
                      f"exec(open({HELPER!r}).read())\n")
    proc, _ = torchrun([str(helper), "dump", str(dump), "--", "train", "--output", str(tmp_path / "run"),
                        "--data.cache-dir", str(tiny_scene_dir.parent), "--steps", "8", "--save-every", "4",
                        "--batch-size", "32", "--vanilla.occgrid.update-every", "2", "--vanilla.occgrid.warmup-steps",
                        "0", *TINY])
    assert proc.returncode != 0
    assert "differs from rank 0's" in proc.stderr


@pytest.mark.parametrize("failure", ["die", "stall"])
def test_a_rank_that_dies_or_stalls_ends_the_job_with_a_clear_message(tmp_path, tiny_scene_dir, failure):
    """Rank 1 is killed (SIGKILL) or stops answering in step 4: rank 0 fails at its next collective (a dead
    peer's socket closes at once; a stalled one runs into --dist-timeout), and torchrun stops the job and names
    the rank that failed; no hang."""
    proc, seconds = torchrun([HELPER, failure, "3", "--", "train", "--output", str(tmp_path / "run"),
                              "--data.cache-dir", str(tiny_scene_dir.parent), "--steps", "200", "--batch-size",
                              "32", "--dist-timeout", "5", *TINY], timeout=180)
    assert proc.returncode != 0
    assert seconds < 120
    out = proc.stdout + proc.stderr
    assert "Root Cause" in out  # torchrun's report
    if failure == "stall":  # rank 0's own message: a collective timed out
        assert "nerfkit: error: rank 0 of 2 lost contact with the other training processes" in out, out[-3000:]
    if failure == "die":
        assert "rank      : 1" in out and "SIGKILL" in out  # torchrun's report names the dead rank


def test_gpus_launcher_builds_the_torchrun_command_and_refuses_without_gpus(capsys, tmp_path):
    argv = ["train", "--gpus", "4", "--steps", "5", "--gpus=4", "--output", "x"]
    cmd = launch_command(4, argv)
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m"]
    assert cmd[6:] == ["nerfkit", "train", "--steps", "5", "--output", "x"]
    if torch.cuda.device_count() >= 64:
        pytest.skip("this machine has 64 GPUs")
    assert main(["train", "--gpus", "64", "--output", str(tmp_path / "o")]) == 2
    assert f"--gpus 64 asks for 64 CUDA device(s), but torch sees {torch.cuda.device_count()}" \
        in capsys.readouterr().err
    assert main(["train", "--gpus", "1", "--device", "cpu", "--output", str(tmp_path / "o")]) == 2
    assert "drop --device cpu" in capsys.readouterr().err
