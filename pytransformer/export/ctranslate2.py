"""Export a translator (Seq2SeqTransformer + vocabularies) to a CTranslate2
model directory, with the ``ctranslate2`` package's own spec API.

    export_ctranslate2("translator-en-es.safetensors", "ct2-en-es")

    import ctranslate2
    from pytransformer.data import tokenize
    tr = ctranslate2.Translator("ct2-en-es")
    tr.translate_batch([tokenize("The ball is blue")])[0].hypotheses[0]
    # ['la', 'bola', 'es', 'azul']

The mapping, layer by layer:

- embeddings: the same tables; CTranslate2 multiplies them by sqrt(d_model)
  (``scale_embeddings``) and adds the position table, which is exported as
  it is (``position_encodings.encodings`` = the model's interleaved
  sin/cos table, max_len rows), so positions 0 .. max_len - 1 match ours
  exactly and inputs longer than max_len cannot run.
- attention: self-attention's in_proj (q; k; v rows) is CTranslate2's
  fused ``linear[0]``; cross-attention's q rows are ``linear[0]`` and its
  k; v rows the fused ``linear[1]``; out_proj is the last linear.
- layers: norm1 / norm2 / norm3 are the layer norms of the self-attention,
  cross-attention (decoder) and feed-forward blocks, post- or pre-norm as
  the model was built (``pre_norm`` = config.norm_first); the final
  LayerNorm of each stack is the spec's ``layer_norm``, which the spec
  declares only for pre-norm stacks but CTranslate2 applies whenever it is
  present, so it is declared first and ``pre_norm`` set afterwards.
- the generator is the decoder's ``projection``; with tied embeddings the
  two tables are equal and CTranslate2 stores them once.
- tokens: the vocabularies in id order; the config names ``<unk>``,
  ``<bos>`` (also the decoder start) and ``<eos>``, and sets
  ``add_source_eos`` so a source is fed as our encoder sees it (tokens then
  ``<eos>``): callers pass the words only.
- ``<pad>`` and ``<bos>`` are never generated, as in pytransformer.decode:
  their generator biases are exported as -inf, so every decoding and
  scoring call of the exported model (whatever its options) gives them
  probability 0 and renormalises over the other tokens, which is the
  distribution pytransformer's greedy and beam search use.

Decoding then matches ``Translator.translate`` for greedy search
(``max_decoding_length`` = the model's max_len) and for beam search with
``length_penalty=0`` on both sides; see docs/export.md.
"""
import os
import shutil
import tempfile

import numpy as np

__all__ = ["ExportError", "QUANTIZATIONS", "build_spec", "export_ctranslate2"]

INSTALL_HINT = "pip install 'pytransformer-cpu[ctranslate2]'"

from pytransformer.export._formats import QUANTIZATIONS

# the files a CTranslate2 sequence-to-sequence model directory consists of
_MODEL_FILES = ("model.bin", "config.json", "shared_vocabulary.json", "source_vocabulary.json",
                "target_vocabulary.json", "shared_vocabulary.txt", "source_vocabulary.txt",
                "target_vocabulary.txt", "vmap.txt")


class ExportError(ValueError):
    """A model or an output that cannot be exported (one-line message naming
    what was wrong)."""


def _import_ctranslate2():
    try:
        import ctranslate2
        import ctranslate2.specs  # noqa: F401
    except ImportError:
        raise ImportError(f"ctranslate2 is not installed: {INSTALL_HINT}") from None
    return ctranslate2


def _translator(model):
    """A Translator from a Translator or a checkpoint path."""
    from pytransformer.translator import Translator

    if isinstance(model, Translator):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise ExportError(f"{path}: no translator checkpoint there (not a file)")
        return Translator.load(path)      # CheckpointError (a ValueError): one line
    raise ExportError(f"model: expected a Translator or a checkpoint path, got "
                      f"{type(model).__name__}")


def _f32(x):
    """A float32 C-contiguous copy: CTranslate2's quantization rewrites the
    spec's arrays in place, and the model's own must stay as they are."""
    return np.array(x.data if hasattr(x, "data") else x, dtype=np.float32, order="C",
                    copy=True)


def _set_linear(spec, weight, bias):
    spec.weight = _f32(weight)
    if bias is not None:
        spec.bias = _f32(bias)


def _set_norm(spec, norm):
    spec.gamma = _f32(norm.weight)
    spec.beta = _f32(norm.bias)


def _set_self_attention(spec, mha):
    _set_linear(spec.linear[0], mha.in_proj_weight, mha.in_proj_bias)       # q; k; v
    _set_linear(spec.linear[1], mha.out_proj.weight, mha.out_proj.bias)


def _set_cross_attention(spec, mha):
    E = mha.embed_dim
    W, b = _f32(mha.in_proj_weight), mha.in_proj_bias
    b = None if b is None else _f32(b)
    _set_linear(spec.linear[0], W[:E], None if b is None else b[:E])       # q
    _set_linear(spec.linear[1], W[E:], None if b is None else b[E:])       # k; v
    _set_linear(spec.linear[2], mha.out_proj.weight, mha.out_proj.bias)


def _set_ffn(spec, layer, norm):
    _set_norm(spec.layer_norm, norm)
    _set_linear(spec.linear_0, layer.linear1.weight, layer.linear1.bias)
    _set_linear(spec.linear_1, layer.linear2.weight, layer.linear2.bias)


