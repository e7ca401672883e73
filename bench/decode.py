"""python -m bench.decode: translation speed of the shipped model, ours vs
CTranslate2 float32 running the same weights, in one process.

The shipped translator (pytransformer/models/translator-en-es.safetensors) is
exported with `pytransformer.export.export_ctranslate2` into a temporary
directory and loaded with ctranslate2.Translator(inter_threads=1,
intra_threads=THREADS); ours runs with pytransformer.set_num_threads(THREADS).
First the greedy outputs of both on every benchmark sentence are compared
(and the beam outputs), then each workload is timed, the two engines
alternating (ours, CT2, CT2, ours, ...) so that a change of machine load
hits both:

    greedy, batch 32   the first N (1000) held-out test sentences
    greedy, batch 1    the first N1 (100), one call per sentence
    beam 4, batch 32   the first N (1000), length penalty 0 on both sides

in batches of consecutive sentences (corpus order, no length sorting; the
same batches on both sides), for at most the model's max_len tokens.
Both sides include tokenization and detokenization the same way: each timed
call takes raw sentences and returns strings (ours: Translator.translate;
CT2: pytransformer.data.tokenize, translate_batch, " ".join). Printed:
sentences/s and target tokens/s (words produced, <eos> not counted), the
median of REPEATS runs, the ratio ours / CT2 (above 1: ours faster), the CPU
(/proc/cpuinfo model name), the thread counts and the load average at the
start and end (other processes on the machine change every figure). Then
the memory of a child process that loads the model and translates the N
sentences greedily in batches of 32, for ours and for CT2 (the exported
directory; that child imports pytransformer too, for the tokenizer): VmRSS
after the imports and after loading, and the peak RSS (VmHWM).

    python -m bench.decode [--threads 2] [--n 1000] [--n1 100] [--repeats 3] [--json FILE]
    python -m bench.decode --synthetic    # the untrained 8000-word model, 32 tokens

--synthetic times instead the untrained benchmark model (d_model 256, 4
heads, 3+3 layers, feed-forward 1024, vocabulary 8000, batch 32 random
sources of 32 tokens, exactly 32 tokens generated per sentence: EOS
disabled on our side, min_decoding_length on CT2's), greedy, pre-tokenized
(ours: ids in and out; CT2: token strings, its API).
Needs the ctranslate2 package: pip install 'pytransformer-cpu[ctranslate2]'.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import pytransformer as pt
from pytransformer.bench.machine import cpu_model
from pytransformer.data import tokenize
from pytransformer.export import export_ctranslate2
from pytransformer.translator import Translator, corpus_splits, default_model_path

THREADS = 2
N, N1, BATCH, BEAM, REPEATS = 1000, 100, 32, 4, 3
PAUSE = 0.2          # seconds between timed runs: the other engine's threads go idle


def _test_sentences(tr, n):
    return [p.source for p in corpus_splits(tr).test[:n]]


def _ct2_translator(path, threads):
    import ctranslate2
    return ctranslate2.Translator(path, device="cpu", compute_type="float32",
                                  inter_threads=1, intra_threads=threads)


def run_ours(tr, sentences, batch, beam):
    """Translations of `sentences` in consecutive batches by our Translator."""
    out = []
    for i in range(0, len(sentences), batch):
        out += tr.translate(sentences[i:i + batch], beam=beam, length_penalty=0.0)
    return out


def run_ct2(ct, sentences, batch, beam, max_len):
    """Translations of `sentences` in consecutive batches by CTranslate2,
    tokenized and joined as ours are."""
    out = []
    for i in range(0, len(sentences), batch):
        res = ct.translate_batch([tokenize(s) for s in sentences[i:i + batch]],
                                 beam_size=beam, length_penalty=0.0,
                                 max_decoding_length=max_len, return_scores=False)
        out += [" ".join(r.hypotheses[0]) for r in res]
    return out


def _tokens(outputs):
    return sum(len(o.split()) for o in outputs)


def compare(tr, ct, sentences, beam, max_len):
    """(number equal, first differing (sentence, ours, CT2) or None) for
    batch-32 decoding of `sentences` with beam size `beam`."""
    ours = run_ours(tr, sentences, BATCH, beam)
    theirs = run_ct2(ct, sentences, BATCH, beam, max_len)
    diff = [(s, a, b) for s, a, b in zip(sentences, ours, theirs) if a != b]
    return len(sentences) - len(diff), (diff[0] if diff else None)


def time_workload(engines, repeats):
    """{name: [seconds, ...]} of `repeats` alternating timed runs of each
    engine (a dict name -> zero-argument callable returning the outputs),
    after one untimed warm-up run each; the order flips every repeat."""
    names = list(engines)
    times = {k: [] for k in names}
    outputs = {}
    for k in names:
        outputs[k] = engines[k]()
    for r in range(repeats):
        for k in (names if r % 2 == 0 else names[::-1]):
            time.sleep(PAUSE)
            t0 = time.perf_counter()
            outputs[k] = engines[k]()
            times[k].append(time.perf_counter() - t0)
    return times, outputs


def _vm_mib(field="VmRSS"):
    """A memory figure of this process from /proc/self/status, MiB: VmRSS
    (resident now) or VmHWM (its peak); None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _rss_child(engine, sentences_file, threads, model_dir, max_len):
    """In a child process: load the model (ours: the shipped checkpoint;
    ct2: the exported directory model_dir), translate the sentences of
    sentences_file (a JSON list) greedily in batches of 32; print JSON with
    VmRSS after the imports and after loading, and the peak (VmHWM) at the
    end, MiB. The sentences come from a file so that generating the
    corpus does not set the peak."""
    pt.set_num_threads(threads)
    with open(sentences_file) as f:
        sentences = json.load(f)
    imported = _vm_mib()
    if engine == "ct2":
        ct = _ct2_translator(model_dir, threads)
        loaded = _vm_mib()
        run_ct2(ct, sentences, BATCH, 1, max_len)
    else:
        tr = Translator.load(default_model_path())
        loaded = _vm_mib()
        run_ours(tr, sentences, BATCH, 1)
    # VmHWM, not ru_maxrss: Linux carries the parent's peak across fork and
    # exec into the child's ru_maxrss
    peak = _vm_mib("VmHWM")
    print(json.dumps({"imported": imported, "loaded": loaded, "peak": peak}))


