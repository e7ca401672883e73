"""Test configuration: bounded, derandomized hypothesis profiles.

Profiles (select with HYPOTHESIS_PROFILE=...): "ci" (default; derandomized,
few examples, so the suite stays within minutes on 2 cores) and "dev" (more
examples, random).
"""
import os
import signal

import pytest

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=25, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# A runner started in the background of a non-interactive shell inherits
# SIGINT ignored (POSIX), and its children inherit that too: every Ctrl-C
# the tests send would be lost. The tests run with Python's own handler, as
# an interactive run does; the children, started from a handled signal,
# begin with the default disposition.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="module")
def shipped():
    """The translator shipped in the package (one load per test module);
    the test is skipped where the installation has none."""
    from pytransformer.translator import Translator, default_model_path
    path = default_model_path()
    if path is None:
        pytest.skip("no shipped model in this installation")
    return Translator.load(path)


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    """The explain caches of the run go to a temporary directory, never to
    the user's ~/.cache (shared by the whole session, so each cache is
    computed once)."""
    old = os.environ.get("PYTRANSFORMER_CACHE_DIR")
    os.environ["PYTRANSFORMER_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("PYTRANSFORMER_CACHE_DIR", None)
    else:
        os.environ["PYTRANSFORMER_CACHE_DIR"] = old
