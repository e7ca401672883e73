"""Interrupting and resuming a training run: Ctrl-C at any moment of a step
leaves a checkpoint that holds the state between two steps, so the resumed
run ends with the same weights as an uninterrupted one, bit for bit; a
training checkpoint's saved state is checked before it is used; the loss
history, the step count and the thread count carry over a resume."""
import io
import json
import signal

import numpy as np
import pytest

import pytransformer as pt
from pytransformer.autograd import kernels
from pytransformer.checkpoint import load_checkpoint
from pytransformer.training import TrainConfig, Trainer
from tests.test_training import _epoch_batches
from tests.test_train import _model

STEPS, AT = 8, 5          # the interrupt lands inside step AT + 1


def _cfg(**kw):
    base = dict(steps=STEPS, warmup=4, lr_factor=2.0, label_smoothing=0.1, eval_every=2,
                ckpt_every=3)
    base.update(kw)
    return TrainConfig(**base)


def _validate(m):
    return {"score": 1.0}


_reference = {}


def _uninterrupted(dropout):
    """The final weights of the run straight through (computed once)."""
    if dropout not in _reference:
        t = Trainer(_model(dropout), _epoch_batches(), _cfg(), validate=_validate,
                    stream=io.StringIO())
        t.run()
        _reference[dropout] = t.model.state_dict()
    return _reference[dropout]


def _sigint_once(trainer, fired, done=AT):
    """Raise SIGINT in this process the first time it is called while
    trainer.step == done (by default: during step AT + 1)."""
    if trainer.step == done and not fired:
        fired.append(1)
        signal.raise_signal(signal.SIGINT)


def _arm(phase, trainer, monkeypatch):
    """Make the run interrupt itself (a real SIGINT) during `phase` of a step."""
    fired = []
    if phase == "forward":             # after the forward's dropout draws
        trainer.model.generator.register_forward_hook(
            lambda m, a, out: _sigint_once(trainer, fired))
    elif phase == "backward":
        real = kernels.Linear.backward

        def backward(self, g):
            _sigint_once(trainer, fired)
            return real(self, g)
        monkeypatch.setattr(kernels.Linear, "backward", backward)
    elif phase == "optimizer":         # the weights updated, the step not yet counted
        real_step = trainer.opt.step

        def opt_step(*a, **k):
            out = real_step(*a, **k)
            _sigint_once(trainer, fired)
            return out
        trainer.opt.step = opt_step
    elif phase == "validation":
        def validate(m):
            _sigint_once(trainer, fired, AT + 1)       # step AT + 1 validates
            return _validate(m)
        trainer.validate = validate
    elif phase == "checkpoint":
        real_save = trainer.save

        def save(path):
            _sigint_once(trainer, fired, AT + 1)
            return real_save(path)
        trainer.save = save
    return fired


@pytest.mark.parametrize("dropout", [0.0, 0.1])
@pytest.mark.parametrize("phase", ["forward", "backward", "optimizer", "validation",
                                   "checkpoint"])
def test_sigint_in_any_phase_resumes_bit_identically(tmp_path, monkeypatch, dropout, phase):
    """A SIGINT inside a step (the forward, the backward, the optimizer
    step; the validation and the periodic checkpoint after step 6) saves
    the state after that step, and the resumed run's final weights equal
    the uninterrupted run's in every tensor."""
    ref = _uninterrupted(dropout)
    path = tmp_path / "run.safetensors"
    out = io.StringIO()
    cfg = _cfg(ckpt_every=6) if phase == "checkpoint" else _cfg()
    t = Trainer(_model(dropout), _epoch_batches(), cfg, ckpt_path=path, validate=_validate,
                stream=out)
    fired = _arm(phase, t, monkeypatch)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        t.run()
    assert fired and signal.getsignal(signal.SIGINT) is handler
    monkeypatch.undo()
    saved_step = load_checkpoint(path).step
    pt.manual_seed(999)                         # a fresh process has another RNG state
    again = Trainer.resume(path, _model(dropout), _epoch_batches(), config=_cfg(),
                           validate=_validate, stream=io.StringIO())
    again.run()
    got = again.model.state_dict()
    assert [k for k in ref if not np.array_equal(ref[k], got[k])] == []
    assert saved_step == AT + 1, out.getvalue()     # the interrupted step was finished


def test_a_second_sigint_stops_at_once_and_keeps_the_last_checkpoint(tmp_path):
    """Ctrl-C twice: the second interrupts the step without saving; the
    file keeps the last periodic checkpoint, and the progress stream says
    so."""
    path = tmp_path / "run.safetensors"
    out = io.StringIO()
    t = Trainer(_model(0.1), _epoch_batches(), _cfg(), ckpt_path=path, stream=out)
    calls = []

    def twice(m, a, output):
        if t.step == AT:
            calls.append(1)
            signal.raise_signal(signal.SIGINT)
    t.model.generator.register_forward_hook(twice)
    t.model.src_embed.register_forward_hook(twice)
    with pytest.raises(KeyboardInterrupt):
        t.run()
    assert len(calls) == 2
    assert load_checkpoint(path).step == 3
    assert f"not saved; {path} holds step 3" in out.getvalue()


