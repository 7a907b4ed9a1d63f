"""Bad input ends in one line naming the problem and a non-zero exit, before anything trains or is written:
grids and study files (empty, lists, YAML syntax, impossible sizes, unknown keywords, unbuildable models),
--device without CUDA, --out naming a file, checkpoints that are not a fitting state_dict, and SIGTERM."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import typer
import yaml
from typer.testing import CliRunner

from gnsel.cli import app
from gnsel.cli.common import interruptible
from gnsel.data import check_data, describe_dataset, load_dataset
from gnsel.models import create_model
from gnsel.training import TrainConfig
from gnsel.zoo import load_grid

pytestmark = pytest.mark.usefixtures("isolated_data_root")

RUNNER = CliRunner()
NO_CUDA = "CUDA is not available on this machine; use --device cpu or auto"
needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def _one_line_error(res, *needles: str) -> str:
    """The command failed (exit 2) with exactly one line, ``error: ...``, holding every needle."""
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------ grids
GRIDS = {
    "a list": ("- mlp\n- cnn1d\n", ["must hold a mapping", "got a list"]),
    "empty": ("", ["is empty"]),
    "only a comment": ("# nothing yet\n", ["is empty"]),
    "models as a list": ("models: [mlp]\n", ["'models' must be a mapping", "got a list"]),
    "train as a list": ("models: {mlp: {}}\ntrain: [0.1]\n", ["'train' must be a mapping"]),
    "models empty": ("models: {}\n", ["'models' is empty"]),
    "a typo": ("modles: {mlp: {}}\n", ["unknown grid key(s) ['modles']", "valid keys"]),
    "width 0": ("models: {mlp: {width: 0}}\n", ["model 'mlp'", "width must be >= 1, got 0"]),
    "channels 0": ("models: {cnn1d: {channels: [8, 0]}}\n", ["channels must be >= 1, got 0"]),
    "a model the data cannot take": ("models: {lenet5: {}}\n", ["lenet5", "input shape (40,)"]),
    "n_train too big": ("dataset: digits\nmodels: {mlp: {}}\ntrain: {n_train: 5000}\n",
                        ["n_train=5000", "dataset 'digits'", "[1, 1294]", "train pool of 1438"]),
    "n_train above mnist1d's generator": (
        "dataset_kwargs: {num_samples: 1000}\nmodels: {mlp: {}}\ntrain: {n_train: 800}\n",
        ["n_train=800", "[1, 720]", "train pool of 800"]),
    "unknown dataset_kwargs": ("dataset: digits\ndataset_kwargs: {num_samples: 100}\nmodels: {mlp: {}}\n",
                               ["unknown dataset_kwargs 'num_samples' for dataset 'digits'", "accepted: test_size"]),
    "a YAML syntax error": ("models:\n  mlp: {width: [16, 32}\n", ["is not valid YAML at line 2, column 23"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(GRIDS))
def test_a_bad_grid_file_is_one_line_and_no_store_is_written(tmp_path, case):
    text, needles = GRIDS[case]
    grid = _write(tmp_path / "grid.yaml", text)
    store = tmp_path / "zoo.sqlite"
    res = RUNNER.invoke(app, ["zoo", "build", "--grid", str(grid), "--store", str(store), "--workers", "1"])
    _one_line_error(res, f"grid file {grid}", *needles)
    assert not store.exists() and not list(tmp_path.glob("zoo.sqlite*"))


def test_grid_mappings_are_checked_like_files():
    for spec, needle in (([1, 2], "a preset name, a YAML file or a mapping"), ({}, "the grid is empty"),
                         ({"name": "x"}, "empty"), (None, "a preset name"),
                         ({"models": {"mlp": {}}, "dataset_kwargs": [1]}, "'dataset_kwargs' must be a mapping"),
                         ({"datasets": [{"digits": 1}]}, "dataset names")):  # fmt: skip
        with pytest.raises(ValueError, match=needle):
            load_grid(spec)


# ------------------------------------------------------------------------------------- the data
def test_each_dataset_says_what_it_holds_without_loading():
    sizes = {"digits": (1438, 359), "mnist": (60000, 10000), "fashion_mnist": (60000, 10000),
             "cifar10": (50000, 10000), "cifar100": (50000, 10000), "svhn": (73257, 26032),
             "mnist1d": (8000, 2000), "synthetic": (2400, 600)}  # fmt: skip
    for name, (pool, test) in sizes.items():
        shape = describe_dataset(name)
        assert (shape.pool, shape.test) == (pool, test), name
    # what load_dataset gives, counted the same way: train + validation = the pool
    for name, kwargs in (("digits", {}), ("synthetic", {"n_samples": 300, "shape": [3, 4, 4]}),
                         ("mnist1d", {"num_samples": 600, "train_split": 0.75})):  # fmt: skip
        shape, d = describe_dataset(name, kwargs), load_dataset(name, **kwargs)
        assert (len(d.train) + len(d.val), len(d.test)) == (shape.pool, shape.test), name
        assert (d.input_shape, d.num_classes) == (shape.input_shape, shape.num_classes), name
        check_data(name, kwargs, n_train=len(d.train))  # the largest n_train passes
        with pytest.raises(ValueError, match=f"n_train={len(d.train) + 1}"):
            check_data(name, kwargs, n_train=len(d.train) + 1)


@pytest.mark.parametrize(
    "fields, needle",
    [
        ({"dataset": "synthetic", "dataset_kwargs": {"n_sample": 10}}, "accepted: n_samples, n_features"),
        ({"dataset_kwargs": {"num_sample": 10}}, "accepted: num_samples, data_seed, cache"),
        ({"dataset": "cifar10", "dataset_kwargs": {"num_samples": 10}}, "accepted: verify_checksums"),
        ({"dataset": "cifar10", "n_train": 45001}, "[1, 45000]"),
        ({"dataset": "svhn", "n_train": 70000, "n_val": 5000}, "[1, 68257]"),
        ({"dataset": "digits", "n_val": 1438}, "invalid n_val=1438"),
        ({"dataset": "synthetic", "dataset_kwargs": {"n_samples": "many"}}, "n_samples must be an integer"),
        ({"model": "mlp", "model_kwargs": {"depth": -1}}, "depth must be >= 0"),
        ({"model": "transformer", "dataset": "digits"}, "expects input_shape (T,)"),
    ],
)  # fmt: skip
def test_train_config_refuses_what_every_run_would_fail_on(fields, needle):
    with pytest.raises(ValueError) as err:
        TrainConfig(**fields).validate()
    assert needle in str(err.value)


# ----------------------------------------------------------------------------------- study files
STUDIES = {
    "a YAML syntax error": ("correlation:\n  zoo: [\n", ["is not valid YAML at line 3, column 1"]),
    "empty": ("", ["is empty"]),
    "a part as a list": ("correlation: [1, 2]\n", ["the study's correlation part must be a mapping", "got a list"]),
    "a nested list": ("hpo:\n  replay: [random]\n", ["hpo.replay must be a mapping"]),
    "a zoo with width 0": ("correlation:\n  zoo: {models: {mlp: {width: 0}}}\n", ["correlation.zoo", "width must be"]),
    "a cost case above the data": ("cost:\n  cases: [{model: mlp}]\n  dataset: digits\n  n_examples: 5000\n",
                                   ["cost.cases[0]", "n_train=5000", "[1, 1294]"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(STUDIES))
def test_a_bad_study_file_is_one_line_and_nothing_is_written(tmp_path, case):
    text, needles = STUDIES[case]
    path = _write(tmp_path / "study.yaml", text)
    out = tmp_path / "out"
    res = RUNNER.invoke(app, ["study", "--preset", str(path), "--out", str(out)])
    _one_line_error(res, f"study file {path}", *needles)
    assert not out.exists()


def test_a_search_space_with_a_yaml_syntax_error_is_one_line(tmp_path):
    space = _write(tmp_path / "space.yaml", "dataset: mnist1d\nspace:\n  lr: {loguniform: [0.01, 0.1}\n")
    res = RUNNER.invoke(app, ["tune", "--space", str(space), "--store", str(tmp_path / "t.sqlite"),
                              "--storage", str(tmp_path / "tune")])  # fmt: skip
    _one_line_error(res, f"search space file {space} is not valid YAML at line 3, column")
    assert not (tmp_path / "t.sqlite").exists() and not (tmp_path / "tune").exists()


# ------------------------------------------------------------------------------- --device, --out
@needs_no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:3"])
def test_device_cuda_without_cuda_is_one_line_for_every_command(tmp_path, device):
    for args in (["measure", "--dataset", "synthetic"], ["correlate", "--store", str(tmp_path / "none.sqlite")],
                 ["study", "--out", str(tmp_path / "study")]):  # fmt: skip
        _one_line_error(RUNNER.invoke(app, [*args, "--device", device]), NO_CUDA)
    assert not (tmp_path / "study").exists()
    _one_line_error(RUNNER.invoke(app, ["measure", "--device", "tpu"]), "unknown device 'tpu'")


@needs_no_cuda
def test_a_study_whose_own_device_is_cuda_is_refused_without_cuda(tmp_path):
    path = _write(tmp_path / "study.yaml", "device: cuda\ncost: {cases: [{model: mlp}]}\n")
    _one_line_error(RUNNER.invoke(app, ["study", "--preset", str(path), "--out", str(tmp_path / "o")]), NO_CUDA)
    assert not (tmp_path / "o").exists()


def test_out_naming_a_file_is_one_line(tmp_path):
    file = _write(tmp_path / "report.txt", "mine\n")
    for args in (["study"], ["correlate", "--store", str(tmp_path / "none.sqlite")],
                 ["hpo-bench", "--store", str(tmp_path / "none.sqlite")]):  # fmt: skip
        _one_line_error(RUNNER.invoke(app, [*args, "--out", str(file)]), f"--out {file} is not a folder")
    _one_line_error(RUNNER.invoke(app, ["study", "--out", str(file / "sub")]), f"({file} is a file)")
    assert file.read_text() == "mine\n"


# ---------------------------------------------------------------------------- measure --checkpoint
def _net(**kwargs) -> torch.nn.Module:
    return create_model("mlp", num_classes=4, input_shape=(20,), **kwargs)  # synthetic's defaults


def _measure(path: Path, *extra: str):
    return RUNNER.invoke(app, ["measure", "--dataset", "synthetic", "--checkpoint", str(path), "--no-naive",
                               "--n", "32", "--device", "cpu", *extra])  # fmt: skip


def test_checkpoint_of_random_bytes(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(os.urandom(4096))
    _one_line_error(_measure(path), f"checkpoint {path} is not a PyTorch state_dict file", "corrupt, truncated")


def test_checkpoint_that_is_empty(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    res = _measure(path)
    assert "Aborted" not in res.output
    _one_line_error(res, f"checkpoint {path} is empty (0 bytes)", "model.state_dict()")


def test_checkpoint_of_a_whole_pickled_model(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(_net(), path)
    _one_line_error(_measure(path), "holds a pickled gnsel.models.mlp.MLP object", "save model.state_dict() instead")


def test_checkpoint_that_does_not_fit_names_keys_and_shapes(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(_net(width=8, depth=3).state_dict(), path)  # the measured model: width 256, depth 2
    line = _one_line_error(_measure(path), "does not fit model 'mlp'", "2 unexpected key(s): features.7.weight, "
                           "features.7.bias", "shape mismatch(es), file vs model: features.1.weight (8, 20) vs (256, 20)")  # fmt: skip
    assert "and 1 more" in line and len(line) < 600  # shortened: the first few of each kind, the rest counted
    torch.save({"head.weight": torch.zeros(4, 256)}, path)
    _one_line_error(_measure(path), "5 missing key(s): features.1.weight", "and 1 more")
    torch.save(torch.zeros(3), path)
    _one_line_error(_measure(path), "holds a Tensor, not a state_dict")


def test_a_fitting_checkpoint_is_measured(tmp_path):
    path = tmp_path / "good.pt"
    torch.save({"state_dict": _net(width=8).state_dict(), "epoch": 3}, path)
    res = _measure(path, "--model-kwargs", '{"width": 8}', "--json")
    assert res.exit_code == 0, res.output
    assert '"checkpoint": "' in res.output and '"gn_full"' in res.output


# ------------------------------------------------------------------------------------ interruptions
def _app_of(command) -> typer.Typer:
    one = typer.Typer()
    one.command()(interruptible(command))
    one.command("other")(lambda: None)  # two commands: the command is addressed by name
    return one


_INTERRUPT_CHECK = r"""
import os, signal, sys, time
import typer
from typer.testing import CliRunner
from gnsel.cli.common import interruptible

