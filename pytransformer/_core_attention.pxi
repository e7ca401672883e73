# _core_attention.pxi: bindings for csrc/attention.c (included by _core.pyx).
