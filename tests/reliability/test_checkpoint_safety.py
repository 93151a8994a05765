"""Tampered checkpoints are refused: InputError from the loader, exit status 2 and one line from the CLI.

Every case starts from a valid exported checkpoint (or raw bytes) and changes one thing: a pickle whose
``__reduce__`` would run a command, truncated / empty / random bytes, hyper-parameters naming a class outside
the allow-listed ``trackformers.`` / ``torch.optim.`` packages (also by attribute tricks through an allowed
module), values of the wrong type, weights of the wrong shape, non-finite weights, an unknown attention
backend. A valid checkpoint still loads and reconstructs (the test can fail both ways).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from trackformers.cli import main
from trackformers.errors import InputError
from trackformers.io import write_events
from trackformers.simulation import simulate_event
from trackformers.training.module import TrackingModule

ROOT = Path(__file__).resolve().parents[2]
ENCODER = {"class_path": "trackformers.models.encoder.Encoder",
           "init_args": {"d_model": 16, "n_heads": 2, "n_layers": 1, "backend": "dense", "window": 8}}
TASK = {"class_path": "trackformers.models.tasks.EmbeddingTask", "init_args": {"dim": 4}}


class Payload:
    """Unpickling this object would run a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - the pickle protocol
        return (os.system, (f"touch {self.marker}",))


def _hp(part: str, key: str, value: object) -> Callable[[dict], None]:
    def edit(ckpt: dict) -> None:
        ckpt["hyper_parameters"][part][key] = value
    return edit


def _set(path: tuple[str, ...], value: object) -> Callable[[dict], None]:
    def edit(ckpt: dict) -> None:
        target = ckpt
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def _nan_weight(ckpt: dict) -> None:
    ckpt["state_dict"]["encoder.norm.weight"][0] = float("nan")


#: name → (edit of the loaded checkpoint dict, fragment the error must contain)
EDITS: dict[str, tuple[Callable[[dict], None], str]] = {
    "encoder_os_system": (_hp("encoder", "class_path", "os.system"), "not allowed"),
    "encoder_builtins_eval": (_hp("encoder", "class_path", "builtins.eval"), "not allowed"),
    "encoder_lookalike_package": (_hp("encoder", "class_path", "trackformers_evil.models.X"), "not allowed"),
    "encoder_reexported_module": (_hp("encoder", "class_path", "trackformers.models.encoder.torch"),
                                  "not a class defined under"),
    "encoder_reexported_function": (_hp("encoder", "class_path", "trackformers.models.encoder.attend"),
                                    "not a class defined under"),
    "task_outside_tasks": (_hp("task", "class_path", "trackformers.models.encoder.Encoder"), "not allowed"),
    "task_subprocess": (_hp("task", "class_path", "subprocess.Popen"), "not allowed"),
    "optimizer_os_system": (_set(("hyper_parameters", "optimizer"),
                                 {"class_path": "os.system", "init_args": {}}), "not allowed"),
    "scheduler_outside_torch": (_set(("hyper_parameters", "scheduler"),
                                     {"class_path": "pathlib.Path", "init_args": {}}), "not allowed"),
    "class_path_not_a_string": (_hp("encoder", "class_path", 42), "class_path"),
    "init_args_wrong_type": (_hp("encoder", "init_args", {"d_model": "sixteen"}), "do not fit"),
    "unknown_hyper_parameter": (_set(("hyper_parameters", "bogus"), 1), "do not fit"),
    "hyper_parameters_list": (_set(("hyper_parameters",), [1, 2]), "not mappings"),
    "state_dict_wrong_shape": (_set(("state_dict", "encoder.norm.weight"), torch.zeros(3)), "do not fit"),
    "state_dict_string_value": (_set(("state_dict", "encoder.norm.weight"), "weights"), "not mappings"),
    "state_dict_missing_key": (lambda c: c["state_dict"].pop("encoder.norm.weight"), "do not match"),
    "nan_weight": (_nan_weight, "NaN or infinite"),
    "unknown_backend": (_hp("encoder", "init_args", {**ENCODER["init_args"], "backend": "evil"}),
                        "backend 'evil' is unknown"),
    "no_state_dict": (lambda c: c.pop("state_dict"), "no state_dict"),
}


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    module = TrackingModule(encoder=ENCODER, task=TASK)
    return module.export_checkpoint(tmp_path_factory.mktemp("good") / "good.ckpt")


