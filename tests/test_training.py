"""The training loop (pytransformer.training): learns, checkpoints, resumes
bit-identically, saves on Ctrl-C."""
import io

import numpy as np
import pytest

import pytransformer as pt
from pytransformer import decode
from pytransformer.training import TrainConfig, Trainer
from tests.test_train import BOS, EOS, L, V, _model

N_PAIRS, BATCH = 512, 64


def _data(seed=0):
    rng = np.random.default_rng(seed)
    src = rng.integers(3, V, (N_PAIRS, L))
    tgt = src[:, ::-1]
    return src, tgt


def _epoch_batches(seed=0):
    src, tgt = _data()

    def batches(epoch):
        order = np.random.default_rng([seed, epoch]).permutation(N_PAIRS)
        out = []
        for i in range(0, N_PAIRS, BATCH):
            idx = order[i:i + BATCH]
            n = len(idx)
            tgt_in = np.concatenate([np.full((n, 1), BOS), tgt[idx]], 1)
            tgt_out = np.concatenate([tgt[idx], np.full((n, 1), EOS)], 1)
            out.append((src[idx], tgt_in, tgt_out))
        return out
    return batches


def _cfg(**kw):
    base = dict(steps=12, warmup=4, lr_factor=2.0, label_smoothing=0.1, eval_every=0,
                ckpt_every=0)
    base.update(kw)
    return TrainConfig(**base)


def test_trainer_learns_the_reversal_task():
    model = _model()
    out = io.StringIO()
    seen = []
    t = Trainer(model, _epoch_batches(), _cfg(steps=160, warmup=20, lr_factor=0.2, eval_every=80,
                                              label_smoothing=0.0),
                validate=lambda m: seen.append(m.training) or {"ok": 1.0}, stream=out)
    hist = t.run()
    assert len(hist) == 160 and t.epoch == 20 and t.index == 0
    assert hist[-1][1] < 0.05 < hist[0][1]
    assert seen == [False, False] and model.training      # validated in eval mode
    assert "validation at step 80" in out.getvalue() and "step 160/160" in out.getvalue()
    src, tgt = _data(1)
    got = decode.greedy(model.eval(), src[:64], max_len=L + 1)
    assert np.mean([np.array_equal(g, t_) for g, t_ in zip(got, tgt[:64])]) == 1.0


def test_resume_is_bit_identical(tmp_path):
    """12 steps straight vs 7 steps, checkpoint, a fresh process-like restart
    (new model, different RNG state), 5 more: same losses, same weights.
    The split falls inside an epoch (8 batches per epoch)."""
    ref = Trainer(_model(dropout=0.1), _epoch_batches(), _cfg(), stream=io.StringIO())
    ref_hist = ref.run()
    path = tmp_path / "run.safetensors"
    first = Trainer(_model(dropout=0.1), _epoch_batches(), _cfg(steps=7), ckpt_path=path,
                    stream=io.StringIO())
    first.run()
    pt.manual_seed(999)
    model = _model(dropout=0.1)
    model.generator.weight.data[...] = 0
    again = Trainer.resume(path, model, _epoch_batches(), config=_cfg(), stream=io.StringIO())
    assert (again.step, again.epoch, again.index) == (7, 0, 7)
    hist = again.run()
    assert hist == ref_hist[7:]
    for (k, a), b in zip(ref.model.state_dict().items(), model.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)


def test_ctrl_c_saves_a_checkpoint(tmp_path):
    path = tmp_path / "run.safetensors"
    t = Trainer(_model(), _epoch_batches(), _cfg(), ckpt_path=path, stream=io.StringIO())
    real_step = t.train_step

    def step(*a):
        if t.step == 5:
            raise KeyboardInterrupt
        return real_step(*a)
    t.train_step = step
    with pytest.raises(KeyboardInterrupt):
        t.run()
    resumed = Trainer.resume(path, _model(), _epoch_batches(), stream=io.StringIO())
    assert resumed.step == 5
    assert len(resumed.run()) == 7


def test_config_and_resume_errors(tmp_path):
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainConfig(label_smoothing=1.0)
    with pytest.raises(TypeError, match="TrainConfig"):
        Trainer(_model(), _epoch_batches(), {"steps": 1})
    with pytest.raises(FileNotFoundError):
        Trainer.resume(tmp_path / "none.safetensors", _model(), _epoch_batches())
    with pytest.raises(ValueError, match="no batches"):
        Trainer(_model(), lambda e: [], _cfg(), stream=io.StringIO()).run()


def test_validations_are_logged_kept_in_checkpoints_and_resumed(tmp_path):
    """validate()'s scores go to the progress line (None as n/a), to
    Trainer.validations and to valid_csv; a resumed run keeps the earlier
    rows and appends its own."""
    path, csv = tmp_path / "run.safetensors", tmp_path / "run.valid.csv"
    calls = []

    def validate(m):
        calls.append(1)
        return {"score": 0.5 * len(calls), "bleu": None, "n": np.int64(len(calls))}
    out = io.StringIO()
    Trainer(_model(), _epoch_batches(), _cfg(steps=8, eval_every=3), ckpt_path=path,
            validate=validate, stream=out, valid_csv=csv).run()
    assert "validation at step 3: score 0.5000, bleu n/a, n 1" in out.getvalue()
    assert open(csv).read() == "step,score,bleu,n\n3,0.5,,1\n6,1.0,,2\n"
    again = Trainer.resume(path, _model(), _epoch_batches(), config=_cfg(steps=12, eval_every=3),
                           validate=validate, stream=io.StringIO(), valid_csv=csv)
    assert [v["step"] for v in again.validations] == [3, 6]
    again.run()
    assert [v["step"] for v in again.validations] == [3, 6, 9, 12]
    assert open(csv).read().splitlines()[-1] == "12,2.0,,4"
    with pytest.raises(TypeError, match="validate: expected it to return a dict"):
        Trainer(_model(), _epoch_batches(), _cfg(steps=1, eval_every=1), validate=lambda m: 1.0,
                stream=io.StringIO()).run()