def build_spec(translator):
    """The ctranslate2.specs.TransformerSpec of a Translator (weights filled,
    vocabularies registered, config set; not yet validated or saved)."""
    _import_ctranslate2()
    from ctranslate2.specs import common_spec, transformer_spec

    model = translator.model
    c = model.config
    activation = {"relu": common_spec.Activation.RELU,
                  "gelu": common_spec.Activation.GELU}[c.activation]     # GELU: the erf form
    # pre_norm=True declares the stacks' final layer_norm; the layers' own
    # order is set by pre_norm below (see the module docstring)
    encoder = transformer_spec.TransformerEncoderSpec(c.num_encoder_layers, c.nhead,
                                                      pre_norm=True, activation=activation)
    decoder = transformer_spec.TransformerDecoderSpec(c.num_decoder_layers, c.nhead,
                                                      pre_norm=True, activation=activation)
    encoder.pre_norm = decoder.pre_norm = bool(c.norm_first)
    positions = _f32(model.positions)                                 # (max_len, d_model)
    tf = model.transformer

    encoder.embeddings[0].weight = _f32(model.src_embed.weight)
    encoder.position_encodings.encodings = positions
    _set_norm(encoder.layer_norm, tf.encoder.norm)
    for spec, layer in zip(encoder.layer, tf.encoder.layers):
        _set_self_attention(spec.self_attention, layer.self_attn)
        _set_norm(spec.self_attention.layer_norm, layer.norm1)
        _set_ffn(spec.ffn, layer, layer.norm2)

    decoder.embeddings.weight = _f32(model.tgt_embed.weight)
    decoder.position_encodings.encodings = positions
    _set_norm(decoder.layer_norm, tf.decoder.norm)
    for spec, layer in zip(decoder.layer, tf.decoder.layers):
        _set_self_attention(spec.self_attention, layer.self_attn)
        _set_norm(spec.self_attention.layer_norm, layer.norm1)
        _set_cross_attention(spec.attention, layer.multihead_attn)
        _set_norm(spec.attention.layer_norm, layer.norm2)
        _set_ffn(spec.ffn, layer, layer.norm3)
    bias = _f32(model.generator.bias).copy()
    bias[[c.pad_idx, translator.tgt_vocab.token_to_id("<bos>")]] = -np.inf
    _set_linear(decoder.projection, model.generator.weight, bias)

    spec = transformer_spec.TransformerSpec(encoder, decoder)
    spec.config.unk_token = "<unk>"
    spec.config.bos_token = "<bos>"
    spec.config.eos_token = "<eos>"
    spec.config.decoder_start_token = "<bos>"
    spec.config.add_source_eos = True
    spec.config.layer_norm_epsilon = float(c.layer_norm_eps)
    spec.register_source_vocabulary(translator.src_vocab.tokens)
    spec.register_target_vocabulary(translator.tgt_vocab.tokens)
    return spec


def _check_output(output_dir, force):
    if not output_dir:
        raise ExportError("output directory: expected a path, got ''")
    if os.path.exists(output_dir):
        if not os.path.isdir(output_dir):
            raise ExportError(f"{output_dir}: exists and is not a directory")
        if os.listdir(output_dir) and not force:
            raise ExportError(f"{output_dir}: exists and is not empty (use --force to "
                              f"overwrite the model files in it)")


def export_ctranslate2(model, output_dir, quantization=None, force=False):
    """Write `model` (a translator.Translator, or the path of a translator
    checkpoint) as a CTranslate2 model directory `output_dir`; returns
    output_dir.

    quantization: None or "float32" keep float32 weights; "int8",
    "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16",
    "bfloat16" convert them as CTranslate2's own converters do (the
    compute type is chosen when the model is loaded). output_dir must not
    exist or be empty, unless force: then the CTranslate2 model files in it
    are replaced and any other file is left alone. The files are written to
    a temporary directory beside output_dir first, so an error leaves
    output_dir as it was.

    Errors (one line): ImportError when ctranslate2 is not installed;
    checkpoint.CheckpointError (a ValueError) for a file that is not a
    translator checkpoint; ExportError (a ValueError) for a bad
    quantization or output_dir."""
    output_dir = os.fspath(output_dir)
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ExportError(f"quantization: expected one of {', '.join(QUANTIZATIONS)}, got "
                          f"{quantization!r:.80}")
    _check_output(output_dir, force)
    _import_ctranslate2()
    if quantization in ("bfloat16", "int8_bfloat16"):
        import importlib.util
        if importlib.util.find_spec("torch") is None:
            raise ExportError(f"quantization {quantization}: CTranslate2 converts weights "
                              f"to bfloat16 with PyTorch, which is not installed")
    translator = _translator(model)
    spec = build_spec(translator)
    spec.validate()
    spec.optimize(quantization=quantization)
    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".ct2-export-", dir=parent)
    try:
        spec.save(tmp)
        if not os.path.exists(output_dir):
            os.replace(tmp, output_dir)
            return output_dir
        for name in _MODEL_FILES:
            path = os.path.join(output_dir, name)
            if os.path.isfile(path):
                os.remove(path)
        for name in os.listdir(tmp):
            os.replace(os.path.join(tmp, name), os.path.join(output_dir, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return output_dir
