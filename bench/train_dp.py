"""python3 -m bench.train_dp: data-parallel training step of the bench model
(bench.train_step's: vocabulary 8000, d_model 256, 3+3 layers, global batch
32 of length 32, dropout 0, AdamW) on this machine: 1 rank x 2 threads
against 2 ranks x 1 thread (mpirun -np 2), alternating the two in rounds so
that slow spells of a shared machine hit both; medians over all timed steps.

For the 2-rank runs it also reports the time finish() waited for the
all-reduce after backward (communication not hidden by backward), the
time a blocking all-reduce of all the gradients takes on its own, and the
share of that time hidden behind backward.

    python3 -m bench.train_dp [--rounds 3] [--steps 5] [--mpirun PATH]

Needs the [mpi] extra (mpi4py and an mpirun).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np


def worker(threads, steps):
    """One timed run (a rank of it under mpirun): prints one JSON line on
    rank 0 with the median step time and, data-parallel, the wait and the
    blocking all-reduce times."""
    import pytransformer as pt
    from pytransformer import distributed as dist, nn, optim
    from pytransformer.nn import functional as F
    from bench.train_step import BATCH, D_FF, D_MODEL, N_DEC, N_ENC, NHEAD, V, batch

    dist.init()
    pt.set_num_threads(threads)
    pt.manual_seed(0)
    cfg = nn.Seq2SeqConfig(V, V, D_MODEL, NHEAD, N_ENC, N_DEC, D_FF, dropout=0.0, max_len=64)
    model = nn.Seq2SeqTransformer(cfg)
    dp = dist.DataParallel(model, bucket_mb=2.0)
    opt = optim.AdamW(model.parameters(), lr=1e-4)
    src, tgt = batch(np.random.default_rng(0))
    first, rows = dist.shard(BATCH)
    src, tgt = src[first:first + rows], tgt[first:first + rows]
    times, waits, backs = [], [], []
    for i in range(steps + 2):              # two untimed steps first
        dist.barrier()
        t0 = time.perf_counter()
        logits = dp(src, tgt[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), tgt[:, 1:].reshape(-1), ignore_index=0)
        opt.zero_grad()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        waited = dp.finish()
        opt.step()
        t3 = time.perf_counter()
        if i >= 2:
            times.append(t3 - t0)
            waits.append(waited)
            backs.append(t2 - t1)
    out = {"ranks": dist.world_size(), "threads": threads, "step_s": float(np.median(times)),
           "backward_s": float(np.median(backs)), "params": model.num_parameters()}
    if dist.is_distributed():
        from mpi4py import MPI
        blocking = []
        for _ in range(5):
            dist.barrier()
            t0 = time.perf_counter()
            for b in dp.buckets:
                dist.comm().Allreduce(MPI.IN_PLACE, b.buffer, op=MPI.SUM)
            blocking.append(time.perf_counter() - t0)
        out.update(wait_s=float(np.median(waits)), allreduce_s=float(np.median(blocking)),
                   buckets=len(dp.buckets))
    if dist.rank() == 0:
        print(json.dumps(out), flush=True)


def _launch(cmd, env):
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"bench.train_dp: {' '.join(cmd[:4])} ... failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    """Alternate 1 rank x 2 threads and 2 ranks x 1 thread; print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per run")
    ap.add_argument("--mpirun", default=None, help="default: next to python, else on PATH")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:
        worker(args.worker, args.steps)
        return
    here = os.path.join(os.path.dirname(sys.executable), "mpirun")
    mpirun = args.mpirun or (here if os.path.exists(here) else shutil.which("mpirun"))
    if mpirun is None:
        sys.exit("bench.train_dp: no mpirun (pip install -e '.[mpi]')")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    me = [sys.executable, "-m", "bench.train_dp", "--steps", str(args.steps), "--worker"]
    mpi = [mpirun, "--oversubscribe", "-np", "2"] + (
        ["--allow-run-as-root"] if os.geteuid() == 0 else [])
    one, two = [], []
    for r in range(args.rounds):
        one.append(_launch(me + ["2"], dict(env, OMP_NUM_THREADS="2")))
        two.append(_launch(mpi + me + ["1"], dict(env, OMP_NUM_THREADS="1")))
        print(f"round {r + 1}: 1x2 {one[-1]['step_s'] * 1e3:.0f} ms/step, 2x1 "
              f"{two[-1]['step_s'] * 1e3:.0f} ms/step (wait {two[-1]['wait_s'] * 1e3:.1f} ms, "
              f"blocking all-reduce {two[-1]['allreduce_s'] * 1e3:.1f} ms)", flush=True)
    med = lambda runs, k: float(np.median([x[k] for x in runs]))  # noqa: E731
    from bench.train_step import BATCH, T
    s1, s2 = med(one, "step_s"), med(two, "step_s")
    wait, ar = med(two, "wait_s"), med(two, "allreduce_s")
    print(f"\nbench model: {one[0]['params']:,} parameters, {one[0]['params'] * 4 / 2**20:.1f} MB "
          f"of float32 gradients all-reduced per step in {two[0]['buckets']} buckets")
    print(f"1 rank  x 2 threads: {s1 * 1e3:7.0f} ms/step  {BATCH * T / s1:7.0f} target tok/s")
    print(f"2 ranks x 1 thread : {s2 * 1e3:7.0f} ms/step  {BATCH * T / s2:7.0f} target tok/s  "
          f"({s1 / s2:.2f}x)")
    print(f"all-reduce on its own {ar * 1e3:.1f} ms; not hidden by backward {wait * 1e3:.1f} ms "
          f"({max(0.0, 1 - wait / ar) * 100 if ar > 0 else 0:.0f}% hidden)")


if __name__ == "__main__":
    main()
