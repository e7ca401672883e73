"""The translation pipeline end to end on a tiny, briefly trained model:
train -> checkpoint -> load -> translate, the CLI, and bad input. (Quality
is the shipped model's business; here 40 steps only prove the plumbing.)"""
import io
import sys
import types
import warnings

import numpy as np
import pytest

from pytransformer import cli
from pytransformer.training import TrainConfig
from pytransformer.translator import (Translator, UnknownWordWarning, bleu_available, corpus_bleu,
                                      train_translator)

TINY = dict(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
            dim_feedforward=32, dropout=0.0, max_len=24)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("tr") / "tiny.safetensors"
    log = io.StringIO()
    train_translator(path, TINY, TrainConfig(steps=40, warmup=10, eval_every=20, ckpt_every=20),
                     n_train=2000, batch_size=32, stream=log)
    return path, log.getvalue()


@pytest.fixture(scope="module")
def model_path(tiny_run):
    return tiny_run[0]


def _csv(path):
    lines = open(path).read().splitlines()
    return lines[0].split(","), [line.split(",") for line in lines[1:]]


def test_validation_reports_loss_accuracy_exact_match_bleu(tiny_run):
    """Validation at steps 20 and 40: every score on the progress stream and
    in <stem>.valid.csv; BLEU a number with sacrebleu, else n/a with one note."""
    path, log = tiny_run
    lines = [ln for ln in log.splitlines() if ln.startswith("validation at step")]
    assert [ln.split(":")[0] for ln in lines] == ["validation at step 20",
                                                   "validation at step 40"]
    for ln in lines:
        assert all(f" {k} " in ln for k in ("loss", "accuracy", "exact_match", "bleu"))
    header, rows = _csv(str(path)[:-len(".safetensors")] + ".valid.csv")
    assert header == ["step", "loss", "accuracy", "exact_match", "bleu"]
    assert [r[0] for r in rows] == ["20", "40"]
    for r in rows:
        assert float(r[1]) > 0 and 0 <= float(r[2]) <= 1 and 0 <= float(r[3]) <= 1
    assert float(rows[1][1]) < float(rows[0][1])               # validation loss falls
    if bleu_available():
        assert all(0 <= float(r[4]) <= 100 for r in rows) and "unavailable" not in log
    else:
        assert all(r[4] == "" for r in rows) and "bleu n/a" in lines[0]
        assert log.count("BLEU unavailable") == 1


def _short_run(tmp_path, **kw):
    path = tmp_path / "short.safetensors"
    log = io.StringIO()
    train_translator(path, TINY, TrainConfig(steps=4, warmup=2, eval_every=2, ckpt_every=0),
                     n_train=300, batch_size=16, stream=log, n_valid_eval=12, **kw)
    return log.getvalue(), _csv(tmp_path / "short.valid.csv")


def test_validation_without_sacrebleu(tmp_path, monkeypatch):
    """sacrebleu not importable: validation still runs, says BLEU is
    unavailable once, reports n/a and leaves the CSV cells empty."""
    monkeypatch.setitem(sys.modules, "sacrebleu", None)       # import raises ImportError
    assert not bleu_available() and corpus_bleu(["a"], ["a"]) is None
    log, (header, rows) = _short_run(tmp_path)
    assert log.count("BLEU unavailable: sacrebleu is not installed") == 1
    assert log.count("bleu n/a") == 2
    assert header[-1] == "bleu" and [r[0] for r in rows] == ["2", "4"]
    assert [r[-1] for r in rows] == ["", ""]


def test_validation_bleu_is_sacrebleu_on_the_greedy_decodes(tmp_path, monkeypatch):
    """With a stand-in sacrebleu recording its arguments: BLEU is computed on
    the greedy translations of the validation pairs against their targets,
    and its score reaches the progress line and the CSV."""
    calls = []

    def fake_corpus_bleu(hyps, refs):
        calls.append((list(hyps), [list(r) for r in refs]))
        return types.SimpleNamespace(score=12.5 + len(calls))
    monkeypatch.setitem(sys.modules, "sacrebleu",
                        types.SimpleNamespace(corpus_bleu=fake_corpus_bleu))
    log, (header, rows) = _short_run(tmp_path)
    assert "unavailable" not in log and "bleu 13.5000" in log and "bleu 14.5000" in log
    assert [r[-1] for r in rows] == ["13.5", "14.5"]
    from pytransformer.data import make_splits
    valid = make_splits(seed=0, n_train=0).valid[:12]
    tr = Translator.load(tmp_path / "short.safetensors")
    assert len(calls) == 2
    hyps, refs = calls[-1]
    assert refs == [[p.target for p in valid]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownWordWarning)      # 300 training pairs only
        assert hyps == tr.translate([p.source for p in valid])   # the final model's decodes


