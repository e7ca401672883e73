"""The bilingual English-Spanish lexicon of the generated corpus, as plain data.

Every entry is written once below as a ``|``-separated line and parsed at
import into small named tuples; nothing here draws random numbers.

Conventions (they keep the translation a function of the English sentence, so
a model can reach 100% on it):

* Nouns carry a semantic class (``person``, ``animal``, ``thing``, ``food``,
  ``drink``, ``place``) that the grammar uses to pick plausible verbs,
  adjectives and prepositions. Mass nouns (``milk``, ``bread``) are singular
  only and may appear without a determiner as objects ("drinks milk" ->
  "bebe leche"). English person nouns without grammatical gender ("doctor",
  "friend") translate to the Spanish masculine form.
* Spanish plurals follow the regular rule (vowel + s, consonant + es, z -> ces,
  accent dropped in -ón/-ín/-és/-ús); irregular plurals are written out.
* Feminine nouns with a stressed initial a (``agua``) take ``el``/``un`` in the
  singular ("el agua fría"), as Spanish requires.
* Adjectives inflect for gender and number (negro/negra/negros/negras;
  azul/azules, grande/grandes are invariable in gender) and follow the noun in
  Spanish. ``estar`` adjectives (states: cansado, sucio, roto ...) take
  ``estar`` as copula, all others ``ser``. Each adjective has an English
  order class (opinion, size, quality, age, shape, colour): two adjectives on
  one noun come from two different classes, in that order ("the small black
  dog", never "the black small dog"), which also keeps out contradictions
  such as "big small" or "hot cold". Adjectives that read as a modifier of
  the next one ("light" and "dark" before a colour, "pretty" before any
  adjective) have no class and are never paired.
* Verbs: regular -ar/-er/-ir conjugation in the present and the preterite
  (with the spelling changes -car -> qué, -gar -> gué, -zar -> cé in the first
  person singular preterite); ser, estar, tener, ir, hacer, ver and dormir are
  irregular and written out. Some verbs take persons as direct objects ("see",
  "visit", "hug"; used from grammar version 2 on); Spanish then puts the
  personal "a" before the object ("the boy sees the girl" -> "el niño ve a la
  niña"). Animals are never direct objects (Spanish would hesitate between
  "ve el perro" and "ve al perro"). English verbs whose past equals their
  base form (read, cut, put) are left out: "i read the book" would be
  ambiguous.
* Subject pronouns: i/yo, you/tú (singular only), he/él, she/ella,
  we/nosotros, "you all"/vosotros, they/ellos; yo, tú and vosotros take
  masculine agreement by convention.
"""
from collections import namedtuple

__all__ = ["Noun", "Adjective", "Verb", "Determiner", "Pronoun", "Preposition",
           "NOUNS", "ADJECTIVES", "VERBS", "DETERMINERS", "PRONOUNS", "PREPOSITIONS",
           "SER", "ESTAR", "NOUN_CLASSES", "ADJECTIVE_ORDER", "lemma_counts",
           "spanish_plural"]

NOUN_CLASSES = ("person", "animal", "thing", "food", "drink", "place")
_ANIMATE = ("person", "animal")

Noun = namedtuple("Noun", "en en_pl es es_pl gender cls mass el_fem")
Noun.__doc__ = """A noun lemma: English singular/plural, Spanish singular/plural,
gender ('m' or 'f'), semantic class, mass (singular only) and el_fem (a
feminine noun taking el/un in the singular)."""

Adjective = namedtuple("Adjective", "en forms classes estar order")
Adjective.__doc__ = """An adjective lemma: English form, Spanish forms indexed
[masc sg, fem sg, masc pl, fem pl], the noun classes it applies to, whether
the copula is estar (a state) rather than ser, and its English order class
(an index into ADJECTIVE_ORDER, or None for an adjective never paired with
another)."""

Verb = namedtuple("Verb", "en en_3sg en_past es present preterite kind subj obj")
Verb.__doc__ = """A verb lemma: English base, 3rd singular present, past;
Spanish infinitive with its present and preterite forms indexed by person
[1sg, 2sg, 3sg, 1pl, 2pl, 3pl]; kind ('trans', 'intr' or 'go'); the noun
classes allowed as subject and as object (empty for intransitives)."""

Determiner = namedtuple("Determiner", "en es numbers mass pos")
Determiner.__doc__ = """A determiner: English form, Spanish forms [masc sg, fem
sg, masc pl, fem pl] (None where the number is not allowed), the numbers it
goes with (0 singular, 1 plural), whether it goes with mass nouns, and its
source part of speech (DET or NUM)."""

