"""A secret's name as a quoted literal, then its value as the next literal, in code or configuration.

Why this exists: the key rules (``patterns``) read a name and its value joined by ``=`` or ``:``
(``password='x'``, ``{"token": "x"}``). Code and configuration also give the name as a string of
its own and the value as the next one, which no separator joins (the P7 corpus, session 45):
WordPress's ``define('DB_PASSWORD', 'x')``, C's and Go's ``setenv("API_TOKEN", "x", 1)`` /
``os.Setenv(…)``, Java's ``System.setProperty("db.password", "x")``, a subscript assigned
(``os.environ["DB_PASSWORD"] = "x"``, PHP's ``$cfg['Servers'][$i]['password'] = 'x'``), and the
key/value attributes of .NET's configuration (``<add key="ClearTextPassword" value="x" />`` in
NuGet.config, ``<add key="DbPassword" value="x"/>`` in web.config), an XML element named by such an
attribute (``<entry key="db.password">x</entry>``) or Hadoop's ``<name>…Password</name><value>x</value>``
(session 50). A workload runs such code from
its command line (``php -r``, ``python3 -c``, ``sed -i "s/…/define('DB_PASSWORD', 'x')/"``) and
writes such files (a traced ``write()``).

A name counts when it ends in a credential word (the key rules' words); the value literal goes
with its quotes, unless it is empty. Its own small regex, run only on a text holding a quote (or
``<name>``) and a credential word's piece, so the whole set (``patterns``) does not grow; bounded and
possessive: linear in the text.
"""

from __future__ import annotations

import re

from stellaops_runtime.privacy.key_rules import XML_OPENING, XML_TEXT

__all__ = ["named_literal_spans"]

