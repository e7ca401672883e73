"""Checkpoints: model, optimizer, step, config, RNG state and training
snapshots in one safetensors file (pytransformer.safetensors reads and
writes the format, atomically and validating everything; this module is
the layout on top, and the compact form of the snapshots:
snapshot_steps, compress_snapshot, decompress_snapshot, check_snapshot).

Checkpoint layout (format version "1"):

    tensors   "model.<key>"                    model.state_dict()[key]
              "optimizer.state.<i>.<name>"     optimizer array state
              "snapshot.<step>.<name>"         training snapshots (optional; see
                                               compress_snapshot)
    metadata  "pytransformer.checkpoint": "1"  (required on load)
              "model":     JSON list of the state_dict keys, in order
              "optimizer": JSON {"state": {"<i>": {name: {"tensor": tensor
                           name} | {"value": JSON value}}}, "param_groups": [...]}
              "step":      JSON int
              "config":    JSON object
              "extra":     JSON object
              "rng":       JSON {"type": "numpy.random.Generator" | "dict",
                                 "state": ...}
              "snapshots": JSON {"<step>": [name, ...] | "model"} (optional):
                           the arrays of the snapshot taken at each step;
                           "model" (for one step at most): the model's
                           own weights are that step's

Within these JSON values tuples are stored as {"__tuple__": [...]} and come
back as tuples (so an optimizer's betas=(0.9, 0.999) is restored as a tuple);
a dict key "__tuple__" is therefore reserved. NumPy scalars become Python
numbers; non-finite floats are kept (Python's JSON dialect: NaN, Infinity).
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Optional

import numpy as np

from pytransformer._random import check_bit_generator_state
from pytransformer.safetensors import (MAX_HEADER_SIZE, MEMORY_FACTOR, MEMORY_SLACK,
                                       CheckpointError, load_file, load_metadata,
                                       load_with_metadata, save_file, unique_keys)
from pytransformer.validation import int_arg, is_int, names_list

__all__ = ["CheckpointError", "Checkpoint", "save_file", "load_file", "load_metadata",
           "save_checkpoint", "load_checkpoint", "restore_rng", "FORMAT_KEY",
           "FORMAT_VERSION", "MAX_HEADER_SIZE", "MEMORY_FACTOR", "MEMORY_SLACK",
           "SNAPSHOT_IS_MODEL", "SNAPSHOT_LEFT_OUT", "check_snapshot", "compress_snapshot", "decompress_snapshot",
           "snapshot_nbytes", "snapshot_steps"]

FORMAT_KEY = "pytransformer.checkpoint"
FORMAT_VERSION = "1"


# ------------------------------------------------------------ snapshots
#
# Training snapshots: the weights of a translator at a few steps of its
# training, small enough to ship inside the model file, for the learning
# view (how attention scores and the alignment changed from step 0 to the
# end). Which steps: snapshot_steps. How: compress_snapshot, every weight
# matrix as int8 with one float32 scale per row (row r = round(w[r] /
# s[r]), s[r] = max|w[r]| / 127), every vector (biases, layer norms) as
# float16, and the output projection (generator.*) left out, since
# teacher-forced attention and alignment never read it.

# what the learning view does not need: the output projection
SNAPSHOT_LEFT_OUT = ("generator.weight", "generator.bias")
# a snapshot stored as this string is the file's model itself (the weights
# at the step the file was saved): exact, and no bytes of its own
SNAPSHOT_IS_MODEL = "model"


def snapshot_steps(total):
    """The steps at which a run of `total` steps keeps snapshots: 0, the
    numbers 1, 3, 10, 30, 100, ... up to total / 2 (the largest five of
    them) and `total`; 4 to 7 steps, log-spaced. ValueError unless total is
    an int >= 1."""
    total = int_arg("total", total, 1)
    series, v = [], 1
    while v <= total / 2:
        series.append(v)
        v = v * 3 if str(v)[0] == "1" else v // 3 * 10
    return sorted({0, *series[-5:], total})


def compress_snapshot(state, leave_out=SNAPSHOT_LEFT_OUT):
    """The snapshot of a state dict ({key: float array}, e.g.
    model.state_dict()) as {name: array}: a matrix (ndim >= 2) as
    ``<key>.q8`` (int8, same shape) and ``<key>.scale`` (float32, one per
    row of its first axis), a vector or scalar as ``<key>.f16`` (float16);
    the keys in `leave_out` are not stored."""
    out = {}
    for key, w in state.items():
        if key in leave_out:
            continue
        w = np.asarray(w, dtype=np.float64)
        if w.ndim >= 2:
            rows = w.reshape(w.shape[0], -1)
            scale = np.abs(rows).max(axis=1) / 127.0
            safe = np.where(scale > 0, scale, 1.0)
            q = np.clip(np.rint(rows / safe[:, None]), -127, 127).astype(np.int8)
            out[key + ".q8"] = q.reshape(w.shape)
            out[key + ".scale"] = scale.astype(np.float32)
        else:
            out[key + ".f16"] = w.astype(np.float16)
    return out


def snapshot_nbytes(snapshot):
    """Bytes of the arrays of one snapshot ({name: array})."""
    return int(sum(a.nbytes for a in snapshot.values()))


def check_snapshot(snapshot, shapes, leave_out=SNAPSHOT_LEFT_OUT):
    """None when `snapshot` ({name: array}) is a snapshot that
    compress_snapshot() could have made of a state dict with these `shapes`
    ({key: shape}), else a one-line description of the first problem (a
    missing, unknown or misshapen array, a wrong dtype, a scale that is not
    finite). SNAPSHOT_IS_MODEL is always valid."""
    if isinstance(snapshot, str) and snapshot == SNAPSHOT_IS_MODEL:
        return None
    if not isinstance(snapshot, dict):
        return f"expected a dict of arrays, got {type(snapshot).__name__}"
    names = set(snapshot)
    for key, shape in shapes.items():
        if key in leave_out:
            continue
        shape = tuple(shape)
        want = ({key + ".q8": (np.int8, shape), key + ".scale": (np.float32, shape[:1])}
                if len(shape) >= 2 else {key + ".f16": (np.float16, shape)})
        for name, (dtype, sh) in want.items():
            if name not in snapshot:
                return f"no array {name!r:.80}"
            a = snapshot[name]
            if not isinstance(a, np.ndarray) or a.dtype != dtype or tuple(a.shape) != sh:
                got = (f"{a.dtype} {tuple(a.shape)}" if isinstance(a, np.ndarray)
                       else type(a).__name__)
                return f"{name!r:.80}: expected {np.dtype(dtype)} {sh}, got {got}"
            if dtype is np.float32 and not np.all(np.isfinite(a)):
                return f"{name!r:.80}: scales must be finite"
            names.discard(name)
    if names:
        return f"unexpected array {sorted(names)[0]!r:.80} (not a weight of this model)"
    return None


def decompress_snapshot(snapshot, dtype=np.float32):
    """The state dict ({key: array of `dtype`}) a snapshot stands for
    (without the keys compress_snapshot() left out)."""
    out = {}
    for name, a in snapshot.items():
        if name.endswith(".q8"):
            key = name[:-3]
            scale = snapshot[key + ".scale"].astype(np.float64)
            rows = a.reshape(a.shape[0], -1).astype(np.float64) * scale[:, None]
            out[key] = rows.reshape(a.shape).astype(dtype)
        elif name.endswith(".f16"):
            out[name[:-4]] = a.astype(dtype)
    return out


# ------------------------------------------------------------- checkpoints

_TUPLE = "__tuple__"
_GENERATOR = "numpy.random.Generator"
_BIT_GENERATORS = {name: getattr(np.random, name)
                   for name in ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")}


def _check_key(where, k):
    """TypeError unless k is a str; ValueError for the reserved tuple tag."""
    if not isinstance(k, str):
        raise TypeError(f"{where}: dict keys must be str, got {type(k).__name__} {k!r:.80}")
    if k == _TUPLE:
        raise ValueError(f"{where}: the dict key {_TUPLE!r:.80} is reserved (it marks "
                         f"tuples in checkpoint metadata)")


def _encode(value, where):
    """A JSON-able copy of value: tuples tagged, NumPy scalars as Python numbers."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, (list, tuple)):
        items = [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return {_TUPLE: items} if isinstance(value, tuple) else items
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            _check_key(where, k)
            out[k] = _encode(v, f"{where}[{k!r:.80}]")
        return out
    raise TypeError(f"{where}: {type(value).__name__} cannot be stored as JSON (expected "
                    f"None, bool, int, float, str, list, tuple or dict with str keys)")


def _dumps(value, where):
    """JSON text of `value` (see _encode)."""
    try:
        return json.dumps(_encode(value, where), ensure_ascii=False, separators=(",", ":"))
    except RecursionError:
        raise ValueError(f"{where}: nested too deeply (or contains itself)") from None


def _decode_object(pairs):
    """json object_pairs_hook inverting _encode: a tuple for a tuple tag
    object (ValueError if malformed), else a dict (ValueError on a repeated
    key). Decoding while parsing builds each object once."""
    d = unique_keys(pairs)
    if _TUPLE in d:
        if len(d) != 1 or not isinstance(d[_TUPLE], list):
            raise ValueError(f"malformed {_TUPLE} object")
        return tuple(d[_TUPLE])
    return d


def _plain_state(value):
    """A bit generator's state with its arrays as lists (JSON-able)."""
    if isinstance(value, dict):
        return {k: _plain_state(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def restore_rng(state) -> np.random.Generator:
    """A numpy.random.Generator in exactly the state `state` describes: a
    bit generator's `state` dict (as `Generator.bit_generator.state` gives,
    or its JSON form from a checkpoint, with lists for arrays). It continues
    the saved stream draw for draw. Supported bit generators: PCG64,
    PCG64DXSM, MT19937, Philox, SFC64. Every field is checked against
    NumPy's layout before NumPy sees it (NumPy itself does not range-check
    them; see pytransformer._random.check_bit_generator_state): ValueError
    naming the field for anything else."""
    state = check_bit_generator_state(state, "state")
    bg = _BIT_GENERATORS[state["bit_generator"]]()
    bg.state = state
    return np.random.Generator(bg)


def _optimizer_entries(optimizer):
    """(optimizer metadata JSON, {tensor name: array}) from optimizer.state_dict()."""
    if not callable(getattr(optimizer, "state_dict", None)):
        raise TypeError(f"optimizer: expected an object with state_dict(), got "
                        f"{type(optimizer).__name__}")
    sd = optimizer.state_dict()
    if not isinstance(sd, Mapping) or set(sd) != {"state", "param_groups"}:
        got = names_list(sorted(map(str, sd))) if isinstance(sd, Mapping) else type(sd).__name__
        raise ValueError(f"optimizer.state_dict(): expected a mapping with exactly the keys "
                         f"'state' and 'param_groups', got {got}")
    if not isinstance(sd["state"], Mapping):
        raise TypeError(f"optimizer.state_dict()['state']: expected a mapping, got "
                        f"{type(sd['state']).__name__}")
    groups = sd["param_groups"]
    if not isinstance(groups, (list, tuple)) or not all(isinstance(g, Mapping) for g in groups):
        raise TypeError("optimizer.state_dict()['param_groups']: expected a list of dicts")
    state, tensors = {}, {}
    for i, entry in sd["state"].items():
        where = f"optimizer.state_dict()['state'][{i!r:.80}]"
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"optimizer.state_dict()['state']: keys must be int parameter "
                            f"ids, got {type(i).__name__} {i!r:.80}")
        if not isinstance(entry, Mapping):
            raise TypeError(f"{where}: expected a mapping, got {type(entry).__name__}")
        out = {}
        for name, value in entry.items():
            _check_key(where, name)
            if isinstance(value, np.ndarray):
                key = f"optimizer.state.{int(i)}.{name}"
                tensors[key] = value
                out[name] = {"tensor": key}
            else:
                out[name] = {"value": _encode(value, f"{where}[{name!r:.80}]")}
        state[str(int(i))] = out
    meta = {"state": state,
            "param_groups": _encode(list(groups), "optimizer.state_dict()['param_groups']")}
    return json.dumps(meta, ensure_ascii=False, separators=(",", ":")), tensors


def save_checkpoint(path, *, model=None, optimizer=None, step=None, config=None, rng=None,
                    extra=None, snapshots=None):
    """Save a training checkpoint to `path` (one safetensors file, atomically;
    layout in the module docstring). Every argument is optional:

    model      an object with state_dict() -> {str: numpy array} (an
               nn.Module), or such a mapping itself;
    optimizer  an object whose state_dict() has PyTorch's layout:
               {"state": {int: {str: array | JSON value}},
                "param_groups": [{hyperparameter: JSON value, "params": [int]}]};
               arrays become tensors, everything else JSON (tuples kept);
    step       a non-negative int;
    config     a JSON-able dict (str keys; tuples kept);
    rng        a numpy.random.Generator (its bit generator state is stored,
               see restore_rng) or a JSON-able dict (one with a
               "bit_generator" key must be a valid bit generator state,
               such as pt.get_rng_state() gives);
    extra      a JSON-able dict;
    snapshots  {step (int >= 0): {name (str): numpy array}}, e.g. made
               by compress_snapshot, or SNAPSHOT_IS_MODEL (for one step at
               most) for the step whose weights are `model`'s.

    TypeError/ValueError naming the argument for anything else; nothing is
    written then."""
    tensors = {}
    meta = {FORMAT_KEY: FORMAT_VERSION}
    if model is not None:
        sd = model if isinstance(model, Mapping) else None
        if sd is None:
            if not callable(getattr(model, "state_dict", None)):
                raise TypeError(f"model: expected an object with state_dict() or a mapping, "
                                f"got {type(model).__name__}")
            sd = model.state_dict()
            if not isinstance(sd, Mapping):
                raise TypeError(f"model.state_dict(): expected a mapping, got "
                                f"{type(sd).__name__}")
        for k, v in sd.items():
            if not isinstance(k, str):
                raise TypeError(f"model: state_dict keys must be str, got {type(k).__name__} "
                                f"{k!r:.80}")
            if not isinstance(v, np.ndarray):
                raise TypeError(f"model: state_dict()[{k!r:.80}] must be a numpy.ndarray, got "
                                f"{type(v).__name__}")
            tensors["model." + k] = v
        meta["model"] = _dumps(list(sd), "model")
    if optimizer is not None:
        meta["optimizer"], opt_tensors = _optimizer_entries(optimizer)
        tensors.update(opt_tensors)
    if step is not None:
        if not isinstance(step, (int, np.integer)) or isinstance(step, (bool, np.bool_)):
            raise TypeError(f"step: expected an int, got {type(step).__name__} {step!r:.80}")
        if step < 0:
            raise ValueError(f"step: expected a non-negative int, got {step}")
        meta["step"] = str(int(step))
    for name, value in (("config", config), ("extra", extra)):
        if value is not None:
            if not isinstance(value, Mapping):
                raise TypeError(f"{name}: expected a dict, got {type(value).__name__}")
            meta[name] = _dumps(value, name)
    if snapshots:
        meta["snapshots"] = _snapshot_entries(snapshots, tensors)
        if model is None and SNAPSHOT_IS_MODEL in meta["snapshots"]:
            raise ValueError(f"snapshots: {SNAPSHOT_IS_MODEL!r} needs the model's weights, "
                             f"and no model was given")
    if rng is not None:
        if isinstance(rng, np.random.Generator):
            state = _plain_state(rng.bit_generator.state)
            try:
                restore_rng(state)   # a bit generator we know how to restore
            except ValueError as e:
                raise ValueError(f"rng: cannot store this Generator: {e}") from None
            meta["rng"] = _dumps({"type": _GENERATOR, "state": state}, "rng")
        elif isinstance(rng, Mapping):
            if "bit_generator" in rng:   # a bit generator state: only a valid one
                check_bit_generator_state(rng, "rng")
            meta["rng"] = _dumps({"type": "dict", "state": rng}, "rng")
        else:
            raise TypeError(f"rng: expected a numpy.random.Generator or a dict, got "
                            f"{type(rng).__name__}")
    save_file(tensors, path, metadata=meta)


def _snapshot_entries(snapshots, tensors):
    """The metadata JSON of `snapshots` ({step: {name: array}}), adding
    their arrays to `tensors` as "snapshot.<step>.<name>"."""
    if not isinstance(snapshots, Mapping):
        raise TypeError(f"snapshots: expected a dict {{step: {{name: array}}}}, got "
                        f"{type(snapshots).__name__}")
    listed = {}
    for step, arrays in snapshots.items():
        if not is_int(step) or step < 0:
            raise TypeError(f"snapshots: keys must be steps (ints >= 0), got {step!r:.80}")
        if isinstance(arrays, str) and arrays == SNAPSHOT_IS_MODEL:
            if SNAPSHOT_IS_MODEL in listed.values():
                raise ValueError(f"snapshots: {SNAPSHOT_IS_MODEL!r} stands for more than "
                                 f"one step")
            listed[str(int(step))] = SNAPSHOT_IS_MODEL
            continue
        if not isinstance(arrays, Mapping):
            raise TypeError(f"snapshots[{step}]: expected a dict of arrays, got "
                            f"{type(arrays).__name__}")
        for name, a in arrays.items():
            if not isinstance(name, str) or not isinstance(a, np.ndarray):
                raise TypeError(f"snapshots[{step}]: expected str names and numpy arrays, "
                                f"got {name!r:.80}: {type(a).__name__}")
            tensors[f"snapshot.{int(step)}.{name}"] = a
        listed[str(int(step))] = list(arrays)
    return json.dumps(listed, ensure_ascii=False, separators=(",", ":"))


def _load_snapshots(value, tensors, used, fail):
    """{step: {name: array} or SNAPSHOT_IS_MODEL} from the "snapshots"
    metadata."""
    if not isinstance(value, dict):
        fail("metadata 'snapshots' must be an object {step: [name, ...]}")
    out = {}
    for step, names in value.items():
        try:   # int() raises ValueError past Python's digit limit (4300 digits)
            ok = step.isascii() and step.isdigit() and str(int(step)) == step
        except ValueError:
            ok = False
        if not ok:
            fail(f"metadata 'snapshots': key {step!r:.80} is not a step (an int >= 0)")
        if names == SNAPSHOT_IS_MODEL:
            if SNAPSHOT_IS_MODEL in out.values():
                fail(f"metadata 'snapshots': {SNAPSHOT_IS_MODEL!r} stands for more than one "
                     f"step")
            out[int(step)] = SNAPSHOT_IS_MODEL
            continue
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            fail(f"metadata 'snapshots': [{step:.80}] must be a list of array names or "
                 f"{SNAPSHOT_IS_MODEL!r}")
        arrays = {}
        for name in names:
            key = f"snapshot.{step}.{name}"
            if key not in tensors or key in used:
                fail(f"metadata 'snapshots': [{step:.80}] refers to tensor {key!r:.80}, which "
                     f"is {'used twice' if key in used else 'missing'}")
            used.add(key)
            arrays[name] = tensors[key]
        out[int(step)] = arrays
    return out


@dataclasses.dataclass
class Checkpoint:
    """What load_checkpoint read. Fields are None when not saved.

    model_state      {key: array} in the model's state_dict order
    optimizer_state  PyTorch layout {"state": {int: {str: value}},
                     "param_groups": [...]} (tuples restored as tuples)
    step, config, extra
    rng_state        the saved dict; for a saved Generator its bit
                     generator state (arrays as lists): see restore_rng()
    metadata         the file's raw "__metadata__" (str -> str)
    path             the file it was read from
    snapshots        {step: {name: array} or SNAPSHOT_IS_MODEL} (empty
                     when none were saved)
    """
    model_state: Optional[dict]
    optimizer_state: Optional[dict]
    step: Optional[int]
    config: Optional[dict]
    rng_state: Optional[dict]
    extra: Optional[dict]
    metadata: dict
    path: str = ""
    snapshots: dict = dataclasses.field(default_factory=dict)

    def __repr__(self):
        """One line: the file, the step, and what each part holds in size,
        not the arrays and metadata themselves."""
        def size(state):
            if state is None:
                return "None"
            n = sum(int(np.size(v)) for v in state.values() if isinstance(v, np.ndarray))
            return f"<{len(state)} tensors, {n:,} values>"
        optim = ("None" if self.optimizer_state is None else
                 f"<state of {len(self.optimizer_state.get('state', {}))} parameters>")
        config = "None" if self.config is None else f"<{len(self.config)} settings>"
        extra = "None" if self.extra is None else "{" + ", ".join(map(str, self.extra)) + "}"
        return (f"Checkpoint(path={self.path!r}, step={self.step}, "
                f"model_state={size(self.model_state)}, optimizer_state={optim}, "
                f"config={config}, extra={extra}, "
                f"rng_state={'None' if self.rng_state is None else '<saved>'}, "
                f"snapshots={sorted(self.snapshots)})")

    def restore_rng(self) -> np.random.Generator:
        """A Generator continuing the saved one exactly (see restore_rng);
        CheckpointError (a ValueError) naming the file when the checkpoint
        has no valid bit generator state."""
        if self.rng_state is None:
            raise ValueError(f"{self.path}: the checkpoint has no RNG state")
        try:
            return restore_rng(self.rng_state)
        except ValueError as e:
            raise CheckpointError(f"{self.path}: metadata 'rng': {e}") from None

    def load_into(self, model=None, optimizer=None):
        """Call model.load_state_dict(self.model_state) and
        optimizer.load_state_dict(self.optimizer_state) for those given;
        ValueError if the checkpoint lacks the state asked for."""
        if model is not None:
            if self.model_state is None:
                raise ValueError(f"{self.path}: the checkpoint has no model state")
            model.load_state_dict(self.model_state)
        if optimizer is not None:
            if self.optimizer_state is None:
                raise ValueError(f"{self.path}: the checkpoint has no optimizer state")
            optimizer.load_state_dict(self.optimizer_state)


def _json_field(meta, key, fail):
    """The decoded JSON value of metadata[key], or None when absent."""
    if key not in meta:
        return None
    try:
        return json.loads(meta[key], object_pairs_hook=_decode_object)
    except RecursionError:
        fail(f"metadata {key!r:.80} is nested too deeply")
    except ValueError as e:
        fail(f"metadata {key!r:.80} is not valid JSON: {e}")


def _load_optimizer(value, tensors, used, fail):
    """Rebuild the PyTorch-layout optimizer state dict from its metadata."""
    if not isinstance(value, dict) or set(value) != {"state", "param_groups"}:
        fail("metadata 'optimizer' must be an object with keys 'state' and 'param_groups'")
    groups = value["param_groups"]
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        fail("metadata 'optimizer': param_groups must be a list of objects")
    if not isinstance(value["state"], dict):
        fail("metadata 'optimizer': state must be an object")
    state = {}
    for i, entry in value["state"].items():
        try:   # int() raises ValueError past Python's digit limit (4300 digits)
            ok = i.isascii() and i.lstrip("-").isdigit() and str(int(i)) == i
        except ValueError:
            ok = False
        if not ok:
            fail(f"metadata 'optimizer': state key {i!r:.80} is not an int")
        if not isinstance(entry, dict):
            fail(f"metadata 'optimizer': state[{i:.80}] must be an object")
        out = {}
        for name, item in entry.items():
            if isinstance(item, dict) and set(item) == {"value"}:
                out[name] = item["value"]
            elif (isinstance(item, dict) and set(item) == {"tensor"}
                  and isinstance(item["tensor"], str)
                  and item["tensor"].startswith("optimizer.state.")):
                key = item["tensor"]
                if key not in tensors or key in used:
                    fail(f"metadata 'optimizer': state[{i:.80}][{name!r:.80}] refers to tensor "
                         f"{key!r:.80}, which is {'used twice' if key in used else 'missing'}")
                used.add(key)
                out[name] = tensors[key]
            else:
                fail(f"metadata 'optimizer': state[{i:.80}][{name!r:.80}] must be "
                     f"{{'value': ...}} or {{'tensor': 'optimizer.state....'}}")
        state[int(i)] = out
    return {"state": state, "param_groups": groups}


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by save_checkpoint (see the module docstring
    for the layout). The file is validated as a safetensors file, then as a
    checkpoint: the format key must be present with version "1", the JSON
    metadata well formed and of the right types, and every tensor accounted
    for; CheckpointError (naming the file) otherwise."""
    where = os.fspath(path)
    tensors, meta = load_with_metadata(path)

    def fail(msg):
        raise CheckpointError(f"{where}: {msg}")

    if FORMAT_KEY not in meta:
        fail(f"not a pytransformer checkpoint (no {FORMAT_KEY!r:.80} metadata)")
    if meta[FORMAT_KEY] != FORMAT_VERSION:
        fail(f"unsupported checkpoint format version {meta[FORMAT_KEY]!r:.50} "
             f"(this reader knows {FORMAT_VERSION!r:.80})")
    used = set()
    model_state = None
    keys = _json_field(meta, "model", fail)
    if "model" in meta:
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) \
                or len(set(keys)) != len(keys):
            fail("metadata 'model' must be a list of distinct str keys")
        missing = [k for k in keys if "model." + k not in tensors]
        if missing:
            fail(f"model tensors listed in the metadata are missing: {names_list(missing)}")
        model_state = {k: tensors["model." + k] for k in keys}
        used.update("model." + k for k in keys)
    opt = _json_field(meta, "optimizer", fail)
    optimizer_state = None if opt is None else _load_optimizer(opt, tensors, used, fail)
    snaps = _json_field(meta, "snapshots", fail)
    snapshots = {} if snaps is None else _load_snapshots(snaps, tensors, used, fail)
    if model_state is None and SNAPSHOT_IS_MODEL in snapshots.values():
        fail(f"metadata 'snapshots': a step is {SNAPSHOT_IS_MODEL!r} but the file has no "
             f"model weights")
    unexplained = [k for k in tensors if k not in used]
    if unexplained:
        fail(f"tensors not described by the checkpoint metadata: {names_list(unexplained)}")
    step = _json_field(meta, "step", fail)
    if step is not None and not (is_int(step) and step >= 0):
        fail(f"metadata 'step' must be a non-negative int, got {step!r:.50}")
    config, extra = _json_field(meta, "config", fail), _json_field(meta, "extra", fail)
    for name, value in (("config", config), ("extra", extra)):
        if value is not None and not isinstance(value, dict):
            fail(f"metadata {name!r:.80} must be an object, got {type(value).__name__}")
    rng_state = None
    rng = _json_field(meta, "rng", fail)
    if rng is not None:
        if (not isinstance(rng, dict) or set(rng) != {"type", "state"}
                or rng["type"] not in (_GENERATOR, "dict") or not isinstance(rng["state"], dict)):
            fail("metadata 'rng' must be {'type': 'numpy.random.Generator' | 'dict', "
                 "'state': {...}}")
        rng_state = rng["state"]
        # A saved Generator's state, or a dict that is a bit generator state
        # (the trainer stores pt.get_rng_state() so): checked field by field,
        # as NumPy would use out-of-range values to index its buffers.
        if rng["type"] == _GENERATOR or "bit_generator" in rng_state:
            try:
                check_bit_generator_state(rng_state, "state")
            except ValueError as e:
                fail(f"metadata 'rng': {e}")
    return Checkpoint(model_state=model_state, optimizer_state=optimizer_state, step=step,
                      config=config, rng_state=rng_state, extra=extra, metadata=meta,
                      path=where, snapshots=snapshots)
