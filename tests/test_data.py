"""Tests of pytransformer.data: the generated English-Spanish corpus, the TSV
format and the word-level vocabulary.

  * the seed sentences come out exactly, from hand-written plans and in train;
  * over thousands of generated pairs of both grammar versions, checked
    against oracles written here from the lexicon (not the generator's code):
    determiner and adjective agreement with the noun, adjectives after the
    noun in Spanish, alignments in range and complete (only UNALIGNED_TARGET
    unaligned), one relation per non-root token forming a tree, labels and
    POS tags from the documented sets;
  * splits: deterministic per seed, no source sentence in two splits, the
    held-out combinations (re-derived from tokens and relations) absent from
    train/valid/test/structural and present in every compositional pair;
  * TSV round trips, errors with line numbers, skip mode, atomic writes;
  * Vocab: ids, frequency order, unk, decode, JSON round trip; batch shapes and
    padding; the batch iterator's determinism, coverage and resume.
"""
import json
import os
import random

import numpy as np
import pytest
from hypothesis import given, strategies as st

from pytransformer.data import (BOS, EOS, LABELS, PAD, POS_TAGS, SEED_SENTENCES,
                                UNALIGNED_TARGET, UNK, CorpusError, Generator, Pair, Vocab, batch,
                                generate_pairs, iter_batches, lemma_counts, make_splits, plan,
                                read_tsv, seed_pairs, tokenize, validate_pair, write_tsv)
from pytransformer.data import lexicon as L

SIZES = dict(n_train=3000, n_valid=300, n_test=300, n_compositional=300)


@pytest.fixture(scope="module", params=[1, 2], ids=["grammar1", "grammar2"])
def grammar(request):
    return request.param


@pytest.fixture(scope="module")
def splits(grammar):
    return make_splits(seed=1, grammar=grammar, **SIZES)


@pytest.fixture(scope="module")
def sample_pairs(grammar):
    """Pairs straight from the generator, held-out combinations allowed."""
    return generate_pairs(4000, seed=7, allow_heldout=True, grammar=grammar)


def _all(splits):
    return splits.train + splits.valid + splits.test + splits.compositional + splits.structural


# ------------------------------------------------------------------ oracles from the lexicon

_EN_NOUN_NUM = {}                               # English noun form -> (noun, number)
for _n in L.NOUNS:
    _EN_NOUN_NUM[_n.en] = (_n, 0)
    _EN_NOUN_NUM.setdefault(_n.en_pl, (_n, 1))
_EN_NOUN = {}
for _n in L.NOUNS:
    _EN_NOUN[_n.en] = _n.en
    _EN_NOUN.setdefault(_n.en_pl, _n.en)
_EN_VERB = {}
for _v in L.VERBS:
    for _f in (_v.en, _v.en_3sg, _v.en_past):
        _EN_VERB[_f] = _v.en
_ES_PRON = {"yo": ("m", 0), "tú": ("m", 0), "él": ("m", 0), "ella": ("f", 0),
            "nosotros": ("m", 1), "vosotros": ("m", 1), "ellos": ("m", 1)}
# Spanish determiner forms by (gender, number); None = either gender.
_ES_DET = {"el": ("m", 0), "la": ("f", 0), "los": ("m", 1), "las": ("f", 1),
           "un": ("m", 0), "una": ("f", 0), "unos": ("m", 1), "unas": ("f", 1),
           "este": ("m", 0), "esta": ("f", 0), "estos": ("m", 1), "estas": ("f", 1),
           "nuestro": ("m", 0), "nuestra": ("f", 0), "nuestros": ("m", 1), "nuestras": ("f", 1),
           "muchos": ("m", 1), "muchas": ("f", 1), "al": ("m", 0), "del": ("m", 0),
           "mi": (None, 0), "tu": (None, 0), "su": (None, 0), "mis": (None, 1),
           "tus": (None, 1), "sus": (None, 1), "dos": (None, 1), "tres": (None, 1)}


def _tgt_of(pair, i):
    """The target tokens (index, word) aligned to source token i."""
    return [(j, pair.tgt[j]) for j in pair.align[i]]


def _check_adj_agrees(form, adj_en, gender, number):
    adj = next(a for a in L.ADJECTIVES if a.en == adj_en)
    assert form == adj.forms[2 * number + (gender == "f")], (form, adj_en, gender, number)
    if adj.forms[0].endswith("o"):                 # negro/negra/negros/negras
        assert form.endswith(("o", "a", "os", "as")[2 * number + (gender == "f")])