Pronoun = namedtuple("Pronoun", "en es person gender")
Pronoun.__doc__ = """A subject pronoun: English tokens (tuple, "you all" is two),
Spanish form, person index 0-5 ([1sg, 2sg, 3sg, 1pl, 2pl, 3pl]) and the
gender that adjectives agree with."""

Preposition = namedtuple("Preposition", "en es classes locative")
Preposition.__doc__ = """A preposition: English form, Spanish tokens (tuple;
"under" -> ("debajo", "de")), the noun classes of its object, and whether it
states a location (usable after the copula, which is then estar)."""


# ------------------------------------------------------------------ morphology

_UNACCENT = str.maketrans("áéíóú", "aeiou")


def spanish_plural(word):
    """The regular Spanish plural of `word` (a noun or an adjective form).

    Vowel + s (gato -> gatos), consonant + es (azul -> azules), z -> ces
    (feliz -> felices), and the written accent of a final stressed syllable
    ending in n or s is dropped (ratón -> ratones, autobús -> autobuses).
    """
    if not isinstance(word, str) or not word:
        raise ValueError(f"spanish_plural: word must be a non-empty str, got {word!r}")
    if word[-1] in "aeiouáéíóú":
        return word + "s"
    if word[-1] == "z":
        return word[:-1] + "ces"
    if word[-1] in "ns" and len(word) >= 2 and word[-2] in "áéíóú":
        return word[:-2] + word[-2].translate(_UNACCENT) + word[-1] + "es"
    return word + "es"


def _english_plural(word):
    if word.endswith(("s", "sh", "ch", "x", "z")):
        return word + "es"
    if word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _english_past(word):
    if word.endswith("e"):
        return word + "d"
    if word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ied"
    return word + "ed"


_ENDINGS = {
    "ar": (("o", "as", "a", "amos", "áis", "an"), ("é", "aste", "ó", "amos", "asteis", "aron")),
    "er": (("o", "es", "e", "emos", "éis", "en"),
           ("í", "iste", "ió", "imos", "isteis", "ieron")),
    "ir": (("o", "es", "e", "imos", "ís", "en"),
           ("í", "iste", "ió", "imos", "isteis", "ieron")),
}


def _conjugate(infinitive):
    """Regular present and preterite of a Spanish -ar/-er/-ir infinitive."""
    stem, ending = infinitive[:-2], infinitive[-2:]
    present, preterite = _ENDINGS[ending]
    present = tuple(stem + e for e in present)
    preterite = [stem + e for e in preterite]
    for tail, repl in (("car", "qu"), ("gar", "gu"), ("zar", "c")):
        if infinitive.endswith(tail):              # toqué, llegué, lancé
            preterite[0] = infinitive[:-3] + repl + "é"
    return present, tuple(preterite)


# ------------------------------------------------------------------ nouns
# english[/plural] | spanish[/plural] | gender | class [| mass] [| elfem]

