"""Hostile checkpoint files, each loaded in a child process.

Loads that could crash the interpreter (a bit generator state NumPy would use
to read outside its buffers) or exhaust memory (headers whose JSON expands
into many Python objects) run in one child Python that loads many files in a
loop, under an address-space limit (RLIMIT_AS) and a wall-clock timeout, and
reports one JSON line per file; the parent asserts on them. So a segfault or
a runaway allocation fails a test instead of killing the test run.

  * RNG states: every field of every supported bit generator's state
    (PCG64, PCG64DXSM, MT19937, Philox, SFC64), replaced by values of the
    wrong type or outside its C type's range, removed, or joined by an
    unexpected key; the states stored both as a Generator and as a plain
    dict (as the trainer stores pt.get_rng_state()). Each is rejected with a
    CheckpointError naming the file and the field, and set_rng_state rejects
    it with a ValueError; boundary values NumPy accepts still load and
    continue the stream exactly.
  * A corpus of generated files (header lengths, JSON shapes, offsets,
    dtypes, names, metadata, RNG states, configs that do not match their
    tensors, big hostile headers): each is either accepted with exactly the
    tensors it was written with, or rejected with a one-line CheckpointError
    naming the file; no load takes more than 4x the file size + 64 MB or
    more than a few seconds.
  * The other regressions of the loader: optimizer state keys too long for
    int(), hostile names quoted in error messages (capped).
  * Temporary files of saves killed with SIGKILL are removed by the next save
    to the same target; temporaries of live writers are left alone.
"""
import hashlib
import inspect
import json
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from pytransformer import checkpoint as ckpt
from pytransformer._random import BIT_GENERATOR_LAYOUTS
from pytransformer.checkpoint import (CheckpointError, load_checkpoint, load_file,
                                      save_checkpoint, save_file)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "hostile")
MB = 1 << 20


