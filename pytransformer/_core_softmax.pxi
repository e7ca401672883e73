# _core_softmax.pxi: bindings for csrc/softmax.c (included by _core.pyx).
