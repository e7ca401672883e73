"""Sentence pairs, the generated splits, and the TSV corpus format.

A corpus file holds one pair per line::

    source<TAB>target[<TAB>alignments]

Source and target are whitespace-separated tokens (the generated corpus is
lower-case with punctuation as separate tokens: see
:func:`pytransformer.data.vocab.tokenize` for raw text). The optional third
column holds word alignments in Pharaoh format, 0-based "i-j" pairs (source
token i is aligned to target token j) separated by spaces; an empty third
column means "no token aligned". Blank lines are skipped. Any other malformed
line raises CorpusError naming the file and the line number, or, with
``on_error="skip"``, is skipped and counted in one warning.
"""
import os
import random
import warnings
from typing import NamedTuple, Optional

from pytransformer._atomic import atomic_write

from .grammar import (GRAMMAR, LABELS, POS_TAGS, STRUCTURES, UNALIGNED_TARGET, Generator, plan,
                      structures, valid_noun_adjective, valid_verb_object)
from .lexicon import ADJECTIVES, NOUNS, VERBS

__all__ = ["Pair", "Splits", "CorpusError", "make_splits", "generate_pairs", "seed_pairs",
           "read_tsv", "write_tsv", "validate_pair", "parse_pharaoh", "LABELS", "POS_TAGS",
           "UNALIGNED_TARGET", "SEED_SENTENCES", "STRUCTURES", "HELDOUT_STRUCTURES"]

# The sentences the library is demonstrated on; always produced exactly.
SEED_SENTENCES = (("the ball is blue", "la bola es azul"),
                  ("the black cat drank the milk", "el gato negro bebió la leche"))
_SEED_PLANS = (
    dict(kind="cop_adj", subj="the ball", adj="blue"),
    dict(kind="trans", subj="the black cat", verb="drink", obj="the milk", past=True),
)


# The structure combinations of the structural split (names from STRUCTURES):
# no train, valid, test or compositional sentence uses every structure of one
# of them, while each structure occurs there on its own and with the others.
HELDOUT_STRUCTURES = (
    frozenset({"objrel", "q"}),        # an object relative inside a question
    frozenset({"adj2", "pp2"}),        # two adjectives and a chained phrase
    frozenset({"pers", "negq"}),       # a person object in a negated question
    frozenset({"pp2", "q"}),           # a chained phrase inside a question
)


class CorpusError(ValueError):
    """A malformed corpus line; `path` and `lineno` (1-based) say where."""

    def __init__(self, message, path=None, lineno=None):
        where = f"{path}:{lineno}: " if path is not None else ""
        super().__init__(where + message)
        self.path, self.lineno = path, lineno


class Pair(NamedTuple):
    """One sentence pair.

    src, tgt: tuples of tokens. align: per source token, the sorted tuple of
    target indices it is aligned to (None when unknown). deps: source
    dependency relations (dependent, head, label), one per token except the
    root; pos: source POS tags; root: index of the source root (these three
    are None for pairs read from a file). combos: the ('na', noun, adjective)
    and ('vo', verb, noun) lemma combinations of a generated pair;
    structures: the names of the structures it uses (see
    :func:`pytransformer.data.grammar.structures`).
    """
    src: tuple
    tgt: tuple
    align: Optional[tuple] = None
    deps: Optional[tuple] = None
    pos: Optional[tuple] = None
    root: Optional[int] = None
    combos: frozenset = frozenset()
    structures: frozenset = frozenset()

    @property
    def source(self):
        """The source sentence as one space-separated string."""
        return " ".join(self.src)

    @property
    def target(self):
        """The target sentence as one space-separated string."""
        return " ".join(self.tgt)

    def pharaoh(self):
        """The alignments as Pharaoh "i-j" pairs, sorted, space-separated."""
        if self.align is None:
            raise ValueError("pharaoh: this pair has no alignments (align is None)")
        return " ".join(f"{i}-{j}" for i, js in enumerate(self.align) for j in js)

    def links(self):
        """The alignments as a sorted list of (source index, target index)."""
        if self.align is None:
            raise ValueError("links: this pair has no alignments (align is None)")
        return [(i, j) for i, js in enumerate(self.align) for j in js]


class Splits(NamedTuple):
    """The generated corpus: lists of Pair per split, the held-out lemma
    combinations ((noun, adjective) and (verb, object noun), English lemmas)
    that occur only in `compositional`, and the held-out structure
    combinations (frozensets of structure names) that occur only in
    `structural`; grammar: the grammar version of train, valid, test and
    compositional (`structural` always uses version 2)."""
    train: list
    valid: list
    test: list
    compositional: list
    structural: list
    heldout_na: frozenset
    heldout_vo: frozenset
    heldout_structures: frozenset
    grammar: int = GRAMMAR


