"""Kernel benchmarks: ours vs the NumPy reference vs PyTorch CPU, in one run.

    python -m bench.kernels [--threads 2] [--quick] [--only attention] [--json out.json]
    pytransformer bench kernels [same options]

For each case it prints the shape, the median time of each implementation,
the rate (GFLOP/s for matmul-bound kernels, GB/s for memory-bound ones),
that rate as a fraction of the machine's peak (for GFLOP/s: the fp32
multiply-add rate register-only FMA chains reach on as many threads at the
start of the run, with the vectors of the ISA level the kernels run at
(AVX-512 zmm chains on an AVX-512 machine, AVX2 ymm ones on an AVX2 one;
PT_ISA lowers both), turbo clocks included, which a clock x SIMD-width
figure misses; for GB/s: the bandwidth of one 256 MB np.copyto measured at the
start, which a kernel streaming several arrays on all threads can exceed:
two threads copying halves measured no faster on the project's VM, 30 vs
34 GB/s), and the ratios
time(NumPy)/time(ours) and time(PyTorch)/time(ours): above 1 means we are
faster. PyTorch columns appear when torch (==2.13.0, CPU) is installed.

The layer norm and softmax arrays sit in their own slots modulo 1 MB
(placement.py), so their figures do not depend on the allocation order.

FLOP counts: attention forward 4*B*H*Tq*Tk*D (halved when causal),
forward+backward 3x that (the two forward products plus four backward ones;
recomputation not counted); linear 2*N*IN*OUT, backward twice that.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np

import pytransformer
from pytransformer import ops, reference
from pytransformer._argtypes import int_at_least
from pytransformer.bench import machine
from pytransformer.bench.placement import placed

# ------------------------------------------------------------- constants
THREADS = 2
REPEATS = 7            # timed runs per implementation (median reported)
MIN_TIME = 0.2         # seconds: at least this much total timed work
ATTN_SHAPES = [(8, 8, 128, 64), (4, 8, 512, 64), (1, 8, 2048, 64)]
LONG_T = 8192          # attention without weights: memory must stay O(T)
LN_SHAPES = [(4096, 512), (16384, 768)]
LINEAR = (4096, 512, 2048)     # N, IN, OUT
FFN = (4096, 512, 2048)        # tokens, d_model, d_ff
SOFTMAX = (4096, 8192)
CE = (4096, 8192)
EMB = ((64, 128), 32000, 512)  # ids shape, vocab, dim
ADAMW_N = 10_000_000


def median_time(fn, repeats=REPEATS, min_time=MIN_TIME):
    """Median seconds of fn() over >= repeats runs (after one warm-up)."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start < min_time and len(times) < 50):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _torch_capability(torch):
    """The SIMD level PyTorch's own CPU kernels run ("AVX512", "AVX2", ...:
    ATEN_CPU_CAPABILITY lowers it, as PT_ISA lowers ours); None without
    PyTorch or where this PyTorch cannot say."""
    try:
        return torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        return None


def try_torch(threads):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


# ----------------------------------------------------------------- cases
# Each case builder returns a dict: name, shape, flops or bytes, and
# implementations {"ours": fn, "numpy": fn or None, "torch": fn or None}.

def _leaves(torch, arrays):
    """PyTorch leaf tensors over the arrays (shared memory) that take
    gradients: its backward is timed as torch.autograd.grad(out, leaves, g),
    which returns the gradients without copying the inputs or adding into
    .grad, as ours returns them."""
    return tuple(torch.from_numpy(a).requires_grad_() for a in arrays)


def attention_cases(torch, quick):
    shapes = ATTN_SHAPES[:2] if quick else ATTN_SHAPES
    for (B, H, T, D) in shapes:
        for causal in (False, True):
            for backward in (False, True):
                yield lambda B=B, H=H, T=T, D=D, c=causal, bw=backward: \
                    _attention_case(torch, B, H, T, D, c, bw)