@pytest.mark.skipif(not bleu_available(), reason="sacrebleu is not installed")
def test_corpus_bleu_with_sacrebleu():
    assert corpus_bleu(["la bola es azul"], ["la bola es azul"]) == pytest.approx(100.0)
    assert corpus_bleu(["el gato"], ["la bola es azul"]) < 10
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        corpus_bleu(["a", "b"], ["a"])


def test_loss_curve_files(model_path):
    import os
    stem = str(model_path)[:-len(".safetensors")]
    lines = open(stem + ".loss.csv").read().splitlines()
    assert lines[0] == "step,loss" and len(lines) == 41
    step, loss = lines[-1].split(",")
    assert step == "40" and float(loss) > 0
    try:
        import matplotlib  # noqa: F401
        assert os.path.getsize(stem + ".loss.png") > 1000
    except ImportError:
        assert not os.path.exists(stem + ".loss.png")


def test_load_and_translate(model_path):
    tr = Translator.load(model_path)
    out = tr.translate(["The ball is blue", "the black cat drank the milk"])
    assert len(out) == 2 and all(isinstance(o, str) for o in out)
    assert tr.translate("the ball is blue", beam=3)[0].split() != ["<unk>"]


def test_bad_input(model_path):
    tr = Translator.load(model_path)
    with pytest.warns(UnknownWordWarning, match="'xylophone'"):
        tr.translate(["the xylophone is blue"])
    with pytest.raises(ValueError, match="empty"):
        tr.translate(["   "])
    with pytest.raises(ValueError, match="no sentences"):
        tr.translate([])
    with pytest.raises(ValueError, match="at most 23"):
        tr.translate(["the cat " * 12])


def test_resume_continues_the_run(model_path, tmp_path):
    import shutil
    path = tmp_path / "run.safetensors"
    shutil.copy(model_path, path)
    train_translator(path, TINY, TrainConfig(steps=50, warmup=10, eval_every=0, ckpt_every=0),
                     n_train=2000, batch_size=32, resume=True, stream=io.StringIO())
    from pytransformer.checkpoint import load_checkpoint
    assert load_checkpoint(path).step == 50


def test_cli_translate(model_path, capsys):
    assert cli.main(["translate", "the ball is blue", "--model", str(model_path)]) == 0
    assert capsys.readouterr().out.strip()
    assert cli.main(["translate", "the zzz is blue", "--model", str(model_path)]) == 0
    assert "unknown word(s) 'zzz'" in capsys.readouterr().err
    assert cli.main(["translate", "x", "--model", "/nonexistent/m.safetensors"]) == 2
    assert "no model at" in capsys.readouterr().err


def test_evaluate(model_path, capsys):
    from pytransformer.data import make_splits
    from pytransformer.translator import evaluate
    tr = Translator.load(model_path)
    assert tr.data == {"seed": 0, "n_train": 2000, "batch_size": 32, "grammar": 2}
    pairs = make_splits(seed=0, n_train=0).test[:20]
    r = evaluate(tr, pairs)
    assert r["pairs"] == 20 and 0.0 <= r["exact_match"] <= 1.0
    try:
        import sacrebleu  # noqa: F401
        assert 0.0 <= r["bleu"] <= 100.0
    except ImportError:
        assert r["bleu"] is None
    assert cli.main(["evaluate", "--model", str(model_path), "-n", "10"]) == 0
    out = capsys.readouterr().out
    assert "test" in out and "compositional" in out and "exact match" in out


