"""HTTP headers that carry credentials in more than one word: ``Authorization`` and ``Cookie``.

``curl -H "Authorization: Negotiate <token>"`` and ``-H "Cookie: theme=dark; session=<id>"``
put a header whose value holds spaces into one argument (Tetragon quotes such an argument), and
a JSON or HTTPie argument writes it as ``"Authorization": "SSWS <token>"``. A rule that stops
at the first space kept the credential: the scheme word (``Negotiate``, ``NTLM``, ``SharedKey``,
``SSWS``, ``GenieKey``, ``Splunk``...) was taken for the value, and of several cookies only
the first went. These alternatives join the ``authorization_header`` and ``secret_token`` rules
(patterns.py); every one starts with a literal character, as the combined regex needs.
"""

from __future__ import annotations

from stellaops_runtime.privacy.base import first_char_alternatives

__all__ = ["AUTHORIZATION_ALTERNATIVES", "COOKIE_HEADER"]

# A scheme word before the credential (``Bearer``, ``Negotiate``, ``SharedKey``): kept.
_SCHEME = r"(?:[A-Za-z][A-Za-z0-9_.-]{0,31}[ \t]+)?"
# Up to the closing double quote (an escaped ``\"`` ends it too: JSON inside a shell string).
_TO_DOUBLE_QUOTE = r"""(?:[^"\\\n]|\\(?!")[^\n])+"""
_TO_SINGLE_QUOTE = r"[^'\n]+"
# Schemes a credential follows when the header is not quoted (its value then ends at a space).
_KNOWN_SCHEMES = (
    r"(?i:bearer|basic|token|apikey|negotiate|ntlm|digest|oauth|sharedkey(?:lite)?|ssws|geniekey)"
)

# A scheme word and the escaped space after it; the rest of a shell word (escapes in it too).
_ESCAPED_SCHEME = r"[A-Za-z][A-Za-z0-9_.-]{0,31}\\[ \t]"
_REST_OF_WORD = r"""(?:[^\s"'\\]|\\[^\n"'])++"""

_NAMES = first_char_alternatives("authorization") + first_char_alternatives("proxy-authorization")
_NAME = "(?i:(?:proxy-)?authorization)"
# A header's flag glued to it inside the quotes (``--header=``, curl's ``-H``).
_FLAG = r"(?:--?[\w-]{1,32}=|-H)?"

# RFC 7616 Digest: ``Digest username="bob", realm="api", …, response="<hash of the password>"``. Its
# auth-params, comma-separated, each value quoted (``"…"`` or, inside JSON or a shell string,
# ``\"…\"``) or a token, blanks allowed around its ``=`` (RFC 7235's BWS); every one goes: the
# quotes of the params would end the header's own quotes (Tetragon quotes an argument without
# escaping the quotes in it), so the rules below kept ``response``. Possessive: each param is read once.
# Params are separated by ``,``, also by ``;`` or a line break, written (``\n``, ``\r\n``: printf, a
# JSON string) or real (a header folded onto the next line, a request in a here-document), with
# blanks around; a blank alone is no separator (``response=x https://h`` keeps the URL), and a blank
# line ends the params (the end of the headers: ``…response="x"\r\n\r\nuser=bob`` keeps the body).
_DIGEST_PARAM = r"""[A-Za-z][\w-]*+[ \t]*+=[ \t]*+(?:\\*+"(?:[^"\\\n]|\\[^"\n])*+(?:\\*+")?|[^\s,;"\\]*+)"""
_BREAK = r"(?:\r?\n|\r|\\r(?:\\n)?|\\n)"  # one line break, real or written
_DIGEST_SEP = rf"[ \t]*+(?:[,;](?:[ \t,;]|\\t)*+(?:{_BREAK}(?:[ \t,;]|\\t)*+)?|{_BREAK}(?:[ \t,;]|\\t)*+)"
_DIGEST_PARAMS = rf"{_DIGEST_PARAM}(?:{_DIGEST_SEP}{_DIGEST_PARAM})*+"

AUTHORIZATION_ALTERNATIVES: tuple[str, ...] = (
    # Digest first (it wins over the quoted forms below, which start at the same character).
    rf'"{_FLAG}{_NAME}\s*:\s*(?i:digest)[ \t]+(?P<s>{_DIGEST_PARAMS})',
    *(rf"{n}(?:\\*[\"'])?\s*[:=]\s*(?:\\*\")?(?i:digest)[ \t]+(?P<s>{_DIGEST_PARAMS})" for n in _NAMES),
    # The whole header quoted: ``"Authorization: Negotiate X"``, ``'Authorization: SSWS X'``; the quote
    # before its flag too, as Tetragon wraps ``wget --header="Authorization: …"``'s one argument
    # (``"--header=Authorization: Negotiate X"``, ``"-HAuthorization: …"``).
    rf'"{_FLAG}{_NAME}\s*:\s*{_SCHEME}(?P<s>{_TO_DOUBLE_QUOTE})',
    rf"'{_FLAG}{_NAME}\s*:\s*{_SCHEME}(?P<s>{_TO_SINGLE_QUOTE})",
    # The value quoted: ``"Authorization": "SSWS X"`` (JSON; escaped quotes too), ``Authorization:"X"``.
    *(rf'{n}(?:\\*["\'])?\s*[:=]\s*\\*"{_SCHEME}(?P<s>{_TO_DOUBLE_QUOTE})' for n in _NAMES),
    *(rf"{n}(?:\\*[\"'])?\s*[:=]\s*'{_SCHEME}(?P<s>{_TO_SINGLE_QUOTE})" for n in _NAMES),
    # One shell word, its spaces escaped (a ``sh -c`` script): ``Authorization:\ Negotiate\ X``,
    # ``Authorization:SSWS\ X``, ``Authorization:\ X``: the scheme word stays, the rest of the word goes.
    *(
        rf"{n}\s*:[ \t]*(?:(?:\\[ \t])++(?:{_ESCAPED_SCHEME})?|{_ESCAPED_SCHEME})(?P<s>{_REST_OF_WORD})"
        for n in _NAMES
    ),
    # Not quoted: a known scheme, then one word, up to a line break written in it too (``\r\n`` of a
    # printf'd request: the next header or the body is no credential).
    *(
        rf"{n}(?:\\*[\"'])?\s*[:=]\s*(?:{_KNOWN_SCHEMES}\s+)?(?P<s>(?:[^\s\"'\\]++|\\(?![rn]))++)"
        for n in _NAMES
    ),
)

# A ``Cookie:`` header holds several cookies (``theme=dark; session=x; lang=en``): its value
# runs on across whitespace while the next word is another ``name=`` (every cookie goes), and
# ends before a quote (Tetragon quotes an argument holding a space: ``-H "Cookie: a=1; b=2"``).
# Possessive: each word is read once. Listed before the key rules, so it wins over ``cookie:``.
COOKIE_HEADER = "|".join(
    rf"{alt}(?:\\*[\"'])?\s*:\s*(?:\\*[\"'])?(?P<s>[^\s\"']++(?:\s++[^\s\"'=;]++=[^\s\"']*+)*+)"
    for alt in first_char_alternatives("cookie", tail=r"(?<![\w-]@)")
)
