"""Translator model files with a malformed part. Seq2SeqConfig.from_dict
and Vocab.from_dict name the field that is wrong, and Seq2SeqConfig gives
its model's state_dict shapes without building it. On the command line
every malformed part of a model file (config fields, vocabularies, weights
that do not fit the config) is one line on stderr naming the file and the
field, exit status 2, and the model is only built once its config agrees
with the file's tensors. The files are the shipped model re-saved with one
part changed."""
import math

import numpy as np
import pytest

from pytransformer import checkpoint, translator
from pytransformer.data import Vocab
from pytransformer.nn import Seq2SeqConfig, Seq2SeqTransformer
from pytransformer.translator import Translator, default_model_path
from tests.test_cli_errors import _error

SHIPPED = default_model_path()
needs_model = pytest.mark.skipif(SHIPPED is None, reason="no shipped model in this installation")


@pytest.fixture(scope="module")
def shipped():
    """The shipped model's checkpoint (read once)."""
    if SHIPPED is None:
        pytest.skip("no shipped model in this installation")
    return checkpoint.load_checkpoint(SHIPPED)


@pytest.fixture
def edited(shipped, tmp_path):
    """edited(config=..., extra=..., state=...) -> path of the shipped model
    re-saved with those parts replaced (a callable as config/extra/state
    receives a copy of the shipped part and returns the new one)."""
    def make(config=None, extra=None, state=None, name="edited.safetensors"):
        parts = {"config": dict(shipped.config), "extra": dict(shipped.extra),
                 "state": dict(shipped.model_state)}
        for key, change in (("config", config), ("extra", extra), ("state", state)):
            if callable(change):
                parts[key] = change(parts[key])
            elif change is not None:
                parts[key].update(change)
        p = tmp_path / name
        checkpoint.save_checkpoint(p, model=parts["state"], config=parts["config"],
                                   extra=parts["extra"])
        return p
    return make


def _translate_error(capsys, path):
    """The one-line error of `translate --model path`, checked to name the file."""
    line = _error(capsys, ["translate", "--model", str(path), "the ball is blue"])
    assert str(path) in line, line
    return line


def _without(key):
    return lambda d: {k: v for k, v in d.items() if k != key}


# ----------------------------------------------------------------- config fields

CONFIG_EDITS = [
    ({"dropout": "x"}, "dropout"),
    ({"dropout": True}, "dropout"),
    ({"dropout": 1.0}, "dropout"),
    ({"dropout": math.nan}, "dropout"),
    ({"pad_idx": None}, "pad_idx"),
    ({"pad_idx": 3}, "pad_idx"),
    ({"pad_idx": 10**6}, "pad_idx"),
    ({"layer_norm_eps": -1}, "layer_norm_eps"),
    ({"layer_norm_eps": math.nan}, "layer_norm_eps"),
    ({"layer_norm_eps": math.inf}, "layer_norm_eps"),
    ({"layer_norm_eps": 0}, "layer_norm_eps"),
    ({"d_model": 128.0}, "d_model"),
    ({"d_model": "128"}, "d_model"),
    ({"nhead": True}, "nhead"),
    ({"nhead": 3}, "nhead"),
    ({"num_encoder_layers": 0}, "num_encoder_layers"),
    ({"num_decoder_layers": -1}, "num_decoder_layers"),
    ({"num_decoder_layers": [3]}, "num_decoder_layers"),
    ({"max_len": 1}, "max_len"),
    ({"activation": "tanh"}, "activation"),
    ({"activation": None}, "activation"),
    ({"norm_first": 0}, "norm_first"),
    ({"tie_embeddings": "yes"}, "tie_embeddings"),
    ({"bogus": 1}, "bogus"),
    (_without("src_vocab_size"), "src_vocab_size"),
    (lambda d: {}, "src_vocab_size"),
]


@pytest.mark.parametrize("edit, field", CONFIG_EDITS,
                         ids=[f"{f}-{i}" for i, (_, f) in enumerate(CONFIG_EDITS)])
