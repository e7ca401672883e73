"""Data-parallel training over MPI (mpi4py): one process per rank, each
computing its shard of every global batch, gradients averaged with
all-reduces that overlap the backward pass.

    import pytransformer.distributed as dist
    dist.init()                                  # the MPI world, or one process
    model = dist.DataParallel(MyModel())         # rank 0's weights everywhere
    opt = pytransformer.optim.AdamW(model.parameters(), lr=1e-3)
    for xb, yb in global_batches:
        first, rows = dist.shard(len(xb))        # this rank's rows
        loss = loss_fn(model(xb[first:first + rows]), yb[first:first + rows])
        opt.zero_grad()
        loss.backward()                          # buckets all-reduce as they fill
        model.finish()                           # wait: .grad is the mean of all ranks
        opt.step()

Run it with ``mpirun -np N python script.py``. Without mpirun (or with
one rank) everything here still works: world_size() is 1 and DataParallel
only forwards to the module.

How the gradients travel: the parameters are cut into buckets of about
`bucket_mb` megabytes, last layers first (their gradients are ready first
in backward). A grad-ready hook on each parameter (see
Tensor.register_grad_ready_hook) counts down its bucket; when the last
gradient of a bucket is final, its non-blocking ``Iallreduce`` starts while
backward goes on with the earlier layers. ``finish()`` starts whatever has
not started, waits (with a timeout: a rank that stopped answering is an
error, not a hang) and writes the summed or averaged gradients back into
``.grad``. Since every rank then holds the same gradients, global gradient
norm clipping (optim.clip_grad_norm_) needs no further communication: each
rank computes the same norm of the same averaged gradients.
"""
import contextlib
import os
import sys
import time
import zlib

import numpy as np

__all__ = ["DataParallel", "DistributedError", "abort_on_error", "barrier", "comm", "init",
           "is_distributed", "launch_rank", "local_size", "rank", "shard", "world_size"]

# mpirun/mpiexec launchers set one of these in every process they start
_LAUNCH_VARS = ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK", "MPI_LOCALNRANKS")

_world = {"comm": None, "rank": 0, "size": 1, "ready": False}


class DistributedError(RuntimeError):
    """A collective that could not complete (a rank stopped answering) or
    ranks that disagree (their parameters differ)."""


def init(force=False):
    """Detect the MPI world and return its size. Under mpirun (a launcher's
    environment variables are set) or with `force`, mpi4py's COMM_WORLD is
    used; otherwise this is one process and mpi4py is not imported. Calling
    it again returns the same world. RuntimeError (one line) when mpirun
    started several processes but mpi4py cannot be imported. With several
    ranks, an exception that nobody catches ends the whole job: after its
    traceback, the rank prints "rank R of N failed: ..." and calls
    MPI_Abort (the other ranks would otherwise wait for it)."""
    if _world["ready"]:
        return _world["size"]
    launched = any(v in os.environ for v in _LAUNCH_VARS)
    if launched or force:
        try:
            from mpi4py import MPI
        except ImportError:
            n = os.environ.get("OMPI_COMM_WORLD_SIZE") or os.environ.get("PMI_SIZE") or "?"
            if force or n not in ("1", "?"):
                raise RuntimeError(f"distributed: started as one of {n} MPI processes but "
                                   f"mpi4py is not installed (pip install "
                                   f"'pytransformer-cpu[mpi]')") from None
        else:
            comm_world = MPI.COMM_WORLD
            _world.update(comm=comm_world, rank=comm_world.Get_rank(),
                          size=comm_world.Get_size())
            if _world["size"] > 1:
                _abort_on_uncaught()
    _world["ready"] = True
    return _world["size"]


def _abort_on_uncaught():
    """Chain sys.excepthook: the usual traceback, then abort()."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        if issubclass(kind, KeyboardInterrupt):
            return
        text = str(value).splitlines()[0] if str(value) else ""
        abort(f"rank {rank()} of {world_size()} failed: {kind.__name__}: {text}")
    sys.excepthook = hook


def rank():
    """This process's rank (0 without MPI)."""
    return _world["rank"]


def launch_rank():
    """This process's rank as an MPI launcher (mpirun) announced it in the
    environment, 0 when none did: known before init() and without mpi4py,
    so that an error every rank meets alike is printed by rank 0 only."""
    for var in ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"):
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 0


def world_size():
    """The number of ranks (1 without MPI)."""
    return _world["size"]


def local_size():
    """The number of ranks on this machine (1 without MPI). Collective:
    every rank must call it."""
    if not is_distributed():
        return 1
    from mpi4py import MPI
    node = comm().Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.Get_size()
    finally:
        node.Free()


def is_distributed():
    """True when init() found more than one rank."""
    return _world["size"] > 1


