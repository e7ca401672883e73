"""Tests of pytransformer.checkpoint: the safetensors reader/writer and the
checkpoint helpers on top.

  * round trips are bit-identical for every dtype (0-d, empty, non-contiguous
    and big-endian inputs, NaN payloads), names with dots and Unicode, and
    files are byte-for-byte the reference library's (its published vectors);
  * writes are atomic: a failure at any stage (write, fsync, replace, an
    interrupt) leaves the previous file byte-identical and no temporary file;
  * a corpus of broken files, built here, each raises CheckpointError; random
    bytes and random mutations of a valid file load or raise CheckpointError,
    never anything else (hypothesis);
  * checkpoints of a stand-in model + optimizer + Generator round trip, and a
    resumed run gives the same next losses as an uninterrupted one;
  * if the `safetensors` package is importable, it reads our files and we read
    its files (skipped otherwise: it is not a dependency).
"""
import json
import math
import os
import struct
import tempfile

import numpy as np
import pytest
from hypothesis import given, strategies as st

from pytransformer import checkpoint as ckpt
from pytransformer.checkpoint import (CheckpointError, load_checkpoint, load_file,
                                      load_metadata, restore_rng, save_checkpoint, save_file)

DTYPES = [np.bool_, np.uint8, np.int8, np.int16, np.uint16, np.float16, np.int32, np.uint32,
          np.float32, np.float64, np.int64, np.uint64]
ST_NAME = {np.bool_: "BOOL", np.uint8: "U8", np.int8: "I8", np.int16: "I16", np.uint16: "U16",
           np.float16: "F16", np.int32: "I32", np.uint32: "U32", np.float32: "F32",
           np.float64: "F64", np.int64: "I64", np.uint64: "U64"}
SHAPES = [(), (0,), (3, 0, 2), (1,), (7,), (2, 3, 4), (1, 1, 5, 1)]


# ------------------------------------------------------------------ helpers

def random_array(rng, shape, dtype):
    """Random bits of `dtype` (every float bit pattern, NaN payloads included);
    bools are 0/1."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    raw = rng.integers(0, 256, size=n * dtype.itemsize, dtype=np.uint8)
    return raw.view(dtype).reshape(shape)


def assert_identical(actual, expected):
    """Same dtype (native order), shape and bytes."""
    expected = np.asarray(expected)
    assert isinstance(actual, np.ndarray)
    assert actual.dtype == expected.dtype.newbyteorder("=")
    assert actual.dtype.isnative
    assert actual.shape == expected.shape
    assert actual.tobytes() == np.ascontiguousarray(expected.astype(actual.dtype)).tobytes()


def raw_file(header, data=b"", n=None, pad=True):
    """Bytes of a safetensors file from a header (dict -> compact JSON, str or
    bytes as given), the data section, and optionally a forged length n."""
    if isinstance(header, dict):
        header = json.dumps(header, separators=(",", ":"), ensure_ascii=False)
    if isinstance(header, str):
        header = header.encode("utf-8")
    if pad:
        header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header) if n is None else n) + header + data


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def write(directory, blob, name="f.safetensors"):
    path = os.path.join(str(directory), name)
    with open(path, "wb") as f:
        f.write(blob)
    return path


def listing(directory):
    return sorted(os.listdir(directory))


def load_or_checkpoint_error(path):
    """Load; only CheckpointError may escape as a failure. Returns the result or None."""
    try:
        tensors = load_file(path)
    except CheckpointError as e:
        assert str(path) in str(e)
        return None
    assert isinstance(tensors, dict)
    assert all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in tensors.items())
    assert isinstance(load_metadata(path), dict)
    return tensors


def valid_blob():
    """A small valid file: an 8-, a 4- and a 1-byte dtype, and metadata."""
    d = tempfile.mkdtemp()
    p = os.path.join(d, "v.safetensors")
    rng = np.random.default_rng(0)
    save_file({"w": random_array(rng, (2, 3), np.float32), "ids": np.arange(3, dtype=np.int64),
               "mask": np.array([True, False, True])}, p, metadata={"k": "v"})
    with open(p, "rb") as f:
        blob = f.read()
    os.unlink(p)
    os.rmdir(d)
    return blob


VALID = valid_blob()
VALID_N = struct.unpack("<Q", VALID[:8])[0]


# ------------------------------------------------------------- round trips

@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip_every_dtype_and_shape(tmp_path, dtype):
    rng = np.random.default_rng(1)
    tensors = {f"t{i}": random_array(rng, shape, dtype) for i, shape in enumerate(SHAPES)}
    path = tmp_path / "x.safetensors"
    save_file(tensors, path)
    loaded = load_file(path)
    assert set(loaded) == set(tensors)
    for k in tensors:
        assert_identical(loaded[k], tensors[k])
    header = json.loads(path.read_bytes()[8:8 + struct.unpack("<Q", path.read_bytes()[:8])[0]])
    assert {h["dtype"] for h in header.values()} == {ST_NAME[dtype]}
    assert header["t0"]["shape"] == [] and header["t2"]["shape"] == [3, 0, 2]


def test_layout_matches_reference_writer(tmp_path):
    """Header padded with spaces to 8 bytes; tensors by decreasing alignment,
    then name; each starts at a multiple of its itemsize; data contiguous."""
    rng = np.random.default_rng(2)
    tensors = {f"{np.dtype(d).name}_{j}": random_array(rng, (j + 1, 3), d)
               for d in DTYPES for j in range(2)}
    path = tmp_path / "x.safetensors"
    save_file(tensors, path, metadata={"b": "2", "a": "1"})
    blob = path.read_bytes()
    n = struct.unpack("<Q", blob[:8])[0]
    assert n % 8 == 0
    text = blob[8:8 + n].decode("utf-8")
    end = len(text.rstrip(" "))
    assert text[end - 1] == "}" and n - end < 8 and text[end:] == " " * (n - end)
    header = json.loads(text[:end])
    assert list(header)[0] == "__metadata__" and header.pop("__metadata__") == {"a": "1", "b": "2"}
    rank = {name: i for i, name in enumerate(
        ["BOOL", "U8", "I8", "I16", "U16", "F16", "I32", "U32", "F32", "F64", "I64", "U64"])}
    order = sorted(header, key=lambda k: tuple(header[k]["data_offsets"]))
    assert order == list(header)
    assert order == sorted(header, key=lambda k: (-rank[header[k]["dtype"]], k))
    pos = 0
    for k in order:
        begin, end = header[k]["data_offsets"]
        assert begin == pos and begin % tensors[k].dtype.itemsize == 0
        assert blob[8 + n + begin:8 + n + end] == tensors[k].tobytes()
        pos = end
    assert 8 + n + pos == len(blob)


def test_reference_byte_vectors(tmp_path):
    """The exact bytes the reference library's own tests expect."""
    path = tmp_path / "x.safetensors"
    save_file({"attn.0": np.arange(6, dtype=np.float32).reshape(1, 2, 3)}, path)
    header = b'{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}'
    data = struct.pack("<6f", 0, 1, 2, 3, 4, 5)
    assert path.read_bytes() == struct.pack("<Q", 64) + header + data
    save_file({"attn0": np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)}, path)
    header = b'{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}' + b" " * 7
    assert path.read_bytes() == struct.pack("<Q", 72) + header + data
    save_file({}, path)
    assert path.read_bytes() == struct.pack("<Q", 8) + b"{}" + b" " * 6
    save_file({}, path, metadata={"framework": "pt"})
    header = b'{"__metadata__":{"framework":"pt"}}' + b" " * 5
    assert path.read_bytes() == struct.pack("<Q", 40) + header
    assert load_file(path) == {} and load_metadata(path) == {"framework": "pt"}