_NOUNS = """
man/men|hombre|m|person
woman/women|mujer|f|person
boy|niño|m|person
girl|niña|f|person
king|rey|m|person
queen|reina|f|person
father|padre|m|person
mother|madre|f|person
brother|hermano|m|person
sister|hermana|f|person
son|hijo|m|person
daughter|hija|f|person
uncle|tío|m|person
aunt|tía|f|person
grandfather|abuelo|m|person
grandmother|abuela|f|person
prince|príncipe|m|person
princess/princesses|princesa|f|person
waiter|camarero|m|person
waitress/waitresses|camarera|f|person
doctor|médico|m|person
farmer|granjero|m|person
baker|panadero|m|person
friend|amigo|m|person
neighbor|vecino|m|person
cook|cocinero|m|person
soldier|soldado|m|person
student|estudiante|m|person
cat|gato|m|animal
dog|perro|m|animal
horse|caballo|m|animal
cow|vaca|f|animal
bird|pájaro|m|animal
mouse/mice|ratón|m|animal
rabbit|conejo|m|animal
duck|pato|m|animal
hen|gallina|f|animal
pig|cerdo|m|animal
goat|cabra|f|animal
lion|león|m|animal
tiger|tigre|m|animal
bear|oso|m|animal
wolf/wolves|lobo|m|animal
fox/foxes|zorro|m|animal
monkey|mono|m|animal
elephant|elefante|m|animal
frog|rana|f|animal
snake|serpiente|f|animal
turtle|tortuga|f|animal
bee|abeja|f|animal
spider|araña|f|animal
owl|búho|m|animal
whale|ballena|f|animal
dolphin|delfín|m|animal
giraffe|jirafa|f|animal
zebra|cebra|f|animal
camel|camello|m|animal
donkey|burro|m|animal
parrot|loro|m|animal
shark|tiburón|m|animal
squirrel|ardilla|f|animal
bull|toro|m|animal
ant|hormiga|f|animal
butterfly|mariposa|f|animal
ball|bola|f|thing
book|libro|m|thing
table|mesa|f|thing
chair|silla|f|thing
box|caja|f|thing
cup|taza|f|thing
glass|vaso|m|thing
plate|plato|m|thing
spoon|cuchara|f|thing
fork|tenedor|m|thing
knife/knives|cuchillo|m|thing
bottle|botella|f|thing
door|puerta|f|thing
window|ventana|f|thing
key|llave|f|thing
bed|cama|f|thing
lamp|lámpara|f|thing
clock|reloj|m|thing
phone|teléfono|m|thing
pencil|lápiz|m|thing
letter|carta|f|thing
car|coche|m|thing
bicycle|bicicleta|f|thing
boat|barco|m|thing
shoe|zapato|m|thing
hat|sombrero|m|thing
shirt|camisa|f|thing
dress|vestido|m|thing
bag|bolsa|f|thing
basket|cesta|f|thing
toy|juguete|m|thing
umbrella|paraguas/paraguas|m|thing
picture|cuadro|m|thing
mirror|espejo|m|thing
candle|vela|f|thing
rope|cuerda|f|thing
drum|tambor|m|thing
guitar|guitarra|f|thing
piano|piano|m|thing
coat|abrigo|m|thing
sock|calcetín|m|thing
blanket|manta|f|thing
pillow|almohada|f|thing
towel|toalla|f|thing
computer|computadora|f|thing
map|mapa|m|thing
newspaper|periódico|m|thing
ring|anillo|m|thing
flower|flor|f|thing
tree|árbol|m|thing
stone|piedra|f|thing
cake|pastel|m|food
apple|manzana|f|food
banana|plátano|m|food
orange|naranja|f|food
egg|huevo|m|food
salad|ensalada|f|food
cookie|galleta|f|food
sandwich|bocadillo|m|food
carrot|zanahoria|f|food
potato/potatoes|patata|f|food
tomato/tomatoes|tomate|m|food
pear|pera|f|food
grape|uva|f|food
lemon|limón|m|food
strawberry|fresa|f|food
pie|tarta|f|food
candy/candies|caramelo|m|food
pizza|pizza|f|food
bread|pan|m|food|mass
cheese|queso|m|food|mass
soup|sopa|f|food|mass
rice|arroz|m|food|mass
meat|carne|f|food|mass
fish|pescado|m|food|mass
chocolate|chocolate|m|food|mass
sugar|azúcar|m|food|mass
butter|mantequilla|f|food|mass
milk|leche|f|drink|mass
water|agua|f|drink|mass|elfem
juice|jugo|m|drink|mass
coffee|café|m|drink|mass
tea|té|m|drink|mass
wine|vino|m|drink|mass
beer|cerveza|f|drink|mass
lemonade|limonada|f|drink|mass
soda|refresco|m|drink|mass
house|casa|f|place
park|parque|m|place
garden|jardín|m|place
school|escuela|f|place
kitchen|cocina|f|place
room|habitación|f|place
street|calle|f|place
city/cities|ciudad|f|place
forest|bosque|m|place
river|río|m|place
beach/beaches|playa|f|place
field|campo|m|place
farm|granja|f|place
market|mercado|m|place
church/churches|iglesia|f|place
library/libraries|biblioteca|f|place
store|tienda|f|place
office|oficina|f|place
hospital|hospital|m|place
lake|lago|m|place
mountain|montaña|f|place
bridge|puente|m|place
island|isla|f|place
village|pueblo|m|place
castle|castillo|m|place
zoo|zoológico|m|place
restaurant|restaurante|m|place
station|estación|f|place
square|plaza|f|place
cave|cueva|f|place
"""


def _parse_nouns(text):
    out = []
    for line in text.strip().splitlines():
        f = line.split("|")
        en, _, en_pl = f[0].partition("/")
        es, _, es_pl = f[1].partition("/")
        flags = set(f[4:])
        out.append(Noun(en, en_pl or _english_plural(en), es, es_pl or spanish_plural(es),
                        f[2], f[3], "mass" in flags, "elfem" in flags))
    return tuple(out)


