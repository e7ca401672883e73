"""English-to-Spanish translation: a Seq2SeqTransformer with its two
vocabularies, trained on the generated corpus (pytransformer.data), saved
as one checkpoint file, and used to translate raw text.

    tr = Translator.load("model.safetensors")
    tr.translate(["The ball is blue"])          # ['la bola es azul']

``train_translator(out_path, ...)`` builds the corpus, the vocabularies and
the model and runs the Trainer (checkpoints every N steps and on Ctrl-C;
``resume=True`` continues a run bit-identically).
"""
import copy
import dataclasses
import functools
import sys
import warnings
from typing import NamedTuple

import numpy as np

import pytransformer as pt
from pytransformer import checkpoint, decode
from pytransformer.data import EOS, BOS, GRAMMAR, GRAMMARS, PAD, Vocab, batch, iter_batches, make_splits, tokenize
from pytransformer.nn import Seq2SeqConfig, Seq2SeqTransformer
from pytransformer.training import TrainConfig, Trainer, _Silent
from pytransformer.validation import int_arg, is_int

__all__ = ["SettingsError", "Translation", "Translator", "UnknownWordWarning", "corpus_bleu", "corpus_splits", "default_model_path", "evaluate",
           "model_path", "resolve_model", "train_translator", "validation_scores"]

SHIPPED_MODEL = "translator-en-es.safetensors"
# The models by short name: (file, in the wheel?). One in the wheel is in
# pytransformer/models/; the 6+6-layer one is in the repository's top-level
# models/ only: with its float16 weights and int8 snapshots (25.7 MB) it
# would take the wheel past its 25 MB budget.
MODELS = {"translator-en-es": (SHIPPED_MODEL, True),
          "translator6-en-es": ("translator6-en-es.safetensors", False)}


def _models_dir(in_wheel=True):
    """pytransformer/models/ (in_wheel) or the repository's models/ beside
    the package directory (a source checkout, which `pip install -e .`
    runs from)."""
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here if in_wheel else os.path.dirname(here), "models")


def default_model_path():
    """The model shipped inside the package (pytransformer/models/), or None
    when this installation has none."""
    import os
    path = os.path.join(_models_dir(), SHIPPED_MODEL)
    return path if os.path.exists(path) else None


def model_path(name):
    """The path of the model called `name` (a key of MODELS; the file name
    with ".safetensors" is accepted too): "translator-en-es", the 3+3-layer
    model in the package (pytransformer/models/, in the wheel), or
    "translator6-en-es", the 6+6-layer model in the repository's models/
    (not in the wheel). ValueError for another name; FileNotFoundError,
    with a one-line message saying where the model ships, when this
    installation lacks the file (the 6-layer model needs the repository
    checkout installed with `pip install -e .`)."""
    import os
    key = name[:-len(".safetensors")] if isinstance(name, str) and name.endswith(".safetensors") \
        else name
    if key not in MODELS:
        raise ValueError(f"name: expected one of {sorted(MODELS)}, got {name!r:.80}")
    file, in_wheel = MODELS[key]
    path = os.path.join(_models_dir(in_wheel), file)
    if not os.path.exists(path):
        where = ("the package (pytransformer/models/)" if in_wheel else
                 "the source repository only (models/, not in the wheel): install the "
                 "repository checkout with `pip install -e .`")
        raise FileNotFoundError(f"{key}: this installation has no {file}; the model ships "
                                f"in {where}")
    return path


def resolve_model(path):
    """`path` itself, unless no file is there and its name (a short name of
    MODELS, or such a file name under any directory) names a model of
    pytransformer/models/ or the repository's models/: then that model's
    path (model_path, whose FileNotFoundError says where it ships)."""
    import os
    if isinstance(path, str) and path and not os.path.exists(path):
        name = os.path.basename(path)
        if name.removesuffix(".safetensors") in MODELS:
            return model_path(name)
    return path


