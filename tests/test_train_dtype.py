"""`pytransformer train --dtype float64` and TrainConfig.dtype: the
weights, AdamW's state, the activations and the loss in float64; the dtype
kept by --resume (another one refused, naming both); a float64 checkpoint
read by Translator.load (into its float32 model)."""
import io

import numpy as np
import pytest

from pytransformer import cli
from pytransformer.checkpoint import load_checkpoint
from pytransformer.training import ResumeError, TrainConfig, Trainer, _decode_losses
from pytransformer.translator import Translator
from tests.test_cli_errors import TINY, _error
from tests.test_resume import _edited, tiny_run  # noqa: F401 - a fixture
from tests.test_train import _model
from tests.test_training import _cfg, _epoch_batches


def _train(path, *flags):
    assert cli.main(["train", *TINY, "--out", str(path), *flags]) == 0
    return load_checkpoint(path)


def _losses(ck):
    return np.array(_decode_losses(ck.extra["losses"], ck.step, None))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{name: checkpoint}: 2 steps in float32 and in float64, and 4 in float64."""
    d = tmp_path_factory.mktemp("dtype")
    return {"f32": _train(d / "f32.safetensors", "--steps", "2"),
            "f64": _train(d / "f64.safetensors", "--steps", "2", "--dtype", "float64"),
            "f64_4": _train(d / "f64_4.safetensors", "--steps", "4", "--dtype", "float64")}


def test_float64_weights_optimizer_state_and_losses(runs):
    """Every saved tensor of the float64 run is float64, and so are AdamW's
    moments; its losses are float64 values (not float32 ones widened) close
    to the float32 run's, which start from the same weights."""
    ck = runs["f64"]
    assert ck.extra["train_config"]["dtype"] == "float64"
    assert {v.dtype for v in ck.model_state.values()} == {np.dtype(np.float64)}
    moments = [v for s in ck.optimizer_state["state"].values() for v in s.values()
               if isinstance(v, np.ndarray)]
    assert moments and {v.dtype for v in moments} == {np.dtype(np.float64)}
    l64, l32 = _losses(ck), _losses(runs["f32"])
    assert np.all(l64.astype(np.float32).astype(np.float64) != l64)
    np.testing.assert_allclose(l64, l32, rtol=1e-5)
    assert not np.array_equal(l64, l32)
    f32 = runs["f32"]
    assert f32.extra["train_config"]["dtype"] == "float32"
    assert {v.dtype for v in f32.model_state.values()} == {np.dtype(np.float32)}


def test_resume_continues_in_float64_bit_identically(tmp_path, runs):
    """--resume without --dtype continues the float64 run in float64: the
    same losses and weights as 4 steps straight through."""
    path = tmp_path / "run.safetensors"
    path.write_bytes(open(runs["f64"].path, "rb").read())
    assert cli.main(["train", "--resume", "--out", str(path), "--steps", "4"]) == 0
    a, b = load_checkpoint(path), runs["f64_4"]
    np.testing.assert_array_equal(_losses(a), _losses(b))
    for k, v in b.model_state.items():
        assert a.model_state[k].dtype == np.float64
        np.testing.assert_array_equal(a.model_state[k], v, err_msg=k)


@pytest.mark.parametrize("run,flag", [("f64", "float32"), ("f32", "float64")])
def test_resume_in_another_dtype_is_refused_naming_both(capsys, tmp_path, runs, run, flag):
    path = tmp_path / "run.safetensors"
    before = open(runs[run].path, "rb").read()
    path.write_bytes(before)
    capsys.readouterr()
    line = _error(capsys, ["train", "--resume", "--out", str(path), "--steps", "4",
                           "--dtype", flag])
    saved = "float64" if flag == "float32" else "float32"
    assert line.startswith(f"pytransformer train: --dtype: the run in {path} has '{saved}', "
                           f"got '{flag}'"), line
    assert path.read_bytes() == before


def test_a_checkpoint_without_a_dtype_resumes_in_float32(tmp_path, tiny_run):  # noqa: F811
    """Checkpoints written before the setting existed have no dtype in their
    train_config: they were float32 runs, and resume as such."""
    path = _edited(tmp_path, tiny_run, lambda e, ck: e["train_config"].pop("dtype") and None)
    assert "dtype" not in load_checkpoint(path).extra["train_config"]
    assert cli.main(["train", "--resume", "--out", path, "--steps", "3"]) == 0
    ck = load_checkpoint(path)
    assert ck.step == 3 and ck.extra["train_config"]["dtype"] == "float32"
    assert {v.dtype for v in ck.model_state.values()} == {np.dtype(np.float32)}


def test_trainer_casts_the_model_and_resume_refuses_another_dtype(tmp_path):
    path = tmp_path / "run.safetensors"
    model = _model()
    t = Trainer(model, _epoch_batches(), _cfg(steps=2, dtype="float64"), ckpt_path=path,
                stream=io.StringIO())
    assert {p.data.dtype for p in model.parameters()} == {np.dtype(np.float64)}
    t.run()
    assert {g.dtype for p in model.parameters() for g in [p.grad] if g is not None} == {
        np.dtype(np.float64)}
    with pytest.raises(ResumeError, match="dtype: the run was trained in float64, got float32"):
        Trainer.resume(path, _model(), _epoch_batches(), config=_cfg(steps=4))
    again = Trainer.resume(path, _model(), _epoch_batches(), config=_cfg(steps=3,
                                                                          dtype="float64"))
    assert again.opt.state and all(s["exp_avg"].dtype == np.float64
                                   for s in again.opt.state.values())


@pytest.mark.parametrize("bad", ["float16", "double", 64])
def test_train_config_dtype_is_float32_or_float64(bad):
    with pytest.raises(ValueError, match="dtype: expected 'float32' or 'float64'"):
        TrainConfig(dtype=bad)


def test_an_unknown_dtype_flag_is_one_usage_error(capsys):
    line = _error(capsys, ["train", *TINY, "--dtype", "float16", "--dump-config"])
    assert "--dtype: expected float32 or float64, got 'float16'" in line


def test_translator_load_reads_a_float64_checkpoint(runs):
    """translate/evaluate load a float64 training checkpoint into the
    float32 model (its weights rounded to float32) and translate with it."""
    tr = Translator.load(runs["f64"].path)
    for k, v in tr.model.state_dict().items():
        assert v.dtype == np.float32
        np.testing.assert_array_equal(v, runs["f64"].model_state[k].astype(np.float32))
    out = tr.translate(["the ball is blue"])
    assert len(out) == 1 and isinstance(out[0], str)
