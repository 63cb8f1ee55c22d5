"""docs/privacy.md: a Secret's values given to kubectl go, "of a block scalar all its lines", and a
``data`` map's values go "when the word Secret or secret(s) stands within 4 KiB".

corpus.yaml's Secret cases hold a one-line block scalar and a Secret named right beside its map;
these pin the two reaches the page states: every line of a longer block scalar, and the 4 KiB
bound on either side (a map 5,000 characters past the word is a ConfigMap's and keeps its values).
"""

from __future__ import annotations

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter


def _redact(text: str) -> str:
    return PrivacyFilter(PrivacyConfig()).redact_text(text)


def test_every_line_of_a_block_scalar_goes() -> None:
    text = (
        'bash -c "kubectl apply -f - <<EOF\nkind: Secret\nmetadata:\n  name: db\nstringData:\n'
        '  init.sql: |\n    CREATE USER app;\n    GRANT ALL TO BlockLine2-9z;\n  other: Plain-8y\nEOF"'
    )
    out = _redact(text)
    assert "BlockLine2-9z" not in out and "Plain-8y" not in out and "CREATE USER" not in out
    assert "  init.sql: |\n    [REDACTED]\n    [REDACTED]\n  other: [REDACTED]\n" in out


def test_a_data_map_is_a_secrets_within_4_kib_of_the_word_only() -> None:
    def manifest(gap: int) -> str:
        return (
            'bash -c "kubectl apply -f - <<EOF\n# secret\n#' + "x" * gap + "\nkind: ConfigMap\ndata:\n"
            '  listen: Reach-7x\nEOF"'
        )

    assert "Reach-7x" not in _redact(manifest(100))  # the word 100 characters before the map
    far = manifest(5000)  # 5,000 characters before it: past the 4 KiB the page says
    assert _redact(far) == far