class SettingsError(ValueError):
    """A training setting that cannot work with the data (found after the
    corpus is generated, before any training step): the message names the
    setting, what it needs and what it got."""


class UnknownWordWarning(UserWarning):
    """A word of the input is not in the source vocabulary (it becomes <unk>)."""


class Translator:
    """A trained model with its vocabularies: Translator(model, src_vocab,
    tgt_vocab, data=None, snapshots=None) with model a Seq2SeqTransformer,
    src_vocab and tgt_vocab the data.Vocab of its source and target ids,
    data a JSON-able dict saying how the training corpus was made (seed,
    size), and snapshots the compressed weights of a few training steps
    ({step: {name: array}}, see checkpoint.compress_snapshot, or
    checkpoint.SNAPSHOT_IS_MODEL for the step whose weights are the model's;
    {} when none; snapshot_models() turns them into models)."""

    def __init__(self, model, src_vocab, tgt_vocab, data=None, snapshots=None):
        self.model, self.src_vocab, self.tgt_vocab = model, src_vocab, tgt_vocab
        self.data = data or {}      # how the training corpus was made (seed, size)
        self.snapshots = dict(snapshots or {})

    @property
    def grammar(self):
        """The version of the corpus grammar the model was trained on (the
        file's data record; 1 for files that do not record it)."""
        return self.data.get("grammar", 1)

    # --- files ----------------------------------------------------------------
    def save(self, path, dtype=None, **kwargs):
        """Write model weights, model config, both vocabularies and the
        training snapshots (atomic). Without the optimizer state: this is
        how a training checkpoint becomes a model file, snapshots kept.
        dtype "float16" (or "float32", "float64") stores the weights in
        that type (load() reads them into the model's float32); None keeps
        the model's own. ValueError for another dtype."""
        kwargs.setdefault("snapshots", self.snapshots)
        model = self.model
        if dtype is not None:
            try:
                dt = np.dtype(dtype)
            except TypeError:
                dt = None
            if dt not in (np.float16, np.float32, np.float64):
                raise ValueError(f"dtype: expected float16, float32 or float64, got {dtype!r}")
            model = {k: v.astype(dt) for k, v in self.model.state_dict().items()}
        checkpoint.save_checkpoint(path, model=model, config=self.model.config.to_dict(),
                                   extra={"src_vocab": self.src_vocab.to_dict(),
                                          "tgt_vocab": self.tgt_vocab.to_dict(),
                                          "data": self.data}, **kwargs)

    @classmethod
    def load(cls, path):
        """A Translator from a file written by save() or by training, or
        from a model of pytransformer/models/ by its short name (a key of
        MODELS, such as "translator6-en-es"; see model_path, whose
        FileNotFoundError says where a model this installation lacks ships).

        The file's parts are checked before anything is built, and any
        malformed part raises checkpoint.CheckpointError (a ValueError) whose
        one-line message names the file and the part: the config (each field,
        see Seq2SeqConfig), the vocabularies in extra['src_vocab'] and
        extra['tgt_vocab'] (see Vocab.from_dict) and their sizes against the
        config, extra['data'], and the tensors against the shapes the config
        implies (Seq2SeqConfig.state_shapes: names, shapes, float dtypes).
        So the model is only allocated once its size is the size of the
        file's tensors, and its positional table (max_len x d_model values)
        is at most that size or 2**24 values, whichever is larger. The
        training snapshots, when the file has them, are checked against the
        same shapes (checkpoint.check_snapshot)."""
        ck = checkpoint.load_checkpoint(resolve_model(path))
        where = ck.path or str(path)

        def fail(msg):
            raise checkpoint.CheckpointError(f"{where}: {msg}")

        if ck.config is None or ck.extra is None or ck.model_state is None:
            fail("not a translator checkpoint (no model config, vocabularies or weights "
                 "in its metadata)")
        try:
            cfg = Seq2SeqConfig.from_dict(ck.config)
        except ValueError as e:
            fail(f"metadata 'config': {e}")
        vocabs = []
        for name, size in (("src_vocab", cfg.src_vocab_size), ("tgt_vocab", cfg.tgt_vocab_size)):
            if name not in ck.extra:
                fail(f"metadata 'extra': no {name!r} (the vocabulary of the model)")
            try:
                vocab = Vocab.from_dict(ck.extra[name])
            except ValueError as e:
                fail(f"metadata 'extra' {name!r}: {e}")
            if len(vocab) != size:
                fail(f"metadata 'extra' {name!r}: {len(vocab)} tokens, but the config's "
                     f"{name}_size is {size}")
            vocabs.append(vocab)
        if cfg.pad_idx != PAD:
            fail(f"metadata 'config': pad_idx: expected {PAD} (the vocabularies' <pad>), got "
                 f"{cfg.pad_idx}")
        data = ck.extra.get("data", {})
        if not isinstance(data, dict):
            fail(f"metadata 'extra' 'data': expected an object, got {type(data).__name__}")
        seed = data.get("seed", 0)
        if not is_int(seed) or seed < 0:
            fail(f"metadata 'extra' 'data': seed must be an int >= 0, got {seed!r:.80}")
        if data.get("grammar", 1) not in GRAMMARS:
            fail(f"metadata 'extra' 'data': grammar must be one of {list(GRAMMARS)}, got "
                 f"{data.get('grammar')!r:.80}")
        _check_weights(cfg, ck.model_state, fail)
        if ck.snapshots:
            shapes = {k: v.shape for k, v in ck.model_state.items()}
            for step, snap in sorted(ck.snapshots.items()):
                problem = checkpoint.check_snapshot(snap, shapes)
                if problem:
                    fail(f"snapshot of step {step}: {problem}")
        model = Seq2SeqTransformer(cfg)
        model.load_state_dict(ck.model_state)
        return cls(model.eval(), vocabs[0], vocabs[1], data, ck.snapshots)

    def snapshot_models(self, steps=None):
        """[(step, Translator)] for this translator's training snapshots (all
        of them, or those whose step is in `steps`), in step order: the same
        vocabularies, the weights of that step (checkpoint.decompress_snapshot,
        int8 precision; the model itself for the step that is
        SNAPSHOT_IS_MODEL). The output projection, which snapshots leave out,
        is the target embedding when the model ties them and zero
        otherwise: these models are for teacher-forced attention and
        alignment, not to translate. [] when there are no snapshots."""
        own = self.model.state_dict()
        dtype = own["src_embed.weight"].dtype
        out = []
        for step in sorted(self.snapshots):
            if steps is not None and step not in steps:
                continue
            if self.snapshots[step] == checkpoint.SNAPSHOT_IS_MODEL:
                out.append((step, self))
                continue
            state = checkpoint.decompress_snapshot(self.snapshots[step], dtype)
            for key in checkpoint.SNAPSHOT_LEFT_OUT:
                if key in own and key not in state:
                    tied = key == "generator.weight" and self.model.config.tie_embeddings
                    state[key] = state["tgt_embed.weight"] if tied else np.zeros_like(own[key])
            model = copy.deepcopy(self.model)      # every weight is overwritten below
            model.load_state_dict(state)
            out.append((step, Translator(model.eval(), self.src_vocab, self.tgt_vocab,
                                         self.data)))
        return out

    # --- use --------------------------------------------------------------------
    def encode_sources(self, sentences):
        """(ids, tokens) of raw sentences (a str or a list of str): ids (B, S)
        int64, EOS-terminated and padded; tokens the word lists. Warns
        (UnknownWordWarning) naming words not in the vocabulary; ValueError
        for empty input or a sentence longer than the model's max_len - 1."""
        if isinstance(sentences, str):
            sentences = [sentences]
        if not sentences:
            raise ValueError("translate: no sentences given")
        toks = []
        for s in sentences:
            t = _source_tokens(s, self.src_vocab)
            if not t:
                raise ValueError(f"translate: empty sentence {s!r}")
            limit = self.model.config.max_len - 1            # room for EOS
            if len(t) > limit:
                raise ValueError(f"translate: the sentence has {len(t)} tokens; this model "
                                 f"takes at most {limit}")
            unknown = self.src_vocab.unknown(t)
            if unknown:
                warnings.warn(f"unknown word(s) {', '.join(repr(u) for u in unknown)}: "
                              f"translated as <unk>", UnknownWordWarning, stacklevel=3)
            toks.append(t)
        src, _, _ = batch([(t, ["x"]) for t in toks], self.src_vocab, self.tgt_vocab)
        return src, toks

    def translate(self, sentences, beam=1, max_len=None, length_penalty=0.6, *,
                  batch_size=64, length_penalty_kind="gnmt", return_scores=False):
        """Translations (a list of str, in input order) of raw English
        sentences (a str or a list of str): greedy when beam == 1, else beam
        search (see decode.beam_search), each for at most max_len tokens
        (default: the model's max_len). The sentences are sorted by length
        and decoded in batches of at most batch_size, so a batch pads little;
        the results do not depend on the batching beyond float rounding.

        length_penalty (alpha >= 0) and length_penalty_kind ("gnmt", GNMT's
        ((5 + n) / 6) ** alpha, or "power", CTranslate2's n ** alpha) rank
        beam hypotheses and normalise the scores. return_scores=True returns
        a list of Translation(text, score, token_scores) instead: the
        hypothesis score (summed log-probabilities over the length penalty,
        greedy ones included) and the log-probability of each target token
        and of the EOS. Errors as encode_sources, and ValueError for
        max_len outside [1, the model's max_len], batch_size not a positive
        int or a bad length penalty."""
        batch_size = int_arg("batch_size", batch_size, 1)
        decode.length_penalty(0, True, length_penalty, length_penalty_kind)   # checks both
        src, toks = self.encode_sources(sentences)
        lengths = np.array([len(t) + 1 for t in toks])                     # + EOS
        order = np.argsort(lengths, kind="stable")
        found = [None] * len(toks)
        kw = dict(max_len=max_len, bos=BOS, eos=EOS, length_penalty=length_penalty,
                  length_penalty_kind=length_penalty_kind, return_scores=return_scores)
        for i in range(0, len(order), batch_size):
            rows = order[i:i + batch_size]
            part = src[rows, :lengths[rows].max()]
            if beam == 1:
                hyps = decode.greedy(self.model, part, **kw)
            else:
                hyps = [h[0] for h in decode.beam_search(self.model, part, beam=beam, **kw)]
            for r, h in zip(rows, hyps):
                found[r] = h
        # ids alone (greedy without scores), or (ids, score[, token_scores])
        plain_ids = beam == 1 and not return_scores
        texts = [" ".join(self.tgt_vocab.decode(h if plain_ids else h[0])) for h in found]
        if not return_scores:
            return texts
        return [Translation(t, h.score, h.token_scores) for t, h in zip(texts, found)]


