"""Personal data in arguments: payment card numbers and US social security numbers.

These are not credentials, but a command line or a traced buffer that carries
one puts a person's data into runtime evidence. Both are digit strings that
also occur innocently (ports, timestamps, sizes, ids), so a match must also
pass a check before it is redacted:

* a card number has 13-19 digits, plain or in groups of four (or 4-6-4/4-6-5)
  separated by spaces or dashes, starts with a major network's prefix (Visa 4,
  Mastercard 51-55 and 2221-2720, Amex 34/37, Discover 6011/644-649/65, Diners
  30[0-5]/36/38, JCB 3528-3589, UnionPay 62) and passes the Luhn check;
* an SSN is ``AAA-GG-SSSS`` (dashes or single spaces, never nine bare digits:
  too many innocent numbers look like that) with the Social Security
  Administration's never-issued values excluded: area 000, 666 or 900-999,
  group 00, serial 0000, and the voided advertising numbers 078-05-1120 and
  219-09-9999.

Digits glued to letters, dots, slashes or other digits (hashes, versions,
paths) are never taken.
"""

from __future__ import annotations

from stellaops_runtime.privacy.base import SecretPattern

# Boundaries: not inside a word, a version, a path or a longer number (the
# lookbehind before a match is written into each regex after its first digit).
_AFTER = r"(?![\w-])(?!\.\d)"


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check over a string of digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _network_ok(d: str) -> bool:
    n = len(d)
    two, four = int(d[:2]), int(d[:4])
    if d[0] == "4":
        return n in (13, 16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16
    if two in (34, 37):
        return n == 15
    if d.startswith("6011") or d.startswith("65") or 644 <= int(d[:3]) <= 649 or two == 62:
        return 16 <= n <= 19
    if 3528 <= four <= 3589:
        return 16 <= n <= 19
    if two in (36, 38) or 300 <= int(d[:3]) <= 305:
        return 14 <= n <= 19
    return False


def is_card_number(text: str) -> bool:
    """A payment card number: a known network's prefix and length, and a valid Luhn check digit."""
    d = text.replace(" ", "").replace("-", "")
    return d.isdigit() and 13 <= len(d) <= 19 and _network_ok(d) and luhn_ok(d)


_VOID_SSNS = frozenset({"078051120", "219099999"})


def is_ssn(text: str) -> bool:
    """A US SSN that can have been issued (SSA's never-issued areas, groups and serials excluded)."""
    d = text.replace(" ", "").replace("-", "")
    if len(d) != 9 or not d.isdigit() or d in _VOID_SSNS:
        return False
    area, group, serial = int(d[:3]), int(d[3:5]), int(d[5:])
    return area != 0 and area != 666 and area < 900 and group != 0 and serial != 0


PAYMENT_CARD = SecretPattern(
    "payment_card",
    r"[2-6](?<![\w./+-][2-6])"
    r"(?:"
    r"[0-9]{12,18}"
    r"|[0-9]{3}(?: [0-9]{4}){2} [0-9]{1,7}"
    r"|[0-9]{3}(?:-[0-9]{4}){2}-[0-9]{1,7}"
    r"|[0-9]{3} [0-9]{6} [0-9]{4,5}"
    r"|[0-9]{3}-[0-9]{6}-[0-9]{4,5}"
    rf"){_AFTER}(?P<w>)",
    gate="digits",
    validate=is_card_number,
)

US_SSN = SecretPattern(
    "us_ssn",
    rf"[0-8](?<![\w./+-][0-8])[0-9]{{2}}(?:-[0-9]{{2}}-| [0-9]{{2}} )[0-9]{{4}}{_AFTER}(?P<w>)",
    gate="digits",
    validate=is_ssn,
)

PERSONAL_DATA_PATTERNS: tuple[SecretPattern, ...] = (PAYMENT_CARD, US_SSN)
