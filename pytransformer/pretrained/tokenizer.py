"""BERT's WordPiece tokenizer: the `tokenizers` package when it is installed
(reading tokenizer.json), our own pure-Python implementation otherwise.

Both give the ids the model's own fast tokenizer gives (the one
sentence-transformers uses). Ours follows the `tokenizers` Rust code, which
differs from the older Python BertTokenizer in a few corners, noted here:

    text -> added (special) tokens found verbatim in the raw text, e.g. "[SEP]"
         -> BertNormalizer on the rest:
              clean_text: drop NUL, U+FFFD and Unicode categories Cc Cf Co Cs
                          (not Cn: unassigned code points are kept) except
                          \\t \\n \\r; map White_Space characters to " "
              chinese:    put spaces around CJK ideographs
              strip_accents (default: = lowercase): NFD, drop category Mn
              lowercase:  per character (so a final sigma stays "σ")
         -> BertPreTokenizer: split on whitespace, each punctuation character
            (ASCII punctuation or Unicode category P*) a word of its own
         -> WordPiece: greedy longest match, "##" continuation prefix; a word
            longer than max_input_chars_per_word characters, or with no
            match, becomes [UNK]
         -> truncate to max_length - 2, add [CLS] ... [SEP]

`Tokenizer.__call__(texts)` pads to the longest sequence of the batch and
returns int64 `input_ids`, `attention_mask` and `token_type_ids` (B, T).
"""
from __future__ import annotations

import bisect
import json
import os
import re
import unicodedata
from pathlib import Path

import numpy as np
from pytransformer.validation import is_int

__all__ = ["Tokenizer", "BertWordPiece", "tokenizers_available", "FORCE_OURS_ENV"]

FORCE_OURS_ENV = "PYTRANSFORMER_OWN_TOKENIZER"
_SPECIAL = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_DEFAULT_SPECIAL = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                    "cls_token": "[CLS]", "mask_token": "[MASK]"}


def tokenizers_available() -> bool:
    """Whether the `tokenizers` package can be imported."""
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------
# character classes (the Rust BertNormalizer / BertPreTokenizer's)

