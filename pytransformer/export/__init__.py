"""Export a trained translator to other inference engines.

    from pytransformer.export import export_ctranslate2
    export_ctranslate2("translator-en-es.safetensors", "ct2-model")

The command line is ``pytransformer export ctranslate2 MODEL DIR``.
"""
__all__ = ["ExportError", "export_ctranslate2"]


def __getattr__(name):
    """The exporters load on first use, so that the command line's parser
    (which imports this package) stays free of NumPy."""
    if name in __all__:
        from pytransformer.export import ctranslate2
        return getattr(ctranslate2, name)
    raise AttributeError(f"module 'pytransformer.export' has no attribute {name!r}")