def comm():
    """The mpi4py communicator (COMM_WORLD), or None without MPI."""
    return _world["comm"]


def shard(global_rows, rank_=None, size=None):
    """(first, rows): the contiguous rows of a global batch of `global_rows`
    that `rank_` (default: this rank) computes out of `size` ranks: rank r
    takes rows [r * B // N, (r + 1) * B // N), none when the batch has fewer
    rows than there are ranks (such a rank contributes zero gradients)."""
    r = rank() if rank_ is None else rank_
    n = world_size() if size is None else size
    first = r * global_rows // n
    return first, (r + 1) * global_rows // n - first


def _wait(requests, timeout, what):
    """Wait for mpi4py requests, polling (so Python signal handlers run);
    DistributedError naming this rank after `timeout` seconds (None: no
    limit)."""
    from mpi4py import MPI
    if not requests:
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.0
    while not MPI.Request.Testall(requests):
        if deadline is not None and time.monotonic() > deadline:
            raise DistributedError(f"rank {rank()}: {what} did not complete within "
                                   f"{timeout:g} s: another rank has stopped or is stuck")
        time.sleep(pause)
        pause = min(0.001 if pause == 0 else pause * 2, 0.02)


def barrier(timeout=None):
    """Wait until every rank reaches this point (polling: Ctrl-C and other
    signals are handled while waiting). DistributedError after `timeout`
    seconds (None: no limit). Nothing to do with one process."""
    if not is_distributed():
        return
    _wait([comm().Ibarrier()], timeout, "a barrier")


def abort(message, code=1):
    """Print `message` (one line) on stderr and end every rank of the job
    (MPI_Abort); with one process, exit with `code`."""
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()
    if is_distributed():
        comm().Abort(code)
    sys.exit(code)


