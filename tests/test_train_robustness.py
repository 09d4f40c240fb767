"""Long runs: a process killed mid-run resumes, non-finite steps are skipped or rolled back, memory stays flat."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nerfkit.cli import main
from nerfkit.fields import VanillaFieldConfig
from nerfkit.methods import VanillaConfig, VanillaNeRF
from nerfkit.methods.occgrid import OccGridConfig
from nerfkit.train.checkpoint import DivergenceError, latest_checkpoint
from nerfkit.train.trainer import train

from test_cli import TINY
from test_train import tiny_config

REPO = Path(__file__).resolve().parents[1]


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_run_killed_with_sigkill_resumes_from_its_last_checkpoint(tmp_path, tiny_scene_dir, capsys):
    """SIGKILL between two checkpoints (and a checkpoint write cut short): --resume continues from the newest
    complete checkpoint, so at most one save interval is lost, and the log holds each step once."""
    run, save_every = tmp_path / "run", 20
    args = ["train", "--output", str(run), "--steps", "100", "--save-every", str(save_every), "--log-every", "5",
            "--data.cache-dir", str(tiny_scene_dir.parent), *TINY]
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "nerfkit", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=err)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                logged = [r["step"] for r in records(run)] if (run / "metrics.jsonl").is_file() else []
                if (run / "checkpoints" / "step-00000040.pt").is_file() and logged and max(logged) >= 45:
                    break
                time.sleep(0.02)
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()[-2000:]
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=30)
    newest, _ = latest_checkpoint(run / "checkpoints")
    saved = int(newest.stem.split("-")[1])
    logged = max(r["step"] for r in records(run))
    assert saved >= 40 and saved <= logged < saved + save_every  # killed within the interval after `saved`
    (run / "checkpoints" / f".step-{saved + save_every:08d}.pt.tmp").write_bytes(b"cut short")

    assert main([*args, "--resume"]) == 0
    assert f"resumed from {newest} at step {saved}" in capsys.readouterr().out
    steps = [r["step"] for r in records(run) if "loss" in r]
    assert steps == list(range(5, 101, 5))  # the killed run's steps after `saved` were dropped, then redone
    assert not list((run / "checkpoints").glob(".*.tmp"))
    _, state = latest_checkpoint(run / "checkpoints")
    assert state["step"] == 100


def poison_loss(monkeypatch, bad_calls):
    """Makes the vanilla method's loss NaN at the given (1-based) training steps."""
    loss, calls = VanillaNeRF.loss, [0]

    def poisoned(self, outputs, target):
        calls[0] += 1
        out = loss(self, outputs, target)
        if calls[0] in bad_calls:
            out = {**out, "loss": out["loss"] * float("nan")}
        return out

    monkeypatch.setattr(VanillaNeRF, "loss", poisoned)


def adam_steps(state: dict) -> int:
    return int(state["optimizer"]["state"][0]["step"])


def test_a_nan_loss_skips_the_step_and_is_counted(tmp_path, tiny_scene_dir, monkeypatch):
    poison_loss(monkeypatch, {4, 9})
    cfg = tiny_config(tmp_path, tiny_scene_dir.parent, steps=20, save_every=100)
    result = train(cfg)
    assert result.step == 20
    lines = records(cfg.output)
    assert [r["step"] for r in lines if "skipped" in r] == [4, 9]
    assert [r["bad_steps"] for r in lines if r["step"] in (5, 10, 20) and "loss" in r] == [1, 2, 2]
    _, state = latest_checkpoint(cfg.output / "checkpoints")
    assert state["bad_steps"] == 2 and state["lr_scale"] == 1.0
    assert adam_steps(state) == 18  # the optimiser stepped on the 18 good steps only
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_repeated_nans_restore_older_checkpoints_with_a_lower_learning_rate(tmp_path, tiny_scene_dir, monkeypatch):
    """Steps 13-18 are NaN, 3 in a row trigger a restore: first of step 10 (the newest checkpoint before the
    bad steps), then, as the next three fail too, of the one before (step 5); the learning rate halves each
    time, and training goes on to the end."""
    poison_loss(monkeypatch, set(range(13, 19)))
    cfg = tiny_config(tmp_path, tiny_scene_dir.parent, steps=30, save_every=5, keep_checkpoints=5, max_bad_steps=3,
                      lr=1e-3, lr_final=1e-3, warmup_steps=0)
    assert train(cfg).step == 30
    lines = records(cfg.output)
    restores = [(r["step"], r["restored"], r["lr_scale"]) for r in lines if "restored" in r]
    assert restores == [(15, "step-00000010.pt", 0.5), (18, "step-00000005.pt", 0.25)]
    assert [r["lr"] for r in lines if "lr" in r and r["step"] > 18] == pytest.approx([2.5e-4] * 3)
    _, state = latest_checkpoint(cfg.output / "checkpoints")
    assert state["lr_scale"] == 0.25 and state["bad_steps"] == 6
    assert adam_steps(state) == 5 + 12  # the state of step 5, then the good steps 19-30