def peak_rss(engine, sentences, threads, model_dir, max_len):
    """{"imported", "loaded", "peak"} MiB of _rss_child(engine, ...) run in
    a child process."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(os.path.dirname(model_dir), "sentences.json")
    with open(path, "w") as f:
        json.dump(sentences, f)
    r = subprocess.run([sys.executable, "-m", "bench.decode", "--rss-child", engine,
                        "--rss-model", model_dir, "--rss-max-len", str(max_len),
                        "--rss-sentences", path, "--threads", str(threads)],
                       cwd=here, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def _our_build():
    """Our kernels' ISA level and the BLAS our GEMMs call, as one phrase."""
    c = pt.config()
    gemm = [b for b in c.get("blas_libraries", []) if b.get("pytransformer_gemm")]
    blas = (f"{gemm[0]['internal_api']} {gemm[0]['version']} ({gemm[0]['architecture']})"
            if gemm else c.get("blas"))
    return f"kernels {c.get('isa')}, GEMM {blas}"


def _load():
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def _table(rows):
    print("| workload | ours sent/s | CT2 sent/s | ours tok/s | CT2 tok/s | ours / CT2 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, ours, ct2 in rows:
        print(f"| {name} | {ours[0]:.0f} | {ct2[0]:.0f} | {ours[1]:.0f} | {ct2[1]:.0f} | "
              f"{ours[0] / ct2[0]:.2f} |")


def main_shipped(args):
    """The comparison on the shipped model (the default)."""
    import ctranslate2

    tr = Translator.load(default_model_path())
    max_len = tr.model.config.max_len
    sentences = _test_sentences(tr, args.n)
    single = sentences[:args.n1]
    tmp = tempfile.TemporaryDirectory(prefix="bench-decode-")
    path = export_ctranslate2(tr, os.path.join(tmp.name, "en-es"))
    ct = _ct2_translator(path, args.threads)
    report = {"cpu": cpu_model(), "logical_cpus": os.cpu_count(),
              "load_start": list(os.getloadavg()), "threads": args.threads,
              "pytransformer": _our_build(), "ctranslate2": ctranslate2.__version__,
              "sentences": len(sentences), "repeats": args.repeats, "workloads": []}
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs); {_load()}")
    print(f"pytransformer {pt.__version__}: threads {pt.get_num_threads()}, {_our_build()}; "
          f"ctranslate2 "
          f"{ctranslate2.__version__}: inter_threads 1, intra_threads {args.threads}, "
          f"compute_type float32")
    print(f"the shipped model exported to CTranslate2; {len(sentences)} held-out test "
          f"sentences, max_len {max_len}; tokenization and detokenization included on "
          f"both sides; median of {args.repeats} alternating runs")
    same, first = compare(tr, ct, sentences, 1, max_len)
    report["greedy_equal"] = same
    print(f"greedy outputs equal: {same} of {len(sentences)}"
          + (f" (first difference: {first})" if first else ""))
    same, first = compare(tr, ct, sentences, BEAM, max_len)
    report["beam_equal"] = same
    print(f"beam {BEAM} (length penalty 0) outputs equal: {same} of {len(sentences)}"
          + (f" (first difference: {first})" if first else ""))
    workloads = [(f"greedy, batch {BATCH}, {len(sentences)} sentences", sentences, BATCH, 1),
                 (f"greedy, batch 1, {len(single)} sentences", single, 1, 1),
                 (f"beam {BEAM}, batch {BATCH}, {len(sentences)} sentences", sentences, BATCH,
                  BEAM)]
    rows = []
    for name, sents, batch, beam in workloads:
        times, outputs = time_workload(
            {"ours": lambda: run_ours(tr, sents, batch, beam),
             "ct2": lambda: run_ct2(ct, sents, batch, beam, max_len)}, args.repeats)
        rates = {}
        for k in times:
            t = float(np.median(times[k]))
            rates[k] = (len(sents) / t, _tokens(outputs[k]) / t)
        runs = "; ".join(f"{k} " + " ".join(f"{x * 1e3:.0f}" for x in v) + " ms"
                         for k, v in times.items())
        print(f"  {name}: {runs}")
        rows.append((name, rates["ours"], rates["ct2"]))
        report["workloads"].append(
            {"name": name, "times_s": times,
             "sentences_per_s": {k: v[0] for k, v in rates.items()},
             "tokens_per_s": {k: v[1] for k, v in rates.items()},
             "ours_over_ct2": rates["ours"][0] / rates["ct2"][0]})
    _table(rows)
    if not args.no_rss:
        print(f"memory of a child process translating {args.n} sentences greedily, batch "
              f"{BATCH} (VmRSS after imports / after loading the model, peak VmHWM):")
        for engine in ("ours", "ct2"):
            m = report[f"memory_mib_{engine}"] = peak_rss(engine, sentences, args.threads,
                                                          path, max_len)
            print(f"  {engine}: {m['imported']:.0f} / {m['loaded']:.0f} MiB, peak "
                  f"{m['peak']:.0f} MiB")
    print(_load())
    report["load_end"] = list(os.getloadavg())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {args.json}")
    tmp.cleanup()
    return 0