def _attention_case(torch, B, H, T, D, causal, backward):
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((B, H, T, D)).astype(np.float32) for _ in range(3))
    g = rng.standard_normal((B, H, T, D)).astype(np.float32)
    flops = 4 * B * H * T * T * D * (0.5 if causal else 1) * (3 if backward else 1)

    def ours():
        out, lse, _ = ops.attention_forward(q, k, v, is_causal=causal)
        if backward:
            ops.attention_backward(g, q, k, v, out, lse, is_causal=causal)

    def numpy_ref():
        reference.scaled_dot_product_attention(q, k, v, is_causal=causal)
        if backward:
            reference.attention_backward(g, q, k, v, is_causal=causal)

    impl = {"ours": ours, "numpy": numpy_ref, "torch": None}
    if torch is not None:
        leaves, tg = _leaves(torch, (q, k, v)), torch.from_numpy(g)
        F = torch.nn.functional

        def torch_fn():
            if backward:
                out = F.scaled_dot_product_attention(*leaves, is_causal=causal)
                torch.autograd.grad(out, leaves, tg)
            else:
                with torch.no_grad():
                    F.scaled_dot_product_attention(*leaves, is_causal=causal)
        impl["torch"] = torch_fn
    name = "attention " + ("fwd+bwd" if backward else "fwd") + (" causal" if causal else "")
    return dict(name=name, shape=f"{B}x{H}x{T}x{D}", flops=flops, impl=impl)


def layernorm_cases(torch, quick):
    for (N, C) in LN_SHAPES:
        for backward in (False, True):
            yield lambda N=N, C=C, bw=backward: _layernorm_case(torch, N, C, bw)


def _layernorm_case(torch, N, C, backward):
    rng = np.random.default_rng(0)
    x = placed(rng.standard_normal((N, C)).astype(np.float32), 0)
    w, b = rng.standard_normal(C).astype(np.float32), rng.standard_normal(C).astype(np.float32)
    g = placed(rng.standard_normal((N, C)).astype(np.float32), 2)
    y, dx = placed(np.zeros_like(x), 4), placed(np.zeros_like(x), 6)
    mean, rstd = np.empty(N, np.float32), np.empty(N, np.float32)
    # Ours writes into reused buffers (the API takes them), each array in its
    # own slot (placement.py); the peers allocate.
    # bytes: forward reads x, writes y; backward reads x, dy, writes dx.
    nbytes = x.nbytes * (2 + (3 if backward else 0))

    def ours():
        ops.layer_norm_forward(x, w, b, out=y, mean_out=mean, rstd_out=rstd)
        if backward:
            ops.layer_norm_backward(g, x, w, mean, rstd, grad_input=dx)

    def numpy_ref():
        reference.layer_norm(x, w, b)
        if backward:
            reference.layer_norm_backward(g, x, w)

    impl = {"ours": ours, "numpy": numpy_ref, "torch": None}
    if torch is not None:
        leaves, tg = _leaves(torch, (x, w, b)), torch.from_numpy(g)
        F = torch.nn.functional

        def torch_fn():
            if backward:
                torch.autograd.grad(F.layer_norm(leaves[0], (C,), *leaves[1:]), leaves, tg)
            else:
                with torch.no_grad():
                    F.layer_norm(leaves[0], (C,), *leaves[1:])
        impl["torch"] = torch_fn
    return dict(name="layer_norm " + ("fwd+bwd" if backward else "fwd"), shape=f"{N}x{C}",
                bytes=nbytes, impl=impl)


def linear_case(torch, quick):
    N, IN, OUT = LINEAR
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, IN)).astype(np.float32)
    w = rng.standard_normal((OUT, IN)).astype(np.float32)
    b = rng.standard_normal(OUT).astype(np.float32)
    y = np.empty((N, OUT), np.float32)
    impl = {"ours": lambda: ops.linear(x, w, b, out=y),
            "numpy": lambda: np.add(np.matmul(x, w.T, out=y), b, out=y),
            "torch": None}
    if torch is not None:
        tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
        impl["torch"] = lambda: torch.nn.functional.linear(tx, tw, tb)
    return dict(name="linear fwd (vs numpy matmul)", shape=f"{N}x{IN}->{OUT}",
                flops=2 * N * IN * OUT, impl=impl)