def test_not_a_translator_checkpoint(tmp_path):
    from pytransformer import checkpoint
    p = tmp_path / "other.safetensors"
    checkpoint.save_checkpoint(p, model={"w": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match="not a translator checkpoint"):
        Translator.load(p)


def test_checkpoint_from_another_config(model_path, tmp_path):
    """Weights saved under a config they do not fit: a clear ValueError."""
    from pytransformer import checkpoint
    tr = Translator.load(model_path)
    cfg = tr.model.config.to_dict()
    cfg["dim_feedforward"] = 48
    p = tmp_path / "mismatch.safetensors"
    checkpoint.save_checkpoint(p, model=tr.model, config=cfg,
                               extra={"src_vocab": tr.src_vocab.to_dict(),
                                      "tgt_vocab": tr.tgt_vocab.to_dict()})
    with pytest.raises(ValueError, match=r"(?s)do not fit the saved config.*linear1\.weight"):
        Translator.load(p)


# --- batching, scores and the cross-attention of the shipped model ------------

def _mixed_sentences():
    """24 test sentences of varied lengths, in corpus order (not sorted)."""
    from pytransformer.data import make_splits
    pairs = make_splits(seed=0, n_train=0).test[:24]
    assert len({len(p.src) for p in pairs}) >= 4
    return [p.source for p in pairs]


def test_translate_sorts_by_length_batches_and_restores_the_order(shipped, monkeypatch):
    """Batches of at most batch_size sentences of non-decreasing length,
    padded only to their own longest; the outputs, in input order, are the
    sentences' translations decoded one at a time."""
    from pytransformer import decode
    from pytransformer.data import PAD
    sentences = _mixed_sentences()
    alone = [shipped.translate([s])[0] for s in sentences]
    seen, greedy = [], decode.greedy

    def spy(model, src, *args, **kwargs):
        assert kwargs["return_scores"] is False        # no per-step log-softmax unasked
        seen.append(src)
        return greedy(model, src, *args, **kwargs)
    monkeypatch.setattr(decode, "greedy", spy)
    assert shipped.translate(sentences, batch_size=5) == alone
    assert [len(s) for s in seen] == [5, 5, 5, 5, 4]
    lengths = [(s != PAD).sum(1) for s in seen]
    flat = np.concatenate(lengths)
    assert (np.diff(flat) >= 0).all() and sorted(flat) != list(flat[::-1])
    assert all(s.shape[1] == n.max() for s, n in zip(seen, lengths))     # no wasted padding
    seen.clear()
    assert shipped.translate(sentences) == alone                          # default 64: one batch
    assert len(seen) == 1


def test_translate_return_scores(shipped):
    from pytransformer import decode
    from pytransformer.translator import Translation
    sentences = _mixed_sentences()[:6]
    for beam, kind in ((1, "gnmt"), (4, "gnmt"), (4, "power")):
        got = shipped.translate(sentences, beam=beam, batch_size=4, length_penalty_kind=kind,
                                return_scores=True)
        assert [t.text for t in got] == shipped.translate(sentences, beam=beam,
                                                          length_penalty_kind=kind)
        for s, t in zip(sentences, got):
            assert isinstance(t, Translation)
            src, _ = shipped.encode_sources([s])
            kw = dict(bos=1, eos=2, length_penalty=0.6, length_penalty_kind=kind,
                      return_scores=True)
            h = (decode.greedy(shipped.model, src, **kw)[0] if beam == 1
                 else decode.beam_search(shipped.model, src, beam=beam, **kw)[0][0])
            assert t.text == " ".join(shipped.tgt_vocab.decode(h.ids))
            assert len(t.token_scores) == len(t.text.split()) + 1          # + EOS
            assert t.score == pytest.approx(h.score, rel=1e-5)
            np.testing.assert_allclose(t.token_scores, h.token_scores, rtol=1e-5, atol=1e-6)


def test_translate_option_errors(shipped):
    for bad, shown in ((0, "0"), (-1, "-1"), (True, "bool True"), (2.5, "float 2.5"),
                       ("8", "str '8'")):
        with pytest.raises(ValueError, match=f"^batch_size: expected a positive int, got "
                                             f"{shown}$"):
            shipped.translate(["the ball is blue"], batch_size=bad)
    with pytest.raises(ValueError, match="length_penalty_kind: expected one of"):
        shipped.translate(["the ball is blue"], length_penalty_kind="gnm")
    with pytest.raises(ValueError, match="length_penalty: expected a finite number >= 0"):
        shipped.translate(["the ball is blue"], beam=4, length_penalty=-1.0)


def test_translate_pairs_and_evaluate_use_translate_batches(shipped, monkeypatch):
    from pytransformer.data import make_splits
    from pytransformer.translator import Translator, evaluate, exact_match, translate_pairs
    pairs = make_splits(seed=0, n_train=0).test[:10]
    calls, translate = [], Translator.translate

    def spy(self, sentences, *args, **kwargs):
        calls.append((len(sentences), kwargs.get("batch_size")))
        return translate(self, sentences, *args, **kwargs)
    monkeypatch.setattr(Translator, "translate", spy)
    out = translate_pairs(shipped, pairs, batch_size=4)
    assert calls == [(10, 4)] and len(out) == 10
    assert exact_match(shipped, pairs, batch_size=3) >= 0.8 and calls[-1] == (10, 3)
    assert evaluate(shipped, pairs, batch_size=7)["exact_match"] >= 0.8
    assert calls[-1] == (10, 7)
    assert translate_pairs(shipped, []) == []


def test_cross_attention_is_the_module_weights(shipped):
    """The hook's weights are the module's own (need_weights=True): equal
    to an explicit softmax(q k^T / sqrt(d)) of the module's projections of
    its inputs, rows summing to 1, for every decoder layer."""
    from pytransformer.autograd import no_grad
    from pytransformer.translator import cross_attention
    sentence = "the black cat drank the milk"
    out = shipped.translate([sentence])[0]
    src, toks = shipped.encode_sources([sentence])
    model = shipped.model
    for i, layer in enumerate(model.transformer.decoder.layers):
        inputs = []
        handle = layer.multihead_attn.register_forward_pre_hook(
            lambda m, args: inputs.append(args) and None)
        try:
            s, t, w = cross_attention(shipped, sentence, out, layer=i)
        finally:
            handle.remove()
        assert s == toks[0] + ["<eos>"] and t == out.split() + ["<eos>"]
        assert w.shape == (len(t), len(s))
        (query, key, _), = inputs
        with no_grad():
            q, k, _ = (a.data.astype(np.float64)
                       for a in layer.multihead_attn.project(query, key, key))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1])
        p = np.exp(scores - scores.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        np.testing.assert_allclose(w, p.mean(1)[0], rtol=1e-4, atol=1e-6,
                                   err_msg=f"layer {i}")


def test_cli_translate_batch_size_length_penalty_and_scores(shipped, capsys):
    sentences = ["the ball is blue", "the black cat drank the milk", "the dog ran"]
    want = shipped.translate(sentences, beam=4, length_penalty=1.0, length_penalty_kind="power",
                             return_scores=True)
    assert cli.main(["translate", "--beam", "4", "--batch-size", "2", "--length-penalty", "1",
                     "--length-penalty-kind", "power", "--scores", *sentences]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split("\t") for ln in lines] == [[f"{t.score:.4f}", t.text] for t in want]
    assert all(float(ln.split("\t")[0]) < 0 for ln in lines)
    assert cli.main(["translate", *sentences]) == 0                # no --scores: text only
    assert capsys.readouterr().out.splitlines() == shipped.translate(sentences)


@pytest.mark.parametrize("argv,message", [
    (["--length-penalty", "-1"], "argument --length-penalty: expected a finite number >= 0, "
                                 "got '-1'"),
    (["--length-penalty", "inf"], "argument --length-penalty: expected a finite number >= 0"),
    (["--length-penalty", "x"], "argument --length-penalty: expected a finite number >= 0, "
                                "got 'x'"),
    (["--length-penalty-kind", "ct2"], "argument --length-penalty-kind: invalid choice: 'ct2'"),
    (["--batch-size", "0"], "argument --batch-size: expected a positive int, got 0"),
])
def test_cli_translate_option_errors(argv, message, capsys):
    assert cli.main(["translate", *argv, "the ball is blue"]) == 2     # argparse's usage error
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("pytransformer translate: error: ") and message in err
