"""The sentence generator: English sentences with their Spanish translation,
gold word alignments, source dependency relations and source POS tags.

Sentence types (English -> Spanish):

* transitive   "the black cat drank the milk" -> "el gato negro bebió la leche"
* intransitive "the dog runs near the park"   -> "el perro corre cerca del parque"
* motion       "we went to the park"          -> "nosotros fuimos al parque"
* copula + adjective "the ball is blue"       -> "la bola es azul" (ser; estar
  for the state adjectives marked in the lexicon: "el gato está cansado")
* copula + location "the cat is in the house" -> "el gato está en la casa"
  (always estar)

each declarative, negated ("does not drink" -> "no bebe", "is not" -> "no
es"), a yes/no question with subject-verb inversion ("does the cat drink milk
?" -> "¿ bebe el gato leche ?") or a negated question ("does the cat not
drink milk ?" -> "¿ no bebe el gato leche ?"; "is the ball not blue ?" -> "¿
no es la bola azul ?"). English past "was/were" maps to the Spanish
imperfect (era, estaba), every other past to the preterite. Tokens are
lower-case; punctuation is a separate token.

Structures inside the sentence (the names are those of :func:`structures`):

* ``adj2``, two adjectives on one noun, of two different English order
  classes (see the lexicon), in that order in English. Spanish rule: both
  follow the noun, in the English order, joined by "y" ("e" before a word
  starting with i/hi), and both agree with the noun in gender and number:
  "the small black dogs" -> "los perros pequeños y negros".
* ``rel``, a subject relative clause on the subject or object: "the cat that
  drinks the milk is black" -> "el gato que bebe la leche es negro".
* ``objrel``, an object relative clause on the subject or object, its
  subject before its verb in both languages: "the bread that the dog left is
  on the table" -> "el pan que el perro dejó está sobre la mesa".
* ``pp2``, a chained prepositional phrase (a second one on the noun of the
  first): "the cat is in the box under the table" -> "el gato está en la caja
  debajo de la mesa".
* ``pers``, a person as direct object, which takes the personal "a" in
  Spanish (contracted with el to "al"): "the boy sees the girl" -> "el niño ve
  a la niña"; never before things, places, food or drink.
* ``q``, ``neg``, ``negq``: a question, a negation, a negated question.

Relative clauses may stand inside questions ("does the cat that drinks milk
sleep ?" -> "¿ duerme el gato que bebe leche ?"). A noun phrase carries at
most one relative clause or chained phrase, and the noun phrases inside them
carry neither.

Alignments: every source token is aligned to at least one target token; every
target token is aligned except those in UNALIGNED_TARGET ("¿" and the "y"/"e"
joining two adjectives, which have no English counterpart). "does"/"did"
align to the Spanish verb (they carry its tense and person), "not" to "no",
both tokens of "you all" to "vosotros", a contraction (al = a + el, del = de +
el) to both the preposition and "the", and the personal "a" to the verb that
governs the object (with "the" when contracted to "al").

Dependency relations, (dependent, head, label) over source indices, one per
token except the root (the main verb, or the copula; its index is kept
separately, it has no relation), with labels:

  det    determiner (or "all" in "you all") -> its noun/pronoun
  adj    attributive adjective -> its noun
  subj   subject noun/pronoun -> verb or copula (also inside relative clauses)
  obj    direct object noun -> verb
  attr   predicative adjective -> copula
  prep   preposition -> the noun it introduces
  obl    noun of a prepositional phrase -> the verb or copula it modifies
  nmod   noun of a chained prepositional phrase -> the noun it modifies
  neg    "not" -> verb or copula
  aux    "do/does/did" -> verb
  rel    relativizer "that" -> the verb of its clause
  relcl  verb of a relative clause -> the noun it modifies
  punct  "?" -> root

Source POS tags (universal tags): DET, NUM, ADJ, NOUN, PRON, VERB, AUX
(do-support and the copula), ADP, PART ("not"), PUNCT; "that" is PRON, the
"all" of "you all" DET, "two"/"three" NUM.
"""
from collections import namedtuple

from .lexicon import (ADJECTIVES, DETERMINERS, ESTAR, NOUNS, PREPOSITIONS, PRONOUNS, SER,
                      VERBS)

__all__ = ["Generator", "Plan", "NounPhrase", "Relative", "plan", "structures", "LABELS",
           "POS_TAGS", "STRUCTURES", "UNALIGNED_TARGET", "MAX_TOKENS", "GRAMMAR", "GRAMMARS",
           "valid_noun_adjective",
           "valid_verb_object"]

LABELS = frozenset({"det", "adj", "subj", "obj", "attr", "prep", "obl", "nmod", "neg", "aux",
                    "rel", "relcl", "punct"})
POS_TAGS = frozenset({"DET", "NUM", "ADJ", "NOUN", "PRON", "VERB", "AUX", "ADP", "PART",
                      "PUNCT"})
UNALIGNED_TARGET = frozenset({"¿", "y", "e"})
STRUCTURES = frozenset({"q", "neg", "negq", "adj2", "rel", "objrel", "pp2", "pers"})
# Grammar versions: 1 has declaratives, negations and questions, with
# relative clauses on the subject of statements; 2 adds the structures
# adj2, objrel, pp2, pers and negq, and relative clauses in questions.
# GRAMMAR, the default of new corpora and training runs, is the version the
# shipped translators were trained on; a model file records its version
# (Translator.grammar; files without the record are version 1).
GRAMMARS = (1, 2)
GRAMMAR = 2
# Longest sentence, in tokens, on either side: the shipped translator's
# positions hold 31 tokens and the end-of-sentence mark.
MAX_TOKENS = 30

