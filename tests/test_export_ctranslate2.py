"""Export to CTranslate2 (pytransformer.export, `pytransformer export
ctranslate2`): the exported shipped model decodes as ours does (greedy on
200 held-out test sentences, beam 4 with length penalty 0 on 50), its
teacher-forced log-probabilities equal ours to LOGP_TOL, pre-norm / GELU /
tied-embedding models map as well, and the command's errors are one line.

Tests that run CTranslate2 are skipped, saying so, when the package is not
installed (pip install 'pytransformer-cpu[ctranslate2]'); the missing-package
error is tested either way.
"""
import sys

import numpy as np
import pytest

from pytransformer import cli, decode, ops
from pytransformer.autograd import no_grad
from pytransformer.data import BOS, EOS, PAD, Vocab, make_splits, tokenize
from pytransformer.export import ExportError, export_ctranslate2
from pytransformer.translator import Translator, default_model_path

try:
    import ctranslate2
except ImportError:
    ctranslate2 = None

needs_ct2 = pytest.mark.skipif(
    ctranslate2 is None, reason="ctranslate2 is not installed (pip install "
                                "'pytransformer-cpu[ctranslate2]'): the export is not tested")
SHIPPED = default_model_path()
needs_model = pytest.mark.skipif(SHIPPED is None, reason="no shipped model in this installation")

# |log p(ours) - log p(CTranslate2)| per target token, teacher-forced: both
# run the same float32 weights with differently ordered float32 sums (GEMM
# blocking, softmax, layer norm); on the shipped model the largest measured
# is 5e-6 over the 200 pairs below and 4.3e-5 over all 2,000 test pairs
LOGP_TOL = 1e-4


@pytest.fixture(scope="module")
def shipped():
    return Translator.load(SHIPPED)


@pytest.fixture(scope="module")
def test_pairs(shipped):
    """The shipped model's held-out test split (the corpus of its training seed)."""
    return make_splits(seed=shipped.data.get("seed", 0), n_train=0).test


@pytest.fixture(scope="module")
def exported(shipped, tmp_path_factory):
    out = tmp_path_factory.mktemp("ct2") / "en-es"
    assert export_ctranslate2(shipped, out) == str(out)
    return ctranslate2.Translator(str(out), device="cpu", inter_threads=1, intra_threads=2)


def _ours_logp(translator, src_tokens, tgt_tokens):
    """Our teacher-forced log-probabilities of tgt_tokens + <eos>, with
    <pad> and <bos> masked as our decoders mask them."""
    m = translator.model
    with no_grad():
        src = np.array([translator.src_vocab.encode(src_tokens, add_eos=True)])
        tin = np.array([translator.tgt_vocab.encode(tgt_tokens, add_bos=True)])
        logits = m(src, tin).data[0].astype(np.float64)
    logits[:, [PAD, BOS]] = -np.inf
    ids = translator.tgt_vocab.encode(tgt_tokens, add_eos=True)
    return ops.log_softmax(logits)[np.arange(len(ids)), ids]


@needs_ct2
@needs_model
def test_greedy_equals_ours_on_200_test_sentences(shipped, exported, test_pairs):
    sentences = [p.source for p in test_pairs[:200]]
    ours = []
    for i in range(0, len(sentences), 50):
        ours += shipped.translate(sentences[i:i + 50])
    res = exported.translate_batch([tokenize(s) for s in sentences], beam_size=1,
                                   max_decoding_length=shipped.model.config.max_len)
    theirs = [" ".join(r.hypotheses[0]) for r in res]
    diff = [(s, a, b) for s, a, b in zip(sentences, ours, theirs) if a != b]
    assert not diff, f"{len(diff)} of 200 differ, first: {diff[0]}"
    assert all(ours) and sum(o == p.target for o, p in zip(ours, test_pairs)) >= 150


