"""Credentials never reach a problem body: the server's scrub builds on the shared redaction."""

from __future__ import annotations

import pytest

from nanobrain.interfaces.http.problems import scrub


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("cannot reach redis://:hunter2pw@cache:6379/0", "hunter2pw"),  # an empty user name
        ("cannot reach postgresql://ada:p@ss-w0rd@db/app", "p@ss-w0rd"),  # a password holding '@'
        ("upstream said: Bearer abcdefghijklmnop", "abcdefghijklmnop"),
        ("HTTP 401 for key sk-proj-abcdefghijkl", "abcdefghijkl"),
        ("config: api_key=topsecretvalue", "topsecretvalue"),
        ("password: correcthorse", "correcthorse"),
    ],
)
def test_scrub_hides_every_kind_of_credential(text: str, hidden: str) -> None:
    assert hidden not in scrub(text)
    assert scrub(text).split()[0] == text.split()[0]  # the rest of the message stays readable
