# _core_activation.pxi: bindings for csrc/activation.c (included by _core.pyx).
