"""Placeholder expansion for --exec-on-reception / --exec-on-eostudy, run through a real /bin/sh."""

from __future__ import annotations

import subprocess

import pytest

from storescpd.hooks import expand, host_part


def words(command: str) -> list[str]:
    """The argument words /bin/sh makes of ``command``."""
    out = subprocess.run(
        ["/bin/sh", "-c", f"for w in {command}; do printf '%s\\0' \"$w\"; done"],
        capture_output=True,
        check=True,
    ).stdout
    return out.decode().split("\0")[:-1]


@pytest.mark.parametrize(
    "value",
    ['";touch PWNED;"', "$(id)", "`id`", "a b", "it's", "#r", "*", "\\", "\n", "-x", ""],
)
def test_each_value_is_exactly_one_word(value: str) -> None:
    command = expand("#a #c", {"a": value, "c": "CALLED"})
    assert words(command) == [value, "CALLED"]


def test_substitution_is_one_pass() -> None:
    assert expand("#a", {"a": "#r", "r": "host"}) == "'#r'"


def test_placeholders_without_a_value_stay() -> None:
    assert expand("#p/#f #a", {"a": "AE"}) == "#p/#f AE"


def test_other_hashes_are_left_alone() -> None:
    assert expand("echo #x ## #", {"x": "no"}) == "echo #x ## #"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("localhost", "localhost"), ("pacs.example.org", "pacs"), ("127.0.0.1", "127.0.0.1"),
     ("::1", "::1")],
)  # fmt: skip
def test_r_is_the_host_name_up_to_its_first_dot(name: str, expected: str) -> None:
    assert host_part(name) == expected