class Translation(NamedTuple):
    """A translation with its scores (Translator.translate with
    return_scores=True): text; score, the hypothesis score (summed token
    log-probabilities over the length penalty); token_scores, the float64
    log-probability of each target token, then of the EOS when the
    translation ended with one (it did not when max_len stopped it)."""
    text: str
    score: float
    token_scores: np.ndarray


def _first(keys, what):
    """'N <what> (first: 'key')' for a non-empty list of keys."""
    return f"{len(keys)} {what} (first: {keys[0]!r:.80})"


def _check_weights(cfg, state, fail):
    """Call fail(one-line message) unless the tensors `state` are exactly
    those of Seq2SeqTransformer(cfg) (names, shapes, float dtypes) and the
    positional table is bounded by them; the expected shapes are computed
    from cfg, and only after checking that their number is within a small
    multiple of the file's, so a config cannot make this cost more than the
    file does."""
    prefix = "the weights do not fit the saved config"
    n_want = cfg.num_state_tensors()
    if n_want > 2 * len(state) + 64:
        fail(f"{prefix}: num_encoder_layers {cfg.num_encoder_layers} and num_decoder_layers "
             f"{cfg.num_decoder_layers} make {n_want} tensors; the file has {len(state)}")
    want = cfg.state_shapes()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    shapes = [k for k in want if k in state and tuple(state[k].shape) != want[k]]
    dtypes = [k for k in want if k in state and state[k].dtype.kind != "f"]
    problems = []
    if missing:
        problems.append(_first(missing, "missing keys" if len(missing) > 1 else "missing key"))
    if unexpected:
        problems.append(_first(unexpected, "unexpected"))
    if shapes:
        k = shapes[0]
        problems.append(f"{len(shapes)} shape mismatch{'es' if len(shapes) > 1 else ''} "
                        f"({k!r:.80}: file {tuple(state[k].shape)}, config "
                        f"{str(want[k]):.80})")
    if dtypes:
        k = dtypes[0]
        problems.append(f"{len(dtypes)} not float ({k!r:.80}: {state[k].dtype})")
    if problems:
        fail(f"{prefix}: {', '.join(problems)}")
    if cfg.tie_embeddings and not np.array_equal(state["generator.weight"],
                                                 state["tgt_embed.weight"]):
        fail(f"{prefix}: tie_embeddings is true but 'generator.weight' differs from "
             f"'tgt_embed.weight'")
    size = sum(v.size for v in state.values())
    if cfg.max_len * cfg.d_model > max(size, 2**24):
        fail(f"metadata 'config': max_len: {cfg.max_len} positions of d_model "
             f"{cfg.d_model} make a positional table larger than the file's weights "
             f"({size} values)")


