"""The rules for what a cut leaves of a secret at the end of a truncated argument field.

``privacy.maxArgumentBytes`` cuts a field before the rules run (filter.py), so a secret may lose
the part its format is known by: a connection string its ``@host``, a JWT its third segment, a
prefixed token its length. These rules (counter ``truncated_secret``) run only on a cut field,
near its end (redactor.py); kept apart from patterns.py, the rules of a whole field, which
imports ``JDBC_PASSWORD`` from here.
"""

from __future__ import annotations

import re

from stellaops_runtime.privacy.base import SecretPattern, number_groups
from stellaops_runtime.privacy.provider_tokens import truncated_alternatives

__all__ = ["JDBC_PASSWORD", "TRUNCATED_TAIL", "TRUNCATED_URL_TAIL"]

# An Oracle JDBC URL's password: to whitespace or ``@``, and not past the next ``jdbc:oracle:``.
# A password ran on from every ``jdbc:oracle:thin:u/`` of a field to its end when no ``@``
# followed, so a field of many of them was read once per start (64 KiB: 1.4 s); now each start
# reads only to the next one (test_privacy_hostile.py).
JDBC_PASSWORD = r"(?:[^\s@j]++|j(?!dbc:oracle:))++"


# Applied only to the end of an argument that was truncated: secrets whose full
# pattern needs text that the cut removed (the ``@host`` of a connection string,
# the rest of a token with a well-known prefix, the third segment of a JWT, the
# domain of an e-mail address, the last digits of a card number or SSN). What
# survived the cut is most of a secret, so it goes even where it would be too
# short to be recognised on its own (a cut number of five digits or more, an
# address without its top-level domain): over-redaction of a field's last word,
# never a partial leak.
def _prefixes(word: str) -> str:
    """A regex matching every prefix of ``word`` (the empty one too)."""
    out = ""
    for ch in reversed(word):
        out = f"(?:{re.escape(ch)}{out})?"
    return out


# A URL cut in its user (or host), or after its user's ":" or in GitHub's placeholder password:
# the user may be the token (``https://<token>:x-oauth-basic@github.com``); an Oracle JDBC URL cut
# in its password. Searched over the whole cut text, not only near its end: a password or token
# longer than the window (an access token used as a URL's password) left its start out of it, and
# was kept. Each start's run stops at the next ``:``, ``/``, ``@`` or ``jdbc:oracle:``, so the
# search is linear whatever the text.
_URL_TAIL_ALTERNATIVES: tuple[str, ...] = (
    rf":(?<=[A-Za-z0-9]:)//(?P<s>[^\s:/@]++(?::{_prefixes('x-oauth-basic')})?)\Z",
    r":(?<=[A-Za-z0-9]:)//[^\s:/@]*+:(?P<s>[^\s@/]++)\Z",
    rf"j(?<![\w-]j)dbc:oracle:(?:thin|oci8?|kprb):[^\s/@:]++/(?P<s>{JDBC_PASSWORD})\Z",
)


def after_id_and_blanks(id_body: str) -> str:
    """Lookbehinds for an AWS secret after its access key id (``A[KS]IA`` and ``id_body``) and a run
    of 2 to 32 blanks (``ID  SECRET``, ``ID<tab><tab>SECRET``, ``ID,  SECRET``: a column-aligned listing),
    as one ``|``-led alternative to put after the secret's first character.

    A lookbehind has a fixed width, so there is one per length; the first checks that the two
    characters before the secret are separators, so elsewhere the others are not tried. Cost on a
    hostile field of blanks and words: at most 32 short lookbehinds per character.
    """
    each = (rf"(?<=A[KS]IA{id_body}[:,;\s]\s{{{k}}}[A-Za-z0-9/+])" for k in range(1, 32))
    return r"|(?<=[:,;\s]\s[A-Za-z0-9/+])(?:" + "|".join(each) + ")"


_TAIL_ALTERNATIVES: tuple[str, ...] = (
    *_URL_TAIL_ALTERNATIVES,
    r"A(?<![A-Za-z0-9_-]A)(?:KIA|SIA|Iza)(?P<s>[A-Za-z0-9_-]+)\Z",
    r"g(?<![A-Za-z0-9_-]g)(?:h[pousr]_|ithub_pat_)(?P<s>[A-Za-z0-9_]+)\Z",
    r"x(?<![A-Za-z0-9_-]x)(?:ox[abeoprs]|app)-(?P<s>[A-Za-z0-9-]+)\Z",
    r"[sr](?<![A-Za-z0-9_-][sr])k_(?:live|test)_(?P<s>[A-Za-z0-9]+)\Z",
    r"eyJ[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*){0,2}\Z(?P<w>)",
    r"[Bb](?<![\w-][Bb])(?i:earer|asic)\s+(?P<s>\S+)\Z",
    *truncated_alternatives(),
    # detect-secrets' formats: Twilio SK/AC keys, Telegram bot tokens, Discord bot
    # tokens (cut in their second or third segment), Mailchimp keys (cut in the "-us" suffix)
    r"[SA](?<![A-Za-z0-9_-][SA])[KC](?P<s>[0-9a-fA-F]{6,})\Z",
    r"[0-9](?<![A-Za-z0-9_-][0-9])[0-9]{7,9}:(?P<s>[A-Za-z0-9_-]+)\Z",
    r"[MNO](?<![A-Za-z0-9_-][MNO])[A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)?\Z(?P<w_2>)",
    r"[0-9a-z](?<![0-9a-z][0-9a-z])[0-9a-z]{31}-(?:us?[0-9]{0,2})?\Z(?P<w_3>)",
    # an e-mail address cut in its domain (or right after its "@"): the whole address
    r"[A-Za-z0-9._%+-](?<![A-Za-z0-9._%+-][A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@[A-Za-z0-9.-]*\Z(?P<w_4>)",
    # five or more digits, single spaces or dashes between them: a card number or SSN cut short
    r"[0-9](?<![\w./+-][0-9])(?:[ -]?[0-9]){4,}[ -]?\Z(?P<w_5>)",
    # an AWS secret access key cut short, right after its access key id and one separator or a
    # run of blanks, or both quoted (the id's body is redacted by then: the main rules ran first)
    r"[A-Za-z0-9/+](?:(?<=A[KS]IA\[REDACTED\][:,;\s][A-Za-z0-9/+])"
    r"|(?<=A[KS]IA\[REDACTED\][\"'][:,;][\"'][A-Za-z0-9/+])"
    r"|(?<=A[KS]IA\[REDACTED\][\"'][:,;]\s[\"'][A-Za-z0-9/+])"
    + after_id_and_blanks(r"\[REDACTED\]")
    + r")[A-Za-z0-9/+]*\Z(?P<w_6>)",
)

TRUNCATED_TAIL = SecretPattern("truncated_secret", number_groups("|".join(_TAIL_ALTERNATIVES)))
# The URL alternatives alone, for the whole cut text (the same counter).
TRUNCATED_URL_TAIL = SecretPattern("truncated_secret", number_groups("|".join(_URL_TAIL_ALTERNATIVES)))
