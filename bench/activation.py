"""python3 -m bench.activation: float32 GELU (erf and tanh forms) and the
fused bias + GELU, forward and backward, in ns per element.

Each case runs the kernel on caller-owned buffers (no allocation in the timed
call): forward y = gelu(x + bias); backward dx += dy * gelu'(x + bias) and,
with a bias, dbias += its column sums. The AVX2+FMA and the portable paths
(PT_ISA=avx2 / portable, the dispatch table re-read between them) are timed
alternately in one process, REPEATS rounds, so a load change on a shared machine hits both;
medians are reported, with the ratio portable / avx2, and the process CPU
time per element of each path (all threads: on an idle machine it equals the
wall time at 1 thread; when other processes load the cores, wall times grow
but CPU times do not, so they tell a slow kernel from a busy machine). When PyTorch is
importable (e.g. run from a venv that has it), its kernels are timed in the
same rounds: aten gelu (out=) and gelu_backward, and add(out=) + gelu_ for
the fused case (PyTorch has no fused bias + GELU backward: not timed).
"""
import os
import time

import numpy as np

import pytransformer
from pytransformer import _core

# ---- constants ------------------------------------------------------------
SHAPE = (4096, 1536)      # 32 sequences x 128 tokens x MiniLM's FFN width
THREADS = [1, 2]
REPEATS = 9               # alternating rounds (median reported)
INNER = 3                 # calls per timed sample (the sample is their mean)
KINDS = {"erf": "gelu", "tanh": "gelu_tanh"}
# ----------------------------------------------------------------------------

try:  # optional peer
    import torch
except ImportError:  # pragma: no cover - torch is not a dependency
    torch = None


def cases():
    """[(label, fn)]: the kernels on preallocated float32 buffers."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SHAPE).astype(np.float32) * 2
    b = rng.standard_normal(SHAPE[1]).astype(np.float32)
    dy = rng.standard_normal(SHAPE).astype(np.float32)
    y = np.empty_like(x)
    dx = np.zeros_like(x)
    db = np.zeros(SHAPE[1], np.float32)
    out = []
    for form, kind in KINDS.items():
        out.append((f"gelu {form} fwd", lambda k=kind: _core.bias_act_forward(y, x, None, k)))
        out.append((f"gelu {form} bwd",
                    lambda k=kind: _core.bias_act_backward(dx, None, dy, x, None, k)))
    out.append(("bias+gelu fwd", lambda: _core.bias_act_forward(y, x, b, "gelu")))
    out.append(("bias+gelu bwd", lambda: _core.bias_act_backward(dx, db, dy, x, b, "gelu")))
    return out


def torch_cases():
    """{label: fn} for the peer, or {} without PyTorch."""
    if torch is None:
        return {}
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal(SHAPE).astype(np.float32) * 2)
    b = torch.from_numpy(rng.standard_normal(SHAPE[1]).astype(np.float32))
    dy = torch.from_numpy(rng.standard_normal(SHAPE).astype(np.float32))
    y = torch.empty_like(x)
    out = {}
    for form, approx in (("erf", "none"), ("tanh", "tanh")):
        out[f"gelu {form} fwd"] = lambda a=approx: torch.ops.aten.gelu.out(x, approximate=a, out=y)
        out[f"gelu {form} bwd"] = lambda a=approx: torch.ops.aten.gelu_backward(
            dy, x, approximate=a)
    out["bias+gelu fwd"] = lambda: torch.ops.aten.gelu_(torch.add(x, b, out=y))
    return out


def sample(fn):
    """(wall, process CPU) seconds per call, mean of INNER calls."""
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(INNER):
        fn()
    return (time.perf_counter() - t0) / INNER, (time.process_time() - c0) / INNER


def main(argv=None):
    import argparse
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    n = SHAPE[0] * SHAPE[1]
    peers = torch_cases()
    print(f"activation bench, float32 {SHAPE}, median of {REPEATS} alternating rounds x "
          f"{INNER} calls; load average {load}; CPU ISA: "
          f"{_core.isa_info()['cpu_isa']}; torch: {torch.__version__ if torch else 'absent'}")
    print(f"{'case':>14} {'thr':>3} {'portable ns/el':>14} {'avx2 ns/el':>10} {'ratio':>6} "
          f"{'cpu ns/el p|a':>13}" + (f" {'torch ns/el':>11} {'avx2/torch':>10}" if peers else ""))
    saved = os.environ.get("PT_ISA")

    def use(path):
        os.environ["PT_ISA"] = path
        _core._reinit_isa()

    try:
        for nt in THREADS:
            pytransformer.set_num_threads(nt)
            if torch is not None:
                torch.set_num_threads(nt)
            for label, fn in cases():
                peer = peers.get(label)
                ts = {"portable": [], "avx2": [], "torch": []}
                for path in ("portable", "avx2"):      # warm-up
                    use(path)
                    fn()
                if peer:
                    peer()
                for _ in range(REPEATS):
                    for path in ("portable", "avx2"):
                        use(path)
                        ts[path].append(sample(fn))
                    if peer:
                        ts["torch"].append(sample(peer))
                med = {k: float(np.median([w for w, _ in v])) * 1e9 / n
                       for k, v in ts.items() if v}
                cpu = {k: float(np.median([c for _, c in v])) * 1e9 / n
                       for k, v in ts.items() if v}
                line = (f"{label:>14} {nt:>3} {med['portable']:14.2f} {med['avx2']:10.2f} "
                        f"{med['portable'] / med['avx2']:6.2f} "
                        f"{cpu['portable']:6.2f}|{cpu['avx2']:<6.2f}")
                if peer:
                    line += f" {med['torch']:11.2f} {med['avx2'] / med['torch']:10.2f}"
                print(line, flush=True)
    finally:
        if saved is None:
            os.environ.pop("PT_ISA", None)
        else:
            os.environ["PT_ISA"] = saved
        _core._reinit_isa()
        pytransformer.set_num_threads(os.cpu_count() or 1)


if __name__ == "__main__":
    main()