def digest(tensors):
    """A hash of {name: array} (names, dtypes, shapes, bytes), order-independent."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode("utf-8"))
        h.update(a.tobytes())
    return h.hexdigest()


# The child: loads every job of a JSON list, prints one JSON line per job.
CHILD = r'''
import json, os, resource, sys, time
import numpy as np
import pytransformer as pt
from pytransformer import checkpoint as c

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0

def vm_bytes():
    return status("VmSize")

def hwm():   # peak RSS of this process image (ru_maxrss would include the parent's)
    return status("VmHWM")

jobs = json.load(open(sys.argv[1]))
extra = int(sys.argv[2])
if extra:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + extra, hard))
print(json.dumps({"baseline_rss": hwm()}), flush=True)
for job in jobs:
    rec = {"i": job["i"]}
    t = time.perf_counter()
    try:
        op = job["op"]
        if op == "file":
            rec["digest"] = DIGEST(c.load_file(job["path"]))
        elif op == "checkpoint":
            ck = c.load_checkpoint(job["path"])
            rec["digest"] = DIGEST(dict(ck.model_state or {}))
            rec["config"] = ck.config
            if job.get("draw"):
                g = ck.restore_rng()
                rec["draws"] = [int(x) for x in g.integers(0, 2**63, 4)]
        elif op == "set_rng_state":
            with open(job["path"]) as f:
                pt.set_rng_state(json.load(f))
            rec["draws"] = [int(x) for x in pt._random.generator().integers(0, 2**63, 4)]
        rec["outcome"] = "ok"
    except c.CheckpointError as e:
        rec["outcome"], rec["msg"] = "CheckpointError", str(e)[:2000]
        rec["msg_len"] = len(str(e))
    except ValueError as e:
        rec["outcome"], rec["msg"] = "ValueError", str(e)[:2000]
        rec["msg_len"] = len(str(e))
    except BaseException as e:
        rec["outcome"], rec["msg"] = type(e).__name__, str(e)[:2000]
    rec["time"] = time.perf_counter() - t
    rec["maxrss"] = hwm()
    print(json.dumps(rec), flush=True)
'''


def run_child(tmp_path, jobs, extra_bytes=0, timeout=120):
    """Run the jobs in one child; returns (baseline RSS, {i: record}, returncode, stderr).
    A child that crashes or times out yields the records printed so far."""
    for i, job in enumerate(jobs):
        job["i"] = i
    spec = tmp_path / "jobs.json"
    spec.write_text(json.dumps(jobs))
    src = CHILD.replace("DIGEST(", "digest(")
    src = "import hashlib\n" + inspect.getsource(digest) + src
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    try:
        r = subprocess.run([sys.executable, "-c", src, str(spec), str(extra_bytes)],
                           capture_output=True, text=True, timeout=timeout, env=env)
        out, err, rc = r.stdout, r.stderr, r.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err, rc = f"timed out after {timeout} s", "timeout"
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    baseline = lines[0]["baseline_rss"] if lines else 0
    return baseline, {rec["i"]: rec for rec in lines[1:]}, rc, err[-3000:]


# ------------------------------------------------------------- RNG states

def plain(state):
    """A bit generator state with arrays as lists (its JSON form)."""
    if isinstance(state, dict):
        return {k: plain(v) for k, v in state.items()}
    return state.tolist() if isinstance(state, np.ndarray) else state


def valid_states():
    """(label, state) pairs NumPy accepts: mid-stream states and field boundaries."""
    out = []
    for kind in BIT_GENERATOR_LAYOUTS:
        g = np.random.Generator(getattr(np.random, kind)(7))
        g.random(3), g.integers(0, 2**31, dtype=np.uint32)
        out.append((f"{kind}-mid-stream", plain(g.bit_generator.state)))
    base = plain(np.random.Philox(3).state)
    for pos in (0, 4):
        out.append((f"Philox-buffer_pos-{pos}", dict(base, buffer_pos=pos)))
    out.append(("Philox-max-words", dict(base, buffer=[2**64 - 1] * 4, has_uint32=1,
                                         uinteger=2**32 - 1)))
    base = plain(np.random.MT19937(3).state)
    for pos in (0, 624):
        out.append((f"MT19937-pos-{pos}", dict(base, state=dict(base["state"], pos=pos))))
    base = plain(np.random.PCG64(3).state)
    out.append(("PCG64-max", dict(base, state={"state": 2**128 - 1, "inc": 2**128 - 1},
                                  has_uint32=1, uinteger=2**32 - 1)))
    return out


def _leaves(spec, path=()):
    """(key path, field spec) of every leaf of a layout."""
    for k, s in spec.items():
        if isinstance(s, dict):
            yield from _leaves(s, path + (k,))
        else:
            yield path + (k,), s


def _replaced(state, path, value):
    """A copy of state with the field at `path` replaced (or removed if value is DELETE)."""
    state = dict(state)
    if len(path) == 1:
        if value is DELETE:
            del state[path[0]]
        else:
            state[path[0]] = value
        return state
    state[path[0]] = _replaced(state[path[0]], path[1:], value)
    return state


DELETE = object()


def hostile_states():
    """(label, state, text the error must name) for states NumPy must never see."""
    out = [("not-a-dict", "PCG64", "state"), ("empty-dict", {}, "bit_generator"),
           ("list", [1, 2], "state"), ("unknown-kind", {"bit_generator": "Foo"}, "bit_generator"),
           ("kind-int", {"bit_generator": 5}, "bit_generator")]
    for kind, layout in BIT_GENERATOR_LAYOUTS.items():
        base = plain(getattr(np.random, kind)(11).state)
        out.append((f"{kind}-extra-key", dict(base, extra=1), "extra"))
        out.append((f"{kind}-state-extra-key", _replaced(base, ("state", "x"), 0), "'x'"))
        out.append((f"{kind}-state-not-dict", dict(base, state=[1, 2]), "['state']"))
        for path, spec in _leaves(layout):
            field = "".join(f"[{k!r}]" for k in path)
            name = f"{kind}{field}"
            out.append((f"{name}-missing", _replaced(base, path, DELETE), repr(path[-1])))
            bad = [-1, "1", 1.0, True, None, {}, 2**300, -100000000]
            if spec[0] == "int":
                bad += [spec[2] + 1, [0]]
            else:
                n, top = spec[2], 2**spec[1]
                bad += [[0] * (n - 1), [0] * (n + 1), [-1] * n, [top] * n, ["0"] * n,
                        [True] * n, [0.0] * n, [None] * n, [[0]] * n]
            for v in bad:
                out.append((f"{name}={v!r:.30}", _replaced(base, path, v), field))
    base = plain(np.random.Philox(5).state)
    for pos in (-4, -100000000, 5, 2**63, -2**63):
        out.append((f"Philox-buffer_pos={pos}", dict(base, buffer_pos=pos), "buffer_pos"))
    return out


def reference_draws(state):
    """What a Generator in `state` (a valid one) draws first."""
    bg = getattr(np.random, state["bit_generator"])()
    bg.state = _numpy_form(bg, state)
    return [int(x) for x in np.random.Generator(bg).integers(0, 2**63, 4)]


def _numpy_form(bg, state):
    """state with lists turned into arrays of the dtypes NumPy's own state uses."""
    def conv(v, ref):
        if isinstance(ref, dict):
            return {k: conv(v[k], ref[k]) for k in ref}
        return np.array(v, dtype=ref.dtype) if isinstance(ref, np.ndarray) else v
    return conv(state, bg.state)