@needs_ct2
@needs_model
def test_beam4_equals_ours_on_50_test_sentences(shipped, exported, test_pairs):
    """Best hypothesis and its score (summed log-probabilities, EOS included,
    no length penalty on either side)."""
    sentences = [p.source for p in test_pairs[200:250]]
    src, _ = shipped.encode_sources(sentences)
    ours = decode.beam_search(shipped.model, src, beam=4, length_penalty=0.0, bos=BOS, eos=EOS)
    res = exported.translate_batch([tokenize(s) for s in sentences], beam_size=4,
                                   length_penalty=0.0, return_scores=True,
                                   max_decoding_length=shipped.model.config.max_len)
    for s, hyps, r in zip(sentences, ours, res):
        assert shipped.tgt_vocab.decode(hyps[0][0]) == r.hypotheses[0], s
        assert abs(hyps[0][1] - r.scores[0]) < LOGP_TOL * (len(hyps[0][0]) + 1), s


@needs_ct2
@needs_model
def test_power_length_penalty_is_ctranslate2s(shipped, exported, test_pairs):
    """length_penalty_kind="power" scores as CTranslate2's beam search does
    (summed log-probabilities over (words + EOS) ** alpha): on 50 sentences
    at alpha 0.6, where the best hypotheses agree, so do their scores."""
    sentences = [p.source for p in test_pairs[250:300]]
    src, _ = shipped.encode_sources(sentences)
    ours = decode.beam_search(shipped.model, src, beam=4, length_penalty=0.6,
                              length_penalty_kind="power", bos=BOS, eos=EOS)
    res = exported.translate_batch([tokenize(s) for s in sentences], beam_size=4,
                                   length_penalty=0.6, return_scores=True,
                                   max_decoding_length=shipped.model.config.max_len)
    same = 0
    for s, hyps, r in zip(sentences, ours, res):
        if shipped.tgt_vocab.decode(hyps[0][0]) == r.hypotheses[0]:
            same += 1
            assert abs(hyps[0][1] - r.scores[0]) < LOGP_TOL * (len(hyps[0][0]) + 1), s
    assert same >= 48


@needs_ct2
@needs_model
def test_teacher_forced_log_probabilities_agree(shipped, exported, test_pairs):
    """score_batch on 200 gold test pairs (padded as one batch) against our
    model's log-softmax; <pad> and <bos> have probability 0."""
    pairs = test_pairs[:200]
    src = [tokenize(p.source) for p in pairs]
    tgt = [p.target.split() for p in pairs]
    worst = 0.0
    for s, t, r in zip(src, tgt, exported.score_batch(src, tgt)):
        ours = _ours_logp(shipped, s, t)
        assert len(r.log_probs) == len(ours) == len(t) + 1
        worst = max(worst, float(np.abs(ours - np.array(r.log_probs)).max()))
    assert worst < LOGP_TOL
    r = exported.score_batch([src[0]] * 2, [["<bos>"], ["<pad>"]])
    assert r[0].log_probs[0] == r[1].log_probs[0] == -np.inf


def _random_translator(norm_first, activation, tie):
    """A small untrained model whose every weight (norms included) is random,
    so a swapped or missing tensor in the mapping shows."""
    from pytransformer.nn import Seq2SeqConfig, Seq2SeqTransformer
    cfg = Seq2SeqConfig(20, 24, d_model=16, nhead=2, num_encoder_layers=2,
                        num_decoder_layers=2, dim_feedforward=32, dropout=0.0,
                        activation=activation, norm_first=norm_first, max_len=10,
                        tie_embeddings=tie)
    model = Seq2SeqTransformer(cfg).eval()
    rng = np.random.default_rng(7)
    for p in model.parameters():
        p.data[...] += rng.normal(0, 0.3, p.data.shape).astype(p.data.dtype)
    return Translator(model, Vocab([f"s{i}" for i in range(16)]),
                      Vocab([f"t{i}" for i in range(20)]))


@needs_ct2
@pytest.mark.parametrize("norm_first,activation,tie", [(True, "gelu", True),
                                                       (False, "gelu", False),
                                                       (True, "relu", False)])
def test_other_configurations_map(tmp_path, norm_first, activation, tie):
    tr = _random_translator(norm_first, activation, tie)
    ct = ctranslate2.Translator(export_ctranslate2(tr, tmp_path / "m"), intra_threads=1)
    rng = np.random.default_rng(1)
    src = [[f"s{i}" for i in rng.integers(0, 16, n)] for n in (1, 4, 9)]
    tgt = [[f"t{i}" for i in rng.integers(0, 20, n)] for n in (3, 9, 1)]
    for s, t, r in zip(src, tgt, ct.score_batch(src, tgt)):
        np.testing.assert_allclose(r.log_probs, _ours_logp(tr, s, t), atol=LOGP_TOL, rtol=0)