@pytest.mark.parametrize("make", [
    lambda a: a[::2], lambda a: a.T, lambda a: a[::-1, ::-3], np.asfortranarray,
    lambda a: a.astype(a.dtype.newbyteorder(">")),
    lambda a: a.astype(a.dtype.newbyteorder(">"))[:, ::2],
    lambda a: np.broadcast_to(a[:1], a.shape),
], ids=["step2", "transpose", "negative-strides", "fortran", "big-endian",
        "big-endian-strided", "broadcast-0-stride"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint16, np.bool_],
                         ids=lambda d: np.dtype(d).name)
def test_non_contiguous_inputs_saved_as_c_order(tmp_path, make, dtype):
    a = make(random_array(np.random.default_rng(3), (6, 9), dtype))
    expected = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("="))
    save_file({"a": a, "z": np.array(1.5)}, tmp_path / "x.safetensors")
    save_file({"a": expected, "z": np.array(1.5)}, tmp_path / "y.safetensors")
    assert (tmp_path / "x.safetensors").read_bytes() == (tmp_path / "y.safetensors").read_bytes()
    assert_identical(load_file(tmp_path / "x.safetensors")["a"], expected)


def test_loaded_arrays_are_writable_copies(tmp_path):
    path = tmp_path / "x.safetensors"
    save_file({"a": np.arange(12.0).reshape(3, 4), "b": np.zeros((0, 2), np.int8),
               "c": np.array(7, np.int32)}, path)
    first = load_file(path)
    for k, v in first.items():
        assert v.flags.c_contiguous and v.flags.writeable
        assert not any(np.shares_memory(v, w) for j, w in first.items() if j != k)
    first["a"][...] = -1
    first["c"][...] = 0
    again = load_file(path)
    assert_identical(again["a"], np.arange(12.0).reshape(3, 4))
    assert again["c"] == 7


NAMES = ["model.encoder.layers.0.self_attn.in_proj_weight", "ñandú", "模型.权重",
         "emoji 🙂.x",
         "", " ", 'quote"and\\backslash', "new\nline\ttab", "\x00nul\x1f", "a" * 300,
         "__metadata", "__metadata__x"]


def test_names_with_dots_and_unicode(tmp_path):
    rng = np.random.default_rng(4)
    tensors = {name: random_array(rng, (i % 3, 2), np.float32) for i, name in enumerate(NAMES)}
    meta = {"ünïcode": "värde ✓", "json": '{"nested": [1, 2]}', "": "\n"}
    path = tmp_path / "x.safetensors"
    save_file(tensors, path, metadata=meta)
    loaded = load_file(path)
    assert set(loaded) == set(NAMES)
    for k in NAMES:
        assert_identical(loaded[k], tensors[k])
    assert load_metadata(path) == meta


def test_metadata_none_versus_empty(tmp_path):
    save_file({"a": np.ones(2)}, tmp_path / "none.safetensors")
    save_file({"a": np.ones(2)}, tmp_path / "empty.safetensors", metadata={})
    assert b"__metadata__" not in (tmp_path / "none.safetensors").read_bytes()
    assert b'"__metadata__":{}' in (tmp_path / "empty.safetensors").read_bytes()
    assert load_metadata(tmp_path / "none.safetensors") == {}
    assert load_metadata(tmp_path / "empty.safetensors") == {}


def test_bf16_is_read_as_float32(tmp_path):
    """bfloat16 is the upper half of a float32: values whose lower half is zero
    come back exactly (NaN payload and -0.0 included)."""
    f32 = np.array([1.0, -2.5, np.inf, -np.inf, 0.0, -0.0, 3.140625, 1e-38, 3e38],
                   np.float32)
    f32 = np.append(f32, np.array([0x7FC12345], np.uint32).view(np.float32))
    bits = (f32.view(np.uint32) >> 16).astype("<u2")
    expected = (bits.astype(np.uint32) << 16).view(np.float32).reshape(2, 5)
    path = write(tmp_path, raw_file({"b": entry("BF16", [2, 5], 0, 20)}, bits.tobytes()))
    got = load_file(path)["b"]
    assert_identical(got, expected)
    # the first seven have a zero lower half: exactly the float32 values
    assert got.reshape(-1)[:7].tobytes() == f32[:7].tobytes()
    # a normal float32 is truncated: relative error under 2**-7 (7 stored mantissa bits)
    assert got.reshape(-1)[8] != f32[8] and abs(got.reshape(-1)[8] / f32[8] - 1) < 2**-7


class Unsupported:
    pass


@pytest.mark.parametrize("tensors, metadata, error, match", [
    ([("a", np.ones(2))], None, TypeError, "mapping"),
    ({1: np.ones(2)}, None, TypeError, "names must be str"),
    ({b"a": np.ones(2)}, None, TypeError, "names must be str"),
    ({"__metadata__": np.ones(2)}, None, ValueError, "reserved"),
    ({"\ud800": np.ones(2)}, None, ValueError, "not valid Unicode"),
    ({"a": [1.0, 2.0]}, None, TypeError, "expected a numpy.ndarray, got list"),
    ({"a": 3.0}, None, TypeError, "expected a numpy.ndarray, got float"),
    ({"a": Unsupported()}, None, TypeError, "Unsupported"),
    ({"a": np.array([object()])}, None, TypeError, "dtype object"),
    ({"a": np.ones(2, np.complex64)}, None, TypeError, "dtype complex64"),
    ({"a": np.ones(2, np.complex128)}, None, TypeError, "complex128"),
    ({"a": np.array(["x"])}, None, TypeError, "<U1"),
    ({"a": np.array([b"x"])}, None, TypeError, "S1"),
    ({"a": np.zeros(2, "datetime64[s]")}, None, TypeError, "datetime64"),
    ({"a": np.zeros(2, "timedelta64[s]")}, None, TypeError, "timedelta64"),
    ({"a": np.zeros(2, [("x", "<f4"), ("y", "<i4")])}, None, TypeError, "cannot be saved"),
    ({"a": np.zeros(2, "V8")}, None, TypeError, "cannot be saved"),
    ({"ok": np.ones(2), "bad": np.ones(2, np.complex64)}, None, TypeError, "'bad'"),
    ({"a": np.ones(2)}, [("k", "v")], TypeError, "metadata"),
    ({"a": np.ones(2)}, {"k": 1}, TypeError, "metadata"),
    ({"a": np.ones(2)}, {1: "v"}, TypeError, "metadata"),
    ({"a": np.ones(2)}, {"k": None}, TypeError, "metadata"),
    ({"a": np.ones(2)}, {"k": "\udfff"}, ValueError, "not valid Unicode"),
], ids=["list-not-mapping", "int-name", "bytes-name", "reserved-name", "surrogate-name",
        "list-value", "float-value", "object-value", "object-dtype", "complex64", "complex128",
        "unicode-dtype", "bytes-dtype", "datetime", "timedelta", "structured", "void",
        "names-offending-key", "metadata-list", "metadata-int-value", "metadata-int-key",
        "metadata-none-value", "metadata-surrogate"])