def _source_tokens(sentence, vocab):
    """The tokens of an English sentence as the model reads them: a
    sentence-final '.' or '!' that the source vocabulary lacks is dropped
    (the generated corpus writes statements without one; its questions end
    in '?', which the vocabulary has)."""
    toks = tokenize(sentence)
    if len(toks) > 1 and toks[-1] in (".", "!") and toks[-1] not in vocab:
        toks = toks[:-1]
    return toks


def cross_attention(translator, sentence, translation=None, layer=-1):
    """Cross-attention of one translation: (source tokens + <eos>, target
    tokens + <eos>, weights (T, S)), the weights of decoder layer `layer`
    averaged over heads, row t = where target token t looked while being
    produced (its decoder input is the token before it). A translation of
    max_len words or more (one that never reached <eos>) gives its first
    max_len words and no <eos>. Captured with a forward hook on that
    layer's cross-attention, which calls the module's own forward again on
    the same inputs with need_weights=True; the model itself is unchanged."""
    from pytransformer.autograd import no_grad

    src, toks = translator.encode_sources([sentence])
    if translation is None:
        translation = translator.translate([sentence])[0]
    tgt = translation.split()
    labels = tgt + ["<eos>"]
    limit = translator.model.config.max_len
    if len(tgt) + 1 > limit:
        # a translation that never ended (an undertrained model stops at
        # max_len words): <bos> + the first max_len - 1 words fit the
        # decoder, and their rows are where words 1..max_len looked
        tgt, labels = tgt[:limit - 1], tgt[:limit]
    tgt_ids = translator.tgt_vocab.encode(tgt, add_bos=True)          # BOS + target
    mha = translator.model.transformer.decoder.layers[layer].multihead_attn
    captured = {}

    def hook(module, args, kwargs, output):
        # forward, not __call__: the hooks (this one included) do not run again
        _, w = module.forward(*args, **dict(kwargs, need_weights=True,
                                            average_attn_weights=True))
        captured["w"] = w.data[0]                                         # (T, S)

    handle = mha.register_forward_hook(hook, with_kwargs=True)
    try:
        with no_grad():
            memory, pad = translator.model.encode(src)
            translator.model.decode(np.array([tgt_ids]), memory, pad)
    finally:
        handle.remove()
    return toks[0] + ["<eos>"], labels, captured["w"]