def parse_pharaoh(text, n_src, n_tgt):
    """Parse Pharaoh alignments ("0-0 1-2") into a per-source-token tuple of
    sorted target-index tuples; ValueError if malformed or out of range."""
    align = [set() for _ in range(n_src)]
    for item in text.split():
        i, sep, j = item.partition("-")
        if not sep or not i.isdigit() or not j.isdigit():
            raise ValueError(f"alignment {item!r} is not of the form i-j with 0-based "
                             f"integers")
        i, j = int(i), int(j)
        if i >= n_src:
            raise ValueError(f"alignment {item!r}: source index {i} out of range for "
                             f"{n_src} source tokens")
        if j >= n_tgt:
            raise ValueError(f"alignment {item!r}: target index {j} out of range for "
                             f"{n_tgt} target tokens")
        align[i].add(j)
    return tuple(tuple(sorted(a)) for a in align)


def validate_pair(pair):
    """Check a Pair's invariants; raise ValueError saying which one fails.

    Non-empty sides of tokens without whitespace; alignment indices in range;
    when deps are given: one relation per non-root token, heads in range and
    not the token itself, labels in LABELS, and POS tags in POS_TAGS.
    """
    if not pair.src or not pair.tgt:
        raise ValueError(f"pair has an empty {'source' if not pair.src else 'target'}")
    for side, toks in (("source", pair.src), ("target", pair.tgt)):
        for t in toks:
            if not isinstance(t, str) or not t or t != "".join(t.split()):
                raise ValueError(f"{side} token {t!r} is empty or contains whitespace")
    n, m = len(pair.src), len(pair.tgt)
    if pair.align is not None:
        if len(pair.align) != n:
            raise ValueError(f"align has {len(pair.align)} entries for {n} source tokens")
        for i, js in enumerate(pair.align):
            for j in js:
                if not 0 <= j < m:
                    raise ValueError(f"source token {i} aligned to target index {j}, "
                                     f"out of range for {m} target tokens")
    if pair.deps is not None:
        if pair.root is None or not 0 <= pair.root < n:
            raise ValueError(f"root {pair.root!r} out of range for {n} source tokens")
        deps_of = sorted(d for d, _, _ in pair.deps)
        if deps_of != sorted(set(range(n)) - {pair.root}):
            raise ValueError(f"relations cover dependents {deps_of}, expected every token "
                             f"but the root {pair.root} of {n}")
        for d, h, label in pair.deps:
            if not 0 <= h < n or h == d:
                raise ValueError(f"relation ({d}, {h}, {label!r}): head out of range or "
                                 f"the dependent itself")
            if label not in LABELS:
                raise ValueError(f"relation ({d}, {h}, {label!r}): label not in {sorted(LABELS)}")
    if pair.pos is not None:
        if len(pair.pos) != n or not set(pair.pos) <= POS_TAGS:
            raise ValueError(f"pos {pair.pos!r} must be {n} tags from {sorted(POS_TAGS)}")


# ------------------------------------------------------------------ generation

_NOUN_EN = tuple(n.en for n in NOUNS)
_ADJ_EN = tuple(a.en for a in ADJECTIVES)
_VERB_EN = tuple(v.en for v in VERBS)


def _to_pair(raw, structures=frozenset()):
    src, tgt, tal, deps, pos, root, combos = raw
    align = [[] for _ in src]
    for j, srcs in enumerate(tal):
        for i in srcs:
            align[i].append(j)
    named = frozenset(("na", _NOUN_EN[a], _ADJ_EN[b]) if kind == "na" else
                      ("vo", _VERB_EN[a], _NOUN_EN[b]) for kind, a, b in combos)
    return Pair(tuple(src), tuple(tgt), tuple(tuple(sorted(a)) for a in align),
                tuple(sorted(deps)), tuple(pos), root, named, frozenset(structures))


def seed_pairs():
    """The pairs of SEED_SENTENCES, produced by the grammar from hand-written plans."""
    g = Generator()
    plans = [plan(**p) for p in _SEED_PLANS]
    return [_to_pair(g.realize(p), structures(p)) for p in plans]


