"""Interrupting and resuming a training run: Ctrl-C at any moment of a step
leaves a checkpoint that holds the state between two steps, so the resumed
run ends with the same weights as an uninterrupted one, bit for bit; a
training checkpoint's saved state is checked before it is used; the loss
history, the step count and the thread count carry over a resume."""
import io
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
