"""An XML secret's text in a CDATA section or after a blank, and a Kubernetes env value's deeper lines.

s50 RP's review of session 50's configuration shapes: the XML rules took an element's text only when it
started with a character that is no ``<`` and no blank, so a password written as a CDATA section (the
way a value holding ``<`` or ``&`` is written: ``<password><![CDATA[x]]></password>``, Hadoop's
``<value><![CDATA[x]]></value>``, ``<entry key="db.password"><![CDATA[x]]></entry>``) or after a blank
(``<password> a b</password>``) was kept whole, and .NET's settings file, which holds the text in a
``<value>`` element (``<setting name="DbPassword" serializeAs="String"><value>x</value>``), too. A
Kubernetes env entry's plain value continued on deeper lines (``value: a`` then ``  S``: PyYAML reads
``a S``) kept those lines: the block-scalar form went (session 50), the plain one did not; and an
entry written value first (``- value: >-`` then its lines, then ``name: DB_PASSWORD``) kept its value.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import yaml

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import written_buffer

_PW = "RP50xmlSecret"


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("<c><password><![CDATA[a<b&{pw}]]></password><user>bob</user></c>", "password"),
        ("<c><password>\n  <![CDATA[{pw}]]>\n</password><user>bob</user></c>", "password"),
        ("<c><password> a {pw} </password><user>bob</user></c>", "password"),
        (
            "<c><property><name>javax.jdo.option.ConnectionPassword</name>"
            "<value><![CDATA[{pw}]]></value></property><user>bob</user></c>",
            "property/value",
        ),
        ('<c><entry key="db.password"><![CDATA[{pw}]]></entry><user>bob</user></c>', "entry"),
        (
            '<c><setting name="DbPassword" serializeAs="String">\n  <value>{pw}</value>\n</setting>'
            "<user>bob</user></c>",
            "setting/value",
        ),
        (
            '<c><setting name="ApiToken" serializeAs="String"><value><![CDATA[{pw}]]></value></setting>'
            "<user>bob</user></c>",
            "setting/value",
        ),
    ],
)
def test_an_xml_secrets_text_goes_in_any_form(text: str, path: str) -> None:
    text = text.format(pw=_PW)
    assert _PW in "".join(ET.fromstring(text).find(path).itertext())  # type: ignore[union-attr]
    out = written_buffer(text)
    assert _PW not in out, out
    assert out.endswith("<user>bob</user></c>"), out


def test_a_cdata_section_cut_before_its_end_goes_to_the_end() -> None:
    assert written_buffer(f"<password><![CDATA[a {_PW}") == "<password>[REDACTED]"


@pytest.mark.parametrize(
    "text",
    [
        "the <auth> element is set",
        "<x><![CDATA[ordinary]]></x>",
        '<setting name="Theme" serializeAs="String"><value>dark</value></setting>',
    ],
)
def test_xml_text_no_secret_names_stays(text: str) -> None:
    assert written_buffer(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "env:\n  - name: DB_PASSWORD\n    value: a\n      {pw}\n    x: y\n",
        "- name: API_TOKEN\n  value: a\n\n    {pw}\n",
    ],
)
def test_a_kubernetes_env_values_deeper_lines_go_with_it(text: str) -> None:
    text = text.format(pw=_PW)
    loaded = yaml.safe_load(text)
    entry = loaded["env"][0] if isinstance(loaded, dict) else loaded[0]
    assert _PW in entry["value"]  # PyYAML reads the deeper line into the value
    out = written_buffer(text)
    assert _PW not in out, out
    assert "value: [REDACTED]" in out, out


@pytest.mark.parametrize(
    "text",
    [
        # the entry written value first (privacy/value_first_lines.py): a block scalar, a plain value
        # continued on deeper lines, a blank line before the name
        "env:\n  - value: >-\n      {pw}\n    name: DB_PASSWORD\n  - name: X\n    value: y\n",
        "env:\n  - value: a\n      {pw}\n    name: DB_PASSWORD\n  - name: X\n    value: y\n",
        "env:\n- value: |\n    {pw}\n\n  name: api_token\n- name: X\n  value: y\n",
    ],
)
def test_a_value_first_env_entrys_lines_go(text: str) -> None:
    text = text.format(pw=_PW)
    entry = yaml.safe_load(text)["env"][0]
    assert _PW in entry["value"]
    out = written_buffer(text)
    assert _PW not in out, out
    assert "value: [REDACTED]" in out, out
    assert out.endswith("- name: X\n    value: y\n") or out.endswith("- name: X\n  value: y\n"), out


def test_a_value_first_entry_naming_no_secret_keeps_its_lines() -> None:
    text = "env:\n  - value: |\n      line one\n      line two\n    name: LOG_FORMAT\n"
    assert written_buffer(text) == text


def test_xml_text_and_env_lines_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    for unit in (
        "<password><![CDATA[",
        "<password><![CDATA[a]]",
        "<password> a ",
        '<setting name="db_token"><value>',
        '<entry key="password"><![CDATA[',
        "- name: DB_PASSWORD\n  value: a\n   ",
        "- value: a\n   b\n  name: DB_PASSWORD\n",
        "- value: |\n   b\n\n",
        " value: a\n  value: b\n   ",
    ):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit
