# _core_embedding.pxi: bindings for csrc/embedding.c (included by _core.pyx).
