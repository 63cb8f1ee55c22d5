"""Provider token formats detect-secrets 1.5.0 lacks, written from gitleaks' and trufflehog's rules.

detect-secrets (``library_rules``) covers AWS key ids, GitHub, GitLab, Slack,
Stripe live keys, Twilio, npm ``.npmrc`` lines, OpenAI keys with the
``T3BlbkFJ`` marker, PyPI, SendGrid, Square, Discord, Telegram, Mailchimp,
JWTs, private-key headers and a few keyword formats. Every other prefixed format
in gitleaks' default config (and trufflehog's detectors with a fixed prefix)
is here: the prefix is kept (``hf_[REDACTED]``) and what follows it is the
secret. Formats without a prefix (a 32-character hex string next to a vendor's
name) are caught by the keyed rules (``*_TOKEN=``, ``--api-key``...) in
``patterns`` and by the environment-name rules, not here.

Every alternative starts with a literal character followed by a lookbehind that
requires a token boundary before it, which keeps the combined regex fast, and
every alternative has a run of 20 token characters after a non-token character
(or at the start), so the whole family sits behind the cheap "run" gate.
Bodies take a minimum length and no maximum: a longer variant of a format is
still redacted whole.
"""

from __future__ import annotations

from stellaops_runtime.privacy.base import SecretPattern, number_groups

_B = "[A-Za-z0-9_-]"  # base64url / token characters
_AN = "[A-Za-z0-9]"
_HEX = "[a-fA-F0-9]"

