"""JSON and YAML inside arguments hide no secret (privacy/patterns.py, privacy/env_names.py).

Three shapes kept their secret: a key whose quotes are escaped (JSON inside a
shell or JSON string: ``sh -c "curl -d '{\\"password\\": \\"x\\"}'"``), an
``Authorization`` header written as a JSON member (``{"Authorization": "x"}``:
the quote after the name hid the separator), and an environment entry written
as Kubernetes, Docker's API and ECS write it, a name and a value
(``{"name": "DB_PASSWORD", "value": "x"}``, ``- name: DB_PASSWORD`` then
``value: x``). docs/privacy.md, "Order of the passes" and "Environment variables".
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.redact import redact
from stellaops_runtime.privacy import PrivacyFilter

SECRET = "S3cretJs9"

# In the table, ~ is an escaped quote (a backslash and a quote), ^ one escaped twice (three
# backslashes), $ the secret.
_TABLE = [
    # (what, text, expected)
    ("escaped quotes",
     "curl -d {~password~: ~$~} https://h",
     "curl -d {~password~: [REDACTED]} https://h"),
    ("escaped quotes, no space", '"{~api_token~:~$~,~n~:1}"', '"{~api_token~:[REDACTED],~n~:1}"'),
    ("escaped twice", "{^secret^: ^$^} -v", "{^secret^: [REDACTED]} -v"),  # (its brace stays: ESCAPED_DQ)
    ("JSON Authorization member", 'fetch {"Authorization": "$"}', 'fetch {"Authorization": "[REDACTED]"}'),
    ("JSON Authorization, a scheme", '{"authorization":"Token $"}', '{"authorization":"Token [REDACTED]"}'),
    ("escaped JSON Authorization", "-d {~Authorization~: ~$~}", '-d {~Authorization~: ~[REDACTED]~}'),
    ("Kubernetes env in JSON",
     'kubectl patch deploy a -p {"env":[{"name":"DB_PASSWORD","value":"$"},'
     '{"name":"MODE","value":"prod"}]}',
     'kubectl patch deploy a -p {"env":[{"name":"DB_PASSWORD","value":[REDACTED]},'
     '{"name":"MODE","value":"prod"}]}'),
    ("env in JSON with spaces",
     '[{"name": "API_TOKEN", "value": "a b $"}]',
     '[{"name": "API_TOKEN", "value": [REDACTED]}]'),
    ("env in escaped JSON",
     'sh -c "x -p {~name~:~GH_TOKEN~,~value~:~$~}"',
     'sh -c "x -p {~name~:~GH_TOKEN~,~value~:[REDACTED]}"'),
    ("env in YAML",
     "env:\n- name: DB_PASSWORD\n  value: $\n- name: MODE\n  value: prod",
     "env:\n- name: DB_PASSWORD\n  value: [REDACTED]\n- name: MODE\n  value: prod"),
    ("dotted name in YAML",
     "- name: spring.datasource.password\n  value: $",
     "- name: spring.datasource.password\n  value: [REDACTED]"),
    ("Python dict", "{'name': 'SECRET_KEY', 'value': '$'}", "{'name': 'SECRET_KEY', 'value': [REDACTED]}"),
]  # fmt: skip


def _unescape(text: str) -> str:
    return text.replace("^", '\\\\\\"').replace("~", '\\"').replace("$", SECRET)


CASES = [(what, _unescape(text), _unescape(expected)) for what, text, expected in _TABLE]


@pytest.mark.parametrize(("what", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_json_and_yaml_in_arguments_lose_their_secrets(what: str, text: str, expected: str) -> None:
    pf = PrivacyFilter(PrivacyConfig())
    out = pf.filter_field(text)
    assert out == expected, what
    assert SECRET not in out
    assert pf.fields_redacted == 1
    assert pf.redact_text(text) == out  # log text as evidence


@pytest.mark.parametrize(
    "text",
    [
        '{"name":"MODE","value":"prod"}',
        "env:\n- name: HOSTNAME\n  value: web-1",
        '{"name": "app", "image": "nginx", "value": 3}',
        "--name app --value 5",
        '{\\"user\\": \\"bob\\", \\"n\\": 2}',
        '{"Authorization-Mode": 1}',
    ],
)
def test_json_and_yaml_without_a_secret_pass_unchanged(text: str) -> None:
    pf = PrivacyFilter(PrivacyConfig())
    assert pf.filter_field(text) == text
    assert pf.fields_redacted == 0


def test_the_message_redaction_reads_escaped_quotes() -> None:
    out = redact(f'config error near {{\\"password\\": \\"{SECRET}\\"}}')
    assert SECRET not in out
    assert out.startswith("config error near {")