def ffn_case(torch, quick):
    N, Dm, Dff = FFN
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, Dm)).astype(np.float32)
    w1 = (rng.standard_normal((Dff, Dm)) / np.sqrt(Dm)).astype(np.float32)
    b1 = np.zeros(Dff, np.float32)
    w2 = (rng.standard_normal((Dm, Dff)) / np.sqrt(Dff)).astype(np.float32)
    b2 = np.zeros(Dm, np.float32)
    g = rng.standard_normal((N, Dm)).astype(np.float32)

    def ours():
        y, saved = ops.ffn_forward(x, w1, b1, w2, b2, activation="relu")
        ops.ffn_backward(g, saved)

    def numpy_ref():
        reference.ffn(x, w1, b1, w2, b2, activation="relu")
        reference.ffn_backward(g, x, w1, b1, w2, b2, activation="relu")

    impl = {"ours": ours, "numpy": numpy_ref, "torch": None}
    if torch is not None:
        leaves, tg = _leaves(torch, (x, w1, b1, w2, b2)), torch.from_numpy(g)
        F = torch.nn.functional

        def torch_fn():
            xx, ww1, bb1, ww2, bb2 = leaves
            torch.autograd.grad(F.linear(F.relu(F.linear(xx, ww1, bb1)), ww2, bb2), leaves, tg)
        impl["torch"] = torch_fn
    return dict(name="FFN relu fwd+bwd", shape=f"{N}x{Dm}->{Dff}->{Dm}",
                flops=3 * 2 * 2 * N * Dm * Dff, impl=impl)


def softmax_case(torch, quick):
    N, C = SOFTMAX
    x = placed(np.random.default_rng(0).standard_normal((N, C)).astype(np.float32), 0)
    y = placed(np.zeros_like(x), 4)
    impl = {"ours": lambda: ops.softmax(x, out=y), "numpy": lambda: reference.softmax(x),
            "torch": None}
    if torch is not None:
        tx = torch.from_numpy(x)
        impl["torch"] = lambda: torch.softmax(tx, -1)
    return dict(name="softmax fwd", shape=f"{N}x{C}", bytes=2 * x.nbytes, impl=impl)


def cross_entropy_case(torch, quick):
    N, C = CE
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C)).astype(np.float32)
    t = rng.integers(0, C, N)

    def ours():
        loss, lse = ops.cross_entropy_forward(x, t, label_smoothing=0.1)
        ops.cross_entropy_backward(np.float32(1.0), x, t, lse, label_smoothing=0.1)

    def numpy_ref():
        reference.cross_entropy(x, t, label_smoothing=0.1)
        reference.cross_entropy_backward(1.0, x, t, label_smoothing=0.1)

    impl = {"ours": ours, "numpy": numpy_ref, "torch": None}
    if torch is not None:
        leaves, tt = _leaves(torch, (x,)), torch.from_numpy(t)

        def torch_fn():
            loss = torch.nn.functional.cross_entropy(leaves[0], tt, label_smoothing=0.1)
            torch.autograd.grad(loss, leaves)
        impl["torch"] = torch_fn
    return dict(name="cross_entropy fwd+bwd (ls=0.1)", shape=f"{N}x{C}", bytes=3 * x.nbytes,
                impl=impl)


def embedding_case(torch, quick):
    shape, V, C = EMB
    rng = np.random.default_rng(0)
    ids = rng.integers(0, V, shape)
    table = rng.standard_normal((V, C)).astype(np.float32)
    g = rng.standard_normal(shape + (C,)).astype(np.float32)

    def ours():
        ops.embedding(ids, table)
        ops.embedding_backward(g, ids, V)

    def numpy_ref():
        reference.embedding(ids, table)
        reference.embedding_backward(g, ids, V)

    impl = {"ours": ours, "numpy": numpy_ref, "torch": None}
    if torch is not None:
        ti, tg = torch.from_numpy(ids), torch.from_numpy(g)
        leaves = _leaves(torch, (table,))

        def torch_fn():
            torch.autograd.grad(torch.nn.functional.embedding(ti, leaves[0]), leaves, tg)
        impl["torch"] = torch_fn
    # bytes: gather + scatter rows, plus zeroing the (V, C) gradient.
    return dict(name="embedding fwd+bwd", shape=f"{shape}->{V}x{C}",
                bytes=3 * g.nbytes + table.nbytes, impl=impl)