# (kept prefix as a regex whose first character is a literal letter or digit, secret body)
_PREFIXED: tuple[tuple[str, str], ...] = (
    # OpenAI / Anthropic: sk-ant-api03-, sk-proj-, sk-svcacct-, sk-admin-, legacy sk-<48>
    (r"sk-ant-(?:api|admin)\d\d-", rf"{_B}{{20,}}"),
    (r"sk-(?:proj-|svcacct-|admin-|None-)?", rf"(?=[A-Za-z_-]*[0-9]){_B}{{20,}}"),
    # Hugging Face user and organisation tokens
    (r"hf_", rf"{_AN}{{30,}}"),
    (r"api_org_", rf"{_AN}{{30,}}"),
    (r"npm_", rf"{_AN}{{36,}}"),
    (r"SG\.", rf"{_B}{{20,}}\.{_B}{{20,}}"),
    # Google: OAuth access token, refresh token, OAuth client secret
    (r"ya29\.", rf"{_B}{{20,}}"),
    (r"1//0", rf"{_B}{{30,}}"),
    (r"GOCSPX-", rf"{_B}{{24,}}"),
    (r"gl(?:pat|dt|ft|soat|rt|cbt|ptt|imt|agent|oas|ffct)-", rf"{_B}{{20,}}(?:\.{_AN}{{9,}})?"),
    (r"glsa_", rf"{_AN}{{32,}}_{_HEX}{{8}}"),
    (r"dapi", rf"{_HEX}{{32,}}(?:-\d)?"),
    (r"pypi-", rf"AgE{_B}{{50,}}"),
    (r"shp(?:at|ca|pa|ss)_", rf"{_HEX}{{32,}}"),
    (r"do[opr]_v1_", rf"{_HEX}{{64,}}"),
    (r"hv[sb]\.", rf"{_B}{{24,}}"),
    (r"whsec_", rf"{_AN}{{24,}}"),
    # Tailscale auth, API, OAuth client, SCIM and webhook keys (https://tailscale.com/kb/1085/auth-keys)
    (r"tskey-(?:auth|api|client|scim|webhook)-", rf"{_B}{{20,}}"),
    (r"sk_prod_", rf"{_AN}{{12,}}"),
    (r"rk_prod_", rf"{_AN}{{12,}}"),
    (r"AGE-SECRET-KEY-1", r"[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}"),
    (r"LTAI", rf"{_AN}{{20,}}"),
    (r"AKCp", rf"{_AN}{{60,}}"),
    (r"cmVmd", rf"{_AN}{{59,}}"),
    (r"ATATT3", r"[A-Za-z0-9_=-]{100,}"),
    (r"4b1d", rf"{_AN}{{38,}}"),
    (r"CLOJARS_", r"[a-zA-Z0-9]{60,}"),
    (r"v1\.0-", rf"{_HEX}{{24}}-{_HEX}{{146,}}"),
    (r"dp\.(?:pt|st|sa|ct|scim|audit)\.", rf"{_AN}{{40,}}"),
    (r"duffel_(?:test|live)_", r"[A-Za-z0-9_=-]{43,}"),
    (r"dt0c01\.", rf"{_AN}{{24}}\.{_AN}{{64,}}"),
    (r"EZ[AT]K", rf"{_AN}{{54,}}"),
    (r"EAA[MC]", rf"{_AN}{{100,}}"),
    (r"EAAA", rf"{_B}{{22,}}"),
    (r"FLW(?:SEC|PUB)K_TEST-", rf"{_HEX}{{12,}}(?:-X)?"),
    (r"fo1_", rf"{_B}{{43,}}"),
    (r"fio-u-", r"[A-Za-z0-9_=-]{64,}"),
    (r"HRKU-AA", rf"{_B}{{58,}}"),
    (r"ico-", rf"{_AN}{{32,}}"),
    (r"s-s4t2(?:ud|af)-", rf"{_HEX}{{64,}}"),
    (r"lin_api_", rf"{_AN}{{40,}}"),
    (r"ntn_", rf"{_AN}{{40,}}"),
    (r"API-", r"[A-Z0-9]{26,}"),
    (r"sha256~", rf"{_B}{{43,}}"),
    (r"pplx-", rf"{_AN}{{48,}}"),
    (r"pscale_(?:tkn|oauth|pw)_", r"[A-Za-z0-9_=.-]{32,}"),
    (r"PMAK-", rf"{_HEX}{{24}}-{_HEX}{{34,}}"),
    (r"pnu_", rf"{_AN}{{36,}}"),
    (r"pul-", rf"{_HEX}{{40,}}"),
    (r"rdme_", rf"{_AN}{{70,}}"),
    (r"rubygems_", rf"{_HEX}{{48,}}"),
    (r"tk-us-", rf"{_B}{{48,}}"),
    (r"xkeysib-", rf"{_HEX}{{64}}-{_AN}{{16,}}"),
    (r"sntryu_", rf"{_HEX}{{64,}}"),
    (r"sm_(?:aat|pat|sat)_", rf"{_AN}{{16,}}"),
    (r"shippo_(?:live|test)_", rf"{_HEX}{{40,}}"),
    (r"sgp_", rf"(?:{_HEX}{{16}}_|local_)?{_HEX}{{40,}}"),
    (r"sq0(?:atp|csp)-", rf"{_B}{{22,}}"),
    (r"key-", rf"{_HEX}{{32}}(?!{_B})"),
    (r"NR(?:AK|II|JS)-", rf"{_B}{{19,}}"),
    (r"AQVN", rf"{_B}{{35,}}"),
    (r"tfp_", r"[A-Za-z0-9_=.-]{59,}"),
    (r"sq[upa]_", rf"{_AN}{{40,}}"),
    (r"pat\.", rf"{_B}{{22}}\.{_AN}{{24}}\.{_AN}{{20,}}"),
    (r"sat\.", rf"{_B}{{22}}\.{_AN}{{24}}\.{_AN}{{20,}}"),
    (r"glc_", rf"{_AN}{{32,}}"),
    (r"eyJrIjoi", rf"{_AN}{{70,}}"),
    (r"sl\.", rf"{_B}{{100,}}"),
)


def _alternative(prefix: str, body: str) -> str:
    first = prefix[0]
    if not first.isalnum():
        raise ValueError(f"prefix {prefix!r} must start with a letter or digit")
    return rf"{first}(?<![A-Za-z0-9_-]{first}){prefix[1:]}(?P<s>{body})"


PROVIDER_TOKEN = SecretPattern(
    "provider_token",
    number_groups("|".join(_alternative(p, b) for p, b in _PREFIXED)),
    gate="run",
)

