"""Passwords given by position to a connect or login call in code (privacy/code_calls.py).

The corpus (corpus.yaml, "a password passed by position") holds the call forms; these pin what the
corpus cannot: a listed call inside another's arguments, the bound on such nesting (fail closed),
and a field cut inside the password literal.
"""

from __future__ import annotations

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from stellaops_runtime.privacy.code_calls import MAX_NESTED_CALLS, code_call_spans


def _filter(text: str) -> str:
    return PrivacyFilter(PrivacyConfig()).filter_field(text)


def test_a_listed_call_inside_another_calls_arguments_is_read_too() -> None:
    text = "python3 -c \"s.login(user, FTP('h', 'u', 'NestFtp-4k1').pwd())\""
    assert _filter(text) == "python3 -c \"s.login(user, FTP('h', 'u', [REDACTED]).pwd())\""


def test_past_the_nesting_bound_the_rest_of_the_arguments_goes() -> None:
    inner = "".join(f"FTP('h', 'u', x{i}) " for i in range(MAX_NESTED_CALLS + 2))
    text = f"s.login(a {inner}'Deep-7q2')"
    spans = code_call_spans(text)
    assert spans
    out = _filter(text)
    assert "Deep-7q2" not in out
    assert out.startswith("s.login(a FTP('h', 'u', x0)")


def test_a_password_literal_cut_by_the_fields_end_goes_to_that_end() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=64))
    text = "php -r \"$d = new PDO($dsn, 'root', 'CutPdoPassword-9x8w7v6u5t4s3r2q1p');\""
    out = pf.filter_field(text)
    assert "CutPdo" not in out
    assert "new PDO($dsn, 'root', [REDACTED]" in out


def test_a_hostile_run_of_openings_is_read_once_and_fails_closed() -> None:
    text = "basic_auth '" * 20000
    out = _filter(text)
    # every quote-opened word after the bound is gone; nothing of the run survives past it
    assert out.count("basic_auth") < MAX_NESTED_CALLS + 4
