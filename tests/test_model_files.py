"""Model files' parts checked field by field: Seq2SeqConfig.from_dict and
Vocab.from_dict name the field that is wrong, and Seq2SeqConfig gives the
state_dict shapes of its model without building it."""
import numpy as np
import pytest

from pytransformer.data import Vocab
from pytransformer.nn import Seq2SeqConfig, Seq2SeqTransformer


def test_config_from_dict_names_the_field():
    """Seq2SeqConfig.from_dict checks each field itself (a missing field was
    a TypeError from the constructor, a float layer count passed)."""
    good = dict(src_vocab_size=11, tgt_vocab_size=13, d_model=16, nhead=4)
    assert Seq2SeqConfig.from_dict(good) == Seq2SeqConfig(11, 13, d_model=16, nhead=4)
    assert Seq2SeqConfig.from_dict({**good, "dropout": 0}).dropout == 0.0
    for bad, field in [({"tgt_vocab_size": 13}, "src_vocab_size"),
                       ({**good, "num_encoder_layers": 2.0}, "num_encoder_layers"),
                       ({**good, "dim_feedforward": np.float32(8)}, "dim_feedforward"),
                       ({**good, "max_len": 10**40 + 0.5}, "max_len"),
                       ({**good, "layer_norm_eps": "1e-5"}, "layer_norm_eps"),
                       ([("d_model", 4)], "Seq2SeqConfig")]:
        with pytest.raises(ValueError, match=field):
            Seq2SeqConfig.from_dict(bad)


def test_expected_state_shapes_match_the_model():
    """state_shapes(config) is what Seq2SeqTransformer(config).state_dict()
    holds, key for key and shape for shape, for both norm placements and
    with tied embeddings."""
    for kw in ({}, {"norm_first": True, "tie_embeddings": True, "num_decoder_layers": 2}):
        cfg = Seq2SeqConfig(11, 13, **{**dict(d_model=8, nhead=2, num_encoder_layers=1,
                                              num_decoder_layers=1, dim_feedforward=12,
                                              max_len=6), **kw})
        want = {k: v.shape for k, v in Seq2SeqTransformer(cfg).state_dict().items()}
        got = cfg.state_shapes()
        assert list(got) == list(want) and got == want
        assert cfg.num_state_tensors() == len(want)


def test_vocab_from_dict_checks_its_dict():
    """Vocab.from_dict names the bad part: the token and its index, capped."""
    d = Vocab(["a", "b"]).to_dict()
    assert Vocab.from_dict(d) == Vocab(["a", "b"])
    for bad, words in [({**d, "tokens": ["a", "a"]}, "tokens[1]"),
                       ({**d, "tokens": ["a", 3]}, "tokens[1]"),
                       ({**d, "tokens": ["<unk>"]}, "tokens[0]"),
                       ({**d, "tokens": ["a b"]}, "tokens[0]"),
                       ({**d, "extra": 1}, "extra"),
                       ({**d, "tokens": ["x" * 10_000, "x" * 10_000]}, "tokens[1]")]:
        with pytest.raises(ValueError, match=r"from_dict") as e:
            Vocab.from_dict(bad)
        assert words in str(e.value) and len(str(e.value)) < 300, str(e.value)
