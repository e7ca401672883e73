"""The safetensors format, read and written with NumPy only (the
`safetensors` package is not needed; files are byte-compatible with it both
ways): `save_file`, `load_file`, `load_metadata`, `load_with_metadata`.

      [8 bytes: N, little-endian u64]
      [N bytes: UTF-8 JSON header, padded with spaces to a multiple of 8]
          {"__metadata__": {str: str},            (optional)
           name: {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
           ...}
      [data: raw little-endian C-order bytes; offsets are relative to the
       start of this section, and the tensors cover it exactly, without gaps
       or overlaps]

Like the reference writer, tensors are laid out by decreasing alignment
(8-byte dtypes first, then 4, 2, 1), then by name, so every tensor starts
at a multiple of its itemsize. Writable dtypes: F64 F32 F16 I64 I32 I16 I8
U64 U32 U16 U8 BOOL. BF16 can be read, not written: NumPy has no bfloat16,
so BF16 tensors are returned as float32 (exactly: a bfloat16 is the upper
half of a float32).

Writes are atomic: a temporary file in the target's directory is written,
flushed and fsync'ed, then os.replace'd onto the target, and the directory is
fsync'ed (best effort). If anything fails (or the process is interrupted
before the replace), the temporary file is removed and a previous file at the
path is untouched; the temporary of a writer killed outright (SIGKILL, power
loss) is removed by the next save to the same path (see pytransformer._atomic).

Reads trust nothing: every structural problem of a file (truncated, bad
header length, header not UTF-8 or not JSON, duplicate keys, unknown dtypes,
bad shapes or offsets, overlaps, gaps, sizes that do not add up, bad metadata)
raises `CheckpointError`, a ValueError whose message names the file and the
problem. Sizes are checked with Python integers before anything is allocated,
so a hostile shape such as [2**40, 2**40] costs nothing; tensor memory never
exceeds the file's size (BF16 tensors: twice their bytes, as float32). The
header itself is capped at 100 MB, as in the reference library. A load
never uses more than MEMORY_FACTOR times the file's size plus MEMORY_SLACK
bytes (4x + 64 MB): before the header is given to `json`, the Python
objects it would become are bounded from above by counting its ':', ',',
'[' and '{' bytes (a C-speed scan; see _json_cost), and a header whose
bound exceeds that budget is rejected without being parsed (so a 100 MB
header of [[],[],...] or of millions of metadata keys costs a fraction of
a second); after parsing, the tensors, the loader's objects for them and
the objects a checkpoint's JSON metadata values will become are added
before any tensor is read. The bounds are generous (about twice what
CPython 3.11 measures), so files of very many tiny tensors can be rejected
although they would fit: 40,000 tensors of 16 bytes (a 3 MB file) are,
100,000 of 400 bytes or of 1 KB load. Nothing is ever unpickled or
evaluated. Errors opening the file (missing, a directory, permissions) are
the usual OSError.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Optional

import numpy as np

from pytransformer._atomic import atomic_write
from pytransformer.validation import names_list

__all__ = ["CheckpointError", "save_file", "load_file", "load_metadata", "load_with_metadata",
           "unique_keys", "MAX_HEADER_SIZE", "MEMORY_FACTOR", "MEMORY_SLACK"]

MAX_HEADER_SIZE = 100_000_000   # bytes; the reference library's limit
# A load uses at most MEMORY_FACTOR * file size + MEMORY_SLACK bytes.
MEMORY_FACTOR = 4
MEMORY_SLACK = 64 << 20
# Upper bounds, in bytes, of the Python objects json (with the duplicate-key
# hook) and the loader create: per ':' (a key str, its (key, value) pair and
# dict slot, the value), per ',', '[' or '{' (a value, list or dict), and per
# tensor while reading the data (entry tuples, ndarray objects, dict slots,
# load_checkpoint's dicts). The per-':' and per-',' bounds overestimate
# most JSON (measured with CPython 3.11: 30 to 110 bytes a ':' or ',' in
# practice, up to 215 for a ':' of one object with millions of keys).
_COST_COLON = 176
_COST_VALUE = 64
_COST_TENSOR = 640

# safetensors dtype name -> (little-endian NumPy dtype it is stored as,
# alignment rank: the reference writer's order, larger first).
_DTYPES = {
    "BOOL": (np.dtype("|b1"), 0), "U8": (np.dtype("|u1"), 1), "I8": (np.dtype("|i1"), 2),
    "I16": (np.dtype("<i2"), 5), "U16": (np.dtype("<u2"), 6), "F16": (np.dtype("<f2"), 7),
    "BF16": (np.dtype("<u2"), 8), "I32": (np.dtype("<i4"), 9), "U32": (np.dtype("<u4"), 10),
    "F32": (np.dtype("<f4"), 11), "F64": (np.dtype("<f8"), 12), "I64": (np.dtype("<i8"), 13),
    "U64": (np.dtype("<u8"), 14),
}
# (numpy kind, itemsize) -> safetensors name, for writing. No BF16: NumPy has none.
_WRITE_NAMES = {("b", 1): "BOOL", ("u", 1): "U8", ("i", 1): "I8", ("i", 2): "I16",
                ("u", 2): "U16", ("f", 2): "F16", ("i", 4): "I32", ("u", 4): "U32",
                ("f", 4): "F32", ("f", 8): "F64", ("i", 8): "I64", ("u", 8): "U64"}
_WRITABLE = "F64 F32 F16 I64 I32 I16 I8 U64 U32 U16 U8 BOOL"
_NP2 = int(np.__version__.split(".")[0]) >= 2
_MAX_NDIM = 64 if _NP2 else 32
_ENTRY_FIELDS = ("dtype", "shape", "data_offsets")
_ENTRY_KEYS = frozenset(_ENTRY_FIELDS)
_MAX_BYTES = 2**64


class CheckpointError(ValueError):
    """A file is not a valid safetensors file / pytransformer checkpoint.
    The message names the file and the problem."""


# ------------------------------------------------------------------ writing

def _tensor_entry(name, value):
    """(safetensors dtype, little-endian C-order array) for one tensor to write."""
    if isinstance(value, np.generic):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        raise TypeError(f"tensors[{name!r:.80}]: expected a numpy.ndarray, got "
                        f"{type(value).__name__}")
    st = _WRITE_NAMES.get((value.dtype.kind, value.dtype.itemsize))
    if st is None or value.dtype.fields is not None:
        raise TypeError(f"tensors[{name!r:.80}]: dtype {value.dtype} cannot be saved; "
                        f"supported: {_WRITABLE} (as NumPy bool, uint8..uint64, "
                        f"int8..int64, float16/32/64)")
    le = _DTYPES[st][0]
    # np.array keeps 0-d arrays 0-d; copies only when needed (order/byte order).
    return st, np.array(value, dtype=le, order="C", copy=None if _NP2 else False)



def _check_text(what, s):
    """ValueError unless str `s` can be encoded as UTF-8 (no lone surrogates)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{what}: {s!r:.80} is not valid Unicode text ({e.reason})") from None