def test_bad_config_field_is_one_line_naming_it(capsys, edited, edit, field):
    """dropout "x", pad_idx null, {}, a negative or NaN layer_norm_eps, ...:
    a TypeError traceback, or a model that failed only at its first layer
    norm, instead of one line naming the field."""
    line = _translate_error(capsys, edited(config=edit))
    assert repr(field) in line or f"{field}:" in line, line
    assert "config" in line, line


def test_config_from_dict_names_the_field():
    """Seq2SeqConfig.from_dict checks each field itself (a missing field was
    a TypeError from the constructor, a float layer count passed)."""
    good = dict(src_vocab_size=11, tgt_vocab_size=13, d_model=16, nhead=4)
    assert Seq2SeqConfig.from_dict(good) == Seq2SeqConfig(11, 13, d_model=16, nhead=4)
    assert Seq2SeqConfig.from_dict({**good, "dropout": 0}).dropout == 0.0
    for bad, field in [({"tgt_vocab_size": 13}, "src_vocab_size"),
                       ({**good, "num_encoder_layers": 2.0}, "num_encoder_layers"),
                       ({**good, "dim_feedforward": np.float32(8)}, "dim_feedforward"),
                       ({**good, "max_len": 10**40 + 0.5}, "max_len"),
                       ({**good, "layer_norm_eps": "1e-5"}, "layer_norm_eps"),
                       ([("d_model", 4)], "Seq2SeqConfig")]:
        with pytest.raises(ValueError, match=field):
            Seq2SeqConfig.from_dict(bad)


def test_expected_state_shapes_match_the_model():
    """state_shapes(config) is what Seq2SeqTransformer(config).state_dict()
    holds, key for key and shape for shape, for both norm placements and
    with tied embeddings."""
    for kw in ({}, {"norm_first": True, "tie_embeddings": True, "num_decoder_layers": 2}):
        cfg = Seq2SeqConfig(11, 13, **{**dict(d_model=8, nhead=2, num_encoder_layers=1,
                                              num_decoder_layers=1, dim_feedforward=12,
                                              max_len=6), **kw})
        want = {k: v.shape for k, v in Seq2SeqTransformer(cfg).state_dict().items()}
        got = cfg.state_shapes()
        assert list(got) == list(want) and got == want
        assert cfg.num_state_tensors() == len(want)


# ---------------------------------------------------------- work bounded by the file

@pytest.mark.parametrize("edit, words", [({"d_model": 2**20}, "(672, 1048576)"),
                                         ({"num_encoder_layers": 10**6}, "num_encoder_layers"),
                                         ({"dim_feedforward": 2**40}, f"({2**40}, 128)"),
                                         ({"max_len": 10**9}, "max_len")])
def test_huge_config_is_refused_before_building_the_model(capsys, edited, monkeypatch, edit,
                                                          words):
    """A config far larger than the file's tensors (d_model 2**20: a 2.6 GiB
    embedding; 10**6 layers) was built before the tensors were compared with
    it: the model is not constructed at all now."""
    def refuse(*a, **k):
        raise AssertionError("the model was built for a config that does not fit the file")
    monkeypatch.setattr(translator, "Seq2SeqTransformer", refuse)
    line = _translate_error(capsys, edited(config=edit))
    assert words in line, line


# -------------------------------------------------------------- state-dict mismatch

def test_state_dict_mismatch_is_summarised_on_one_line(capsys, edited):
    """Missing, unexpected and mis-shaped tensors: one line with the counts
    and the first of each (it was a multi-line list of every key)."""
    def change(sd):
        sd = {k: v for k, v in sd.items() if not k.startswith("transformer.decoder.layers.2.")}
        sd["extra.weight"] = np.zeros(3, np.float32)
        sd["src_embed.weight"] = sd["src_embed.weight"][:, :64].copy()
        return sd
    line = _translate_error(capsys, edited(state=change))
    assert "18 missing" in line and "transformer.decoder.layers.2." in line, line
    assert "1 unexpected" in line and "'extra.weight'" in line, line
    assert "1 shape mismatch" in line and "'src_embed.weight'" in line, line
    assert "(672, 64)" in line and "(672, 128)" in line, line


