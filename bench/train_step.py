"""python3 -m bench.train_step: one training step of the benchmark Transformer,
pytransformer against PyTorch eager (when torch is installed), in one run.

The model: token embeddings (vocabulary 8000, scaled by sqrt(d_model)) +
sinusoidal positions -> Transformer(d_model=256, nhead=4, 3 encoder + 3
decoder layers, dim_feedforward=1024, dropout 0, post-norm, relu) -> Linear
to 8000 logits; batch 32, source and target length 32; cross-entropy, backward,
AdamW. Both sides pass the same masks (causal decoder, key padding from
pad id 0) and run with the same thread count. Prints the median ms per step,
target tokens/s, GFLOP/s (matmul FLOPs of forward + backward, counted below)
and the fraction of the machine's fp32 peak, the ratio ours/PyTorch, and a
profile of our step (GEMM, other C kernels, NumPy glue, Python). The two
libraries' steps alternate (ours, PyTorch, ours, ...) so that the VM's slow
spells hit both.

    python3 -m bench.train_step [--threads 2] [--steps 10] [--no-torch] [--no-profile]

PyTorch comes from `pip install torch==2.13.0` (never an unpinned torch).
"""
import argparse
import collections
import cProfile
import pstats
import sys
import time

import numpy as np

import pytransformer as pt
from pytransformer import nn, optim  # loads our core before torch: its OpenMP settings apply
from pytransformer.bench import machine
from pytransformer.nn import functional as F

# ---- constants
V = 8000
D_MODEL, NHEAD, N_ENC, N_DEC, D_FF = 256, 4, 3, 3, 1024
BATCH, S, T = 32, 32, 32
WARMUP = 2
BLOCK = 2          # timed steps per block (after one untimed step)


def step_flops():
    """Matmul FLOPs of one forward + backward (backward = 2x forward)."""
    BS, BT = BATCH * S, BATCH * T
    attn = lambda Tq, Tk: 2 * 2 * BATCH * Tq * Tk * D_MODEL   # QK^T and PV  # noqa: E731
    enc = 2 * BS * D_MODEL * (3 * D_MODEL + D_MODEL + 2 * D_FF) + attn(S, S)
    dec = (2 * BT * D_MODEL * (3 * D_MODEL + D_MODEL + 2 * D_FF)   # self-attn proj, FFN
           + 2 * BT * D_MODEL * 2 * D_MODEL + 2 * BS * D_MODEL * 2 * D_MODEL  # cross q,o / k,v
           + attn(T, T) + attn(T, S))
    fwd = N_ENC * enc + N_DEC * dec + 2 * BT * D_MODEL * V
    return 3.0 * fwd


def batch(rng):
    src = rng.integers(1, V, (BATCH, S))
    tgt = rng.integers(1, V, (BATCH, T + 1))
    return src, tgt