@pytest.fixture(scope="module")
def event_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("events") / "events"
    write_events([simulate_event(seed=5, volumes=(7, 8, 9), gun=3)], folder, format="csv")
    return folder


def edited(good: Path, tmp_path: Path, edit: Callable[[dict], None]) -> Path:
    ckpt = copy.deepcopy(torch.load(good, weights_only=True))
    edit(ckpt)
    path = tmp_path / "tampered.ckpt"
    torch.save(ckpt, path)
    return path


def reconstruct(checkpoint: Path, event_dir: Path, out: Path) -> int:
    return main(["reconstruct", str(event_dir), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--device", "cpu", "--no-progress"])


def assert_refused(path: Path, fragment: str, event_dir: Path, tmp_path: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match=fragment) as info:
        TrackingModule.load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    out = tmp_path / "out"
    assert reconstruct(path, event_dir, out) == 2
    err = capsys.readouterr().err
    assert err.startswith("trackformers: error: checkpoint") and "Traceback" not in err
    assert err.count("\n") == 1, err
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_valid_checkpoint_loads_and_reconstructs(good: Path, event_dir: Path, tmp_path: Path) -> None:
    module = TrackingModule.load_checkpoint(good)
    assert module.encoder.backend == "dense"
    assert reconstruct(good, event_dir, tmp_path / "out") == 0
    assert len(list((tmp_path / "out").glob("*-submission.csv"))) == 1


@pytest.mark.parametrize("name", sorted(EDITS))
def test_tampered_hyper_parameters_and_weights_are_refused(name: str, good: Path, event_dir: Path,
                                                           tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    edit, fragment = EDITS[name]
    assert_refused(edited(good, tmp_path, edit), fragment, event_dir, tmp_path, capsys)


@pytest.mark.parametrize("cut", ["empty", "ten_bytes", "half", "all_but_one"])
def test_truncated_checkpoint_is_refused(cut: str, good: Path, event_dir: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    data = good.read_bytes()
    size = {"empty": 0, "ten_bytes": 10, "half": len(data) // 2, "all_but_one": len(data) - 1}[cut]
    path = tmp_path / "truncated.ckpt"
    path.write_bytes(data[:size])
    # one whole sentence (torch's own text for a cut archive ran on and was cut mid-sentence)
    assert_refused(path, UNREADABLE, event_dir, tmp_path, capsys)


#: The whole message after the path for a file torch cannot read at all.
UNREADABLE = (r": not a readable checkpoint \(the file is corrupt, truncated or of another format\); expected a "
              r"trackformers checkpoint of tensors and plain values\.$")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bytes_are_refused(seed: int, event_dir: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "random.ckpt"
    path.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(seed),
                                   dtype=torch.uint8).numpy().tobytes())
    assert_refused(path, UNREADABLE, event_dir, tmp_path, capsys)


@pytest.mark.parametrize("text", ["hello\n", "epoch,step\n0,50\n"])
def test_a_text_file_is_refused(text: str, event_dir: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.ckpt"
    path.write_text(text)  # the unpickler met a KeyError here, which escaped as a traceback
    assert_refused(path, UNREADABLE, event_dir, tmp_path, capsys)


def test_random_bytes_inside_a_valid_zip_are_refused(good: Path, event_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    data = bytearray(good.read_bytes())
    start = data.find(b"data.pkl") + 64  # inside the pickle stream of the archive
    data[start:start + 64] = bytes(range(64))
    path = tmp_path / "flipped.ckpt"
    path.write_bytes(bytes(data))
    assert_refused(path, "checkpoint", event_dir, tmp_path, capsys)


def test_reduce_payload_is_refused_without_running_it(tmp_path: Path, event_dir: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"encoder": Payload(marker)}}, path)
    assert_refused(path, "unsupported GLOBAL", event_dir, tmp_path, capsys)
    assert not marker.exists()


def test_reduce_payload_cli_subprocess(tmp_path: Path, event_dir: Path) -> None:
    """The console entry point itself: exit 2, one line on stderr, the payload never ran, no output."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": Payload(marker)}, path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-m", "trackformers", "reconstruct", str(event_dir), "--checkpoint",
                           str(path), "--out", str(tmp_path / "out"), "--device", "cpu", "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "unsupported GLOBAL" in done.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_not_a_file_is_refused(tmp_path: Path, event_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "folder.ckpt"
    folder.mkdir()
    assert_refused(folder, "no such file", event_dir, tmp_path, capsys)
