"""python3 -m bench.explain_analyze: time the corpus-level explain measures.

The shipped model over the first N_PAIRS test pairs of the shipped model's
corpus (make_splits(seed=0, n_train=100_000)); the issue's goal is < 1 minute
for all of `analyze` together on 2 cores. One function per measure; each
prints its time and a one-line finding. Making the corpus (a few s) is timed
on its own and not counted in any measure.

    python3 -m bench.explain_analyze [--pairs 1000] [--batch 128] [--threads N]
"""
import argparse
import time

import numpy as np

import pytransformer as pt

N_PAIRS = 1000
BATCH = 128


def bench_alignment(tr, pairs, batch):
    """Measure 4: AER of cross-attention alignments (both offsets, every head)."""
    from pytransformer.explain.alignment import alignment_scores
    t0 = time.perf_counter()
    r = alignment_scores(tr, pairs, batch_size=batch)
    dt = time.perf_counter() - t0
    b = r.best
    print(f"alignment  {dt:6.2f} s  best AER {b['aer']:.3f} (layer {b['layer']}, head "
          f"{b['head']}, {b['offset']}); per-layer averaged (produce) "
          f"{np.round(r.aer_avg[0], 3).tolist()}, (shift) {np.round(r.aer_avg[1], 3).tolist()}; "
          f"diagonal {r.diagonal['aer']:.3f}")
    return dt, r


def bench_syntax(tr, pairs, batch):
    """Measure 5: syntactic heads per relation (encoder-only tracing)."""
    from pytransformer.explain.syntax import syntax_scores
    t0 = time.perf_counter()
    r = syntax_scores(tr, pairs, batch_size=batch)
    dt = time.perf_counter() - t0
    print(f"syntax     {dt:6.2f} s  " + "; ".join(
        f"{row['relation']} L{row['layer']}H{row['head']} {row['direction']} "
        f"{row['accuracy']:.2f} (base {row['best_baseline']:.2f})" for row in r.table))
    return dt, r


def bench_shared_pass(tr, pairs, batch):
    """Measures 4 and 5 fed from one tracing pass (as analyze can do)."""
    from pytransformer.explain.alignment import AlignmentAccumulator, trace_pairs
    from pytransformer.explain.syntax import SyntaxAccumulator
    t0 = time.perf_counter()
    accs = [AlignmentAccumulator(), SyntaxAccumulator()]
    for idx, b, t in trace_pairs(tr, pairs, batch):
        for a in accs:
            a.add(idx, b, t)
    for a in accs:
        a.result()
    dt = time.perf_counter() - t0
    print(f"4+5 shared {dt:6.2f} s  (one full trace per batch)")
    return dt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=N_PAIRS)
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--threads", type=int, default=pt.get_num_threads())
    args = ap.parse_args(argv)
    pt.set_num_threads(args.threads)
    from pytransformer.data import make_splits
    from pytransformer.translator import Translator, default_model_path
    t0 = time.perf_counter()
    pairs = make_splits(seed=0, n_train=100_000).test[:args.pairs]
    tr = Translator.load(default_model_path())
    print(f"{args.threads} threads, {len(pairs)} test pairs, batch {args.batch}; corpus and "
          f"model loaded in {time.perf_counter() - t0:.1f} s (not counted)")
    total = bench_alignment(tr, pairs, args.batch)[0] + bench_syntax(tr, pairs, args.batch)[0]
    print(f"measures 4+5 separately: {total:.2f} s")
    bench_shared_pass(tr, pairs, args.batch)


if __name__ == "__main__":
    main()
