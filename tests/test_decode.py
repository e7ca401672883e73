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
        cache = model.init_cache(memory, pad, max_len=12)
        for t in range(tgt.shape[1]):
            step = model.decode_step(tgt[:, t], cache)
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


# --- batched beam search -------------------------------------------------------

def _varied_batch(rng, B=7, low=2, high=8, vocab=17):
    """Source rows of different lengths (each ending in EOS), right-padded."""
    lengths = rng.integers(low, high + 1, B)
    lengths[0] = high                                 # one row needs no padding
    src = np.zeros((B, high + 1), dtype=np.int64)
    for i, n in enumerate(lengths):
        src[i, :n] = rng.integers(3, vocab, n)
        src[i, n] = EOS
    return src, [src[i, :n + 1] for i, n in enumerate(lengths)]


def _assert_same_hyps(got, want, what):
    """Same hypotheses (ids exactly) in the same order; scores equal up to
    float32 rounding (batched and single-sentence GEMMs round differently)."""
    assert len(got) == len(want), what
    for j, ((ids, s), (ids_w, s_w)) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(ids, ids_w, err_msg=f"{what}, hypothesis {j}")
        assert s == pytest.approx(s_w, rel=1e-5, abs=1e-5), f"{what}, hypothesis {j}"


def _eos_prone(seed, norm_first=False, eos_bias=0.0):
    """A random model, its EOS logit shifted by eos_bias (seeds and shifts
    below picked so hypotheses end at various lengths, some at max_len)."""
    model = _untrained(norm_first, seed)
    model.generator.bias.data[EOS] += eos_bias
    return model


@pytest.mark.parametrize("norm_first,beam,alpha,seed,eos_bias", [
    (False, 3, 0.6, 7, 0.0), (True, 4, 1.0, 5, -0.25), (False, 2, 0.0, 5, -0.25)])
def test_batched_beam_equals_one_sentence_at_a_time(norm_first, beam, alpha, seed, eos_bias):
    model = _eos_prone(seed, norm_first, eos_bias)
    src, rows = _varied_batch(np.random.default_rng(7))
    got = decode.beam_search(model, src, beam=beam, max_len=10, length_penalty=alpha)
    lengths = []
    for i, row in enumerate(rows):
        alone = decode.beam_search(model, row[None], beam=beam, max_len=10,
                                   length_penalty=alpha)
        assert len(alone) == 1
        _assert_same_hyps(got[i], alone[0], f"sentence {i}")
        assert [s for _, s in got[i]] == sorted((s for _, s in got[i]), reverse=True)
        lengths += [len(ids) for ids, _ in got[i]]
    assert min(lengths) < 9 and max(lengths) == 10      # some end early, some at max_len


def test_batched_beam_cached_equals_uncached():
    model = _eos_prone(5, True, -0.25)
    src, _ = _varied_batch(np.random.default_rng(8), B=5)
    a = decode.beam_search(model, src, beam=3, max_len=9)
    b = decode.beam_search(model, src, beam=3, max_len=9, use_cache=False)
    for i, (x, y) in enumerate(zip(a, b)):
        _assert_same_hyps(x, y, f"sentence {i}")


def test_batched_beam_of_one_is_greedy_with_padding():
    model = _eos_prone(5, False, 0.0)                  # greedy lengths 0, 1 and max_len
    src, _ = _varied_batch(np.random.default_rng(9), B=6)
    g = decode.greedy(model, src, max_len=11)
    b = decode.beam_search(model, src, beam=1, max_len=11, length_penalty=0.0)
    for i, (x, hyps) in enumerate(zip(g, b)):
        assert len(hyps) == 1
        np.testing.assert_array_equal(hyps[0][0], x, err_msg=f"sentence {i}")


