import json
import subprocess
import sys

import pytest

from nerfkit.cli import main

TINY = ["--method", "vanilla", "--data.builtin.resolution", "24", "--data.builtin.n-train", "12", "--data.builtin.n-val", "2",
        "--data.builtin.n-test", "3", "--vanilla.n-coarse", "8", "--vanilla.n-fine", "8",
        "--vanilla.coarse.depth", "2", "--vanilla.coarse.width", "32", "--vanilla.coarse.skips",
        "--vanilla.fine.depth", "2", "--vanilla.fine.width", "32", "--vanilla.fine.skips",
        "--batch-size", "128", "--eval-images", "1", "--no-progress"]


TINY_NGP = ["--method", "ngp", "--data.builtin.resolution", "24", "--data.builtin.n-train", "12",
            "--data.builtin.n-val", "2", "--data.builtin.n-test", "3", "--ngp.field.n-levels", "4",
            "--ngp.field.log2-hashmap-size", "12", "--ngp.field.max-resolution", "32", "--ngp.field.hidden-dim", "16",
            "--ngp.occgrid.resolution", "16", "--ngp.occgrid.steps-per-diagonal", "64", "--ngp.target-samples", "4096",
            "--batch-size", "128", "--eval-images", "1", "--no-progress"]


def test_ngp_trains_evaluates_and_renders_from_the_cli(tmp_path, tiny_scene_dir, capsys):
    run = tmp_path / "run"
    assert main(["train", "--output", str(run), "--steps", "20", "--data.cache-dir", str(tiny_scene_dir.parent)]
                + TINY_NGP) == 0
    assert "trained 20 steps" in capsys.readouterr().out
    saved = json.loads((run / "config.json").read_text())
    assert saved["method"] == "ngp" and saved["ngp"]["field"]["n_levels"] == 4
    assert main(["eval", "--run", str(run), "--device", "cpu"]) == 0
    assert json.loads((run / "eval-test" / "results.json").read_text())["n_images"] == 3
    assert main(["render", "--run", str(run), "--frames", "3", "--output", str(run / "orbit.gif")]) == 0
    assert (run / "orbit.gif").stat().st_size > 0


def test_help_explains_every_command_and_option(capsys):
    for argv in (["--help"], ["train", "--help"], ["eval", "--help"], ["render", "--help"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0
    out = capsys.readouterr().out
    for text in ("train", "eval", "render", "--steps", "Rays per step", "--data.path", "built-in",
                 "--split", "--frames", "Frames per second"):
        assert text in out


def test_train_eval_render_end_to_end(tmp_path, tiny_scene_dir, capsys):
    run = tmp_path / "run"
    cache = str(tiny_scene_dir.parent)
    assert main(["train", "--output", str(run), "--steps", "12", "--data.cache-dir", cache] + TINY) == 0
    assert "trained 12 steps" in capsys.readouterr().out
    assert main(["eval", "--run", str(run), "--device", "cpu"]) == 0
    results = json.loads((run / "eval-test" / "results.json").read_text())
    assert results["n_images"] == 3 and results["resolution"] == [24, 24]
    assert {p.name for p in (run / "eval-test" / "rgb").iterdir()} == {"r_0.png", "r_1.png", "r_2.png"}
    assert (run / "eval-test" / "depth" / "r_0.png").is_file()
    assert main(["render", "--run", str(run), "--frames", "4", "--output", str(run / "orbit.gif")]) == 0
    assert (run / "orbit.gif").stat().st_size > 0
    assert main(["render", "--run", str(run), "--frames", "4"]) == 0
    assert (run / "orbit.mp4").stat().st_size > 0


@pytest.mark.parametrize("argv, message", [
    (["train", "--steps", "0"], "--steps has an invalid value: 0"),
    (["train", "--batch-size", "-5"], "--batch-size has an invalid value"),
    (["train", "--data.downscale", "0"], "--data.downscale must be >= 1"),
    (["train", "--device", "tpu:9"], "--device 'tpu:9'"),
    (["train", "--data.path", "/definitely/not/here"], "--data.path /definitely/not/here does not exist"),
    (["train", "--precision", "fp16", "--device", "cpu"], "--precision fp16 needs a CUDA device"),
    (["train", "--dist-timeout", "0"], "--dist-timeout has an invalid value: 0.0"),
    (["train", "--max-bad-steps", "0"], "--max-bad-steps has an invalid value: 0"),
    (["train", "--restore-lr-factor", "1.5"], "--restore-lr-factor has an invalid value: 1.5"),
    (["train", "--gpus", "0"], "--gpus has an invalid value: 0"),
    (["eval", "--run", "/no/such/run"], "run folder not found: /no/such/run"),
    (["render", "--run", "/no/such/run", "--frames", "0"], "--frames has an invalid value"),
])
def test_bad_values_give_clear_errors(argv, message, capsys, tmp_path):
    argv = argv + (["--output", str(tmp_path / "o")] if argv[0] == "train" else [])
    try:
        code = main(argv)
    except SystemExit as exit_:  # values rejected while parsing are reported by tyro
        code = exit_.code
    assert code == 2
    captured = capsys.readouterr()
    text = " ".join((captured.err + captured.out).split()).replace("│", "")
    assert " ".join(message.split()) in " ".join(text.split())
    assert "Traceback" not in captured.err


def test_unparseable_values_are_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--steps", "many"])
    assert info.value.code == 2
    assert "steps" in capsys.readouterr().err.lower()


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "nerfkit", "--help"], capture_output=True, text=True, check=True)
    assert "train" in out.stdout
