"""Where a translation goes wrong: the first decoding step at which the
model's own (greedy) translation leaves a reference, with what the model
predicted there and where cross-attention looked.

    from pytransformer.explain.failure import find_failure
    f = find_failure(translator, "the small black cat drank the milk",
                     "el gato pequeño negro bebió la leche")
    f.step, f.expected, f.expected_rank, f.text

At the first differing step i the decoder has read <bos> and the first i
reference words, which are also the first i words of the model's output, so
one teacher-forced run on the reference shows the model's own state there:
its distribution over the next word (the reference word's probability and
rank; the word it wrote instead) and every layer's cross-attention row. The
source word that should have produced the reference word comes from the
corpus's gold alignment when the sentence pair is in the corpus, else from
the lexicon (the source words the reference word translates).
"""
import dataclasses
import functools
import warnings
from typing import Optional

import numpy as np

from .trace import trace

__all__ = ["Failure", "find_failure", "failure_section", "reference_pair", "source_words_of"]


@dataclasses.dataclass
class Failure:
    """One sentence against a reference.

    output / reference: token lists (the model's greedy translation, the
    reference); reference_from: where the reference came from ('given' or
    'corpus'); step: index of the first differing target position (None when
    the output equals the reference); written: the words both share before
    it; expected / produced: the reference's and the model's word at that
    step ('<eos>' for the end); expected_prob, expected_rank (1 = the
    model's first choice; ranks among the whole target vocabulary),
    produced_prob; alternatives: the model's top five [(word, prob)] there;
    source: the source tokens (<eos> last); should: source indices that
    should produce the expected word, should_from ('gold alignment',
    'lexicon' or None when neither names one); weights (L, S): each cross-
    attention layer's weights at that step, mean of heads; head_weights
    (L, H, S): the same per head; vocab_size: the
    number of target words ranked; expected_known: whether the expected word
    is in the target vocabulary (else its probability is that of <unk>);
    text: the finding in words."""
    sentence: str
    output: list
    reference: list
    reference_from: str
    step: Optional[int] = None
    written: list = dataclasses.field(default_factory=list)
    expected: str = ""
    produced: str = ""
    expected_prob: float = float("nan")
    expected_rank: int = 0
    produced_prob: float = float("nan")
    alternatives: list = dataclasses.field(default_factory=list)
    source: list = dataclasses.field(default_factory=list)
    should: list = dataclasses.field(default_factory=list)
    should_from: Optional[str] = None
    weights: Optional[np.ndarray] = None
    head_weights: Optional[np.ndarray] = None
    vocab_size: int = 0
    expected_known: bool = True
    text: str = ""

    @property
    def wrong(self):
        """Whether the output leaves the reference."""
        return self.step is not None

    def to_dict(self):
        """A JSON-able dict."""
        d = dataclasses.asdict(self)
        d["weights"] = None if self.weights is None else self.weights.tolist()
        d["head_weights"] = None if self.head_weights is None else self.head_weights.tolist()
        d["alternatives"] = [[w, float(p)] for w, p in self.alternatives]
        return d


@functools.lru_cache(maxsize=1)
def _spanish_to_english():
    """{Spanish word: set of English words it translates} from the lexicon."""
    from pytransformer.data import lexicon as lx
    out = {}

    def add(es, *en):
        if es:
            out.setdefault(es, set()).update(w for w in en if w)

    for n in lx.NOUNS:
        add(n.es, n.en)
        add(n.es_pl, n.en_pl)
    for a in lx.ADJECTIVES:
        for f in a.forms:
            add(f, a.en)
    for v in lx.VERBS:
        for f in (v.es,) + tuple(v.present) + tuple(v.preterite):
            add(f, v.en, v.en_3sg, v.en_past)
    for table in (lx.SER, lx.ESTAR):
        for forms in table:
            for f in forms:
                add(f, "am", "is", "are", "was", "were", "be")
    for d in lx.DETERMINERS:
        for f in d.es:
            add(f, d.en)
    for p in lx.PRONOUNS:
        add(p.es, *p.en)
    for p in lx.PREPOSITIONS:
        for f in p.es:
            add(f, p.en)
    for es, en in (("no", "not"), ("que", "that"), ("?", "?"), (".", ".")):
        add(es, en)
    return out


