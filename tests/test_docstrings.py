"""Every public function, class, method and property has a docstring.

Public means reachable from the package without a leading underscore: for
each module below, the names in its ``__all__`` when it defines one, else the
functions and classes defined in the module itself whose names do not start
with ``_``; for each such class, the methods (plain, static, class) and
properties defined in the class's own ``__dict__`` whose names do not start
with ``_``. Constants and submodules listed in ``__all__`` are not checked
(the submodules that count are walked in their own right).

A docstring counts when it has at least MIN_WORDS words. The docstrings that
dataclasses and namedtuples generate (``Name(field, ...)``) do not count.
A method that overrides a base-class method which has a docstring may keep
the base's (the contract is the same), except ``forward`` and ``backward``,
whose arguments and shapes are each class's own. Every module of the package
without a leading underscore is either walked or named in NOT_WALKED.

The test imports the package but never torch, and reads no model files.
"""
import importlib
import inspect
import pkgutil
import sys

import pytest

MIN_WORDS = 3

# Modules whose public names are checked; "pkg.*" adds every submodule of pkg
# (recursively) whose name has no leading underscore.
MODULES = [
    "pytransformer", "pytransformer.ops", "pytransformer.reference", "pytransformer.autograd",
    "pytransformer.nn", "pytransformer.nn.*", "pytransformer.optim", "pytransformer.optim.*",
    "pytransformer.checkpoint", "pytransformer.safetensors",
    "pytransformer.data", "pytransformer.decode", "pytransformer.translator",
    "pytransformer.training", "pytransformer.explain", "pytransformer.explain.*",
    "pytransformer.pretrained", "pytransformer.plot", "pytransformer.distributed",
    "pytransformer.validation", "pytransformer.runtime",
    "pytransformer.export", "pytransformer.export.*",
]

# Modules of the package the walk does not enter, with the reason. Any other
# module without a leading underscore must be in MODULES (so a new public
# module cannot be missed).
NOT_WALKED = {
    "pytransformer.cli": "the command line, documented by its --help",
    "pytransformer.pretrained.cli": "the command line, documented by its --help",
    "pytransformer.bench": "benchmark scripts",
    "pytransformer.autograd.": "public names checked through pytransformer.autograd.__all__",
    "pytransformer.data.": "public names checked through pytransformer.data.__all__",
    "pytransformer.pretrained.": "public names checked through pytransformer.pretrained.__all__",
}

# Overrides that must carry their own docstring even when the base has one.
OWN_DOC_REQUIRED = {"forward", "backward"}


def module_names(specs=MODULES):
    """Expand MODULES into a sorted list of importable module names."""
    names = set()
    for spec in specs:
        if spec.endswith(".*"):
            pkg = importlib.import_module(spec[:-2])
            for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
                if not any(part.startswith("_") for part in info.name.split(".")):
                    names.add(info.name)
        else:
            names.add(spec)
    return sorted(names)


