"""Tests of the grammar's structures and of the structural split.

  * exact English and Spanish of hand-planned sentences for each structure:
    two adjectives, relative clauses in questions, object relatives, chained
    prepositional phrases, negated questions, the personal "a";
  * over thousands of generated pairs, checked against oracles written here
    from tokens, relations and the lexicon: two adjectives agree with their
    noun in gender and number, follow it joined by "y"/"e", in English
    order; the personal "a" stands before person objects and nowhere else;
    every pair's recorded structures are those its tokens show;
  * the structural split: every pair uses a held-out structure combination,
    no other split does, train holds each structure on its own; the splits
    stay disjoint and deterministic; `evaluate --splits structural` runs;
  * grammar 1 reproduces, sentence for sentence, the corpus the shipped
    translator was trained on;
  * realize is split into one short function per structure.
"""
import ast
import hashlib
import inspect
import random
import textwrap

import pytest

from pytransformer.data import (HELDOUT_STRUCTURES, STRUCTURES, Generator, generate_pairs,
                                make_splits, plan, structures)
from pytransformer.data import grammar as G
from pytransformer.data import lexicon as L

SIZES = dict(n_train=4000, n_valid=200, n_test=200, n_compositional=200, n_structural=400,
             grammar=2)

_NOUN = {}                                      # English noun form -> (Noun, number)
for _n in L.NOUNS:
    _NOUN[_n.en] = (_n, 0)
    _NOUN.setdefault(_n.en_pl, (_n, 1))
_ADJ = {a.en: a for a in L.ADJECTIVES}
_PERSON_FORMS = {f for n in L.NOUNS if n.cls == "person" for f in (n.en, n.en_pl)}


@pytest.fixture(scope="module")
def splits():
    return make_splits(seed=2, **SIZES)


@pytest.fixture(scope="module")
def sample_pairs():
    return generate_pairs(6000, seed=11, allow_heldout=True, grammar=2)


def _say(**kwargs):
    src, tgt, *_ = Generator().realize(plan(**kwargs))
    return " ".join(src), " ".join(tgt)


# ------------------------------------------------------------------ exact sentences

@pytest.mark.parametrize("kwargs, src, tgt, names", [
    # two adjectives: English order classes, Spanish after the noun joined by "y"
    (dict(kind="cop_adj", subj="the small black dog", adj="happy"),
     "the small black dog is happy", "el perro pequeño y negro es feliz", {"adj2"}),
    (dict(kind="trans", subj="the girls", verb="see", obj="the big white houses", past=True),
     "the girls saw the big white houses", "las niñas vieron las casas grandes y blancas",
     {"adj2"}),
    (dict(kind="cop_adj", subj="the friendly smart girl", adj="tired"),
     "the friendly smart girl is tired", "la niña simpática e inteligente está cansada",
     {"adj2"}),
    # relative clauses inside questions
    (dict(kind="intr", subj="the cat that drinks milk", verb="sleep", mood="q"),
     "does the cat that drinks milk sleep ?", "¿ duerme el gato que bebe leche ?", {"rel", "q"}),
    (dict(kind="cop_adj", subj="the dogs that ate the bread", adj="tired", mood="q", past=True),
     "were the dogs that ate the bread tired ?",
     "¿ estaban los perros que comieron el pan cansados ?", {"rel", "q"}),
    # object relatives
    (dict(kind="cop_loc", subj="the bread that the dog left", pp=("on", "the table"),
          past=True),
     "the bread that the dog left was on the table",
     "el pan que el perro dejó estaba sobre la mesa", {"objrel"}),
    (dict(kind="trans", subj="the cat", verb="eat", obj="the cake that the women made"),
     "the cat eats the cake that the women made", "el gato come el pastel que las mujeres hicieron",
     {"objrel"}),
    (dict(kind="cop_adj", subj="the girl that the boy saw", adj="happy"),
     "the girl that the boy saw is happy", "la niña que el niño vio es feliz", {"objrel"}),
    # chained prepositional phrases
    (dict(kind="cop_loc", subj="the cat", pp=("in", "the box under the table")),
     "the cat is in the box under the table", "el gato está en la caja debajo de la mesa",
     {"pp2"}),
    (dict(kind="go", subj="we", verb="go", pp=("to", "the house near the park"), past=True),
     "we went to the house near the park", "nosotros fuimos a la casa cerca del parque",
     {"pp2"}),
    # negated questions
    (dict(kind="cop_adj", subj="the ball", adj="blue", mood="negq"),
     "is the ball not blue ?", "¿ no es la bola azul ?", {"q", "neg", "negq"}),
    (dict(kind="trans", subj="the cat", verb="drink", obj="milk", mood="negq", past=True),
     "did the cat not drink milk ?", "¿ no bebió el gato leche ?", {"q", "neg", "negq"}),
    # the personal "a", also contracted and inside a relative clause
    (dict(kind="trans", subj="the boy", verb="see", obj="the girl"),
     "the boy sees the girl", "el niño ve a la niña", {"pers"}),
    (dict(kind="trans", subj="she", verb="visit", obj="the old king", past=True),
     "she visited the old king", "ella visitó al rey viejo", {"pers"}),
    (dict(kind="intr", subj="the man that hugs the girls", verb="sing"),
     "the man that hugs the girls sings", "el hombre que abraza a las niñas canta",
     {"rel", "pers"}),
    (dict(kind="trans", subj="the boy", verb="see", obj="the ball"),
     "the boy sees the ball", "el niño ve la bola", set()),
])
def test_structures_exact(kwargs, src, tgt, names):
    assert _say(**kwargs) == (src, tgt)
    assert structures(plan(**kwargs)) == frozenset(names)


