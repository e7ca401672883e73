"""Fuzzing checkpoint bytes (hypothesis, bounded: a few seconds in CI).

Property: load_checkpoint on any bytes either returns a Checkpoint, whose
restore_rng() then returns a Generator that draws or raises a ValueError
(CheckpointError is one), or raises CheckpointError naming the file; never
another exception type, never a crash.

Inputs: valid checkpoints (model, optimizer, step, config, a Generator of
every supported bit generator, or a bit generator state stored as a plain
dict as the trainer does) with bytes flipped, inserted, cut or appended;
hand-built headers; and valid checkpoints whose RNG state has one field
replaced by an arbitrary JSON value. The loads run in one long-lived child
process (a crash there is reported as a failure with the input that caused
it, instead of killing the test run). The regression files of
tests/fixtures/hostile are checked by the same property.
"""
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from pytransformer import checkpoint as ckpt
from pytransformer._random import BIT_GENERATOR_LAYOUTS
from pytransformer.checkpoint import save_checkpoint, save_file

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "hostile")

WORKER = r'''
import json, sys
from pytransformer import checkpoint as c
for line in sys.stdin:
    path = line.rstrip("\n")
    rec = {}
    try:
        ck = c.load_checkpoint(path)
        rec["outcome"] = "loaded"
        if ck.rng_state is not None:
            try:
                ck.restore_rng().integers(0, 2**63, 3)
                rec["rng"] = "ok"
            except ValueError as e:
                rec["rng"] = "ValueError"
            except BaseException as e:
                rec["rng"] = f"{type(e).__name__}: {str(e)[:300]}"
    except c.CheckpointError as e:
        rec["outcome"] = "CheckpointError"
        rec["names_file"] = str(e).startswith(path + ": ")
    except BaseException as e:
        rec["outcome"] = f"{type(e).__name__}: {str(e)[:300]}"
    print(json.dumps(rec), flush=True)
'''


class Worker:
    """A child Python loading checkpoints one path per line."""

    def __init__(self):
        self.proc = None

    def load(self, path):
        """The child's record for `path`; restarts the child after a crash."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True)
        self.proc.stdin.write(path + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            rc = self.proc.wait()
            self.proc = None
            return {"outcome": f"child died (exit status {rc})"}
        return json.loads(line)

    def close(self):
        """Stop the child."""
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def worker():
    """One loading child for the module's tests."""
    w = Worker()
    yield w
    w.close()


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    """A directory for the files under test."""
    return tmp_path_factory.mktemp("fuzz")


def check(worker, directory, blob):
    """Write blob, load it in the worker, assert the property."""
    path = os.path.join(str(directory), "f.safetensors")
    with open(path, "wb") as f:
        f.write(blob)
    rec = worker.load(path)
    assert rec["outcome"] in ("loaded", "CheckpointError"), rec
    assert rec.get("names_file", True), rec
    assert rec.get("rng", "ok") in ("ok", "ValueError"), rec
    return rec


def plain(state):
    """A bit generator state with arrays as lists (its JSON form)."""
    if isinstance(state, dict):
        return {k: plain(v) for k, v in state.items()}
    return state.tolist() if isinstance(state, np.ndarray) else state


class _Opt:
    def state_dict(self):
        return {"state": {0: {"m": np.ones(3, np.float32), "step": 2}},
                "param_groups": [{"lr": 0.1, "betas": (0.9, 0.99), "params": [0]}]}


def _bases():
    """Valid checkpoint bytes: one per bit generator, one with a dict RNG state."""
    import tempfile
    out = []
    d = tempfile.mkdtemp()
    p = os.path.join(d, "b.safetensors")
    rngs = [np.random.Generator(getattr(np.random, k)(1)) for k in BIT_GENERATOR_LAYOUTS]
    rngs.append(plain(np.random.PCG64(2).state))
    for rng in rngs:
        save_checkpoint(p, model={"w": np.arange(6, dtype=np.float32).reshape(2, 3)},
                        optimizer=_Opt(), step=4, config={"d": 2, "t": (1, 2)}, rng=rng)
        with open(p, "rb") as f:
            out.append(f.read())
    os.unlink(p)
    os.rmdir(d)
    return out


BASES = _bases()
STATES = {k: plain(getattr(np.random, k)(3).state) for k in BIT_GENERATOR_LAYOUTS}


def _paths(state, prefix=()):
    for k, v in state.items():
        if isinstance(v, dict):
            yield from _paths(v, prefix + (k,))
        yield prefix + (k,)


def _with(state, path, value):
    state = dict(state)
    state[path[0]] = value if len(path) == 1 else _with(state[path[0]], path[1:], value)
    return state


