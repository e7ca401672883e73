"""Export a trained translator to other inference engines.

    from pytransformer.export import export_ctranslate2
    export_ctranslate2("translator-en-es.safetensors", "ct2-model")

The command line is ``pytransformer export ctranslate2 MODEL DIR``.
"""
from pytransformer.export.ctranslate2 import ExportError, export_ctranslate2

__all__ = ["ExportError", "export_ctranslate2"]
