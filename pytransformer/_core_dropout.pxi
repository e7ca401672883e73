# _core_dropout.pxi: bindings for csrc/dropout.c (included by _core.pyx).
