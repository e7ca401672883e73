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

each optionally negated ("does not drink" -> "no bebe", "is not" -> "no es")
or a yes/no question with subject-verb inversion ("does the cat drink milk ?"
-> "¿ bebe el gato leche ?"); subjects may carry a relative clause ("the cat
that drinks the milk is black" -> "el gato que bebe la leche es negro"). English
past "was/were" maps to the Spanish imperfect (era, estaba), every other past
to the preterite. Tokens are lower-case; punctuation is a separate token.

Alignments: every source token is aligned to at least one target token; every
target token is aligned except those in UNALIGNED_TARGET ("¿", which has no
English counterpart). "does"/"did" align to the Spanish verb (they carry its
tense and person), "not" to "no", both tokens of "you all" to "vosotros", and a
contraction (al = a + el, del = de + el) to both the preposition and "the".

Dependency relations, (dependent, head, label) over source indices, one per
token except the root (the main verb, or the copula; its index is kept
separately, it has no relation), with labels:

  det    determiner (or "all" in "you all") -> its noun/pronoun
  adj    attributive adjective -> its noun
  subj   subject noun/pronoun -> verb or copula
  obj    direct object noun -> verb
  attr   predicative adjective -> copula
  prep   preposition -> the noun it introduces
  obl    noun of a prepositional phrase -> the verb or copula it modifies
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

__all__ = ["Generator", "Plan", "plan", "LABELS", "POS_TAGS", "UNALIGNED_TARGET",
           "valid_noun_adjective", "valid_verb_object"]

LABELS = frozenset({"det", "adj", "subj", "obj", "attr", "prep", "obl", "neg", "aux", "rel",
                    "relcl", "punct"})
POS_TAGS = frozenset({"DET", "NUM", "ADJ", "NOUN", "PRON", "VERB", "AUX", "ADP", "PART",
                      "PUNCT"})
UNALIGNED_TARGET = frozenset({"¿"})

_BE = (("am", "are", "is", "are", "are", "are"), ("was", "were", "was", "were", "were", "were"))
_THE = DETERMINERS[0]
_LOCATIVE = tuple(p for p in PREPOSITIONS if p.locative)
_ADJUNCT = tuple(p for p in PREPOSITIONS if p.en != "to")
_TO = next(p for p in PREPOSITIONS if p.en == "to")
_VOWELS = frozenset("aeiou")
# Sentence kinds and their weights.
_KINDS = ("trans", "intr", "go", "cop_adj", "cop_loc")
_KIND_WEIGHTS = (38, 14, 8, 25, 15)
_KIND_CUM = tuple(sum(_KIND_WEIGHTS[:k + 1]) for k in range(len(_KIND_WEIGHTS)))
_KIND_TOTAL = _KIND_CUM[-1]


def valid_noun_adjective():
    """All (noun index, adjective index) pairs the grammar may combine."""
    return [(n, a) for n, noun in enumerate(NOUNS) for a, adj in enumerate(ADJECTIVES)
            if noun.cls in adj.classes]


def valid_verb_object():
    """All (verb index, noun index) pairs the grammar may combine as verb + object."""
    return [(v, n) for v, verb in enumerate(VERBS) if verb.kind == "trans"
            for n, noun in enumerate(NOUNS) if noun.cls in verb.obj]


Plan = namedtuple("Plan", "kind mood past verb pron subj obj pp adj rel")
Plan.__doc__ = """The content of one sentence, before it is put into words.

kind: one of 'trans', 'intr', 'go', 'cop_adj', 'cop_loc'; mood: 'decl',
'neg' or 'q'; past: bool; verb: index into VERBS (None for the copula);
pron: a Pronoun subject or None; subj, obj: NounPhrase or None; pp:
(Preposition, NounPhrase) or None; adj: predicative adjective index or
None; rel: relative clause on the subject (verb index, object NounPhrase or
None, past) or None."""

NounPhrase = namedtuple("NounPhrase", "det adj noun plural")
NounPhrase.__doc__ = """A noun phrase of a Plan: det (a Determiner or None),
adj (adjective index or None), noun (noun index), plural (0 or 1)."""

_Placed = namedtuple("_Placed", "det adj noun")   # source token indices of a noun phrase


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


class Generator:
    """Samples sentence pairs from the grammar and lexicon.

    heldout_na: set of (noun index, adjective index) pairs and heldout_vo: set
    of (verb index, noun index) pairs into NOUNS/ADJECTIVES/VERBS that
    ``sample(rng, allow_heldout=False)`` never produces (attributive or
    predicative adjective on the noun; the noun as object of the verb, in a
    main or relative clause). Every sample records the combinations it used,
    so a caller can keep only those that contain a held-out one.
    """

    def __init__(self, heldout_na=frozenset(), heldout_vo=frozenset()):
        self.heldout_na = frozenset(heldout_na)
        self.heldout_vo = frozenset(heldout_vo)
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
        for v, n in valid_verb_object():
            self._objs[1].setdefault(v, []).append(n)
            if (v, n) not in self.heldout_vo:
                self._objs[0].setdefault(v, []).append(n)
        for name, (kept, every) in (("noun", self._adjs), ("verb", self._objs)):
            for key in every:
                if not kept.get(key):
                    raise ValueError(f"Generator: the held-out sets leave {name} index {key} "
                                     f"with no combination")
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

    # ------------------------------------------------------------------ noun phrases

    def _np(self, rng, n, full, p_adj=0.35, bare_ok=False):
        """Choose a NounPhrase for noun index n."""
        noun = NOUNS[n]
        num = 0 if noun.mass or rng.random() < 0.7 else 1
        if bare_ok and noun.mass and rng.random() < 0.3:
            det = None
        elif rng.random() < 0.5:
            det = _THE
        else:
            det = rng.choice(self._dets[(num, noun.mass)])
        adj = None
        if rng.random() < p_adj:
            adj = rng.choice(self._adjs[full][n])
        return NounPhrase(det, adj, n, num)

    def _np_en(self, s, np):
        """Emit an English noun phrase; returns its token indices (_Placed)."""
        det, adj, n, num = np
        noun = NOUNS[n]
        word = noun.en_pl if num else noun.en
        di = ai = None
        if det is not None:
            form = det.en
            if form == "a" and (ADJECTIVES[adj].en if adj is not None else word)[0] in _VOWELS:
                form = "an"
            di = s.en(form, det.pos)
        if adj is not None:
            ai = s.en(ADJECTIVES[adj].en, "ADJ")
        ni = s.en(word, "NOUN")
        if di is not None:
            s.deps.append((di, ni, "det"))
        if ai is not None:
            s.deps.append((ai, ni, "adj"))
        return _Placed(di, ai, ni)

    def _np_es(self, s, np, idx, prep=None, prep_i=None):
        """Emit the Spanish noun phrase (det noun adj), after the Spanish
        preposition tokens `prep` if given (contracting a/de + el)."""
        det, adj, n, num = np
        di, ai, ni = idx
        noun = NOUNS[n]
        g = 0 if noun.gender == "m" else 1
        det_form = None
        if det is not None:
            if noun.el_fem and num == 0 and det.en in ("the", "a"):
                det_form = det.es[0]
            else:
                det_form = det.es[2 * num + g]
        if prep is not None:
            last = len(prep) - 1
            for k, p in enumerate(prep):
                if k == last and det_form == "el" and p in ("a", "de"):
                    s.es("al" if p == "a" else "del", prep_i, di)
                    det_form = None
                else:
                    s.es(p, prep_i)
        if det_form is not None:
            s.es(det_form, di)
        s.es(noun.es_pl if num else noun.es, ni)
        if adj is not None:
            s.es(ADJECTIVES[adj].forms[2 * num + g], ai)
        return 2 * num + g

    # ------------------------------------------------------------------ sampling

    def sample(self, rng, allow_heldout=False):
        """One pair from `rng` (a random.Random): ``realize(choose(rng, ...))``."""
        return self.realize(self.choose(rng, allow_heldout))

    def choose(self, rng, allow_heldout=False):
        """Draw the content of one sentence from `rng` (a random.Random) as a
        Plan; held-out combinations only if `allow_heldout`."""
        full = 1 if allow_heldout else 0
        r = rng.random
        u = r() * _KIND_TOTAL
        kind = _KINDS[0]
        for k, w in zip(_KINDS, _KIND_CUM):
            if u < w:
                kind = k
                break
        u = r()
        mood = "q" if u < 0.15 else ("neg" if u < 0.30 else "decl")
        past = r() < 0.5

        # --- choose the content
        verb = v = obj = pp = adj = None
        if kind in ("trans", "intr", "go"):
            v = rng.choice(self._verbs[kind])
            verb = VERBS[v]
            subj_nouns = self._subj_nouns[v]
            subj_classes = verb.subj
        else:
            subj_nouns = self._all_nouns
            subj_classes = None
        pron = None
        if (subj_classes is None or "person" in subj_classes) and r() < 0.2:
            pron = rng.choice(PRONOUNS)
            subj = None
        else:
            sn = rng.choice(subj_nouns)
            subj = self._np(rng, sn, full)
        if kind == "trans":
            obj = self._np(rng, rng.choice(self._objs[full][v]), full, bare_ok=True)
            if r() < 0.15:
                p = rng.choice(_ADJUNCT)
                pp = (p, self._np(rng, rng.choice(self._pp_nouns[p.en]), full))
        elif kind == "intr":
            if r() < 0.3:
                p = rng.choice(_ADJUNCT)
                pp = (p, self._np(rng, rng.choice(self._pp_nouns[p.en]), full))
        elif kind == "go":
            pp = (_TO, self._np(rng, rng.choice(self._by_class["place"]), full))
        elif kind == "cop_adj":
            if pron is not None:
                adj = rng.choice(self._person_adjs)
            else:
                adj = rng.choice(self._adjs[full][subj.noun])
        else:
            p = rng.choice(_LOCATIVE)
            pp = (p, self._np(rng, rng.choice(self._loc_nouns), full))
        rel = None
        if subj is not None and mood != "q" and NOUNS[subj.noun].cls in ("person", "animal") \
                and r() < 0.12:
            rv = rng.choice(self._animate_verbs)
            while NOUNS[subj.noun].cls not in VERBS[rv].subj:
                rv = rng.choice(self._animate_verbs)
            robj = None
            if VERBS[rv].kind == "trans":
                robj = self._np(rng, rng.choice(self._objs[full][rv]), full, p_adj=0.2,
                                bare_ok=True)
            rel = (rv, robj, r() < 0.5)

        return Plan(kind, mood, past, v, pron, subj, obj, pp, adj, rel)

    @staticmethod
    def combos(plan):
        """The ('na', noun, adjective) and ('vo', verb, noun) lemma-index
        triples a Plan uses: adjectives on any noun phrase and predicative
        adjectives on the subject noun; objects of the main and relative verb."""
        kind, mood, past, v, pron, subj, obj, pp, adj, rel = plan
        out = []
        for np in (subj, obj, pp[1] if pp is not None else None,
                   rel[1] if rel is not None else None):
            if np is not None and np.adj is not None:
                out.append(("na", np.noun, np.adj))
        if adj is not None and subj is not None:
            out.append(("na", subj.noun, adj))
        if obj is not None:
            out.append(("vo", v, obj.noun))
        if rel is not None and rel[1] is not None:
            out.append(("vo", rel[0], rel[1].noun))
        return out

    def uses_heldout(self, plan):
        """Whether a Plan uses a held-out combination."""
        for kind, a, b in self.combos(plan):
            if (a, b) in (self.heldout_na if kind == "na" else self.heldout_vo):
                return True
        return False

    def realize(self, plan):
        """The pair of a Plan: a tuple (src, tgt, tgt alignments, deps, pos,
        root, combos). tgt alignments holds, per target token, the tuple of
        source indices it is aligned to; combos the ('na', noun, adjective) and
        ('vo', verb, noun) lemma-index triples the sentence uses (attributive
        and predicative adjectives; objects of main and relative verbs)."""
        kind, mood, past, v, pron, subj, obj, pp, adj, rel = plan
        verb = VERBS[v] if v is not None else None
        s = _Sentence()
        s.combos = self.combos(plan)
        person = pron.person if pron is not None else (5 if subj.plural else 2)
        tense = 1 if past else 0
        copula = kind in ("cop_adj", "cop_loc")

        # --- English, in English order
        def subject_en():
            if pron is not None:
                ids = [s.en(w, "PRON" if k == 0 else "DET") for k, w in enumerate(pron.en)]
                for k in ids[1:]:
                    s.deps.append((k, ids[0], "det"))
                return ids[0], ids
            idx = self._np_en(s, subj)
            return idx.noun, idx

        rel_idx = None
        q_i = not_i = aux_i = None
        if mood == "q":
            if copula:
                head = s.en(_BE[tense][person], "AUX")
            else:
                aux_i = s.en("did" if past else ("does" if person == 2 else "do"), "AUX")
            subj_head, subj_idx = subject_en()
            if not copula:
                head = s.en(verb.en, "VERB")
        else:
            subj_head, subj_idx = subject_en()
            if rel is not None:
                rv, robj, rpast = rel
                that = s.en("that", "PRON")
                rverb = VERBS[rv]
                rform = rverb.en_past if rpast else (rverb.en_3sg if person == 2 else rverb.en)
                rvi = s.en(rform, "VERB")
                s.deps.append((that, rvi, "rel"))
                s.deps.append((rvi, subj_head, "relcl"))
                robj_idx = None
                if robj is not None:
                    robj_idx = self._np_en(s, robj)
                    s.deps.append((robj_idx.noun, rvi, "obj"))
                rel_idx = (that, rvi, robj_idx)
            if copula:
                head = s.en(_BE[tense][person], "AUX")
                if mood == "neg":
                    not_i = s.en("not", "PART")
            elif mood == "neg":
                aux_i = s.en("did" if past else ("does" if person == 2 else "do"), "AUX")
                not_i = s.en("not", "PART")
                head = s.en(verb.en, "VERB")
            else:
                head = s.en(verb.en_past if past else (verb.en_3sg if person == 2 else verb.en),
                            "VERB")
        s.deps.append((subj_head, head, "subj"))
        if aux_i is not None:
            s.deps.append((aux_i, head, "aux"))
        if not_i is not None:
            s.deps.append((not_i, head, "neg"))
        obj_idx = adj_i = pp_idx = None
        if obj is not None:
            obj_idx = self._np_en(s, obj)
            s.deps.append((obj_idx.noun, head, "obj"))
        if adj is not None:
            adj_i = s.en(ADJECTIVES[adj].en, "ADJ")
            s.deps.append((adj_i, head, "attr"))
        if pp is not None:
            p_i = s.en(pp[0].en, "ADP")
            pp_idx = (p_i, self._np_en(s, pp[1]))
            s.deps.append((p_i, pp_idx[1].noun, "prep"))
            s.deps.append((pp_idx[1].noun, head, "obl"))
        if mood == "q":
            q_i = s.en("?", "PUNCT")
            s.deps.append((q_i, head, "punct"))

        # --- Spanish, in Spanish order
        if copula:
            table = ESTAR if kind == "cop_loc" or ADJECTIVES[adj].estar else SER
            vform = table[tense][person]
        else:
            vform = (verb.preterite if past else verb.present)[person]
        v_align = (head,) if aux_i is None else (aux_i, head)

        def subject_es():
            if pron is not None:
                s.es(pron.es, *subj_idx)
                return (2 if person >= 3 else 0) + (1 if pron.gender == "f" else 0)
            agr = self._np_es(s, subj, subj_idx)
            if rel is not None:
                that, rvi, robj_idx = rel_idx
                rv, robj, rpast = rel
                s.es("que", that)
                s.es((VERBS[rv].preterite if rpast else VERBS[rv].present)[person], rvi)
                if robj is not None:
                    self._np_es(s, robj, robj_idx)
            return agr

        if mood == "q":
            s.es("¿")
            s.es(vform, *v_align)
            agr = subject_es()
        else:
            agr = subject_es()
            if not_i is not None:
                s.es("no", not_i)
            s.es(vform, *v_align)
        if obj is not None:
            self._np_es(s, obj, obj_idx)
        if adj is not None:
            s.es(ADJECTIVES[adj].forms[agr], adj_i)
        if pp is not None:
            self._np_es(s, pp[1], pp_idx[1], prep=pp[0].es, prep_i=pp_idx[0])
        if q_i is not None:
            s.es("?", q_i)
        return s.src, s.tgt, s.tal, s.deps, s.pos, head, s.combos

# ------------------------------------------------------------------ plans from words

_NOUN_BY_EN = {}
for _n, _noun in enumerate(NOUNS):
    _NOUN_BY_EN[_noun.en] = (_n, 0)
    _NOUN_BY_EN.setdefault(_noun.en_pl, (_n, 1))
_ADJ_BY_EN = {a.en: i for i, a in enumerate(ADJECTIVES)}
_VERB_BY_EN = {v.en: i for i, v in enumerate(VERBS)}
_DET_BY_EN = {d.en: d for d in DETERMINERS}
_DET_BY_EN["an"] = _DET_BY_EN["a"]
_PRON_BY_EN = {" ".join(p.en): p for p in PRONOUNS}
_PREP_BY_EN = {p.en: p for p in PREPOSITIONS}


def _lookup(table, word, what):
    try:
        return table[word]
    except KeyError:
        raise ValueError(f"plan: unknown {what} {word!r}") from None


def _np_from_words(text, what):
    """'the black cat' -> its NounPhrase."""
    words = text.split()
    if not 1 <= len(words) <= 3:
        raise ValueError(f"plan: {what} must be '[det] [adj] noun', got {text!r}")
    det = _lookup(_DET_BY_EN, words[0], "determiner") if len(words) > 1 or \
        words[0] in _DET_BY_EN else None
    rest = words[1:] if det is not None else words
    if not rest:
        raise ValueError(f"plan: {what} has no noun: {text!r}")
    adj = _lookup(_ADJ_BY_EN, rest[0], "adjective") if len(rest) == 2 else None
    if len(rest) > 2:
        raise ValueError(f"plan: {what} must be '[det] [adj] noun', got {text!r}")
    n, num = _lookup(_NOUN_BY_EN, rest[-1], "noun")
    return NounPhrase(det, adj, n, num)


def plan(kind, subj, verb=None, obj=None, adj=None, pp=None, mood="decl", past=False,
         rel=None):
    """A Plan from English words, for sentences chosen by hand.

    subj: a pronoun ('we', 'you all') or a noun phrase '[det] [adj] noun'
    ('the black cat', 'two dogs'); verb: an English base form ('drink');
    obj: a noun phrase; adj: an adjective for kind 'cop_adj'; pp:
    (preposition, noun phrase), e.g. ('in', 'the house'); rel: (verb, object
    noun phrase or None, past) for a relative clause on the subject.

    >>> Generator().realize(plan("cop_adj", "the ball", adj="blue"))[1]
    ['la', 'bola', 'es', 'azul']
    """
    if kind not in _KINDS:
        raise ValueError(f"plan: kind must be one of {_KINDS}, got {kind!r}")
    if mood not in ("decl", "neg", "q"):
        raise ValueError(f"plan: mood must be 'decl', 'neg' or 'q', got {mood!r}")
    pron = _PRON_BY_EN.get(subj)
    subj_np = None if pron is not None else _np_from_words(subj, "subj")
    v = _lookup(_VERB_BY_EN, verb, "verb") if verb is not None else None
    if (v is None) != (kind in ("cop_adj", "cop_loc")):
        raise ValueError(f"plan: kind {kind!r} {'takes no' if v is not None else 'needs a'} verb")
    if v is not None and VERBS[v].kind != kind:
        raise ValueError(f"plan: verb {verb!r} is {VERBS[v].kind!r}, not {kind!r}")
    if (obj is not None) != (kind == "trans"):
        raise ValueError(f"plan: obj is required for kind 'trans' and only for it")
    if (adj is not None) != (kind == "cop_adj"):
        raise ValueError(f"plan: adj is required for kind 'cop_adj' and only for it")
    if kind in ("go", "cop_loc") and pp is None:
        raise ValueError(f"plan: kind {kind!r} needs pp")
    obj_np = _np_from_words(obj, "obj") if obj is not None else None
    a = _lookup(_ADJ_BY_EN, adj, "adjective") if adj is not None else None
    pp_t = None
    if pp is not None:
        pp_t = (_lookup(_PREP_BY_EN, pp[0], "preposition"), _np_from_words(pp[1], "pp"))
    rel_t = None
    if rel is not None:
        rv = _lookup(_VERB_BY_EN, rel[0], "verb")
        rel_t = (rv, _np_from_words(rel[1], "rel object") if rel[1] else None, bool(rel[2]))
    return Plan(kind, mood, bool(past), v, pron, subj_np, obj_np, pp_t, a, rel_t)