_BE = (("am", "are", "is", "are", "are", "are"), ("was", "were", "was", "were", "were", "were"))
_THE = DETERMINERS[0]
_LOCATIVE = tuple(p for p in PREPOSITIONS if p.locative)
_ADJUNCT = tuple(p for p in PREPOSITIONS if p.en != "to")
_TO = next(p for p in PREPOSITIONS if p.en == "to")
_VOWELS = frozenset("aeiou")
_MOODS = ("decl", "neg", "q", "negq")
# Sentence kinds and their weights.
_KINDS = ("trans", "intr", "go", "cop_adj", "cop_loc")
_KIND_WEIGHTS = (38, 14, 8, 25, 15)
_KIND_CUM = tuple(sum(_KIND_WEIGHTS[:k + 1]) for k in range(len(_KIND_WEIGHTS)))
_KIND_TOTAL = _KIND_CUM[-1]
# Probabilities of the optional structures in a sampled sentence.
_P_Q, _P_NEG, _P_NEGQ = 0.13, 0.13, 0.07        # moods; declarative otherwise
_P_ADJ, _P_ADJ2 = 0.35, 0.3                      # an adjective; a second one given the first
_P_PP_TRANS, _P_PP_INTR = 0.15, 0.3              # an adjunct phrase on the verb
_P_CHAIN = 0.2                                   # a chained phrase on a phrase's noun
_P_REL_ON_SUBJ, _P_OBJREL_ON_SUBJ = 0.12, 0.08  # subject / object relative on the subject
_P_REL_ON_OBJ, _P_OBJREL_ON_OBJ = 0.035, 0.07   # the same on the object
_P_PRON = 0.2                                    # a pronoun subject
_P_PERS = 0.5                                    # a person object, for verbs taking one


def valid_noun_adjective():
    """All (noun index, adjective index) pairs the grammar may combine."""
    return [(n, a) for n, noun in enumerate(NOUNS) for a, adj in enumerate(ADJECTIVES)
            if noun.cls in adj.classes]


def valid_verb_object(grammar=GRAMMAR):
    """All (verb index, noun index) pairs the grammar may combine as verb +
    object; person objects only from `grammar` 2 on."""
    _check_grammar(grammar)
    return [(v, n) for v, verb in enumerate(VERBS) if verb.kind == "trans"
            for n, noun in enumerate(NOUNS) if noun.cls in verb.obj and
            (grammar >= 2 or noun.cls != "person")]


def _check_grammar(grammar):
    if grammar not in GRAMMARS:
        raise ValueError(f"grammar must be one of {GRAMMARS}, got {grammar!r}")


Plan = namedtuple("Plan", "kind mood past verb pron subj obj pp adj")
Plan.__doc__ = """The content of one sentence, before it is put into words.

kind: one of 'trans', 'intr', 'go', 'cop_adj', 'cop_loc'; mood: 'decl',
'neg', 'q' or 'negq'; past: bool; verb: index into VERBS (None for the
copula); pron: a Pronoun subject or None; subj, obj: NounPhrase or None;
pp: (Preposition, NounPhrase) on the verb or None; adj: predicative
adjective index or None."""

NounPhrase = namedtuple("NounPhrase", "det adj noun plural adj2 pp rel",
                        defaults=(None, None, None))
NounPhrase.__doc__ = """A noun phrase of a Plan: det (a Determiner or None),
adj (adjective index or None), noun (noun index), plural (0 or 1), adj2 (a
second adjective index, after adj in English order, or None), pp (a chained
(Preposition, NounPhrase) on this noun, or None) and rel (a Relative on
this noun, or None)."""

Relative = namedtuple("Relative", "kind verb np past")
Relative.__doc__ = """A relative clause on a noun: kind 'subj' (the noun is
the clause's subject, np its object NounPhrase or None: "that drinks the
milk") or 'obj' (the noun is the clause's object, np its subject: "that the
dog left"); verb: index into VERBS; past: bool."""

# Source token indices of a noun phrase: det (or None), adjs (tuple), noun,
# pp ((preposition index, _Placed) or None), rel ((that, verb, _Placed or None)
# or None).
_Placed = namedtuple("_Placed", "det adjs noun pp rel")
# Source token indices of a clause's verb group and predicate.
_Main = namedtuple("_Main", "head aux neg subj_head subj obj attr pp q")


class _Sentence:
    """Accumulates one pair: source tokens with POS and relations, target
    tokens with the source indices each is aligned to."""
    __slots__ = ("src", "pos", "deps", "tgt", "tal", "combos")

    def __init__(self):
        self.src, self.pos, self.deps, self.tgt, self.tal = [], [], [], [], []
        self.combos = []

    def en(self, word, pos):
        self.src.append(word)
        self.pos.append(pos)
        return len(self.src) - 1

    def es(self, word, *aligned):
        self.tgt.append(word)
        self.tal.append(aligned)


def _noun_phrases(plan):
    """Every NounPhrase of a Plan, nested ones included."""
    out = []
    stack = [np for np in (plan.subj, plan.obj, plan.pp[1] if plan.pp is not None else None)
             if np is not None]
    while stack:
        np = stack.pop()
        out.append(np)
        if np.pp is not None:
            stack.append(np.pp[1])
        if np.rel is not None and np.rel.np is not None:
            stack.append(np.rel.np)
    return out


def structures(plan):
    """The structures a Plan uses, a frozenset of names from STRUCTURES (see
    the module docstring)."""
    out = set()
    if plan.mood in ("q", "negq"):
        out.add("q")
    if plan.mood in ("neg", "negq"):
        out.add("neg")
    if plan.mood == "negq":
        out.add("negq")
    if plan.obj is not None and NOUNS[plan.obj.noun].cls == "person":
        out.add("pers")
    for np in _noun_phrases(plan):
        if np.adj2 is not None:
            out.add("adj2")
        if np.pp is not None:
            out.add("pp2")
        if np.rel is not None:
            out.add("rel" if np.rel.kind == "subj" else "objrel")
            if np.rel.kind == "subj" and np.rel.np is not None and \
                    NOUNS[np.rel.np.noun].cls == "person":
                out.add("pers")
    return frozenset(out)


