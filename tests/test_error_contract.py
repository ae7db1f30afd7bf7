"""One error contract: ``flanet <command>: error: <what> (<file or key>)``, exit 2 / 1, no traceback."""

from __future__ import annotations

import dataclasses
import errno
import os
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from flanet.cli import main
from flanet.data.synth import generate_dataset
from flanet.training.config import dump_config, load_config
from flanet.training.preflight import claim_new_run_dir
from flanet.training.resume import AtomicCheckpointIO

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")


def error_line(capsys: pytest.CaptureFixture, command: str) -> str:
    """The single stderr line of a failed command (and no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("flanet ")]
    assert len(lines) == 1 and re.fullmatch(rf"flanet {command}: error: .+", lines[0]), err
    return lines[0]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("synth") / "data", videos=4, frames=5, size=64, seed=0)


@pytest.fixture(scope="module")
def checkpoint(small_checkpoint: Path) -> Path:
    """This file's checkpoint: conftest's smallest one."""
    return small_checkpoint


def train_args(data_root: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["train", "--config", "cpu-small", f"data.root={data_root}", "data.image_size=64",
            "trainer.enable_progress_bar=false", f"output.dir={tmp_path / 'runs'}", *extra]


@pytest.mark.parametrize(("override", "key"), [
    ("model.options={foo: 1}", "model.options.foo"),
    ("model.options.head_channels=wide", "model.options.head_channels"),
    ("trainer.epochs=0", "trainer.max_epochs"),  # an old name: the error names the new key
    ("trainer.max_time=abc", "trainer.max_time"),
    ("trainer.max_epochs=0", "trainer.max_epochs"),
    ("trainer.max_epochs=-1", "trainer.max_epochs"),
    ("trainer.max_steps=-5", "trainer.max_steps"),
    ("name=../../x", "name"),
    ("data.image_size=0", "data.image_size"),
    ("data.image_size=1000000000", "data.image_size"),
    ("optim.lr=-1", "optim.lr"),
    ("optim.lr=.nan", "optim.lr"),
    ("optim.betas=[0.9,1.5]", "optim.betas"),
    ("data.heatmap_sigma=-2", "data.heatmap_sigma"),
    ("data.num_workers=-1", "data.num_workers"),
    ("loss.alpha=-0.1", "loss.alpha"),
])
def test_bad_training_settings_are_one_line_naming_the_key_and_leave_no_folder(
    override: str, key: str, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(train_args(data_root, tmp_path, override)) == 2
    assert error_line(capsys, "train").endswith(f"({key})")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert not (tmp_path.parent / "x").exists()


@NO_GPU
def test_gpu_accelerator_without_a_gpu_is_bad_input(data_root: Path, tmp_path: Path, capsys) -> None:
    assert main(train_args(data_root, tmp_path, "trainer.accelerator=gpu")) == 2
    assert "no CUDA GPU" in error_line(capsys, "train")


@NO_GPU
def test_device_cuda_without_a_gpu_is_bad_input(checkpoint: Path, tmp_path: Path, capsys) -> None:
    video = tmp_path / "frames"
    generate_dataset(tmp_path / "d", videos=1, frames=3, size=64, seed=0)
    video = next((tmp_path / "d" / "img_list").iterdir())
    assert main(["predict", "--checkpoint", str(checkpoint), str(video), "--out", str(tmp_path / "o"),
                 "--device", "cuda", "--no-progress"]) == 2
    assert "--device cuda asked for a CUDA GPU, but none is available" in error_line(capsys, "predict")


def test_a_folder_given_as_checkpoint_is_named_as_such(checkpoint: Path, data_root: Path, tmp_path: Path,
                                                       capsys) -> None:
    # Before: "checkpoint not found" for a folder that exists.
    assert main(["evaluate", "--checkpoint", str(checkpoint.parent), "--data", str(data_root),
                 "--out", str(tmp_path / "e"), "--no-progress"]) == 2
    line = error_line(capsys, "evaluate")
    assert "is a folder, not a checkpoint file" in line and "model.pt" in line


def test_an_empty_resume_file_is_named_as_such(data_root: Path, tmp_path: Path, capsys) -> None:
    # Before: "mmap can only be used with files saved with torch.save(..., _use_new_zipfile_serialization=True)"
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    dump_config(load_config("cpu-small", [f"data.root={data_root}"]), run_dir / "config.yaml")
    (run_dir / "checkpoints" / "resume.ckpt").write_bytes(b"")
    assert main(["train", "--resume", str(run_dir)]) == 2
    assert "resume checkpoint is empty (0 bytes" in error_line(capsys, "train")


def test_a_symlink_loop_in_a_data_tree_is_named(data_root: Path, tmp_path: Path, capsys) -> None:
    tree = tmp_path / "data"
    generate_dataset(tree, videos=2, frames=3, size=32, seed=0)
    loop = next((tree / "img_list").iterdir()) / "loop"
    loop.symlink_to(loop.name)
    assert main(train_args(tree, tmp_path)) == 2  # `data check` lists it: tests/test_input_limits.py
    assert f"{loop}: symbolic link loop, ignored" in error_line(capsys, "train")


def test_verbose_shows_the_traceback(data_root: Path, tmp_path: Path, capsys) -> None:
    assert main(["-v", *train_args(data_root, tmp_path, "trainer.max_time=abc")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("flanet train: error: ")


def test_same_second_runs_get_distinct_folders(tmp_path: Path) -> None:
    first, second = claim_new_run_dir(tmp_path, "x"), claim_new_run_dir(tmp_path, "x")
    assert first != second and first.is_dir() and second.is_dir() and second.name.startswith(first.name)


def test_run_failing_before_its_first_step_leaves_no_folder(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()  # exists, but holds no data set: fails in the data module's setup
    assert main(train_args(tmp_path / "empty", tmp_path)) == 2
    error_line(capsys, "train")
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


def test_full_disk_during_training_fails_the_run_with_one_line_and_keeps_an_absolute_root(
    data_root: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: AtomicCheckpointIO, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", full)
    monkeypatch.chdir(data_root.parent)  # a relative data.root ...
    args = ["train", "--config", "cpu-small", f"data.root={data_root.name}", "data.image_size=64",
            "trainer.enable_progress_bar=false", f"output.run_dir={tmp_path / 'run'}", "trainer.max_epochs=1",
            "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"]
    assert main(args) == 1
    assert "no space left on device" in error_line(capsys, "train")
    # ... is stored absolute, so --resume works from any folder
    assert load_config(tmp_path / "run" / "config.yaml").data.root == str(data_root.resolve())


def test_predict_failing_half_way_leaves_its_folder_marked_incomplete(
    checkpoint: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flanet.inference.runs.predict as predict

    generate_dataset(tmp_path / "d", videos=1, frames=3, size=64, seed=0)
    video = next((tmp_path / "d" / "img_list").iterdir())
    args = ["predict", "--checkpoint", str(checkpoint), str(video), "--device", "cpu", "--no-progress"]

    def disk_full(*a: object, **k: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "o" / "viewer.html"))

    monkeypatch.setattr(predict, "write_prediction_viewer", disk_full)
    assert main([*args, "--out", str(tmp_path / "o")]) == 1
    error_line(capsys, "predict")
    assert (tmp_path / "o" / "INCOMPLETE").is_file()
    monkeypatch.undo()
    assert main([*args, "--out", str(tmp_path / "o"), "--force"]) == 0
    assert not (tmp_path / "o" / "INCOMPLETE").exists() and (tmp_path / "o" / "summary.json").is_file()


def test_evaluate_failing_half_way_leaves_its_folder_marked_incomplete(
    checkpoint: Path, data_root: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flanet.evaluation.evaluate as evaluate

    def broken(*a: object, **k: object) -> None:
        raise RuntimeError("report writer failed")

    monkeypatch.setattr(evaluate, "write_evaluation", broken)
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(data_root), "--out", str(tmp_path / "e"),
                 "--no-progress", "--jobs", "1", "--resamples", "10", "--num-workers", "0"]) == 1
    assert "report writer failed" in error_line(capsys, "evaluate")
    assert (tmp_path / "e" / "INCOMPLETE").is_file() and not (tmp_path / "e" / "metrics.json").exists()


@pytest.mark.parametrize("option", [["--threshold", "1.5"], ["--threshold", "nan"], ["--threshold", "-0.1"],
                                    ["--fps", "0"], ["--fps", "-2"], ["--image-size", "0"]])
def test_impossible_predict_options_are_refused_by_name(option: list[str], tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["predict", "--checkpoint", str(tmp_path / "m.pt"), str(tmp_path), *option])
    assert stop.value.code == 2
    assert f"flanet predict: error: argument {option[0]}" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--threshold", "2"], ["--image-size", "0"]])
def test_impossible_evaluate_options_are_refused_by_name(option: list[str], tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", "--checkpoint", str(tmp_path / "m.pt"), "--data", str(tmp_path), *option])
    assert stop.value.code == 2
    assert f"flanet evaluate: error: argument {option[0]}" in capsys.readouterr().err


def test_data_split_errors_name_the_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "split", str(tmp_path / "missing")]) == 2  # not "flanet data: error"
    assert error_line(capsys, "data split").endswith(f"({tmp_path / 'missing'})")


def test_data_synth_help_describes_every_option_with_its_default(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["data", "synth", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option, default in (("--videos", "6"), ("--frames", "12"), ("--size", "128"), ("--seed", "0")):
        assert re.search(rf"{option} \S+ [^-]*\(default {default}[;)]", text), option


def test_a_stream_url_is_named_as_given(capsys: pytest.CaptureFixture) -> None:
    """Issue 27 item 6: live-source errors printed `rtsp:/host` (the URL folded as a path)."""
    from flanet.data import DataError
    from flanet.errors import report
    from flanet.inference.runs.capture import open_live_source

    class Closed:
        def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
            return False

        def release(self) -> None:
            pass

    with pytest.raises(DataError) as caught:
        open_live_source("rtsp://127.0.0.1:9/stream", open_capture=lambda target: Closed())
    assert report("predict", caught.value, False) == 2
    assert error_line(capsys, "predict").endswith("(rtsp://127.0.0.1:9/stream)")


def test_compare_with_an_empty_model_list_is_refused(data_root: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    """Issue 27 item 6: `--models ""` silently ran every model."""
    out = tmp_path / "cmp"
    assert main(["compare", "--config", "cpu-small", "--data", str(data_root), "--models", " , ", "--out", str(out)]) == 2
    assert error_line(capsys, "compare").endswith("(--models)")
    assert not out.exists()


def test_a_full_disk_names_the_file_being_written(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Issue 27 item 6: a write() that hits a full disk raised an OSError naming no file."""
    from flanet.errors import report
    from flanet.fileio import atomic_path
    from flanet.inference.runs.outputs import FrameTableWriter

    def full_disk(*args: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write() raises it: no file name

    with pytest.raises(OSError) as caught, atomic_path(tmp_path / "summary.json"):
        full_disk()
    assert report("predict", caught.value, False) == 1
    assert error_line(capsys, "predict").endswith(f"({tmp_path / 'summary.json'})")
    from flanet.inference.runs.outputs import FrameStats

    table = FrameTableWriter(tmp_path / "frames.csv")
    table._writer.writerow = full_disk
    stats = FrameStats(*[0] * len(dataclasses.fields(FrameStats)))
    with pytest.raises(OSError) as caught:
        table.write(stats)
    assert caught.value.filename == str(tmp_path / "frames.csv") and caught.value.errno == errno.ENOSPC


def test_a_failed_bench_worker_is_one_short_line_with_its_log_kept() -> None:
    """Issue 27 item 6: `flanet bench` folded a worker's whole traceback into a 1,072-character line."""
    from flanet.errors import describe
    from flanet.inference.bench.harness import worker_failure

    stderr = "Traceback (most recent call last):\n" + "  File \"x.py\", line 1, in f\n" * 30 + "ValueError: bad size 7\n"
    line = describe(RuntimeError(worker_failure({"encoder": "resnet18", "mode": "stream", "backend": "pytorch"},
                                                stderr)))
    assert "\n" not in line and len(line) < 300 and "ValueError: bad size 7" in line and "resnet18" in line
    log = Path(line.split("its whole log: ")[1].split(")")[0])
    assert log.read_text(encoding="utf-8").count("line 1, in f") == 30
    log.unlink()


def test_evaluate_with_an_impossible_image_size_writes_nothing(
    checkpoint: Path, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Issue 27 item 6: bad input left an output folder with INCOMPLETE and a lock behind."""
    out = tmp_path / "eval"
    args = ["evaluate", "--checkpoint", str(checkpoint), "--data", str(data_root), "--split", "all", "--out", str(out),
            "--image-size", "50", "--no-progress"]
    assert main(args) == 2
    assert "must each be a positive multiple of 32" in error_line(capsys, "evaluate")  # the one size check
    assert not out.exists()