@contextlib.contextmanager
def abort_on_error(prefix="pytransformer", passthrough=()):
    """Inside, an exception on one rank ends the whole job: the rank prints
    "<prefix>: rank R of N failed: <error>" and calls MPI_Abort, so the
    other ranks never wait for it. KeyboardInterrupt, SystemExit and the
    exception classes in `passthrough` (errors every rank raises alike,
    such as a bad setting) propagate; so does everything with one process."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit) + tuple(passthrough):
        raise
    except BaseException as e:  # noqa: B902 - every error must end the job
        if not is_distributed():
            raise
        text = str(e).splitlines()[0] if str(e) else ""
        abort(f"{prefix}: rank {rank()} of {world_size()} failed: {type(e).__name__}: {text}")


class _Bucket:
    """Parameters whose gradients are all-reduced together in one flat buffer."""

    def __init__(self, params, dtype):
        self.params = params
        self.sizes = [p.data.size for p in params]
        self.buffer = np.zeros(sum(self.sizes), dtype)
        self.remaining = len(params)
        self.request = None


class DataParallel:
    """Wrap `module` for data-parallel training: calling the wrapper calls
    the module; ``parameters()``, ``train()``, ``eval()``, ``state_dict()``
    and other attributes are the module's.

    ``DataParallel(module, bucket_mb=2.0, reduce="mean", check_every=100,
    timeout=300.0)``: at construction the parameters are broadcast from rank
    0. After each ``loss.backward()``, ``finish()`` completes the gradient
    all-reduce: ``.grad`` then holds the mean over ranks (reduce="mean") or
    the sum (reduce="sum": for losses each rank has already weighted, as the
    Trainer does for token-weighted cross-entropy). A parameter without a
    gradient on a rank counts as zeros there; after finish() every parameter
    requiring grad has one. Every `check_every` finish() calls (0: never) the
    ranks compare a checksum of their parameters (DistributedError naming
    the ranks that differ from rank 0). `timeout` bounds each wait for the
    other ranks (seconds; DistributedError naming this rank). Inside
    ``no_sync()``, backward only accumulates (gradient accumulation); the
    next backward outside it all-reduces the total."""

    def __init__(self, module, bucket_mb=2.0, reduce="mean", check_every=100, timeout=300.0):
        if reduce not in ("mean", "sum"):
            raise ValueError(f"reduce: expected 'mean' or 'sum', got {reduce!r:.40}")
        if not bucket_mb > 0:
            raise ValueError(f"bucket_mb: expected a positive number, got {bucket_mb!r:.40}")
        init()
        self.__dict__.update(module=module, reduce=reduce, check_every=int(check_every),
                             timeout=timeout, finishes=0, sync=True, wait_seconds=0.0,
                             buckets=[], handles=[])
        params = [p for p in module.parameters() if p.requires_grad]
        if not is_distributed():
            return
        self.broadcast_parameters()
        limit = int(bucket_mb * 2**20)
        current, nbytes, dtype = [], 0, None
        for p in reversed(params):          # the last layers' gradients are ready first
            if current and (p.data.dtype != dtype or nbytes >= limit):
                self.buckets.append(_Bucket(current, dtype))
                current, nbytes = [], 0
            current.append(p)
            nbytes += p.data.nbytes
            dtype = p.data.dtype
        if current:
            self.buckets.append(_Bucket(current, dtype))
        self.__dict__["_bucket_of"] = {id(p): b for b in self.buckets for p in b.params}
        self.__dict__["handles"] = [p.register_grad_ready_hook(self._ready) for p in params]

    # --- the module ----------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.__dict__["module"], name)

    def __setattr__(self, name, value):
        if name in self.__dict__:
            self.__dict__[name] = value
        else:
            setattr(self.module, name, value)

    # --- gradients -----------------------------------------------------------
    @contextlib.contextmanager
    def no_sync(self):
        """Inside: backward accumulates into .grad without all-reducing."""
        before, self.__dict__["sync"] = self.sync, False
        try:
            yield
        finally:
            self.__dict__["sync"] = before

    def _ready(self, p):
        if not self.sync:
            return
        bucket = self._bucket_of[id(p)]
        bucket.remaining -= 1
        if bucket.remaining == 0 and bucket.request is None:
            self._start(bucket)
        from mpi4py import MPI          # drive the progress of the ones under way
        started = [b.request for b in self.buckets if b.request is not None]
        MPI.Request.Testall(started)

    def _start(self, bucket):
        from mpi4py import MPI
        offset = 0
        for p, n in zip(bucket.params, bucket.sizes):
            view = bucket.buffer[offset:offset + n]
            if p.grad is None:
                view[:] = 0
            else:
                view[:] = np.asarray(p.grad).reshape(-1)
            offset += n
        bucket.request = comm().Iallreduce(MPI.IN_PLACE, bucket.buffer, op=MPI.SUM)

    def finish(self):
        """Complete this step's gradient all-reduce (start the buckets not
        started yet, wait, write .grad back); returns the seconds spent
        waiting (communication not hidden by backward). With one process
        it does nothing and returns 0.0."""
        if not is_distributed():
            return 0.0
        self.__dict__["finishes"] = self.finishes + 1
        if self.check_every and self.finishes % self.check_every == 0:
            self.check_parameters()
        t0 = time.perf_counter()
        for bucket in self.buckets:
            if bucket.request is None:
                self._start(bucket)
        _wait([b.request for b in self.buckets], self.timeout, "the gradient all-reduce")
        waited = time.perf_counter() - t0
        scale = 1.0 / world_size() if self.reduce == "mean" else None
        for bucket in self.buckets:
            if scale is not None:
                bucket.buffer *= bucket.buffer.dtype.type(scale)
            offset = 0
            for p, n in zip(bucket.params, bucket.sizes):
                g = bucket.buffer[offset:offset + n].reshape(p.data.shape)
                if p.grad is None:
                    p.grad = g.copy()
                else:
                    p.grad[...] = g
                offset += n
            bucket.request, bucket.remaining = None, len(bucket.params)
        self.__dict__["wait_seconds"] = waited
        return waited

    # --- parameters ------------------------------------------------------------
    def broadcast_parameters(self):
        """Overwrite every rank's parameters with rank 0's."""
        if not is_distributed():
            return
        for p in self.module.parameters():
            buf = np.ascontiguousarray(p.data)
            _wait([comm().Ibcast(buf, root=0)], self.timeout, "the parameter broadcast")
            if buf is not p.data:
                p.data[...] = buf
            vc = getattr(p, "_vc", None)
            if vc is not None:            # changed in place: a new version
                vc[0] += 1

    def checksum(self):
        """A CRC-32 of this rank's parameters (their bytes, in order)."""
        crc = 0
        for p in self.module.parameters():
            crc = zlib.crc32(np.ascontiguousarray(p.data).data, crc)
        return crc

    def check_parameters(self):
        """Compare the parameters' checksums across ranks: DistributedError
        naming the ranks whose parameters differ from rank 0's."""
        if not is_distributed():
            return
        mine = np.array([self.checksum()], np.int64)
        every = np.zeros(world_size(), np.int64)
        _wait([comm().Iallgather(mine, every)], self.timeout, "the parameter check")
        bad = [r for r in range(world_size()) if every[r] != every[0]]
        if bad:
            raise DistributedError(f"parameters differ across ranks: rank{'s' if len(bad) > 1 else ''} "
                                   f"{', '.join(map(str, bad))} disagree{'s' if len(bad) == 1 else ''} "
                                   f"with rank 0")