def _np_length(np):
    """(English, Spanish at most) token counts of a noun phrase."""
    n_adj = (np.adj is not None) + (np.adj2 is not None)
    en = (np.det is not None) + n_adj + 1
    es = en + (np.adj2 is not None)
    if np.pp is not None:
        pen, pes = _np_length(np.pp[1])
        en, es = en + 1 + pen, es + len(np.pp[0].es) + pes
    if np.rel is not None:
        en, es = en + 2, es + 3                     # that/que, the verb, a personal "a"
        if np.rel.np is not None:
            ren, res = _np_length(np.rel.np)
            en, es = en + ren, es + res
    return en, es


def _length(plan):
    """(English, Spanish at most) token counts of a Plan's sentence."""
    en = es = 1                                     # the verb or copula
    if plan.pron is not None:
        en, es = en + len(plan.pron.en), es + 1
    else:
        sen, ses = _np_length(plan.subj)
        en, es = en + sen, es + ses
    if plan.mood != "decl":
        en, es = en + 2, es + 2                     # do/not/?, no/¿/?
    if plan.mood == "negq":
        en, es = en + 1, es + 1
    for np in (plan.obj, plan.pp[1] if plan.pp is not None else None):
        if np is not None:
            xen, xes = _np_length(np)
            en, es = en + xen, es + xes + 2         # a preposition or the personal "a"
    if plan.adj is not None:
        en, es = en + 1, es + 1
    return en, es


