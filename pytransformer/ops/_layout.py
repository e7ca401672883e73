"""The one layout helper the ops share: how an (..., C) array is seen by
the row kernels."""
import numpy as np


def rows(a):
    """(N, C): leading dims flattened, last dim kept."""
    C = a.shape[-1]
    N = a.size // C if C else int(np.prod(a.shape[:-1], dtype=np.int64))
    return N, C