@needs_ct2
@needs_model
def test_int8_export_leaves_the_model_alone_and_translates(shipped, tmp_path, test_pairs):
    """CTranslate2 quantizes the spec's arrays in place: the export copies
    them, so the model is unchanged; int8 weights still give our greedy
    output on nearly every sentence (the shipped model: 198 of 200)."""
    before = {k: np.array(v) for k, v in shipped.model.state_dict().items()}
    out = export_ctranslate2(shipped, tmp_path / "int8", quantization="int8")
    for k, v in shipped.model.state_dict().items():
        assert np.array_equal(before[k], np.asarray(v)), k
    sentences = [p.source for p in test_pairs[:100]]
    res = ctranslate2.Translator(out, intra_threads=2).translate_batch(
        [tokenize(s) for s in sentences], max_decoding_length=shipped.model.config.max_len)
    ours = shipped.translate(sentences)
    assert sum(" ".join(r.hypotheses[0]) == o for r, o in zip(res, ours)) >= 90


def _one_line_error(capsys, argv, code=2):
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("pytransformer export: "), err
    return lines[0]


@needs_ct2
@needs_model
def test_cli_exports_and_its_errors_are_one_line(capsys, tmp_path):
    out = tmp_path / "m"
    assert cli.main(["export", "ctranslate2", SHIPPED, str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    assert {"model.bin", "config.json", "source_vocabulary.json",
            "target_vocabulary.json"} <= names
    ct = ctranslate2.Translator(str(out))
    assert ct.translate_batch([tokenize("The ball is blue")])[0].hypotheses[0] == \
        "la bola es azul".split()

    err = _one_line_error(capsys, ["export", "ctranslate2", SHIPPED, str(out)])
    assert str(out) in err and "not empty" in err and "--force" in err
    (out / "notes.txt").write_text("kept")
    assert cli.main(["export", "ctranslate2", SHIPPED, str(out), "--force",
                     "--quantization", "int8"]) == 0
    capsys.readouterr()
    assert (out / "notes.txt").read_text() == "kept"
    assert ctranslate2.Translator(str(out)).translate_batch(
        [tokenize("The ball is blue")])[0].hypotheses[0] == "la bola es azul".split()

    not_model = tmp_path / "notes.safetensors"
    not_model.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    err = _one_line_error(capsys, ["export", "ctranslate2", str(not_model), str(tmp_path / "x")])
    assert "MODEL: expected a translator file" in err and "not a pytransformer checkpoint" in err
    err = _one_line_error(capsys, ["export", "ctranslate2", str(tmp_path / "none.safetensors"),
                                   str(tmp_path / "x")])
    assert "MODEL" in err and "no model at" in err
    err = _one_line_error(capsys, ["export", "ctranslate2", SHIPPED, str(not_model)])
    assert "DIR" in err and "file" in err
    assert cli.main(["export", "ctranslate2", SHIPPED, str(tmp_path / "y"),
                     "--quantization", "int3"]) == 2                # argparse's usage error
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --quantization: invalid choice: 'int3'" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@needs_model
def test_missing_ctranslate2_is_one_line(capsys, tmp_path, monkeypatch):
    """Runs whether or not ctranslate2 is installed: an import of it fails."""
    monkeypatch.setitem(sys.modules, "ctranslate2", None)
    err = _one_line_error(capsys, ["export", "ctranslate2", SHIPPED, str(tmp_path / "m")])
    assert "pip install 'pytransformer-cpu[ctranslate2]'" in err
    with pytest.raises(ImportError, match=r"pytransformer-cpu\[ctranslate2\]"):
        export_ctranslate2(SHIPPED, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_bad_arguments_raise_export_error(tmp_path):
    """Checked before anything is loaded or written (no ctranslate2 needed)."""
    with pytest.raises(ValueError, match="quantization: expected one of 'float32', 'int8'"):
        export_ctranslate2("model.safetensors", tmp_path / "m", quantization="int3")
    with pytest.raises(TypeError, match="force: expected"):
        export_ctranslate2("model.safetensors", tmp_path / "m", force=1)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(ExportError, match="exists and is not empty"):
        export_ctranslate2("model.safetensors", tmp_path / "full")
