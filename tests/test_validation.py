"""pytransformer.validation: the one home of scalar argument checks."""
import numpy as np
import pytest

from pytransformer.validation import (ArgumentTypeError, choice_arg, dtype_arg, flag_arg,
                                      int_arg, real_arg)


def test_int_arg_accepts_ints_and_refuses_the_rest_naming_the_argument():
    assert int_arg("n", 3) == 3 and int_arg("n", np.int32(4)) == 4
    assert int_arg("n", np.array(5)) == 5 and type(int_arg("n", np.int64(2))) is int
    for bad in (True, np.bool_(False), 2.0, "2", None, np.array([1]), np.array(1.0)):
        with pytest.raises(ArgumentTypeError, match=r"^n: expected an int, got "):
            int_arg("n", bad)
    with pytest.raises(ValueError, match=r"^beam: expected a positive int, got 0$"):
        int_arg("beam", 0, low=1)
    with pytest.raises(ValueError, match=r"^seed: expected a non-negative int, got -1$"):
        int_arg("seed", -1, low=0)
    with pytest.raises(ValueError, match=r"^k: expected an int in \[2, 4\], got 5$"):
        int_arg("k", 5, 2, 4)
    assert int_arg("k", 4, 2, 4) == 4


def test_wrong_types_are_both_type_and_value_errors():
    """Callers that catch bad settings as ValueError (the command line)
    and those that expect a TypeError both see a wrong type."""
    for call in (lambda: int_arg("n", 1.5), lambda: real_arg("x", "1"),
                 lambda: flag_arg("f", 1), lambda: dtype_arg("dtype", "int8")):
        with pytest.raises(TypeError):
            call()
        with pytest.raises(ValueError):
            call()


def test_real_arg_ranges_refuse_nan_and_huge_ints():
    assert real_arg("x", 1) == 1.0 and real_arg("x", np.float32(0.5)) == 0.5
    assert np.isnan(real_arg("x", float("nan")))          # no range: NaN passes
    with pytest.raises(ValueError, match=r"^lr: expected a number >= 0, got nan$"):
        real_arg("lr", float("nan"), low=0)
    with pytest.raises(ValueError, match=r"^p: expected a number in \[0, 1\), got 1.0$"):
        real_arg("p", 1.0, low=0, below=1)
    with pytest.raises(ValueError, match="out of the float range"):
        real_arg("x", 2**1024)


def test_flag_choice_dtype():
    assert flag_arg("f", np.bool_(True)) is True
    with pytest.raises(ArgumentTypeError, match=r"^f: expected a bool, got int 1$"):
        flag_arg("f", 1)
    assert choice_arg("kind", "gnmt", ("gnmt", "power")) == "gnmt"
    with pytest.raises(ValueError, match=r"^kind: expected one of 'gnmt', 'power', got 'x'$"):
        choice_arg("kind", "x", ("gnmt", "power"))
    assert dtype_arg("dtype", None) == np.float32 and dtype_arg("dtype", "float64") == np.float64
    with pytest.raises(ArgumentTypeError, match=r"^dtype: expected float32 or float64"):
        dtype_arg("dtype", np.int8)


def test_messages_cap_hostile_values():
    with pytest.raises(ValueError) as info:
        choice_arg("kind", "x" * 10**6, ("a",))
    assert len(str(info.value)) < 120