# --- a training checkpoint's saved state is checked before it is used -----------

from types import SimpleNamespace                                       # noqa: E402

from pytransformer import cli                                           # noqa: E402
from pytransformer.checkpoint import (load_file, load_metadata, save_checkpoint,  # noqa: E402
                                      save_file)
from tests.test_cli_errors import TINY, _error                          # noqa: E402


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A checkpoint of `pytransformer train` after 2 of 2 steps (its bytes)."""
    out = tmp_path_factory.mktemp("tiny") / "run.safetensors"
    assert cli.main(["train", *TINY, "--steps", "2", "--out", str(out)]) == 0
    return out.read_bytes()


def _edited(tmp_path, tiny_run, edit):
    """A copy of the tiny run with edit(extra, ck) applied to its saved state."""
    path = tmp_path / "run.safetensors"
    path.write_bytes(tiny_run)
    ck = load_checkpoint(path)
    rng = edit(ck.extra, ck)
    save_checkpoint(path, model=ck.model_state,
                    optimizer=SimpleNamespace(state_dict=lambda: ck.optimizer_state),
                    step=ck.step, config=ck.config, rng=None if rng else ck.rng_state,
                    extra=ck.extra)
    if rng:     # save_checkpoint refuses a bad bit generator state: write it raw
        tensors, meta = load_file(path), load_metadata(path)
        meta["rng"] = json.dumps({"type": "dict", "state": rng})
        save_file(tensors, path, metadata=meta)
    return str(path)


def _rng(**state):
    def edit(extra, ck):
        rng = json.loads(json.dumps(ck.rng_state))
        rng.update(state)
        return rng
    return edit


EDITS = {
    "train_config steps -5": (lambda e, ck: e["train_config"].update(steps=-5), "train_config"),
    "train_config unknown key": (lambda e, ck: e["train_config"].update(stepz=3), "stepz"),
    "train_config label_smoothing str": (
        lambda e, ck: e["train_config"].update(label_smoothing="x"), "label_smoothing"),
    "scheduler a list": (lambda e, ck: e.update(scheduler=[1, 2]), "scheduler"),
    "scheduler last_epoch str": (lambda e, ck: e["scheduler"].update(last_epoch="x"),
                                 "scheduler"),
    "epoch str": (lambda e, ck: e.update(epoch="x"), "epoch"),
    "index -3": (lambda e, ck: e.update(index=-3), "index"),
    "index past the epoch": (lambda e, ck: e.update(index=10**6), "index"),
    "validations a list of lists": (lambda e, ck: e.update(validations=[[1, 2]]),
                                    "validations"),
    "validations a str": (lambda e, ck: e.update(validations="x"), "validations"),
    "validations step str": (lambda e, ck: e.update(validations=[{"step": "2"}]),
                             "validations"),
    "last_loss str": (lambda e, ck: e.update(last_loss="x"), "last_loss"),
    "data n_train str": (lambda e, ck: e["data"].update(n_train="x"), "n_train"),
    "rng state a str": (_rng(state="x"), "rng"),
    "rng bit_generator": (_rng(bit_generator="MT19937"), "rng"),
    "rng state key": (_rng(state={"state": "x", "inc": 1}), "rng"),
}


@pytest.mark.parametrize("what", list(EDITS))
def test_an_edited_checkpoint_is_one_usage_error(capsys, tmp_path, tiny_run, what):
    """`train --resume` on a checkpoint whose saved training state was edited
    to a wrong type or value: one line naming the file and the field, exit
    status 2, the file unchanged."""
    edit, field = EDITS[what]
    path = _edited(tmp_path, tiny_run, edit)
    before = open(path, "rb").read()
    capsys.readouterr()
    line = _error(capsys, ["train", "--resume", "--out", path, "--steps", "4"])
    assert path in line and field in line
    assert open(path, "rb").read() == before


# --- what carries over a resume: loss history, step count, threads ----------------

def _run_tiny(tmp_path, *flags):
    out = str(tmp_path / "run.safetensors")
    assert cli.main(["train", *TINY, "--out", out, *flags]) == 0
    return out


def test_resume_writes_the_loss_history_of_the_whole_run(capsys, tmp_path):
    """<stem>.loss.csv after `train --resume` has every step of the run,
    the steps before the resume with the losses they had."""
    out = _run_tiny(tmp_path, "--steps", "2")
    csv = tmp_path / "run.loss.csv"
    first = csv.read_text().splitlines()
    assert cli.main(["train", "--resume", "--out", out, "--steps", "4"]) == 0
    whole = csv.read_text().splitlines()
    assert [row.split(",")[0] for row in whole] == ["step", "1", "2", "3", "4"]
    assert whole[:3] == first


@pytest.mark.parametrize("steps", [["--steps", "2"], ["--steps", "1"], []])
def test_resume_with_no_step_left_is_a_usage_error(capsys, tmp_path, tiny_run, steps):
    """`train --resume --steps N` with N at or below the saved step (or no
    --steps on a finished run): one line naming --steps and the step, the
    file left as it was."""
    path = tmp_path / "run.safetensors"
    path.write_bytes(tiny_run)
    capsys.readouterr()
    line = _error(capsys, ["train", "--resume", "--out", str(path), *steps])
    assert "--steps: the run in" in line and "is at step 2" in line
    assert path.read_bytes() == tiny_run


def test_trainer_with_no_step_left_does_not_rewrite_its_checkpoint(tmp_path):
    path = tmp_path / "run.safetensors"
    Trainer(_model(), _epoch_batches(), _cfg(steps=2), ckpt_path=path,
            stream=io.StringIO()).run()
    before = path.read_bytes()
    again = Trainer.resume(path, _model(), _epoch_batches(), stream=io.StringIO())
    assert again.run() == [] and path.read_bytes() == before
    from pytransformer.training import ResumeError
    with pytest.raises(ResumeError, match="steps: the run is at step 2"):
        Trainer.resume(path, _model(), _epoch_batches(), config=_cfg(steps=1))


@pytest.mark.parametrize("flag", [["--warmup", "3"], ["--lr-factor", "0.5"]])
def test_resume_refuses_a_new_schedule(capsys, tmp_path, tiny_run, flag):
    """The saved scheduler state holds the warm-up and the rate: a resume
    with another --warmup or --lr-factor would silently keep the old ones."""
    path = tmp_path / "run.safetensors"
    path.write_bytes(tiny_run)
    capsys.readouterr()
    line = _error(capsys, ["train", "--resume", "--out", str(path), "--steps", "4", *flag])
    assert line.startswith(f"pytransformer train: {flag[0]}: the run in") and "schedule" in line
    assert path.read_bytes() == tiny_run


def test_data_seed_must_be_non_negative(capsys):
    line = _error(capsys, ["train", *TINY, "--data-seed", "-1", "--dump-config"])
    assert "--data-seed: expected" in line and "got -1" in line


def _cores():
    import os
    return len(os.sched_getaffinity(0))


def test_threads_above_the_cores_are_capped(capsys, tmp_path):
    """--threads 1000 runs on the cores there are and says so on stderr;
    the checkpoint records the count used."""
    out = _run_tiny(tmp_path, "--steps", "1", "--threads", "1000")
    err = capsys.readouterr().err
    assert f"warning: --threads 1000 is more than the {_cores()} cores here" in err
    assert load_checkpoint(out).extra["threads"] == _cores()


@pytest.mark.skipif(_cores() < 2, reason="needs 2 cores")
def test_resume_on_another_thread_count_warns(capsys, tmp_path):
    """A run saved with 1 thread resumed on 2: with SciPy's BLAS, one
    warning line that the result will not be bit-identical (on the fallback
    GEMM, none: its results do not depend on the thread count); resumed
    again on the 2 it was saved with: none."""
    out = _run_tiny(tmp_path, "--steps", "1", "--threads", "1")
    assert load_checkpoint(out).extra["threads"] == 1
    capsys.readouterr()
    assert cli.main(["train", "--resume", "--out", out, "--steps", "2", "--threads", "2"]) == 0
    warnings = [l for l in capsys.readouterr().err.splitlines() if l.startswith("warning:")]
    if not pt._core.blas_available():   # the fallback GEMM: thread-count independent
        assert warnings == []
        return
    assert len(warnings) == 1 and "ran on 1 thread(s), this one runs on 2" in warnings[0]
    assert "will not be bit-identical" in warnings[0]
    assert cli.main(["train", "--resume", "--out", out, "--steps", "3", "--threads", "2"]) == 0
    assert "warning:" not in capsys.readouterr().err


def test_pytransformer_train_interrupted_at_a_random_moment_resumes_bit_identically(tmp_path):
    """`pytransformer train` (dropout 0.1, a checkpoint every step) gets
    SIGINT at a random moment of its steps: it exits 130 after saving, and
    `train --resume` ends with the weights of the uninterrupted run."""
    import random
    import subprocess
    import sys
    import time

    args = [sys.executable, "-m", "pytransformer", "train", *TINY, "--steps", "100",
            "--ckpt-every", "1", "--dropout", "0.1", "--threads", "1"]
    ref = tmp_path / "ref.safetensors"
    subprocess.run(args + ["--out", str(ref)], check=True, capture_output=True, timeout=120)
    run = tmp_path / "run.safetensors"
    delay = random.uniform(0.0, 0.7)
    p = subprocess.Popen(args + ["--out", str(run)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        first = p.stderr.readline()             # the first checkpoint: training runs
        assert first.startswith("checkpoint:"), first
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, (delay, err)
    assert "Traceback" not in err and "interrupted: saved" in err, (delay, err)
    step = load_checkpoint(run).step
    assert step < 100, (delay, err)
    subprocess.run([sys.executable, "-m", "pytransformer", "train", "--resume", "--out",
                    str(run), "--threads", "1"], check=True, capture_output=True, timeout=120)
    a, b = load_checkpoint(ref).model_state, load_checkpoint(run).model_state
    assert [k for k in a if not np.array_equal(a[k], b[k])] == [], (delay, step)