def attention_map(src_tokens, tgt_tokens, weights, legend=False):
    """A text heat map of attention weights: one row per target token, one
    column per source token, the most attended source word at the end of
    each row, and with legend=True a last line saying what the shades
    mean. The shades ' .:-=+*#%@' stand for the
    weight itself on one scale for every row (0 to 1; a row's weights sum
    to 1), so a row spread over many words shows light and a row focused on
    one word dark. Wide characters are aligned by their terminal width."""
    from pytransformer._text import display_width, fit, rjust

    shades = " .:-=+*#%@"
    width = max(3, max(display_width(t) for t in src_tokens))
    tw = max(display_width(t) for t in tgt_tokens)
    lines = [" " * (tw + 2) + " ".join(fit(t, width) for t in src_tokens)]
    for t, row in zip(tgt_tokens, weights):
        cells = " ".join((shades[min(9, max(0, int(round(9 * float(w)))))] * 2).rjust(width)
                         for w in row)
        lines.append(f"{rjust(t, tw)}  {cells}   <- {src_tokens[int(row.argmax())]} "
                     f"({row.max():.2f})")
    if legend:
        lines.append("shade = weight, one scale for all rows: " + " ".join(
            f"'{c}'={i / 9:.1f}" for i, c in enumerate(shades)))
    return "\n".join(lines)


