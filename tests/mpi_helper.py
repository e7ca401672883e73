"""What tests/test_distributed_mpi.py runs under ``mpirun -np 2``.

    python tests/mpi_helper.py train [raise|kill FAIL_RANK FAIL_STEP] -- ARGS...
        `pytransformer train ARGS...`; with a failure, rank FAIL_RANK raises
        RuntimeError (raise) or kills itself with SIGKILL (kill) at the
        start of train step FAIL_STEP (1-based).
    python tests/mpi_helper.py api
        the Python API on a toy model; prints "api ok" on each rank when
        every check passed (an AssertionError otherwise).
    python tests/mpi_helper.py api-raise
        rank 1 raises ValueError (uncaught) while rank 0 waits in finish().
    python tests/mpi_helper.py api-hang
        rank 1 sleeps (alive, stuck) while rank 0 waits in finish() with a
        3 s timeout.
"""
import sys

import numpy as np


def train(argv):
    fail = None
    if argv[0] != "--":
        fail, argv = (argv[0], int(argv[1]), int(argv[2])), argv[3:]
    argv = argv[1:]
    if fail is not None:
        import os
        import signal
        from pytransformer import distributed, training
        original = training.Trainer.train_step

        def train_step(self, *batch):
            if distributed.rank() == fail[1] and self.step + 1 == fail[2]:
                if fail[0] == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                raise RuntimeError(f"injected failure at step {fail[2]}")
            return original(self, *batch)
        training.Trainer.train_step = train_step
    from pytransformer import cli
    sys.argv = ["pytransformer", "train"] + argv
    return cli.program()


def api():
    import pytransformer as pt
    from pytransformer import distributed as dist, nn, optim
    from pytransformer.autograd import tensor

    assert dist.init() == 2 and dist.is_distributed()
    r = dist.rank()
    pt.manual_seed(1 + r)                   # different weights on each rank...

    def build():
        return nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                             nn.Linear(32, 3))
    model = build()
    # ...until DataParallel broadcasts rank 0's; buckets of ~512 bytes: three
    dp = dist.DataParallel(model, bucket_mb=512 / 2**20)
    assert len(dp.buckets) >= 3, len(dp.buckets)
    assert not any(k.startswith("_bucket") for k in vars(model)), "the wrapper's state stays its own"
    ref = build()                           # one process on the global batch
    for p, q in zip(ref.parameters(), model.parameters()):
        p.data[...] = q.data
    rng = np.random.default_rng(5)          # the same global batches on every rank
    opt = optim.SGD(dp.parameters(), lr=0.1)
    ref_opt = optim.SGD(ref.parameters(), lr=0.1)
    for step in range(5):
        x = rng.standard_normal((8, 6)).astype(np.float32)
        y = rng.standard_normal((8, 3)).astype(np.float32)
        first, rows = dist.shard(len(x))
        mine = slice(first, first + rows)
        loss = ((dp(tensor(x[mine])) - tensor(y[mine])) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        started = sum(b.request is not None for b in dp.buckets)
        assert started == len(dp.buckets), "every bucket starts during backward"
        dp.finish()
        ref_loss = ((ref(tensor(x)) - tensor(y)) ** 2).mean()
        ref_opt.zero_grad()
        ref_loss.backward()
        for p, q in zip(model.parameters(), ref.parameters()):
            np.testing.assert_allclose(p.grad, q.grad, rtol=1e-5, atol=1e-6)
        opt.step()
        ref_opt.step()
    # gradient accumulation: the rank's rows in two halves, the first under
    # no_sync (nothing all-reduced), the second all-reducing the total
    x = rng.standard_normal((8, 6)).astype(np.float32)
    y = rng.standard_normal((8, 3)).astype(np.float32)
    first, rows = dist.shard(len(x))
    halves = (slice(first, first + rows // 2), slice(first + rows // 2, first + rows))
    opt.zero_grad()
    with dp.no_sync():
        (((dp(tensor(x[halves[0]])) - tensor(y[halves[0]])) ** 2).mean() * 0.5).backward()
    assert all(b.request is None for b in dp.buckets), "no_sync started an all-reduce"
    (((dp(tensor(x[halves[1]])) - tensor(y[halves[1]])) ** 2).mean() * 0.5).backward()
    dp.finish()
    ref_opt.zero_grad()
    ((ref(tensor(x)) - tensor(y)) ** 2).mean().backward()
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-5, atol=1e-6)
    dp.check_parameters()
    # float64, reduce="sum" of losses weighted by their share of the batch:
    # float64 buckets, the gradients of the global batch to 1e-12
    model64, ref64 = build().double(), build().double()
    dp64 = dist.DataParallel(model64, bucket_mb=512 / 2**20, reduce="sum")
    assert {b.buffer.dtype for b in dp64.buckets} == {np.dtype(np.float64)}
    for p, q in zip(ref64.parameters(), model64.parameters()):
        p.data[...] = q.data
    x, y = rng.standard_normal((8, 6)), rng.standard_normal((8, 3))
    first, rows = dist.shard(len(x))
    mine = slice(first, first + rows)
    for m in (model64, ref64):
        for p in m.parameters():
            p.grad = None
    (((dp64(tensor(x[mine])) - tensor(y[mine])) ** 2).sum() / len(x)).backward()
    dp64.finish()
    (((ref64(tensor(x)) - tensor(y)) ** 2).sum() / len(x)).backward()
    for p, q in zip(model64.parameters(), ref64.parameters()):
        assert p.grad.dtype == np.float64
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-12, atol=1e-15)
    if r == 1:                              # a rank whose weights drifted: named
        model[0].weight.data[0, 0] += 1.0
    try:
        dp.check_parameters()
    except dist.DistributedError as e:
        assert str(e) == "parameters differ across ranks: rank 1 disagrees with rank 0", e
    else:
        raise AssertionError("differing parameters were not detected")
    print(f"api ok {r}", flush=True)


def api_raise():
    from pytransformer import distributed as dist, nn
    from pytransformer.autograd import tensor

    dist.init()
    model = dist.DataParallel(nn.Linear(3, 1))
    if dist.rank() == 1:
        raise ValueError("injected before backward")
    model(tensor(np.ones((2, 3), np.float32))).sum().backward()
    model.finish()
    print("rank 0 finished without rank 1", flush=True)


def api_hang():
    """Rank 1 stays alive but never joins the all-reduce; rank 0's bounded
    wait (3 s) raises DistributedError, which ends the job."""
    import time
    from pytransformer import distributed as dist, nn
    from pytransformer.autograd import tensor

    dist.init()
    model = dist.DataParallel(nn.Linear(3, 1), timeout=3.0)
    if dist.rank() == 1:
        time.sleep(600)
    model(tensor(np.ones((2, 3), np.float32))).sum().backward()
    model.finish()
    print("rank 0 finished without rank 1", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "train":
        sys.exit(train(sys.argv[2:]))
    {"api-raise": api_raise, "api-hang": api_hang}.get(sys.argv[1], api)()
