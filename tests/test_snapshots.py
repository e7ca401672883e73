"""Training snapshots: taken at log-spaced steps by a real (tiny) run,
stored compactly in the checkpoint, kept across resume and when the
checkpoint is stripped to a model file, turned off by a switch, and
checked on load."""
import io
import json

import numpy as np
import pytest

import pytransformer as pt
from pytransformer import checkpoint, cli
from pytransformer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pytransformer.safetensors import load_with_metadata, save_file
from pytransformer.training import ResumeError, TrainConfig, Trainer
from pytransformer.translator import Translator, train_translator
from tests.test_train import _model
from tests.test_training import _epoch_batches

TINY = dict(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
            dim_feedforward=32, dropout=0.0, max_len=24)


def test_snapshot_steps_are_log_spaced_with_the_first_and_last():
    assert checkpoint.snapshot_steps(6000) == [0, 30, 100, 300, 1000, 3000, 6000]
    assert checkpoint.snapshot_steps(10000) == [0, 30, 100, 300, 1000, 3000, 10000]
    assert checkpoint.snapshot_steps(12) == [0, 1, 3, 12]
    assert checkpoint.snapshot_steps(1) == [0, 1]
    for total in (20, 500, 999, 3100, 6000, 12345, 10**6):
        s = checkpoint.snapshot_steps(total)
        assert s[0] == 0 and s[-1] == total and 4 <= len(s) <= 7
        assert all(b > a for a, b in zip(s, s[1:]))
        assert all(x <= total / 2 for x in s[1:-1])
    with pytest.raises(ValueError, match="total"):
        checkpoint.snapshot_steps(0)