def test_save_file_rejects_bad_input(tmp_path, tensors, metadata, error, match):
    with pytest.raises(error, match=match):
        save_file(tensors, tmp_path / "x.safetensors", metadata=metadata)
    assert listing(tmp_path) == []


@pytest.mark.skipif(np.dtype(np.longdouble).itemsize == 8, reason="longdouble is float64 here")
def test_save_file_rejects_longdouble(tmp_path):
    with pytest.raises(TypeError, match="cannot be saved"):
        save_file({"a": np.ones(2, np.longdouble)}, tmp_path / "x.safetensors")
    assert listing(tmp_path) == []


def test_header_size_limit(tmp_path, monkeypatch):
    """The writer refuses a header readers would refuse; the reader enforces it."""
    save_file({"a" * 100: np.ones(1)}, tmp_path / "ok.safetensors")
    from pytransformer import safetensors
    monkeypatch.setattr(safetensors, "MAX_HEADER_SIZE", 64)
    with pytest.raises(ValueError, match="over the 64-byte limit"):
        save_file({"a" * 100: np.ones(1)}, tmp_path / "big.safetensors")
    assert listing(tmp_path) == ["ok.safetensors"]
    with pytest.raises(CheckpointError, match="over the 64-byte limit"):
        load_file(tmp_path / "ok.safetensors")


# --------------------------------------------------------------- atomicity

def _two_versions(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    save_file({"w": np.arange(10.0)}, path, metadata={"v": "1"})
    return path, path.read_bytes(), {"w": np.arange(1000.0) * 2, "b": np.ones(7, np.int8)}


@pytest.mark.parametrize("exc", [OSError("disk on fire"), KeyboardInterrupt()],
                         ids=["OSError", "KeyboardInterrupt"])
@pytest.mark.parametrize("target", ["replace", "fsync"])
def test_failed_save_keeps_previous_file(tmp_path, monkeypatch, exc, target):
    path, before, new = _two_versions(tmp_path)
    calls = []

    def boom(*args, **kwargs):
        calls.append(args)
        raise exc

    monkeypatch.setattr(os, target, boom)
    with pytest.raises(type(exc)):
        save_file(new, path)
    monkeypatch.undo()
    assert calls, f"os.{target} was never called"
    assert path.read_bytes() == before
    assert listing(tmp_path) == ["ckpt.safetensors"]
    assert_identical(load_file(path)["w"], np.arange(10.0))


def test_failed_save_without_previous_file_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("no")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "new.safetensors", step=1)
    assert listing(tmp_path) == []


def test_write_error_mid_file_keeps_previous_file(tmp_path):
    """A real write failure partway through the data (EFBIG from a file-size
    limit, as a full disk would give): the previous file is intact."""
    resource = pytest.importorskip("resource", reason="needs POSIX resource limits")
    import signal
    if not hasattr(signal, "SIGXFSZ"):
        pytest.skip("no SIGXFSZ on this platform")
    path, before, new = _two_versions(tmp_path)
    new["big"] = np.ones(1 << 18)            # 2 MB, far past the limit below
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
        try:
            save_file(new, path)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        raised = None
    except OSError as e:
        raised = e
    finally:
        signal.signal(signal.SIGXFSZ, old_handler)
    assert raised is not None, "the write past the file-size limit did not fail"
    assert path.read_bytes() == before
    assert listing(tmp_path) == ["ckpt.safetensors"]


