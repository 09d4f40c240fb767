import json
import shutil

import pytest
import torch

from nerfkit.data.builtin import BuiltinSceneConfig
from nerfkit.fields import VanillaFieldConfig
from nerfkit.methods import VanillaConfig
from nerfkit.train.checkpoint import latest_checkpoint, list_checkpoints, save_checkpoint
from nerfkit.train.config import DataConfig, TrainConfig, from_dict, to_dict
from nerfkit.train.trainer import train


def tiny_config(tmp_path, cache, **overrides) -> TrainConfig:
    field = VanillaFieldConfig(depth=2, width=32, skips=(), color_width=16, pos_freqs=4, dir_freqs=2)
    data = DataConfig(builtin=BuiltinSceneConfig(resolution=24, n_train=12, n_val=2, n_test=3), cache_dir=cache)
    base = dict(output=tmp_path / "run", data=data, method="vanilla", steps=20, batch_size=128, eval_every=0, eval_images=1,
                save_every=10, log_every=5, progress=False,
                vanilla=VanillaConfig(n_coarse=8, n_fine=8, coarse=field, fine=field))
    base.update(overrides)
    return TrainConfig(**base)


def test_resume_continues_exactly_the_same_run(tmp_path, tiny_scene_dir):
    cache = tiny_scene_dir.parent
    straight = tiny_config(tmp_path / "a", cache, steps=20, keep_checkpoints=5)
    train(straight)
    _, state_straight = latest_checkpoint(straight.output / "checkpoints")

    # An interrupted run: only the step-10 checkpoint of the same configuration survives.
    interrupted = tmp_path / "b" / "run" / "checkpoints"
    interrupted.mkdir(parents=True)
    shutil.copy(straight.output / "checkpoints" / "step-00000010.pt", interrupted)
    resumed = tiny_config(tmp_path / "b", cache, steps=20, resume=True)
    result = train(resumed)
    assert result.step == 20
    _, state_resumed = latest_checkpoint(resumed.output / "checkpoints")
    for key, value in state_straight["model"].items():
        torch.testing.assert_close(state_resumed["model"][key], value, rtol=0, atol=0, msg=key)
    steps = [json.loads(line)["step"] for line in (resumed.output / "metrics.jsonl").read_text().splitlines()]
    assert min(steps) == 15 and max(steps) == 20  # the resumed run starts after step 10


def test_ngp_resume_continues_exactly_the_same_run(tmp_path, tiny_scene_dir):
    """The default method too: compiled hash encoding and march, occupancy grid updates, a batch size that adapts
    to the sample budget, stratified steps and random backgrounds. N + resume + N steps equals 2N steps."""
    from nerfkit.cli import main

    from test_cli import TINY_NGP

    run = ["--data.cache-dir", str(tiny_scene_dir.parent), "--steps", "40", "--save-every", "20",
           "--keep-checkpoints", "5", "--eval-images", "0", "--ngp.occgrid.update-every", "4",
           "--ngp.occgrid.warmup-steps", "8", *TINY_NGP]
    assert main(["train", "--output", str(tmp_path / "a"), *run]) == 0
    _, straight = latest_checkpoint(tmp_path / "a" / "checkpoints")
    interrupted = tmp_path / "b" / "checkpoints"
    interrupted.mkdir(parents=True)
    shutil.copy(tmp_path / "a" / "checkpoints" / "step-00000020.pt", interrupted)
    assert main(["train", "--output", str(tmp_path / "b"), *run, "--resume"]) == 0
    _, resumed = latest_checkpoint(interrupted)
    assert resumed["step"] == straight["step"] == 40
    half = torch.load(interrupted / "step-00000020.pt", weights_only=True)
    assert half["batch_size"] != straight["batch_size"]  # the batch size did adapt after the checkpoint
    assert resumed["batch_size"] == straight["batch_size"]
    for key, value in straight["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, rtol=0, atol=0, msg=key)
    assert not torch.equal(half["model"]["occgrid.estimator.occs"], straight["model"]["occgrid.estimator.occs"])


def test_checkpoints_are_atomic_rotated_and_load_weights_only(tmp_path):
    folder = tmp_path / "ckpt"
    for step in (1, 2, 3):
        save_checkpoint(folder, step, {"step": step, "w": torch.full((2,), float(step))}, keep=2)
    assert [p.name for p in list_checkpoints(folder)] == ["step-00000002.pt", "step-00000003.pt"]
    assert not list(folder.glob(".*.tmp"))
    state = torch.load(folder / "step-00000003.pt", weights_only=True)
    assert state["step"] == 3
    # A truncated newest checkpoint falls back to the previous one, with a warning.
    (folder / "step-00000003.pt").write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="step-00000003.pt is unreadable"):
        path, state = latest_checkpoint(folder)
    assert state["step"] == 2