def adamw_case(torch, quick):
    n = ADAMW_N // (4 if quick else 1)
    rng = np.random.default_rng(0)
    p, g = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)
    state = {"step": 0}

    def ours():
        state["step"] += 1
        ops.adamw_step(p, g, m, v, state["step"], lr=1e-3)

    rp, rm, rv = p.copy(), m.copy(), v.copy()

    def numpy_ref():
        reference.adamw_step(rp, g, rm, rv, 1, lr=1e-3)

    impl = {"ours": ours, "numpy": numpy_ref, "torch": None}
    if torch is not None:
        tp = torch.from_numpy(p.copy()).requires_grad_()
        tp.grad = torch.from_numpy(g)
        opt = torch.optim.AdamW([tp], lr=1e-3, foreach=True)
        impl["torch"] = opt.step
    # bytes: read p, g, m, v; write p, m, v.
    return dict(name="adamw step", shape=f"{n}", bytes=7 * 4 * n, impl=impl)


SUITES = {
    "attention": attention_cases,
    "layer_norm": layernorm_cases,
    "linear": lambda t, q: [lambda: linear_case(t, q)],
    "ffn": lambda t, q: [lambda: ffn_case(t, q)],
    "softmax": lambda t, q: [lambda: softmax_case(t, q)],
    "cross_entropy": lambda t, q: [lambda: cross_entropy_case(t, q)],
    "embedding": lambda t, q: [lambda: embedding_case(t, q)],
    "adamw": lambda t, q: [lambda: adamw_case(t, q)],
}


# --------------------------------------------------- long-sequence memory
LONG_SCRIPT = r"""
import sys, time, numpy as np
impl, T, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
B, H, D = 1, 8, 64
rng = np.random.default_rng(0)
q, k, v = (rng.standard_normal((B, H, T, D), dtype=np.float32) for _ in range(3))
if impl == "ours":
    import pytransformer
    from pytransformer import ops
    pytransformer.set_num_threads(threads)
    out = np.empty_like(q)
    run = lambda: ops.scaled_dot_product_attention(q, k, v, out=out)
else:
    import torch
    torch.set_num_threads(threads)
    tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))
    def run():
        with torch.no_grad():
            torch.nn.functional.scaled_dot_product_attention(tq, tk, tv)
def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024.0
run()  # warm up: thread pools, first-touch of the output
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
base = status("VmRSS:")
t = time.perf_counter(); run(); dt = time.perf_counter() - t
print(dt, status("VmHWM:") - base)
"""


def long_attention(threads, have_torch):
    """Time and peak-memory growth (MiB) of one attention call at T=LONG_T,
    each in a fresh process: the peak RSS (VmHWM) is reset just before the
    call (Linux /proc/self/clear_refs), so its growth is what the call held
    beyond the inputs and the output."""
    rows = {}
    for impl in ("ours", "torch") if have_torch else ("ours",):
        out = subprocess.run([sys.executable, "-c", LONG_SCRIPT, impl, str(LONG_T), str(threads)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            rows[impl] = {"error": out.stderr.strip().splitlines()[-1:]}
            continue
        dt, mib = map(float, out.stdout.split())
        rows[impl] = {"seconds": dt, "peak_rss_growth_mib": mib}
    scores_mib = 8 * LONG_T * LONG_T * 4 / 2**20
    return {"shape": f"1x8x{LONG_T}x64", "full_scores_would_take_mib": scores_mib, **rows}


# ------------------------------------------------------------------ main
def run(threads=THREADS, quick=False, only=None, progress=True):
    pytransformer.set_num_threads(threads)
    torch = try_torch(threads)
    isa = machine.peak_isa()
    nominal32 = machine.peak_gflops(threads)
    peaks = machine.measured_peaks_gflops(threads)
    peak32 = peaks.get(isa) or machine.measured_peak_gflops(threads)
    if progress:
        print(f"% peak of GFLOP/s rates: {machine.peak_label(peak32, threads, isa)}; "
              f"FMA peaks by ISA: " + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()),
              flush=True)
    bw = machine.copy_bandwidth_gbs()
    results = []
    suites = [only] if only else list(SUITES)
    for suite in suites:
        for build in SUITES[suite](torch, quick):
            case = build()
            row = {"name": case["name"], "shape": case["shape"]}
            for key, fn in case["impl"].items():
                row[f"{key}_ms"] = None if fn is None else 1e3 * median_time(fn)
            t = row["ours_ms"] / 1e3
            if "flops" in case:
                row["rate"] = case["flops"] / t / 1e9
                row["unit"] = "GFLOP/s"
                row["peak_frac"] = row["rate"] / peak32 if peak32 else None
            else:
                row["rate"] = case["bytes"] / t / 1e9
                row["unit"] = "GB/s"
                row["peak_frac"] = row["rate"] / bw
            for peer in ("numpy", "torch"):
                ms = row.get(f"{peer}_ms")
                row[f"x_{peer}"] = None if ms is None else ms / row["ours_ms"]
            results.append(row)
            if progress:
                print(format_row(row), flush=True)
            del case
    long = long_attention(threads, torch is not None) if not only or only == "attention" else None
    peak_end = machine.measured_peak_gflops(threads)
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpu": machine.cpu_model(), "threads": threads,
                    "peak_isa": isa, "peak_fp32_gflops_by_isa": peaks,
                    "peak_fp32_gflops": peak32, "peak_fp32_gflops_at_end": peak_end,
                    "nominal_peak_fp32_gflops": nominal32, "copy_bandwidth_gbs": bw,
                    "blas": machine.blas_env(), "config": pytransformer.config(),
                    "torch": getattr(torch, "__version__", None),
                    "torch_cpu_capability": _torch_capability(torch)},
        "results": results,
        "long_attention": long,
    }