# Formats whose body may hold characters outside the token alphabet (``+/~.``),
# so the "run" gate is not guaranteed: behind their own literal triggers instead.
PROVIDER_TOKEN_B64 = SecretPattern(
    "provider_token_b64",
    number_groups(
        "|".join(
            [
                # Azure AD application (client) secret: 3 chars, a digit, "Q~", 31-34 chars
                r"[A-Za-z0-9_~.](?<![A-Za-z0-9_~.-][A-Za-z0-9_~.])[A-Za-z0-9_~.]{2}\dQ~(?P<s>[A-Za-z0-9_~.-]{31,})",
                _alternative("ABSK", r"[A-Za-z0-9+/]{100,}={0,2}"),
                _alternative("fm[12][ar]?_", r"[A-Za-z0-9+/]{100,}={0,3}"),
                _alternative("ops_eyJ", r"[A-Za-z0-9+/]{100,}={0,3}"),
                _alternative("sntrys_eyJ", r"[A-Za-z0-9+/_=]{50,}"),
                # Terraform Cloud / Enterprise: <14>.atlasv1.<60+>
                r"[a-z0-9](?<![A-Za-z0-9_-][a-z0-9])[a-z0-9]{13}\.atlasv1\.(?P<s>[A-Za-z0-9_=-]{60,})",
                # Slack and Microsoft Teams incoming webhooks: the path is the credential
                r"h(?<![A-Za-z0-9_-]h)ooks\.slack\.com/(?:services|workflows|triggers)/(?P<s>[A-Za-z0-9+/_-]{20,})",
                r"\.(?<=webhook\.office\.com)/webhookb2/(?P<s>[A-Za-z0-9@/_-]{40,})",
                # Discord webhooks (trufflehog's discordwebhook: an 18-digit id, then a 68-character
                # token): the id is kept
                r"d(?<![A-Za-z0-9_-]d)iscord(?:app)?\.com/api(?:/v[0-9]+)?/webhooks/[0-9]{17,20}/"
                r"(?P<s>[A-Za-z0-9_-]{60,})",
                # Mapbox secret tokens
                _alternative("sk\\.eyJ", r"[A-Za-z0-9_.-]{40,}"),
            ]
        )
    ),
    triggers=(
        "q~",
        "absk",
        "fm1",
        "fm2",
        "ops_eyj",
        "sntrys_",
        ".atlasv1.",
        "hooks.slack.com",
        "webhook.office.com",
        "discord",
        "sk.eyj",
    ),
)

PROVIDER_PATTERNS: tuple[SecretPattern, ...] = (PROVIDER_TOKEN, PROVIDER_TOKEN_B64)

# What is left of a token that truncation cut short: any run of token characters.
_TAIL_BODY = r"[A-Za-z0-9_=.+/~-]+"


def truncated_alternatives() -> list[str]:
    """Regex alternatives for a provider token cut short at the end of a truncated field.

    Each format's prefix followed by whatever is left of its body up to the
    end of the text (``\\Z``): the body's minimum length no longer holds, so
    the full patterns above miss it, yet the part that survived is most of a
    secret. Each alternative names its secret ``(?P<s>...)`` (renumbered by
    the caller with ``number_groups``).
    """
    out = [_alternative(p, rf"{_TAIL_BODY}\Z") for p, _ in _PREFIXED]
    out += [
        _alternative(p, rf"{_TAIL_BODY}\Z")
        for p in ("ABSK", "fm[12][ar]?_", "ops_eyJ", "sntrys_eyJ", "sk\\.eyJ")
    ]
    out += [
        rf"[A-Za-z0-9_~.](?<![A-Za-z0-9_~.-][A-Za-z0-9_~.])[A-Za-z0-9_~.]{{2}}\dQ~(?P<s>{_TAIL_BODY})\Z",
        rf"[a-z0-9](?<![A-Za-z0-9_-][a-z0-9])[a-z0-9]{{13}}\.atlasv1\.(?P<s>{_TAIL_BODY})\Z",
        r"h(?<![A-Za-z0-9_-]h)ooks\.slack\.com/(?:services|workflows|triggers)/(?P<s>[A-Za-z0-9+/_-]+)\Z",
        r"\.(?<=webhook\.office\.com)/webhookb2/(?P<s>[A-Za-z0-9@/_-]+)\Z",
        r"d(?<![A-Za-z0-9_-]d)iscord(?:app)?\.com/api(?:/v[0-9]+)?/webhooks/[0-9]{17,20}/(?P<s>[A-Za-z0-9_-]+)\Z",
    ]
    return out