def test_compress_is_int8_per_row_and_round_trips_within_half_a_step():
    rng = np.random.default_rng(0)
    state = {"a.weight": rng.normal(size=(5, 7)).astype(np.float32),
             "a.bias": rng.normal(size=7).astype(np.float32),
             "zero.weight": np.zeros((2, 3), np.float32),
             "generator.weight": np.ones((3, 3), np.float32)}
    snap = checkpoint.compress_snapshot(state)
    assert sorted(snap) == ["a.bias.f16", "a.weight.q8", "a.weight.scale", "zero.weight.q8",
                            "zero.weight.scale"]
    assert snap["a.weight.q8"].dtype == np.int8 and snap["a.weight.scale"].shape == (5,)
    back = checkpoint.decompress_snapshot(snap)
    assert "generator.weight" not in back
    err = np.abs(back["a.weight"] - state["a.weight"])
    assert np.all(err <= snap["a.weight.scale"][:, None] / 2 + 1e-7)
    assert np.abs(back["a.weight"]).max(1) == pytest.approx(np.abs(state["a.weight"]).max(1))
    assert np.array_equal(back["zero.weight"], state["zero.weight"])
    assert np.allclose(back["a.bias"], state["a.bias"], rtol=1e-3)
    shapes = {k: v.shape for k, v in state.items()}
    assert checkpoint.check_snapshot(snap, shapes) is None
    assert checkpoint.snapshot_nbytes(snap) == 5 * 7 + 5 * 4 + 7 * 2 + 2 * 3 + 2 * 4
    bad = dict(snap, **{"a.weight.q8": snap["a.weight.q8"][:4]})
    assert "a.weight.q8" in checkpoint.check_snapshot(bad, shapes)
    assert "no array 'a.bias.f16'" in checkpoint.check_snapshot(
        {k: v for k, v in snap.items() if k != "a.bias.f16"}, shapes)
    assert "unexpected array 'x.f16'" in checkpoint.check_snapshot(
        dict(snap, **{"x.f16": np.zeros(1, np.float16)}), shapes)
    assert "finite" in checkpoint.check_snapshot(
        dict(snap, **{"a.weight.scale": np.full(5, np.nan, np.float32)}), shapes)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real 12-step run of a tiny translator, checkpointed every 5 steps."""
    path = tmp_path_factory.mktemp("snap") / "run.safetensors"
    tr = train_translator(path, TINY, TrainConfig(steps=12, warmup=4, eval_every=0,
                                                  ckpt_every=5),
                          n_train=500, batch_size=16, stream=io.StringIO())
    return path, tr


def test_a_training_run_keeps_snapshots_at_the_expected_steps(run):
    path, tr = run
    ck = load_checkpoint(path)
    assert sorted(ck.snapshots) == [0, 1, 3, 12] == sorted(tr.snapshots)
    final = ck.model_state
    # the last step's snapshot is the saved model itself, stored once
    assert ck.snapshots[12] == tr.snapshots[12] == checkpoint.SNAPSHOT_IS_MODEL
    assert not any(k.startswith("snapshot.12.") for k in load_with_metadata(path)[0])
    assert tr.snapshot_models(steps={12}) == [(12, tr)]
    first = checkpoint.decompress_snapshot(ck.snapshots[0])
    assert set(first) == set(final) - {"generator.weight", "generator.bias"}
    # step 0 is the initialisation: the weights before any update differ from the last
    assert not np.allclose(first["src_embed.weight"], final["src_embed.weight"], atol=1e-3)
    pt.manual_seed(0)
    from pytransformer.nn import Seq2SeqConfig, Seq2SeqTransformer
    init = Seq2SeqTransformer(Seq2SeqConfig.from_dict(ck.config)).state_dict()
    for k, v in first.items():
        assert np.allclose(v, init[k], atol=np.abs(init[k]).max() / 127 + 1e-6, rtol=1e-3), k
    # a snapshot is small: int8 matrices, no output projection
    n_model = sum(v.nbytes for v in final.values())
    assert checkpoint.snapshot_nbytes(ck.snapshots[3]) < 0.3 * n_model


def test_snapshots_survive_stripping_to_a_model_file(run, tmp_path):
    path, _ = run
    out = tmp_path / "model.safetensors"
    Translator.load(path).save(out)
    ck, stripped = load_checkpoint(path), load_checkpoint(out)
    assert stripped.optimizer_state is None and stripped.extra.get("train_config") is None
    assert sorted(stripped.snapshots) == sorted(ck.snapshots)
    assert stripped.snapshots[12] == checkpoint.SNAPSHOT_IS_MODEL
    for step in (0, 1, 3):
        assert all(np.array_equal(a, stripped.snapshots[step][n])
                   for n, a in ck.snapshots[step].items())
    again = Translator.load(out)
    models = again.snapshot_models()
    assert [s for s, _ in models] == [0, 1, 3, 12]
    step0 = models[0][1].model.state_dict()
    dec = checkpoint.decompress_snapshot(ck.snapshots[0])
    assert all(np.array_equal(step0[k], v) for k, v in dec.items())
    assert not step0["generator.weight"].any()          # left out: zero
    assert [s for s, _ in again.snapshot_models(steps={3})] == [3]


def test_the_switch_turns_snapshots_off(tmp_path):
    path = tmp_path / "off.safetensors"
    tr = train_translator(path, TINY, TrainConfig(steps=4, warmup=2, eval_every=0,
                                                  ckpt_every=0, snapshots=False),
                          n_train=300, batch_size=16, stream=io.StringIO())
    assert tr.snapshots == {} and load_checkpoint(path).snapshots == {}
    assert "snapshots" not in load_checkpoint(path).metadata
    assert Translator.load(path).snapshot_models() == []
    with pytest.raises(ValueError, match="snapshots: expected true or false"):
        TrainConfig(snapshots="no")


def _dump(capsys, *argv):
    assert cli.main(["train", *argv, "--dump-config"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_cli_switch_and_the_config_file_key(tmp_path, capsys):
    assert _dump(capsys)["snapshots"] is True
    assert _dump(capsys, "--no-snapshots")["snapshots"] is False
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({"snapshots": False, "steps": 10}))
    assert _dump(capsys, "--config", str(cfg))["snapshots"] is False
    assert _dump(capsys, "--config", str(cfg), "--snapshots")["snapshots"] is True
    cfg.write_text(json.dumps({"snapshots": "yes"}))
    assert cli.main(["train", "--config", str(cfg), "--dump-config"]) == 2
    assert "'snapshots': expected true or false" in capsys.readouterr().err


class _Stop(Exception):
    pass


def test_snapshots_survive_resume_bit_identically(tmp_path):
    cfg = TrainConfig(steps=12, warmup=4, lr_factor=2.0, eval_every=1, ckpt_every=3)
    straight = Trainer(_model(), _epoch_batches(), cfg, validate=lambda m: {},
                       stream=io.StringIO())
    straight.run()
    assert sorted(straight.snapshots) == [0, 1, 3, 12]

    path = tmp_path / "run.safetensors"

    def stop_at_4(m):
        if first.step == 4:
            raise _Stop
        return {}
    first = Trainer(_model(), _epoch_batches(), cfg, ckpt_path=path, validate=stop_at_4,
                    stream=io.StringIO())
    with pytest.raises(_Stop):
        first.run()
    saved = load_checkpoint(path)                       # step 3: its snapshot is the model
    assert saved.step == 3 and saved.snapshots[3] == checkpoint.SNAPSHOT_IS_MODEL
    assert sorted(saved.snapshots) == [0, 1, 3]
    resumed = Trainer.resume(path, _model(), _epoch_batches(), validate=lambda m: {},
                             stream=io.StringIO())
    assert sorted(resumed.snapshots) == [0, 1, 3]
    resumed.run()
    assert sorted(load_checkpoint(path).snapshots) == [0, 1, 3, 12]
    assert sorted(resumed.snapshots) == [0, 1, 3, 12]
    for step, snap in straight.snapshots.items():
        assert all(np.array_equal(a, resumed.snapshots[step][n]) for n, a in snap.items())


def test_a_longer_resumed_run_adds_its_own_steps(run, tmp_path):
    import shutil
    path = tmp_path / "run.safetensors"
    shutil.copy(run[0], path)
    tr = train_translator(path, TINY, TrainConfig(steps=20, warmup=4, eval_every=0,
                                                  ckpt_every=0),
                          n_train=500, batch_size=16, resume=True, stream=io.StringIO())
    # the first run's (0, 1, 3, 12), and of the new schedule (0, 1, 3, 10, 20) the
    # steps still ahead at 12
    assert sorted(tr.snapshots) == sorted(load_checkpoint(path).snapshots) == [0, 1, 3, 12, 20]


def test_malformed_snapshots_are_refused_naming_the_step(run, tmp_path):
    path, _ = run
    ck = load_checkpoint(path)
    snaps = {s: v if isinstance(v, str) else dict(v) for s, v in ck.snapshots.items()}
    snaps[3]["src_embed.weight.q8"] = snaps[3]["src_embed.weight.q8"][:2]
    bad = tmp_path / "bad.safetensors"
    save_checkpoint(bad, model=ck.model_state, config=ck.config, extra=ck.extra,
                    snapshots=snaps)
    with pytest.raises(CheckpointError, match="snapshot of step 3: 'src_embed.weight.q8': "
                                              "expected int8"):
        Translator.load(bad)
    # a checkpoint whose metadata lists a snapshot array it does not hold
    tensors, meta = load_with_metadata(path)
    listed = json.loads(meta["snapshots"])
    listed["3"].append("ghost.f16")
    meta["snapshots"] = json.dumps(listed)
    save_file(tensors, tmp_path / "ghost.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match="snapshot.3.ghost.f16.*missing"):
        load_checkpoint(tmp_path / "ghost.safetensors")
    with pytest.raises(TypeError, match="snapshots: keys must be steps"):
        save_checkpoint(tmp_path / "x.safetensors", snapshots={-1: {}})
    model = checkpoint.SNAPSHOT_IS_MODEL
    with pytest.raises(ValueError, match="stands for more than one step"):
        save_checkpoint(tmp_path / "x.safetensors", model=ck.model_state,
                        snapshots={1: model, 2: model})
    with pytest.raises(ValueError, match="needs the model's weights"):
        save_checkpoint(tmp_path / "x.safetensors", snapshots={1: model})
    meta = dict(meta, snapshots=json.dumps({"1": "model", "2": "model"}))
    save_file({k: v for k, v in tensors.items() if not k.startswith("snapshot.")},
              tmp_path / "twice.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match="stands for more than one step"):
        load_checkpoint(tmp_path / "twice.safetensors")


def test_resume_refuses_a_snapshot_of_another_model(tmp_path):
    cfg = TrainConfig(steps=6, warmup=4, eval_every=0, ckpt_every=0)
    path = tmp_path / "run.safetensors"
    Trainer(_model(), _epoch_batches(), cfg, ckpt_path=path, stream=io.StringIO()).run()
    tensors, meta = load_with_metadata(path)
    del tensors["snapshot.1.src_embed.weight.scale"]
    listed = json.loads(meta["snapshots"])
    listed["1"].remove("src_embed.weight.scale")
    meta["snapshots"] = json.dumps(listed)
    save_file(tensors, path, metadata=meta)
    with pytest.raises(ResumeError, match="snapshot of step 1: no array "
                                          "'src_embed.weight.scale'"):
        Trainer.resume(path, _model(), _epoch_batches(), config=TrainConfig(
            steps=8, warmup=4, eval_every=0, ckpt_every=0), stream=io.StringIO())
    # the saved weights (step 6) standing for the snapshot of step 3
    Trainer(_model(), _epoch_batches(), cfg, ckpt_path=path, stream=io.StringIO()).run()
    tensors, meta = load_with_metadata(path)
    listed = json.loads(meta["snapshots"])
    assert listed.pop("6") == "model"
    for name in listed.pop("3"):
        del tensors[f"snapshot.3.{name}"]
    listed["3"] = "model"
    save_file(tensors, path, metadata=dict(meta, snapshots=json.dumps(listed)))
    with pytest.raises(ResumeError, match="snapshot of step 3: 'model' .* the weights of "
                                          "step 6"):
        Trainer.resume(path, _model(), _epoch_batches(), stream=io.StringIO())


def test_a_float16_model_file_keeps_the_snapshots(run, tmp_path):
    path, _ = run
    tr = Translator.load(path)
    out = tmp_path / "half.safetensors"
    tr.save(out, dtype="float16")
    ck = load_checkpoint(out)
    assert all(v.dtype == np.float16 for v in ck.model_state.values())
    assert sorted(ck.snapshots) == [0, 1, 3, 12]
    half = Translator.load(out)
    for k, v in half.model.state_dict().items():
        assert v.dtype == np.float32
        assert np.array_equal(v, tr.model.state_dict()[k].astype(np.float16).astype(np.float32))
    with pytest.raises(ValueError, match="dtype: expected float16, float32 or float64"):
        tr.save(tmp_path / "x.safetensors", dtype="int8")
    with pytest.raises(ValueError, match="dtype: expected"):
        tr.save(tmp_path / "x.safetensors", dtype="bogus")


def test_the_package_with_its_models_fits_the_wheel_budget():
    """docs/training.md: the wheel stays under 25 MB, models and snapshots
    included. The package directory deflated as a wheel's zip would be
    (generated C and caches left out) must fit."""
    import os
    import zipfile
    import pytransformer
    root = os.path.dirname(pytransformer.__file__)
    total = 0
    with zipfile.ZipFile(io.BytesIO(), "w", zipfile.ZIP_DEFLATED) as z:
        for d, dirs, files in os.walk(root):
            dirs[:] = [x for x in dirs if x != "__pycache__"]
            for f in files:
                if not f.endswith((".c", ".o")):
                    z.write(os.path.join(d, f), os.path.relpath(os.path.join(d, f), root))
        total = sum(i.compress_size for i in z.infolist())
    assert total < 25 * 10**6, f"the package deflates to {total / 1e6:.1f} MB"


@pytest.mark.parametrize("switch", [[], ["--no-snapshots"]])
def test_the_train_command_says_which_steps_it_kept(tmp_path, capsys, switch):
    out = tmp_path / "cli.safetensors"
    assert cli.main(["train", "--out", str(out), "--steps", "4", "--d-model", "16", "--nhead",
                     "2", "--layers", "1", "--ff", "32", "--n-train", "300", "--batch-size",
                     "16", "--eval-every", "0", "--ckpt-every", "0", "--warmup", "2",
                     "--threads", "1", *switch]) == 0
    text = capsys.readouterr().out
    if switch:
        assert "snapshots" not in text and load_checkpoint(out).snapshots == {}
    else:
        assert "training snapshots kept in it: steps 0, 1, 4" in text
        assert sorted(load_checkpoint(out).snapshots) == [0, 1, 4]