def _write_rng_file(path, state, as_type):
    """A checkpoint holding `state` under metadata 'rng' as the given type."""
    rng = json.dumps({"type": as_type, "state": state})
    save_file({}, path, metadata={ckpt.FORMAT_KEY: ckpt.FORMAT_VERSION, "rng": rng})


def test_hostile_rng_states_are_rejected_in_a_child(tmp_path):
    """Hostile states loaded as Generator and as dict, and given to set_rng_state,
    in one child: all rejected naming file and field; no crash."""
    jobs, expect = [], []
    for n, (label, state, field) in enumerate(hostile_states()):
        for as_type in ("numpy.random.Generator", "dict"):
            if as_type == "dict" and not (isinstance(state, dict) and "bit_generator" in state):
                continue   # a plain dict without bit_generator is not an RNG state
            p = str(tmp_path / f"h{n}-{as_type[0]}.safetensors")
            _write_rng_file(p, state, as_type)
            jobs.append({"op": "checkpoint", "path": p, "draw": True})
            expect.append((label, as_type, "CheckpointError", field, p))
        p = str(tmp_path / f"h{n}.json")
        with open(p, "w") as f:
            json.dump(state, f)
        jobs.append({"op": "set_rng_state", "path": p})
        expect.append((label, "set_rng_state", "ValueError", field, "set_rng_state"))
    _, got, rc, err = run_child(tmp_path, jobs)
    problems = []
    for i, (label, how, outcome, field, where) in enumerate(expect):
        rec = got.get(i)
        if rec is None:
            problems.append(f"{label} ({how}): no result (child exit {rc}: {err[-300:]})")
        elif (rec["outcome"] != outcome or where not in rec["msg"] or field not in rec["msg"]
              or "\n" in rec["msg"] or rec["msg_len"] > 400 + len(where)):
            problems.append(f"{label} ({how}): {rec}")
    assert not problems, f"{len(problems)} of {len(expect)}:\n" + "\n".join(problems[:15])
    assert rc == 0, err


def test_valid_rng_states_still_restore_exactly(tmp_path):
    """Boundary states NumPy accepts load (as Generator and dict) and continue exactly."""
    jobs, expect = [], []
    for n, (label, state) in enumerate(valid_states()):
        draws = reference_draws(state)
        for as_type in ("numpy.random.Generator", "dict"):
            p = str(tmp_path / f"v{n}-{as_type[0]}.safetensors")
            _write_rng_file(p, state, as_type)
            jobs.append({"op": "checkpoint", "path": p, "draw": True})
            expect.append((label, draws))
        if state["bit_generator"] == "PCG64":
            p = str(tmp_path / f"v{n}.json")
            with open(p, "w") as f:
                json.dump(state, f)
            jobs.append({"op": "set_rng_state", "path": p})
            expect.append((label, draws))
    _, got, rc, err = run_child(tmp_path, jobs)
    assert rc == 0, err
    for i, (label, draws) in enumerate(expect):
        assert got[i]["outcome"] == "ok" and got[i]["draws"] == draws, (label, got[i])


def test_rng_regression_fixtures(tmp_path):
    """The files in fixtures/hostile named rng-*: each rejected, naming file and field."""
    names = sorted(n for n in os.listdir(FIXTURES) if n.startswith("rng-"))
    assert len(names) >= 4
    jobs = [{"op": "checkpoint", "path": os.path.join(FIXTURES, n), "draw": True}
            for n in names]
    _, got, rc, err = run_child(tmp_path, jobs)
    for i, n in enumerate(names):
        field = n.split("-")[-1].split(".")[0]
        assert got.get(i, {}).get("outcome") == "CheckpointError", (n, got.get(i), rc, err)
        assert n in got[i]["msg"] and field in got[i]["msg"], got[i]