NOUNS = _parse_nouns(_NOUNS)

# ------------------------------------------------------------------ adjectives
# english | spanish masc sg[/masc pl] | classes ('*' = every class) [| estar]
# Spanish ending in -o inflects o/a/os/as; anything else is gender-invariable.

_ADJECTIVES = """
black|negro|thing animal place
white|blanco|thing animal place
red|rojo|thing animal place
blue|azul|thing animal place
green|verde|thing animal place
yellow|amarillo|thing animal place
brown|marrón|thing animal place
gray|gris|thing animal place
purple|morado|thing animal place
pink|rosado|thing animal place
golden|dorado|thing animal place
big|grande|*
small|pequeño|*
huge|enorme|thing animal place person
tiny|diminuto|thing animal food
long|largo|thing animal place
tall|alto|person animal thing
short|bajo|person
heavy|pesado|thing animal
light|ligero|thing
wide|ancho|place thing
round|redondo|thing food
thin|delgado|person animal
fat|gordo|person animal
old|viejo|person animal thing place
new|nuevo|thing place
young|joven/jóvenes|person animal
good|bueno|*
bad|malo|*
beautiful|hermoso|person animal thing place
pretty|bonito|person animal thing place
ugly|feo|person animal thing place
expensive|caro|thing food drink
cheap|barato|thing food drink
strong|fuerte|person animal drink
weak|débil|person animal
fast|rápido|person animal
slow|lento|person animal
happy|feliz|person animal
sad|triste|person animal
smart|inteligente|person animal
brave|valiente|person animal
kind|amable|person
lazy|perezoso|person animal
funny|gracioso|person animal
shy|tímido|person animal
friendly|simpático|person
famous|famoso|person animal place
rich|rico|person
poor|pobre|person
sweet|dulce|food drink
delicious|delicioso|food drink
fresh|fresco|food drink
hot|caliente|food drink|estar
cold|frío|food drink place
sour|agrio|food drink
salty|salado|food
dry|seco|thing food place
soft|suave|thing food
hard|duro|thing food
modern|moderno|thing place
ancient|antiguo|thing place
dark|oscuro|thing place
quiet|tranquilo|place animal person
noisy|ruidoso|place animal person
dangerous|peligroso|animal place thing
strange|extraño|*
hungry|hambriento|person animal|estar
tired|cansado|person animal|estar
sick|enfermo|person animal|estar
angry|enojado|person animal|estar
busy|ocupado|person|estar
wet|mojado|thing animal person|estar
clean|limpio|thing place|estar
dirty|sucio|thing place animal person|estar
full|lleno|thing|estar
empty|vacío|thing place|estar
broken|roto|thing|estar
closed|cerrado|thing place|estar
"""


# The English order of two adjectives before a noun, by class; an adjective
# not listed is never paired with another.
ADJECTIVE_ORDER = ("opinion", "size", "quality", "age", "shape", "colour")
_ORDER = """
opinion: good bad beautiful ugly expensive cheap strange famous delicious dangerous kind
 friendly funny smart brave lazy shy rich poor happy sad fast slow
size: big small huge tiny long tall short wide heavy thin fat
quality: hot cold wet dry clean dirty full empty broken closed soft hard sweet sour salty
 fresh strong weak quiet noisy hungry tired sick angry busy
age: old new young modern ancient
shape: round
colour: black white red blue green yellow brown gray purple pink golden
"""
_UNPAIRED = frozenset({"light", "dark", "pretty"})


def _parse_order(text):
    order = {}
    for k, chunk in enumerate(text.replace("\n ", " ").strip().split("\n")):
        name, _, words = chunk.partition(":")
        assert name == ADJECTIVE_ORDER[k], name
        for w in words.split():
            order[w] = k
    return order


_ADJ_ORDER = _parse_order(_ORDER)


def _parse_adjectives(text):
    out = []
    for line in text.strip().splitlines():
        f = line.split("|")
        sg, _, pl = f[1].partition("/")
        if sg.endswith("o") and not pl:
            forms = (sg, sg[:-1] + "a", sg + "s", sg[:-1] + "as")
        else:
            pl = pl or spanish_plural(sg)
            forms = (sg, sg, pl, pl)
        classes = NOUN_CLASSES if f[2] == "*" else tuple(f[2].split())
        if f[0] not in _ADJ_ORDER and f[0] not in _UNPAIRED:
            raise ValueError(f"lexicon: adjective {f[0]!r} has no English order class")
        out.append(Adjective(f[0], forms, frozenset(classes), len(f) > 3 and f[3] == "estar",
                             _ADJ_ORDER.get(f[0])))
    return tuple(out)


