"""python3 -m bench.decode: greedy decoding tokens/s with and without the KV cache.

The benchmark model (d_model 256, 4 heads, 3+3 layers, feed-forward
1024, vocabulary 8000; untrained weights: speed does not depend on them),
batch 32 sources of 32 tokens, 32 target tokens generated per sentence (EOS
disabled so every run generates the same number). With the cache each step
runs the decoder on one position; without it, on the whole prefix.

    python3 -m bench.decode [--threads N] [--batch 32] [--length 32]
"""
import argparse
import sys
import time

import numpy as np

import pytransformer as pt
from pytransformer import decode, nn


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=pt.get_num_threads())
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--length", type=int, default=32, help="source length and tokens generated")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    pt.set_num_threads(args.threads)
    pt.manual_seed(0)
    cfg = nn.Seq2SeqConfig(8000, 8000, 256, 4, 3, 3, 1024, dropout=0.0, max_len=args.length + 1)
    model = nn.Seq2SeqTransformer(cfg).eval()
    src = np.random.default_rng(0).integers(3, 8000, (args.batch, args.length))
    tokens = args.batch * args.length
    print(f"{args.threads} threads, batch {args.batch}, source length {args.length}, "
          f"{args.length} tokens generated per sentence")
    for use_cache in (True, False):
        ts = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = decode.greedy(model, src, max_len=args.length, eos=-1, use_cache=use_cache)
            ts.append(time.perf_counter() - t0)
        assert all(len(o) == args.length for o in out)
        t = float(np.median(ts))
        print(f"  {'with' if use_cache else 'without'} KV cache: {t * 1e3:8.1f} ms, "
              f"{tokens / t:8.0f} tokens/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
