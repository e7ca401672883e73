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
from pytransformer import checkpoint, optim
from pytransformer.nn import functional as F

__all__ = ["TrainConfig", "Trainer", "read_settings_file"]


@dataclasses.dataclass
class TrainConfig:
    """Training hyper-parameters (saved in every checkpoint); each field is
    commented below. ValueError when steps or warmup is not a positive
    int, eval_every, ckpt_every or seed not a non-negative int, or
    label_smoothing outside [0, 1)."""

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

    def __post_init__(self):
        for name in ("steps", "warmup"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        for name in ("eval_every", "ckpt_every", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name}: expected a non-negative int, got {v!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing: must be in [0, 1), got {self.label_smoothing}")
        self.betas = tuple(self.betas)


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
    ``Trainer.resume(path, model, epoch_batches, ...)`` continues a run."""

    def __init__(self, model, epoch_batches, config, ckpt_path=None, validate=None,
                 model_config=None, extra=None, stream=None, valid_csv=None):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config: expected a TrainConfig, got {type(config).__name__}")
        self.model, self.epoch_batches, self.config = model, epoch_batches, config
        self.ckpt_path, self.validate = ckpt_path, validate
        self.model_config, self.extra, self.stream = model_config, extra or {}, stream
        self.valid_csv = valid_csv
        self.pad = model.config.pad_idx
        self.opt = optim.AdamW(model.parameters(), lr=config.lr_factor, betas=config.betas,
                               eps=config.eps, weight_decay=config.weight_decay)
        self.sched = optim.NoamLR(self.opt, model.config.d_model, config.warmup)
        self.step, self.epoch, self.index = 0, 0, 0
        self.history = []
        self.validations = []
        self._updating, self._interrupt, self._rng_before = False, False, None
        self._saved_step = None             # the step the file at ckpt_path holds

    # --- one step ------------------------------------------------------------
    def train_step(self, src, tgt_in, tgt_out):
        """Forward, backward, clip, AdamW, schedule; returns the loss."""
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
        self.model.train()
        self._interrupt = False
        with self._deferred_sigint():
            try:
                self._loop(progress)
            except KeyboardInterrupt:
                self._interrupted(progress)
                raise
        if self.ckpt_path and self._saved_step != self.step:
            self.save(self.ckpt_path)
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
                if self._interrupt:
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
                progress.update(self.step, loss, int(np.sum(np.asarray(tgt_out) != self.pad)))
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.validate:
                    self._validate(progress)
                if self.ckpt_path and cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                    self.save(self.ckpt_path)
                    progress.message(f"checkpoint: {self.ckpt_path} (step {self.step})")
            if self.index >= len(batches):
                self.epoch, self.index = self.epoch + 1, 0

    def _stop(self, progress):
        """At a step boundary after Ctrl-C: save, say so, raise KeyboardInterrupt."""
        if self.ckpt_path:
            if self._saved_step != self.step:
                self.save(self.ckpt_path)
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
        progress.message(f"interrupted during step {self.step + 1}: not saved; {held}")

    @contextlib.contextmanager
    def _deferred_sigint(self):
        """While inside: the first SIGINT only sets a flag the loop checks at
        each step boundary; a second raises KeyboardInterrupt at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)
        if previous in (signal.SIG_IGN, None):
            yield
            return

        def on_sigint(signum, frame):
            if self._interrupt:
                raise KeyboardInterrupt
            self._interrupt = True
        signal.signal(signal.SIGINT, on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _validate(self, progress):
        was = self.model.training
        self.model.eval()
        try:
            scores = self.validate(self.model)
        finally:
            self.model.train(was)
        if not isinstance(scores, dict):
            raise TypeError(f"validate: expected it to return a dict, got "
                            f"{type(scores).__name__}")
        self.validations.append({"step": self.step, **scores})
        progress.message(f"validation at step {self.step}: " + ", ".join(
            f"{k} {_fmt(v)}" for k, v in scores.items()))
        if self.valid_csv:
            write_csv(self.valid_csv, self.validations)

    # --- checkpoints -------------------------------------------------------------
    def save(self, path):
        """Write the whole training state to `path` (atomic)."""
        extra = dict(self.extra)
        extra.update(scheduler=self.sched.state_dict(), epoch=self.epoch, index=self.index,
                     train_config=dataclasses.asdict(self.config),
                     validations=[{k: _jsonable(v) for k, v in row.items()}
                                  for row in self.validations],
                     last_loss=self.history[-1][1] if self.history else None)
        checkpoint.save_checkpoint(path, model=self.model, optimizer=self.opt, step=self.step,
                                   config=self.model_config, rng=pt.get_rng_state(), extra=extra)
        if self.ckpt_path is not None and os.fspath(path) == os.fspath(self.ckpt_path):
            self._saved_step = self.step

    @classmethod
    def resume(cls, path, model, epoch_batches, config=None, **kwargs):
        """A Trainer continuing the run saved at `path`, on `model` (built with
        the same configuration; its weights are replaced by the saved ones).
        `config` may raise config.steps; by default the saved config is used."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"resume: no checkpoint at {path}")
        ck = checkpoint.load_checkpoint(path)
        saved = TrainConfig(**ck.extra["train_config"])
        trainer = cls(model, epoch_batches, config or saved, ckpt_path=kwargs.pop(
            "ckpt_path", path), model_config=ck.config, **kwargs)
        ck.load_into(model=model, optimizer=trainer.opt)
        trainer.sched.load_state_dict(ck.extra["scheduler"])
        pt.set_rng_state(ck.rng_state)
        trainer.step, trainer.epoch, trainer.index = ck.step, ck.extra["epoch"], ck.extra["index"]
        trainer._saved_step = ck.step if os.fspath(trainer.ckpt_path) == os.fspath(path) else None
        trainer.validations = [row for row in ck.extra.get("validations", [])
                               if row["step"] <= ck.step]
        return trainer
