"""python3 -m bench.attention: scaled dot-product attention timings.

Median wall time of REPEATS runs (after WARMUP) of the tiled forward
(attention_forward, no weights) and forward + backward, float32, for each
shape x causal x thread count; GFLOP/s counts fwd = 4 B H T T D (halved
when causal), fwd+bwd = 3x that. Check `uptime` first: other processes
loading the machine inflate the times.

A second table times the forward alone (what inference runs) at the
shapes of all-MiniLM-L6-v2 (12 heads of dimension 32; batch 32 at 128,
32 and 16 tokens, and one 17-token sentence), without a mask and with a
key-padding mask (B, 1, 1, T) whose lengths are drawn from [T/2, T], as
pytransformer.pretrained builds it; GFLOP/s counts 4 B H T T D whatever
the padding. `--minilm` prints only that table.
"""
import os
import sys
import time

# numpy's / scipy's OpenBLAS worker threads spin for a while after start-up
# and would compete with the kernel's threads for the cores; they are not
# used here.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from pytransformer import _core  # noqa: E402
from pytransformer.ops._attention import attention_backward, attention_forward  # noqa: E402

# ---- constants
SHAPES = [(8, 8, 128, 64), (4, 8, 512, 64), (1, 8, 2048, 64)]   # (B, H, T, D)
THREADS = [1, 2]
CAUSAL = [False, True]
MINILM_SHAPES = [(32, 12, 128, 32), (32, 12, 32, 32), (32, 12, 16, 32), (1, 12, 17, 32)]
DTYPE = np.float32
REPEATS = 7
WARMUP = 1


def median_time(fn):
    """(median wall seconds, median process CPU seconds) over REPEATS runs.
    CPU time is the steadier figure on a loaded machine (1 thread)."""
    for _ in range(WARMUP):
        fn()
    ts, cs = [], []
    for _ in range(REPEATS):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
        cs.append(time.process_time() - c0)
    return float(np.median(ts)), float(np.median(cs))


def padding_mask(rng, B, T):
    """Additive float32 key-padding mask (B, 1, 1, T): -inf past each
    sequence's length (lengths in [T/2, T], the first one T)."""
    lens = rng.integers(T // 2, T + 1, B)
    lens[0] = T
    pad = np.arange(T)[None, :] >= lens[:, None]
    return np.where(pad, np.float32(-np.inf), np.float32(0))[:, None, None, :]


def minilm_table(rng):
    """Forward-only timings at the MiniLM shapes, no mask and padding mask."""
    print(f"{'MiniLM shape':>18} {'mask':>5} {'thr':>3} {'fwd ms':>8} {'cpu':>8} {'GF/s':>6}")
    for (B, H, T, D) in MINILM_SHAPES:
        q, k, v = (rng.standard_normal((B, H, T, D)).astype(DTYPE) for _ in range(3))
        flop = 4.0 * B * H * T * T * D
        for mask in (None, padding_mask(rng, B, T)):
            for n in THREADS:
                _core.set_num_threads(n)
                reps = max(1, int(2e8 / flop))      # ~10+ ms per timed run
                tf, cf = median_time(lambda: [attention_forward(q, k, v, mask)
                                              for _ in range(reps)])
                print(f"{str((B, H, T, D)):>18} {'pad' if mask is not None else '-':>5} {n:>3} "
                      f"{tf / reps * 1e3:8.3f} {cf / reps * 1e3:8.3f} {flop * reps / tf / 1e9:6.1f}",
                      flush=True)


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minilm", action="store_true", help="only the MiniLM forward table")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    old = _core.get_num_threads()
    if args.minilm:
        try:
            minilm_table(rng)
        finally:
            _core.set_num_threads(old)
        return 0
    print(f"{'shape':>18} {'causal':>6} {'thr':>3} {'fwd ms':>8} {'cpu':>8} {'GF/s':>6} "
          f"{'fwd+bwd ms':>10} {'cpu':>8} {'GF/s':>6}")
    try:
        for (B, H, T, D) in SHAPES:
            q, k, v, g = (rng.standard_normal((B, H, T, D)).astype(DTYPE) for _ in range(4))
            for causal in CAUSAL:
                flop = 4.0 * B * H * T * T * D * (0.5 if causal else 1.0)
                for n in THREADS:
                    _core.set_num_threads(n)
                    tf, cf = median_time(lambda: attention_forward(q, k, v, is_causal=causal))
                    o, lse, _ = attention_forward(q, k, v, is_causal=causal)

                    def fb():
                        o, lse, _ = attention_forward(q, k, v, is_causal=causal)
                        attention_backward(g, q, k, v, o, lse, is_causal=causal)
                    tb, cb = median_time(fb)
                    print(f"{str((B, H, T, D)):>18} {int(causal):>6} {n:>3} {tf * 1e3:8.2f} {cf * 1e3:8.2f} "
                          f"{flop / tf / 1e9:6.1f} {tb * 1e3:10.2f} {cb * 1e3:8.2f} "
                          f"{3 * flop / tb / 1e9:6.1f}",
                          flush=True)
        print()
        minilm_table(rng)
    finally:
        _core.set_num_threads(old)
    return 0


if __name__ == "__main__":
    sys.exit(main())