def test_set_rng_state_rejects_hostile_states_in_process():
    """set_rng_state: ValueError naming the field; the library's generator unchanged."""
    import pytransformer as pt
    before = pt.get_rng_state()
    bad = dict(plain(np.random.PCG64(1).state), has_uint32=-1)
    with pytest.raises(ValueError, match=r"set_rng_state: state\['has_uint32'\]"):
        pt.set_rng_state(bad)
    with pytest.raises(ValueError, match=r"state\['state'\]\['state'\].*an int of 301 bits"):
        pt.set_rng_state(dict(bad, has_uint32=0, state={"state": 2**300, "inc": 1}))
    with pytest.raises(ValueError, match="expected 'PCG64'"):
        pt.set_rng_state(plain(np.random.SFC64(1).state))
    assert pt.get_rng_state() == before


# ------------------------------------------------- optimizer keys, messages

def raw_file(header, data=b""):
    """Bytes of a safetensors file: 8-byte length, header (dict -> JSON, or
    bytes as given) padded with spaces, data."""
    if isinstance(header, dict):
        header = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + data


def test_optimizer_key_past_int_digit_limit():
    """A 5,000-digit optimizer state key: CheckpointError naming file and field."""
    path = os.path.join(FIXTURES, "optimizer-key-5000-digits.safetensors")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert msg.startswith(path + ": metadata 'optimizer': state key '99999") and len(msg) < 300


HUGE = "n" * MB   # a hostile 1 MB name


def _capped_cases():
    """(label, file bytes, loader) whose error message quotes a 1 MB name."""
    e = {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}
    fmt = {ckpt.FORMAT_KEY: "1"}
    opt = '{"state":{"0":{"%s":{"tensor":"optimizer.state.0.m"}}},"param_groups":[]}'
    return [
        ("bad-dtype", raw_file({HUGE: dict(e, dtype="X")}, b"\x01"), "file"),
        ("dtype-is-huge", raw_file({"a": dict(e, dtype=HUGE)}, b"\x01"), "file"),
        ("size-mismatch", raw_file({HUGE: dict(e, shape=[2])}, b"\x01"), "file"),
        ("overlap", raw_file({HUGE: e, HUGE + "2": e}, b"\x01"), "file"),
        ("gap", raw_file({HUGE: dict(e, data_offsets=[1, 2])}, b"\x01\x01"), "file"),
        ("entry-extra-field", raw_file({"a": dict(e, **{HUGE: 1})}, b"\x01"), "file"),
        ("duplicate-name", raw_file(b'{"%s":{},"%s":{}}' % (HUGE.encode(), HUGE.encode())),
         "file"),
        ("metadata-int", raw_file({"__metadata__": {HUGE: 1}}), "file"),
        ("bool-byte", raw_file({HUGE: dict(e, dtype="BOOL")}, b"\x02"), "file"),
        ("shape-unrepresentable", raw_file({HUGE: dict(e, shape=[0, 10**300],
                                                       data_offsets=[0, 0])}), "file"),
        ("model-missing", raw_file({"__metadata__": dict(
            fmt, model=json.dumps([HUGE + str(i) for i in range(3)]))}),
         "checkpoint"),
        ("not-described", raw_file({"__metadata__": fmt, **{HUGE + str(i): dict(
            e, data_offsets=[i, i + 1]) for i in range(3)}}, b"\x01" * 3), "checkpoint"),
        ("optimizer-key", raw_file({"__metadata__": dict(fmt, optimizer=opt.replace(
            '"0":{', '"%s":{' % ("1" * 4000)))}), "checkpoint"),
        ("optimizer-name", raw_file({"__metadata__": dict(fmt, optimizer=opt % HUGE)}),
         "checkpoint"),
        ("optimizer-tensor", raw_file({"__metadata__": dict(fmt, optimizer=opt.replace(
            "optimizer.state.0.m", "optimizer.state." + HUGE))}), "checkpoint"),
        ("format-version", raw_file({"__metadata__": {ckpt.FORMAT_KEY: HUGE}}), "checkpoint"),
    ]


