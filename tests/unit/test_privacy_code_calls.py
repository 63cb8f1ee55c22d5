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


def test_a_password_literal_in_a_single_quoted_shell_script_goes_whole() -> None:
    # sh -c '…' writes the code's own single quotes as '\'' (or '"'"'): the literal 'pw' is
    # '\''pw'\'' there, and only its opening '\'' went, the password after it stayed (RP3 review).
    for q in ("'\\''", "'\"'\"'"):
        text = f"sh -c 'php -r \"new PDO(\\$d, {q}root{q}, {q}PdoShQ-7k2{q});\"'"
        assert _filter(text) == f"sh -c 'php -r \"new PDO(\\$d, {q}root{q}, [REDACTED]);\"'", q
    cut = PrivacyFilter(PrivacyConfig(max_argument_bytes=64))
    text = (
        "sh -c 'python3 -c \"ftplib.FTP('\\''h'\\'', '\\''u'\\'', '\\''FtpShCutPassword-4x4x4x4x4x4x'\\'')\"'"
    )
    assert "FtpShCut" not in cut.filter_field(text)


def test_go_raw_strings_js_template_literals_and_triple_quotes_are_password_literals() -> None:
    # Go's `…` (smtp.PlainAuth), JavaScript's template literal (new Sequelize), Python's '''…''' and
    # C#'s @"…" / $"…" (NetworkCredential): the literal kept its password (RP3 review).
    cases = {
        'smtp.PlainAuth("", "u", `GoRaw-5t1`, host)': 'smtp.PlainAuth("", "u", [REDACTED], host)',
        "new Sequelize('db', 'u', `JsTpl-8c3`, {})": "new Sequelize('db', 'u', [REDACTED], {})",
        "ftplib.FTP('h', 'u', '''PyTriple-2m6''')": "ftplib.FTP('h', 'u', [REDACTED])",
        'FTP("h", "u", """PyTriple-9d4""")': 'FTP("h", "u", [REDACTED])',
        'new NetworkCredential("u", @"CsVerb-3q8")': 'new NetworkCredential("u", [REDACTED])',
        'new NetworkCredential("u", $"CsInterp-6w1")': 'new NetworkCredential("u", [REDACTED])',
    }
    for text, want in cases.items():
        assert _filter(text) == want, text
