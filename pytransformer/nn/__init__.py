"""PyTorch-shaped neural-network modules on the autograd and the C kernels.

Module and its registration rules (:mod:`.module`), the basic layers
(:mod:`.layers`), MultiheadAttention (:mod:`.attention`), the Transformer
(:mod:`.transformer`), the translation model (:mod:`.seq2seq`), functional
ops under PyTorch's names (:mod:`.functional`) and initialisers (:mod:`.init`).
"""
from pytransformer.autograd.tensor import Parameter
from pytransformer.nn import functional, init
from pytransformer.nn.attention import MultiheadAttention
from pytransformer.nn.layers import GELU, Dropout, Embedding, LayerNorm, Linear, ReLU
from pytransformer.nn.module import Module, ModuleList, Sequential
from pytransformer.nn.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from pytransformer.nn.transformer import (Transformer, TransformerDecoder,
                                          TransformerDecoderLayer, TransformerEncoder,
                                          TransformerEncoderLayer)

__all__ = ["Dropout", "Embedding", "GELU", "LayerNorm", "Linear", "Module", "ModuleList",
           "MultiheadAttention", "Parameter", "ReLU", "Seq2SeqConfig", "Seq2SeqTransformer",
           "Sequential", "Transformer", "TransformerDecoder", "TransformerDecoderLayer",
           "TransformerEncoder", "TransformerEncoderLayer", "functional", "init"]