def test_divergence_from_the_start_falls_back_to_the_initial_state_then_stops_clearly(tmp_path, tiny_scene_dir,
                                                                                      monkeypatch):
    poison_loss(monkeypatch, set(range(2, 1000)))
    cfg = tiny_config(tmp_path, tiny_scene_dir.parent, steps=30, save_every=100, max_bad_steps=3)
    with pytest.raises(RuntimeError, match="training diverged: 3 steps in a row had a non-finite loss"):
        train(cfg)
    assert [r["restored"] for r in records(cfg.output) if "restored" in r] == ["the initial state"]


def test_host_memory_stays_flat_over_a_long_run(tmp_path, tiny_scene_dir):
    """600 small steps with grid updates, validation passes and checkpoints: after warm-up (the first
    validation and checkpoint), the resident memory logged every 20 steps stays within a few MiB (a step that
    kept its graph alive would add megabytes per step)."""
    field = VanillaFieldConfig(depth=2, width=32, skips=(), color_width=16, pos_freqs=4, dir_freqs=2)
    vanilla = VanillaConfig(n_coarse=8, n_fine=8, coarse=field, fine=field,
                            occgrid=OccGridConfig(resolution=16, update_every=4, warmup_steps=50))
    cfg = tiny_config(tmp_path, tiny_scene_dir.parent, steps=600, log_every=20, save_every=100, eval_every=200,
                      vanilla=vanilla)
    train(cfg)
    memory = [r["host_mem_mb"] for r in records(cfg.output) if "host_mem_mb" in r and r["step"] >= 300]
    assert len(memory) == 16
    assert max(memory) - memory[0] < 24.0, memory


def test_resume_falls_back_past_a_corrupt_newest_checkpoint(tmp_path, tiny_scene_dir, capsys):
    cfg = tiny_config(tmp_path, tiny_scene_dir.parent, steps=10, save_every=5, keep_checkpoints=3)
    train(cfg)
    newest = cfg.output / "checkpoints" / "step-00000010.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # cut short, as a full disk might leave it
    resumed = tiny_config(tmp_path, tiny_scene_dir.parent, steps=12, save_every=5, keep_checkpoints=3, resume=True)
    with pytest.warns(UserWarning, match="step-00000010.pt is unreadable or corrupt"):
        assert train(resumed).step == 12
    assert "at step 5" in capsys.readouterr().out


def test_reuse_freed_memory_takes_effect_on_glibc_and_is_a_no_op_elsewhere(monkeypatch):
    import platform

    from nerfkit.train import host_memory

    monkeypatch.setattr(host_memory, "_DONE", {})
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert host_memory.reuse_freed_memory() is glibc
    assert host_memory.reuse_freed_memory() is glibc  # idempotent: the first answer is kept
    monkeypatch.setattr(host_memory, "_DONE", {})
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    assert host_memory.reuse_freed_memory() is False