def test_config_round_trips_through_plain_dicts(tmp_path):
    cfg = tiny_config(tmp_path, tmp_path / "cache", lr=1e-3)
    again = from_dict(TrainConfig, json.loads(json.dumps(to_dict(cfg))))
    assert again == cfg


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["occgrid", "coarse-to-fine"])
def test_short_training_run_learns_the_builtin_scene(tmp_path, tiny_scene_dir, estimator):
    """200 steps of the default-shaped vanilla NeRF (4x64 with a skip) on the 24x24 built-in scene reach > 17 dB
    on validation images (about 20 dB for both samplers when written; an untrained model scores about 10 dB).
    With the occupancy grid this also guards against a grid that prunes every cell and stops learning."""
    field = VanillaFieldConfig(depth=4, width=64, skips=(2,), color_width=32, pos_freqs=6, dir_freqs=2)
    cfg = tiny_config(tmp_path, tiny_scene_dir.parent, steps=200, batch_size=512, lr=3e-3, save_every=1000,
                      eval_images=2, vanilla=VanillaConfig(n_coarse=16, n_fine=16, coarse=field, fine=field,
                                                           estimator=estimator))
    result = train(cfg)
    assert result.val_psnr > 17.0
    lines = [json.loads(line) for line in (cfg.output / "metrics.jsonl").read_text().splitlines()]
    # Averages of the first three and the last five logs: one batch's PSNR swings by about 0.5 dB.
    train_psnr = [r["psnr"] for r in lines if "psnr" in r]
    early, late = sum(train_psnr[:3]) / 3, sum(train_psnr[-5:]) / 5
    assert late > early + 5.0, (early, late)


def test_resume_with_a_different_model_is_refused_clearly(tmp_path, tiny_scene_dir):
    cache = tiny_scene_dir.parent
    train(tiny_config(tmp_path, cache, steps=5, save_every=5))
    other = tiny_config(tmp_path, cache, steps=10, resume=True)
    other.vanilla.n_fine = 4
    with pytest.raises(ValueError, match=r"different --vanilla.\* settings \(--vanilla.n-fine\)"):
        train(other)


def test_resume_accepts_a_checkpoint_from_before_a_setting_existed(tmp_path, tiny_scene_dir):
    """A setting added to the method after the checkpoint was written (here: rendering's sample budget) takes its
    default and does not block --resume; a changed setting still does (above)."""
    cache = tiny_scene_dir.parent
    train(tiny_config(tmp_path, cache, steps=5, save_every=5))
    path = tmp_path / "run" / "checkpoints" / "step-00000005.pt"
    state = torch.load(path, weights_only=True)
    del state["config"]["vanilla"]["occgrid"]["render_max_samples"]
    torch.save(state, path)
    assert train(tiny_config(tmp_path, cache, steps=8, resume=True)).step == 8


def test_resume_keeps_the_defaults_a_run_started_with(tmp_path, tiny_scene_dir):
    """Settings left unset (the device's defaults) take the checkpoint's values on --resume, so a run started
    under other defaults (here: an ngp MLP width) resumes; a width asked for explicitly must still match."""
    from nerfkit.fields.ngp import NGPFieldConfig
    from nerfkit.methods import NGPConfig

    cache = tiny_scene_dir.parent
    field = dict(n_levels=2, log2_hashmap_size=10, max_resolution=32)

    def ngp_run(steps, hidden_dim, resume=False):
        ngp = NGPConfig(field=NGPFieldConfig(**field, hidden_dim=hidden_dim, compile_encoder=False),
                        target_samples=512)
        ngp.occgrid.compile_march = False  # no compilation in this test
        return tiny_config(tmp_path, cache, method="ngp", steps=steps, save_every=4, resume=resume, ngp=ngp)

    train(ngp_run(4, 24))  # as if 24 had been the default when the run started
    assert train(ngp_run(6, None, resume=True)).step == 6
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["ngp"]["field"]["hidden_dim"] == 24
    with pytest.raises(ValueError, match=r"different --ngp.\* settings \(--ngp.field\)"):
        train(ngp_run(8, 16, resume=True))


