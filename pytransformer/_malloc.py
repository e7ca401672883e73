"""glibc malloc tuning for training loops (Linux/glibc only).

A training step allocates and frees hundreds of MB of large arrays
(activations, gradients, logits). glibc serves each large block with mmap
and unmaps it on free, so every step page-faults all of it in again: about
24,000 minor faults and 50 ms of system time per step of the
benchmark model (bench/train_step.py), against 200 faults with the tuning.
Raising M_MMAP_THRESHOLD and M_TRIM_THRESHOLD keeps freed blocks in the heap
for the next step to reuse (what PyTorch's caching allocator does for its
own tensors). The cost: memory freed is kept by the process, not returned to
the system, up to the peak in use (at most 512 MiB of it kept free).

Blocks of 32 MiB and more still come from mmap: with a 1 GiB threshold a
256 MB np.copyto ran at 8.6 GB/s instead of 30 GB/s here, as heap memory did
not get the transparent huge pages that NumPy asks for on large arrays
(THP "madvise" mode on this VM).

Opt-in: pytransformer.runtime.tune_for_training() applies it (Trainer and
`pytransformer train` call that), PT_MALLOC_TUNING=1 applies it when the
core loads; runtime.status() and config() report it.
"""
import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20         # blocks below 32 MiB come from the heap
TRIM_THRESHOLD = 512 << 20        # keep up to 512 MiB of free heap

status = "not applied (glibc defaults; training turns it on)"


def tune():
    """Apply the tuning (idempotent); returns a one-line status."""
    global status
    if status.startswith("applied"):
        return status
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        status = "not available (no glibc mallopt)"
        return status
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and \
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    status = ("applied (glibc mmap threshold 32 MiB, trim threshold 512 MiB)" if ok
              else "mallopt refused the settings")
    return status