class Generator:
    """Samples sentence pairs from the grammar and lexicon.

    heldout_na: set of (noun index, adjective index) pairs and heldout_vo: set
    of (verb index, noun index) pairs into NOUNS/ADJECTIVES/VERBS that
    ``sample(rng, allow_heldout=False)`` never produces (attributive or
    predicative adjective on the noun; the noun as object of the verb, in a
    main or relative clause). Every sample records the combinations it used,
    so a caller can keep only those that contain a held-out one.
    heldout_structures: a set of frozensets of structure names (see
    :func:`structures`); ``uses_heldout_structure(plan)`` says whether a
    Plan uses all the structures of one of them. grammar: the version (see
    GRAMMARS); version 1 draws exactly the sentences it always drew.
    """

    def __init__(self, heldout_na=frozenset(), heldout_vo=frozenset(),
                 heldout_structures=frozenset(), grammar=GRAMMAR):
        _check_grammar(grammar)
        self.grammar = grammar
        self.heldout_na = frozenset(heldout_na)
        self.heldout_vo = frozenset(heldout_vo)
        self.heldout_structures = frozenset(frozenset(c) for c in heldout_structures)
        for c in self.heldout_structures:
            if not c or not c <= STRUCTURES:
                raise ValueError(f"Generator: a held-out structure combination must be a "
                                 f"non-empty set of names from {sorted(STRUCTURES)}, got "
                                 f"{sorted(c)}")
        by_class = {}
        for n, noun in enumerate(NOUNS):
            by_class.setdefault(noun.cls, []).append(n)
        self._by_class = by_class
        self._adjs = ({}, {})           # [allow_heldout][noun] -> adjective indices
        for n, a in valid_noun_adjective():
            self._adjs[1].setdefault(n, []).append(a)
            if (n, a) not in self.heldout_na:
                self._adjs[0].setdefault(n, []).append(a)
        self._objs = ({}, {})           # [allow_heldout][verb] -> noun indices
        for v, n in valid_verb_object(grammar):
            self._objs[1].setdefault(v, []).append(n)
            if (v, n) not in self.heldout_vo:
                self._objs[0].setdefault(v, []).append(n)
        for name, (kept, every) in (("noun", self._adjs), ("verb", self._objs)):
            for key in every:
                if not kept.get(key):
                    raise ValueError(f"Generator: the held-out sets leave {name} index {key} "
                                     f"with no combination")
        person = frozenset(by_class["person"])
        self._person_objs = tuple({v: [n for n in ns if n in person]
                                   for v, ns in objs.items()} for objs in self._objs)
        self._person_verbs = tuple([v for v, ns in objs.items() if ns]
                                   for objs in self._person_objs)
        self._verbs_of = ({}, {})       # [allow_heldout][object noun] -> verb indices
        for full in (0, 1):
            for v, ns in self._objs[full].items():
                for n in ns:
                    self._verbs_of[full].setdefault(n, []).append(v)
        self._subj_nouns = {}           # verb -> nouns allowed as its subject
        for v, verb in enumerate(VERBS):
            self._subj_nouns[v] = [n for c in sorted(verb.subj) for n in by_class.get(c, [])]
        self._verbs = {k: [v for v, verb in enumerate(VERBS) if verb.kind == k]
                       for k in ("trans", "intr", "go")}
        self._animate_verbs = self._verbs["trans"] + self._verbs["intr"]
        self._person_adjs = [a for a, x in enumerate(ADJECTIVES) if "person" in x.classes]
        self._loc_nouns = by_class["thing"] + by_class["place"]
        self._all_nouns = list(range(len(NOUNS)))
        self._pp_nouns = {p.en: [n for c in sorted(p.classes) for n in by_class.get(c, [])]
                          for p in PREPOSITIONS}
        self._dets = {(num, mass): [d for d in DETERMINERS if num in d.numbers and
                                    (d.mass or not mass)]
                      for num in (0, 1) for mass in (False, True)}

    # ------------------------------------------------------------------ sampling

    def sample(self, rng, allow_heldout=False):
        """One pair from `rng` (a random.Random): ``realize(choose(rng, ...))``."""
        return self.realize(self.choose(rng, allow_heldout))

    def choose(self, rng, allow_heldout=False, want=frozenset()):
        """Draw the content of one sentence from `rng` (a random.Random) as a
        Plan; held-out lemma combinations only if `allow_heldout`; every
        structure named in `want` (a subset of STRUCTURES) present. The
        sentence has at most MAX_TOKENS tokens on either side."""
        want = frozenset(want)
        if not want <= STRUCTURES:
            raise ValueError(f"choose: unknown structures {sorted(want - STRUCTURES)}")
        if want and self.grammar == 1:
            raise ValueError("choose: grammar 1 cannot be asked for structures")
        full = 1 if allow_heldout else 0
        draw = self._draw if self.grammar >= 2 else self._draw_base
        for _ in range(10_000):
            p = draw(rng, full, want)
            if (not want or want <= structures(p)) and max(_length(p)) <= MAX_TOKENS:
                return p
        raise RuntimeError(f"choose: no sentence with the structures {sorted(want)} "
                           f"found in 10000 draws")

    def _draw(self, rng, full, want):
        """One Plan, `want` making its structures certain where it can."""
        r = rng.random
        kind = self._kind(rng, want)
        mood = self._mood(rng, want)
        past = r() < 0.5
        pers = "pers" in want
        v = None
        if kind in ("trans", "intr", "go"):
            verbs = self._person_verbs[full] if pers else self._verbs[kind]
            v = rng.choice(verbs)
            subj_nouns, subj_classes = self._subj_nouns[v], VERBS[v].subj
        else:
            subj_nouns, subj_classes = self._all_nouns, None
        pron = subj = obj = pp = adj = None
        if (subj_classes is None or "person" in subj_classes) and "objrel" not in want \
                and r() < _P_PRON:
            pron = rng.choice(PRONOUNS)
        else:
            subj = self._np(rng, rng.choice(subj_nouns), full, want)
            subj = self._with_relative(rng, subj, full, want, _P_REL_ON_SUBJ,
                                       _P_OBJREL_ON_SUBJ)
        if kind == "trans":
            persons = self._person_objs[full].get(v)
            nouns = persons if pers or (persons and r() < _P_PERS) else self._objs[full][v]
            obj = self._np(rng, rng.choice(nouns), full, want, bare_ok=True)
            if subj is None or subj.rel is None:
                obj = self._with_relative(rng, obj, full, want, _P_REL_ON_OBJ,
                                          _P_OBJREL_ON_OBJ)
            if "pp2" in want or r() < _P_PP_TRANS:
                pp = self._adjunct(rng, full, want)
        elif kind == "intr":
            if "pp2" in want or r() < _P_PP_INTR:
                pp = self._adjunct(rng, full, want)
        elif kind == "go":
            pp = self._pp(rng, _TO, rng.choice(self._by_class["place"]), full, want)
        elif kind == "cop_adj":
            adj = rng.choice(self._person_adjs if pron is not None else
                             self._adjs[full][subj.noun])
        else:
            pp = self._pp(rng, rng.choice(_LOCATIVE), rng.choice(self._loc_nouns), full, want)
        return Plan(kind, mood, past, v, pron, subj, obj, pp, adj)

    def _draw_base(self, rng, full, want):
        """One Plan of grammar 1 (`want` is empty)."""
        r = rng.random
        u = r() * _KIND_TOTAL
        kind = next(k for k, w in zip(_KINDS, _KIND_CUM) if u < w)
        u = r()
        mood = "q" if u < 0.15 else ("neg" if u < 0.30 else "decl")
        past = r() < 0.5
        v = None
        if kind in ("trans", "intr", "go"):
            v = rng.choice(self._verbs[kind])
            subj_nouns, subj_classes = self._subj_nouns[v], VERBS[v].subj
        else:
            subj_nouns, subj_classes = self._all_nouns, None
        pron = subj = obj = pp = adj = None
        if (subj_classes is None or "person" in subj_classes) and r() < _P_PRON:
            pron = rng.choice(PRONOUNS)
        else:
            subj = self._np(rng, rng.choice(subj_nouns), full, pair_ok=False)
        if kind == "trans":
            obj = self._np(rng, rng.choice(self._objs[full][v]), full, bare_ok=True,
                           pair_ok=False)
            if r() < _P_PP_TRANS:
                pp = self._adjunct(rng, full, want, chain=False)
        elif kind == "intr":
            if r() < _P_PP_INTR:
                pp = self._adjunct(rng, full, want, chain=False)
        elif kind == "go":
            pp = self._pp(rng, _TO, rng.choice(self._by_class["place"]), full, want, False)
        elif kind == "cop_adj":
            adj = rng.choice(self._person_adjs if pron is not None else
                             self._adjs[full][subj.noun])
        else:
            pp = self._pp(rng, rng.choice(_LOCATIVE), rng.choice(self._loc_nouns), full, want,
                          False)
        if subj is not None and mood != "q" and NOUNS[subj.noun].cls in ("person", "animal") \
                and r() < _P_REL_ON_SUBJ:
            subj = self._subject_relative(rng, subj, full, want)
        return Plan(kind, mood, past, v, pron, subj, obj, pp, adj)

    def _kind(self, rng, want):
        """The sentence kind; 'trans' for a person object, one with a
        prepositional phrase for a chain."""
        if "pers" in want:
            return "trans"
        while True:
            u = rng.random() * _KIND_TOTAL
            kind = next(k for k, w in zip(_KINDS, _KIND_CUM) if u < w)
            if "pp2" not in want or kind != "cop_adj":
                return kind

    @staticmethod
    def _mood(rng, want):
        """The mood: 'decl', 'neg', 'q' or 'negq'."""
        u = rng.random()
        if "negq" in want or ("q" in want and "neg" in want):
            return "negq"
        if "q" in want:
            return "q" if u < 0.65 else "negq"
        if "neg" in want:
            return "neg" if u < 0.65 else "negq"
        return ("q" if u < _P_Q else "neg" if u < _P_Q + _P_NEG else
                "negq" if u < _P_Q + _P_NEG + _P_NEGQ else "decl")

    def _np(self, rng, n, full, want=frozenset(), p_adj=_P_ADJ, bare_ok=False, pair_ok=True):
        """Choose a NounPhrase for noun index n (no clause or chained phrase)."""
        r = rng.random
        noun = NOUNS[n]
        num = 0 if noun.mass or r() < 0.7 else 1
        if bare_ok and noun.mass and r() < 0.3:
            det = None
        elif r() < 0.5:
            det = _THE
        else:
            det = rng.choice(self._dets[(num, noun.mass)])
        adj = adj2 = None
        if r() < p_adj:
            adj = rng.choice(self._adjs[full][n])
            if pair_ok and ("adj2" in want or r() < _P_ADJ2):
                first = ADJECTIVES[adj].order
                others = [a for a in self._adjs[full][n] if first is not None and
                          ADJECTIVES[a].order is not None and ADJECTIVES[a].order != first]
                if others:
                    adj2 = rng.choice(others)
                    if ADJECTIVES[adj2].order < first:
                        adj, adj2 = adj2, adj
        return NounPhrase(det, adj, n, num, adj2)

    def _pp(self, rng, prep, n, full, want, chain=True):
        """(prep, NounPhrase of noun n), the phrase's noun maybe carrying a
        chained locative phrase (only if `chain`; grammar 2)."""
        np = self._np(rng, n, full, want, pair_ok=self.grammar >= 2)
        if chain and NOUNS[n].cls in ("thing", "place") and ("pp2" in want or
                                                             rng.random() < _P_CHAIN):
            p2 = rng.choice(_LOCATIVE)
            inner = self._pp(rng, p2, rng.choice(self._pp_nouns[p2.en]), full, want, False)
            np = np._replace(pp=inner)
        return prep, np

    def _adjunct(self, rng, full, want, chain=True):
        """A prepositional phrase on the verb."""
        p = rng.choice(_ADJUNCT)
        return self._pp(rng, p, rng.choice(self._pp_nouns[p.en]), full, want, chain)

    def _with_relative(self, rng, np, full, want, p_subj, p_obj):
        """np, maybe with a subject or an object relative clause on it."""
        r = rng.random
        cls = NOUNS[np.noun].cls
        verbs_of = self._verbs_of[full].get(np.noun)
        if verbs_of and ("objrel" in want or r() < p_obj):
            rv = rng.choice(verbs_of)
            inner = self._np(rng, rng.choice(self._subj_nouns[rv]), full, p_adj=0.2,
                             pair_ok=False)
            return np._replace(rel=Relative("obj", rv, inner, r() < 0.5))
        if cls in ("person", "animal") and ("rel" in want or r() < p_subj):
            return self._subject_relative(rng, np, full, want)
        return np

    def _subject_relative(self, rng, np, full, want):
        """np (a person or animal) with a subject relative clause on it."""
        cls = NOUNS[np.noun].cls
        rv = rng.choice(self._animate_verbs)
        while cls not in VERBS[rv].subj:
            rv = rng.choice(self._animate_verbs)
        inner = None
        if VERBS[rv].kind == "trans":
            nouns = self._objs[full][rv]
            if "pers" in want and self._person_objs[full].get(rv):
                nouns = self._person_objs[full][rv]
            inner = self._np(rng, rng.choice(nouns), full, p_adj=0.2, bare_ok=True,
                             pair_ok=False)
        return np._replace(rel=Relative("subj", rv, inner, rng.random() < 0.5))

    # ------------------------------------------------------------------ combinations

    @staticmethod
    def combos(plan):
        """The ('na', noun, adjective) and ('vo', verb, noun) lemma-index
        triples a Plan uses: adjectives on any noun phrase and predicative
        adjectives on the subject noun; objects of the main verb and of the
        verbs of relative clauses (in an object relative, the noun it is on)."""
        out = []
        for np in _noun_phrases(plan):
            for a in (np.adj, np.adj2):
                if a is not None:
                    out.append(("na", np.noun, a))
            if np.rel is not None:
                if np.rel.kind == "obj":
                    out.append(("vo", np.rel.verb, np.noun))
                elif np.rel.np is not None:
                    out.append(("vo", np.rel.verb, np.rel.np.noun))
        if plan.adj is not None and plan.subj is not None:
            out.append(("na", plan.subj.noun, plan.adj))
        if plan.obj is not None:
            out.append(("vo", plan.verb, plan.obj.noun))
        return out

    def uses_heldout(self, plan):
        """Whether a Plan uses a held-out lemma combination."""
        for kind, a, b in self.combos(plan):
            if (a, b) in (self.heldout_na if kind == "na" else self.heldout_vo):
                return True
        return False

    def uses_heldout_structure(self, plan, used=None):
        """Whether a Plan uses every structure of one held-out combination
        (`used`: its structures(plan), if already known)."""
        if used is None:
            used = structures(plan)
        return any(c <= used for c in self.heldout_structures)

    # ------------------------------------------------------------------ English

    def realize(self, plan):
        """The pair of a Plan: a tuple (src, tgt, tgt alignments, deps, pos,
        root, combos). tgt alignments holds, per target token, the tuple of
        source indices it is aligned to; combos the ('na', noun, adjective) and
        ('vo', verb, noun) lemma-index triples the sentence uses (attributive
        and predicative adjectives; objects of main and relative verbs)."""
        s = _Sentence()
        s.combos = self.combos(plan)
        person = plan.pron.person if plan.pron is not None else (5 if plan.subj.plural else 2)
        if plan.mood in ("q", "negq"):
            m = self._question_en(s, plan, person)
        else:
            m = self._statement_en(s, plan, person)
        m = self._predicate_en(s, plan, m)
        self._sentence_es(s, plan, person, m)
        return s.src, s.tgt, s.tal, s.deps, s.pos, m.head, s.combos

    @staticmethod
    def _verb_en(plan, person):
        """The finite English form of the main verb or copula."""
        if plan.verb is None:
            return _BE[1 if plan.past else 0][person]
        verb = VERBS[plan.verb]
        return verb.en_past if plan.past else (verb.en_3sg if person == 2 else verb.en)

    @staticmethod
    def _do_en(plan, person):
        """The do-support auxiliary: do, does or did."""
        return "did" if plan.past else ("does" if person == 2 else "do")

    def _subject_en(self, s, plan):
        """The subject; returns (head index, placement)."""
        if plan.pron is not None:
            ids = [s.en(w, "PRON" if k == 0 else "DET") for k, w in enumerate(plan.pron.en)]
            for k in ids[1:]:
                s.deps.append((k, ids[0], "det"))
            return ids[0], ids
        idx = self._np_en(s, plan.subj)
        return idx.noun, idx

    def _statement_en(self, s, plan, person):
        """Subject, then the verb group: "the cat drinks", "the cat does not
        drink", "the cat is (not)"."""
        subj_head, subj = self._subject_en(s, plan)
        aux = neg = None
        if plan.verb is None:
            head = s.en(self._verb_en(plan, person), "AUX")
            if plan.mood == "neg":
                neg = s.en("not", "PART")
        elif plan.mood == "neg":
            aux = s.en(self._do_en(plan, person), "AUX")
            neg = s.en("not", "PART")
            head = s.en(VERBS[plan.verb].en, "VERB")
        else:
            head = s.en(self._verb_en(plan, person), "VERB")
        return _Main(head, aux, neg, subj_head, subj, None, None, None, None)

    def _question_en(self, s, plan, person):
        """Inversion: "does the cat (not) drink", "is the ball (not)"."""
        aux = neg = None
        if plan.verb is None:
            head = s.en(self._verb_en(plan, person), "AUX")
        else:
            aux = s.en(self._do_en(plan, person), "AUX")
        subj_head, subj = self._subject_en(s, plan)
        if plan.mood == "negq":
            neg = s.en("not", "PART")
        if plan.verb is not None:
            head = s.en(VERBS[plan.verb].en, "VERB")
        return _Main(head, aux, neg, subj_head, subj, None, None, None, None)

    def _predicate_en(self, s, plan, m):
        """Object, predicative adjective, prepositional phrase and "?", with
        the relations of the clause."""
        head = m.head
        s.deps.append((m.subj_head, head, "subj"))
        if m.aux is not None:
            s.deps.append((m.aux, head, "aux"))
        if m.neg is not None:
            s.deps.append((m.neg, head, "neg"))
        obj = attr = pp = q = None
        if plan.obj is not None:
            obj = self._np_en(s, plan.obj)
            s.deps.append((obj.noun, head, "obj"))
        if plan.adj is not None:
            attr = s.en(ADJECTIVES[plan.adj].en, "ADJ")
            s.deps.append((attr, head, "attr"))
        if plan.pp is not None:
            pp = self._pp_en(s, plan.pp, head, "obl")
        if plan.mood in ("q", "negq"):
            q = s.en("?", "PUNCT")
            s.deps.append((q, head, "punct"))
        return m._replace(obj=obj, attr=attr, pp=pp, q=q)

    def _np_en(self, s, np):
        """Emit an English noun phrase with its chained phrase or relative
        clause; returns its token indices (_Placed)."""
        noun = NOUNS[np.noun]
        word = noun.en_pl if np.plural else noun.en
        di = None
        if np.det is not None:
            form = np.det.en
            first = ADJECTIVES[np.adj].en if np.adj is not None else word
            if form == "a" and first[0] in _VOWELS:
                form = "an"
            di = s.en(form, np.det.pos)
        adjs = tuple(s.en(ADJECTIVES[a].en, "ADJ") for a in (np.adj, np.adj2) if a is not None)
        ni = s.en(word, "NOUN")
        if di is not None:
            s.deps.append((di, ni, "det"))
        for ai in adjs:
            s.deps.append((ai, ni, "adj"))
        pp = self._pp_en(s, np.pp, ni, "nmod") if np.pp is not None else None
        rel = self._relative_en(s, np.rel, ni, np.plural) if np.rel is not None else None
        return _Placed(di, adjs, ni, pp, rel)

    def _pp_en(self, s, pp, head, label):
        """A prepositional phrase attached to `head` with `label` (obl or
        nmod); returns (preposition index, _Placed)."""
        p_i = s.en(pp[0].en, "ADP")
        idx = self._np_en(s, pp[1])
        s.deps.append((p_i, idx.noun, "prep"))
        s.deps.append((idx.noun, head, label))
        return p_i, idx

    def _relative_en(self, s, rel, head, head_plural):
        """"that drinks the milk" (subject relative) or "that the dog left"
        (object relative) on the noun at `head`; returns (that, verb, _Placed
        of its noun phrase or None)."""
        verb = VERBS[rel.verb]
        that = s.en("that", "PRON")
        inner = None
        if rel.kind == "obj":
            inner = self._np_en(s, rel.np)
            plural = rel.np.plural
        else:
            plural = head_plural
        form = verb.en_past if rel.past else (verb.en if plural else verb.en_3sg)
        vi = s.en(form, "VERB")
        s.deps.append((that, vi, "rel"))
        s.deps.append((vi, head, "relcl"))
        if rel.kind == "obj":
            s.deps.append((inner.noun, vi, "subj"))
        elif rel.np is not None:
            inner = self._np_en(s, rel.np)
            s.deps.append((inner.noun, vi, "obj"))
        return that, vi, inner

    # ------------------------------------------------------------------ Spanish

    def _sentence_es(self, s, plan, person, m):
        """The Spanish sentence: [¿] [no] verb subject (questions) or subject
        [no] verb (statements), then object, attribute, phrase, [?]."""
        if plan.verb is None:
            table = ESTAR if plan.kind == "cop_loc" or ADJECTIVES[plan.adj].estar else SER
            vform = table[1 if plan.past else 0][person]
        else:
            vform = (VERBS[plan.verb].preterite if plan.past else VERBS[plan.verb].present)[person]
        v_align = (m.head,) if m.aux is None else (m.aux, m.head)
        if m.q is not None:
            s.es("¿")
            if m.neg is not None:
                s.es("no", m.neg)
            s.es(vform, *v_align)
            agr = self._subject_es(s, plan, m.subj, person)
        else:
            agr = self._subject_es(s, plan, m.subj, person)
            if m.neg is not None:
                s.es("no", m.neg)
            s.es(vform, *v_align)
        if plan.obj is not None:
            self._object_es(s, plan.obj, m.obj, m.head)
        if plan.adj is not None:
            s.es(ADJECTIVES[plan.adj].forms[agr], m.attr)
        if plan.pp is not None:
            self._pp_es(s, plan.pp, m.pp)
        if m.q is not None:
            s.es("?", m.q)

    def _subject_es(self, s, plan, idx, person):
        """The subject; returns its agreement index (2 * plural + feminine)."""
        if plan.pron is not None:
            s.es(plan.pron.es, *idx)
            return (2 if person >= 3 else 0) + (1 if plan.pron.gender == "f" else 0)
        return self._np_es(s, plan.subj, idx)

    def _object_es(self, s, np, idx, verb_i):
        """A direct object, after the personal "a" (aligned to the verb at
        verb_i) when it is a person."""
        if NOUNS[np.noun].cls == "person":
            self._np_es(s, np, idx, prep=("a",), prep_i=verb_i)
        else:
            self._np_es(s, np, idx)

    def _np_es(self, s, np, idx, prep=None, prep_i=None):
        """Emit the Spanish noun phrase (det noun adj [y adj]) with its
        chained phrase or relative clause, after the Spanish preposition
        tokens `prep` if given (contracting a/de + el); returns its agreement
        index (2 * plural + feminine)."""
        noun = NOUNS[np.noun]
        agr = 2 * np.plural + (noun.gender == "f")
        det_form = None
        if np.det is not None:
            if noun.el_fem and np.plural == 0 and np.det.en in ("the", "a"):
                det_form = np.det.es[0]
            else:
                det_form = np.det.es[agr]
        if prep is not None:
            last = len(prep) - 1
            for k, p in enumerate(prep):
                if k == last and det_form == "el" and p in ("a", "de"):
                    s.es("al" if p == "a" else "del", prep_i, idx.det)
                    det_form = None
                else:
                    s.es(p, prep_i)
        if det_form is not None:
            s.es(det_form, idx.det)
        s.es(noun.es_pl if np.plural else noun.es, idx.noun)
        self._adjectives_es(s, np, idx, agr)
        if np.pp is not None:
            self._pp_es(s, np.pp, idx.pp)
        if np.rel is not None:
            self._relative_es(s, np.rel, idx.rel, np.plural)
        return agr

    @staticmethod
    def _adjectives_es(s, np, idx, agr):
        """The attributive adjectives after the noun, in English order, two
        joined by "y" ("e" before i/hi)."""
        if np.adj is None:
            return
        s.es(ADJECTIVES[np.adj].forms[agr], idx.adjs[0])
        if np.adj2 is not None:
            form = ADJECTIVES[np.adj2].forms[agr]
            s.es("e" if form.startswith(("i", "hi")) else "y")
            s.es(form, idx.adjs[1])

    def _pp_es(self, s, pp, idx):
        """A prepositional phrase (its Spanish preposition tokens, then the
        noun phrase)."""
        p_i, np_idx = idx
        self._np_es(s, pp[1], np_idx, prep=pp[0].es, prep_i=p_i)

    def _relative_es(self, s, rel, idx, head_plural):
        """"que bebe la leche" / "que el perro dejó"."""
        that, vi, inner = idx
        verb = VERBS[rel.verb]
        s.es("que", that)
        forms = verb.preterite if rel.past else verb.present
        if rel.kind == "obj":
            self._np_es(s, rel.np, inner)
            s.es(forms[5 if rel.np.plural else 2], vi)
        else:
            s.es(forms[5 if head_plural else 2], vi)
            if rel.np is not None:
                self._object_es(s, rel.np, inner, vi)


