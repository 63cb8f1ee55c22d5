"""``vex`` for a key that is not an image's sha256 digest, or to an ``--out`` that cannot be
written, is exit 2, never a traceback (exit 1).

``stella-runtime query`` takes the agent's keys for host processes and containers without a
digest (``host:<node>``, ``container:<id>``) and sha512 digests; a VEX product and every
witness subject need a sha256 image digest. Before the fix ``vex --image host:node-1`` signed
nothing and ended in a ValueError traceback from the witness statement, exit 1; ``--out`` in a
directory that does not exist, or naming a directory, ended in an OSError traceback after the
witnesses were signed. The document is now written whole or not at all (no ``.part`` left).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_vex import VULNS, store, vex_cli


@pytest.mark.parametrize("image", ["host:node-1", "container:0123abcd", "sha512:" + "a" * 128])
def test_a_key_that_is_no_sha256_image_is_a_usage_error(tmp_path: Path, image: str) -> None:
    url = store(tmp_path, range(3))
    r = vex_cli(tmp_path, url, VULNS, image=image)
    assert r.returncode == 2 and "needs an image's sha256 digest" in r.stderr and "Traceback" not in r.stderr
    assert not list((tmp_path / "w").glob("*.witness.json"))


@pytest.mark.parametrize("where", ["missing/vex.json", "."], ids=["no such directory", "a directory"])
def test_an_out_that_cannot_be_written_is_an_error(tmp_path: Path, where: str) -> None:
    url = store(tmp_path, range(3))
    ok = vex_cli(tmp_path, url, VULNS, "--out", str(tmp_path / "vex.json"))
    assert ok.returncode == 0 and json.loads((tmp_path / "vex.json").read_text())["statements"]
    r = vex_cli(tmp_path, url, VULNS, "--out", str(tmp_path / where), process=True)  # its exit status
    assert r.returncode == 2 and "cannot write" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not list(tmp_path.rglob("*.part")) and not list(tmp_path.rglob(".*.tmp-*"))


def test_out_writes_through_no_planted_link(tmp_path: Path) -> None:
    """``--out`` in a directory others can write (``/tmp``) follows no link planted beside it.

    Before atomic_file.py the document went to the fixed name ``<out>.part`` opened by path: a
    symlink planted there made ``vex`` overwrite the file it pointed at with the VEX document
    (here a file standing for ``~/.bashrc``), then rename the link over ``<out>``."""
    url = store(tmp_path, range(3))
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    out = tmp_path / "shared" / "vex.json"
    out.parent.mkdir()
    (out.parent / "vex.json.part").symlink_to(victim)
    r = vex_cli(tmp_path, url, VULNS, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert victim.read_text() == "precious\n"
    assert not out.is_symlink() and json.loads(out.read_text())["statements"]
    assert out.stat().st_mode & 0o777 == 0o644  # a VEX document is public, whatever the umask


HEX = "d" * 64


@pytest.mark.parametrize(
    ("given", "name"),
    [
        (f"registry.example/shop/app@sha256:{HEX}", "app"),
        (f"reg.example:5000/Shop/App:1.2@sha256:{HEX}", "app"),
        (f"sha256:{HEX}", "image"),  # no repository given: it was named "sha256"
        (HEX, "image"),  # it was named after the digest itself
        (f"shop#frag@sha256:{HEX}", "shop#frag"),  # read back, "#" began a subpath: no version
        (f"shop?arch=x@sha256:{HEX}", "shop?arch=x"),  # read back, "?" began qualifiers: no version
        (f'x%zz"<y>@sha256:{HEX}', 'x%zz"<y>'),  # not an IRI
    ],
)
def test_the_product_is_a_purl_of_the_image_digest(tmp_path: Path, given: str, name: str) -> None:
    """The product's ``@id`` reads back as ``pkg:oci`` of the image's digest under the name given
    (percent-encoded), and is an IRI as the OpenVEX schema's ``format: iri`` requires (checked
    with a format checker: ``jsonschema.validate`` alone does not check formats)."""
    import jsonschema
    from packageurl import PackageURL

    from tests.integration.test_vex import OPENVEX_SCHEMA

    r = vex_cli(tmp_path, store(tmp_path, range(3)), VULNS, image=given)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    jsonschema.Draft202012Validator(OPENVEX_SCHEMA, format_checker=checker).validate(doc)
    for st in doc["statements"]:
        purl = PackageURL.from_string(st["products"][0]["@id"])
        assert (purl.type, purl.name, purl.version) == ("oci", name, f"sha256:{HEX}"), st["products"]
        assert not purl.qualifiers and not purl.subpath


@pytest.mark.parametrize(
    "which", ["w.key", "vulns.json", "w.pub"], ids=["the private key", "the input", "the public key"]
)
def test_out_never_replaces_the_key_or_the_input(tmp_path: Path, which: str) -> None:
    """``--out`` naming the signing key (or the vulnerabilities read, or any PEM key: the public key
    beside it) is refused, as ``witness sign --out`` refuses the key: before the fix ``vex --out
    w.key`` (later ``w.pub``) replaced the key with the VEX document, exit 0."""
    url = store(tmp_path, range(3))
    assert vex_cli(tmp_path, url, VULNS).returncode == 0  # makes the key
    before = (tmp_path / which).read_bytes()
    r = vex_cli(tmp_path, url, VULNS, "--out", str(tmp_path / which))
    assert r.returncode == 2 and "not overwriting" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert (tmp_path / which).read_bytes() == before