ADJECTIVES = _parse_adjectives(_ADJECTIVES)

# ------------------------------------------------------------------ verbs
# english base[/3sg]/past or '-' for the regular past | spanish infinitive |
# kind | subject classes ('A' animate, 'P' person) | object classes ('person'
# objects take the personal "a" in Spanish)

_IRREGULAR = {
    "tener": (("tengo", "tienes", "tiene", "tenemos", "tenéis", "tienen"),
              ("tuve", "tuviste", "tuvo", "tuvimos", "tuvisteis", "tuvieron")),
    "ir": (("voy", "vas", "va", "vamos", "vais", "van"),
           ("fui", "fuiste", "fue", "fuimos", "fuisteis", "fueron")),
    "hacer": (("hago", "haces", "hace", "hacemos", "hacéis", "hacen"),
              ("hice", "hiciste", "hizo", "hicimos", "hicisteis", "hicieron")),
    "ver": (("veo", "ves", "ve", "vemos", "veis", "ven"),
            ("vi", "viste", "vio", "vimos", "visteis", "vieron")),
    "dormir": (("duermo", "duermes", "duerme", "dormimos", "dormís", "duermen"),
               ("dormí", "dormiste", "durmió", "dormimos", "dormisteis", "durmieron")),
}

# The copula. English past "was/were" is a state, so Spanish uses the
# imperfect (era, estaba) rather than the preterite (fue, estuvo).
SER = (("soy", "eres", "es", "somos", "sois", "son"),
       ("era", "eras", "era", "éramos", "erais", "eran"))
ESTAR = (("estoy", "estás", "está", "estamos", "estáis", "están"),
         ("estaba", "estabas", "estaba", "estábamos", "estabais", "estaban"))

_VERBS = """
drink/drank|beber|trans|A|drink
eat/ate|comer|trans|A|food
see/saw|ver|trans|A|thing food drink place person
buy/bought|comprar|trans|P|thing food drink
sell/sold|vender|trans|P|thing food drink
take/took|tomar|trans|P|thing food drink
carry/-|llevar|trans|A|thing food person
wash/-|lavar|trans|P|thing food person
break/broke|romper|trans|A|thing
open/-|abrir|trans|P|thing
paint/-|pintar|trans|P|thing place person
clean/-|limpiar|trans|P|thing place
use/-|usar|trans|P|thing
need/-|necesitar|trans|A|thing food drink
cook/-|cocinar|trans|P|food
prepare/-|preparar|trans|P|food drink
catch/caught|atrapar|trans|A|thing person
throw/threw|lanzar|trans|P|thing
push/-|empujar|trans|A|thing person
touch/-|tocar|trans|A|thing food person
watch/-|mirar|trans|A|thing place person
fill/-|llenar|trans|P|thing
lift/-|levantar|trans|A|thing
share/-|compartir|trans|A|food drink
hide/hid|esconder|trans|A|thing food
keep/kept|guardar|trans|P|thing food
visit/-|visitar|trans|P|place person
repair/-|reparar|trans|P|thing
draw/drew|dibujar|trans|P|thing place person
study/-|estudiar|trans|P|thing
receive/-|recibir|trans|P|thing food drink
sweep/swept|barrer|trans|P|place
leave/left|dejar|trans|A|thing food
kick/-|patear|trans|A|thing
decorate/-|decorar|trans|P|thing place
hug/hugged|abrazar|trans|A|thing person
chew/-|masticar|trans|A|food
accept/-|aceptar|trans|P|thing food drink
have/has/had|tener|trans|A|thing food drink
make/made|hacer|trans|P|thing food
run/ran|correr|intr|A|
walk/-|caminar|intr|A|
swim/swam|nadar|intr|A|
jump/-|saltar|intr|A|
sing/sang|cantar|intr|A|
dance/-|bailar|intr|P|
work/-|trabajar|intr|P|
rest/-|descansar|intr|A|
cry/-|llorar|intr|A|
arrive/-|llegar|intr|A|
travel/-|viajar|intr|P|
shout/-|gritar|intr|A|
breathe/-|respirar|intr|A|
wait/-|esperar|intr|A|
sleep/slept|dormir|intr|A|
live/-|vivir|intr|A|
climb/-|trepar|intr|A|
bark/-|ladrar|intr|animal|
talk/-|hablar|intr|P|
listen/-|escuchar|intr|A|
learn/-|aprender|intr|A|
answer/-|responder|intr|P|
win/won|ganar|intr|A|
return/-|regresar|intr|A|
pray/-|rezar|intr|P|
cough/-|toser|intr|A|
sneeze/-|estornudar|intr|A|
go/goes/went|ir|go|A|
"""


