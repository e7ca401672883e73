"""The `pytransformer` command line: info | demo | bench.

Run `pytransformer --help`, or `pytransformer <command> --help`.
"""
import argparse
import json
import sys


def cmd_info(args):
    """Print the build and run-time configuration."""
    import pytransformer

    cfg = pytransformer.config()
    if args.json:
        print(json.dumps(cfg, indent=2))
        return 0
    print(f"pytransformer {cfg['version']} (Python {cfg['python']}, {cfg['machine']})")
    print(f"  compiler      {cfg['compiler']}  {cfg['cflags']}")
    print(f"  OpenMP        {'on' if cfg['openmp'] else 'off'}, {cfg['num_threads']} threads "
          f"({cfg['num_procs']} processors); wait policy: {cfg['omp_wait_policy']}")
    print(f"  SIMD          cpu: {' '.join(cfg['cpu_simd']) or 'none found'}; build: {cfg['build_simd']}")
    print(f"  GEMM          {cfg['blas']}")
    print(f"  malloc        {cfg['malloc_tuning']}")
    libs = cfg["blas_libraries"]
    if isinstance(libs, str):
        print(f"  BLAS libs     ({libs})")
    else:
        for lib in libs:
            mark = "  <- pytransformer's GEMM" if lib.get("pytransformer_gemm") else ""
            print(f"  {lib['user_api']:<13} {lib['internal_api']} {lib['version'] or ''} "
                  f"threads={lib['num_threads']} kernel={lib['architecture']}  "
                  f"{lib['filepath']}{mark}")
    return 0


def cmd_demo(args):
    """A one-line attention demo: four words attend to each other."""
    import numpy as np
    from pytransformer import ops, reference

    words = args.sentence.split()
    if not words:
        print("demo: the sentence is empty", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    d = 8
    emb = {w: rng.standard_normal(d) for w in dict.fromkeys(words)}
    x = np.stack([emb[w] for w in words]).astype(np.float32)[None, None]   # (1, 1, T, d)
    Wq, Wk, Wv = ((rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32) for _ in range(3))
    q, k, v = x @ Wq, x @ Wk, x @ Wv
    out, w = ops.scaled_dot_product_attention(q, k, v, is_causal=args.causal, need_weights=True)
    ref_out = reference.scaled_dot_product_attention(q, k, v, is_causal=args.causal)
    err = float(np.abs(out - ref_out).max())
    print(f"attention weights (row: query word attends to column words), "
          f"{'causal' if args.causal else 'bidirectional'}, random projections d={d}:")
    width = max(len(t) for t in words) + 1
    print(" " * width + "".join(f"{t:>{width}}" for t in words))
    for i, t in enumerate(words):
        print(f"{t:>{width}}" + "".join(f"{w[0, 0, i, j]:>{width}.2f}" for j in range(len(words))))
    print(f"output = weights @ V, shape {out.shape[2:]}, {out.dtype}; "
          f"max |C kernel - NumPy reference| = {err:.1e}")
    return 0


def cmd_bench(args):
    """Run a benchmark suite (see pytransformer.bench)."""
    from pytransformer.bench import kernels

    argv = list(args.rest)
    return kernels.main(argv)


def build_parser():
    p = argparse.ArgumentParser(prog="pytransformer",
                                description="A Transformer you can read, train and look inside, on a CPU.")
    sub = p.add_subparsers(dest="command", metavar="command")
    s = sub.add_parser("info", help="print the build: compiler, OpenMP, SIMD, BLAS, threads")
    s.add_argument("--json", action="store_true", help="print as JSON")
    s.set_defaults(func=cmd_info)
    s = sub.add_parser("demo", help="attention weights of a sentence on the C kernels")
    s.add_argument("sentence", nargs="?", default="the ball is blue", help="words to attend over")
    s.add_argument("--causal", action="store_true", help="mask future words (decoder-style)")
    s.add_argument("--seed", type=int, default=0, help="seed of the random embeddings/projections")
    s.set_defaults(func=cmd_demo)
    s = sub.add_parser("bench", help="kernel benchmarks vs NumPy (and PyTorch when installed); "
                                     "pass --help after 'bench kernels' for options")
    s.add_argument("suite", choices=["kernels"], help="which benchmark suite")
    s.add_argument("rest", nargs=argparse.REMAINDER, help="options of the suite")
    s.set_defaults(func=cmd_bench)
    return p


def main(argv=None):
    """Entry point of the `pytransformer` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