def test_the_step_check_flags_any_non_finite_gradient_and_nothing_else():
    """One NaN or infinity in any gradient (here in the middle of a large one) raises the step's gradient flag; a
    finite loss keeps its own flag down; finite gradients raise nothing."""
    from nerfkit.train.trainer import _step_stats

    params = [torch.nn.Parameter(torch.zeros(1000, 2)), torch.nn.Parameter(torch.zeros(3))]
    losses = {"loss": torch.tensor(0.5), "mse": torch.tensor(0.25), "n_samples": torch.tensor(7)}
    for bad in (None, float("nan"), float("inf"), -float("inf")):
        params[0].grad = torch.randn(1000, 2)
        params[1].grad = torch.randn(3)
        if bad is not None:
            params[0].grad[517, 1] = bad
        loss_bad, grads_bad, n_samples, loss, mse = _step_stats(losses, params, torch.device("cpu")).tolist()
        assert (loss_bad, grads_bad) == (0.0, float(bad is not None))
        assert (n_samples, loss, mse) == (7.0, 0.5, 0.25)
    losses["loss"] = torch.tensor(float("nan"))
    params[0].grad = torch.randn(1000, 2)
    assert _step_stats(losses, params, torch.device("cpu")).tolist()[:2] == [1.0, 0.0]


