"""Arrays placed at chosen offsets modulo 1 MB, so that a benchmark's
figures do not depend on the order of its allocations.

On 2 MB pages (NumPy asks for them for large arrays) a row loop whose
output lies just above its input modulo 1 MB waits on its own stores and
runs up to 2-3x slower on the Xeons measured (csrc/pt_alias.h); arrays
whose size is a multiple of 2 MB, allocated back to back, land exactly
there. A benchmark that gives each array its own slot measures the
kernels, not the allocator's layout."""
import numpy as np

SPAN = 1 << 20            # the address bits that matter (csrc/pt_alias.h)
SLOT = 128 << 10          # each array's own offset modulo SPAN


def placed(a, slot):
    """A copy of array `a` starting at slot * SLOT + 64 bytes modulo SPAN."""
    a = np.asarray(a)
    buf = np.empty(a.nbytes + SPAN + 64, np.uint8)
    off = (slot * SLOT + 64 - buf.ctypes.data) % SPAN
    out = buf[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out
