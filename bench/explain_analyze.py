"""python3 -m bench.explain_analyze: time the explain reports and measures.

The trace + report of each seed sentence (the goal: under 1 s each),
then all of `pytransformer analyze` (every measure, pruning included) on the
shipped model over the first N_PAIRS test pairs of its corpus
(make_splits(seed=0, n_train=100_000); goal: under 1 minute on 2 cores),
printing the findings as JSON. Making the corpus (a few s) is timed on its
own and not counted. --separate also times alignment and syntax alone.

    python3 -m bench.explain_analyze [--pairs 1000] [--threads N] [--out DIR]
                                     [--checkpoints step*.safetensors]
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


def bench_sentence_reports(tr, out_dir=None):
    """Trace + report of the seed sentences (the goal: < 1 s each)."""
    from pytransformer.explain.report import sentence_report
    times = []
    for k, sentence in enumerate(("The ball is blue", "The black cat drank the milk")):
        t0 = time.perf_counter()
        rep = sentence_report(tr, sentence)
        html = rep.to_html()
        times.append(time.perf_counter() - t0)
        if out_dir:
            import os
            path = os.path.join(out_dir, f"report-seed{k + 1}.html")
            rep.save(path)
        print(f"report     {times[-1]:6.2f} s  '{sentence}' ({len(html) / 1e3:.0f} kB)")
    return times


def bench_full_analysis(tr, pairs, out_dir=None, checkpoints=()):
    """All of `pytransformer analyze` (every measure, pruning included)."""
    import json
    from pytransformer.explain.analysis import analysis_report, findings, run_analysis
    t0 = time.perf_counter()
    a = run_analysis(tr, pairs, checkpoints=checkpoints)
    rep = analysis_report(a)
    dt = time.perf_counter() - t0
    f = findings(a)
    print(f"analyze    {dt:6.2f} s  all measures, {len(pairs)} pairs")
    if checkpoints:
        print(f"           ({f['seconds'].get('AER over checkpoints', 0):.1f} s of it: "
              f"AER over {len(checkpoints)} checkpoints)")
    print(json.dumps(f, indent=1, default=str))
    if out_dir:
        import os
        rep.save(os.path.join(out_dir, "analysis.html"))
        with open(os.path.join(out_dir, "findings.json"), "w") as fh:
            json.dump(f, fh, indent=1, default=str)
    return dt, f


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=N_PAIRS)
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--threads", type=int, default=pt.get_num_threads())
    ap.add_argument("--separate", action="store_true",
                    help="also time alignment and syntax alone and on a shared pass")
    ap.add_argument("--out", default=None, help="write the reports and findings.json here")
    ap.add_argument("--checkpoints", nargs="*", default=(),
                    help="training snapshots for AER over training (timed separately)")
    args = ap.parse_args(argv)
    pt.set_num_threads(args.threads)
    from pytransformer.data import make_splits
    from pytransformer.translator import Translator, default_model_path
    t0 = time.perf_counter()
    pairs = make_splits(seed=0, n_train=100_000).test[:args.pairs]
    tr = Translator.load(default_model_path())
    print(f"{args.threads} threads, {len(pairs)} test pairs, batch {args.batch}; corpus and "
          f"model loaded in {time.perf_counter() - t0:.1f} s (not counted)")
    if args.out:
        import os
        os.makedirs(args.out, exist_ok=True)
    bench_sentence_reports(tr, args.out)
    if args.separate:
        total = (bench_alignment(tr, pairs, args.batch)[0]
                 + bench_syntax(tr, pairs, args.batch)[0])
        print(f"measures 4+5 separately: {total:.2f} s")
        bench_shared_pass(tr, pairs, args.batch)
    bench_full_analysis(tr, pairs, args.out, args.checkpoints)


if __name__ == "__main__":
    main()