def test_non_float_tensor_is_refused(capsys, edited):
    """An integer weight was silently cast into the model."""
    line = _translate_error(capsys, edited(
        state={"generator.bias": np.zeros(1446, np.int32)}))
    assert "'generator.bias'" in line and "int32" in line, line


def test_tied_config_over_untied_weights_is_refused(capsys, edited):
    """tie_embeddings true over a file whose generator and target embedding
    differ loaded one of them silently over the other."""
    line = _translate_error(capsys, edited(config={"tie_embeddings": True}))
    assert "tie_embeddings" in line and "'generator.weight'" in line, line


def test_other_config_message_still_names_the_key(edited):
    """Translator.load's own error (used by the library, not only the CLI)
    is a CheckpointError, one line, naming the mismatched key."""
    p = edited(config={"dim_feedforward": 48})
    with pytest.raises(checkpoint.CheckpointError) as e:
        Translator.load(p)
    assert "linear1.weight" in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------- extra: vocabularies

VOCAB_EDITS = [
    (_without("tgt_vocab"), "tgt_vocab"),
    (_without("src_vocab"), "src_vocab"),
    ({"src_vocab": "abc"}, "src_vocab"),
    ({"tgt_vocab": None}, "tgt_vocab"),
    (lambda e: {**e, "tgt_vocab": {**e["tgt_vocab"], "tokens": e["tgt_vocab"]["tokens"][:-1]}},
     "tgt_vocab"),
    (lambda e: {**e, "src_vocab": {**e["src_vocab"],
                                   "tokens": e["src_vocab"]["tokens"][:-1] + [7]}},
     "src_vocab"),
    (lambda e: {**e, "src_vocab": {**e["src_vocab"],
                                   "tokens": e["src_vocab"]["tokens"][:-1] + ["the"]}},
     "src_vocab"),
    (lambda e: {**e, "src_vocab": {**e["src_vocab"], "more": 1}}, "src_vocab"),
    ({"data": [1, 2]}, "data"),
    ({"data": {"seed": "zero"}}, "data"),
]


@pytest.mark.parametrize("edit, field", VOCAB_EDITS,
                         ids=[f"{f}-{i}" for i, (_, f) in enumerate(VOCAB_EDITS)])
def test_bad_extra_is_one_line_naming_it(capsys, edited, edit, field):
    """extra without tgt_vocab was a KeyError traceback; a vocabulary one
    token short of the config, a non-str or repeated token likewise need one
    line naming the part."""
    line = _translate_error(capsys, edited(extra=edit))
    assert field in line, line


def test_vocab_from_dict_checks_its_dict():
    """Vocab.from_dict names the bad part: the token and its index, capped."""
    d = Vocab(["a", "b"]).to_dict()
    assert Vocab.from_dict(d) == Vocab(["a", "b"])
    for bad, words in [({**d, "tokens": ["a", "a"]}, "tokens[1]"),
                       ({**d, "tokens": ["a", 3]}, "tokens[1]"),
                       ({**d, "tokens": ["<unk>"]}, "tokens[0]"),
                       ({**d, "tokens": ["a b"]}, "tokens[0]"),
                       ({**d, "extra": 1}, "extra"),
                       ({**d, "tokens": ["x" * 10_000, "x" * 10_000]}, "tokens[1]")]:
        with pytest.raises(ValueError, match=r"from_dict") as e:
            Vocab.from_dict(bad)
        assert words in str(e.value) and len(str(e.value)) < 300, str(e.value)


# -------------------------------------------------------- the other commands