def _combos_from_tokens(pair):
    """(noun, adjective) and (verb, object noun) lemma combinations of a pair,
    read from its tokens and relations only."""
    out = set()
    subj_of = {h: d for d, h, lab in pair.deps if lab == "subj"}
    for d, h, lab in pair.deps:
        if lab == "adj":
            out.add(("na", _EN_NOUN[pair.src[h]], pair.src[d]))
        elif lab == "attr" and pair.src[subj_of[h]] in _EN_NOUN:
            out.add(("na", _EN_NOUN[pair.src[subj_of[h]]], pair.src[d]))
        elif lab == "obj":
            out.add(("vo", _EN_VERB[pair.src[h]], _EN_NOUN[pair.src[d]]))
        elif lab == "relcl" and d in subj_of:           # object relative: the noun is its object
            out.add(("vo", _EN_VERB[pair.src[d]], _EN_NOUN[pair.src[h]]))
    return out


# ------------------------------------------------------------------ lexicon

def test_lexicon_size_and_morphology():
    counts = lemma_counts()
    assert sum(counts.values()) >= 300
    assert counts["noun"] >= 150 and counts["adjective"] >= 50 and counts["verb"] >= 50
    assert L.spanish_plural("gato") == "gatos"
    assert L.spanish_plural("azul") == "azules"
    assert L.spanish_plural("ratón") == "ratones"
    assert L.spanish_plural("lápiz") == "lápices"
    beber = next(v for v in L.VERBS if v.es == "beber")
    assert beber.preterite[2] == "bebió" and beber.present[2] == "bebe"
    assert next(v for v in L.VERBS if v.es == "tocar").preterite[0] == "toqué"
    assert next(a for a in L.ADJECTIVES if a.en == "black").forms == (
        "negro", "negra", "negros", "negras")
    assert next(a for a in L.ADJECTIVES if a.en == "blue").forms == (
        "azul", "azul", "azules", "azules")
    for table in (L.NOUNS, L.ADJECTIVES, L.VERBS):
        assert len({x.en for x in table}) == len(table)      # one entry per lemma
    with pytest.raises(ValueError, match="word"):
        L.spanish_plural("")


# ------------------------------------------------------------------ the seed sentences and plans

def test_seed_sentences_exact(splits):
    got = [(p.source, p.target) for p in seed_pairs()]
    assert got == list(SEED_SENTENCES)
    train_sources = {p.source: p.target for p in splits.train}
    for src, tgt in SEED_SENTENCES:
        assert train_sources[src] == tgt
    for split in (splits.valid, splits.test, splits.compositional):
        assert not {p.source for p in split} & {s for s, _ in SEED_SENTENCES}


@pytest.mark.parametrize("kwargs, src, tgt", [
    (dict(kind="trans", subj="the cat", verb="drink", obj="milk", mood="q"),
     "does the cat drink milk ?", "¿ bebe el gato leche ?"),
    (dict(kind="trans", subj="the cat", verb="drink", obj="the milk", mood="neg"),
     "the cat does not drink the milk", "el gato no bebe la leche"),
    (dict(kind="cop_adj", subj="the cat", adj="black", rel=("drink", "the milk", False)),
     "the cat that drinks the milk is black", "el gato que bebe la leche es negro"),
    (dict(kind="go", subj="the dogs", verb="go", pp=("to", "the park"), past=True),
     "the dogs went to the park", "los perros fueron al parque"),
    (dict(kind="cop_loc", subj="the cat", pp=("in", "the house")),
     "the cat is in the house", "el gato está en la casa"),
    (dict(kind="cop_loc", subj="we", pp=("near", "the big park")),
     "we are near the big park", "nosotros estamos cerca del parque grande"),
    (dict(kind="cop_adj", subj="the balls", adj="blue", mood="q", past=True),
     "were the balls blue ?", "¿ eran las bolas azules ?"),
    (dict(kind="cop_adj", subj="she", adj="tired"), "she is tired", "ella está cansada"),
    (dict(kind="cop_adj", subj="the water", adj="cold", mood="neg"),
     "the water is not cold", "el agua no es fría"),
    (dict(kind="trans", subj="you all", verb="eat", obj="an apple", past=True),
     "you all ate an apple", "vosotros comisteis una manzana"),
    (dict(kind="trans", subj="i", verb="touch", obj="the ball", past=True),
     "i touched the ball", "yo toqué la bola"),
    (dict(kind="trans", subj="the woman", verb="make", obj="a cake"),
     "the woman makes a cake", "la mujer hace un pastel"),
])
def test_hand_written_plans(kwargs, src, tgt):
    pair = Generator().realize(plan(**kwargs))
    assert " ".join(pair[0]) == src
    assert " ".join(pair[1]) == tgt


