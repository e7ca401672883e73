"""python3 -m bench.activation: float32 GELU (erf and tanh forms) and the
fused bias + GELU, forward and backward, in ns per element.

Each case runs the kernel on caller-owned buffers (no allocation in the timed
call): forward y = gelu(x + bias); backward dx += dy * gelu'(x + bias) and,
with a bias, dbias += its column sums. Every path the CPU runs (portable,
AVX2+FMA and, where the CPU has it, AVX-512; PT_ISA picks each, the dispatch
table re-read between them) is timed alternately in one process, REPEATS
rounds, so a load change on a shared machine hits all of them; medians are
reported with each SIMD path's speed-up over portable, and the process CPU
time per element of the widest path (all threads: on an idle machine it
equals the wall time at 1 thread; when other processes load the cores, wall
times grow but CPU times do not, so they tell a slow kernel from a busy
machine). When PyTorch is importable (e.g. run from a venv that has it), its
kernels are timed in the same rounds: aten gelu (out=) and gelu_backward, and
add(out=) + gelu_ for the fused case (PyTorch has no fused bias + GELU
backward: not timed); "x torch" is PyTorch's time over each SIMD path's.

Placement: every array (ours and the ones PyTorch reads or writes through
out=) starts at its own 128 KB slot modulo 1 MB, so no output lies just
above an input modulo 1 MB. There, on 2 MB pages, a loop's loads wait on
its stores (csrc/pt_alias.h): back-to-back allocations of these 24 MB
arrays land 16 bytes apart and slowed whichever kernel met them 2-3x, so
the figures depended on the order of the allocations. PyTorch's
gelu_backward allocates its result itself.
"""
import os
import time

import numpy as np

import pytransformer
from pytransformer import _core
from pytransformer.bench.placement import placed

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
    x = placed(rng.standard_normal(SHAPE).astype(np.float32) * 2, 0)
    b = placed(rng.standard_normal(SHAPE[1]).astype(np.float32), 1)
    dy = placed(rng.standard_normal(SHAPE).astype(np.float32), 2)
    y = placed(np.zeros(SHAPE, np.float32), 3)
    dx = placed(np.zeros(SHAPE, np.float32), 4)
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
    x = torch.from_numpy(placed(rng.standard_normal(SHAPE).astype(np.float32) * 2, 5))
    b = torch.from_numpy(placed(rng.standard_normal(SHAPE[1]).astype(np.float32), 6))
    dy = torch.from_numpy(placed(rng.standard_normal(SHAPE).astype(np.float32), 7))
    y = torch.from_numpy(placed(np.zeros(SHAPE, np.float32), 3))
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
    paths = ["portable", "avx2"] + (["avx512"] if _core.isa_info()["cpu_isa"] == "avx512" else [])
    simd = paths[1:]
    print(f"activation bench, float32 {SHAPE}, median of {REPEATS} alternating rounds x "
          f"{INNER} calls; load average {load}; CPU ISA: "
          f"{_core.isa_info()['cpu_isa']}; torch: {torch.__version__ if torch else 'absent'}")
    print(f"{'case':>14} {'thr':>3} " + " ".join(f"{p + ' ns/el':>16}" for p in paths)
          + "".join(f" {p + ' x port':>12}" for p in simd)
          + f" {'cpu ns/el ' + paths[-1]:>16}"
          + (f" {'torch ns/el':>11}" + "".join(f" {p + ' x torch':>13}" for p in simd)
             if peers else ""))
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
                ts = {k: [] for k in paths + ["torch"]}
                for path in paths:                    # warm-up
                    use(path)
                    fn()
                if peer:
                    peer()
                for _ in range(REPEATS):
                    for path in paths:
                        use(path)
                        ts[path].append(sample(fn))
                    if peer:
                        ts["torch"].append(sample(peer))
                med = {k: float(np.median([w for w, _ in v])) * 1e9 / n
                       for k, v in ts.items() if v}
                cpu = float(np.median([c for _, c in ts[paths[-1]]])) * 1e9 / n
                line = (f"{label:>14} {nt:>3} " + " ".join(f"{med[p]:16.2f}" for p in paths)
                        + "".join(f" {med['portable'] / med[p]:12.2f}" for p in simd)
                        + f" {cpu:16.2f}")
                if peer:
                    line += f" {med['torch']:11.2f}" + "".join(
                        f" {med['torch'] / med[p]:13.2f}" for p in simd)
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