def test_save_onto_a_directory_fails_cleanly(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(OSError):
        save_file({"a": np.ones(3)}, tmp_path / "d")
    assert listing(tmp_path) == ["d"] and listing(tmp_path / "d") == []


def test_new_file_has_the_mode_open_gives(tmp_path):
    """Not mkstemp's 0600: the mode a plain open() would give under the umask."""
    save_file({"a": np.ones(3)}, tmp_path / "x.safetensors")
    with open(tmp_path / "plain", "wb"):
        pass
    assert os.stat(tmp_path / "x.safetensors").st_mode == os.stat(tmp_path / "plain").st_mode


def test_overwrite_replaces_content(tmp_path):
    path, before, new = _two_versions(tmp_path)
    save_file(new, path)
    assert path.read_bytes() != before
    loaded = load_file(path)
    assert set(loaded) == {"w", "b"}
    assert_identical(loaded["w"], new["w"])
    assert listing(tmp_path) == ["ckpt.safetensors"]


# ---------------------------------------------------------- broken files

F4 = struct.pack("<4f", 1, 2, 3, 4)     # 16 bytes


def _broken_cases():
    e = entry
    cases = {
        "empty-file": b"",
        "7-bytes": b"\x08\x00\x00\x00\x00\x00\x00",
        "length-2**63": struct.pack("<Q", 2**63) + b"{}      ",
        "length-2**64-1": b"\xff" * 8 + b"{}      ",
        "length-over-100MB": struct.pack("<Q", 100_000_001) + b"{}      ",
        "length-past-eof": struct.pack("<Q", 16) + b"{}      ",
        "length-0": struct.pack("<Q", 0),
        "header-not-utf8": raw_file(b'{"\xff\xfe":{}}'),
        "header-utf8-overlong": raw_file(b'{"\xc0\xaf":1}'),
        "header-truncated-json": raw_file(b'{"a":{"dtype":"F32"'),
        "header-empty": raw_file(b"        ", pad=False),
        "header-nul-padding": raw_file(b"{}" + b"\x00" * 6, pad=False),
        "header-bom": raw_file("\ufeff{}"),
        "header-trailing-garbage": raw_file(b"{} x"),
        "header-nan-constant": raw_file(b'{"a":{"dtype":"F32","shape":[NaN],"data_offsets":[0,4]}}',
                                        F4[:4]),
        "header-infinity": raw_file(b'{"__metadata__":{"x":Infinity}}'),
        "header-deeply-nested": raw_file(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        "header-huge-int-literal": raw_file(b'{"a":{"dtype":"F32","shape":[' + b"9" * 5000
                                            + b'],"data_offsets":[0,4]}}', F4[:4]),
        "top-level-list": raw_file(b"[]"),
        "top-level-string": raw_file(b'"x"'),
        "top-level-number": raw_file(b"1"),
        "top-level-null": raw_file(b"null"),
        "duplicate-tensor": raw_file(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                                     b'"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
                                     F4[:8]),
        "duplicate-field": raw_file(b'{"a":{"dtype":"F32","dtype":"F32","shape":[1],'
                                    b'"data_offsets":[0,4]}}', F4[:4]),
        "duplicate-metadata": raw_file(b'{"__metadata__":{},"__metadata__":{}}'),
        "duplicate-metadata-key": raw_file(b'{"__metadata__":{"k":"1","k":"2"}}'),
        "entry-list": raw_file({"a": [1]}),
        "entry-string": raw_file({"a": "F32"}),
        "entry-null": raw_file({"a": None}),
        "missing-dtype": raw_file({"a": {"shape": [1], "data_offsets": [0, 4]}}, F4[:4]),
        "missing-shape": raw_file({"a": {"dtype": "F32", "data_offsets": [0, 4]}}, F4[:4]),
        "missing-offsets": raw_file({"a": {"dtype": "F32", "shape": [1]}}, F4[:4]),
        "extra-field": raw_file({"a": dict(e("F32", [1], 0, 4), strides=[1])}, F4[:4]),
        "dtype-unknown": raw_file({"a": e("F128", [1], 0, 16)}, F4),
        "dtype-lowercase": raw_file({"a": e("f32", [1], 0, 4)}, F4[:4]),
        "dtype-fp8-unsupported": raw_file({"a": e("F8_E4M3", [4], 0, 4)}, F4[:4]),
        "dtype-complex-unsupported": raw_file({"a": e("C64", [2], 0, 16)}, F4),
        "dtype-int": raw_file({"a": e(4, [1], 0, 4)}, F4[:4]),
        "dtype-null": raw_file({"a": e(None, [1], 0, 4)}, F4[:4]),
        "shape-string": raw_file({"a": e("F32", "4", 0, 16)}, F4),
        "shape-int": raw_file({"a": e("F32", 4, 0, 16)}, F4),
        "shape-negative": raw_file({"a": e("F32", [-4], 0, 16)}, F4),
        "shape-negative-pair": raw_file({"a": e("F32", [-2, -2], 0, 16)}, F4),
        "shape-float": raw_file({"a": e("F32", [4.0], 0, 16)}, F4),
        "shape-bool": raw_file({"a": e("F32", [True], 0, 4)}, F4[:4]),
        "shape-nested": raw_file({"a": e("F32", [[4]], 0, 16)}, F4),
        "shape-null-dim": raw_file({"a": e("F32", [None], 0, 16)}, F4),
        "shape-65-dims": raw_file({"a": e("U8", [1] * 65, 0, 1)}, b"\x01"),
        "shape-huge": raw_file({"a": e("F32", [2**40, 2**40], 0, 16)}, F4),
        "shape-huge-offsets-match": raw_file({"a": e("F32", [2**40, 2**40], 0, 2**82)}, F4),
        "shape-huge-many-dims": raw_file({"a": e("F64", [2**62] * 60, 0, 16)}, F4),
        "shape-zero-size-unrepresentable": raw_file({"a": e("F64", [0, 2**64], 0, 0)}),
        "shape-zero-size-too-big": raw_file({"a": e("F64", [0, 2**62, 8], 0, 0)}),
        "offsets-one": raw_file({"a": {"dtype": "F32", "shape": [4], "data_offsets": [16]}}, F4),
        "offsets-three": raw_file({"a": {"dtype": "F32", "shape": [4],
                                         "data_offsets": [0, 16, 16]}}, F4),
        "offsets-object": raw_file({"a": {"dtype": "F32", "shape": [4],
                                          "data_offsets": {"0": 16}}}, F4),
        "offsets-negative": raw_file({"a": e("F32", [4], -16, 0)}, F4),
        "offsets-reversed": raw_file({"a": e("F32", [0], 16, 0)}, F4),
        "offsets-float": raw_file({"a": e("F32", [4], 0.0, 16.0)}, F4),
        "offsets-bool": raw_file({"a": e("U8", [1], False, True)}, b"\x01"),
        "offsets-string": raw_file({"a": e("F32", [4], "0", "16")}, F4),
        "size-mismatch": raw_file({"a": e("F32", [3], 0, 16)}, F4),
        "size-mismatch-dtype": raw_file({"a": e("F64", [4], 0, 16)}, F4),
        "overlap": raw_file({"a": e("F32", [2], 0, 8), "b": e("F32", [2], 4, 12)}, F4[:12]),
        "overlap-identical": raw_file({"a": e("F32", [2], 0, 8), "b": e("F32", [2], 0, 8)},
                                      F4[:8]),
        "overlap-contained": raw_file({"a": e("F32", [4], 0, 16), "b": e("F32", [1], 4, 8)}, F4),
        "gap": raw_file({"a": e("F32", [1], 0, 4), "b": e("F32", [1], 8, 12)}, F4[:12]),
        "not-starting-at-0": raw_file({"a": e("F32", [1], 4, 8)}, F4[:8]),
        "data-longer": raw_file({"a": e("F32", [3], 0, 12)}, F4),
        "data-shorter": raw_file({"a": e("F32", [4], 0, 16)}, F4[:12]),
        "data-missing": raw_file({"a": e("F32", [4], 0, 16)}),
        "data-without-tensors": raw_file({}, F4),
        "metadata-list": raw_file({"__metadata__": ["a"]}),
        "metadata-string": raw_file({"__metadata__": "a"}),
        "metadata-null": raw_file({"__metadata__": None}),
        "metadata-int-value": raw_file({"__metadata__": {"k": 1}}),
        "metadata-null-value": raw_file({"__metadata__": {"k": None}}),
        "metadata-nested": raw_file({"__metadata__": {"k": {"x": "y"}}}),
        "metadata-surrogate": raw_file(b'{"__metadata__":{"k":"\\ud800"}}'),
        "name-surrogate": raw_file(b'{"\\udc00":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
                                   b"\x01"),
        "bool-byte-2": raw_file({"a": e("BOOL", [4], 0, 4)}, b"\x00\x01\x02\x01"),
    }
    return cases


BROKEN = _broken_cases()


DATA_ONLY = {"bool-byte-2"}    # problems only the tensor bytes show


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_file_raises_checkpoint_error(tmp_path, case):
    path = write(tmp_path, BROKEN[case])
    with pytest.raises(CheckpointError) as info:
        load_file(path)
    assert path in str(info.value)
    assert isinstance(info.value, ValueError)
    if case in DATA_ONLY:
        assert isinstance(load_metadata(path), dict)
    else:
        with pytest.raises(CheckpointError):   # the header checks alone catch it
            load_metadata(path)


def test_broken_corpus_messages_name_the_problem(tmp_path):
    """Spot checks that messages say what is wrong, not only that it is."""
    expect = {"length-2**63": "header length 9223372036854775808", "gap": "gap",
              "overlap": "overlap", "shape-huge": "needs more than 2**64 bytes",
              "dtype-unknown": "F128",
              "duplicate-tensor": "duplicate key 'a'", "data-shorter": "truncated",
              "data-longer": "trailing", "missing-shape": "missing ['shape']",
              "extra-field": "unexpected ['strides']", "size-mismatch": "needs 12",
              "empty-file": "shorter than the 8-byte", "header-not-utf8": "not UTF-8",
              "metadata-int-value": "__metadata__['k']", "header-deeply-nested": "nested"}
    for case, fragment in expect.items():
        with pytest.raises(CheckpointError, match=fragment.replace("[", r"\[").replace("*", r"\*")):
            load_file(write(tmp_path, BROKEN[case], name=case))


CUTS = sorted({0, 1, 7, 8, 9, 8 + VALID_N // 2, 8 + VALID_N - 1, 8 + VALID_N, 8 + VALID_N + 1,
               len(VALID) - 9, len(VALID) - 1})


@pytest.mark.parametrize("cut", CUTS, ids=[f"cut{c}" for c in CUTS])
def test_truncated_valid_file_raises(tmp_path, cut):
    assert load_file(write(tmp_path, VALID, "full"))   # the untruncated file is fine
    path = write(tmp_path, VALID[:cut])
    with pytest.raises(CheckpointError):
        load_file(path)
    with pytest.raises(CheckpointError):
        load_metadata(path)


def test_appended_bytes_raise(tmp_path):
    for tail in (b"\x00", b"x" * 8, VALID):
        with pytest.raises(CheckpointError, match="trailing"):
            load_file(write(tmp_path, VALID + tail))


@pytest.mark.parametrize("old, new", [
    (b'{"__metadata__"', b'["__metadata__"'), (b'"ids":{"dtype"', b'"ids":{"dtypf"'),
    (b'"F32"', b'"F33"'), (b'"I64"', b'"I63"'), (b'"I64"', b'"F32"'),
    (b'"shape":[2,3]', b'"shape":[2,4]'), (b'"shape":[2,3]', b'"shape":[3,3]'),
    (b'"I64","shape":[3]', b'"I64","shape":[4]'), (b'"I64","shape":[3]', b'"I64","shape":-3 '),
    (b'"data_offsets":[0,24]', b'"data_offsets":[0,25]'),
    (b'"data_offsets":[0,24]', b'"data_offsets":[1,24]'),
    (b'"data_offsets":[24,48]', b'"data_offsets":[23,48]'),
    (b'"data_offsets":[48,51]', b'"data_offsets":[48,52]'),
    (b'"data_offsets":[48,51]', b'"data_offsets":[48,50]'),
    (b'"mask"', b'"ids" '), (b'{"k":"v"}', b'{"k":1  }'), (b'}}  ', b'}} x'),
    (b'"dtype":"BOOL"', b'"dtype":"BOO\xff"'),
], ids=lambda b: b.decode("utf-8", "replace"))
def test_header_byte_changes_that_must_raise(tmp_path, old, new):
    assert len(old) == len(new) and VALID.count(old) == 1
    with pytest.raises(CheckpointError):
        load_file(write(tmp_path, VALID.replace(old, new)))


def test_random_byte_flips_in_header(tmp_path):
    """Every single-byte change of the header loads or raises CheckpointError;
    most must raise (a change that still loads can only rename a tensor,
    change metadata or padding, or swap equal-sized fields)."""
    rng = np.random.default_rng(5)
    raised = 0
    positions = rng.integers(0, 8 + VALID_N, size=150)
    for i, pos in enumerate(positions):
        blob = bytearray(VALID)
        blob[pos] ^= int(rng.integers(1, 256))
        if load_or_checkpoint_error(write(tmp_path, bytes(blob), name=f"{i}")) is None:
            raised += 1
    assert raised > len(positions) // 2


# ------------------------------------------------------------- hypothesis

@pytest.fixture(scope="module")
def hyp_dir(tmp_path_factory):
    """One directory for the hypothesis examples (function-scoped tmp_path
    would be shared across examples anyway)."""
    return tmp_path_factory.mktemp("hyp")


@given(blob=st.binary(max_size=300))
def test_random_bytes_load_or_raise(hyp_dir, blob):
    load_or_checkpoint_error(write(hyp_dir, blob))


@given(header=st.binary(max_size=200), tail=st.binary(max_size=64))
def test_random_header_after_valid_length_loads_or_raises(hyp_dir, header, tail):
    load_or_checkpoint_error(write(hyp_dir, struct.pack("<Q", len(header)) + header + tail))


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.sampled_from(["F32", "BOOL", "U8", "F64", "BF16", "x"]) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["dtype", "shape", "data_offsets", "x"]), inner, max_size=4),
    max_leaves=12)


