"""Corpus-level analysis of a translator: every measure of
pytransformer.explain over a split, run once, and its HTML report.

    a = run_analysis(translator, splits.test[:1000])
    print(findings(a))                     # the headline numbers
    analysis_report(a).save("analysis.html")

One teacher-forced traced pass over the pairs feeds the alignment, syntax,
FFN-memory and logit-lens measures; layer similarity, head importance,
pruning and rollout-vs-ablation run their own passes (on subsets, as their
functions document).
"""
import contextlib
import dataclasses
import sys
import time

import numpy as np

from . import html as H
from .ablation import head_importance, prune_heads
from .alignment import (OFFSETS, AlignmentAccumulator, CheckpointAER, aer_over_checkpoints,
                        alignment_scores)
from .ffn import ffn_memories, teacher_forced_traces
from .layers import layer_similarity
from .learning import steps_chart_svg
from .lens import logit_lens_accuracy
from .rollout import rollout_vs_ablation
from .syntax import SyntaxAccumulator

__all__ = ["Analysis", "aer_over_snapshots", "analysis_report", "findings", "run_analysis"]

NO_SNAPSHOTS = ("the model has no training snapshots (trained with --no-snapshots, or before "
                "training kept them): no AER over training; retrain it, or pass --checkpoints")


@dataclasses.dataclass
class Analysis:
    """Results of :func:`run_analysis`: one attribute per measure (None when
    skipped) and `seconds` {measure: wall time}. checkpoints (AER over
    training) comes from checkpoint files or from the model's own
    snapshots: `learning_from` says which ("checkpoints", "snapshots" or
    "" when neither), `learning_note` why there is none."""
    n_pairs: int
    alignment: object = None
    syntax: object = None
    ffn: object = None
    lens: object = None
    similarity: object = None
    importance: object = None
    pruning: object = None
    rollout: object = None
    checkpoints: object = None
    learning_from: str = ""
    learning_note: str = ""
    seconds: dict = dataclasses.field(default_factory=dict)