def generate_pairs(n, seed=0, allow_heldout=False, generator=None, grammar=GRAMMAR):
    """A list of `n` generated Pairs (duplicates possible) from
    random.Random(seed), sampled by `generator` (default: a Generator of
    version `grammar` with nothing held out); allow_heldout lets held-out
    combinations through. ValueError unless n is an int >= 0."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"generate_pairs: n must be an int >= 0, got {n!r}")
    g = generator or Generator(grammar=grammar)
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        chosen = g.choose(rng, allow_heldout)
        out.append(_to_pair(g.realize(chosen), structures(chosen)))
    return out


def _choose_heldout(candidates, fraction, rng, protected, key_index):
    """A random `fraction` of `candidates`, never a protected pair, keeping at
    least half of each key's (candidate[key_index]) combinations."""
    total, left = {}, {}
    for c in candidates:
        total[c[key_index]] = total.get(c[key_index], 0) + 1
    left.update(total)
    shuffled = sorted(candidates)
    rng.shuffle(shuffled)
    want = round(fraction * len(candidates))
    chosen = set()
    for c in shuffled:
        if len(chosen) >= want:
            break
        k = c[key_index]
        if c in protected or 2 * (left[k] - 1) < total[k]:
            continue
        chosen.add(c)
        left[k] -= 1
    return frozenset(chosen)


def _fill(out, n, rng, g, seen, split):
    """Draw distinct pairs of `split` into `out` until it holds n: held-out
    lemma combinations required in 'compositional', held-out structure
    combinations required in 'structural', both excluded elsewhere."""
    comp, struct = split == "compositional", split == "structural"
    combos = sorted(g.heldout_structures, key=sorted)
    limit = 50 * n + 10_000
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > limit:
            raise RuntimeError(f"make_splits: could only draw {len(out)} distinct {split} "
                               f"pairs of the {n} asked for after {limit} tries; ask for "
                               f"fewer")
        want = rng.choice(combos) if struct else frozenset()
        chosen = g.choose(rng, comp, want)
        if comp and not g.uses_heldout(chosen):
            continue
        used = structures(chosen)
        if not struct and g.uses_heldout_structure(chosen, used):
            continue
        raw = g.realize(chosen)
        key = " ".join(raw[0])
        if key in seen:
            continue
        seen.add(key)
        out.append(_to_pair(raw, used))


def make_splits(seed=0, n_train=100_000, n_valid=2000, n_test=2000, n_compositional=2000,
                heldout_fraction=0.1, include_seed_pairs=True, n_structural=2000,
                grammar=GRAMMAR):
    """Generate the corpus splits from one seed.

    A fraction `heldout_fraction` of the valid (noun, adjective) and (verb,
    object noun) lemma combinations, drawn from the seed, is held out: no pair
    of train/valid/test/structural uses one, and every pair of
    `compositional` uses at least one. The structure combinations of
    HELDOUT_STRUCTURES are held out the same way: every pair of `structural`
    uses all the structures of at least one of them, no other pair does
    (each structure alone still occurs in train). No source sentence occurs
    twice in the whole corpus (so no test pair is in train). The evaluation
    splits are drawn first, from their own streams, so they do not depend on
    n_train. With `include_seed_pairs`, the SEED_SENTENCES pairs are part of
    train (and of no other split). `grammar` is the version of train, valid,
    test and compositional (see pytransformer.data.grammar.GRAMMARS; the
    default is the corpus of the shipped translator); `structural` is always
    drawn from version 2, whose structures it combines.
    """
    for name, val in (("n_train", n_train), ("n_valid", n_valid), ("n_test", n_test),
                      ("n_compositional", n_compositional), ("n_structural", n_structural)):
        if not isinstance(val, int) or isinstance(val, bool) or val < 0:
            raise ValueError(f"make_splits: {name} must be an int >= 0, got {val!r}")
    if not 0.0 <= heldout_fraction < 0.5:
        raise ValueError(f"make_splits: heldout_fraction must be in [0, 0.5), got "
                         f"{heldout_fraction!r}")
    seeds = seed_pairs()
    protected_na = {(n, a) for p in seeds for kind, x, y in p.combos if kind == "na"
                    for n, a in [(_noun_index(x), _adj_index(y))]}
    protected_vo = {(v, n) for p in seeds for kind, x, y in p.combos if kind == "vo"
                    for v, n in [(_verb_index(x), _noun_index(y))]}
    hrng = random.Random(f"{seed}:heldout")
    heldout_na = _choose_heldout(valid_noun_adjective(), heldout_fraction, hrng, protected_na, 0)
    heldout_vo = _choose_heldout(valid_verb_object(grammar), heldout_fraction, hrng,
                                 protected_vo, 0)
    g = Generator(heldout_na, heldout_vo, HELDOUT_STRUCTURES, grammar)
    g2 = g if grammar >= 2 else Generator(heldout_na, heldout_vo, HELDOUT_STRUCTURES, 2)
    seen = set()
    if include_seed_pairs:
        seen.update(p.source for p in seeds)
    splits = {}
    for split, n in (("compositional", n_compositional), ("structural", n_structural),
                     ("test", n_test), ("valid", n_valid), ("train", n_train)):
        out = []
        if split == "train" and include_seed_pairs:
            out.extend(seeds[:n])
        if split == "compositional" and not heldout_na and not heldout_vo and n:
            raise ValueError("make_splits: heldout_fraction is too small to hold out any "
                             "combination, so the compositional split cannot be drawn")
        _fill(out, n, random.Random(f"{seed}:{split}"), g2 if split == "structural" else g,
              seen, split)
        splits[split] = out
    return Splits(splits["train"], splits["valid"], splits["test"], splits["compositional"],
                  splits["structural"],
                  frozenset((NOUNS[n].en, ADJECTIVES[a].en) for n, a in heldout_na),
                  frozenset((VERBS[v].en, NOUNS[n].en) for v, n in heldout_vo),
                  frozenset(HELDOUT_STRUCTURES), grammar)