def flip_a_byte_of_the_largest_tensor(path: Path) -> None:
    """Corrupts one byte in the middle of the checkpoint's largest stored tensor (the archive stays readable)."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as archive:
        entry = max(archive.infolist(), key=lambda e: e.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[entry.header_offset + 26:entry.header_offset + 30])
    data[entry.header_offset + 30 + name_len + extra_len + entry.file_size // 2] ^= 0x55
    path.write_bytes(bytes(data))


def test_a_flipped_bit_is_detected_and_the_corrupt_checkpoint_is_set_aside(tmp_path, tiny_scene_dir):
    """torch.load would load a flipped bit as a wrong value: the archive's CRCs catch it. Resumed from the older
    checkpoint, the run renames the corrupt newer one, which would otherwise outrank its new saves (with one
    checkpoint kept, the step-12 save would have been deleted in favour of the corrupt step 10)."""
    cfg = tiny_config(tmp_path, tiny_scene_dir.parent, steps=10, save_every=5, keep_checkpoints=3)
    train(cfg)
    ckpts = cfg.output / "checkpoints"
    flip_a_byte_of_the_largest_tensor(ckpts / "step-00000010.pt")
    torch.load(ckpts / "step-00000010.pt", weights_only=True)  # torch alone does not notice
    with pytest.warns(UserWarning, match="step-00000010.pt is unreadable or corrupt: the CRC-32 of its entry"):
        found = latest_checkpoint(ckpts)
    assert found[0].name == "step-00000005.pt"

    resumed = tiny_config(tmp_path, tiny_scene_dir.parent, steps=12, save_every=5, keep_checkpoints=1, resume=True)
    with pytest.warns(UserWarning, match="set the unreadable checkpoint aside as .*step-00000010.pt.corrupt"):
        assert train(resumed).step == 12
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-00000010.pt.corrupt", "step-00000012.pt"]
    path, state = latest_checkpoint(ckpts)
    assert path.name == "step-00000012.pt" and state["step"] == 12


def poison_gradients(monkeypatch, bad_calls):
    """Makes the vanilla method's gradients infinite (its loss staying finite) at the given (1-based) steps, as
    an fp16 overflow does."""
    loss, calls = VanillaNeRF.loss, [0]

    def poisoned(self, outputs, target):
        calls[0] += 1
        out = loss(self, outputs, target)
        if calls[0] in bad_calls:
            probe = next(self.parameters()) * 1.0
            probe.register_hook(lambda g: torch.full_like(g, float("inf")))
            out = {**out, "loss": out["loss"] + probe.sum() * 0.0}
        return out

    monkeypatch.setattr(VanillaNeRF, "loss", poisoned)


@pytest.fixture
def fp16_on_cpu(monkeypatch):
    """fp16 is refused on CPUs (no fast float16 arithmetic there), but torch runs its autocast and gradient
    scaler on a CPU too: lifting the refusal runs the trainer's fp16 path (loss scaling, overflow skips, the
    scaler in checkpoints) here exactly as on CUDA."""
    from nerfkit.train import trainer

    monkeypatch.setattr(trainer, "check_precision", lambda precision, device: None)


def test_fp16_resume_is_exact_and_restores_the_loss_scale(tmp_path, tiny_scene_dir, fp16_on_cpu, monkeypatch):
    """An overflow at step 5 halves the scale to 2^15 before the step-10 checkpoint: the resumed run continues
    at 2^15 (not a fresh scaler's 2^16) and with the checkpoint's growth tracker, and ends exactly where the
    uninterrupted run ends."""
    cache = tiny_scene_dir.parent
    poison_gradients(monkeypatch, {5})
    straight = tiny_config(tmp_path / "a", cache, steps=20, keep_checkpoints=5, precision="fp16")
    train(straight)
    _, state_straight = latest_checkpoint(straight.output / "checkpoints")
    assert state_straight["scaler"]["scale"] == 32768.0 and state_straight["scaler"]["_growth_tracker"] == 15

    interrupted = tmp_path / "b" / "run" / "checkpoints"
    interrupted.mkdir(parents=True)
    half = torch.load(straight.output / "checkpoints" / "step-00000010.pt", weights_only=True)
    assert half["scaler"]["scale"] == 32768.0 and half["scaler"]["_growth_tracker"] == 5
    half["scaler"]["_growth_tracker"] = 7  # a resumed run must take its scaler state from the checkpoint
    torch.save(half, interrupted / "step-00000010.pt")
    train(tiny_config(tmp_path / "b", cache, steps=20, resume=True, precision="fp16"))
    _, state_resumed = latest_checkpoint(interrupted)
    assert state_resumed["scaler"]["_growth_tracker"] == 17 and state_resumed["scaler"]["scale"] == 32768.0
    half["scaler"]["_growth_tracker"] = 5
    torch.save(half, interrupted / "step-00000010.pt")
    (interrupted / "step-00000020.pt").unlink()
    train(tiny_config(tmp_path / "b", cache, steps=20, resume=True, precision="fp16"))
    _, state_resumed = latest_checkpoint(interrupted)
    assert state_resumed["scaler"] == state_straight["scaler"]
    for key, value in state_straight["model"].items():
        torch.testing.assert_close(state_resumed["model"][key], value, rtol=0, atol=0, msg=key)


def test_fp16_overflows_are_skipped_counted_and_logged_not_taken_for_divergence(tmp_path, tiny_scene_dir,
                                                                                fp16_on_cpu, monkeypatch):
    poison_gradients(monkeypatch, {3, 4, 9})
    cfg = tiny_config(tmp_path, tiny_scene_dir.parent, steps=20, save_every=100, max_bad_steps=2,
                      precision="fp16")
    assert train(cfg).step == 20
    lines = records(cfg.output)
    skipped = [(r["step"], r["skipped"], r["loss_scale"]) for r in lines if "skipped" in r]
    assert skipped == [(3, "fp16 gradient overflow", 32768.0), (4, "fp16 gradient overflow", 16384.0),
                       (9, "fp16 gradient overflow", 8192.0)]
    assert not any("restored" in r for r in lines)  # two overflows in a row are not a divergence
    last = [r for r in lines if "loss" in r][-1]
    assert last["step"] == 20 and last["bad_steps"] == 0 and last["overflow_steps"] == 3
    assert last["loss_scale"] == 8192.0
    _, state = latest_checkpoint(cfg.output / "checkpoints")
    assert adam_steps(state) == 17 and state["overflow_steps"] == 3 and state["bad_steps"] == 0
    assert state["scaler"]["scale"] == 8192.0


def test_fp16_gradients_that_overflow_at_a_loss_scale_of_one_count_as_divergence(tmp_path, tiny_scene_dir,
                                                                                  fp16_on_cpu, monkeypatch):
    """From 2^16 the scale halves on each overflow, reaching 1 after 16 of them (steps 2-17); overflowing still
    (steps 18-20) is divergence: the guard restores the initial state, with the initial loss scale (the overflows
    start again at 2^16: steps 21-36), and fails clearly when that diverges too (37-39)."""
    poison_gradients(monkeypatch, set(range(2, 1000)))
    cfg = tiny_config(tmp_path, tiny_scene_dir.parent, steps=60, save_every=100, max_bad_steps=3,
                      precision="fp16")
    with pytest.raises(DivergenceError, match="training diverged: 3 steps in a row"):
        train(cfg)
    lines = records(cfg.output)
    overflows = [r["step"] for r in lines if r.get("skipped") == "fp16 gradient overflow"]
    assert overflows == list(range(2, 18)) + list(range(21, 37))
    assert [r["loss_scale"] for r in lines if r.get("skipped") == "fp16 gradient overflow"][15:17] == [1.0, 32768.0]
    assert [r["step"] for r in lines if r.get("skipped") == "non-finite loss or gradients"] == [18, 19, 20, 37, 38, 39]
    assert [(r["step"], r["restored"]) for r in lines if "restored" in r] == [(20, "the initial state")]


def test_the_guard_never_restarts_from_the_initial_state_once_a_checkpoint_exists(tmp_path, tiny_scene_dir,
                                                                                   monkeypatch, capsys):
    """With one checkpoint kept, a second divergence right after the restore finds nothing older: training stops
    with a clear error instead of silently restarting from random parameters; the CLI reports it as an error."""
    poison_loss(monkeypatch, set(range(7, 1000)))
    cfg = tiny_config(tmp_path, tiny_scene_dir.parent, steps=30, save_every=5, keep_checkpoints=1, max_bad_steps=2)
    with pytest.raises(DivergenceError, match="no checkpoint from before step 5 is left"):
        train(cfg)
    assert [(r["step"], r["restored"]) for r in records(cfg.output) if "restored" in r] == [(8, "step-00000005.pt")]

    poison_loss(monkeypatch, set(range(1, 1000)))
    capsys.readouterr()
    assert main(["train", "--output", str(tmp_path / "cli"), "--steps", "10", "--max-bad-steps", "2",
                 "--data.cache-dir", str(tiny_scene_dir.parent), *TINY]) == 1
    assert "nerfkit: error: training diverged: 2 steps in a row" in capsys.readouterr().err


def test_a_resume_in_the_middle_of_a_bad_streak_continues_exactly(tmp_path, tiny_scene_dir, monkeypatch):
    """Steps 14-16 are NaN (3 in a row restore the step-10 checkpoint). The step-15 checkpoint is written inside the
    streak; a run resumed from it knows the streak (2 bad steps since step 13), so step 16 completes it and
    restores step 10 exactly as the uninterrupted run did: the same parameters at the end."""
    cache = tiny_scene_dir.parent
    options = dict(steps=20, save_every=5, keep_checkpoints=5, max_bad_steps=3, lr=1e-3, lr_final=1e-3,
                   warmup_steps=0)
    poison_loss(monkeypatch, {14, 15, 16})
    straight = tiny_config(tmp_path / "a", cache, **options)
    train(straight)
    assert [(r["step"], r["restored"]) for r in records(straight.output) if "restored" in r] == \
        [(16, "step-00000010.pt")]
    half = torch.load(straight.output / "checkpoints" / "step-00000015.pt", weights_only=True)
    assert half["streak"] == 2 and half["good_at"] == 13

    interrupted = tmp_path / "b" / "run" / "checkpoints"
    interrupted.mkdir(parents=True)
    for step in (5, 10, 15):
        shutil.copy(straight.output / "checkpoints" / f"step-{step:08d}.pt", interrupted)
    monkeypatch.undo()
    poison_loss(monkeypatch, {1})  # the resumed run's first step is step 16
    resumed = tiny_config(tmp_path / "b", cache, **options, resume=True)
    train(resumed)
    assert [(r["step"], r["restored"]) for r in records(resumed.output) if "restored" in r] == \
        [(16, "step-00000010.pt")]
    _, a = latest_checkpoint(straight.output / "checkpoints")
    _, b = latest_checkpoint(interrupted)
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=key)