@contextlib.contextmanager
def _blas_threads(n):
    """NumPy's BLAS limited to n threads while the analysis runs (the traced
    recomputation is many small products; extra BLAS threads only contend
    with pytransformer's own OpenMP threads). No-op without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def aer_over_snapshots(translator, pairs, batch_size=128):
    """AER over training from the translator's own training snapshots
    (Translator.snapshot_models): a CheckpointAER whose paths name the
    steps, as :func:`alignment.aer_over_checkpoints` gives for files; None
    when the translator has no snapshots."""
    models = translator.snapshot_models()
    if not models:
        return None
    scores = [alignment_scores(m, pairs, batch_size) for _, m in models]
    fb = scores[-1].best
    o = OFFSETS.index(fb["offset"])

    def at(s):
        return float(s.aer_avg[o, fb["layer"]] if fb["head"] == "avg"
                     else s.aer_head[o, fb["layer"], fb["head"]])
    return CheckpointAER(paths=[f"snapshot of step {s}" for s, _ in models],
                         steps=[s for s, _ in models],
                         best_aer=np.array([s.best["aer"] for s in scores]),
                         best=[s.best for s in scores],
                         aer_avg=np.array([s.aer_avg for s in scores]),
                         aer_at_final_best=np.array([at(s) for s in scores]),
                         diagonal_aer=scores[0].diagonal["aer"],
                         caption=CheckpointAER.caption.replace(
                             "per checkpoint", "per training snapshot kept in the model file "
                                               "(int8 weights; the last step the model itself)"))


def run_analysis(translator, pairs, checkpoints=(), prune=True, stream=None,
                 batch_size=128, blas_threads=1, snapshots=True):
    """Every corpus-level measure on `pairs` (corpus Pairs with gold
    alignments, dependencies and POS tags). checkpoints: translator files
    for AER over training (optional; each is traced over all the pairs);
    without them, and with snapshots=True, the translator's own training
    snapshots serve (aer_over_snapshots; a model without them gets
    Analysis.learning_note instead). prune: run the BLEU pruning search
    (the slowest part). Progress goes to `stream` (default stderr; False:
    silent). Returns an Analysis."""
    if stream is None:
        stream = sys.stderr
    pairs = list(pairs)
    if not pairs:
        raise ValueError("pairs: no pairs to analyze")
    out = Analysis(n_pairs=len(pairs))

    def step(name, fn):
        t0 = time.perf_counter()
        if stream:
            print(f"  {name} ...", end="", file=stream, flush=True)
        result = fn()
        out.seconds[name] = time.perf_counter() - t0
        if stream:
            print(f" {out.seconds[name]:.1f} s", file=stream, flush=True)
        return result

    with _blas_threads(blas_threads):
        traces = step("tracing", lambda: [t for _, t in teacher_forced_traces(
            translator, pairs, batch_size)])

        def shared():
            a, s = AlignmentAccumulator(), SyntaxAccumulator()
            o = 0
            for t in traces:
                n = len(t.src_tokens)
                idx = list(range(o, o + n))
                a.add(idx, pairs[o:o + n], t)
                s.add(idx, pairs[o:o + n], t)
                o += n
            return a.result(), s.result()

        out.alignment, out.syntax = step("alignment and syntactic heads", shared)
        out.ffn = step("FFN memories", lambda: ffn_memories(translator, pairs, traces=traces,
                                                            batch_size=batch_size))
        out.lens = step("logit lens", lambda: logit_lens_accuracy(translator, pairs,
                                                                  traces=traces))
        del traces
        out.similarity = step("layer similarity", lambda: layer_similarity(
            translator, pairs, batch_size=batch_size))
        out.importance = step("head importance", lambda: head_importance(translator, pairs))
        if prune:
            out.pruning = step("pruning (BLEU)", lambda: prune_heads(translator, pairs,
                                                                      out.importance))
        out.rollout = step("rollout vs ablation", lambda: rollout_vs_ablation(translator, pairs))
        if checkpoints:
            out.checkpoints = step("AER over checkpoints", lambda: aer_over_checkpoints(
                list(checkpoints), pairs))
            out.learning_from = "checkpoints"
        elif snapshots and getattr(translator, "snapshots", None):
            out.checkpoints = step("AER over the model's snapshots", lambda: aer_over_snapshots(
                translator, pairs, batch_size))
            out.learning_from = "snapshots"
        elif snapshots:
            out.learning_note = NO_SNAPSHOTS
    return out


def _best_relation_rows(syntax):
    rows = []
    for r in syntax.table:
        rows.append([r["relation"], r["count"], f"L{r['layer']} H{r['head']} {r['direction']}",
                     r["accuracy"], r["best_baseline"],
                     "head" if r["accuracy"] > r["best_baseline"] else "position"])
    return rows


def findings(a):
    """The headline numbers of an Analysis as a flat dict (for the README,
    the CLI summary and tests)."""
    f = {"pairs": a.n_pairs}
    if a.alignment is not None:
        b = a.alignment.best
        f["best_aer"] = float(b["aer"])
        f["best_aer_where"] = f"cross-attention layer {b['layer']} head {b['head']} ({b['offset']})"
        f["diagonal_aer"] = float(a.alignment.diagonal["aer"])
        f["layer_avg_aer"] = {o: [float(x) for x in a.alignment.aer_avg[i]]
                              for i, o in enumerate(OFFSETS)}
    if a.syntax is not None:
        f["best_head_per_relation"] = {
            r["relation"]: {"head": f"L{r['layer']} H{r['head']} {r['direction']}",
                         "accuracy": float(r["accuracy"]),
                         "best_baseline": float(r["best_baseline"])}
            for r in a.syntax.table}
    if a.ffn is not None:
        f["ffn"] = {f"{m.kind} {m.layer}": {k: (float(v) if isinstance(v, (int, float, np.floating))
                                                else v) for k, v in m.summary.items()}
                    for m in a.ffn.layers}
    if a.lens is not None:
        f["lens_vs_gold"] = [float(x) for x in a.lens.vs_gold]
    if a.similarity is not None:
        f["encoder_cka"] = np.round(a.similarity.encoder_cka, 3).tolist()
        f["decoder_cka"] = np.round(a.similarity.decoder_cka, 3).tolist()
    if a.importance is not None:
        imp = a.importance
        top = np.argsort(-imp.delta)[:3]
        f["most_important_heads"] = [(" ".join(map(str, imp.heads[i])), float(imp.delta[i]))
                                     for i in top]
        f["base_loss"] = float(imp.base_loss)
    if a.pruning is not None:
        f["prunable_heads"] = a.pruning.max_prunable
        f["heads"] = len(a.pruning.order)
        f["base_bleu"] = a.pruning.base_bleu
    if a.rollout is not None:
        f["rollout_spearman"] = {k: {m: float(x) for m, x in v.items()}
                                 for k, v in a.rollout.mean_spearman.items()}
        f["rollout_top1"] = {k: float(v) for k, v in a.rollout.top1.items()}
    if a.checkpoints is not None:
        f["aer_over_training"] = [(s, float(x)) for s, x in zip(a.checkpoints.steps,
                                                                a.checkpoints.best_aer)]
        f["aer_over_training_from"] = a.learning_from
    f["seconds"] = {k: round(v, 2) for k, v in a.seconds.items()}
    return f


def _heads_heatmaps(table, title, fmt=".3f"):
    """One heat map per attention kind, all on one colour scale (the range
    of every kind's values) so that shades compare across kinds."""
    mats = {kind: np.asarray(m, dtype=np.float64) for kind, m in table.items()}
    finite = [m[np.isfinite(m)] for m in mats.values()]
    finite = np.concatenate(finite) if finite else np.zeros(0)
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    out = ""
    for kind, m in mats.items():
        out += H.heatmap_svg(m, [f"layer {i}" for i in range(m.shape[0])],
                             [f"head {h}" for h in range(m.shape[1])],
                             title=f"{title}: {kind}", fmt=fmt, vmin=lo, vmax=hi)
    return out


def analysis_report(a, title="What the translator learned, measured on a test set"):
    """The HTML report (an explain.html.Report, headed `title`) of the
    Analysis `a` that run_analysis returned."""
    rep = H.Report(title, subtitle=f"{a.n_pairs} sentence pairs; every number below was "
                                   f"measured on them")
    rep.add_section("Answers, in numbers", "Each answer links to its section below.",
                    H.table_html(["question", "answer"], _answers(a)), id="answers")
    for section in _ANALYSIS_SECTIONS:
        section(rep, a)
    rep.add_section("How long each measure took", "Wall-clock seconds on this machine.",
                    H.table_html(["measure", "seconds"], [[k, v] for k, v in a.seconds.items()],
                                 number_format=".2f"), id="timing")
    return rep

def _answers(a):
    """[question, answer] rows of the measures that ran."""
    f = findings(a)
    answers = []
    if a.alignment is not None:
        answers.append(["Does cross-attention align words?",
                        f"Yes: best AER {f['best_aer']:.3f} ({f['best_aer_where']}) against "
                        f"{f['diagonal_aer']:.3f} for the diagonal baseline."])
    if a.syntax is not None:
        wins = [r for r in a.syntax.table if r["accuracy"] > r["best_baseline"]]
        answers.append(["Do heads track syntax?",
                        f"For {len(wins)} of {len(a.syntax.table)} relations a head beats "
                        f"every positional baseline: "
                        + ", ".join(f"{r['relation']} {r['accuracy']:.2f}" for r in wins) + "."])
    if a.ffn is not None:
        dec = [m for m in a.ffn.layers if m.kind == "decoder"]
        if dec:
            answers.append(["What do the FFN layers store?",
                            "Encoder neurons detect words and parts of speech; in the decoder "
                            "the share of top triggers followed by their value's top word "
                            "rises by layer: " + ", ".join(
                                f"layer {m.layer} {100 * m.summary['agreement']:.0f}%"
                                for m in dec)
                            + f" (chance {100 * dec[0].summary['agreement_chance']:.2f}%)."])
    if a.ffn is not None:
        from .ffn import ffn_answer
        answers.append(ffn_answer(a.ffn, "encoder"))
    if a.similarity is not None:
        c = a.similarity.decoder_cka
        answers.append(["Is every layer the same function?",
                        "No: linear CKA between consecutive decoder layers is "
                        + ", ".join(f"{c[i, i + 1]:.2f}" for i in range(c.shape[0] - 1))
                        + " (1 = the same representation)."])
    if a.checkpoints is not None:
        known = [(s, x) for s, x in f["aer_over_training"] if s is not None]
        source = ("the model's training snapshots" if a.learning_from == "snapshots"
                  else "the checkpoints given")
        answers.append(["When does alignment emerge?",
                        f"Best AER at each step of {source}: " + ", ".join(
                            f"{x:.2f} (step {s})" for s, x in known) + "." if known else
                        "The checkpoints record no steps."])
    elif a.learning_note:
        answers.append(["When does alignment emerge?", a.learning_note[0].upper()
                        + a.learning_note[1:] + "."])
    if a.pruning is not None and a.pruning.max_prunable is not None:
        answers.append(["Are all heads needed?",
                        f"{a.pruning.max_prunable} of {len(a.pruning.order)} heads can be "
                        f"removed with less than {a.pruning.max_drop:g} BLEU lost."])
    return answers

def _alignment_section(rep, a):
    if a.alignment is None:
        return
    al = a.alignment
    body = ""
    for i, o in enumerate(OFFSETS):
        body += H.heatmap_svg(al.aer_head[i], [f"layer {l}" for l in range(al.num_layers)],
                              [f"head {h}" for h in range(al.num_heads)],
                              title=f"AER per head, offset '{o}' (lower is better)",
                              vmin=0, vmax=1, fmt=".3f")
    body += H.table_html(["offset"] + [f"layer {l} (heads averaged)"
                                       for l in range(al.num_layers)] + ["diagonal"],
                         [[o] + list(al.aer_avg[i]) + [al.diagonal["aer"]]
                          for i, o in enumerate(OFFSETS)], number_format=".3f")
    rep.add_section("Alignment: cross-attention against gold", al.caption, body,
                    id="alignment")


def _emergence_section(rep, a):
    if a.checkpoints is None:
        if a.learning_note:
            rep.add_section("When does alignment emerge?",
                            a.learning_note[0].upper() + a.learning_note[1:] + ".", "",
                            id="emergence")
        return
    ck = a.checkpoints
    known = [i for i, s in enumerate(ck.steps) if s is not None]
    body = ""
    if len(known) >= 2:             # one point per step, equally spaced (log-spaced steps)
        body += steps_chart_svg([ck.steps[i] for i in known],
                                {"best AER": [ck.best_aer[i] for i in known],
                                 "final model's best head": [ck.aer_at_final_best[i]
                                                             for i in known],
                                 "diagonal": [ck.diagonal_aer] * len(known)},
                                "AER during training", "AER", dashed=("diagonal",),
                                xlabel="training step (one point per checkpoint)")
    body += H.table_html(
        ["checkpoint", "step", "best AER", "where", "AER of the final best head"],
        [[p.rsplit("/", 1)[-1], "not recorded" if s is None else s, ck.best_aer[i],
          f"layer {b['layer']} head {b['head']} ({b['offset']})", ck.aer_at_final_best[i]]
         for i, (p, s, b) in enumerate(zip(ck.paths, ck.steps, ck.best))],
        number_format=".3f")
    rep.add_section("When does alignment emerge?", ck.caption, body, id="emergence")


def _syntax_section(rep, a):
    if a.syntax is None:
        return
    rep.add_section("Syntactic heads", a.syntax.caption,
                    H.table_html(["relation", "count", "best head", "accuracy",
                                  "best positional baseline", "winner"],
                                 _best_relation_rows(a.syntax), number_format=".2f"),
                    id="syntax")


def _ffn_section(rep, a):
    if a.ffn is None:
        return
    body = ""
    for m in a.ffn.layers:
        rows = []
        for n in m.neurons[:8]:
            trig = "; ".join(" ".join(t.context[-3:]) for t in n.triggers[:3])
            prom = ", ".join(w for w, _ in n.promoted[:3])
            share = ", ".join(f"{k}: {lab} {100 * sh:.0f}%" for k, (lab, sh)
                              in n.shares.items())
            rows.append([n.neuron, n.mean, trig, share, prom])
        body += H.table_html(["neuron", "mean act.", "top triggers (left context)",
                              "what the triggers share", "value promotes"], rows,
                             caption=m.caption)
    rep.add_section("What the feed-forward layers store (key-value memories)",
                    a.ffn.caption, body, id="ffn")


def _lens_section(rep, a):
    if a.lens is None:
        return
    L = len(a.lens.vs_gold)
    rep.add_section("The logit lens over the test set", a.lens.caption,
                    H.table_html(["decoder layer", "= final prediction", "= gold next word",
                                  "p(gold)"],
                                 [[i, a.lens.vs_final[i], a.lens.vs_gold[i],
                                   a.lens.gold_prob[i]] for i in range(L)],
                                 number_format=".3f"), id="lens")


def _layers_section(rep, a):
    if a.similarity is None:
        return
    sim = a.similarity
    body = H.heatmap_svg(sim.encoder_cka, sim.encoder_labels, sim.encoder_labels,
                         title="encoder: linear CKA", vmin=0, vmax=1)
    body += H.heatmap_svg(sim.decoder_cka, sim.decoder_labels, sim.decoder_labels,
                          title="decoder: linear CKA", vmin=0, vmax=1)
    body += H.table_html(["stack", "layer", "sublayer", "||update|| / ||stream||",
                          "CKA(in, in + update)", "CKA(in, update)"],
                         [[r["kind"], r["layer"], r["sublayer"], r["update_ratio"],
                           r["cka_in_sum"], r["cka_in_out"]] for r in sim.sublayers],
                         number_format=".3f")
    rep.add_section("Are the layers the same function?", sim.caption, body, id="layers")


def _heads_section(rep, a):
    if a.importance is None:
        return
    body = _heads_heatmaps(a.importance.table, "loss increase when the head is zeroed")
    if a.pruning is not None:
        pts = a.pruning.points
        key = "bleu" if a.pruning.bleu_available else "loss"
        body += H.line_chart_svg([p["k"] for p in pts], {key: [p[key] for p in pts]},
                                 title=f"{key} with the k least important heads removed",
                                 xlabel="heads removed", ylabel=key)
        body += f"<p>{H.escape(a.pruning.caption)}</p>"
    rep.add_section("Which heads matter? (ablation and pruning)", a.importance.caption,
                    body, id="heads")


def _rollout_section(rep, a):
    if a.rollout is None:
        return
    ro = a.rollout
    rows = [[m, ro.mean_spearman["raw"][m], ro.mean_spearman["rollout"][m], ro.better[m]]
            for m in ro.mean_spearman["raw"]]
    rows.append(["top-1 agreement", ro.top1["raw"], ro.top1["rollout"], ro.better["top1"]])
    body = H.table_html(["Spearman with ablation influence", "raw attention", "rollout",
                         "better"], rows, number_format=".3f")
    if ro.raw:
        body += H.heatmap_svg(np.asarray(ro.raw[0]), ro.tgt_tokens[0], ro.src_tokens[0],
                              title="example: raw last-layer cross-attention", vmin=0)
        body += H.heatmap_svg(np.asarray(ro.rollout[0]), ro.tgt_tokens[0],
                              ro.src_tokens[0], title="example: rollout", vmin=0)
        body += H.heatmap_svg(np.asarray(ro.influence[0]), ro.tgt_tokens[0],
                              ro.src_tokens[0][:-1], title="example: ablation influence",
                              vmin=0)
    rep.add_section("Raw attention or rollout: which predicts influence?", ro.caption, body,
                    id="rollout")


# the sections after the answers, in reading order
_ANALYSIS_SECTIONS = (_alignment_section, _emergence_section, _syntax_section, _ffn_section,
                      _lens_section, _layers_section, _heads_section, _rollout_section)