def test_explain_and_evaluate_check_the_file_too(capsys, edited, tmp_path):
    """explain and evaluate load models through the same check."""
    p = edited(config={"layer_norm_eps": -1})
    line = _error(capsys, ["evaluate", "--model", str(p), "-n", "2"])
    assert "layer_norm_eps" in line and str(p) in line, line
    line = _error(capsys, ["explain", "the ball is blue", "--model", str(p),
                           "--out", str(tmp_path / "r.html")])
    assert "layer_norm_eps" in line and str(p) in line, line
    assert not (tmp_path / "r.html").exists()


@needs_model
def test_the_shipped_model_still_loads(capsys):
    """The checks accept the shipped model unchanged."""
    tr = Translator.load(SHIPPED)
    assert tr.translate(["the ball is blue"]) == ["la bola es azul"]


# ---------------------------------------------------- BERT model directories

def _bert_dir(tmp_path, **change):
    """A tiny BERT sentence-model directory whose config.json has `change`
    applied; the tensors are those of the unchanged config."""
    from tests.test_pretrained import CFG, _hf_tensors, _write_dir
    return _write_dir(tmp_path / "bert", cfg={**CFG, **change}, tensors=_hf_tensors(CFG))


@pytest.mark.parametrize("change, words", [
    ({"hidden_size": 2**20}, "(30, 1048576)"),
    ({"num_hidden_layers": 10**6}, "num_hidden_layers"),
    ({"intermediate_size": 2**40}, f"({2**40}, 16)"),
    ({"max_position_embeddings": 10**9}, "(1000000000, 16)"),
])
def test_bert_config_is_checked_against_tensors_before_building(tmp_path, monkeypatch, change,
                                                                words):
    """config.json sizes were used to build the BERT (hidden_size 2**20: a
    (3 * 2**20, 2**20) attention matrix per layer) before its tensors were
    compared with them: the model is not constructed at all now."""
    from pytransformer import pretrained
    from pytransformer.pretrained import bert

    def refuse(*a, **k):
        raise AssertionError("the BERT was built for a config that does not fit its tensors")
    monkeypatch.setattr(bert.BertModel, "__init__", refuse)
    d = _bert_dir(tmp_path, **change)
    with pytest.raises(ValueError) as e:
        pretrained.load(d)
    msg = str(e.value)
    assert words in msg and "model.safetensors" in msg and "\n" not in msg, msg
    assert len(msg) < 600, msg


def test_bert_config_values_are_capped_in_messages(tmp_path):
    """A 10 kB string as a config.json size was quoted whole."""
    from pytransformer import pretrained
    for change in ({"vocab_size": "x" * 10_000}, {"hidden_act": "x" * 10_000}):
        with pytest.raises(ValueError) as e:
            pretrained.load(_bert_dir(tmp_path, **change))
        assert len(str(e.value)) < 300, len(str(e.value))


@pytest.mark.parametrize("eps", [math.inf, True, "1e-12", None])
def test_bert_layer_norm_eps_must_be_a_finite_number(tmp_path, eps):
    """config.json layer_norm_eps Infinity or true was accepted (true as 1.0)."""
    from pytransformer import pretrained
    with pytest.raises(ValueError, match="layer_norm_eps"):
        pretrained.load(_bert_dir(tmp_path, layer_norm_eps=eps))


def test_bert_state_shapes_match_the_model():
    """BertConfig.state_shapes() is BertModel(config).state_dict()'s shapes."""
    from pytransformer.pretrained.bert import BertConfig, BertModel
    cfg = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=24, max_position_embeddings=20)
    want = {k: v.shape for k, v in BertModel(cfg).state_dict().items()}
    assert list(cfg.state_shapes().items()) == list(want.items())
    assert cfg.num_state_tensors() == len(want)


def test_bert_mismatch_names_are_capped(tmp_path):
    """Many missing tensors: the message names the first few and the count,
    not every name."""
    from pytransformer import pretrained
    d = _bert_dir(tmp_path, num_hidden_layers=5)
    with pytest.raises(ValueError, match=r"missing tensors \['encoder.layer.2.") as e:
        pretrained.load(d)
    assert "(36 in all)" in str(e.value) and len(str(e.value)) < 600, str(e.value)