@given(header=st.dictionaries(st.sampled_from(["a", "b", "__metadata__", "ü"]), _json,
                              max_size=3),
       data=st.binary(max_size=48))
def test_random_json_headers_load_or_raise(hyp_dir, header, data):
    load_or_checkpoint_error(write(hyp_dir, raw_file(header, data)))


@given(changes=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)),
                        max_size=6),
       cut=st.integers(0, len(VALID) + 8), tail=st.binary(max_size=8))
def test_mutations_of_a_valid_file_load_or_raise(hyp_dir, changes, cut, tail):
    blob = bytearray(VALID)
    for pos, value in changes:
        blob[pos] = value
    tensors = load_or_checkpoint_error(write(hyp_dir, bytes(blob[:cut]) + tail))
    if not changes and cut >= len(VALID) and not tail:
        assert tensors is not None


# ------------------------------------------------------------- checkpoints

class StandInModel:
    """What save/load_checkpoint need of an nn.Module: state_dict (keys in
    registration order, not sorted) and a strict load_state_dict."""

    def __init__(self, rng, d_in=3, d_out=2):
        self.params = {"weight": (rng.standard_normal((d_out, d_in)) * 0.1).astype(np.float32),
                       "bias": np.zeros(d_out, np.float32),
                       "norm.running_count": np.array(0, np.int64)}

    def state_dict(self):
        return dict(self.params)

    def load_state_dict(self, sd):
        assert list(sd) == list(self.params), (list(sd), list(self.params))
        for k, v in sd.items():
            assert v.shape == self.params[k].shape and v.dtype == self.params[k].dtype
            self.params[k][...] = v

    def forward(self, x):
        return x @ self.params["weight"].T + self.params["bias"]