def test_alignment_of_function_words():
    src, tgt, tal, deps, pos, root, _ = Generator().realize(
        plan("trans", "the cat", verb="drink", obj="milk", mood="neg", past=True))
    assert src == ["the", "cat", "did", "not", "drink", "milk"]
    assert tgt == ["el", "gato", "no", "bebió", "leche"]
    assert tal[2] == (3,) and set(tal[3]) == {2, 4}        # no <- not; bebió <- did + drink
    assert (2, 4, "aux") in deps and (3, 4, "neg") in deps and root == 4
    src, tgt, tal, *_ = Generator().realize(plan("go", "i", verb="go", pp=("to", "the park")))
    assert tgt[2] == "al" and set(tal[2]) == {2, 3}         # al <- to + the


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="fly", subj="the cat"), "kind"),
    (dict(kind="trans", subj="the cat", verb="drink"), "obj"),
    (dict(kind="cop_adj", subj="the cat", adj="blue", verb="drink"), "verb"),
    (dict(kind="trans", subj="the cat", verb="swim", obj="milk"), "intr"),
    (dict(kind="cop_adj", subj="the quux", adj="blue"), "noun 'quux'"),
    (dict(kind="cop_adj", subj="the cat", adj="blue", mood="maybe"), "mood"),
])
def test_plan_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plan(**kwargs)


# ------------------------------------------------------------------ generated pairs

def test_pairs_are_valid(sample_pairs):
    for p in sample_pairs:
        validate_pair(p)
        assert set(p.pos) <= POS_TAGS
        assert {lab for _, _, lab in p.deps} <= LABELS


def test_alignments_complete(sample_pairs):
    for p in sample_pairs:
        aligned = {j for js in p.align for j in js}
        assert all(js for js in p.align), p                      # every source token
        for j, w in enumerate(p.tgt):
            assert (j in aligned) == (w not in UNALIGNED_TARGET), (p, j)   # but "¿", "y"
        assert p.pharaoh().split() == [f"{i}-{j}" for i, j in p.links()]


def test_dependencies_form_a_tree(sample_pairs):
    for p in sample_pairs:
        head = {d: h for d, h, _ in p.deps}
        assert len(head) == len(p.src) - 1 and p.root not in head
        for i in range(len(p.src)):
            seen = set()
            while i != p.root:
                assert i not in seen, p
                seen.add(i)
                i = head[i]


def test_agreement_and_placement(sample_pairs):
    checked_det = checked_adj = checked_attr = 0
    for p in sample_pairs:
        for d, h, lab in p.deps:
            if lab not in ("det", "adj") or p.pos[h] != "NOUN":
                continue
            (nj, nform), = _tgt_of(p, h)
            noun, number = _EN_NOUN_NUM[p.src[h]]
            assert nform == (noun.es_pl if number else noun.es)        # number preserved
            if lab == "det":
                (dj, dform), = [t for t in _tgt_of(p, d)]
                gender, num = _ES_DET[dform]
                assert num == number, p
                if gender is not None and not (noun.el_fem and dform in ("el", "un")):
                    assert gender == noun.gender, p
                assert dj < nj
                checked_det += 1
            else:
                (aj, aform), = _tgt_of(p, d)
                _check_adj_agrees(aform, p.src[d], noun.gender, number)
                assert d < h and aj > nj, p                  # before in English, after in Spanish
                checked_adj += 1
        subj_of = {h: d for d, h, lab in p.deps if lab == "subj"}
        for d, h, lab in p.deps:
            if lab == "attr":
                (_, aform), = _tgt_of(p, d)
                s = subj_of[h]
                if p.pos[s] == "PRON":
                    (_, sform), = _tgt_of(p, s)
                    gender, number = _ES_PRON[sform]
                else:
                    noun, number = _EN_NOUN_NUM[p.src[s]]
                    gender = noun.gender
                _check_adj_agrees(aform, p.src[d], gender, number)
                checked_attr += 1
    assert checked_det > 1000 and checked_adj > 500 and checked_attr > 300