# the name, quoted: up to 64 word characters (``.``, ``:``, ``-`` too) ending in a credential word;
# ``pass`` only as a word of its own (``db_pass``, not ``bypass``)
_PASSWORD_NAME = r"[\w.:-]{0,64}?(?:password|passwd|passphrase|pwd|pswd?)|(?:[\w.:-]{0,64}?[_.:-])?pass"
# (and WordPress's keys and salts: AUTH_KEY, NONCE_KEY, LOGGED_IN_SALT…)
_SECRET_NAME = (
    r"[\w.:-]{0,64}?(?:secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|secret[_.-]?key"
    r"|auth[_.-]?key|nonce[_.-]?key|logged[_.-]?in[_.-]?key|[_.-]salt|credentials?)"
)
# A single quote written inside a single-quoted script: ``'\''`` or shlex.quote's ``'"'"'`` (its ``"``
# escaped too when the script is itself a quoted argument: ``'\"'\"'``). A command a program built
# with shlex.join for ``bash -lc`` writes every quote of its code so (RP7).
_SCRIPT_SQ = r"""'(?:\\'|\\?"'\\?")'"""
_QUOTE = rf"""(?<!\\)\\*+["']|{_SCRIPT_SQ}"""
_NAME = rf"""(?P<q>{_QUOTE})(?i:(?P<pw>{_PASSWORD_NAME})|{_SECRET_NAME})(?P=q)"""
# the value literal: the same quotes, its escapes read once; not empty; not a key of JSON or a dict
# (``{"name": "API_TOKEN", "value": x}``: env_names' pair); a run of backslashes starts a name once
_VALUE = rf"""(?P<s>(?P<v>{_SCRIPT_SQ}|\\*+["'])(?:(?!(?P=v))(?:[^\\\n]|\\[^\n]))++(?P=v))"""
# define('NAME', 'x'), setenv("NAME", "x", 1), setProperty("NAME", "x"): the next argument; and
# x["NAME"] = "x", $cfg[...]['NAME'] = 'x': a subscript assigned (Perl's $ENV{"NAME"} = "x" too)
_ARGUMENT_OR_SUBSCRIPT = re.compile(rf"{_NAME}[ \t]*+(?:,|[\]}}][ \t]*+=)[ \t]*+{_VALUE}(?![ \t]*+:)")
# <add key="NAME" value="x" />
_KEY_VALUE = re.compile(rf"(?<![\w-])(?i:key)={_NAME}[ \t]++(?i:value)={_VALUE}")
# sed's s/PATTERN/REPLACEMENT/ whose pattern names a secret's placeholder or key: the replacement
# (wp-config-sample.php's ``s/password_here/x/``, ``s|{{DB_PASSWORD}}|x|``); ``/``, ``|``, ``#`` or
# ``,`` as the delimiter; the word ends there (``s/passwordless/x/`` stays). The whole replacement
# goes, a key name in it too (``s/.*AUTH_KEY.*/define('AUTH_KEY', 'x')/``)
_SED = re.compile(
    r"(?<![\w-])s(?P<d>[/|#,])[^\s/|#,]{0,64}?"
    r"(?i:(?P<pw>password|passwd|pwd|pswd?|pass)|secret|token|api[_-]?key|auth[_-]?key)(?![A-Za-z])"
    r"[^/|#,\n]{0,64}?(?P=d)(?P<s>(?:(?!(?P=d))[^\n\\]|\\[^\n])++)(?P=d)"
)
# An XML element named for a secret by an attribute, its text the value (Java's properties XML ``<entry
# key="db.password">x</entry>``, ``<property name="password">x</property>``, ``<param name=…>``; not a
# self-closing one: ``<property name="password" value="x"/>`` is _KEY_VALUE's kind), and Hadoop's and
# Hive's ``<name>javax.jdo.option.ConnectionPassword</name>`` then ``<value>x</value>`` (session 50).
# Bounded and possessive: linear.
# Its text may be a CDATA section (``<value><![CDATA[x]]></value>``), and .NET's settings hold it in a
# ``<value>`` element (``<setting name="DbPassword" serializeAs="String"><value>x</value>``: s50 RP).
_ELEMENT_NAMED = re.compile(
    rf"""<[\w:.-]{{1,64}}+[ \t\r\n][^<>]{{0,256}}?(?<![\w-])(?i:key|name)[ \t]*+=[ \t]*+{_NAME}"""
    rf"""[^<>]{{0,256}}+(?<!/)>[ \t\r\n]*+(?:<value>[ \t\r\n]*+)?{XML_OPENING}(?P<s>{XML_TEXT})"""
)
# Other elements of the property may stand between (``<description>``, ``<final>``, a comment), and the
# ``<value>`` may come first (Hadoop reads a property's children in any order: s50 RP's left-alone 2); a
# child's text runs to the next tag, so each is read once; bounded: linear.
_OTHER_CHILDREN = (
    r"""(?:(?:<(?!value>|name>)[\w:.-]{1,64}+(?:[ \t\r\n][^<>]{0,256}+)?>[^<]*+</[\w:.-]{1,64}+>"""
    r"""|<(?!value>|name>)[\w:.-]{1,64}+[^<>]{0,256}+/>|<!--(?:[^-]|-(?!->))*+-->)[ \t\r\n]*+){0,8}+"""
)
_HADOOP_NAME = rf"""<name>[ \t\r\n]*+(?i:(?P<pw>{_PASSWORD_NAME})|{_SECRET_NAME})[ \t\r\n]*+</name>"""
_NAME_THEN_VALUE = re.compile(
    rf"""{_HADOOP_NAME}[ \t\r\n]*+{_OTHER_CHILDREN}<value>[ \t\r\n]*+{XML_OPENING}(?P<s>{XML_TEXT})"""
)
_VALUE_THEN_NAME = re.compile(
    rf"""<value>[ \t\r\n]*+{XML_OPENING}(?P<s>{XML_TEXT})</value>[ \t\r\n]*+{_OTHER_CHILDREN}{_HADOOP_NAME}"""
)
_TRIGGERS = ("pass", "pw", "psw", "secret", "token", "key", "cred", "salt")


def named_literal_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, family) of each value literal after a quoted name of a secret."""
    quoted = "'" in text or '"' in text
    if not quoted and "<name>" not in text:
        return []
    low = text.lower()
    if not any(t in low for t in _TRIGGERS):
        return []
    out: list[tuple[int, int, str]] = []
    rxs: tuple[re.Pattern[str], ...] = (_ARGUMENT_OR_SUBSCRIPT, _KEY_VALUE, _SED) if quoted else ()
    if quoted and "<" in text:
        rxs += (_ELEMENT_NAMED,)
    if "<name>" in text:
        rxs += (_NAME_THEN_VALUE, _VALUE_THEN_NAME)
    for rx in rxs:
        for m in rx.finditer(text):
            out.append((*m.span("s"), "password" if m["pw"] is not None else "secret_token"))
    return out