# ------------------------------------------------------------------ plans from words

_NOUN_BY_EN = {}
for _n, _noun in enumerate(NOUNS):
    _NOUN_BY_EN[_noun.en] = (_n, 0)
    _NOUN_BY_EN.setdefault(_noun.en_pl, (_n, 1))
_ADJ_BY_EN = {a.en: i for i, a in enumerate(ADJECTIVES)}
_VERB_BY_EN = {v.en: i for i, v in enumerate(VERBS)}
_VERB_FORM = {}                                  # English form -> (verb index, past)
for _v, _verb in enumerate(VERBS):
    _VERB_FORM[_verb.en] = _VERB_FORM[_verb.en_3sg] = (_v, False)
    _VERB_FORM[_verb.en_past] = (_v, True)
_DET_BY_EN = {d.en: d for d in DETERMINERS}
_DET_BY_EN["an"] = _DET_BY_EN["a"]
_PRON_BY_EN = {" ".join(p.en): p for p in PRONOUNS}
_PREP_BY_EN = {p.en: p for p in PREPOSITIONS}
_NP_FORM = "'[det] [adj [adj]] noun [prep noun phrase | that clause]'"


def _lookup(table, word, what):
    try:
        return table[word]
    except KeyError:
        raise ValueError(f"plan: unknown {what} {word!r}") from None