# The `tokenizers` normalizer asks an older Unicode table (Rust's
# unicode_categories crate) for the categories Mn, P* and C*. Characters it
# does not know are ordinary letters to it. These are the code points whose
# category there differs from Python 3.11's unicodedata (Unicode 14), found
# by running every code point through both ("a" + c + "a"; see
# tests/fixtures/make_minilm_fixtures.py --unicode-diff): first the ranges it
# treats as unassigned, then three whose category changed since.
_RUST_UNASSIGNED = (
    (0x61D, 0x61D), (0x7FD, 0x7FD), (0x890, 0x891), (0x898, 0x89F), (0x8CA, 0x8E2),
    (0x9FD, 0x9FE), (0xA76, 0xA76), (0xAFA, 0xAFF), (0xB55, 0xB55), (0xC04, 0xC04),
    (0xC3C, 0xC3C), (0xC77, 0xC77), (0xC84, 0xC84), (0xD00, 0xD00), (0xD3B, 0xD3C),
    (0xD81, 0xD81), (0xEBA, 0xEBA), (0x180F, 0x180F), (0x1885, 0x1886), (0x1ABF, 0x1ACE),
    (0x1B7D, 0x1B7E), (0x1DF6, 0x1DFB), (0x2E43, 0x2E4F), (0x2E52, 0x2E5D), (0xA82C, 0xA82C),
    (0xA8C5, 0xA8C5), (0xA8FF, 0xA8FF), (0xA9BD, 0xA9BD), (0x10D24, 0x10D27),
    (0x10EAB, 0x10EAD), (0x10F46, 0x10F50), (0x10F55, 0x10F59), (0x10F82, 0x10F89),
    (0x11070, 0x11070), (0x11073, 0x11074), (0x110C2, 0x110C2), (0x110CD, 0x110CD),
    (0x111CF, 0x111CF), (0x1123E, 0x1123E), (0x1133B, 0x1133B), (0x11438, 0x1143F),
    (0x11442, 0x11444), (0x11446, 0x11446), (0x1144B, 0x1144F), (0x1145A, 0x1145B),
    (0x1145D, 0x1145E), (0x11660, 0x1166C), (0x116B9, 0x116B9), (0x1182F, 0x11837),
    (0x11839, 0x1183B), (0x1193B, 0x1193C), (0x1193E, 0x1193E), (0x11943, 0x11946),
    (0x119D4, 0x119D7), (0x119DA, 0x119DB), (0x119E0, 0x119E0), (0x119E2, 0x119E2),
    (0x11A01, 0x11A0A), (0x11A33, 0x11A38), (0x11A3B, 0x11A47), (0x11A51, 0x11A56),
    (0x11A59, 0x11A5B), (0x11A8A, 0x11A96), (0x11A98, 0x11A9C), (0x11A9E, 0x11AA2),
    (0x11C30, 0x11C36), (0x11C38, 0x11C3D), (0x11C3F, 0x11C3F), (0x11C41, 0x11C45),
    (0x11C70, 0x11C71), (0x11C92, 0x11CA7), (0x11CAA, 0x11CB0), (0x11CB2, 0x11CB3),
    (0x11CB5, 0x11CB6), (0x11D31, 0x11D36), (0x11D3A, 0x11D3A), (0x11D3C, 0x11D3D),
    (0x11D3F, 0x11D45), (0x11D47, 0x11D47), (0x11D90, 0x11D91), (0x11D95, 0x11D95),
    (0x11D97, 0x11D97), (0x11EF3, 0x11EF4), (0x11EF7, 0x11EF8), (0x11FFF, 0x11FFF),
    (0x12FF1, 0x12FF2), (0x13430, 0x13438), (0x16E97, 0x16E9A), (0x16F4F, 0x16F4F),
    (0x16FE2, 0x16FE2), (0x16FE4, 0x16FE4), (0x1CF00, 0x1CF2D), (0x1CF30, 0x1CF46),
    (0x1E000, 0x1E006), (0x1E008, 0x1E018), (0x1E01B, 0x1E021), (0x1E023, 0x1E024),
    (0x1E026, 0x1E02A), (0x1E130, 0x1E136), (0x1E2AE, 0x1E2AE), (0x1E2EC, 0x1E2EF),
    (0x1E944, 0x1E94A), (0x1E95E, 0x1E95F),
)
_RUST_CATEGORY = {0x166D: "Po", 0x1734: "Mn", 0x111C9: "Po"}
_UNASSIGNED_STARTS = [a for a, _ in _RUST_UNASSIGNED]


def _category(c):
    """The Unicode general category of character c as the tokenizers crate sees it."""
    cp = ord(c)
    cat = _RUST_CATEGORY.get(cp)
    if cat is not None:
        return cat
    i = bisect.bisect_right(_UNASSIGNED_STARTS, cp) - 1
    if i >= 0 and cp <= _RUST_UNASSIGNED[i][1]:
        return "Cn"
    return unicodedata.category(c)


def _is_control(c):
    """Removed by clean_text: categories Cc Cf Co Cs, except tab/newline/CR."""
    if c in "\t\n\r":
        return False
    return _category(c) in ("Cc", "Cf", "Co", "Cs")


def _is_whitespace(c):
    """Unicode White_Space (Rust's char::is_whitespace). Python's isspace adds
    U+001C..U+001F, which are Cc and so removed before this is asked."""
    return c in "\t\n\r " or (c.isspace() and unicodedata.category(c)[0] != "C")


# ASCII control characters: tab/newline/CR become spaces, the rest (Cc) go.
_ASCII_CLEAN = {i: None for i in list(range(32)) + [127]}
_ASCII_CLEAN.update({9: " ", 10: " ", 13: " "})


def _is_chinese(cp):
    """The CJK Unified Ideographs blocks BERT isolates (not Japanese kana or Hangul)."""
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F
            or 0x2B920 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF
            or 0x2F800 <= cp <= 0x2FA1F)


def _is_punctuation(c):
    """ASCII punctuation (which includes symbols such as $ + < = > ^ ` | ~) or
    any Unicode category P*."""
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return _category(c)[0] == "P"


# ----------------------------------------------------------------------------
# our WordPiece