def public_names(module):
    """The names of `module` that are public: __all__, else its own defs."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [name for name, obj in vars(module).items()
            if not name.startswith("_")
            and (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj))
            and getattr(obj, "__module__", None) == module.__name__]


def _generated_doc(cls, doc):
    """True for the __doc__ a dataclass or namedtuple writes for itself."""
    generated = (hasattr(cls, "__dataclass_fields__")
                 or (issubclass(cls, tuple) and hasattr(cls, "_fields")))
    return generated and doc.startswith(cls.__name__ + "(")


def _short(doc):
    return doc is None or len(doc.split()) < MIN_WORDS


def _inherited_doc(cls, name):
    """The docstring of the first base class that defines `name`, or None."""
    for base in cls.__mro__[1:]:
        if name in vars(base):
            member = vars(base)[name]
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            return getattr(member, "__doc__", None)
    return None


def class_problems(cls, qualname):
    """The undocumented parts of one class: the class itself, its methods and
    properties defined in its own body."""
    problems = []
    doc = cls.__dict__.get("__doc__")
    if _short(doc) or _generated_doc(cls, doc):
        problems.append(qualname)
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        if not (isinstance(member, property) or inspect.isfunction(member)
                or inspect.isbuiltin(member)):
            continue
        if not _short(member.__doc__):       # a property's __doc__: doc= or its getter's

            continue
        if name not in OWN_DOC_REQUIRED and not _short(_inherited_doc(cls, name)):
            continue
        problems.append(f"{qualname}.{name}")
    return problems


def undocumented(specs=MODULES):
    """Every public object of the modules in `specs` that lacks a docstring
    of MIN_WORDS words, as sorted 'module.name[.member]' strings."""
    problems = set()
    seen = set()
    for modname in module_names(specs):
        module = importlib.import_module(modname)
        for name in public_names(module):
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
                continue                     # constants, submodules
            if id(obj) in seen:              # re-exported: report it once, where defined
                continue
            seen.add(id(obj))
            where = f"{getattr(obj, '__module__', modname)}.{obj.__qualname__}"
            if inspect.isclass(obj):
                problems.update(class_problems(obj, where))
            elif _short(obj.__doc__):
                problems.add(where)
    return sorted(problems)


def test_public_api_is_documented():
    missing = undocumented()
    assert not missing, (f"{len(missing)} public objects lack a docstring of at least "
                         f"{MIN_WORDS} words:\n  " + "\n  ".join(missing))


def test_walk_covers_the_package():
    """The walk reaches the modules and members it is meant to check."""
    names = module_names()
    for expected in ("pytransformer.nn.transformer", "pytransformer.explain.trace",
                     "pytransformer.explain.html", "pytransformer.ops"):
        assert expected in names
    assert not any(n.split(".")[-1].startswith("_") for n in names)
    import pytransformer.nn.module as module
    assert "Module" in public_names(module)
    assert "torch" not in sys.modules


def test_every_public_module_is_walked_or_excused():
    import pytransformer

    walked = set(module_names())
    missed = [info.name for info in pkgutil.walk_packages(pytransformer.__path__,
                                                          "pytransformer.")
              if not any(part.startswith("_") for part in info.name.split(".")[1:])
              and info.name not in walked
              and not any(info.name.startswith(prefix) for prefix in NOT_WALKED)]
    assert missed == [], f"add these modules to MODULES or NOT_WALKED: {missed}"


def test_detects_a_missing_docstring(monkeypatch):
    """Removing one docstring (function, class, method, property, forward
    override) makes the check report exactly that object."""
    from pytransformer import nn, ops
    from pytransformer.nn import layers

    specs = ["pytransformer.ops", "pytransformer.nn.layers"]
    assert undocumented(specs) == []
    monkeypatch.setattr(ops.softmax, "__doc__", None)
    monkeypatch.setattr(layers.Linear, "__doc__", "A layer.")
    monkeypatch.setattr(layers.Linear.forward, "__doc__", None)
    assert undocumented(specs) == ["pytransformer.nn.layers.Linear",
                                   "pytransformer.nn.layers.Linear.forward",
                                   "pytransformer.ops._softmax.softmax"]
    assert nn.Linear is layers.Linear


def test_rules_on_a_synthetic_module(monkeypatch):
    """Properties, generated dataclass/namedtuple docs, overrides (inherit
    the base's docstring, except forward), names outside __all__ and
    underscore names, each judged by the rule in the module docstring."""
    import collections
    import dataclasses
    import types

    mod = types.ModuleType("fake_docs_module")

    class Base:
        """A documented base class."""

        def forward(self, x):
            """The base computation on x."""

        def extra_repr(self):
            """The extra text shown by repr()."""

    class Child(Base):
        """A documented child class."""

        def forward(self, x):                       # own docstring required
            return x

        def extra_repr(self):                       # inherits Base's
            return ""

        @property
        def size(self):
            return 1

        width = property(lambda self: 1, doc="The width in columns.")

        @staticmethod
        def make():
            """Two words"""

        def _private(self):
            pass

    @dataclasses.dataclass
    class Record:
        a: int = 0

    Pair = collections.namedtuple("Pair", ["x", "y"])

    def helper():
        pass

    def _hidden():
        pass

    for obj in (Base, Child, Record, Pair, helper, _hidden):
        obj.__module__, obj.__qualname__ = mod.__name__, obj.__name__
        setattr(mod, obj.__name__, obj)
    monkeypatch.setitem(sys.modules, mod.__name__, mod)

    assert undocumented([mod.__name__]) == [
        "fake_docs_module.Child.forward", "fake_docs_module.Child.make",
        "fake_docs_module.Child.size", "fake_docs_module.Pair", "fake_docs_module.Record",
        "fake_docs_module.helper"]
    mod.__all__ = ["Base", "Pair"]
    assert undocumented([mod.__name__]) == ["fake_docs_module.Pair"]


@pytest.mark.parametrize("doc", [None, "", "Two words"])
def test_short_docstrings_do_not_count(doc):
    assert _short(doc)
    assert not _short("Three plain words")