class StandInSGD:
    """SGD with momentum, PyTorch's state_dict layout; load_state_dict is
    strict about types (betas must be a tuple, as PyTorch's code assumes)."""

    def __init__(self, params, lr=0.1, momentum=0.9):
        self.params = params                 # list of arrays, updated in place
        self.state = {}
        self.param_groups = [{"lr": lr, "momentum": momentum, "betas": (0.9, 0.999),
                              "nesterov": False, "foreach": None, "weight_decay": 0,
                              "params": list(range(len(params)))}]

    def step(self, grads):
        g = self.param_groups[0]
        for i, (p, grad) in enumerate(zip(self.params, grads)):
            s = self.state.setdefault(i, {"step": 0, "momentum_buffer": np.zeros_like(p)})
            s["momentum_buffer"] *= g["momentum"]
            s["momentum_buffer"] += grad
            s["step"] += 1
            p -= g["lr"] * s["momentum_buffer"]

    def state_dict(self):
        return {"state": {i: dict(s) for i, s in self.state.items()},
                "param_groups": [dict(g) for g in self.param_groups]}

    def load_state_dict(self, sd):
        assert isinstance(sd["param_groups"][0]["betas"], tuple)
        assert all(isinstance(i, int) for i in sd["state"])
        self.param_groups = [dict(g) for g in sd["param_groups"]]
        self.state = {i: {k: (v.copy() if isinstance(v, np.ndarray) else v)
                          for k, v in s.items()} for i, s in sd["state"].items()}


def _train(model, opt, rng, steps, x, y):
    """Minibatch least squares; minibatches drawn from rng. Returns the losses."""
    losses = []
    for _ in range(steps):
        idx = rng.integers(0, len(x), size=8)
        err = model.forward(x[idx]) - y[idx]
        losses.append(float(np.mean(err ** 2)))
        gw = 2 * err.T @ x[idx] / err.size
        gb = 2 * err.sum(0) / err.size
        opt.step([gw, gb])
        model.params["norm.running_count"] += 1
    return losses


def _problem():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = (x @ np.array([[1.0, -2.0, 0.5], [0.3, 0.0, 2.0]], np.float32).T + 0.1).astype(np.float32)
    return x, y


def _fresh():
    model = StandInModel(np.random.default_rng(11))
    opt = StandInSGD([model.params["weight"], model.params["bias"]])
    return model, opt


def test_resume_gives_the_same_next_losses(tmp_path):
    x, y = _problem()
    model, opt = _fresh()
    full = _train(model, opt, np.random.default_rng(12), 12, x, y)

    model, opt = _fresh()
    rng = np.random.default_rng(12)
    first = _train(model, opt, rng, 6, x, y)
    save_checkpoint(tmp_path / "c.safetensors", model=model, optimizer=opt, step=6, rng=rng,
                    config={"lr": 0.1})
    del model, opt, rng
    model, opt = _fresh()
    c = load_checkpoint(tmp_path / "c.safetensors")
    c.load_into(model=model, optimizer=opt)
    assert c.step == 6
    rest = _train(model, opt, c.restore_rng(), 6, x, y)
    assert first + rest == full


def test_checkpoint_round_trip(tmp_path):
    x, y = _problem()
    model, opt = _fresh()
    rng = np.random.default_rng(13)
    _train(model, opt, rng, 3, x, y)
    opt.state[0]["step_tensor"] = np.array(3.0, np.float32)   # PyTorch: step is a 0-d tensor
    opt.state[1]["lr_scale"] = np.float32(0.5)                     # NumPy scalar -> Python float
    opt.state[1]["history"] = (1, 2.5, None, "x", [True, (3,)])
    opt.param_groups[0]["eps"] = 1e-8
    opt.param_groups[0]["weird.name ü"] = -0.0
    config = {"d_model": 8, "betas": (0.9, 0.98), "layers": [{"act": "gelu"}], "nan": math.nan,
              "big": 2**100, "name": "ünï"}
    extra = {"losses": [1.5, 0.25], "best": None}
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model=model, optimizer=opt, step=3, config=config, rng=rng, extra=extra)
    expected_draws = rng.random(5)

    c = load_checkpoint(path)
    assert isinstance(c, ckpt.Checkpoint) and c.path == str(path)
    assert list(c.model_state) == ["weight", "bias", "norm.running_count"]
    for k, v in model.state_dict().items():
        assert_identical(c.model_state[k], v)
    sd, got = opt.state_dict(), c.optimizer_state
    assert list(got) == ["state", "param_groups"]
    assert got["param_groups"] == sd["param_groups"]
    assert type(got["param_groups"][0]["betas"]) is tuple
    assert math.copysign(1, got["param_groups"][0]["weird.name ü"]) == -1
    assert list(got["state"]) == [0, 1]
    for i, s in sd["state"].items():
        assert list(got["state"][i]) == list(s)
        for k, v in s.items():
            if isinstance(v, np.ndarray):
                assert_identical(got["state"][i][k], v)
            elif isinstance(v, np.generic):
                assert got["state"][i][k] == v.item() and type(got["state"][i][k]) is float
            else:
                assert got["state"][i][k] == v and type(got["state"][i][k]) is type(v)
    assert got["state"][1]["history"] == (1, 2.5, None, "x", [True, (3,)])
    assert c.step == 3 and type(c.step) is int
    assert c.config["betas"] == (0.9, 0.98) and type(c.config["betas"]) is tuple
    assert math.isnan(c.config.pop("nan")) and c.config == {k: v for k, v in config.items()
                                                            if k != "nan"}
    assert c.extra == extra
    assert np.array_equal(c.restore_rng().random(5), expected_draws)
    assert np.array_equal(restore_rng(c.rng_state).random(5), expected_draws)
    meta = load_metadata(path)
    assert meta == c.metadata and meta[ckpt.FORMAT_KEY] == "1"
    names = set(load_file(path))
    assert names == {"model.weight", "model.bias", "model.norm.running_count",
                     "optimizer.state.0.momentum_buffer", "optimizer.state.1.momentum_buffer",
                     "optimizer.state.0.step_tensor"}


@pytest.mark.parametrize("bit_generator", ["PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"])
def test_generator_continues_exactly(tmp_path, bit_generator):
    rng = np.random.Generator(getattr(np.random, bit_generator)(2024))
    rng.random(3), rng.integers(0, 10, 5), rng.standard_normal(7)    # mid-stream, odd counts
    rng.integers(0, 2**31, dtype=np.uint32)                           # leaves a buffered half word
    save_checkpoint(tmp_path / "c.safetensors", rng=rng)
    expected = (rng.random(4), rng.integers(0, 2**40, 4), rng.standard_normal(3),
                rng.integers(0, 2**31, 3, dtype=np.uint32))
    r = load_checkpoint(tmp_path / "c.safetensors").restore_rng()
    assert type(r.bit_generator).__name__ == bit_generator
    got = (r.random(4), r.integers(0, 2**40, 4), r.standard_normal(3),
           r.integers(0, 2**31, 3, dtype=np.uint32))
    for a, b in zip(got, expected):
        assert np.array_equal(a, b)


