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


def cmd_train(args):
    """Train a translator on the generated corpus (see pytransformer.translator)."""
    from pytransformer.training import TrainConfig
    from pytransformer.translator import train_translator

    model_config = dict(d_model=args.d_model, nhead=args.nhead,
                        num_encoder_layers=args.layers, num_decoder_layers=args.layers,
                        dim_feedforward=args.ff, dropout=args.dropout, max_len=args.max_len,
                        tie_embeddings=args.tie)
    tc = TrainConfig(steps=args.steps, warmup=args.warmup, lr_factor=args.lr_factor,
                     label_smoothing=args.label_smoothing, seed=args.seed,
                     eval_every=args.eval_every, ckpt_every=args.ckpt_every)
    if args.threads:
        from pytransformer import set_num_threads
        set_num_threads(args.threads)
    try:
        tr = train_translator(args.out, model_config, tc, n_train=args.n_train,
                              data_seed=args.data_seed, batch_size=args.batch_size,
                              resume=args.resume)
    except KeyboardInterrupt:
        return 130
    for s in ("the ball is blue", "the black cat drank the milk"):
        print(f"{s} -> {tr.translate([s])[0]}")
    print(f"saved {args.out}")
    return 0


def cmd_translate(args):
    """Translate English sentences with a trained model."""
    import warnings
    from pytransformer.translator import UnknownWordWarning

    tr, code = _load_translator(args.model)
    if tr is None:
        return code
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnknownWordWarning)
        try:
            out = tr.translate(args.sentences, beam=args.beam)
        except ValueError as e:
            print(f"pytransformer translate: {e}", file=sys.stderr)
            return 2
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    for sentence, o in zip(args.sentences, out):
        print(o)
        if args.show_attention:
            from pytransformer.translator import attention_map, cross_attention
            src, tgt, w = cross_attention(tr, sentence, o)
            print(f"cross-attention of the last decoder layer (mean of heads); row = target "
                  f"word being produced, column = source word:")
            print(attention_map(src, tgt, w))
    return 0


def _load_translator(path):
    """(Translator, None) or (None, exit code) with the reason printed."""
    import os
    from pytransformer.translator import Translator, default_model_path

    model = path or default_model_path()
    if model is None:
        print("pytransformer: this installation ships no model; train one with "
              "`pytransformer train --out translator.safetensors` and pass --model",
              file=sys.stderr)
        return None, 2
    if not os.path.exists(model):
        print(f"pytransformer: no model at {model}; train one with "
              f"`pytransformer train --out {model}`", file=sys.stderr)
        return None, 2
    return Translator.load(model), None


def cmd_evaluate(args):
    """Exact match and BLEU of a translator on the corpus splits."""
    from pytransformer.data import make_splits
    from pytransformer.translator import evaluate

    tr, code = _load_translator(args.model)
    if tr is None:
        return code
    seed = tr.data.get("seed", 0) if args.data_seed is None else args.data_seed
    splits = make_splits(seed=seed, n_train=0)
    print(f"data seed {seed}; {args.n} pairs per split; beam {args.beam}")
    for name in args.splits:
        r = evaluate(tr, getattr(splits, name)[:args.n], beam=args.beam)
        bleu = "n/a (pip install sacrebleu)" if r["bleu"] is None else f"{r['bleu']:.2f}"
        print(f"  {name:<14} exact match {100 * r['exact_match']:6.2f}%   BLEU {bleu}")
    return 0


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
    s = sub.add_parser("train", help="train an English-to-Spanish translator on the generated "
                                     "corpus (progress, validation, checkpoints, --resume)")
    s.add_argument("--out", default="translator.safetensors", help="checkpoint/model file")
    s.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    s.add_argument("--steps", type=int, default=6000, help="optimizer steps")
    s.add_argument("--batch-size", type=int, default=64, help="sentence pairs per step")
    s.add_argument("--n-train", type=int, default=100_000, help="training pairs to generate")
    s.add_argument("--data-seed", type=int, default=0, help="seed of the generated corpus")
    s.add_argument("--seed", type=int, default=0, help="seed of init, dropout, data order")
    s.add_argument("--d-model", type=int, default=128)
    s.add_argument("--nhead", type=int, default=4)
    s.add_argument("--layers", type=int, default=3, help="encoder and decoder layers each")
    s.add_argument("--ff", type=int, default=512, help="feed-forward width")
    s.add_argument("--dropout", type=float, default=0.1)
    s.add_argument("--max-len", type=int, default=32, help="longest sequence (tokens)")
    s.add_argument("--tie", action="store_true", help="tie output projection and embedding")
    s.add_argument("--warmup", type=int, default=1000, help="warm-up steps of the schedule")
    s.add_argument("--lr-factor", type=float, default=1.0, help="scales the paper's schedule")
    s.add_argument("--label-smoothing", type=float, default=0.1)
    s.add_argument("--eval-every", type=int, default=500, help="validation every N steps")
    s.add_argument("--ckpt-every", type=int, default=500, help="checkpoint every N steps")
    s.add_argument("--threads", type=int, default=0, help="threads (default: all cores)")
    s.set_defaults(func=cmd_train)
    s = sub.add_parser("translate", help="translate English sentences with a trained model")
    s.add_argument("sentences", nargs="+", help="English sentences (quote each)")
    s.add_argument("--model", default=None,
                   help="model file (default: the model shipped with the package)")
    s.add_argument("--beam", type=int, default=1, help="beam size (1: greedy)")
    s.add_argument("--show-attention", action="store_true",
                   help="print a heat map of the cross-attention (which source word each "
                        "target word looked at)")
    s.set_defaults(func=cmd_translate)
    s = sub.add_parser("evaluate", help="exact match and BLEU (sacrebleu) of a translator on "
                                        "the corpus splits")
    s.add_argument("--model", default=None,
                   help="model file (default: the model shipped with the package)")
    s.add_argument("--splits", nargs="+", default=["test", "compositional"],
                   choices=["valid", "test", "compositional"])
    s.add_argument("-n", "--n", type=int, default=2000, help="pairs per split (at most 2000)")
    s.add_argument("--beam", type=int, default=1)
    s.add_argument("--data-seed", type=int, default=None,
                   help="corpus seed (default: the one the model was trained on)")
    s.set_defaults(func=cmd_evaluate)
    return p


def main(argv=None):
    """Entry point of the `pytransformer` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except BrokenPipeError:
        # the output went into a pipe that stopped reading (`| head`): not an
        # error; point stdout at devnull so the interpreter's final flush is quiet
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
