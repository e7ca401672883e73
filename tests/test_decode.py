"""Greedy and beam decoding over the KV cache (pytransformer.decode)."""
import numpy as np
import pytest

import pytransformer as pt
from pytransformer import decode, nn, no_grad
from tests.test_train import BOS, EOS, L, _batch, _model, _step
from pytransformer import optim


@pytest.fixture(scope="module")
def trained():
    model = _model()
    opt = optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    rng = np.random.default_rng(0)
    for _ in range(150):
        _step(model, opt, *_batch(rng, 64))
    return model.eval()


def _untrained(norm_first, seed=0):
    pt.manual_seed(seed)
    cfg = nn.Seq2SeqConfig(17, 19, d_model=16, nhead=4, num_encoder_layers=2,
                           num_decoder_layers=2, dim_feedforward=24, dropout=0.0, max_len=12,
                           norm_first=norm_first)
    return nn.Seq2SeqTransformer(cfg).eval()


@pytest.mark.parametrize("norm_first", [False, True])
def test_cached_step_logits_equal_full_decoder(norm_first):
    """Each cached step gives the logits the full decoder gives at that
    position (same prefix), including with source padding."""
    model = _untrained(norm_first)
    rng = np.random.default_rng(1)
    src = rng.integers(3, 17, (3, 7))
    src[0, 5:] = 0
    tgt = np.concatenate([np.full((3, 1), BOS), rng.integers(3, 19, (3, 8))], 1)
    with no_grad():
        memory, pad = model.encode(src)
        full = model.decode(tgt, memory, pad).data                     # (B, T, V)
        cache = decode.KVCache(model, memory, pad, max_len=12)
        for t in range(tgt.shape[1]):
            step = decode.step_logits(model, cache, tgt[:, t])
            np.testing.assert_allclose(step, full[:, t], rtol=1e-4, atol=1e-5,
                                       err_msg=f"position {t}")


def test_greedy_with_and_without_cache_agree():
    model = _untrained(False, seed=3)
    src = np.random.default_rng(2).integers(3, 17, (4, 6))
    a = decode.greedy(model, src, max_len=10)
    b = decode.greedy(model, src, max_len=10, use_cache=False)
    assert len(a) == 4
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_trained_model_decodes_reversal(trained):
    src, tgt = _batch(np.random.default_rng(5), 50)
    out = decode.greedy(trained, src, max_len=L + 2, bos=BOS, eos=EOS)
    for o, t in zip(out, tgt):
        np.testing.assert_array_equal(o, t[1:-1])
    hyps = decode.beam_search(trained, src[:5], beam=3, max_len=L + 2)
    for h, t in zip(hyps, tgt[:5]):
        assert 1 <= len(h) <= 3
        assert [s for _, s in h] == sorted((s for _, s in h), reverse=True)
        np.testing.assert_array_equal(h[0][0], t[1:-1])


def test_beam_of_one_is_greedy():
    model = _untrained(True, seed=4)
    src = np.random.default_rng(3).integers(3, 17, (3, 5))
    g = decode.greedy(model, src, max_len=9)
    b = decode.beam_search(model, src, beam=1, max_len=9, length_penalty=0.0)
    for x, (hyps) in zip(g, b):
        np.testing.assert_array_equal(hyps[0][0], x)


def test_decode_errors():
    model = _untrained(False)
    with pytest.raises(ValueError, match="max_len"):
        decode.greedy(model, np.ones((1, 3), int), max_len=13)
    with pytest.raises(ValueError, match="src"):
        decode.greedy(model, np.ones(3, int))
    with pytest.raises(ValueError, match="beam"):
        decode.beam_search(model, np.ones((1, 3), int), beam=0)
    assert model.training is False