def corpus_splits(translator, seed=None, structural=False):
    """The held-out splits of the corpus `translator` was trained on: its
    corpus seed (or `seed`) and its grammar version, no training pairs, the
    structural split only with `structural` (cached: the splits take
    seconds to generate)."""
    data = getattr(translator, "data", None) or {}
    seed = data.get("seed", 0) if seed is None else seed
    return _corpus_splits(int(seed), data.get("grammar", 1), 2000 if structural else 0)


@functools.lru_cache(maxsize=4)
def _corpus_splits(seed, grammar, n_structural):
    return make_splits(seed=seed, n_train=0, grammar=grammar, n_structural=n_structural)


def translate_pairs(translator, pairs, beam=1, batch_size=64):
    """Translations of the sources of `pairs` by Translator.translate (greedy,
    or beam search; sorted by length, in batches of at most batch_size)."""
    if len(pairs) == 0:
        return []
    return translator.translate([p.source for p in pairs], beam=beam, batch_size=batch_size)


def exact_match(translator, pairs, batch_size=64):
    """Fraction of pairs translated exactly (greedy)."""
    out = translate_pairs(translator, pairs, batch_size=batch_size)
    return sum(o == p.target for o, p in zip(out, pairs)) / max(len(pairs), 1)


BLEU_UNAVAILABLE = ("BLEU unavailable: sacrebleu is not installed "
                    "(pip install sacrebleu, or the [eval] extra)")


def bleu_available():
    """True when sacrebleu can be imported (it is an optional dependency)."""
    try:
        import sacrebleu  # noqa: F401
    except ImportError:
        return False
    return True


def corpus_bleu(hyps, refs):
    """Corpus BLEU (0-100) of hypothesis strings against one reference string
    each, by sacrebleu with its default 13a tokenisation; None when sacrebleu
    is not installed."""
    if len(hyps) != len(refs):
        raise ValueError(f"corpus_bleu: {len(hyps)} hypotheses but {len(refs)} references")
    try:
        import sacrebleu
    except ImportError:
        return None
    return float(sacrebleu.corpus_bleu(list(hyps), [list(refs)]).score)


