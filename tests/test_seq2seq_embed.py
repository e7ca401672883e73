"""Seq2SeqTransformer._embed in eval mode without autograd and hooks runs
the embedding, its scale and the positions on arrays (no module calls, no
autograd nodes): the same bits as the module path, which a forward hook on
the embedding (or training mode, or autograd on) still takes."""
import numpy as np
import pytest

import pytransformer as pt
from pytransformer import nn
from pytransformer.autograd.tensor import no_grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lean_embed_equals_the_module_path(dtype):
    pt.manual_seed(3)
    cfg = nn.Seq2SeqConfig(40, 30, d_model=16, nhead=4, num_encoder_layers=1,
                           num_decoder_layers=1, dim_feedforward=24, max_len=12)
    model = nn.Seq2SeqTransformer(cfg).to(dtype).eval()
    src = np.random.default_rng(0).integers(0, 40, (3, 9))
    seen = []
    with no_grad():
        lean = model._embed(model.src_embed, src)
        h = model.src_embed.register_forward_hook(lambda *a: seen.append(1))
        hooked = model._embed(model.src_embed, src)
        h.remove()
        mem_lean, _ = model.encode(src)
    assert seen == [1]
    assert lean.data.dtype == dtype and lean.data.shape == (3, 9, 16)
    assert lean.data.tobytes() == hooked.data.tobytes()
    model.train()
    with no_grad():
        mem_train, _ = model.encode(src)       # dropout on: the module path
    assert not np.array_equal(mem_lean.data, mem_train.data)
    with pytest.raises(ValueError, match="exceeds the model's max_len"):
        model.eval()._embed(model.src_embed, np.zeros((1, 13), np.int64))