def test_beam_never_generates_pad_or_bos():
    """Even when the model prefers them, pad (0) and BOS (1) never appear."""
    model = _untrained(False, seed=8)
    model.generator.bias.data[[0, BOS]] += 50.0
    src, _ = _varied_batch(np.random.default_rng(10), B=4)
    for hyps in decode.beam_search(model, src, beam=3, max_len=8):
        assert len(hyps) == 3
        for ids, score in hyps:
            assert 0 not in ids and BOS not in ids and np.isfinite(score)



def test_shipped_model_batched_beam_equals_per_sentence(shipped):
    """Beam 4 on test sentences of different lengths: the batch gives each
    sentence what decoding it alone gives, and Translator.translate(beam=4)
    returns the best hypotheses."""
    from pytransformer.data import make_splits
    test = make_splits(seed=0, n_train=0).test
    pairs = sorted(test[:40], key=lambda p: len(p.src))[::4]         # 10, short to long
    sentences = [p.source for p in pairs]
    assert len({len(p.src) for p in pairs}) >= 4
    src, _ = shipped.encode_sources(sentences)
    got = decode.beam_search(shipped.model, src, beam=4)
    for i, s in enumerate(sentences):
        one, _ = shipped.encode_sources([s])
        assert one.shape[1] == len(pairs[i].src) + 1                  # alone: no padding
        _assert_same_hyps(got[i], decode.beam_search(shipped.model, one, beam=4)[0], s)
    out = shipped.translate(sentences, beam=4)
    assert out == [" ".join(shipped.tgt_vocab.decode(h[0][0])) for h in got]
    assert sum(o == p.target for o, p in zip(out, pairs)) >= 8


# --- finished sentences leave the batch; scores; length penalties ---------------

def _teacher_forced_logp(model, src_row, ids, bos=BOS):
    """log-probabilities (float64) of BOS + ids under the full decoder, one
    sentence, padding and BOS excluded as decoding excludes them: (T, V)."""
    tgt = np.concatenate([[bos], ids]).astype(np.int64)[None]
    with no_grad():
        memory, pad = model.encode(src_row[None])
        logits = model.decode(tgt, memory, pad).data[0].astype(np.float64)
    logits[:, [model.config.pad_idx, bos]] = -np.inf
    m = logits.max(-1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))


def _counting_steps(model):
    """Record the batch size of every decode_step call in a list."""
    sizes, step = [], model.decode_step

    def counted(tokens, cache):
        sizes.append(len(tokens))
        assert cache.batch_size == len(tokens)
        return step(tokens, cache)
    model.decode_step = counted
    return sizes


def test_greedy_drops_finished_sentences_from_the_batch():
    """Every step decodes only the sentences without EOS yet: the step
    batch sizes are the counts of sentences still running, and the ids are
    those of decoding each sentence alone."""
    model = _eos_prone(5, False, 0.0)                  # greedy lengths 0, 1 and max_len
    src, rows = _varied_batch(np.random.default_rng(9), B=6)
    sizes = _counting_steps(model)
    got = decode.greedy(model, src, max_len=11)
    del model.decode_step
    lengths = np.array([len(g) for g in got])
    assert min(lengths) <= 1 and max(lengths) == 11
    running = [int(((lengths >= t) | (lengths == 11)).sum()) for t in range(11)]
    assert sizes == [r for r in running if r > 0]
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(got[i], decode.greedy(model, row[None], max_len=11)[0])
        np.testing.assert_array_equal(
            got[i], decode.greedy(model, src, max_len=11, use_cache=False)[i])