def evaluate(translator, pairs, beam=1, batch_size=64):
    """{"pairs", "exact_match", "bleu"} on `pairs`: corpus BLEU by sacrebleu
    (its default 13a tokenisation; None when sacrebleu is not installed:
    pip install sacrebleu, or the [eval] extra). The translations are
    Translator.translate's, in batches of at most batch_size."""
    hyps = translate_pairs(translator, pairs, beam=beam, batch_size=batch_size)
    refs = [p.target for p in pairs]
    em = sum(h == r for h, r in zip(hyps, refs)) / max(len(pairs), 1)
    return {"pairs": len(pairs), "exact_match": em, "bleu": corpus_bleu(hyps, refs)}


def validation_scores(translator, pairs, batch_size=256):
    """What periodic validation reports on `pairs` (the model in eval mode):
    ``loss``, the teacher-forced cross-entropy per target token (no label
    smoothing) and ``accuracy``, the fraction of target tokens (EOS
    included) predicted right, both over the padded batches; then greedy
    decodes of the same pairs give ``exact_match`` and ``bleu`` (corpus
    BLEU by sacrebleu, None when it is not installed)."""
    if len(pairs) == 0:
        raise ValueError("validation_scores: pairs is empty")
    return _scores(*_validation_sums(translator, pairs, batch_size), pairs)


def _validation_sums(translator, pairs, batch_size):
    """validation_scores' sums over `pairs`: (cross-entropy summed over
    target tokens, tokens right, target tokens, greedy translations)."""
    from pytransformer.autograd import no_grad
    from pytransformer.nn import functional as F

    model, pad = translator.model, translator.model.config.pad_idx
    nll, right, count = 0.0, 0, 0
    if not pairs:                  # a rank whose share of the validation pairs is empty
        return nll, right, count, []
    with no_grad():
        for i in range(0, len(pairs), batch_size):
            src, tgt_in, tgt_out = batch(pairs[i:i + batch_size], translator.src_vocab,
                                         translator.tgt_vocab)
            logits = model(src, tgt_in)
            V = logits.shape[-1]
            keep = tgt_out != pad
            n = int(keep.sum())
            loss = F.cross_entropy(logits.reshape(-1, V), tgt_out.reshape(-1), ignore_index=pad)
            nll += loss.item() * n
            right += int(((logits.data.argmax(-1) == tgt_out) & keep).sum())
            count += n
    with warnings.catch_warnings():          # <unk> in held-out data is expected here
        warnings.simplefilter("ignore", UnknownWordWarning)
        hyps = translate_pairs(translator, pairs, batch_size=batch_size)
    return nll, right, count, hyps


def _scores(nll, right, count, hyps, pairs):
    """validation_scores' dict from its sums over `pairs`."""
    refs = [p.target for p in pairs]
    return {"loss": nll / count, "accuracy": right / count,
            "exact_match": sum(h == r for h, r in zip(hyps, refs)) / len(pairs),
            "bleu": corpus_bleu(hyps, refs)}