def test_questions_and_negation(sample_pairs):
    n_q = n_neg = 0
    for p in sample_pairs:
        if p.src[-1] == "?":
            n_q += 1
            assert p.tgt[0] == "¿" and p.tgt[-1] == "?" and p.src[0] in (
                "do", "does", "did", "am", "is", "are", "was", "were")
        if "not" in p.src:
            n_neg += 1
            assert [p.tgt[j] for j in p.align[p.src.index("not")]] == ["no"]
    assert n_q > 300 and n_neg > 300


def test_generation_deterministic():
    a = make_splits(seed=3, n_train=500, n_valid=50, n_test=50, n_compositional=50)
    b = make_splits(seed=3, n_train=500, n_valid=50, n_test=50, n_compositional=50)
    c = make_splits(seed=4, n_train=500, n_valid=50, n_test=50, n_compositional=50)
    assert a == b
    assert a.train != c.train and a.heldout_na != c.heldout_na
    assert generate_pairs(50, seed=5) == generate_pairs(50, seed=5) != generate_pairs(50, seed=6)
    # the evaluation splits do not depend on the size of train
    d = make_splits(seed=3, n_train=100, n_valid=50, n_test=50, n_compositional=50)
    assert (d.valid, d.test, d.compositional) == (a.valid, a.test, a.compositional)


def test_split_sizes_and_disjoint(splits):
    assert [len(x) for x in splits[:5]] == [3000, 300, 300, 300, 2000]
    sources = [p.source for p in _all(splits)]
    assert len(set(sources)) == len(sources)               # no source twice, across splits


def test_compositional_holdout(splits):
    assert splits.heldout_na and splits.heldout_vo
    held = {("na",) + c for c in splits.heldout_na} | {("vo",) + c for c in splits.heldout_vo}
    for p in _all(splits):
        assert _combos_from_tokens(p) == set(p.combos), p
    for p in splits.train + splits.valid + splits.test + splits.structural:
        assert not (p.combos & held), p
    for p in splits.compositional:
        assert p.combos & held, p
    # seed combinations are never held out
    assert ("cat", "black") not in splits.heldout_na
    assert ("drink", "milk") not in splits.heldout_vo


def test_make_splits_bad_arguments():
    with pytest.raises(ValueError, match="n_train"):
        make_splits(n_train=-1)
    with pytest.raises(ValueError, match="heldout_fraction"):
        make_splits(heldout_fraction=0.7)
    with pytest.raises(RuntimeError, match="distinct"):
        make_splits(n_train=0, n_valid=0, n_test=0, n_compositional=400,
                    heldout_fraction=0.0003)


# ------------------------------------------------------------------ TSV

def test_tsv_round_trip(tmp_path, splits):
    pairs = splits.test[:50] + [Pair(("hello", "world"), ("hola", "mundo"))]
    path = tmp_path / "c.tsv"
    write_tsv(pairs, path)
    back = read_tsv(path)
    assert [(p.src, p.tgt, p.align) for p in back] == [(p.src, p.tgt, p.align) for p in pairs]
    assert back[-1].align is None
    first = path.read_text(encoding="utf-8").splitlines()[0].split("\t")
    assert first == [pairs[0].source, pairs[0].target, pairs[0].pharaoh()]


@given(st.lists(st.tuples(
    st.lists(st.text(st.characters(blacklist_categories=("Cs", "Z", "Cc")), min_size=1,
                     max_size=5), min_size=1, max_size=6),
    st.lists(st.text(st.characters(blacklist_categories=("Cs", "Z", "Cc")), min_size=1,
                     max_size=5), min_size=1, max_size=6)), max_size=5), st.data())
def test_tsv_round_trip_random(tmp_path_factory, rows, data):
    pairs = []
    for s, t in rows:
        links = data.draw(st.lists(st.tuples(st.integers(0, len(s) - 1),
                                             st.integers(0, len(t) - 1)), max_size=6))
        align = tuple(tuple(sorted({j for i2, j in links if i2 == i})) for i in range(len(s)))
        pairs.append(Pair(tuple(s), tuple(t), align))
    path = tmp_path_factory.mktemp("tsv") / "r.tsv"
    write_tsv(pairs, path)
    assert [(p.src, p.tgt, p.align) for p in read_tsv(path)] == \
        [(p.src, p.tgt, p.align) for p in pairs]