def test_greedy_scores_are_the_teacher_forced_log_probabilities():
    model = _eos_prone(5, False, 0.0)
    src, rows = _varied_batch(np.random.default_rng(9), B=6)
    plain = decode.greedy(model, src, max_len=11)
    hyps = decode.greedy(model, src, max_len=11, return_scores=True)
    uncached = decode.greedy(model, src, max_len=11, return_scores=True, use_cache=False)
    assert {len(h.ids) for h in hyps} >= {0, 11}
    for i, (h, ids) in enumerate(zip(hyps, plain)):
        assert isinstance(h, decode.Hypothesis)
        np.testing.assert_array_equal(h.ids, ids)
        ended = len(ids) < 11
        assert h.token_scores.dtype == np.float64 and len(h.token_scores) == len(ids) + ended
        logp = _teacher_forced_logp(model, rows[i], ids)
        want = logp[np.arange(len(h.token_scores)),
                    np.append(ids, EOS)[:len(h.token_scores)]]
        np.testing.assert_allclose(h.token_scores, want, rtol=1e-5, atol=1e-5,
                                   err_msg=f"sentence {i}")
        assert h.score == pytest.approx(h.token_scores.sum(), rel=1e-12)   # alpha 0: the sum
        np.testing.assert_allclose(uncached[i].token_scores, h.token_scores, rtol=1e-5,
                                   atol=1e-5)
        for kind, alpha in (("gnmt", 0.6), ("power", 1.0)):
            s = decode.greedy(model, rows[i][None], max_len=11, return_scores=True,
                              length_penalty=alpha, length_penalty_kind=kind)[0].score
            lp = decode.length_penalty(len(ids), ended, alpha, kind)
            if lp == 0:                                  # an empty hypothesis, "power"
                assert s == -np.inf
            else:
                assert s == pytest.approx(h.token_scores.sum() / lp, rel=1e-5)