def train_translator(path, model_config=None, train_config=None, n_train=100_000,
                     data_seed=0, batch_size=64, resume=False, stream=None, n_valid_eval=200,
                     grammar=GRAMMAR):
    """Train a translator on the generated corpus and save it at `path`.

    model_config: a dict of Seq2SeqConfig fields (vocabulary sizes are set
    from the data); train_config: a TrainConfig. Validation (every
    train_config.eval_every steps) reports validation_scores() on
    n_valid_eval validation pairs: loss, token accuracy, exact match and
    BLEU (without sacrebleu, BLEU is reported unavailable, once, and left
    empty). The losses and the validations of the whole run (the steps
    before a resume included) go to <path stem>.loss.csv (with matplotlib,
    also .loss.png) and <path stem>.valid.csv. A checkpoint that cannot be
    resumed raises training.ResumeError. Under mpirun with several ranks
    the training is data-parallel (see Trainer): every rank runs this
    function with the same arguments, rank 0 alone prints and writes.
    Returns the Translator."""
    tc = train_config or TrainConfig()
    from pytransformer import distributed
    distributed.init()                  # under mpirun: data-parallel; rank 0 writes
    if distributed.rank() != 0:
        stream = _Silent()
    splits = make_splits(seed=data_seed, n_train=n_train, grammar=grammar, n_structural=0)
    src_vocab = Vocab.build(p.src for p in splits.train)
    tgt_vocab = Vocab.build(p.tgt for p in splits.train)
    pt.manual_seed(tc.seed)
    cfg = dict(model_config or {})
    cfg.update(src_vocab_size=len(src_vocab), tgt_vocab_size=len(tgt_vocab), pad_idx=0)
    model = Seq2SeqTransformer(Seq2SeqConfig(**cfg))
    pairs = splits.train
    need = 1 + max(max(len(p.src), len(p.tgt)) for p in pairs)     # + EOS / BOS
    if model.config.max_len < need:
        raise SettingsError(f"max_len: expected at least {need} (the longest training pair "
                            f"has {need} positions with EOS/BOS), got {model.config.max_len}")

    def epoch_batches(epoch):
        return list(iter_batches(pairs, src_vocab, tgt_vocab, batch_size, seed=tc.seed,
                                 epoch=epoch, max_len=model.config.max_len))

    valid = splits.valid[:n_valid_eval]

    def validate(m):
        if not distributed.is_distributed():
            return validation_scores(Translator(m, src_vocab, tgt_vocab), valid)
        # data-parallel: each rank translates its share, rank 0 scores them
        first, rows = distributed.shard(len(valid))
        sums = _validation_sums(Translator(m, src_vocab, tgt_vocab),
                                valid[first:first + rows], 256)
        parts = distributed.comm().gather(sums, root=0)
        if distributed.rank() != 0:
            return None
        return _scores(sum(p[0] for p in parts), sum(p[1] for p in parts),
                       sum(p[2] for p in parts), [h for p in parts for h in p[3]], valid)

    stem = str(path)[:-len(".safetensors")] if str(path).endswith(".safetensors") else str(path)
    if tc.eval_every and not bleu_available() and distributed.rank() == 0:
        print(f"validation: {BLEU_UNAVAILABLE}", file=stream or sys.stderr)
    extra = {"src_vocab": src_vocab.to_dict(), "tgt_vocab": tgt_vocab.to_dict(),
             "data": {"seed": data_seed, "n_train": n_train, "batch_size": batch_size,
                      "grammar": grammar}}
    kw = dict(validate=validate, extra=extra, stream=stream, valid_csv=stem + ".valid.csv",
              validate_all_ranks=True)
    if resume:
        trainer = Trainer.resume(path, model, epoch_batches, config=tc, **kw)
    else:
        trainer = Trainer(model, epoch_batches, tc, ckpt_path=path,
                          model_config=model.config.to_dict(), **kw)
    trainer.run()
    if distributed.rank() != 0:
        return Translator(model.eval(), src_vocab, tgt_vocab, extra["data"])
    from pytransformer.plot import save_loss_curve
    for f in save_loss_curve(trainer.loss_history, stem):
        print(f"wrote {f}", file=stream)
    if trainer.validations:
        print(f"wrote {stem}.valid.csv", file=stream)
    snaps = {s: checkpoint.SNAPSHOT_IS_MODEL if s == trainer.step else v      # the model's
             for s, v in trainer.snapshots.items()}                          # own weights
    return Translator(model.eval(), src_vocab, tgt_vocab, extra["data"], snaps)


def config_fields():
    """The Seq2SeqConfig fields a user may set (for the CLI)."""
    return [f.name for f in dataclasses.fields(Seq2SeqConfig)
            if f.name not in ("src_vocab_size", "tgt_vocab_size", "pad_idx")]