@pytest.mark.parametrize("label,blob,loader", _capped_cases(), ids=lambda v: (
    v if isinstance(v, str) and len(v) < 40 else ""))
def test_messages_cap_hostile_names(tmp_path, label, blob, loader):
    """Errors quoting a 1 MB name from the file stay one short line."""
    path = tmp_path / "f.safetensors"
    path.write_bytes(blob)
    with pytest.raises(CheckpointError) as info:
        (load_file if loader == "file" else load_checkpoint)(path)
    msg = str(info.value)
    assert msg.startswith(str(path) + ": ") and "\n" not in msg
    assert len(msg) < 600 + len(str(path)), (label, len(msg), msg[:300])


# ------------------------------------------------- temporaries of killed saves

SLOW_WRITER = r'''
import sys, time
from pytransformer._atomic import atomic_write
def chunks():
    yield b"x" * 100000
    print("writing", flush=True)
    time.sleep(120)
    yield b"y"
atomic_write(sys.argv[1], chunks())
'''

SAVE_LOOP = r'''
import sys
import numpy as np
from pytransformer.checkpoint import save_checkpoint
a = np.arange(2_000_000, dtype=np.float32)
print("saving", flush=True)
for i in range(10**6):
    save_checkpoint(sys.argv[1], model={"w": a + i}, step=i)
'''


def temporaries(directory):
    """Names of the temporary files of atomic_write in `directory`."""
    return sorted(n for n in os.listdir(directory) if n.endswith(".tmp"))


def start_slow_writer(path):
    """A child blocked in the middle of atomic_write(path); returns the Popen
    once its temporary file exists."""
    p = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(path)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    return p


