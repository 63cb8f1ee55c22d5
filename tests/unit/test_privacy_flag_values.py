"""Secrets the filter let through until session 34, each now redacted (privacy/flag_values.py and others).

Last session's "Not recognised" list: ``--credentials X``, ``--jwt X``,
``--bearer X``, ``--key X``, Windows ``/password:X``, ``net use`` and ``net
user`` passwords, ``PASSWORD\\=X``, a bare ``password X``, an environment entry
with its value before its name, and a JWT glued to a word (detect-secrets'
rule took its first two parts and left the signature). A value that is a path,
a file reference or a plain word stays. The forms that were already redacted
(``curl -u``, ``sshpass -p``, ``mysql -p``, SAS ``&sig=``, ``AKIA`` keys, PEM
blocks) are kept here as a check that the new rules did not take their place.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.redact import redact
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.S3cretSigQ9x"

# (text, executed binary's basename, exact output, the rule counted)
LEAKED_BEFORE = [
    ("app --credentials S3cretQ9", "", "app --credentials [REDACTED]", "cli_flag_secret"),
    ("app --credentials=S3cretQ9 -v", "", "app --credentials=[REDACTED] -v", "cli_flag_secret"),
    ("app --gcp-credential 'S3cret Q9'", "", "app --gcp-credential [REDACTED]", "cli_flag_secret"),
    ("app --cred S3cretQ9", "", "app --cred [REDACTED]", "cli_flag_secret"),
    ("app --jwt S3cretQ9", "", "app --jwt [REDACTED]", "cli_flag_secret"),
    ("app --bearer S3cretQ9 -X GET", "", "app --bearer [REDACTED] -X GET", "cli_flag_secret"),
    ("app --bearer=S3cretQ9", "", "app --bearer=[REDACTED]", "cli_flag_secret"),
    ("wmic /user:adm /password:S3cretQ9 os", "", "wmic /user:adm /password:[REDACTED] os", "cli_flag_secret"),
    ('tool "/Pwd:S3cretQ9"', "", 'tool "/Pwd:[REDACTED]"', "cli_flag_secret"),
    ("cmdkey /generic:x /pass:S3cretQ9", "", "cmdkey /generic:x /pass:[REDACTED]", "cli_flag_secret"),
    ("app /apikey=S3cretQ9", "", "app /apikey=[REDACTED]", "cli_flag_secret"),
    ("app --key S3cretQ9", "", "app --key [REDACTED]", "cli_flag_secret"),
    ("app --key=q83vEjRWeJA= x", "", "app --key=[REDACTED] x", "cli_flag_secret"),
    ("app --encryption-key MyS3cret", "", "app --encryption-key [REDACTED]", "cli_flag_secret"),
    ("app password S3cretQ9", "", "app password [REDACTED]", "password"),
    ("mysqladmin -u root PASSWORD N3wPw!", "", "mysqladmin -u root PASSWORD [REDACTED]", "password"),
    ("app passphrase correcthorsebatterystaple", "", "app passphrase [REDACTED]", "password"),
    ("app PASSWORD\\=S3cretQ9 x", "", "app PASSWORD\\=[REDACTED] x", "password"),
    ("app db.password\\=S3cretQ9", "", "app db.password\\=[REDACTED]", "password"),
    ("env MYAPP_CREDENTIAL\\=S3cretQ9 run", "", "env MYAPP_CREDENTIAL\\=[REDACTED] run", "env_name"),
    (
        "net use Z: \\\\srv\\s S3cretQ9 /user:bob",
        "",
        "net use Z: \\\\srv\\s [REDACTED] /user:bob",
        "cli_option",
    ),
    ("use \\\\srv\\s /user:bob S3cretQ9", "net.exe", "use \\\\srv\\s /user:bob [REDACTED]", "cli_option"),
    ("user alice S3cretQ9 /add", "net", "user alice [REDACTED] /add", "cli_option"),
    ("use \\\\srv\\s /p:S3cretQ9", "net", "use \\\\srv\\s /p:[REDACTED]", "cli_option"),
    ("echo Zm9v" + JWT, "", "echo Zm9v[REDACTED]", "jwt"),
    ("echo tok_" + JWT + " x", "", "echo tok_[REDACTED] x", "jwt"),
    (
        '[{"value":"S3cretQ9","name":"DB_PASSWORD"}]',
        "",
        '[{"value":[REDACTED],"name":"DB_PASSWORD"}]',
        "env_name",
    ),
    (
        "{'value': 'S3 cretQ9', 'name': 'api.token'}",
        "",
        "{'value': [REDACTED], 'name': 'api.token'}",
        "env_name",
    ),
    (
        "- value: S3cretQ9\n  name: DB_PASSWORD\n",
        "",
        "- value: [REDACTED]\n  name: DB_PASSWORD\n",
        "env_name",
    ),
    (
        '{\\"value\\": \\"S3cretQ9\\", \\"name\\": \\"SECRET_KEY\\"}',
        "",
        '{\\"value\\": [REDACTED], \\"name\\": \\"SECRET_KEY\\"}',
        "env_name",
    ),
]

ALREADY_REDACTED = [
    ("-psecretQ9 shop", "mysql", "-p[REDACTED] shop"),
    ("sshpass -p S3cretQ9 ssh h", "", "sshpass -p [REDACTED] ssh h"),
    ("curl -u bob:S3cretQ9 https://h", "", "curl -u bob:[REDACTED] https://h"),
    ('curl --header "X-Api-Key: S3cretQ9" https://h', "", 'curl --header "X-Api-Key: [REDACTED]" https://h'),
    (
        "app --api-token=S3cretQ9 --client-secret S3cretQ9",
        "",
        "app --api-token=[REDACTED] --client-secret [REDACTED]",
    ),
    ("curl 'https://h/x?access_token=S3cretQ9&n=1'", "", "curl 'https://h/x?access_token=[REDACTED]&n=1'"),
    (
        "curl https://a.blob.net/c?sv=1&sig=S3cretQ9%3D&se=2",
        "",
        "curl https://a.blob.net/c?sv=1&sig=[REDACTED]&se=2",
    ),
    ("echo xAKIAIOSFODNN7EXAMPLE", "", "echo x[REDACTED]"),
    (
        "-----BEGIN EC PRIVATE KEY-----S3cretQ9-----END EC PRIVATE KEY-----",
        "",
        "-----BEGIN EC PRIVATE KEY-----[REDACTED]-----END EC PRIVATE KEY-----",
    ),
    ("app --jwt " + JWT, "", "app --jwt [REDACTED]"),
]

KEPT = [
    "gcloud --credentials /etc/gcp/sa.json --credentials=creds.json --credentials ~/c.json",
    "app --credentials ./c.yaml --credentials C:\\keys\\c.json --jwt @token.txt --bearer env:TOKEN",
    "app --credentials-file /x --jwt-file ./jwt.txt --bearer-token-file /run/t",
    "curl --key /etc/tls/client.key --cert c.crt https://h",
    "aws s3api get-object --bucket b --key reports/2026/a.csv out.csv",
    "tool --key index.html --key prod --key 12345 --key ssh-rsa",
    "echo forgot password now; reset password for bob. Enter password again?",
    'psql -c "ALTER ROLE app PASSWORD NULL"',
    "cat /etc/passwd:x",
    "net use Z: \\\\srv\\s * /user:bob /p:yes; net user bob /delete; net view",
    '[{"value":"8080","name":"PORT"},{"name":"HOME","value":"/root"}]',
]


@pytest.mark.parametrize(("text", "tool", "want", "rule"), LEAKED_BEFORE)
def test_a_secret_the_filter_let_through_is_redacted(text: str, tool: str, want: str, rule: str) -> None:
    pf = PrivacyFilter(PrivacyConfig())
    assert pf.filter_field(text, tool=tool) == want
    assert pf.redactions_by_pattern[rule] >= 1
    assert pf.redact_text(want, tool=tool) == want  # read again: unchanged


@pytest.mark.parametrize(("text", "tool", "want"), ALREADY_REDACTED)
def test_forms_redacted_before_are_still_redacted(text: str, tool: str, want: str) -> None:
    assert PrivacyFilter(PrivacyConfig()).filter_field(text, tool=tool) == want


@pytest.mark.parametrize("text", KEPT)
def test_paths_references_and_plain_words_are_kept(text: str) -> None:
    pf = PrivacyFilter(PrivacyConfig())
    assert pf.filter_field(text) == text
    assert not any(pf.redactions_by_pattern.values())


def test_a_rejected_value_does_not_hide_a_secret_inside_it() -> None:
    # A path after --credentials is kept, but the rules search on inside it (engine.sub_compiled).
    out = PrivacyFilter(PrivacyConfig()).filter_field("app --credentials /c.json?token=S3cretQ9 -v")
    assert out == "app --credentials /c.json?token=[REDACTED] -v"


def test_the_message_redaction_reads_an_escaped_equals_sign() -> None:
    assert redact("app PASSWORD\\=S3cretQ9 x") == "app PASSWORD\\=*** x"


def test_hostile_runs_around_the_new_rules_are_read_in_linear_time() -> None:
    # Each run is 64 KiB of what the new rules start on; a rule that searched the rest of the run
    # from every start would take minutes. Run where a hang cannot stop the test run.
    code = (
        "from stellaops_runtime.contracts.config import PrivacyConfig\n"
        "from stellaops_runtime.privacy import PrivacyFilter\n"
        "pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=65536))\n"
        "units = ['password ', '/pass', '/ pass', '--key ', '--key a.', '--cred ', 'value:',\n"
        "         '\"value\":\"', 'value: x\\n', 'tok_eyJa.', '--credentials a/', 'net use \\\\\\\\',\n"
        "         'user a ', 'PASSWORD\\\\']\n"
        "for u in units:\n"
        "    pf.filter_field((u * (65536 // len(u) + 1))[:65536])\n"
        "print('done')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=dict(os.environ), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "done"


# A value that starts as a path, holding the same flag again glued to it (a value runs to a blank): the
# validator rejected it and the search read the rest again from each glued flag, 14-16x for 4x the text
# (2.8 s on 32 KiB; 51 s through the one alternation before rule_scan.py).
@pytest.mark.parametrize(
    ("unit", "flag"),
    [
        ("--key=/a:", "--key="),
        ('--key=\\"', "--key="),
        ("--bearer=/a:", "--bearer="),
        ("(/token:/a", "(/token:"),
    ],
)
def test_a_path_holding_its_flag_again_is_read_once(unit: str, flag: str) -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    ratio = growth(lambda run: pf.redact_text(run), unit, size=32768)
    assert ratio < 8, (unit, ratio)
    assert pf.redact_text(unit * 3) == unit * 3  # a path stays
    # a secret after the same flag glued to it still goes
    assert pf.redact_text(f"{unit * 3} {flag}S3cretQ9x") == f"{unit * 3} {flag}[REDACTED]"


def test_encoded_text_is_left_to_entropy_detection() -> None:
    # Decided, documented (docs/privacy.md, Known limits): base64 and hex are not decoded.
    import base64

    texts = [
        b"password=S3cretPassword123",
        b"DB_PASSWORD=hunter2-s3cret-value",
        b'{"password":"Xq9!vL2#pR7$wK4m"}',
    ]
    b64 = [base64.b64encode(t).decode() for t in texts]
    hexed = [t.hex() for t in texts]
    plain = PrivacyFilter(PrivacyConfig())
    assert [plain.filter_field(f"echo {x}") for x in b64 + hexed] == [f"echo {x}" for x in b64 + hexed]
    entropy = PrivacyFilter(PrivacyConfig(entropy_detection=True))
    assert [entropy.filter_field(f"echo {x}") for x in b64] == [
        f"echo {b64[0]}",
        "echo [REDACTED]",
        "echo [REDACTED]",
    ]
    assert [entropy.filter_field(f"echo {x}") for x in hexed] == [f"echo {x}" for x in hexed]