def test_beam_of_one_scores_are_greedy_scores():
    model = _eos_prone(5, False, 0.0)
    src, _ = _varied_batch(np.random.default_rng(9), B=6)
    g = decode.greedy(model, src, max_len=11, return_scores=True)
    b = decode.beam_search(model, src, beam=1, max_len=11, length_penalty=0.0,
                           return_scores=True)
    for x, (y,) in zip(g, b):
        np.testing.assert_array_equal(x.ids, y.ids)
        np.testing.assert_allclose(y.token_scores, x.token_scores, rtol=1e-6, atol=1e-6)
        assert y.score == pytest.approx(x.score, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("kind,alpha", [("gnmt", 0.6), ("power", 0.5), ("power", 0.0)])
def test_beam_scores_are_token_log_probabilities_over_the_penalty(kind, alpha):
    """return_scores gives the default result's ids and scores, plus token
    scores that are the hypothesis' teacher-forced log-probabilities and
    whose sum over the penalty is the score."""
    model = _eos_prone(7, False, 0.0)
    src, rows = _varied_batch(np.random.default_rng(7))
    kw = dict(beam=3, max_len=10, length_penalty=alpha, length_penalty_kind=kind)
    plain = decode.beam_search(model, src, **kw)
    full = decode.beam_search(model, src, return_scores=True, **kw)
    ended_some = cut_some = False
    for i, (hyps, want) in enumerate(zip(full, plain)):
        assert [(tuple(h.ids), h.score) for h in hyps] == [(tuple(a), s) for a, s in want]
        for h in hyps:
            ended = len(h.token_scores) == len(h.ids) + 1
            assert ended or len(h.token_scores) == len(h.ids) == 10
            ended_some, cut_some = ended_some or ended, cut_some or not ended
            logp = _teacher_forced_logp(model, rows[i], h.ids)
            toks = np.append(h.ids, EOS)[:len(h.token_scores)]
            np.testing.assert_allclose(h.token_scores, logp[np.arange(len(toks)), toks],
                                       rtol=1e-5, atol=1e-5)
            lp = decode.length_penalty(len(h.ids), ended, alpha, kind)
            assert h.score == (pytest.approx(h.token_scores.sum() / lp, rel=1e-9) if lp
                               else -np.inf)
    assert ended_some and cut_some


@pytest.mark.parametrize("kind", ["gnmt", "power"])
def test_batched_beam_equals_one_sentence_at_a_time_for_each_penalty_kind(kind):
    model = _eos_prone(5, True, -0.25)
    src, rows = _varied_batch(np.random.default_rng(7))
    got = decode.beam_search(model, src, beam=3, max_len=10, length_penalty=1.0,
                             length_penalty_kind=kind)
    for i, row in enumerate(rows):
        alone = decode.beam_search(model, row[None], beam=3, max_len=10, length_penalty=1.0,
                                   length_penalty_kind=kind)
        _assert_same_hyps(got[i], alone[0], f"sentence {i}")


def test_length_penalty_kinds():
    """Both kinds count EOS when it was produced: GNMT's ((5 + n) / 6) **
    alpha and CTranslate2's n ** alpha."""
    assert decode.length_penalty(3, True, 1.0) == pytest.approx(9 / 6)
    assert decode.length_penalty(3, False, 1.0) == pytest.approx(8 / 6)
    assert decode.length_penalty(3, True, 0.5, "power") == pytest.approx(4 ** 0.5)
    assert decode.length_penalty(3, False, 0.5, "power") == pytest.approx(3 ** 0.5)
    assert decode.length_penalty(7, True, 0.0, "power") == decode.length_penalty(7, True, 0.0)
    assert decode.length_penalty(0, True, 0.5, "power") == 1.0
    model = _untrained(False, seed=8)
    model.generator.bias.data[EOS] += 50.0                  # EOS first, every time
    src = np.array([[5, 6, EOS]])
    (h,) = decode.greedy(model, src, max_len=5, length_penalty=1.0,
                         length_penalty_kind="power", return_scores=True)
    assert len(h.ids) == 0 and h.score == pytest.approx(h.token_scores.sum())   # n = 1


@pytest.mark.parametrize("kw,match", [
    (dict(length_penalty_kind="ctranslate2"), "length_penalty_kind: expected one of 'gnmt', "
                                              "'power', got 'ctranslate2'"),
    (dict(length_penalty=-0.5), r"length_penalty: expected a finite number >= 0, got -0.5"),
    (dict(length_penalty=float("nan")), "length_penalty: expected a finite number >= 0"),
    (dict(length_penalty=True), "length_penalty: expected a finite number >= 0, got bool True"),
    (dict(length_penalty="0.6"), "length_penalty: expected a finite number >= 0, got str '0.6'"),
])
def test_length_penalty_errors(kw, match):
    model = _untrained(False)
    src = np.ones((1, 3), int)
    with pytest.raises(ValueError, match=match):
        decode.beam_search(model, src, **kw)
    with pytest.raises(ValueError, match=match):
        decode.greedy(model, src, **kw)
    with pytest.raises(ValueError, match=match):
        decode.length_penalty(2, True, kw.get("length_penalty", 1.0),
                              kw.get("length_penalty_kind", "gnmt"))


def test_decoding_runs_in_eval_mode_and_restores_the_root_mode():
    """Dropout is off while decoding whatever the modes; afterwards every
    module has the root's former mode (a training root trains again, an
    eval root leaves all in eval), as model.train(mode) would set it."""
    pt.manual_seed(2)
    cfg = nn.Seq2SeqConfig(17, 19, d_model=16, nhead=4, num_encoder_layers=1,
                           num_decoder_layers=1, dim_feedforward=24, dropout=0.5, max_len=12)
    model = nn.Seq2SeqTransformer(cfg).eval()
    src = np.random.default_rng(4).integers(3, 17, (3, 6))
    want_g = decode.greedy(model, src)
    want_b = decode.beam_search(model, src, beam=2)
    child = model.transformer.decoder.layers[0].dropout
    for setup, after in ((lambda: model.train(), True),
                         (lambda: child.train(), False),
                         (lambda: None, False)):
        model.eval()
        setup()
        for got, want in ((decode.greedy(model, src), want_g),
                          (decode.beam_search(model, src, beam=2), want_b)):
            assert len(got) == len(want)
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g if isinstance(g, np.ndarray) else g[0][0],
                                              w if isinstance(w, np.ndarray) else w[0][0])
        assert all(m.training is after for m in model.modules())