def app_of(command):
    one = typer.Typer()
    one.command()(interruptible(command))
    one.command("other")(lambda: None)  # two commands: the command is addressed by name
    return one

def ctrl_c():
    raise KeyboardInterrupt

def sigterm():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(15))  # as ray.init does: it is not installed
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    raise AssertionError("SIGTERM did not interrupt the command")

before, set_handler = signal.getsignal(signal.SIGTERM), signal.signal
env = os.environ.get("RAY_DISABLE_FAILURE_SIGNAL_HANDLER")
runner = CliRunner()
res = runner.invoke(app_of(ctrl_c), ["ctrl-c"])
assert res.exit_code == 130 and res.output.strip() == "interrupted; run the same command again to continue", res.output
res = runner.invoke(app_of(sigterm), ["sigterm"])
assert res.exit_code == 143, res.output
assert res.output.strip() == "interrupted by SIGTERM; run the same command again to continue", res.output
assert signal.getsignal(signal.SIGTERM) is before and signal.signal is set_handler  # all restored
assert os.environ.get("RAY_DISABLE_FAILURE_SIGNAL_HANDLER") == env
print("ok")
"""


def test_ctrl_c_and_sigterm_end_a_command_with_one_line_and_130_or_143():
    """In a fresh interpreter, as a command runs: a Ray instance that an earlier test left running in this
    process (with Ray's own signal handlers) would not be what a gnsel command meets."""
    done = subprocess.run([sys.executable, "-c", _INTERRUPT_CHECK], capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout[-2000:] + done.stderr[-2000:]


def _epochs(db: Path) -> dict[str, list[int]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT run_id, epoch FROM epochs ORDER BY run_id, epoch").fetchall()
    out: dict[str, list[int]] = {}
    for rid, epoch in rows:
        out.setdefault(rid, []).append(int(epoch))
    return out


def _status(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT run_id, status FROM runs").fetchall())


def test_sigterm_during_a_zoo_build_exits_143_with_one_line_and_a_rerun_finishes(tmp_path):
    spec = {"dataset": "mnist1d", "dataset_kwargs": {"num_samples": 600}, "models": {"mlp": {"width": [8, 12]}},
            "train": {"lr": 0.05, "epochs": 60, "batch_size": 32, "probe_size": 16, "n_train": 200,
                      "stop_loss": None}}  # fmt: skip
    grid = _write(tmp_path / "grid.yaml", yaml.safe_dump(spec))
    db = tmp_path / "zoo.sqlite"
    cmd = [sys.executable, "-m", "gnsel.cli", "zoo", "build", "--grid", str(grid), "--store", str(db), "--workers", "1"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:  # until the first run has a few epochs
            time.sleep(0.1)
            try:
                if any(len(e) >= 3 for e in _epochs(db).values()):
                    break
            except sqlite3.Error:  # not created yet
                continue
        assert proc.poll() is None, "the build finished before it could be interrupted"
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143, output
    assert output.strip().splitlines()[-1] == "interrupted by SIGTERM; run the same command again to continue"
    assert "Traceback" not in output
    status = _status(db)  # stopped mid-run: its run is released (pending) or left running, never done with a hole
    assert set(status.values()) & {"running", "pending"}, status
    assert all(e == list(range(61)) for rid, e in _epochs(db).items() if status[rid] == "done")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert set(_status(db).values()) == {"done"}
    assert all(e == list(range(61)) for e in _epochs(db).values())  # every epoch exactly once
