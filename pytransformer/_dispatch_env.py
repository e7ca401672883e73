"""Run a block under other dispatch settings: the environment variables the
dispatch table reads once, at import (PT_ISA, PT_PORTABLE,
PT_LINEAR_DOT_ROWS, PT_LINEAR_SWAP_ROWS, PT_LINEAR_PAR_MIN,
PT_LINEAR_PACKED_ROWS), set for the block and the table re-read, then
both restored. For tests and benchmarks only: never while a kernel runs in
another thread."""
import contextlib
import os


@contextlib.contextmanager
def dispatch_env(**env):
    """Inside the block, each NAME=value of `env` is set in the environment
    (value None: unset) and the dispatch table re-read; afterwards the
    previous values are restored and the table re-read again."""
    from pytransformer import _core

    saved = {k: os.environ.get(k) for k in env}
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = str(v)
    try:
        _core._reinit_isa()
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _core._reinit_isa()
