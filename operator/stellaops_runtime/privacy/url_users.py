"""A URL's user that is a credential itself: a token, or ``user:password`` encoded in base64.

Why this exists: the URL rule (``connection_string``, patterns.py) takes a URL's password, and its
user only when the password is empty or GitHub's ``x-oauth-basic`` placeholder; the e-mail rule
takes ``user@host.tld`` whole. A token given as the user with no password (``https://<token>@git/``,
which GitHub, Azure DevOps and other Git servers accept) or base64 of ``user:password`` there
(``https://dXNlcjpwYXNz@h/``) before a host without a dot was stored in clear.

A user of 20 characters or more (letters, digits, ``_.~+=%-``) holding a letter and a digit, or
ending in base64's ``=``, goes; a name (``deploy``, ``git``, ``admin-user``) stays. Each start is
a ``://`` and reads the user once: linear in the text.
"""

from __future__ import annotations

import re

__all__ = ["url_user_spans"]

_USER = re.compile(r":(?<=[A-Za-z0-9]:)//(?P<s>[A-Za-z0-9_.~+=%-]{20,}+)(?=@[^\s@/:'\"]*[^\s@/:'\".])")
_CREDENTIAL_LOOKING = re.compile(r"(?=[^\d]*\d)(?=[^A-Za-z]*[A-Za-z])|.*=\Z")


def url_user_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, "connection_string") of each URL user that looks like a credential."""
    if "://" not in text or "@" not in text:
        return []
    return [
        (*m.span("s"), "connection_string") for m in _USER.finditer(text) if _CREDENTIAL_LOOKING.match(m["s"])
    ]