def _header_bytes(tensors, metadata):
    """Validate the inputs and return (padded header bytes, arrays in file order)."""
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors: expected a mapping of str to numpy.ndarray, got "
                        f"{type(tensors).__name__}")
    items = []
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensors: names must be str, got {type(name).__name__} {name!r:.80}")
        if name == "__metadata__":
            raise ValueError("tensors: the name '__metadata__' is reserved by the format")
        _check_text("tensors: name", name)
        st, arr = _tensor_entry(name, value)
        items.append((name, st, arr))
    header = {}
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise TypeError(f"metadata: expected a mapping of str to str or None, got "
                            f"{type(metadata).__name__}")
        meta = {}
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"metadata: keys and values must be str, got "
                                f"{type(k).__name__} {k!r:.80}: {type(v).__name__}")
            _check_text("metadata: key", k)
            _check_text(f"metadata[{k!r:.80}]", v)
            meta[k] = v
        header["__metadata__"] = {k: meta[k] for k in sorted(meta)}
    # The reference order: decreasing alignment, then name.
    items.sort(key=lambda t: (-_DTYPES[t[1]][1], t[0]))
    offset = 0
    for name, st, arr in items:
        header[name] = {"dtype": st, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    raw = json.dumps(header, ensure_ascii=False, separators=(",", ":"),
                     allow_nan=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    if len(raw) > MAX_HEADER_SIZE:
        raise ValueError(f"tensors/metadata: the header would be {len(raw)} bytes, over "
                         f"the {MAX_HEADER_SIZE}-byte limit readers accept")
    return raw, [arr for _, _, arr in items]


def save_file(tensors: Mapping[str, np.ndarray], path,
              metadata: Optional[Mapping[str, str]] = None):
    """Write `tensors` (str name -> numpy array) to `path` as a safetensors
    file, atomically (see the module docstring), with optional `metadata`
    (str -> str, stored as "__metadata__"; written, possibly empty, unless
    None).

    Arrays of any layout are accepted (non-contiguous or big-endian ones are
    stored as little-endian C order); dtypes bool, int8..int64, uint8..uint64,
    float16/32/64 (TypeError for others: object, complex, str, structured,
    longdouble, ...). TypeError for non-str names or metadata, ValueError for
    the reserved name "__metadata__", text that is not valid Unicode, or a
    header over MAX_HEADER_SIZE. Nothing is written when the input is bad."""
    header, arrays = _header_bytes(tensors, metadata)
    chunks = [len(header).to_bytes(8, "little"), header]
    # reshape(-1) of a C-order array is a view; uint8 bytes of 0-d/empty arrays too.
    chunks += [a.reshape(-1).view(np.uint8) for a in arrays]
    atomic_write(path, chunks)


# ------------------------------------------------------------------ reading

def unique_keys(pairs):
    """A json object_pairs_hook: the object as a dict, or ValueError on a
    repeated key (JSON allows them; a header or metadata with one is
    ambiguous)."""
    d = dict(pairs)
    if len(d) != len(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                raise ValueError(f"duplicate key {k!r:.80}")
            seen.add(k)
    return d


def _no_constants(name):
    """json parse_constant: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not valid JSON")


def _read_exact(f, n):
    """Up to n bytes from raw file f (fewer only at end of file)."""
    parts, got = [], 0
    while got < n:
        b = f.read(n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def _json_cost(text):
    """An upper bound of the bytes of the Python objects json.loads builds
    from `text` (bytes or str), not counting the characters of its strings:
    every JSON value other than the first in a container follows a ',' or a
    ':' and every container starts with '[' or '{' (counted even inside
    strings, which only makes the bound larger)."""
    colon, comma, bracket, brace = (b":", b",", b"[", b"{") if isinstance(text, bytes) \
        else (":", ",", "[", "{")
    return (_COST_COLON * text.count(colon)
            + _COST_VALUE * (text.count(comma) + text.count(bracket) + text.count(brace)))


def _parse_header(f, where):
    """Read and validate the header of the open raw file f.

    Returns (entries, metadata, data_len): entries is a list of
    (name, dtype name, shape tuple, begin, end) in header order, all checked
    against each other and against the file size. The memory the header
    would take is bounded before it is parsed (see the module docstring)."""
    file_size = os.fstat(f.fileno()).st_size

    def fail(msg):
        raise CheckpointError(f"{where}: {msg}")

    if file_size < 8:
        fail(f"file is {file_size} bytes, shorter than the 8-byte header length")
    raw = _read_exact(f, 8)
    if len(raw) < 8:
        fail("file ended inside the 8-byte header length")
    n = int.from_bytes(raw, "little")
    if n > MAX_HEADER_SIZE:
        fail(f"header length {n} is over the {MAX_HEADER_SIZE}-byte limit")
    if n > file_size - 8:
        fail(f"header length {n} is more than the {file_size - 8} bytes after it")
    raw = _read_exact(f, n)
    if len(raw) < n:
        fail(f"file ended inside the {n}-byte header")
    data_len = file_size - 8 - n
    budget = MEMORY_FACTOR * file_size + MEMORY_SLACK

    def over_budget(cost):
        fail(f"the {n}-byte header would take more than {cost >> 20} MB of memory to "
             f"parse (too many JSON values); a {file_size}-byte file may use "
             f"{budget >> 20} MB ({MEMORY_FACTOR}x its size + {MEMORY_SLACK >> 20} MB)")

    # Parsing takes the raw bytes, the decoded text (1, 2 or 4 bytes a
    # character; its strings' characters take at most as much again) and
    # the objects. Reading the data then takes the tensors, the loader's
    # objects for each, and the metadata (its strings, and the objects
    # load_checkpoint makes of its JSON values). The two are added: memory
    # the parse frees is mostly not returned to the system (small objects
    # that stay, such as the tensor names, pin the allocator's arenas).
    cost = n + _json_cost(raw)
    if cost + 2 * n > budget:   # the text takes at least n bytes
        over_budget(cost + 2 * n)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        fail(f"header is not UTF-8 ({e.reason} at byte {8 + e.start})")
    del raw
    text_size = sys.getsizeof(text)
    cost += 2 * text_size
    if cost > budget:
        over_budget(cost)
    try:
        obj = json.loads(text, object_pairs_hook=unique_keys, parse_constant=_no_constants)
    except RecursionError:
        fail("header JSON is nested too deeply")
    except ValueError as e:   # json.JSONDecodeError, duplicates, NaN, huge int literals
        fail(f"header is not valid JSON: {e}")
    del text
    if not isinstance(obj, dict):
        fail(f"header must be a JSON object, got {type(obj).__name__}")
    metadata = {}
    entries = []
    for name, info in obj.items():
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            fail(f"tensor name {name!r:.80} is not valid Unicode text")
        if name == "__metadata__":
            if not isinstance(info, dict):
                fail(f"__metadata__ must be an object of str to str, got {type(info).__name__}")
            for k, v in info.items():
                if not isinstance(v, str):
                    fail(f"__metadata__[{k!r:.80}] must be a str, got {type(v).__name__}")
                try:
                    k.encode("utf-8"), v.encode("utf-8")
                except UnicodeEncodeError:
                    fail(f"__metadata__[{k!r:.80}] is not valid Unicode text")
            metadata = info
            continue
        entries.append(_check_entry(name, info, fail))
    # A BF16 tensor of b bytes becomes 2b bytes of float32, converted from
    # its b bytes read: at most b + 2b at once.
    cost += (data_len + 2 * sum(e[4] - e[3] for e in entries if e[1] == "BF16")
            + _COST_TENSOR * len(entries) + text_size
            + sum(_json_cost(v) for v in metadata.values()))
    if cost > budget:
        fail(f"{len(entries)} tensors and the metadata would take more than {cost >> 20} MB "
             f"of memory with the parsed header; a {file_size}-byte file may use "
             f"{budget >> 20} MB ({MEMORY_FACTOR}x its size + {MEMORY_SLACK >> 20} MB)")
    # Offsets: sorted, they must tile [0, data_len) exactly.
    pos, prev = 0, None
    for name, _, _, begin, end in sorted(entries, key=lambda e: (e[3], e[4])):
        if begin < pos:
            fail(f"tensor {name!r:.80} data_offsets [{begin}, {end}] overlap tensor {prev!r:.80} "
                 f"(which ends at {pos})")
        if begin > pos:
            fail(f"gap in the data section: bytes [{pos}, {begin}) belong to no tensor "
                 f"(tensor {name!r:.80} starts at {begin})")
        pos, prev = end, name
    if pos < data_len:
        fail(f"data section is {data_len} bytes but the tensors cover only {pos} "
             f"(trailing bytes)")
    if pos > data_len:
        fail(f"data section is {data_len} bytes, shorter than the {pos} bytes the "
             f"offsets need (truncated file?)")
    return entries, metadata, data_len


def _check_entry(name, info, fail):
    """Validate one tensor entry of the header; returns (name, dtype, shape, begin, end)."""
    if not isinstance(info, dict):
        fail(f"tensor {name!r:.80}: entry must be an object, got {type(info).__name__}")
    if info.keys() != _ENTRY_KEYS:
        missing = [k for k in _ENTRY_FIELDS if k not in info]
        extra = sorted(k for k in info if k not in _ENTRY_FIELDS)
        fail(f"tensor {name!r:.80}: entry must have exactly the fields dtype, shape, "
             f"data_offsets (missing {missing}, unexpected {names_list(extra, 5)})")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    spec = _DTYPES.get(dtype) if type(dtype) is str else None
    if spec is None:
        fail(f"tensor {name!r:.80}: unknown or unsupported dtype {dtype!r:.80} "
             f"(supported: {_WRITABLE} BF16)")
    # JSON gives exact ints (type() is int: no bool).
    if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
        fail(f"tensor {name!r:.80}: shape must be a list of non-negative ints, got {shape!r:.200}")
    if len(shape) > _MAX_NDIM:
        fail(f"tensor {name!r:.80}: {len(shape)} dims, more than NumPy's {_MAX_NDIM}")
    if (type(offsets) is not list or len(offsets) != 2
            or type(offsets[0]) is not int or type(offsets[1]) is not int):
        fail(f"tensor {name!r:.80}: data_offsets must be a list of two ints, got {offsets!r:.200}")
    begin, end = offsets
    if not 0 <= begin <= end:
        fail(f"tensor {name!r:.80}: data_offsets [{begin}, {end}] must satisfy 0 <= begin <= end")
    # Python ints, stopping as soon as the size passes 2**64 (so a hostile
    # shape cannot make this slow; no file can hold that much anyway).
    nbytes = 0 if 0 in shape else spec[0].itemsize
    for d in shape:
        nbytes *= d
        if nbytes > _MAX_BYTES:
            fail(f"tensor {name!r:.80}: shape {shape!r:.200} of {dtype} needs more than 2**64 "
                 f"bytes")
    if end - begin != nbytes:
        fail(f"tensor {name!r:.80}: data_offsets [{begin}, {end}] span {end - begin} bytes but "
             f"shape {shape!r:.200} of {dtype} needs {nbytes}")
    if nbytes == 0:
        try:   # zero elements, yet the shape must still be one NumPy can hold
            np.empty(shape, spec[0])
        except (ValueError, OverflowError) as e:
            fail(f"tensor {name!r:.80}: NumPy cannot represent shape {shape!r:.200} ({e})")
    return name, dtype, tuple(shape), begin, end


def _to_array(buf, dtype, shape, name, fail):
    """The NumPy array (native byte order, owning its memory) for the raw bytes."""
    le = _DTYPES[dtype][0]
    if dtype == "BF16":   # bfloat16 = upper 16 bits of a float32
        arr = buf.view(le).astype(np.uint32)
        arr <<= 16
        arr = arr.view(np.float32)
    elif dtype == "BOOL":
        if buf.size and buf.max() > 1:
            fail(f"tensor {name!r:.80}: BOOL data holds a byte other than 0 or 1")
        arr = buf.view(np.bool_)
    else:
        arr = buf.view(le)
        if not le.isnative:
            arr = arr.astype(le.newbyteorder("="))
    return arr.reshape(shape)


def load_with_metadata(path, with_data=True):
    """(tensors, metadata) of the safetensors file at path, read once
    (tensors None when not with_data); errors as load_file."""
    where = os.fspath(path)
    with open(path, "rb", buffering=0) as f:
        entries, metadata, data_len = _parse_header(f, where)

        def fail(msg):
            raise CheckpointError(f"{where}: {msg}")

        if not with_data:
            return None, dict(metadata)
        arrays = {}
        for name, dtype, shape, begin, end in sorted(entries, key=lambda e: (e[3], e[4])):
            buf = np.empty(end - begin, np.uint8)
            view, got = memoryview(buf), 0
            while got < buf.size:
                k = f.readinto(view[got:])
                if not k:
                    fail(f"file ended while reading tensor {name!r:.80} (truncated while "
                         f"being read?)")
                got += k
            arrays[name] = _to_array(buf, dtype, shape, name, fail)
        if f.read(1):
            fail("file grew while being read")
    return {e[0]: arrays[e[0]] for e in entries}, dict(metadata)


def load_file(path) -> dict:
    """Read a safetensors file: {name: numpy array}, in the order the header
    lists them. Each array is a fresh, writable, C-contiguous array owning its
    memory, in native byte order; BF16 tensors come back as float32. The
    file is validated completely first (see the module docstring): any
    malformed content raises CheckpointError (a ValueError); failing to open
    the file raises OSError."""
    return load_with_metadata(path)[0]


def load_metadata(path) -> dict:
    """The "__metadata__" of a safetensors file as a {str: str} dict ({} when
    absent). The header is validated completely and against the file size
    (CheckpointError otherwise); the tensor bytes are not read, so problems
    only they show (a BOOL byte other than 0/1) are found by load_file."""
    return load_with_metadata(path, with_data=False)[1]