def _noun_index(en):
    return next(i for i, n in enumerate(NOUNS) if n.en == en)


def _adj_index(en):
    return next(i for i, a in enumerate(ADJECTIVES) if a.en == en)


def _verb_index(en):
    return next(i for i, v in enumerate(VERBS) if v.en == en)


# ------------------------------------------------------------------ TSV

def write_tsv(pairs, path):
    """Write pairs as `source<TAB>target[<TAB>alignments]` lines (UTF-8),
    atomically: a temporary file in the same directory, fsync'd, then
    os.replace; on any error the previous file is left untouched. The
    alignment column is written for pairs whose `align` is not None. Each
    pair is a Pair or a (src tokens, tgt tokens) tuple."""
    lines = []
    for k, p in enumerate(pairs):
        if not isinstance(p, Pair):
            if not isinstance(p, (tuple, list)) or len(p) != 2:
                raise ValueError(f"write_tsv: pairs[{k}] must be a Pair or a (src, tgt) "
                                 f"tuple, got {type(p).__name__}")
            p = Pair(tuple(p[0]), tuple(p[1]))
        try:
            validate_pair(Pair(p.src, p.tgt, p.align))
        except ValueError as e:
            raise ValueError(f"write_tsv: pairs[{k}]: {e}") from None
        line = p.source + "\t" + p.target
        if p.align is not None:
            line += "\t" + p.pharaoh()
        lines.append(line + "\n")
    atomic_write(path, ["".join(lines).encode("utf-8")])


def read_tsv(path, on_error="raise"):
    """Read a corpus file written by write_tsv or by hand; returns a list of Pair.

    on_error="raise" (default): the first malformed line raises CorpusError
    with the file and 1-based line number (wrong number of fields, an empty
    side, a bad or out-of-range alignment, invalid UTF-8). on_error="skip":
    malformed lines are skipped and reported in one warning with their count
    and the first line number. Blank lines are always skipped.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"read_tsv: on_error must be 'raise' or 'skip', got {on_error!r}")
    path = os.fspath(path)
    pairs, bad = [], []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                pair = _parse_line(raw)
            except CorpusError as e:
                if on_error == "raise":
                    raise CorpusError(str(e), path, lineno) from None
                bad.append((lineno, str(e)))
                continue
            if pair is not None:
                pairs.append(pair)
    if bad:
        warnings.warn(f"read_tsv: {path}: skipped {len(bad)} malformed line(s); first at "
                      f"line {bad[0][0]}: {bad[0][1]}", stacklevel=2)
    return pairs


def _parse_line(raw):
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
    line = line.rstrip("\r\n")
    if not line.strip():
        return None
    fields = line.split("\t")
    if len(fields) not in (2, 3):
        raise CorpusError(f"expected 2 or 3 tab-separated fields (source, target, "
                          f"[alignments]), got {len(fields)}")
    src, tgt = tuple(fields[0].split()), tuple(fields[1].split())
    if not src:
        raise CorpusError("empty source side")
    if not tgt:
        raise CorpusError("empty target side")
    align = None
    if len(fields) == 3:
        try:
            align = parse_pharaoh(fields[2], len(src), len(tgt))
        except ValueError as e:
            raise CorpusError(str(e)) from None
    return Pair(src, tgt, align)
