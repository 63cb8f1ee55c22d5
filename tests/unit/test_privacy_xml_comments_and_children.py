"""XML secrets around comments, and Hadoop properties whose ``<value>`` is not right after ``<name>`` (s51).

s50 RP's left-alone 2: ``<password><!-- c -->S</password>`` kept ``S`` (a comment before the text), a
comment inside the text kept the piece after it (ElementTree joins the pieces: ``a<!-- c -->S`` reads
``aS``), and Hadoop's and Hive's ``<property>`` kept its ``<value>`` when a ``<description>`` stood between
it and ``<name>``, or when the value came first (Hadoop's Configuration reads a property's children in
any order).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from tests.linear_cost import growth
from tests.privacy_events import exec_arguments, written_buffer

_S = "P51xmlSecret"


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("<password><!-- c -->{s}</password>", "."),
        ("<password>a<!-- c -->{s}</password>", "."),
        ("<db>\n  <password>\n    <!-- rotated -->\n    {s}\n  </password>\n</db>", "password"),
        ('<entry key="db.password"><!-- c -->{s}</entry>', "."),
        # a CDATA section or a processing instruction beside plain text (ElementTree joins the text: s51 RP)
        ("<password>a<![CDATA[b]]>{s}</password>", "."),
        ("<password><![CDATA[b]]>{s}</password>", "."),
        ("<password>a<?pi x?>{s}</password>", "."),
        ("<password><?pi x?>{s}</password>", "."),
    ],
)
def test_a_secret_elements_text_around_a_comment_goes(text: str, tag: str) -> None:
    text = text.format(s=_S)
    assert _S in "".join(ET.fromstring(text).find(tag).itertext())  # type: ignore[union-attr]
    out = written_buffer(text)
    assert _S not in out
    assert out.endswith(text[text.rindex("</") :])  # the closing tag stays
    assert _S not in exec_arguments("/bin/sh", f"-c 'echo \"{text}\" > /etc/app.xml'")


@pytest.mark.parametrize(
    "text",
    [
        "<property><name>fs.s3a.secret.key</name><description>d</description><value>{s}</value></property>",
        "<property>\n  <name>javax.jdo.option.ConnectionPassword</name>\n  <description>the metastore's"
        " password</description>\n  <final>true</final>\n  <!-- c -->\n  <value>{s}</value>\n</property>",
        "<property><value>{s}</value><name>fs.s3a.secret.key</name></property>",
        "<property>\n  <value>{s}</value>\n  <description>d</description>\n"
        "  <name>hive.server2.keystore.password</name>\n</property>",
    ],
)
def test_a_hadoop_propertys_value_in_any_order_goes(text: str) -> None:
    text = text.format(s=_S)
    prop = ET.fromstring(text)
    assert prop.findtext("value") == _S  # the property's value, whatever the children's order
    out = written_buffer(text)
    assert _S not in out
    assert prop.findtext("name") in out  # the name stays


@pytest.mark.parametrize(
    "text",
    [
        "<configuration><property><name>x.user</name><description>d</description><value>bob</value>"
        "</property><property><name>a.password</name><value>{s}</value></property></configuration>",
    ],
)
def test_another_propertys_value_stays(text: str) -> None:
    out = written_buffer(text.format(s=_S))
    assert "<value>bob</value>" in out
    assert _S not in out


@pytest.mark.parametrize(
    "text",
    [
        "<property><value>bob</value><name>x.user</name></property>",
        "<property><value>bob</value></property><property><name>a.password</name></property>",
        "the <auth> element <!-- c --> here",
    ],
)
def test_look_alikes_keep_their_text(text: str) -> None:
    assert written_buffer(text) == text


def test_xml_comment_and_children_cost_linearly() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    for unit in (
        "<password><!-- c -->",
        "<!-- ",
        "<name>a.password</name><description>d</description>",
        "<value>a</value><b>c</b>",
        "<value>a</value><name>x.password</name>",
        "<password>a<!-- c -->",
        # a comment or an instruction never closed: each key's text read it to the field's end (s51 RP:
        # 2 s for 64 KiB, 56 times a5675037's)
        "<password>a<!-- ",
        "<password><!-- ",
        "<property><name>a.password</name><value>a<!-- ",
        "<password>a<? ",
        "<password>a<![CDATA[b]]>",
    ):
        assert growth(pf.filter_field, unit, size=32768) < 10, unit