def main_synthetic(args):
    """The untrained benchmark model, greedy with a fixed 32 tokens."""
    from pytransformer import decode, nn
    from pytransformer.data import Vocab

    length, vocab = 32, 8000
    pt.manual_seed(0)
    cfg = nn.Seq2SeqConfig(vocab, vocab, 256, 4, 3, 3, 1024, dropout=0.0, max_len=length + 1)
    model = nn.Seq2SeqTransformer(cfg).eval()
    words = Vocab([f"w{i}" for i in range(vocab - 4)])
    tr = Translator(model, words, words)
    src = np.random.default_rng(0).integers(4, vocab, (BATCH, length))
    src_tokens = [words.decode(r) for r in src]
    tmp = tempfile.TemporaryDirectory(prefix="bench-decode-")
    ct = _ct2_translator(export_ctranslate2(tr, os.path.join(tmp.name, "m")), args.threads)
    print(f"CPU: {cpu_model()}; {_load()}; ours: threads {pt.get_num_threads()}; CT2: "
          f"inter_threads 1 intra_threads {args.threads}")
    print(f"untrained model d_model 256, 3+3 layers, vocabulary {vocab}; batch {BATCH}, "
          f"source length {length}, {length} tokens generated per sentence; pre-tokenized "
          f"(ours: ids in and out; CT2: its token strings); median of {args.repeats} "
          f"alternating runs")

    def ours():
        return decode.greedy(model, src, max_len=length, eos=-1)

    def ct2():
        return ct.translate_batch(src_tokens, beam_size=1, min_decoding_length=length,
                                  max_decoding_length=length, return_scores=False)

    times, outputs = time_workload({"ours": ours, "ct2": ct2}, args.repeats)
    assert all(len(o) == length for o in outputs["ours"])
    assert all(len(r.hypotheses[0]) == length for r in outputs["ct2"])
    tokens = BATCH * length
    t = {k: float(np.median(v)) for k, v in times.items()}
    for k in t:
        print(f"  {k}: {t[k] * 1e3:.1f} ms, {tokens / t[k]:.0f} tokens/s")
    print(f"ours / CT2: {t['ct2'] / t['ours']:.2f}")
    tmp.cleanup()
    return 0


def main(argv=None):
    """Parse the options and run the shipped-model comparison (default),
    --synthetic, or the --rss-child helper."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=THREADS)
    ap.add_argument("--n", type=int, default=N, help="sentences of the batch-32 workloads")
    ap.add_argument("--n1", type=int, default=N1, help="sentences of the batch-1 workload")
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS children")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    ap.add_argument("--synthetic", action="store_true",
                    help="the untrained 8000-word model, 32 tokens per sentence, instead")
    ap.add_argument("--rss-child", choices=["ours", "ct2"], help=argparse.SUPPRESS)
    ap.add_argument("--rss-model", help=argparse.SUPPRESS)
    ap.add_argument("--rss-max-len", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--rss-sentences", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    pt.set_num_threads(args.threads)
    if args.rss_child:
        _rss_child(args.rss_child, args.rss_sentences, args.threads, args.rss_model,
                   args.rss_max_len)
        return 0
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        print("bench.decode: ctranslate2 is not installed: pip install "
              "'pytransformer-cpu[ctranslate2]'", file=sys.stderr)
        return 2
    return main_synthetic(args) if args.synthetic else main_shipped(args)


if __name__ == "__main__":
    sys.exit(main())
