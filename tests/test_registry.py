import pytest

from moalign.errors import UserError
from moalign.registry import Registry, did_you_mean


def test_register_and_get():
    reg: Registry[int] = Registry("thing")
    reg.register("a")(1)
    assert reg.get("a") == 1
    assert "a" in reg and list(reg) == ["a"] and len(reg) == 1


def test_registering_a_name_twice_is_an_error():
    reg: Registry[int] = Registry("thing")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        reg.add("a", 2)
    assert reg.get("a") == 1


def test_unknown_name_suggests_the_closest():
    reg: Registry[int] = Registry("scorer")
    reg.add("verifier", 1)
    reg.add("length", 2)
    with pytest.raises(
        UserError, match=r"unknown scorer 'lenght' \(did you mean 'length'\?\); known: length, verifier"
    ):
        reg.get("lenght")


def test_did_you_mean_is_empty_when_nothing_is_close():
    assert did_you_mean("zzz", ["learning_rate"]) == ""