# ---------------------------------------------------------------- ours
def ours(threads):
    """Our model, optimizer and a closure running one training step (with
    the malloc settings the Trainer turns on: pytransformer.runtime)."""
    pt.runtime.tune_for_training()
    pt.set_num_threads(threads)
    pt.manual_seed(0)
    cfg = nn.Seq2SeqConfig(V, V, D_MODEL, NHEAD, N_ENC, N_DEC, D_FF, dropout=0.0, max_len=64)
    model = nn.Seq2SeqTransformer(cfg)
    opt = optim.AdamW(model.parameters(), lr=1e-4)
    src, tgt = batch(np.random.default_rng(0))

    def step():
        logits = model(src, tgt[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), tgt[:, 1:].reshape(-1), ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return step, model.num_parameters()


def profile_step(step, runs=3):
    """Where the time goes: cProfile's own time per function, grouped."""
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(runs):
        step()
    pr.disable()
    groups = collections.Counter()
    total = 0.0
    for (path, _, fn), (_, _, tt, _, _) in pstats.Stats(pr).stats.items():
        total += tt
        if "ops/_linear" in path or "ops/_gemm" in path:
            groups["GEMM (linear fwd/bwd, BLAS)"] += tt
        elif "pytransformer/ops/" in path:
            groups["other C kernels (attention, norm, softmax, ...)"] += tt
        elif path == "~" and ("numpy" in fn or "method" in fn):
            groups["NumPy built-ins (allocation, copies, elementwise)"] += tt
        else:
            groups["Python (autograd, modules, checks)"] += tt
    return {k: v / runs for k, v in groups.items()}, total / runs


# ---------------------------------------------------------------- PyTorch
def torch_side(threads):
    """PyTorch's model, optimizer and step closure (same config, threads)."""
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.src_embed = torch.nn.Embedding(V, D_MODEL, padding_idx=0)
            self.tgt_embed = torch.nn.Embedding(V, D_MODEL, padding_idx=0)
            self.register_buffer("positions", torch.from_numpy(
                pt.ops.sinusoidal_positions(64, D_MODEL)))
            self.transformer = torch.nn.Transformer(D_MODEL, NHEAD, N_ENC, N_DEC, D_FF, 0.0,
                                                    batch_first=True)
            self.generator = torch.nn.Linear(D_MODEL, V)

        def forward(self, src, tgt):
            scale = D_MODEL ** 0.5
            s = self.src_embed(src) * scale + self.positions[:src.shape[1]]
            t = self.tgt_embed(tgt) * scale + self.positions[:tgt.shape[1]]
            mask = torch.nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
            x = self.transformer(s, t, tgt_mask=mask, src_key_padding_mask=src == 0,
                                 tgt_key_padding_mask=tgt == 0,
                                 memory_key_padding_mask=src == 0, tgt_is_causal=True)
            return self.generator(x)

    model = Model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    src, tgt = (torch.from_numpy(a) for a in batch(np.random.default_rng(0)))

    def step():
        logits = model(src, tgt[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), tgt[:, 1:].reshape(-1),
                                                 ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step, torch.__version__


def timed(steps, n):
    """About n per-step wall times of each closure in `steps`, taken in
    alternating blocks (one untimed step, then BLOCK timed ones, for each
    library in turn): a slow spell of the VM hits all of them, and the
    untimed step absorbs the hand-over between the two libraries' thread
    pools (PyTorch's OpenMP threads spin for a while after its step)."""
    for step in steps:
        for _ in range(WARMUP):
            step()
    times = [[] for _ in steps]
    for _ in range(max(1, n // BLOCK)):
        for step, ts in zip(steps, times):
            step()
            for _ in range(BLOCK):
                t0 = time.perf_counter()
                step()
                ts.append(time.perf_counter() - t0)
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=pt.get_num_threads())
    ap.add_argument("--steps", type=int, default=10,
                    help="timed steps per library (after 2 warm-up steps)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch column")
    ap.add_argument("--no-profile", action="store_true", help="skip the profile of our step")
    args = ap.parse_args(argv)
    flops = step_flops()
    peak = machine.measured_peak_gflops(args.threads)
    print(f"machine: {machine.cpu_model()}, fp32 {machine.peak_label(peak, args.threads)} "
          f"(measured by FMA chains; nominal clock x SIMD "
          f"{machine.peak_gflops(args.threads) or float('nan'):.0f})")
    print(f"BLAS env: {machine.blas_env()}; OpenMP wait policy: {pt.config()['omp_wait_policy']}")
    print(f"step: B={BATCH} S={S} T={T} d_model={D_MODEL} heads={NHEAD} layers={N_ENC}+{N_DEC} "
          f"ff={D_FF} vocab={V}; {flops / 1e9:.1f} GFLOP (matmuls, fwd+bwd)")
    our_step, nparams = ours(args.threads)
    names, steps = ["pytransformer"], [our_step]
    if not args.no_torch:
        try:
            torch_step, version = torch_side(args.threads)
            names.append(f"torch {version}")
            steps.append(torch_step)
        except ImportError:
            print("torch not installed: PyTorch column skipped (pip install torch==2.13.0)")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        times = timed(steps, args.steps)
    rows = list(zip(names, times))
    t_ours = times[0]
    t_torch = times[1] if len(times) > 1 else None
    prof = None if args.no_profile else profile_step(our_step)
    print(f"parameters: {nparams / 1e6:.2f} M")
    print(f"{'':>22} {'ms/step':>8} {'(min)':>7} {'tgt tok/s':>9} {'GFLOP/s':>8} {'% peak':>7}")
    for name, ts in rows:
        med = float(np.median(ts))
        print(f"{name:>22} {med * 1e3:8.1f} {min(ts) * 1e3:7.1f} {BATCH * T / med:9.0f} "
              f"{flops / med / 1e9:8.1f} {100 * flops / med / 1e9 / peak:6.1f}%")
    if t_torch is not None:
        print(f"ratio ours/PyTorch (step time): {np.median(t_ours) / np.median(t_torch):.2f}")
    if prof is not None:
        groups, total = prof
        print(f"profile of our step (cProfile own time, {total * 1e3:.0f} ms/step under the "
              f"profiler):")
        for name, sec in sorted(groups.items(), key=lambda kv: -kv[1]):
            print(f"  {name:<50} {sec * 1e3:7.1f} ms  {100 * sec / total:5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