@pytest.mark.parametrize("line, match", [
    ("only one field", "2 or 3 tab-separated fields"),
    ("a\tb\t0-0\textra", "got 4"),
    ("\tla bola", "empty source"),
    ("the ball\t  ", "empty target"),
    ("the ball\tla bola\t0-0 1-x", "not of the form i-j"),
    ("the ball\tla bola\t2-0", "source index 2 out of range"),
    ("the ball\tla bola\t0-5", "target index 5 out of range"),
])
def test_tsv_malformed_lines(tmp_path, line, match):
    path = tmp_path / "bad.tsv"
    path.write_text("the cat\tel gato\t0-0 1-1\n\n" + line + "\nthe dog\tel perro\n",
                    encoding="utf-8")
    with pytest.raises(CorpusError, match=match) as err:
        read_tsv(path)
    assert err.value.lineno == 3 and f"bad.tsv:3:" in str(err.value)
    with pytest.warns(UserWarning, match="skipped 1 malformed line.*line 3"):
        pairs = read_tsv(path, on_error="skip")
    assert [p.source for p in pairs] == ["the cat", "the dog"]


def test_tsv_invalid_utf8_and_arguments(tmp_path):
    path = tmp_path / "u.tsv"
    path.write_bytes(b"a\tb\n\xff\xfe\tx\n")
    with pytest.raises(CorpusError, match="u.tsv:2: not valid UTF-8"):
        read_tsv(path)
    with pytest.raises(ValueError, match="on_error"):
        read_tsv(path, on_error="ignore")