def test_resume_without_checkpoint_is_refused_clearly(tmp_path, tiny_scene_dir):
    with pytest.raises(FileNotFoundError, match="no checkpoint found"):
        train(tiny_config(tmp_path, tiny_scene_dir.parent, resume=True))


def test_timed_checkpoints_follow_training_time(tmp_path, tiny_scene_dir):
    cfg = tiny_config(tmp_path, tiny_scene_dir.parent, steps=12, save_every=1000, save_every_seconds=1e-9,
                      keep_checkpoints=100)
    train(cfg)
    steps = [int(p.stem.split("-")[1]) for p in list_checkpoints(cfg.output / "checkpoints")]
    assert steps == list(range(1, 13))  # every step's training time passes the (tiny) interval
    states = [torch.load(p, weights_only=True) for p in list_checkpoints(cfg.output / "checkpoints")]
    elapsed = [s["elapsed"] for s in states]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0


def test_resume_with_another_method_is_refused_clearly(tmp_path, tiny_scene_dir):
    cfg = tiny_config(tmp_path, tiny_scene_dir.parent, steps=2)
    train(cfg)
    other = tiny_config(tmp_path, tiny_scene_dir.parent, steps=4, resume=True, method="ngp")
    with pytest.raises(ValueError, match="--method vanilla, not ngp"):
        train(other)


def test_resume_with_another_process_count_warns_and_names_the_new_global_batch(tmp_path, tiny_scene_dir):
    cfg = tiny_config(tmp_path, tiny_scene_dir.parent, steps=10, save_every=10, batch_size=128)
    train(cfg)
    path = cfg.output / "checkpoints" / "step-00000010.pt"
    state = torch.load(path, weights_only=True)
    state["rng"]["ranks"] = state["rng"]["ranks"] * 2  # as if two processes had written it
    state["world_size"] = 2
    torch.save(state, path)
    resumed = tiny_config(tmp_path, tiny_scene_dir.parent, steps=12, save_every=10, batch_size=128, resume=True)
    with pytest.warns(UserWarning, match=r"written by 2 process\(es\), this run has 1; .* each process keeps the "
                                         r"checkpoint's 128 rays a step, so a step now draws 128 rays in all \(it "
                                         r"drew 256\)"):
        assert train(resumed).step == 12


def test_archives_without_crcs_load_and_only_damaged_newer_checkpoints_are_set_aside(tmp_path, monkeypatch):
    from nerfkit.train.checkpoint import CorruptCheckpoint, load_checkpoint, set_aside_newer

    folder = tmp_path / "ckpt"
    for step in (1, 2, 3):
        save_checkpoint(folder, step, {"step": step, "w": torch.full((1000,), float(step))}, keep=5)
    # written with CRCs off (torch stores 0 for each entry): loads, nothing to check against
    torch.serialization.set_crc32_options(False)
    try:
        save_checkpoint(folder, 4, {"step": 4, "w": torch.full((1000,), 4.0)}, keep=5)
    finally:
        torch.serialization.set_crc32_options(True)
    assert load_checkpoint(folder / "step-00000004.pt")["step"] == 4
    (folder / "step-00000003.pt").write_bytes((folder / "step-00000003.pt").read_bytes()[:300])  # cut short
    with pytest.raises(CorruptCheckpoint, match="step-00000003.pt is unreadable or corrupt"):
        load_checkpoint(folder / "step-00000003.pt")
    # a read that fails now (I/O) is not damage
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: (_ for _ in ()).throw(OSError("I/O error")))
    with pytest.raises(RuntimeError, match="could not be read now") as caught:
        load_checkpoint(folder / "step-00000002.pt")
    assert not isinstance(caught.value, CorruptCheckpoint)
    monkeypatch.setattr(torch, "load", real_load)
    # resumed from step 1: the damaged step 3 is renamed, the readable steps 2 and 4 stay
    assert set_aside_newer(folder, 1) == [folder / "step-00000003.pt.corrupt"]
    assert [p.name for p in list_checkpoints(folder)] == ["step-00000001.pt", "step-00000002.pt",
                                                          "step-00000004.pt"]