def rng_file(state, as_type):
    """Bytes of a checkpoint holding `state` as metadata 'rng' of the given type."""
    meta = {ckpt.FORMAT_KEY: "1", "rng": json.dumps({"type": as_type, "state": state})}
    header = json.dumps({"__metadata__": meta}, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**130, max_value=2**130)
    | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=8)

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@SETTINGS
@given(base=st.sampled_from(BASES),
       edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255), st.booleans()),
                      max_size=6),
       cut=st.none() | st.floats(0, 1), tail=st.binary(max_size=16))
def test_mutated_checkpoints(worker, fuzz_dir, base, edits, cut, tail):
    """Valid checkpoints with bytes replaced or inserted (mostly in the
    header), cut short, or with bytes appended."""
    blob = bytearray(base)
    n = 8 + struct.unpack("<Q", base[:8])[0]
    for where, byte, insert in edits:
        i = int(where * (n - 1))
        if insert:
            blob.insert(i, byte)
        else:
            blob[i] = byte
    if cut is not None:
        blob = blob[:int(cut * len(blob))]
    check(worker, fuzz_dir, bytes(blob) + tail)


entries = st.fixed_dictionaries({
    "dtype": st.sampled_from(["F32", "U8", "BF16", "BOOL", "I64", "F16", "X", ""]),
    "shape": st.lists(st.integers(-2, 2**65), max_size=3),
    "data_offsets": st.lists(st.integers(-4, 2**65), min_size=2, max_size=2)})


@SETTINGS
@given(tensors=st.dictionaries(st.text(max_size=12), entries | json_values, max_size=4),
       meta=st.dictionaries(st.sampled_from(["model", "optimizer", "step", "config", "extra",
                                             "rng", "x"]), json_values, max_size=4),
       data=st.binary(max_size=64))
def test_hand_built_headers(worker, fuzz_dir, tensors, meta, data):
    """Headers of random tensor entries and checkpoint metadata (each value
    JSON text, as the format stores it)."""
    meta = {k: json.dumps(v) for k, v in meta.items()}
    meta[ckpt.FORMAT_KEY] = "1"
    header = dict(tensors, __metadata__=meta)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8", "surrogatepass")
    raw += b" " * (-len(raw) % 8)
    check(worker, fuzz_dir, struct.pack("<Q", len(raw)) + raw + data)


@SETTINGS
@given(data=st.data(), kind=st.sampled_from(sorted(STATES)),
       as_type=st.sampled_from(["numpy.random.Generator", "dict"]), value=json_values)
@example(data=None, kind="Philox", as_type="dict", value=-100000000)
@example(data=None, kind="Philox", as_type="numpy.random.Generator", value=-4)
@example(data=None, kind="PCG64", as_type="dict", value=2**300)
def test_rng_states_with_one_field_replaced(worker, fuzz_dir, data, kind, as_type, value):
    """A valid state of each bit generator with one field (or a sub-dict)
    replaced by an arbitrary JSON value, stored as a Generator or a dict."""
    paths = sorted(_paths(STATES[kind]))
    if data is None:   # the explicit examples: the field the report named
        path = ("buffer_pos",) if kind == "Philox" else ("state", "state")
    else:
        path = data.draw(st.sampled_from(paths))
    check(worker, fuzz_dir, rng_file(_with(STATES[kind], path, value), as_type))


@pytest.mark.parametrize("name", sorted(n for n in os.listdir(FIXTURES)
                                        if n.endswith(".safetensors")))
def test_regression_files(worker, fuzz_dir, name):
    """Each regression file of tests/fixtures/hostile is rejected by the property's child."""
    with open(os.path.join(FIXTURES, name), "rb") as f:
        rec = check(worker, fuzz_dir, f.read())
    assert rec["outcome"] == "CheckpointError", (name, rec)


def test_big_name_and_long_optimizer_key(worker, fuzz_dir):
    """Checkpoint regressions built here: a 1 MB tensor name, a 5,000-digit key."""
    path = os.path.join(str(fuzz_dir), "n.safetensors")
    save_file({"n" * (1 << 20): np.ones(1)}, path, metadata={ckpt.FORMAT_KEY: "1"})
    with open(path, "rb") as f:
        assert check(worker, fuzz_dir, f.read())["outcome"] == "CheckpointError"
    opt = '{"state":{"%s":{}},"param_groups":[]}' % ("7" * 5000)
    save_file({}, path, metadata={ckpt.FORMAT_KEY: "1", "optimizer": opt})
    with open(path, "rb") as f:
        assert check(worker, fuzz_dir, f.read())["outcome"] == "CheckpointError"