def kill(p):
    """SIGKILL a child and reap it."""
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    p.stdout.close()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_next_save_removes_temporaries_of_killed_writers(tmp_path):
    """kill -9 mid-save leaves a temporary; the next save to that target
    removes it, leaves a live writer's temporary alone, and the target loads."""
    target = tmp_path / "c.safetensors"
    save_checkpoint(target, step=1)
    dead = [start_slow_writer(target) for _ in range(2)]
    for p in dead:
        kill(p)
    stale = temporaries(tmp_path)
    assert len(stale) == 2 and all(f".{p.pid}." in " ".join(stale) for p in dead)
    assert load_checkpoint(target).step == 1                 # the save stayed atomic
    live = start_slow_writer(target)
    try:
        live_tmp = [n for n in temporaries(tmp_path) if n not in stale]
        save_checkpoint(target, step=2)
        assert temporaries(tmp_path) == live_tmp             # only the live writer's is left
        assert load_checkpoint(target).step == 2
    finally:
        kill(live)
    save_checkpoint(target, step=3)
    assert temporaries(tmp_path) == [] and load_checkpoint(target).step == 3
    other = tmp_path / "other.safetensors"                   # another target's are not touched
    p = start_slow_writer(other)
    kill(p)
    save_checkpoint(target, step=4)
    assert len(temporaries(tmp_path)) == 1


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_locked_temporary_is_kept_even_if_its_pid_is_gone(tmp_path):
    """A temporary whose named pid is gone but which someone holds locked
    (a writer in another pid namespace or host) is not removed."""
    fcntl = pytest.importorskip("fcntl")
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    tmp = tmp_path / f".c.safetensors.{p.pid}.{'0' * 12}.tmp"
    tmp.write_bytes(b"partial")
    with open(tmp, "rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        save_checkpoint(tmp_path / "c.safetensors", step=1)
        assert tmp.exists()
    save_checkpoint(tmp_path / "c.safetensors", step=2)
    assert not tmp.exists()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_saves_killed_at_random_moments(tmp_path):
    """A child saving an 8 MB checkpoint in a loop, killed at random moments:
    the target always loads, and the next save leaves no temporary."""
    target = tmp_path / "c.safetensors"
    rng = np.random.default_rng(0)
    for _ in range(5):
        p = subprocess.Popen([sys.executable, "-c", SAVE_LOOP, str(target)],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "saving"
        time.sleep(float(rng.uniform(0.05, 0.4)))
        kill(p)
        if target.exists():
            ck = load_checkpoint(target)
            assert np.array_equal(ck.model_state["w"], np.arange(2_000_000, dtype=np.float32)
                                  + ck.step)
    save_checkpoint(target, step=0)
    assert temporaries(tmp_path) == [] and load_checkpoint(target).step == 0


# ------------------------------------------------- the corpus, bounded loads

BUDGET_FACTOR, BUDGET_SLACK = 4, 64 * MB   # the loader's promise (checkpoint.MEMORY_*)
EITHER = "either"


def _entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def corpus(directory):
    """(label, path, op, expected) for generated files: expected is
    "reject", EITHER (accepted or rejected; if accepted, any tensors) or
    ("accept", digest of the tensors, config or None)."""
    out = []
    rng = np.random.default_rng(0)

    def add(label, blob, expected, op="file"):
        path = os.path.join(directory, f"{len(out):03d}.safetensors")
        with open(path, "wb") as f:
            f.write(blob)
        out.append((label, path, op, expected))

    def add_saved(label, tensors, metadata=None):
        path = os.path.join(directory, f"{len(out):03d}.safetensors")
        save_file(tensors, path, metadata=metadata)
        out.append((label, path, "file", ("accept", digest(tensors), None)))

    f4 = np.arange(4, dtype="<f4").tobytes()
    e = _entry
    # header lengths
    for n in (0, 1, 7, 9, 2**63, 2**64 - 1, 100_000_001):
        add(f"length-{n}", struct.pack("<Q", n) + b"{}      ", "reject")
    add("length-short-file", b"\x02\x00\x00", "reject")
    add("length-past-end", struct.pack("<Q", 4096) + b"{}", "reject")
    add("length-unpadded", struct.pack("<Q", 2) + b"{}", EITHER)
    # JSON shapes
    for label, header in [("list", b"[]"), ("string", b'"x"'), ("number", b"1e999"),
                          ("null", b"null"), ("nested", b"[" * 50_000 + b"]" * 50_000),
                          ("nested-objects", b'{"a":' * 5_000 + b"{}" + b"}" * 5_000),
                          ("truncated", b'{"a":{"dtype":"F32"'), ("not-utf8", b'{"\xff":1}'),
                          ("nan", b'{"__metadata__":{"k":NaN}}'), ("bom", "\ufeff{}".encode()),
                          ("duplicate", b'{"__metadata__":{},"__metadata__":{}}'),
                          ("huge-int", b'{"a":{"dtype":"U8","shape":[' + b"9" * 5000
                           + b'],"data_offsets":[0,1]}}')]:
        add(f"json-{label}", raw_file(header, b"\x01"), "reject")
    # offsets
    for label, entries, data in [
            ("overlap", {"a": e("F32", [2], 0, 8), "b": e("F32", [2], 4, 12)}, f4[:12]),
            ("gap", {"a": e("F32", [1], 0, 4), "b": e("F32", [1], 8, 12)}, f4[:12]),
            ("negative", {"a": e("F32", [4], -16, 0)}, f4),
            ("float", {"a": e("F32", [4], 0.0, 16.0)}, f4),
            ("huge", {"a": e("F32", [4], 2**64, 2**64 + 16)}, f4),
            ("reversed", {"a": e("F32", [0], 16, 0)}, f4),
            ("short-data", {"a": e("F32", [4], 0, 16)}, f4[:8]),
            ("trailing", {"a": e("F32", [3], 0, 12)}, f4),
            ("shape-huge", {"a": e("F32", [2**40] * 2, 0, 16)}, f4),
            ("zero-shape-huge", {"a": e("F64", [0, 2**64], 0, 0)}, b""),
            ("65-dims", {"a": e("U8", [1] * 65, 0, 1)}, b"\x01")]:
        add(f"offsets-{label}", raw_file(entries, data), "reject")
    # dtypes
    for dtype in ("F128", "f32", "C64", "F8_E4M3", 4, None, ""):
        add(f"dtype-{dtype}", raw_file({"a": e(dtype, [4], 0, 16)}, f4), "reject")
    add("dtype-bool-2", raw_file({"a": e("BOOL", [2], 0, 2)}, b"\x01\x02"), "reject")
    bf = np.array([0x3f80, 0xc000], dtype="<u2")
    add("dtype-bf16", raw_file({"a": e("BF16", [2], 0, 4)}, bf.tobytes()),
        ("accept", digest({"a": np.array([1.0, -2.0], np.float32)}), None))
    for dt in (np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8,
               np.uint64, np.uint32, np.uint16, np.uint8, np.bool_):
        a = (rng.integers(0, 2, (3, 2)) if dt is np.bool_ else rng.integers(-50, 50, (3, 2)))
        add_saved(f"dtype-{np.dtype(dt).name}", {"t": a.astype(dt), "e": np.zeros((0, 2), dt)})
    # names
    add_saved("name-1MB", {"n" * MB: np.ones(2, np.float32)})
    add_saved("name-unicode-and-empty", {"": np.ones(1), "ä.日本.🙂": np.zeros(2)})
    add("name-surrogate", raw_file(b'{"\\udc00":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
                                   b"\x01"), "reject")
    add("name-metadata-is-tensor", raw_file({"__metadata__": e("U8", [1], 0, 1)}, b"\x01"),
        "reject")
    # metadata
    for label, meta in [("list", ["a"]), ("int-value", {"k": 1}), ("null-value", {"k": None}),
                        ("nested", {"k": {"x": "y"}})]:
        add(f"metadata-{label}", raw_file({"__metadata__": meta}), "reject")
    add_saved("metadata-20MB-value", {"a": np.ones(3, np.float32)}, {"k": "v" * (20 * MB)})
    add_saved("metadata-100k-keys", {}, {f"k{i}": "" for i in range(100_000)})
    add_saved("tensors-10000", {f"layer.{i}.w": rng.standard_normal(4).astype(np.float32)
                                for i in range(10_000)})
    # checkpoints: RNG states, configs that do not match their tensors
    w = {"enc.w": rng.standard_normal((4, 4)).astype(np.float32)}
    path = os.path.join(directory, "ck-config.safetensors")
    config = {"d_model": 512, "layers": 6, "vocab": 32000}
    save_checkpoint(path, model=w, config=config, step=3, rng=np.random.default_rng(5))
    out.append(("checkpoint-config-mismatch", path, "checkpoint",
                ("accept", digest(w), config)))
    for i, (label, state, _) in enumerate(hostile_states()[::40]):
        path = os.path.join(directory, f"ck-rng-{i}.safetensors")
        _write_rng_file(path, state, "numpy.random.Generator")
        out.append((f"checkpoint-rng-{label}", path, "checkpoint", "reject"))
    fmt = {ckpt.FORMAT_KEY: "1"}
    for label, meta, tensors in [
            ("model-missing-tensor", dict(fmt, model='["w"]'), {}),
            ("stray-tensor", fmt, {"x": np.ones(1)}),
            ("optimizer-key-5000-digits", dict(fmt, optimizer='{"state":{"%s":{}},'
                                               '"param_groups":[]}' % ("9" * 5000)), {}),
            ("config-list", dict(fmt, config="[1]"), {}),
            ("step-float", dict(fmt, step="1.5"), {}),
            ("config-nested", dict(fmt, config="[" * 100_000 + "]" * 100_000), {})]:
        path = os.path.join(directory, f"ck-{label}.safetensors")
        save_file(tensors, path, metadata=meta)
        out.append((f"checkpoint-{label}", path, "checkpoint", "reject"))
    return out


def big_hostile_headers(directory, size):
    """(label, path) of the memory-amplifying headers, each about `size` bytes:
    [[],[],...]; one object of many metadata keys; many zero-size tensors;
    deeply nested arrays; a checkpoint whose metadata 'config' is the JSON
    text [[],[],...] (parsed only after the header)."""
    out = []

    def add(label, header):
        path = os.path.join(directory, f"big-{label}-{size >> 20}MB.safetensors")
        with open(path, "wb") as f:
            f.write(raw_file(header))
        out.append((label, path))

    k = size // 3
    add("lists", b"[" + b"[]," * (k - 1) + b"[]]")
    keys = b",".join(b'"%x":""' % i for i in range(size // 10))
    add("metadata-keys", b'{"__metadata__":{' + keys + b"}}")
    ent = b',"%x":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}'
    tensors = b"".join(ent % i for i in range(size // 54))
    add("zero-size-tensors", b"{" + tensors[1:] + b"}")
    add("nested", b"[" * (size // 2) + b"]" * (size // 2))
    lists = b"[" + b"[]," * (k - 20) + b"[]]"
    add("checkpoint-config-lists", b'{"__metadata__":{"%s":"1","config":"%s"}}'
        % (ckpt.FORMAT_KEY.encode(), lists))
    return out


def test_hostile_corpus_loads_within_bounds(tmp_path):
    """Every generated file, loaded in one child under RLIMIT_AS: accepted
    with the right tensors or rejected with a one-line CheckpointError
    naming the file; peak memory within 4x file size + 64 MB of the child's
    baseline; each load within 2 s + 20 ms per MB. Includes 25 MB
    instances of the memory-amplifying headers and one of 100 MB."""
    cases = corpus(str(tmp_path))
    for label, path in big_hostile_headers(str(tmp_path), 25 * MB):
        op = "checkpoint" if label.startswith("checkpoint") else "file"
        cases.append((label + "-25MB", path, op, "reject"))
    cases.append(("lists-100MB", big_hostile_headers_100(str(tmp_path)), "file", "reject"))
    cases.sort(key=lambda c: os.path.getsize(c[1]))   # memory high-water mark only grows
    jobs = [{"op": op, "path": path} for _, path, op, _ in cases]
    biggest = max(os.path.getsize(c[1]) for c in cases)
    limit = BUDGET_FACTOR * biggest + BUDGET_SLACK + 64 * MB
    baseline, got, rc, err = run_child(tmp_path, jobs, extra_bytes=limit, timeout=300)
    problems = []
    for i, (label, path, op, expected) in enumerate(cases):
        rec = got.get(i)
        size = os.path.getsize(path)
        if rec is None:
            problems.append(f"{label}: no result (child exit {rc}: {err[-500:]})")
            continue
        if rec["outcome"] == "ok":
            ok = expected == EITHER or (expected != "reject" and rec["digest"] == expected[1]
                                        and rec.get("config", expected[2]) == expected[2])
        elif rec["outcome"] == "CheckpointError":
            msg = rec["msg"]
            ok = (expected != "ok" and isinstance(expected, str) and msg.startswith(path + ": ")
                  and "\n" not in msg and rec["msg_len"] < 1000 + len(path))
        else:
            ok = False
        if not ok:
            problems.append(f"{label}: expected {str(expected)[:20]}, got {rec}"[:600])
        used = rec["maxrss"] - baseline
        if used > BUDGET_FACTOR * size + BUDGET_SLACK:
            problems.append(f"{label}: {used >> 20} MB for a {size >> 20} MB file")
        if rec["time"] > 2 + 0.02 * size / MB:
            problems.append(f"{label}: {rec['time']:.1f} s for a {size >> 20} MB file")
    for _, path, _, _ in cases:   # 200 MB of big headers: not left in pytest's tmp
        if os.path.basename(path).startswith("big-"):
            os.unlink(path)
    assert not problems, f"{len(problems)} of {len(cases)}:\n" + "\n".join(problems[:20])
    assert rc == 0, err


def big_hostile_headers_100(directory):
    """A 100 MB header of [[],[],...]."""
    path = os.path.join(directory, "big-lists-100MB.safetensors")
    k = 100_000_000 // 3
    with open(path, "wb") as f:
        f.write(raw_file(b"[" + b"[]," * (k - 1) + b"[]]"))
    return path


def test_save_works_where_files_cannot_be_locked(tmp_path, monkeypatch):
    """On a file system without locks (flock raises) saves still succeed,
    and stale temporaries are then left alone (no lock proves the writer gone)."""
    from pytransformer import _atomic
    if _atomic.fcntl is None:
        pytest.skip("no fcntl")

    class NoLocks:
        LOCK_EX, LOCK_NB = _atomic.fcntl.LOCK_EX, _atomic.fcntl.LOCK_NB

        @staticmethod
        def flock(fd, op):
            raise OSError(37, "No locks available")

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    stale = tmp_path / f".c.safetensors.{p.pid}.{'0' * 12}.tmp"
    stale.write_bytes(b"partial")
    monkeypatch.setattr(_atomic, "fcntl", NoLocks)
    save_checkpoint(tmp_path / "c.safetensors", step=5)
    assert load_checkpoint(tmp_path / "c.safetensors").step == 5
    assert temporaries(tmp_path) == [stale.name]