class _Words:
    """A cursor over the words of a noun phrase written by hand."""

    def __init__(self, text, what):
        self.words, self.k, self.text, self.what = text.split(), 0, text, what

    def peek(self):
        return self.words[self.k] if self.k < len(self.words) else None

    def take(self):
        w = self.peek()
        if w is None:
            raise ValueError(f"plan: {self.what} ends too early: {self.text!r}; expected "
                             f"{_NP_FORM}")
        self.k += 1
        return w


def _parse_np(w, clauses=True):
    """The NounPhrase starting at the cursor `w`."""
    det = _DET_BY_EN.get(w.peek())
    if det is not None:
        w.take()
    adjs = []
    while w.peek() in _ADJ_BY_EN:
        adjs.append(_ADJ_BY_EN[w.take()])
    if len(adjs) > 2:
        raise ValueError(f"plan: {w.what} has more than two adjectives: {w.text!r}")
    n, num = _lookup(_NOUN_BY_EN, w.take(), "noun")
    np = NounPhrase(det, adjs[0] if adjs else None, n, num, adjs[1] if len(adjs) > 1 else None)
    nxt = w.peek()
    if clauses and nxt in _PREP_BY_EN:
        prep = _PREP_BY_EN[w.take()]
        np = np._replace(pp=(prep, _parse_np(w, clauses=False)))
    elif clauses and nxt == "that":
        w.take()
        if w.peek() in _DET_BY_EN:                   # "that the dog left"
            inner = _parse_np(w, clauses=False)
            v, past = _lookup(_VERB_FORM, w.take(), "verb form")
            np = np._replace(rel=Relative("obj", v, inner, past))
        else:                                        # "that drinks the milk"
            v, past = _lookup(_VERB_FORM, w.take(), "verb form")
            inner = _parse_np(w, clauses=False) if w.peek() is not None else None
            np = np._replace(rel=Relative("subj", v, inner, past))
    return np


