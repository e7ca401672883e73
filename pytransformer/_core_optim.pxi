# _core_optim.pxi: bindings for csrc/optim.c (included by _core.pyx).