def test_alignment_of_the_new_function_words():
    src, tgt, tal, deps, pos, root, _ = Generator().realize(
        plan("trans", "she", verb="visit", obj="the small black king", mood="negq", past=True))
    assert src == ["did", "she", "not", "visit", "the", "small", "black", "king", "?"]
    assert tgt == ["¿", "no", "visitó", "ella", "al", "rey", "pequeño", "y", "negro", "?"]
    assert tal[1] == (2,) and set(tal[2]) == {0, 3}           # no <- not; visitó <- did + visit
    assert set(tal[4]) == {3, 4}                              # al <- visit (personal a) + the
    assert tal[0] == () and tal[7] == ()                      # ¿ and y: no English word
    assert tal[6] == (5,) and tal[8] == (6,)
    assert {(2, 3, "neg"), (0, 3, "aux"), (5, 7, "adj"), (6, 7, "adj"), (7, 3, "obj")} <= set(deps)
    src, tgt, tal, deps, *_ = Generator().realize(
        plan("cop_loc", "the bread that the dog left", pp=("in", "the box under the table")))
    assert src[:6] == ["the", "bread", "that", "the", "dog", "left"]
    assert {(2, 5, "rel"), (4, 5, "subj"), (5, 1, "relcl")} <= set(deps)
    box, table = src.index("box"), src.index("table")
    assert (table, box, "nmod") in deps and (box, 6, "obl") in deps


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="cop_adj", subj="the big small black cat", adj="happy"), "more than two"),
    (dict(kind="cop_adj", subj="the cat that the dog", adj="happy"), "ends too early"),
    (dict(kind="cop_adj", subj="the cat that quux", adj="happy"), "verb form 'quux'"),
    (dict(kind="cop_adj", subj="the cat the", adj="happy"), "noun phrase"),
    (dict(kind="cop_adj", subj="the cat that drinks milk", adj="happy",
          rel=("drink", "milk", False)), "rel needs"),
    (dict(kind="cop_adj", subj="the cat", adj="blue", mood="negative"), "mood"),
])
def test_plan_rejects_bad_clauses(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plan(**kwargs)


def test_generator_rejects_unknown_structures():
    with pytest.raises(ValueError, match="structure"):
        Generator(heldout_structures=[{"q", "passive"}])
    with pytest.raises(ValueError, match="passive"):
        Generator(grammar=2).choose(random.Random(0), want={"passive"})
    with pytest.raises(ValueError, match="grammar 1"):
        Generator(grammar=1).choose(random.Random(0), want={"adj2"})
    with pytest.raises(ValueError, match="grammar must be one of"):
        Generator(grammar=3)
    with pytest.raises(ValueError, match="grammar must be one of"):
        make_splits(n_train=0, grammar=0)


# ------------------------------------------------------------------ oracles over generated pairs

def _spanish_span(pair, i):
    """Sorted target indices aligned to source token i."""
    return sorted(pair.align[i])


def _structures_from_tokens(pair):
    """The structure names of a pair, read from its tokens and relations only."""
    out = set()
    if pair.src[-1] == "?":
        out.add("q")
    if "not" in pair.src:
        out.add("neg")
    if {"q", "neg"} <= out:
        out.add("negq")
    n_adj = {}
    has_subj = {h for d, h, lab in pair.deps if lab == "subj"}
    for d, h, lab in pair.deps:
        if lab == "adj":
            n_adj[h] = n_adj.get(h, 0) + 1
        elif lab == "nmod":
            out.add("pp2")
        elif lab == "relcl":
            out.add("objrel" if d in has_subj else "rel")
        elif lab == "obj" and pair.src[d] in _PERSON_FORMS:
            out.add("pers")
    if any(k == 2 for k in n_adj.values()):
        out.add("adj2")
    return out


def test_recorded_structures_match_the_tokens(sample_pairs):
    seen = set()
    for p in sample_pairs:
        assert set(p.structures) == _structures_from_tokens(p), p
        seen |= p.structures
    assert seen == STRUCTURES


def test_two_adjectives_agree_and_follow_the_noun(sample_pairs):
    checked = {(g, n): 0 for g in "mf" for n in (0, 1)}
    for p in sample_pairs:
        adjs = {}
        for d, h, lab in p.deps:
            if lab == "adj":
                adjs.setdefault(h, []).append(d)
        for h, ds in adjs.items():
            if len(ds) != 2:
                continue
            a1, a2 = sorted(ds)
            assert a2 == a1 + 1 == h - 1, p                      # adjacent, before the noun
            first, second = _ADJ[p.src[a1]], _ADJ[p.src[a2]]
            assert None not in (first.order, second.order) and first.order < second.order, p
            noun, number = _NOUN[p.src[h]]
            (nj,), (j1,), (j2,) = (_spanish_span(p, k) for k in (h, a1, a2))
            agr = 2 * number + (noun.gender == "f")
            assert p.tgt[j1] == first.forms[agr] and p.tgt[j2] == second.forms[agr], p
            joiner = "e" if p.tgt[j2].startswith(("i", "hi")) else "y"
            assert (j1, j2) == (nj + 1, nj + 3) and p.tgt[nj + 2] == joiner, p
            checked[(noun.gender, number)] += 1
    assert min(checked.values()) >= 20, checked            # every gender and number seen


def test_personal_a_only_before_people(sample_pairs):
    people = things = 0
    for p in sample_pairs:
        sources = [set() for _ in p.tgt]                  # target index -> source indices
        for i, js in enumerate(p.align):
            for j in js:
                sources[j].add(i)
        # every "a"/"al" aligned to a verb is a personal "a"
        marked = {j for j, w in enumerate(p.tgt)
                  if w in ("a", "al") and any(p.pos[i] == "VERB" for i in sources[j])}
        expected = set()
        for d, h, lab in p.deps:
            if lab != "obj":
                continue
            det = [x for x, y, lab2 in p.deps if y == d and lab2 == "det"]
            start = min(p.align[det[0]] if det else p.align[d])
            if p.src[d] in _PERSON_FORMS:
                people += 1
                a = start if p.tgt[start] == "al" else start - 1
                assert p.tgt[a] in ("a", "al") and h in sources[a], p
                expected.add(a)
            else:
                things += 1
        assert marked == expected, p
    assert people > 200 and things > 1000


# ------------------------------------------------------------------ the structural split

def test_structural_split_disjoint_from_training(splits):
    held = splits.heldout_structures
    assert held == frozenset(HELDOUT_STRUCTURES) and len(held) >= 3
    for p in splits.train + splits.valid + splits.test + splits.compositional:
        shown = _structures_from_tokens(p)
        assert not any(c <= shown for c in held), p
    used = {c: 0 for c in held}
    for p in splits.structural:
        shown = _structures_from_tokens(p)
        hits = [c for c in held if c <= shown]
        assert hits, p
        for c in hits:
            used[c] += 1
    assert min(used.values()) >= 50, used                  # every held-out combination tested
    # each structure of a held-out combination occurs in train on its own
    train_structures = set()
    for p in splits.train:
        train_structures |= _structures_from_tokens(p)
    assert set().union(*held) <= train_structures == set(STRUCTURES)


def test_structural_split_holds_out_no_lemma_combination(splits):
    lemma = {("na",) + c for c in splits.heldout_na} | {("vo",) + c for c in splits.heldout_vo}
    for p in splits.structural + splits.test:
        assert not (p.combos & lemma), p
    for p in splits.compositional:
        assert p.combos & lemma, p


def test_splits_disjoint_and_deterministic(splits):
    sources = [p.source for part in splits[:5] for p in part]
    assert len(sources) == len(set(sources))
    assert [len(x) for x in splits[:5]] == [4000, 200, 200, 200, 400]
    again = make_splits(seed=2, **dict(SIZES, n_train=50))
    assert again.structural == splits.structural and again.test == splits.test
    other = make_splits(seed=3, **dict(SIZES, n_train=50))
    assert other.structural != splits.structural


def test_grammar_1_corpus_is_fixed():
    """make_splits(seed=0) with grammar 1 gives the pairs, alignments,
    relations and tags that model files without a grammar record were
    trained and are evaluated on (digest recorded from the generator that
    produced that corpus); new runs default to grammar 2."""
    assert G.GRAMMAR == 2
    s = make_splits(seed=0, n_train=3000, n_structural=0, grammar=1)
    h = hashlib.sha256()
    for part in (s.train, s.valid, s.test, s.compositional):
        for p in part:
            h.update(f"{p.source}\t{p.target}\t{p.pharaoh()}\t{sorted(p.deps)}\t{p.pos}\t"
                     f"{p.root}\n".encode())
    assert h.hexdigest() == "280701ef2b59dd6ff97bf5b3cebaa44d7b4ee54e91ccdaa5dc53b6d89b95c5f0"
    names = set().union(*(p.structures for p in s.train))
    assert names == {"q", "neg", "rel"}
    assert not any("rel" in p.structures and "q" in p.structures for p in s.train)


def _digests(splits):
    out = []
    for part in splits[:5]:
        h = hashlib.sha256()
        for p in part:
            h.update(f"{p.source}\t{p.target}\t{p.pharaoh()}\t{sorted(p.deps)}\t{p.pos}\t"
                     f"{p.root}\n".encode())
        out.append(h.hexdigest()[:16])
    return out


def test_grammar_2_corpus_is_fixed():
    """The grammar-2 corpus of seed 0 (what a translator trained on grammar
    2 was trained and is evaluated on) stays as recorded: a change to the
    sampling would put its test sentences into a new train."""
    s = make_splits(seed=0, n_train=3000, n_valid=300, n_test=300, n_compositional=300,
                    n_structural=300, grammar=2)
    assert _digests(s) == ["2f2e49c05663067d", "cc5a1680a075e548", "5e061f07cf2f5990",
                           "c2ad95e76c04f0cd", "ae19def1724fa230"]


def test_sentences_fit_the_translator(splits):
    for p in splits.structural + splits.train:
        assert len(p.src) <= G.MAX_TOKENS and len(p.tgt) <= G.MAX_TOKENS


def test_evaluate_on_the_structural_split(capsys):
    from pytransformer import cli
    assert cli.main(["evaluate", "--splits", "structural", "-n", "4"]) == 0
    out = capsys.readouterr().out
    assert "4 pairs per split" in out and "structural" in out and "exact match" in out


def test_evaluate_uses_the_grammar_the_model_records(capsys, monkeypatch):
    from pytransformer import cli
    import pytransformer.translator as translator
    real = cli._load_translator

    def load(path, flag="--model"):
        tr = real(path, flag)
        tr.data = dict(tr.data, grammar=2)
        return tr
    used = []

    def fake_evaluate(tr, pairs, beam=1):
        used.append([p.source for p in pairs])
        return {"pairs": len(pairs), "exact_match": 1.0, "bleu": None}
    monkeypatch.setattr(cli, "_load_translator", load)
    monkeypatch.setattr(translator, "evaluate", fake_evaluate)
    assert cli.main(["evaluate", "--splits", "test", "-n", "50"]) == 0
    assert "grammar 2;" in capsys.readouterr().out
    want = make_splits(seed=0, n_train=0, n_valid=0, n_compositional=0, n_structural=0,
                       grammar=2).test[:50]
    assert used == [[p.source for p in want]]
    assert want != make_splits(seed=0, n_train=0, n_valid=0, n_compositional=0,
                               n_structural=0, grammar=1).test[:50]


# ------------------------------------------------------------------ realize, one function per structure

def _function_lengths():
    tree = ast.parse(inspect.getsource(G))
    return {node.name: node.end_lineno - node.lineno + 1 for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef)}


def test_realize_is_split_into_short_functions():
    lengths = _function_lengths()
    assert lengths["realize"] <= 20
    for name in ("_statement_en", "_question_en", "_predicate_en", "_np_en", "_pp_en",
                 "_relative_en", "_sentence_es", "_np_es", "_adjectives_es", "_pp_es",
                 "_relative_es", "_object_es"):
        assert name in lengths, name
    too_long = {k: v for k, v in lengths.items() if v > 50}
    assert not too_long, too_long
    body = textwrap.dedent(inspect.getsource(Generator.realize))
    assert "subj[" not in body and "[3]" not in body                  # no positional fields
