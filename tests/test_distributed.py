"""Data-parallel building blocks that need no MPI: grad-ready hooks, the
dropout masks of a batch shard, the shard arithmetic and the one-process
behaviour of pytransformer.distributed."""
import numpy as np
import pytest

import pytransformer as pt
from pytransformer import _random, distributed, nn
from pytransformer.autograd import Parameter, tensor
from pytransformer.nn import functional as F


def test_grad_ready_hook_fires_once_after_the_last_contribution():
    """A leaf used by several nodes: the hook runs once per backward, when
    .grad already holds every contribution, and before the nodes that come
    later in the pass (the leaf used only early in the forward)."""
    w = Parameter(np.array([2.0, 3.0], np.float32))
    v = Parameter(np.array([1.0, -1.0], np.float32))
    seen = []
    w.register_grad_ready_hook(lambda t: seen.append(("w", t.grad.copy(), v.grad)))
    handle = v.register_grad_ready_hook(lambda t: seen.append(("v", t.grad.copy(), None)))
    x = tensor([1.0, 1.0])
    h = x * v                       # v: first in the forward, last in backward
    y = (h * w + h * w * w).sum()   # w used three times
    y.backward()
    assert [s[0] for s in seen] == ["w", "v"]
    np.testing.assert_allclose(seen[0][1], w.grad)
    assert seen[0][2] is None       # v's gradient not computed yet when w's was final
    np.testing.assert_allclose(seen[1][1], v.grad)
    np.testing.assert_allclose(w.grad, [1 + 2 * 2, -1 - 2 * 3])
    handle.remove()
    seen.clear()
    (x * v * w).sum().backward()
    assert [s[0] for s in seen] == ["w"]


def test_grad_ready_hook_only_on_leaves_that_require_grad():
    with pytest.raises(RuntimeError, match="only a leaf tensor that requires grad"):
        tensor([1.0]).register_grad_ready_hook(print)
    w = Parameter(np.ones(2, np.float32))
    with pytest.raises(RuntimeError, match="only a leaf"):
        (w * 2).register_grad_ready_hook(print)


def test_dropout_on_a_shard_is_the_whole_batch_mask_of_its_rows():
    """batch_shard(first, rows): F.dropout on the rows gives exactly the
    rows of F.dropout on the whole batch, for every shard of a 7-row batch
    over 1..4 ranks, (B, T, C) and (B, H, L, S) inputs alike."""
    rng = np.random.default_rng(0)
    for shape in ((7, 5, 3), (7, 2, 4, 4)):
        x = rng.standard_normal(shape).astype(np.float32)
        pt.manual_seed(11)
        whole = F.dropout(tensor(x), 0.3, True).data
        for n in (1, 2, 3, 4):
            for r in range(n):
                first, rows = distributed.shard(7, r, n)
                pt.manual_seed(11)
                with _random.batch_shard(first, rows):
                    part = F.dropout(tensor(x[first:first + rows]), 0.3, True).data
                np.testing.assert_array_equal(part, whole[first:first + rows])
    pt.manual_seed(11)
    with _random.batch_shard(0, 3), pytest.raises(ValueError, match="first axis"):
        F.dropout(tensor(np.ones((4, 3), np.float32)), 0.3, True)


def test_shard_covers_the_batch_in_order():
    """Contiguous shards in rank order that cover the batch; a batch with
    fewer rows than ranks leaves some ranks none."""
    for b in (1, 2, 5, 16, 17):
        for n in (1, 2, 3):
            parts = [distributed.shard(b, r, n) for r in range(n)]
            assert parts[0][0] == 0
            assert all(f + k == g for (f, k), (g, _) in zip(parts, parts[1:]))
            assert sum(k for _, k in parts) == b and min(k for _, k in parts) >= b // n
    assert [distributed.shard(1, r, 2) for r in range(2)] == [(0, 0), (0, 1)]


def test_one_process_world():
    """Without mpirun: one rank, and DataParallel only forwards."""
    assert distributed.init() == 1
    assert (distributed.rank(), distributed.world_size(), distributed.is_distributed()) == (0, 1,
                                                                                            False)
    lin = nn.Linear(3, 2)
    dp = distributed.DataParallel(lin)
    x = tensor(np.ones((4, 3), np.float32))
    np.testing.assert_array_equal(dp(x).data, lin(x).data)
    assert list(dp.parameters()) == list(lin.parameters())
    dp(x).sum().backward()
    g = lin.weight.grad.copy()
    assert dp.finish() == 0.0
    np.testing.assert_array_equal(lin.weight.grad, g)
    with pytest.raises(ValueError, match="reduce: expected 'mean' or 'sum'"):
        distributed.DataParallel(lin, reduce="max")


def test_validation_sums_of_shards_give_the_whole_scores(shipped):
    """train_translator's data-parallel validation adds up
    _validation_sums over contiguous shards in rank order: the same scores
    as validation_scores on all the pairs (the shipped model, 24 pairs)."""
    from pytransformer.data import make_splits
    from pytransformer.translator import _scores, _validation_sums, validation_scores

    pairs = make_splits(seed=0, n_train=50).valid[:24]
    whole = validation_scores(shipped, pairs)
    parts = [_validation_sums(shipped, pairs[f:f + k], 256)
             for f, k in (distributed.shard(24, r, 3) for r in range(3))]
    joined = _scores(sum(p[0] for p in parts), sum(p[1] for p in parts),
                     sum(p[2] for p in parts), [h for p in parts for h in p[3]], pairs)
    assert whole["exact_match"] > 0.5       # so that a misordered join would show
    assert joined["exact_match"] == whole["exact_match"] and joined["bleu"] == whole["bleu"]
    assert joined["accuracy"] == whole["accuracy"]
    assert abs(joined["loss"] - whole["loss"]) < 1e-5 * whole["loss"]
