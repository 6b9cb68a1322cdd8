import pickle

import pytest

from rotator.domain.secret_value import SecretValue


def test_secret_value_never_renders() -> None:
    s = SecretValue("CANARY-abc")
    for text in (str(s), repr(s), f"{s}", f"{s!r}", f"{s}", str([s]), str({"k": s})):
        assert "CANARY" not in text
    assert s.reveal() == "CANARY-abc"


def test_secret_value_refuses_pickling() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(SecretValue("CANARY-abc"))


def test_exception_with_secret_value_does_not_leak() -> None:
    err = RuntimeError(f"failed with {SecretValue('CANARY-x')}")
    assert "CANARY" not in str(err)