HEADER = (f"{'kernel':<32}{'shape':<22}{'ours ms':>9}{'numpy ms':>10}{'torch ms':>10}"
          f"{'rate':>16}{'%peak':>7}{'xNumPy':>8}{'xTorch':>8}")


def _f(v, fmt):
    """v formatted with fmt, or "-" right-aligned to fmt's width when None."""
    if v is None:
        width = fmt.split(".")[0]
        return "-".rjust(int(width) if width.isdigit() else 0)
    return format(v, fmt)


def format_row(r):
    return (f"{r['name']:<32}{r['shape']:<22}{_f(r['ours_ms'], '9.2f')}{_f(r['numpy_ms'], '10.2f')}"
            f"{_f(r['torch_ms'], '10.2f')}{r['rate']:>9.1f} {r['unit']:<6}"
            f"{_f(None if r['peak_frac'] is None else 100 * r['peak_frac'], '7.0f')}"
            f"{_f(r['x_numpy'], '8.2f')}{_f(r['x_torch'], '8.2f')}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="pytransformer bench kernels", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int_at_least(1), default=THREADS,
                   help="threads for us and PyTorch (default %(default)s)")
    p.add_argument("--quick", action="store_true", help="fewer/smaller shapes")
    p.add_argument("--only", choices=sorted(SUITES), help="run one suite")
    p.add_argument("--json", default="bench/results/kernels.json",
                   help="where to write the table as JSON ('' to skip)")
    args = p.parse_args(argv)
    print(HEADER)
    report = run(args.threads, args.quick, args.only)
    m = report["machine"]
    print(f"\n{m['cpu']}, {m['threads']} threads; fp32 "
          f"{machine.peak_label(m['peak_fp32_gflops'], m['threads'], m['peak_isa'])} "
          f"measured by FMA chains at the start ({m['peak_fp32_gflops_at_end']:.0f} at the end; "
          f"nominal clock x SIMD {_f(m['nominal_peak_fp32_gflops'], '.0f')}), copy bandwidth "
          f"{m['copy_bandwidth_gbs']:.1f} GB/s (measured); torch {m['torch'] or 'not installed'}"
          + (f" ({m['torch_cpu_capability']})" if m['torch_cpu_capability'] else "")
          + f"; malloc tuning {m['config']['malloc_tuning']}")
    print("xNumPy / xTorch = their time / our time (above 1: we are faster)")
    if report["long_attention"]:
        print("attention without weights at", json.dumps(report["long_attention"]))
    if args.json:
        import os
        from pytransformer._atomic import atomic_write
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        atomic_write(args.json, [json.dumps(report, indent=1, default=str).encode()])
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
