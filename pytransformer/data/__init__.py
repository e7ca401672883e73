"""Data for the translation task: the generated English-Spanish corpus with
gold alignments and source dependencies, the TSV corpus format, and the
word-level vocabulary with padded batching.

    >>> from pytransformer.data import make_splits, Vocab, batch
    >>> splits = make_splits(seed=0, n_train=1000)
    >>> src_vocab = Vocab.build(p.src for p in splits.train)

Modules: lexicon (the bilingual lexicon as data), grammar (the generator and
the label/POS sets), corpus (Pair, splits, TSV), vocab (Vocab, tokenize,
batch, iter_batches).
"""
from .corpus import (HELDOUT_STRUCTURES, SEED_SENTENCES, CorpusError, Pair, Splits,
                     generate_pairs, make_splits, parse_pharaoh, read_tsv, seed_pairs,
                     validate_pair, write_tsv)
from .grammar import (GRAMMAR, GRAMMARS, LABELS, POS_TAGS, STRUCTURES, UNALIGNED_TARGET,
                      Generator, plan, structures)
from .lexicon import lemma_counts
from .vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocab, batch, iter_batches, tokenize

__all__ = ["HELDOUT_STRUCTURES", "SEED_SENTENCES", "CorpusError", "Pair", "Splits",
           "generate_pairs", "make_splits", "parse_pharaoh", "read_tsv", "seed_pairs",
           "validate_pair", "write_tsv", "GRAMMAR", "GRAMMARS", "LABELS", "POS_TAGS", "STRUCTURES", "UNALIGNED_TARGET",
           "Generator", "plan", "structures", "lemma_counts", "BOS", "EOS", "PAD", "SPECIALS",
           "UNK", "Vocab", "batch", "iter_batches", "tokenize"]