def _np_from_words(text, what):
    """'the small black cat that the dog saw' -> its NounPhrase."""
    w = _Words(text, what)
    np = _parse_np(w)
    if w.peek() is not None:
        raise ValueError(f"plan: {what} must be {_NP_FORM}, got {text!r}")
    return np


def plan(kind, subj, verb=None, obj=None, adj=None, pp=None, mood="decl", past=False,
         rel=None):
    """A Plan from English words, for sentences chosen by hand.

    subj: a pronoun ('we', 'you all') or a noun phrase '[det] [adj [adj]]
    noun', optionally followed by a chained prepositional phrase ('the box
    under the table') or a relative clause ('the cat that drinks the milk',
    'the bread that the dog left'); verb: an English base form ('drink');
    obj: a noun phrase; adj: an adjective for kind 'cop_adj'; pp:
    (preposition, noun phrase), e.g. ('in', 'the box under the table'); mood:
    'decl', 'neg', 'q' or 'negq'; rel: (verb, object noun phrase or None,
    past) for a subject relative clause on the subject.

    >>> Generator().realize(plan("cop_adj", "the ball", adj="blue"))[1]
    ['la', 'bola', 'es', 'azul']
    """
    if kind not in _KINDS:
        raise ValueError(f"plan: kind must be one of {_KINDS}, got {kind!r}")
    if mood not in _MOODS:
        raise ValueError(f"plan: mood must be one of {_MOODS}, got {mood!r}")
    pron = _PRON_BY_EN.get(subj)
    subj_np = None if pron is not None else _np_from_words(subj, "subj")
    v = _lookup(_VERB_BY_EN, verb, "verb") if verb is not None else None
    if (v is None) != (kind in ("cop_adj", "cop_loc")):
        raise ValueError(f"plan: kind {kind!r} {'takes no' if v is not None else 'needs a'} verb")
    if v is not None and VERBS[v].kind != kind:
        raise ValueError(f"plan: verb {verb!r} is {VERBS[v].kind!r}, not {kind!r}")
    if (obj is not None) != (kind == "trans"):
        raise ValueError("plan: obj is required for kind 'trans' and only for it")
    if (adj is not None) != (kind == "cop_adj"):
        raise ValueError("plan: adj is required for kind 'cop_adj' and only for it")
    if kind in ("go", "cop_loc") and pp is None:
        raise ValueError(f"plan: kind {kind!r} needs pp")
    obj_np = _np_from_words(obj, "obj") if obj is not None else None
    a = _lookup(_ADJ_BY_EN, adj, "adjective") if adj is not None else None
    pp_t = None
    if pp is not None:
        pp_t = (_lookup(_PREP_BY_EN, pp[0], "preposition"), _np_from_words(pp[1], "pp"))
    if rel is not None:
        if subj_np is None or subj_np.rel is not None or subj_np.pp is not None:
            raise ValueError("plan: rel needs a noun subject without a clause of its own")
        rv = _lookup(_VERB_BY_EN, rel[0], "verb")
        subj_np = subj_np._replace(rel=Relative(
            "subj", rv, _np_from_words(rel[1], "rel object") if rel[1] else None, bool(rel[2])))
    return Plan(kind, mood, bool(past), v, pron, subj_np, obj_np, pp_t, a)