class BertWordPiece:
    """BERT tokenization in plain Python: text -> list of token ids (no
    special tokens, no truncation). See the module docstring for the rules.

    vocab: {token: id}; lowercase / strip_accents (None: follow lowercase) /
    clean_text / handle_chinese_chars as in BertNormalizer; added_tokens:
    strings matched verbatim in the raw text before normalisation."""

    def __init__(self, vocab, *, unk_token="[UNK]", lowercase=True, strip_accents=None,
                 clean_text=True, handle_chinese_chars=True, max_input_chars_per_word=100,
                 continuing_subword_prefix="##", added_tokens=()):
        if not isinstance(vocab, dict) or not vocab:
            raise ValueError("vocab: expected a non-empty dict of token -> id")
        if unk_token not in vocab:
            raise ValueError(f"unk_token: {unk_token!r} is not in the vocabulary")
        self.vocab = vocab
        self.unk_id = vocab[unk_token]
        self.lowercase = bool(lowercase)
        self.strip_accents = self.lowercase if strip_accents is None else bool(strip_accents)
        self.clean_text = bool(clean_text)
        self.handle_chinese_chars = bool(handle_chinese_chars)
        self.max_chars = int(max_input_chars_per_word)
        self.prefix = continuing_subword_prefix
        self.added = {t: vocab[t] for t in added_tokens if t in vocab}
        self._added_re = (re.compile("|".join(re.escape(t) for t in
                                              sorted(self.added, key=len, reverse=True)))
                          if self.added else None)
        self._cache = {}

    def normalize(self, text):
        """BertNormalizer: clean, isolate CJK ideographs, strip accents, lower-case."""
        if text.isascii():  # the common case: only cleaning and lower-casing apply
            if self.clean_text:
                text = text.translate(_ASCII_CLEAN)
            return text.lower() if self.lowercase else text
        if self.clean_text or self.handle_chinese_chars:
            out = []
            for c in text:
                if self.clean_text:
                    if c == "\x00" or c == "\ufffd" or _is_control(c):
                        continue
                    if _is_whitespace(c):
                        out.append(" ")
                        continue
                if self.handle_chinese_chars and _is_chinese(ord(c)):
                    out.append(f" {c} ")
                else:
                    out.append(c)
            text = "".join(out)
        if self.strip_accents:
            text = "".join(c for c in unicodedata.normalize("NFD", text)
                           if _category(c) != "Mn")
        if self.lowercase:
            text = "".join(c.lower() for c in text)  # per character, as Rust does
        return text

    @staticmethod
    def pre_tokenize(text):
        """BertPreTokenizer: words split on whitespace, punctuation characters alone."""
        words = []
        for chunk in text.split():
            start = 0
            for i, c in enumerate(chunk):
                if _is_punctuation(c):
                    if i > start:
                        words.append(chunk[start:i])
                    words.append(c)
                    start = i + 1
            if start < len(chunk):
                words.append(chunk[start:])
        return words

    def wordpiece(self, word):
        """Greedy longest-match-first pieces of one word -> ids ([UNK] if any
        part cannot be matched or the word is too long)."""
        hit = self._cache.get(word)
        if hit is not None:
            return hit
        if len(word) > self.max_chars:
            ids = [self.unk_id]
        else:
            ids, start, n = [], 0, len(word)
            while start < n:
                end = n
                cur = None
                while start < end:
                    piece = word[start:end]
                    if start > 0:
                        piece = self.prefix + piece
                    cur = self.vocab.get(piece)
                    if cur is not None:
                        break
                    end -= 1
                if cur is None:
                    ids = [self.unk_id]
                    break
                ids.append(cur)
                start = end
        if len(self._cache) < 100_000:
            self._cache[word] = ids
        return ids

    def encode(self, text):
        """One text -> token ids (no [CLS]/[SEP])."""
        parts = [text]
        if self._added_re is not None:
            parts, pos = [], 0
            for m in self._added_re.finditer(text):
                parts.append(text[pos:m.start()])
                parts.append(self.added[m.group()])
                pos = m.end()
            parts.append(text[pos:])
        ids = []
        for part in parts:
            if isinstance(part, int):
                ids.append(part)
                continue
            for word in self.pre_tokenize(self.normalize(part)):
                ids.extend(self.wordpiece(word))
        return ids


