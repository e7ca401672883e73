"""The training loop: label-smoothed cross-entropy, AdamW with the paper's
warm-up schedule, gradient clipping, a progress line, periodic validation,
atomic checkpoints every N steps and on Ctrl-C, and bit-identical resume.

Data come from a callable ``epoch_batches(epoch) -> sequence of (src,
tgt_in, tgt_out)`` int arrays (padded with the model's pad id), which must
give the same batches in the same order for the same epoch: the position in
the data is then just (epoch, batch index), which the checkpoint stores
together with the model, the optimizer, the schedule and the library's RNG
(dropout), so that a resumed run continues exactly as an uninterrupted one
would (same losses, same weights; tested).

Under ``mpirun -np N`` (see pytransformer.distributed) the same Trainer
trains data-parallel: every rank gets the same global batches, computes its
contiguous shard of each, and the gradients of the token-weighted loss are
all-reduced so that each step is the one-process step on the global batch
(up to summation order); rank 0 alone prints and saves (see Trainer).
"""
import contextlib
import dataclasses
import math
import os
import signal
import sys
import threading
import time

import numpy as np

import pytransformer as pt
from pytransformer import _random, checkpoint, distributed, optim, runtime
from pytransformer.nn import functional as F
from pytransformer.validation import int_arg, is_int

__all__ = ["ResumeError", "TrainConfig", "Trainer", "check_training_state",
           "read_settings_file"]


class ResumeError(ValueError):
    """A checkpoint that cannot be resumed: a training state that is missing,
    of the wrong type or out of range. The message names the file and the
    field."""