def test_rng_as_dict_and_empty_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "d.safetensors", rng={"seed": 7, "torch": None, "t": (1, 2)})
    c = load_checkpoint(tmp_path / "d.safetensors")
    assert c.rng_state == {"seed": 7, "torch": None, "t": (1, 2)}
    assert c.model_state is None and c.optimizer_state is None and c.step is None
    with pytest.raises(ValueError, match="bit_generator"):
        c.restore_rng()
    save_checkpoint(tmp_path / "e.safetensors")
    c = load_checkpoint(tmp_path / "e.safetensors")
    assert (c.model_state, c.optimizer_state, c.step, c.config, c.rng_state, c.extra) == (None,) * 6
    assert c.metadata == {"pytransformer.checkpoint": "1"}
    with pytest.raises(ValueError, match="no RNG state"):
        c.restore_rng()
    with pytest.raises(ValueError, match="no model state"):
        c.load_into(model=StandInModel(np.random.default_rng(0)))
    with pytest.raises(ValueError, match="no optimizer state"):
        c.load_into(optimizer=StandInSGD([]))


def test_model_as_mapping_and_empty_state(tmp_path):
    sd = {"b": np.ones(2), "a": np.zeros((0, 3), np.float32)}
    save_checkpoint(tmp_path / "m.safetensors", model=sd)
    got = load_checkpoint(tmp_path / "m.safetensors").model_state
    assert list(got) == ["b", "a"]
    for k in sd:
        assert_identical(got[k], sd[k])
    save_checkpoint(tmp_path / "n.safetensors", model={})
    assert load_checkpoint(tmp_path / "n.safetensors").model_state == {}


class NoStateDict:
    pass


class BadOptimizer:
    def __init__(self, sd):
        self.sd = sd

    def state_dict(self):
        return self.sd


GOOD_GROUPS = [{"lr": 0.1, "params": [0]}]


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(model=NoStateDict()), TypeError, "model: expected an object with state_dict"),
    (dict(model={"w": [1.0]}), TypeError, r"model: state_dict\(\)\['w'\]"),
    (dict(model={1: np.ones(1)}), TypeError, "model: state_dict keys must be str"),
    (dict(model={"w": np.ones(1, np.complex64)}), TypeError, "complex64"),
    (dict(step=True), TypeError, "step"), (dict(step=1.0), TypeError, "step"),
    (dict(step="1"), TypeError, "step"), (dict(step=-1), ValueError, "step"),
    (dict(config=[1]), TypeError, "config: expected a dict"),
    (dict(config={1: 2}), TypeError, "config: dict keys must be str"),
    (dict(config={"a": np.zeros(2)}), TypeError, r"config\['a'\]: ndarray"),
    (dict(config={"a": {"b": object()}}), TypeError, r"config\['a'\]\['b'\]"),
    (dict(config={"a": 1j}), TypeError, "complex"),
    (dict(config={"__tuple__": [1]}), ValueError, "reserved"),
    (dict(extra="x"), TypeError, "extra: expected a dict"),
    (dict(rng=np.random.RandomState(0)), TypeError, "rng: expected a numpy.random.Generator"),
    (dict(rng=5), TypeError, "rng"), (dict(rng={"s": {1, 2}}), TypeError, "set"),
    (dict(optimizer=NoStateDict()), TypeError, "optimizer: expected an object with state_dict"),
    (dict(optimizer=BadOptimizer([])), ValueError, "exactly the keys"),
    (dict(optimizer=BadOptimizer({"state": {}})), ValueError, "exactly the keys"),
    (dict(optimizer=BadOptimizer({"state": [], "param_groups": GOOD_GROUPS})), TypeError, "state"),
    (dict(optimizer=BadOptimizer({"state": {"0": {}}, "param_groups": GOOD_GROUPS})), TypeError,
     "keys must be int"),
    (dict(optimizer=BadOptimizer({"state": {True: {}}, "param_groups": GOOD_GROUPS})), TypeError,
     "keys must be int"),
    (dict(optimizer=BadOptimizer({"state": {0: [1]}, "param_groups": GOOD_GROUPS})), TypeError,
     "expected a mapping"),
    (dict(optimizer=BadOptimizer({"state": {0: {1: 2}}, "param_groups": GOOD_GROUPS})), TypeError,
     "keys must be str"),
    (dict(optimizer=BadOptimizer({"state": {0: {"__tuple__": 1}}, "param_groups": GOOD_GROUPS})),
     ValueError, "reserved"),
    (dict(optimizer=BadOptimizer({"state": {0: {"m": [np.ones(2)]}}, "param_groups": GOOD_GROUPS})),
     TypeError, "ndarray"),
    (dict(optimizer=BadOptimizer({"state": {}, "param_groups": [1]})), TypeError, "param_groups"),
    (dict(optimizer=BadOptimizer({"state": {}, "param_groups": [{"lr": np.ones(2)}]})), TypeError,
     "param_groups"),
], ids=["model-no-state-dict", "model-list-value", "model-int-key", "model-complex",
        "step-bool", "step-float", "step-str", "step-negative", "config-list", "config-int-key",
        "config-array", "config-object", "config-complex", "config-reserved-key", "extra-str",
        "rng-RandomState", "rng-int", "rng-set", "optimizer-no-state-dict", "optimizer-list",
        "optimizer-no-groups", "optimizer-state-list", "optimizer-str-id", "optimizer-bool-id",
        "optimizer-entry-list", "optimizer-int-name", "optimizer-reserved-name",
        "optimizer-array-in-list", "optimizer-group-int", "optimizer-group-array"])