def read_vocab(path):
    """vocab.txt (one token a line, id = line number) -> {token: id}."""
    vocab = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            tok = line.rstrip("\n")
            if tok.endswith("\r"):
                tok = tok[:-1]
            vocab.setdefault(tok, i)
    if not vocab:
        raise ValueError(f"{path}: the vocabulary is empty")
    return vocab


# ----------------------------------------------------------------------------
# the batch tokenizer

def _check_texts(texts):
    if isinstance(texts, str):
        raise TypeError("texts: expected a list of str, got a single str (wrap it in a list)")
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(f"texts: expected a list of str, got {type(texts).__name__}") from None
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}]: expected str, got {type(t).__name__} {t!r:.60}")
    return texts


class Tokenizer:
    """A BERT model's tokenizer: texts -> padded id arrays.

    Tokenizer.from_dir(path, max_length=None, backend=None) reads the
    tokenizer files of a model directory. backend: 'tokenizers' (needs the
    package and tokenizer.json), 'ours' (vocab.txt, or the vocabulary inside
    tokenizer.json), or None = 'tokenizers' when importable and
    tokenizer.json exists, else 'ours'. The environment variable
    PYTRANSFORMER_OWN_TOKENIZER=1 makes None mean 'ours'.
    """

    def __init__(self, wordpiece, *, max_length, cls_id, sep_id, pad_id, hf=None):
        self.wordpiece = wordpiece
        self.cls_id, self.sep_id, self.pad_id = int(cls_id), int(sep_id), int(pad_id)
        self._hf = hf
        if hf is not None:
            hf.no_padding()
        self.set_max_length(max_length)
        self.backend = "tokenizers" if hf is not None else "ours"

    def set_max_length(self, max_length):
        """Truncate to `max_length` tokens, [CLS] and [SEP] included (>= 2)."""
        if not is_int(max_length) or max_length < 2:
            raise ValueError(f"max_length: expected an int >= 2 (room for [CLS] and [SEP]), "
                             f"got {max_length!r}")
        self.max_length = int(max_length)
        if self._hf is not None:
            self._hf.enable_truncation(max_length=self.max_length)

    @classmethod
    def from_dir(cls, path, max_length=None, backend=None):
        """Read tokenizer.json / vocab.txt, tokenizer_config.json and
        special_tokens_map.json from directory `path` (see the class docstring)."""
        path = Path(path)
        if backend is None:
            if os.environ.get(FORCE_OURS_ENV, "") not in ("", "0"):
                backend = "ours"
            else:
                backend = ("tokenizers" if tokenizers_available()
                           and (path / "tokenizer.json").is_file() else "ours")
        if backend not in ("tokenizers", "ours"):
            raise ValueError(f"backend: expected 'tokenizers', 'ours' or None, got {backend!r}")
        cfg = _read_json(path / "tokenizer_config.json", required=False)
        special = dict(_DEFAULT_SPECIAL)
        smap = _read_json(path / "special_tokens_map.json", required=False)
        for k in _SPECIAL:
            for src in (smap, cfg):
                v = src.get(k)
                if isinstance(v, dict):
                    v = v.get("content")
                if isinstance(v, str):
                    special[k] = v
                    break
        if max_length is None:
            max_length = cfg.get("model_max_length", 512)
            if not isinstance(max_length, int) or max_length > 1_000_000:
                max_length = 512
        tj = _read_json(path / "tokenizer.json", required=False)
        if backend == "tokenizers":
            if not tokenizers_available():
                raise ImportError("backend='tokenizers' needs the tokenizers package "
                                  "(pip install tokenizers)")
            if not tj:
                raise FileNotFoundError(f"{path / 'tokenizer.json'}: missing (needed by "
                                        f"backend='tokenizers')")
            from tokenizers import Tokenizer as HFTokenizer
            hf = HFTokenizer.from_file(str(path / "tokenizer.json"))
            ids = {k: hf.token_to_id(special[k]) for k in ("cls_token", "sep_token",
                                                           "pad_token")}
            missing = [special[k] for k, v in ids.items() if v is None]
            if missing:
                raise ValueError(f"{path / 'tokenizer.json'}: special tokens {missing} are "
                                 f"not in the vocabulary")
            return cls(None, max_length=max_length, cls_id=ids["cls_token"],
                       sep_id=ids["sep_token"], pad_id=ids["pad_token"], hf=hf)
        wp = _our_wordpiece(path, cfg, tj, special)
        v = wp.vocab
        missing = [special[k] for k in ("cls_token", "sep_token", "pad_token")
                   if special[k] not in v]
        if missing:
            raise ValueError(f"{path}: special tokens {missing} are not in the vocabulary")
        return cls(wp, max_length=max_length, cls_id=v[special["cls_token"]],
                   sep_id=v[special["sep_token"]], pad_id=v[special["pad_token"]])

    def encode_ids(self, texts):
        """list of str -> list of id lists with [CLS]/[SEP], truncated to max_length."""
        texts = _check_texts(texts)
        if self._hf is not None:
            return [e.ids for e in self._hf.encode_batch(texts)]
        n = self.max_length - 2
        return [[self.cls_id] + self.wordpiece.encode(t)[:n] + [self.sep_id] for t in texts]

    def __call__(self, texts):
        """list of str -> {'input_ids', 'attention_mask', 'token_type_ids'}:
        int64 arrays (B, T), right-padded with [PAD] to the batch's longest."""
        seqs = self.encode_ids(texts)
        if not seqs:
            raise ValueError("texts: expected at least one text, got an empty list")
        T = max(len(s) for s in seqs)
        ids = np.full((len(seqs), T), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), T), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = s
            mask[i, :len(s)] = 1
        return {"input_ids": ids, "attention_mask": mask,
                "token_type_ids": np.zeros_like(ids)}

    def __repr__(self):
        return f"Tokenizer(backend={self.backend!r}, max_length={self.max_length})"