def _parse_verbs(text):
    out = []
    for line in text.strip().splitlines():
        en, es, kind, subj, obj = line.split("|")
        parts = en.split("/")
        base = parts[0]
        third = parts[1] if len(parts) == 3 else _english_plural(base)
        past = parts[-1] if parts[-1] != "-" else _english_past(base)
        present, preterite = _IRREGULAR.get(es) or _conjugate(es)
        subj = {"A": _ANIMATE, "P": ("person",)}.get(subj, (subj,))
        out.append(Verb(base, third, past, es, present, preterite, kind,
                        frozenset(subj), frozenset(obj.split())))
    return tuple(out)


VERBS = _parse_verbs(_VERBS)

# ------------------------------------------------------------------ closed classes

DETERMINERS = (
    Determiner("the", ("el", "la", "los", "las"), (0, 1), True, "DET"),
    Determiner("a", ("un", "una", None, None), (0,), False, "DET"),   # "an" before a vowel
    Determiner("some", (None, None, "unos", "unas"), (1,), False, "DET"),
    Determiner("this", ("este", "esta", None, None), (0,), True, "DET"),
    Determiner("these", (None, None, "estos", "estas"), (1,), False, "DET"),
    Determiner("my", ("mi", "mi", "mis", "mis"), (0, 1), True, "DET"),
    Determiner("your", ("tu", "tu", "tus", "tus"), (0, 1), True, "DET"),
    Determiner("his", ("su", "su", "sus", "sus"), (0, 1), True, "DET"),
    Determiner("her", ("su", "su", "sus", "sus"), (0, 1), True, "DET"),
    Determiner("our", ("nuestro", "nuestra", "nuestros", "nuestras"), (0, 1), True, "DET"),
    Determiner("their", ("su", "su", "sus", "sus"), (0, 1), True, "DET"),
    Determiner("many", (None, None, "muchos", "muchas"), (1,), False, "DET"),
    Determiner("two", (None, None, "dos", "dos"), (1,), False, "NUM"),
    Determiner("three", (None, None, "tres", "tres"), (1,), False, "NUM"),
)

PRONOUNS = (
    Pronoun(("i",), "yo", 0, "m"),
    Pronoun(("you",), "tú", 1, "m"),
    Pronoun(("he",), "él", 2, "m"),
    Pronoun(("she",), "ella", 2, "f"),
    Pronoun(("we",), "nosotros", 3, "m"),
    Pronoun(("you", "all"), "vosotros", 4, "m"),
    Pronoun(("they",), "ellos", 5, "m"),
)

_LOC = frozenset({"thing", "place"})
PREPOSITIONS = (
    Preposition("in", ("en",), _LOC, True),
    Preposition("on", ("sobre",), _LOC, True),
    Preposition("under", ("debajo", "de"), _LOC, True),
    Preposition("near", ("cerca", "de"), _LOC, True),
    Preposition("behind", ("detrás", "de"), _LOC, True),
    Preposition("inside", ("dentro", "de"), _LOC, True),
    Preposition("outside", ("fuera", "de"), _LOC, True),
    Preposition("above", ("encima", "de"), _LOC, True),
    Preposition("with", ("con",), frozenset({"person", "animal", "thing"}), False),
    Preposition("without", ("sin",), frozenset({"person", "animal", "thing"}), False),
    Preposition("to", ("a",), frozenset({"place"}), False),   # only after "go"
)


def lemma_counts():
    """Number of lemmas per part of speech, e.g. {'noun': 168, ...}; the
    function words the grammar adds (not, that, do, be, all) are counted
    under 'other'."""
    return {"noun": len(NOUNS), "adjective": len(ADJECTIVES), "verb": len(VERBS),
            "determiner": len(DETERMINERS), "pronoun": len(PRONOUNS),
            "preposition": len(PREPOSITIONS), "other": 5}