def source_words_of(word, source):
    """Indices of the words of `source` (tokens) that the Spanish `word`
    translates, by the lexicon (empty when none does, e.g. the personal
    'a' or '¿')."""
    en = _spanish_to_english().get(word, set())
    return [i for i, w in enumerate(source) if w in en]


def reference_pair(translator, sentence):
    """The corpus pair of `sentence` (a seed sentence, or one of the test,
    valid or compositional pairs of the translator's corpus), or None."""
    from pytransformer.data import seed_pairs, tokenize
    from pytransformer.translator import corpus_splits
    toks = tuple(tokenize(sentence))
    for p in seed_pairs():
        if tuple(p.src) == toks:
            return p
    sp = corpus_splits(translator)
    for split in (sp.test, sp.valid, sp.compositional):
        for p in split:
            if tuple(p.src) == toks:
                return p
    return None


def _quote(w):
    return f"\u201c{w}\u201d"


def find_failure(translator, sentence, reference=None, output=None):
    """The Failure of `sentence` against `reference` (a Spanish sentence;
    None: the corpus pair's translation, see reference_pair; ValueError when
    there is none). output: the model's translation (default: its greedy
    translation)."""
    from pytransformer.data import EOS
    pair = reference_pair(translator, sentence)
    if reference is None:
        if pair is None:
            raise ValueError(f"reference: {sentence!r} is not in the corpus; give the "
                             f"correct translation")
        ref, ref_from = list(pair.tgt), "corpus"
    else:
        ref, ref_from = str(reference).split(), "given"
        if not ref:
            raise ValueError("reference: expected a Spanish sentence, got an empty string")
    out = (translator.translate([sentence])[0] if output is None else str(output)).split()
    f = Failure(sentence=sentence, output=out, reference=ref, reference_from=ref_from)
    a, b = out + ["<eos>"], ref + ["<eos>"]
    step = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
    if step is None:
        f.text = (f"The model's translation {_quote(' '.join(out))} equals the reference.")
        return f
    with warnings.catch_warnings():          # the report's own trace already warns
        warnings.simplefilter("ignore")
        t = trace(translator, sentence, " ".join(ref))
    tv = translator.tgt_vocab
    z = np.asarray(t.logits[0, step], np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    exp_id = EOS if b[step] == "<eos>" else tv.token_to_id(b[step])
    prod_id = EOS if a[step] == "<eos>" else tv.token_to_id(a[step])
    top = np.argsort(-p, kind="stable")[:5]
    src = list(t.src_tokens[0])
    if pair is not None and pair.align is not None and list(pair.tgt) == ref \
            and b[step] != "<eos>":
        should = [i for i, js in enumerate(pair.align) if step in js]
        should_from = "gold alignment"
    else:
        should = source_words_of(b[step], [w for w in src[:-1]])
        should_from = "lexicon" if should else None
    L = t.num_layers("cross")
    heads = np.stack([t.attention("cross", li).weights[0, :, step, :len(src)]
                      for li in range(L)])                            # (L, H, S)
    W = heads.mean(1)
    f.step, f.written = step, ref[:step]
    f.expected, f.produced = b[step], a[step]
    f.expected_prob, f.produced_prob = float(p[exp_id]), float(p[prod_id])
    f.expected_rank = int((p > p[exp_id]).sum()) + 1
    f.alternatives = [("<eos>" if int(k) == EOS else tv.id_to_token(int(k)), float(p[k]))
                      for k in top]
    f.source, f.should, f.should_from, f.weights = src, should, should_from, W
    f.head_weights = heads
    f.vocab_size = len(p)
    f.expected_known = b[step] == "<eos>" or b[step] in tv
    f.text = _finding_text(f)
    return f


def _finding_text(f):
    src = f.source
    after = (f"having written {_quote(' '.join(f.written))}" if f.written
             else "at the first word")
    unk = (" (a word outside the model's vocabulary: the probability is that of <unk>)"
           if not f.expected_known else "")
    text = (f"The model leaves the reference at step {f.step + 1}: {after}, it writes "
            f"{_quote(f.produced)} (p = {f.produced_prob:.2g}) where the reference has "
            f"{_quote(f.expected)}{unk} (p = {f.expected_prob:.2g}, rank {f.expected_rank} "
            f"of {f.vocab_size} words).")
    last = f.weights[-1]
    j = int(np.argmax(last))
    text += (f" At that step the last cross-attention layer (mean of heads) weighs "
             f"{_quote(src[j])} most ({last[j]:.2f}).")
    if f.should:
        names = " and ".join(_quote(src[i]) for i in f.should)
        w = [float(f.weights[:, f.should].sum(1)[li]) for li in range(len(f.weights))]
        best = int(np.argmax(w))
        hw = f.head_weights[:, :, f.should].sum(-1)                  # (L, H)
        hl, hh = np.unravel_index(int(np.argmax(hw)), hw.shape)
        text += (f" {names}, which should produce {_quote(f.expected)} ({f.should_from}), "
                 f"receives {w[-1]:.2f} there, at most {w[best]:.2f} in any layer (layer {best}) and at most "
                 f"{hw[hl, hh]:.2f} from any single head (layer {hl} head {hh}).")
        if j in f.should:
            text += (" So the model looked at the right word and still chose another "
                     "word: the error is in what it made of it, not in where it looked.")
        elif hw.max() < 0.1:
            text += (f" So the model never looked at {names} when it should have "
                     f"translated {'it' if len(f.should) == 1 else 'them'}: "
                     f"{_quote(f.expected)} is dropped.")
        else:
            text += (f" So some attention reached {names} (one head gives "
                     f"{hw[hl, hh]:.2f}), but the last layer looked at {_quote(src[j])} when "
                     f"{_quote(f.expected)} was due.")
    elif f.expected == "<eos>":
        text += " The reference ends here; the model goes on."
    else:
        text += (f" No source word translates {_quote(f.expected)} by the lexicon "
                 f"(and the corpus has no gold alignment for this pair): the reference "
                 f"word has no counterpart in the English words.")
    return text


def failure_section(rep, translator, sentence, v):
    """Add the 'where the translation goes wrong' section to the Report `rep`
    (v: the report's sentence_views) when there is a reference: the
    translation the report was asked to explain when it differs from the
    model's own, else the corpus pair's. Nothing is added without a
    reference. Returns the Failure or None."""
    from . import html as H
    from .ffn import _unmark
    t = v["trace"]
    explained = " ".join(_unmark(w) for w in t.tgt_out_tokens[0][:-1])   # '<unk:w>' -> w
    own = translator.translate([sentence])[0]
    if explained.split() != own.split():
        f = find_failure(translator, sentence, explained, own)
    elif reference_pair(translator, sentence) is not None:
        f = find_failure(translator, sentence, None, own)
    else:
        return None
    body = H.table_html(["", "translation"],
                        [["the model", " ".join(f.output)],
                         [f"reference ({f.reference_from})", " ".join(f.reference)]])
    if f.wrong:
        src = f.source
        L = f.weights.shape[0]
        hl = [(li, i) for li in range(L) for i in f.should]
        body += H.heatmap_svg(
            f.weights, [f"layer {li}" for li in range(L)], src,
            title=f"cross-attention at step {f.step + 1}, reading "
                  f"{(['<bos>'] + f.written)[-1]} \u2192 writing {f.produced} (reference: "
                  f"{f.expected}); mean of heads",
            vmin=0, vmax=1, highlight=hl or None,
            highlight_label=f"should produce {f.expected!r} ({f.should_from})",
            row_axis="layer", col_axis="source word")
        Lh, Hh, S = f.head_weights.shape
        body += H.heatmap_svg(
            f.head_weights.reshape(Lh * Hh, S),
            [f"layer {li} head {h}" for li in range(Lh) for h in range(Hh)], src,
            title="the same step, head by head", vmin=0, vmax=1,
            highlight=[(li * Hh + h, i) for li in range(Lh) for h in range(Hh)
                       for i in f.should] or None,
            highlight_label=f"should produce {f.expected!r} ({f.should_from})",
            row_axis="head", col_axis="source word")
        body += H.table_html(["the model's top words at that step", "probability"],
                             [[w, p] for w, p in f.alternatives], number_format=".4f")
    rep.add_section("Where the translation goes wrong" if f.wrong
                    else "The translation against the reference", f.text, body, id="failure")
    return f