def _read_json(path, required=True):
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path}: missing")
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def _our_wordpiece(path, cfg, tj, special):
    """Build BertWordPiece from tokenizer.json when it describes a BERT
    WordPiece, else from vocab.txt + tokenizer_config.json."""
    norm = tj.get("normalizer") or {}
    model = tj.get("model") or {}
    if tj and model.get("type") == "WordPiece" and isinstance(model.get("vocab"), dict):
        if norm.get("type") not in ("BertNormalizer", None):
            raise ValueError(f"{path / 'tokenizer.json'}: normalizer {norm.get('type')!r} is "
                             f"not supported by our tokenizer (BertNormalizer only); install "
                             f"the tokenizers package")
        pre = (tj.get("pre_tokenizer") or {}).get("type")
        if pre not in ("BertPreTokenizer", None):
            raise ValueError(f"{path / 'tokenizer.json'}: pre_tokenizer {pre!r} is not "
                             f"supported by our tokenizer (BertPreTokenizer only)")
        added = [t["content"] for t in tj.get("added_tokens") or [] if isinstance(t, dict)
                 and isinstance(t.get("content"), str)]
        return BertWordPiece(
            model["vocab"], unk_token=model.get("unk_token", special["unk_token"]),
            lowercase=norm.get("lowercase", True), strip_accents=norm.get("strip_accents"),
            clean_text=norm.get("clean_text", True),
            handle_chinese_chars=norm.get("handle_chinese_chars", True),
            max_input_chars_per_word=model.get("max_input_chars_per_word", 100),
            continuing_subword_prefix=model.get("continuing_subword_prefix", "##"),
            added_tokens=added)
    vocab_path = path / "vocab.txt"
    if not vocab_path.is_file():
        raise FileNotFoundError(f"{vocab_path}: missing (the tokenizer needs vocab.txt or "
                                f"tokenizer.json)")
    if cfg.get("do_basic_tokenize", True) is False:
        raise ValueError(f"{path / 'tokenizer_config.json'}: do_basic_tokenize=false is not "
                         f"supported")
    return BertWordPiece(
        read_vocab(vocab_path), unk_token=special["unk_token"],
        lowercase=cfg.get("do_lower_case", True), strip_accents=cfg.get("strip_accents"),
        handle_chinese_chars=cfg.get("tokenize_chinese_chars", True),
        added_tokens=[special[k] for k in _SPECIAL])