def test_save_checkpoint_rejects_bad_arguments(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        save_checkpoint(tmp_path / "c.safetensors", **kwargs)
    assert listing(tmp_path) == []


def _meta(**over):
    meta = {"pytransformer.checkpoint": "1"}
    meta.update(over)
    return {k: v for k, v in meta.items() if v is not None}


_T = {"optimizer.state.0.m": np.ones(2)}
_OPT_OK = '{"state":{"0":{"m":{"tensor":"optimizer.state.0.m"}}},"param_groups":[]}'


@pytest.mark.parametrize("tensors, meta, match", [
    ({}, None, "no 'pytransformer.checkpoint'"),
    ({}, {}, "no 'pytransformer.checkpoint'"),
    ({}, {"format": "pt"}, "no 'pytransformer.checkpoint'"),
    ({}, _meta(**{"pytransformer.checkpoint": "2"}), "version '2'"),
    ({}, _meta(step="1.5"), "step"), ({}, _meta(step="-1"), "step"),
    ({}, _meta(step="true"), "step"), ({}, _meta(step='"3"'), "step"),
    ({}, _meta(step="{"), "'step' is not valid JSON"),
    ({}, _meta(config="{'a': 1}"), "'config' is not valid JSON"),
    ({}, _meta(config='{"a":1,"a":2}'), "duplicate key"),
    ({}, _meta(config="[1]"), "'config' must be an object"),
    ({}, _meta(config='{"t":{"__tuple__":1}}'), "__tuple__"),
    ({}, _meta(config='{"t":{"__tuple__":[1],"x":2}}'), "__tuple__"),
    ({}, _meta(config="[" * 100_000 + "]" * 100_000), "config"),
    ({}, _meta(extra="null1"), "'extra' is not valid JSON"),
    ({}, _meta(extra='"x"'), "'extra' must be an object"),
    ({"model.w": np.ones(1)}, _meta(), "not described"),
    ({"model.w": np.ones(1)}, _meta(model='["v"]'), "missing"),
    ({"model.w": np.ones(1)}, _meta(model='["w","w"]'), "distinct"),
    ({"model.w": np.ones(1)}, _meta(model='{"w":1}'), "'model' must be a list"),
    ({"model.w": np.ones(1)}, _meta(model="[1]"), "'model' must be a list"),
    ({"other": np.ones(1)}, _meta(), "not described"),
    (_T, _meta(), "not described"),
    (_T, _meta(optimizer='{"state":{}}'), "keys 'state' and 'param_groups'"),
    (_T, _meta(optimizer='{"state":{},"param_groups":[]}'), "not described"),
    ({}, _meta(optimizer=_OPT_OK), "missing"),
    (_T, _meta(optimizer=_OPT_OK.replace('"0"', '"x"')), "not an int"),
    (_T, _meta(optimizer=_OPT_OK.replace('"0"', '"00"')), "not an int"),
    (_T, _meta(optimizer=_OPT_OK.replace('"0"', '"٣"')), "not an int"),
    (_T, _meta(optimizer=_OPT_OK.replace('"param_groups":[]', '"param_groups":[1]')),
     "param_groups"),
    (_T, _meta(optimizer=_OPT_OK.replace('"param_groups":[]', '"param_groups":{}')),
     "param_groups"),
    (_T, _meta(optimizer=_OPT_OK.replace('"tensor"', '"tensr"')), "must be"),
    (_T, _meta(optimizer=_OPT_OK.replace('"optimizer.state.0.m"', '"model.w"')), "must be"),
    (_T, _meta(optimizer='{"state":{"0":{"m":{"tensor":"optimizer.state.0.m"},'
                         '"n":{"tensor":"optimizer.state.0.m"}}},"param_groups":[]}'),
     "used twice"),
    (_T, _meta(optimizer='{"state":{"0":[]},"param_groups":[]}'), "must be an object"),
    (_T, _meta(optimizer='{"state":[],"param_groups":[]}'), "state must be an object"),
    ({}, _meta(rng='{"type":"dict"}'), "'rng' must be"),
    ({}, _meta(rng='{"type":"pickle","state":{}}'), "'rng' must be"),
    ({}, _meta(rng='{"type":"dict","state":[1]}'), "'rng' must be"),
    ({}, _meta(rng='{"type":"numpy.random.Generator","state":{"bit_generator":"os.system"}}'),
     "bit_generator"),
    ({}, _meta(rng='{"type":"numpy.random.Generator","state":{"bit_generator":"PCG64",'
                   '"state":{"state":"x","inc":1},"has_uint32":0,"uinteger":0}}'),
     r"state\['state'\]\['state'\]: expected an int"),
    ({}, _meta(rng='{"type":"numpy.random.Generator","state":{"bit_generator":"MT19937",'
                   '"state":{"key":[1,2],"pos":0}}}'),
     r"state\['state'\]\['key'\]: expected 624 unsigned 32-bit ints, got 2 items"),
], ids=["no-metadata", "empty-metadata", "foreign-metadata", "version-2", "step-float",
        "step-negative", "step-bool", "step-string", "step-bad-json", "config-python-repr",
        "config-duplicate", "config-list", "config-tuple-tag-int", "config-tuple-tag-extra",
        "config-deeply-nested", "extra-bad-json", "extra-string", "model-undeclared",
        "model-missing-tensor", "model-duplicate-key", "model-object", "model-int-key",
        "stray-tensor", "optimizer-undeclared", "optimizer-no-groups",
        "optimizer-tensor-unreferenced", "optimizer-missing-tensor", "optimizer-key-x",
        "optimizer-key-00", "optimizer-key-arabic-digit", "optimizer-group-int",
        "optimizer-groups-object", "optimizer-bad-item", "optimizer-steals-model-tensor",
        "optimizer-tensor-twice", "optimizer-entry-list", "optimizer-state-list",
        "rng-no-state", "rng-unknown-type", "rng-state-list", "rng-unknown-bit-generator",
        "rng-bad-pcg64", "rng-bad-mt19937"])
def test_load_checkpoint_rejects_malformed_metadata(tmp_path, tensors, meta, match):
    path = tmp_path / "c.safetensors"
    save_file(tensors, path, metadata=meta)
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_load_checkpoint_of_a_broken_file_raises(tmp_path):
    save_checkpoint(tmp_path / "c.safetensors", model={"w": np.ones(4)}, step=2)
    blob = (tmp_path / "c.safetensors").read_bytes()
    (tmp_path / "c.safetensors").write_bytes(blob[:-1])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path / "c.safetensors")


def test_missing_file_is_an_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_file(tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.safetensors")


# ------------------------------------------- the reference implementation

def test_reference_library_reads_our_files_and_we_read_its_files(tmp_path):
    st_numpy = pytest.importorskip(
        "safetensors.numpy", reason="the safetensors package is not installed (optional; "
                                    "only used to cross-check the format)")
    from safetensors import safe_open
    rng = np.random.default_rng(20)
    tensors = {f"{np.dtype(d).name}.{i}": random_array(rng, shape, d)
               for d in DTYPES for i, shape in enumerate([(), (0, 3), (2, 5)])}
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    save_file(tensors, ours, metadata={"format": "np", "ü": "ß"})
    got = st_numpy.load_file(str(ours))
    assert set(got) == set(tensors)
    for k in tensors:
        assert_identical(np.asarray(got[k]), tensors[k])
    with safe_open(str(ours), framework="np") as f:
        assert f.metadata() == {"format": "np", "ü": "ß"}
    st_numpy.save_file(tensors, str(theirs), metadata={"format": "np", "ü": "ß"})
    got = load_file(theirs)
    for k in tensors:
        assert_identical(got[k], tensors[k])
    assert load_metadata(theirs) == {"format": "np", "ü": "ß"}
    # Byte-identical files (one metadata key: the reference orders several by hash).
    save_file(tensors, ours, metadata={"ü": "ß"})
    st_numpy.save_file(tensors, str(theirs), metadata={"ü": "ß"})
    assert theirs.read_bytes() == ours.read_bytes()
    save_file(tensors, ours)
    st_numpy.save_file(tensors, str(theirs))
    assert theirs.read_bytes() == ours.read_bytes()