@dataclasses.dataclass
class TrainConfig:
    """Training hyper-parameters (saved in every checkpoint); each field is
    commented below. ValueError when steps or warmup is not a positive
    int, eval_every, ckpt_every or seed not a non-negative int,
    label_smoothing outside [0, 1), snapshots not a bool, or dtype not
    "float32" or "float64"."""

    steps: int = 10000               # optimizer steps in all
    lr_factor: float = 1.0           # multiplies the paper's schedule
    warmup: int = 4000               # warm-up steps of the schedule
    betas: tuple = (0.9, 0.98)       # AdamW, as in the paper
    eps: float = 1e-9
    weight_decay: float = 0.0
    label_smoothing: float = 0.1     # the paper's
    clip_norm: float = 1.0           # 0 disables clipping
    seed: int = 0                    # initialisation, dropout, data order
    eval_every: int = 500            # validation every N steps (0: never)
    ckpt_every: int = 1000           # checkpoint every N steps (0: only at the end)
    snapshots: bool = True           # compressed weights at checkpoint.snapshot_steps(steps)
    dtype: str = "float32"           # of the parameters, AdamW's state, activations, loss

    def __post_init__(self):
        for name in ("steps", "warmup"):
            int_arg(name, getattr(self, name), 1)
        for name in ("eval_every", "ckpt_every", "seed"):
            int_arg(name, getattr(self, name), 0)
        for name, lo, lo_open in (("lr_factor", 0.0, True), ("eps", 0.0, True),
                                  ("weight_decay", 0.0, False), ("clip_norm", 0.0, False),
                                  ("label_smoothing", 0.0, False)):
            v = getattr(self, name)
            if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                    or v < lo or (lo_open and v == lo)):
                raise ValueError(f"{name}: expected a finite number {'>' if lo_open else '>='} "
                                 f"{lo}, got {v!r:.80}")
        if not isinstance(self.snapshots, bool):
            raise ValueError(f"snapshots: expected true or false, got {self.snapshots!r:.80}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype: expected 'float32' or 'float64', got {self.dtype!r:.80}")
        if not self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing: must be in [0, 1), got {self.label_smoothing}")
        b = self.betas
        if (not isinstance(b, (list, tuple)) or len(b) != 2
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                           and 0.0 <= x < 1.0 for x in b)):
            raise ValueError(f"betas: expected two numbers in [0, 1), got {b!r:.80}")
        self.betas = tuple(self.betas)

    @classmethod
    def from_dict(cls, d):
        """The TrainConfig of a dict saved by dataclasses.asdict(); ValueError
        for a key that is no field or a value out of range."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a dict of settings, got {type(d).__name__}")
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in d if k not in fields]
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r:.80}; known keys: {', '.join(fields)}")
        return cls(**d)


def read_settings_file(path, types):
    """The settings in a config file, as {name: value}: a JSON object, or a
    TOML table when `path` ends in .toml (Python 3.11+, tomllib). `types`
    maps each allowed name to int, float, str or bool; keys may use - for _
    (``eval-every`` is ``eval_every``); ints are accepted for floats. An
    unreadable file, an unknown key or a value of the wrong type raises
    ValueError naming the file and the key."""
    import difflib
    import json

    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ValueError(f"config file {path}: cannot read it: {e.strerror}") from None
    if path.lower().endswith(".toml"):
        try:
            import tomllib
        except ImportError:
            raise ValueError(f"config file {path}: TOML needs Python 3.11 or later (tomllib); "
                             f"use JSON") from None
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise ValueError(f"config file {path}: not valid TOML: {e}") from None
    else:
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"config file {path}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path}: expected an object of settings "
                         f"{{\"name\": value, ...}}, got a {type(data).__name__}")
    expected = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    out = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in types:
            close = difflib.get_close_matches(name, list(types), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"config file {path}: unknown key {key!r}{hint}; known keys: "
                             f"{', '.join(types)}")
        typ = types[name]
        if typ is bool:
            ok = isinstance(value, bool)
        elif typ is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, typ) and not isinstance(value, bool)
        if not ok:
            raise ValueError(f"config file {path}: key {key!r}: expected {expected[typ]}, got "
                             f"{json.dumps(value, default=repr)} ({type(value).__name__})")
        out[name] = float(value) if typ is float else value
    return out


def _is_int(v, lo=0):
    return is_int(v) and v >= lo


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_training_state(ck, path=None):
    """Check the training state a checkpoint written by Trainer.save holds
    (`ck`, from checkpoint.load_checkpoint) before it is used: the step,
    extra's train_config (a TrainConfig; unknown keys refused), scheduler
    (a dict whose last_epoch is the step), epoch and index (non-negative
    ints), validations (a list of {"step": int, name: number or None}),
    last_loss (None or a number) and losses (see Trainer.save). Returns the
    saved TrainConfig; ResumeError naming `path` and the field otherwise."""
    where = os.fspath(path if path is not None else ck.path)

    def fail(field, what):
        raise ResumeError(f"{where}: {field}: {what}")
    extra = ck.extra
    if not isinstance(extra, dict) or not _is_int(ck.step):
        fail("extra" if not isinstance(extra, dict) else "step",
             "no training state (not a checkpoint written by Trainer.save)")
    for key in ("train_config", "scheduler", "epoch", "index"):
        if key not in extra:
            fail(key, "missing (not a checkpoint written by Trainer.save)")
    try:
        config = TrainConfig.from_dict(extra["train_config"])
    except (TypeError, ValueError) as e:
        fail("train_config", str(e))
    sched = extra["scheduler"]
    if not isinstance(sched, dict):
        fail("scheduler", f"expected a dict (the schedule's state), got "
                          f"{type(sched).__name__} {sched!r:.80}")
    if sched.get("last_epoch") != ck.step or not _is_int(sched.get("last_epoch")):
        fail("scheduler", f"expected last_epoch to be the step {ck.step}, got "
                          f"{sched.get('last_epoch')!r:.80}")
    for key in ("epoch", "index"):
        if not _is_int(extra[key]):
            fail(key, f"expected a non-negative int, got {extra[key]!r:.80}")
    rows = extra.get("validations", [])
    if not isinstance(rows, list):
        fail("validations", f"expected a list, got {type(rows).__name__} {rows!r:.80}")
    for i, row in enumerate(rows):
        if (not isinstance(row, dict) or not _is_int(row.get("step"), 1)
                or not all(v is None or _is_number(v) for k, v in row.items())):
            fail(f"validations[{i}]", f"expected {{\"step\": int >= 1, name: number or "
                                      f"null, ...}}, got {row!r:.80}")
    last = extra.get("last_loss")
    if last is not None and not _is_number(last):
        fail("last_loss", f"expected a number or null, got {last!r:.80}")
    if "losses" in extra:
        _decode_losses(extra["losses"], ck.step, fail)
    return config


def _encode_losses(losses):
    """The losses of steps 1..n as text for the checkpoint's JSON: base64 of
    little-endian float64 (11 characters a step, exact)."""
    import base64
    return base64.b64encode(np.asarray(losses, dtype="<f8").tobytes()).decode("ascii")


def _decode_losses(text, step, fail):
    """The losses of steps 1..step saved by _encode_losses, as a list of floats."""
    import base64
    import binascii
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (AttributeError, UnicodeEncodeError, binascii.Error):
        fail("losses", f"expected base64 text of float64 losses, got {text!r:.80}")
    if len(raw) != 8 * step:
        fail("losses", f"expected {step} losses (one a step), got {len(raw) / 8:g}")
    return np.frombuffer(raw, dtype="<f8").tolist()


def _fmt(v):
    """A score for the progress line: floats to 4 decimals, None as n/a."""
    if v is None:
        return "n/a"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4f}"
    return str(v)


def _jsonable(v):
    """NumPy scalars as Python numbers (checkpoint metadata is JSON)."""
    return v.item() if isinstance(v, np.generic) else v


def write_csv(path, rows):
    """Write dict rows to `path` as CSV (atomically): a header of every key
    in order of first appearance, None and missing values as empty cells."""
    from pytransformer._atomic import atomic_write

    keys = list(dict.fromkeys(k for row in rows for k in row))
    cell = lambda v: "" if v is None else repr(_jsonable(v))  # noqa: E731
    lines = [",".join(keys)] + [",".join(cell(row.get(k)) for k in keys) for row in rows]
    atomic_write(path, ["\n".join(lines).encode() + b"\n"])


class _Silent:
    """The progress stream of the ranks other than 0: discards everything."""

    def write(self, text):
        """Discard `text`."""
        return len(text)

    def flush(self):
        """Nothing to flush."""

    def isatty(self):
        """Not a terminal."""
        return False


class Progress:
    """One status line on a terminal (rewritten in place), or a plain line
    every `every` steps elsewhere: step, loss, tokens/s, ETA."""

    def __init__(self, total, stream=None, every=50):
        self.total, self.stream, self.every = total, stream or sys.stderr, every
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0, self.tokens, self.first = time.perf_counter(), 0, None

    def update(self, step, loss, tokens):
        """Report that `step` (1-based) finished with `loss` on `tokens` tokens."""
        now = time.perf_counter()
        self.first = step - 1 if self.first is None else self.first
        self.tokens += tokens
        done = step - self.first
        rate = self.tokens / max(now - self.t0, 1e-9)
        eta = (self.total - step) * (now - self.t0) / max(done, 1)
        width = 24
        fill = int(width * step / self.total)
        line = (f"step {step}/{self.total} [{'#' * fill}{'.' * (width - fill)}] "
                f"loss {loss:.4f}  {rate:,.0f} tok/s  ETA {int(eta) // 60}m{int(eta) % 60:02d}s")
        if self.tty:
            self.stream.write("\r" + line)
            if step == self.total:
                self.stream.write("\n")
        elif step % self.every == 0 or step == self.total:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text):
        """A line of its own (validation results, checkpoints)."""
        self.stream.write(("\n" if self.tty else "") + text + "\n")
        self.stream.flush()


class Trainer:
    """Trains `model` (a Seq2SeqTransformer) on `epoch_batches`.

    ``Trainer(model, epoch_batches, config, ckpt_path=None, validate=None,
    model_config=None, extra=None, stream=None, valid_csv=None)``;
    ``validate(model) -> dict`` of numbers (None: not available, shown as
    n/a), called every config.eval_every steps in eval mode, printed on the
    progress stream and kept in ``validations`` (a list of {"step", ...}
    dicts, saved in checkpoints so a resumed run keeps the earlier ones);
    with ``valid_csv`` a path, all validations so far are rewritten there
    (atomically) after each one. ``model_config``, a JSON-able dict saved
    with the checkpoints (what is needed to rebuild the model). ``run()``
    trains up to config.steps and returns the list of (step, loss).
    ``Trainer.resume(path, model, epoch_batches, ...)`` continues a run.
    With config.snapshots (the default) the trainer keeps a compressed copy
    of the weights (checkpoint.compress_snapshot) at the steps of
    ``checkpoint.snapshot_steps(config.steps)``, step 0 and the last step
    included, in ``snapshots`` ({step: {name: array}}), written with every
    checkpoint and kept by resume() (a resumed run with more steps adds
    those of its own schedule and keeps the earlier ones).
    The model is cast to config.dtype (Module.to) before anything else, so
    its parameters, AdamW's moments, the activations and the loss are all
    of that dtype; float64 makes the rounding of a step ~1e-16 relative
    instead of ~1e-7 (for runs whose results are compared across summation
    orders, such as one process against several ranks).
    Constructing a Trainer turns on the process's training settings
    (:func:`pytransformer.runtime.tune_for_training`: glibc malloc keeps
    freed blocks for the next step).

    Under mpirun with several ranks (distributed.init() finds them), the
    model is wrapped in distributed.DataParallel (parameters broadcast from
    rank 0, compared by checksum every 100 steps, each wait for the other
    ranks bounded by `dp_timeout` seconds); each rank computes rows
    distributed.shard(B) of every global batch, with the dropout masks those
    rows get in the whole batch; the loss is the global mean over the
    batch's non-pad tokens. Rank 0 alone validates (with
    ``validate_all_ranks=True`` every rank calls `validate`, which shares
    the work out and returns the scores on rank 0, None elsewhere), writes
    the progress line, the CSV and the checkpoints; Ctrl-C or SIGTERM on
    any rank stops every rank after the same step."""

    def __init__(self, model, epoch_batches, config, ckpt_path=None, validate=None,
                 model_config=None, extra=None, stream=None, valid_csv=None, dp_timeout=60.0,
                 validate_all_ranks=False):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config: expected a TrainConfig, got {type(config).__name__}")
        self.model, self.epoch_batches, self.config = model, epoch_batches, config
        self.ckpt_path, self.validate = ckpt_path, validate
        self.model_config, self.extra, self.stream = model_config, extra or {}, stream
        self.valid_csv, self.validate_all_ranks = valid_csv, validate_all_ranks
        runtime.tune_for_training()         # malloc keeps freed blocks for the next step
        model.to(config.dtype)              # before AdamW's state and DataParallel's buckets
        self.pad = model.config.pad_idx
        self.opt = optim.AdamW(model.parameters(), lr=config.lr_factor, betas=config.betas,
                               eps=config.eps, weight_decay=config.weight_decay)
        self.sched = optim.NoamLR(self.opt, model.config.d_model, config.warmup)
        self.step, self.epoch, self.index = 0, 0, 0
        self.history = []
        self.validations = []
        self._updating, self._interrupt, self._rng_before = False, False, None
        self._saved_step = None             # the step the file at ckpt_path holds
        self.earlier_history = []           # (step, loss) of the run before resume()
        self.snapshots = {}                 # step -> checkpoint.compress_snapshot(weights)
        distributed.init()
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.dp, self._stop_agreed = None, False
        if self.world > 1:
            self.dp = distributed.DataParallel(model, reduce="sum", check_every=100,
                                               timeout=dp_timeout)
            if self.rank != 0:
                self.stream = _Silent()

    @property
    def loss_history(self):
        """(step, loss) of the whole run: the steps before resume() (when
        the checkpoint has them) and this run's."""
        return self.earlier_history + self.history

    # --- one step ------------------------------------------------------------
    def train_step(self, src, tgt_in, tgt_out):
        """Forward, backward, clip, AdamW, schedule; returns the loss (of
        the global batch, when data-parallel)."""
        if self.dp is not None:
            return self._parallel_step(src, tgt_in, tgt_out)
        logits = self.model(src, tgt_in)
        V = logits.shape[-1]
        loss = F.cross_entropy(logits.reshape(-1, V), np.asarray(tgt_out).reshape(-1),
                               ignore_index=self.pad,
                               label_smoothing=self.config.label_smoothing)
        self.opt.zero_grad()
        loss.backward()
        if self.config.clip_norm:
            optim.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        self._updating = True               # the state is no longer the one before the step
        self.opt.step()
        self.sched.step()
        return loss.item()

    def _parallel_step(self, src, tgt_in, tgt_out):
        """train_step on this rank's rows: the loss of the rows, weighted by
        their share of the batch's non-pad tokens, so that the sum over
        ranks of the gradients is the gradient of the global mean."""
        from mpi4py import MPI
        src, tgt_in, tgt_out = np.asarray(src), np.asarray(tgt_in), np.asarray(tgt_out)
        first, rows = distributed.shard(len(src))
        rows_ = slice(first, first + rows)
        ntok = int(np.sum(tgt_out != self.pad))
        mine = int(np.sum(tgt_out[rows_] != self.pad))
        loss = None
        if rows:            # a batch smaller than the ranks leaves some ranks without rows
            with _random.batch_shard(first, rows):
                logits = self.model(src[rows_], tgt_in[rows_])
            V = logits.shape[-1]
            loss = F.cross_entropy(logits.reshape(-1, V), tgt_out[rows_].reshape(-1),
                                   ignore_index=self.pad,
                                   label_smoothing=self.config.label_smoothing)
        # the batch's loss and whether any rank was interrupted, reduced
        # while backward runs
        stats = np.array([loss.item() * mine if mine else 0.0,
                          1.0 if self._interrupt is True else 0.0])
        request = distributed.comm().Iallreduce(MPI.IN_PLACE, stats, op=MPI.SUM)
        self.opt.zero_grad()
        if mine:
            (loss * (mine / ntok)).backward()
        self.dp.finish()
        distributed._wait([request], self.dp.timeout, "the loss all-reduce")
        self._stop_agreed = self._stop_agreed or stats[1] > 0
        if self.config.clip_norm:           # the same global norm on every rank
            optim.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        self._updating = True
        self.opt.step()
        self.sched.step()
        return float(stats[0] / ntok)

    def _stopping(self):
        """Whether to stop at this step boundary (Ctrl-C/SIGTERM: on this
        process, or, data-parallel, on any rank by the last step)."""
        return self._stop_agreed if self.dp is not None else bool(self._interrupt)

    # --- the loop --------------------------------------------------------------
    def run(self):
        """Train until config.steps and return this run's (step, loss) list.

        Ctrl-C (SIGINT) does not stop a step half-way: the step under way
        finishes (with its validation and checkpoint), the state after it is
        saved (when a path was given) and KeyboardInterrupt is raised, so a
        checkpoint only ever holds the state between two steps (a step
        interrupted inside its forward would have advanced the dropout RNG,
        inside its optimizer update changed the weights, without being
        counted). A second Ctrl-C while the step finishes stops at once
        without saving; the file keeps the last checkpoint. The handler is
        installed only while run() runs, and only in the main thread (other
        threads cannot receive signals); a KeyboardInterrupt raised some
        other way saves only when the state is still the one before the
        step. A run with no step left to take returns without writing."""
        cfg = self.config
        if self.step >= cfg.steps:
            return self.history
        progress = Progress(cfg.steps, self.stream)
        self._snapshot_if_due()             # step 0, before any update
        self.model.train()
        self._interrupt = False
        with self._deferred_sigint(progress):
            try:
                self._loop(progress)
            except KeyboardInterrupt:
                self._interrupted(progress)
                raise
        if self.ckpt_path and self._saved_step != self.step:
            self.save(self.ckpt_path)
            distributed.barrier()
        if self._interrupt:                 # Ctrl-C during the last step
            self._stop(progress)
        return self.history

    def _loop(self, progress):
        cfg = self.config
        while self.step < cfg.steps:
            batches = self.epoch_batches(self.epoch)
            if len(batches) == 0:
                raise ValueError("epoch_batches: returned no batches")
            while self.index < len(batches) and self.step < cfg.steps:
                if self._stopping():
                    self._stop(progress)
                src, tgt_in, tgt_out = batches[self.index]
                self._rng_before = pt.get_rng_state()
                loss = self.train_step(src, tgt_in, tgt_out)
                if not math.isfinite(loss):
                    raise FloatingPointError(f"step {self.step + 1}: loss is {loss}")
                self.index += 1
                self.step += 1
                self.history.append((self.step, loss))
                self._updating = False
                self._snapshot_if_due()
                progress.update(self.step, loss, int(np.sum(np.asarray(tgt_out) != self.pad)))
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.validate:
                    if self.rank == 0 or self.validate_all_ranks:
                        self._validate(progress)
                    distributed.barrier()       # the others wait, without a time limit
                if self.ckpt_path and cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                    self.save(self.ckpt_path)
                    progress.message(f"checkpoint: {self.ckpt_path} (step {self.step})")
                    distributed.barrier()
            if self.index >= len(batches):
                self.epoch, self.index = self.epoch + 1, 0

    def _stop(self, progress):
        """At a step boundary after Ctrl-C: save, say so, raise KeyboardInterrupt."""
        if self.ckpt_path:
            if self._saved_step != self.step:
                self.save(self.ckpt_path)
                distributed.barrier()
            progress.message(f"interrupted: saved {self.ckpt_path} at step {self.step}; "
                             f"resume with --resume")
        self._interrupt = None              # reported: nothing left to do on the way out
        raise KeyboardInterrupt

    def _interrupted(self, progress):
        """A KeyboardInterrupt left the loop: save when the state is still
        the one between two steps, else say what the file holds."""
        if self._interrupt is None or not self.ckpt_path:
            return
        between = (not self._updating and not self._interrupt
                   and pt.get_rng_state() == self._rng_before)
        if between:
            self.save(self.ckpt_path)
            progress.message(f"interrupted: saved {self.ckpt_path} at step {self.step}; "
                             f"resume with --resume")
            return
        held = (f"{self.ckpt_path} holds step {self._saved_step}"
                if self._saved_step is not None else f"no checkpoint was written to "
                                                     f"{self.ckpt_path}")
        progress.message(f"interrupted in the middle of a step: not saved; {held}")

    @contextlib.contextmanager
    def _deferred_sigint(self, progress):
        """While inside: the first SIGINT only sets a flag the loop checks at
        each step boundary (and says so on the progress stream); a second
        raises KeyboardInterrupt at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)
        if previous in (signal.SIG_IGN, None):
            yield
            return
        # data-parallel: mpirun turns Ctrl-C into SIGTERM for every rank (and
        # SIGKILL a fraction of a second later); SIGUSR1, which mpirun
        # forwards to every rank, is the stop without a deadline
        signums = ((signal.SIGINT, signal.SIGTERM, signal.SIGUSR1) if self.dp is not None
                   else (signal.SIGINT,))
        before = {s: signal.getsignal(s) for s in signums}
        names = {signal.SIGINT: "interrupt", signal.SIGTERM: "terminate signal (SIGTERM)",
                 signal.SIGUSR1: "stop signal (SIGUSR1)"}

        def on_sigint(signum, frame):
            if self._interrupt:
                raise KeyboardInterrupt
            self._interrupt = True
            what = names.get(signum, f"signal {signum}")
            progress.message(f"{what}: finishing the step under way, then saving (Ctrl-C "
                             f"again stops at once, without saving)")
        for s in signums:
            signal.signal(s, on_sigint)
        try:
            yield
        finally:
            for s, handler in before.items():
                signal.signal(s, handler)

    def _validate(self, progress):
        was = self.model.training
        self.model.eval()
        try:
            scores = self.validate(self.model)
        finally:
            self.model.train(was)
        if self.rank != 0:                  # a rank's share of validate_all_ranks
            return
        if not isinstance(scores, dict):
            raise TypeError(f"validate: expected it to return a dict, got "
                            f"{type(scores).__name__}")
        self.validations.append({"step": self.step, **scores})
        progress.message(f"validation at step {self.step}: " + ", ".join(
            f"{k} {_fmt(v)}" for k, v in scores.items()))
        if self.valid_csv:
            write_csv(self.valid_csv, self.validations)

    def _snapshot_if_due(self):
        """Keep a compressed copy of the weights when this step is one of
        the snapshot steps (rank 0 only: the others never write)."""
        if not self.config.snapshots or self.rank != 0 or self.step in self.snapshots:
            return
        if self.step in checkpoint.snapshot_steps(self.config.steps):
            self.snapshots[self.step] = checkpoint.compress_snapshot(self.model.state_dict())

    # --- checkpoints -------------------------------------------------------------
    def save(self, path):
        """Write the whole training state to `path` (atomic). Besides the
        model, optimizer, step and RNG, extra holds the schedule, the
        position in the data (epoch, index), the TrainConfig, the
        validations, the last loss, the thread count the kernels ran with
        (results depend on it: BLAS splits its products by thread), the
        number of data-parallel ranks and the loss of every step so far as
        base64 float64 (when all are known); the snapshots taken so far go
        with it (the one of this step, if any, as the saved weights
        themselves: checkpoint.SNAPSHOT_IS_MODEL). Data-parallel, only rank 0 writes (the others only note
        the step)."""
        if self.rank != 0:
            if self.ckpt_path is not None and os.fspath(path) == os.fspath(self.ckpt_path):
                self._saved_step = self.step
            return
        extra = dict(self.extra)
        extra.update(scheduler=self.sched.state_dict(), epoch=self.epoch, index=self.index,
                     train_config=dataclasses.asdict(self.config),
                     validations=[{k: _jsonable(v) for k, v in row.items()}
                                  for row in self.validations],
                     last_loss=self.history[-1][1] if self.history else None,
                     threads=pt.get_num_threads(), world_size=self.world)
        whole = self.loss_history
        if [s for s, _ in whole] == list(range(1, self.step + 1)):
            extra["losses"] = _encode_losses([loss for _, loss in whole])
        # the snapshot of this step, if any, is the model being saved
        snaps = {s: checkpoint.SNAPSHOT_IS_MODEL if s == self.step else v
                 for s, v in self.snapshots.items()}
        checkpoint.save_checkpoint(path, model=self.model, optimizer=self.opt, step=self.step,
                                   config=self.model_config, rng=pt.get_rng_state(), extra=extra,
                                   snapshots=snaps)
        if self.ckpt_path is not None and os.fspath(path) == os.fspath(self.ckpt_path):
            self._saved_step = self.step

    @classmethod
    def resume(cls, path, model, epoch_batches, config=None, **kwargs):
        """A Trainer continuing the run saved at `path`, on `model` (built with
        the same configuration; its weights are replaced by the saved ones).
        `config` may raise config.steps; by default the saved config is used
        (its dtype must be the saved one: ResumeError naming both otherwise).
        The saved state is checked first (check_training_state; the index
        must lie within the saved epoch's batches): ResumeError, naming the
        file and the field, for anything that cannot be resumed.
        Data-parallel, every rank reads `path` (on several machines: the
        same file on each, e.g. shared storage) and the ranks' parameters are
        then compared. Resuming with a different number of ranks is allowed:
        the global batches and the data order do not depend on it, but the
        sums over ranks are taken in another order, so the run is not
        bit-identical to an uninterrupted one; rank 0 says so on the stream."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"resume: no checkpoint at {path}")
        where = os.fspath(path)
        try:
            ck = checkpoint.load_checkpoint(path)
        except ValueError as e:
            raise ResumeError(str(e) if where in str(e) else f"{where}: {e}") from None
        saved = check_training_state(ck, path)
        config = config or saved
        if config.dtype != saved.dtype:
            raise ResumeError(f"{where}: dtype: the run was trained in {saved.dtype}, got "
                              f"{config.dtype}; a resumed run keeps its dtype")
        if config.steps < ck.step:
            raise ResumeError(f"{where}: steps: the run is at step {ck.step}, expected at "
                              f"least {ck.step} steps, got {config.steps}")
        trainer = cls(model, epoch_batches, config, ckpt_path=kwargs.pop(
            "ckpt_path", path), model_config=ck.config, **kwargs)
        n = len(epoch_batches(ck.extra["epoch"]))
        if ck.extra["index"] > n:
            raise ResumeError(f"{where}: index: expected at most {n} (the batches of epoch "
                              f"{ck.extra['epoch']}), got {ck.extra['index']}")
        for field, load in (("model", lambda: ck.load_into(model=model)),
                            ("optimizer", lambda: ck.load_into(optimizer=trainer.opt)),
                            ("scheduler", lambda: trainer.sched.load_state_dict(
                                ck.extra["scheduler"])),
                            ("rng", lambda: pt.set_rng_state(ck.rng_state))):
            try:
                load()
            except (TypeError, ValueError, KeyError, OverflowError) as e:
                raise ResumeError(f"{where}: {field}: {e}") from None
        trainer.step, trainer.epoch, trainer.index = ck.step, ck.extra["epoch"], ck.extra["index"]
        saved_world = ck.extra.get("world_size", 1)
        if saved_world != trainer.world and trainer.rank == 0:
            (trainer.stream or sys.stderr).write(
                f"resume: {where} was written by a run on {saved_world} rank(s), this one has "
                f"{trainer.world}: same batches and data order, but not bit-identical to a "
                f"run on {saved_world}\n")
        if trainer.dp is not None:
            trainer.dp.check_parameters()
        trainer._saved_step = ck.step if os.fspath(trainer.ckpt_path) == where else None
        trainer.validations = [row for row in ck.extra.get("validations", [])
                               if row["step"] <= ck.step]
        if "losses" in ck.extra:
            losses = _decode_losses(ck.extra["losses"], ck.step, None)
            trainer.earlier_history = list(zip(range(1, ck.step + 1), losses))
        shapes = {k: v.shape for k, v in model.state_dict().items()}
        for step, snap in sorted(ck.snapshots.items()):
            problem = checkpoint.check_snapshot(snap, shapes)
            if not problem and snap == checkpoint.SNAPSHOT_IS_MODEL and step != ck.step:
                problem = (f"{checkpoint.SNAPSHOT_IS_MODEL!r} (the saved weights), but they "
                           f"are the weights of step {ck.step}")
            if problem:
                raise ResumeError(f"{where}: snapshot of step {step}: {problem}")
        trainer.snapshots = {
            s: checkpoint.compress_snapshot(ck.model_state)
            if snap == checkpoint.SNAPSHOT_IS_MODEL else snap
            for s, snap in ck.snapshots.items() if s <= ck.step}
        return trainer