def test_tsv_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "c.tsv"
    write_tsv([(["a"], ["b"])], path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"pairs\[1\].*empty target"):
        write_tsv([(["x"], ["y"]), (["x"], [])], path)
    with pytest.raises(ValueError, match="whitespace"):
        write_tsv([(["x y"], ["y"])], path)
    with pytest.raises(ValueError, match="out of range"):
        write_tsv([Pair(("a",), ("b",), ((3,),))], path)

    def boom(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_tsv([(["x"], ["y"])], path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.tsv"]              # no temporary file left


# ------------------------------------------------------------------ Vocab and batches

def test_tokenize():
    assert tokenize("Does the Cat drink milk?") == ["does", "the", "cat", "drink", "milk", "?"]
    assert tokenize("¿Bebe el gato leche?") == ["¿", "bebe", "el", "gato", "leche", "?"]
    assert tokenize("  ") == []
    with pytest.raises(TypeError, match="str"):
        tokenize(["a"])


def test_vocab_ids_and_order():
    v = Vocab.build([["b", "a", "c"], ["a", "c"], ["a", "d"]], min_freq=1)
    assert (PAD, BOS, EOS, UNK) == (0, 1, 2, 3)
    assert v.tokens == ["<pad>", "<bos>", "<eos>", "<unk>", "a", "c", "b", "d"]
    assert len(v) == 8 and "a" in v and "z" not in v
    assert Vocab.build([["b", "a", "c"], ["a", "c"]], min_freq=2).tokens[4:] == ["a", "c"]
    assert Vocab.build([["b", "a", "c"], ["a", "c"]], max_size=1).tokens[4:] == ["a"]
    with pytest.raises(ValueError, match="min_freq"):
        Vocab.build([["a"]], min_freq=0)
    with pytest.raises(ValueError, match="repeated"):
        Vocab(["a", "a"])
    with pytest.raises(TypeError, match="str"):
        Vocab.build(["the cat"])


def test_vocab_encode_decode_unknown(splits):
    v = Vocab.build(p.tgt for p in splits.train)
    for p in splits.test[:100]:
        ids = v.encode(p.tgt, add_bos=True, add_eos=True)
        assert ids[0] == BOS and ids[-1] == EOS
        known = [t if t in v else "<unk>" for t in p.tgt]
        assert v.decode(ids) == known
        assert v.decode(np.array(ids + [PAD, PAD])) == known
    assert v.encode(["la", "zzz"]) == [v.token_to_id("la"), UNK]
    assert v.decode([BOS, v.token_to_id("la"), PAD, EOS, v.token_to_id("bola")]) == ["la"]
    assert v.unknown(["la", "zzz", "qq", "zzz"]) == ["zzz", "qq"]
    with pytest.raises(ValueError, match="out of range"):
        v.decode([len(v)])
    with pytest.raises(ValueError, match="1-d"):
        v.decode(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(TypeError, match="str"):
        v.encode("la bola")


def test_vocab_dict_round_trip(splits):
    v = Vocab.build(p.src for p in splits.train)
    d = json.loads(json.dumps(v.to_dict()))
    w = Vocab.from_dict(d)
    assert w == v and w.tokens == v.tokens
    for bad in ({}, {"format": "x"}, dict(d, specials=["<pad>"]), dict(d, tokens="abc")):
        with pytest.raises(ValueError, match="from_dict"):
            Vocab.from_dict(bad)


def test_batch_shapes_and_padding(splits):
    sv = Vocab.build(p.src for p in splits.train)
    tv = Vocab.build(p.tgt for p in splits.train)
    pairs = splits.train[:7]
    src, tgt_in, tgt_out = batch(pairs, sv, tv)
    assert src.dtype == tgt_in.dtype == tgt_out.dtype == np.int64
    assert src.shape == (7, max(len(p.src) for p in pairs) + 1)
    assert tgt_in.shape == tgt_out.shape == (7, max(len(p.tgt) for p in pairs) + 1)
    for b, p in enumerate(pairs):
        n, m = len(p.src), len(p.tgt)
        assert src[b, n] == EOS and (src[b, n + 1:] == PAD).all()
        assert sv.decode(src[b]) == list(p.src)
        assert tgt_in[b, 0] == BOS and (tgt_in[b, 1:m + 1] == tgt_out[b, :m]).all()
        assert tgt_out[b, m] == EOS and (tgt_out[b, m + 1:] == PAD).all()
        assert (tgt_in[b, m + 1:] == PAD).all()
        assert tv.decode(tgt_out[b]) == list(p.tgt)
    src2, _, _ = batch([(p.src, p.tgt) for p in pairs], sv, tv, src_eos=False)
    assert src2.shape[1] == src.shape[1] - 1
    with pytest.raises(ValueError, match="max_len=3"):
        batch(pairs, sv, tv, max_len=3)
    with pytest.raises(ValueError, match="empty"):
        batch([], sv, tv)


def test_iter_batches_deterministic_and_resumable(splits):
    pairs = splits.valid[:103]
    sv = Vocab.build(p.src for p in pairs)
    tv = Vocab.build(p.tgt for p in pairs)

    def run(**kw):
        return [b[0] for b in iter_batches(pairs, sv, tv, 10, seed=2, **kw)]
    a, b = run(epoch=0), run(epoch=0)
    assert len(a) == 11 and all((x == y).all() for x, y in zip(a, b))
    c = run(epoch=1)
    assert any(x.shape != y.shape or (x != y).any() for x, y in zip(a, c))
    resumed = run(epoch=0, start=4)
    assert len(resumed) == 7 and all((x == y).all() for x, y in zip(a[4:], resumed))
    assert len(run(epoch=0, drop_last=True)) == 10
    seen = sorted(tuple(sv.decode(row)) for x in a for row in x)
    assert seen == sorted(p.src for p in pairs)             # each pair exactly once
    unshuffled = run(shuffle=False)
    assert sv.decode(unshuffled[0][0]) == list(pairs[0].src)
    with pytest.raises(ValueError, match="batch_size"):
        next(iter_batches(pairs, sv, tv, 0))


def test_validate_pair_rejects():
    good = seed_pairs()[0]
    validate_pair(good)
    for bad, match in [
        (good._replace(tgt=()), "empty target"),
        (good._replace(align=good.align[:2]), "entries"),
        (good._replace(deps=good.deps[:1]), "relations cover"),
        (good._replace(deps=((0, 1, "det"), (1, 2, "subj"), (3, 3, "attr"))), "head"),
        (good._replace(deps=((0, 1, "det"), (1, 2, "nsubj"), (3, 2, "attr"))), "label"),
        (good._replace(pos=("DET", "NOUN", "AUX", "X")), "pos"),
    ]:
        with pytest.raises(ValueError, match=match):
            validate_pair(bad)


def test_generator_rejects_exhausting_holdout():
    n_adj = [a for n, a in __import__("pytransformer.data.grammar",
                                      fromlist=["x"]).valid_noun_adjective() if n == 0]
    with pytest.raises(ValueError, match="no combination"):
        Generator(heldout_na={(0, a) for a in n_adj})
    rng = random.Random(0)
    g = Generator()
    assert g.sample(rng) != g.sample(rng)
