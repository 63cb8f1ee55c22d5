"""kopf's "last handled" record as a digest (controller/diffbase.py): its semantics, and what it assumes.

The realkube test tests/realkube/test_big_policy_real.py shows the defect it
fixes (a big policy's record refused as "Too long"); here, without a server:
an unchanged object reads as unchanged, a change as a change, an older
full-JSON record as it is, an unreadable one as a change; and no handler of
ours has field filters (kopf's "extra fields"), which ``fetch`` cannot see.
"""

from __future__ import annotations

import json
from typing import Any

import kopf

from stellaops_runtime.contracts.crds import API_VERSION, POLICY_KIND
from stellaops_runtime.controller.diffbase import DIGEST_FIELD, DigestDiffBaseStorage
from stellaops_runtime.controller.handlers import build_registry
from stellaops_runtime.controller.settings import (
    ANNOTATION_PREFIX,
    DIFFBASE_KEY,
    ControllerConfig,
    operator_settings,
)

KEY = f"{ANNOTATION_PREFIX}/{DIFFBASE_KEY}"


def _body(spec: dict[str, Any], record: str | None = None) -> kopf.Body:
    annotations = {"team": "a", **({KEY: record} if record is not None else {})}
    return kopf.Body(
        {
            "apiVersion": API_VERSION,
            "kind": POLICY_KIND,
            "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
            "spec": spec,
        }
    )


def _stored(storage: DigestDiffBaseStorage, body: kopf.Body) -> str:
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=storage.build(body=body))
    return str(patch["metadata"]["annotations"][KEY])


def test_the_record_is_a_digest_of_constant_size() -> None:
    storage = operator_settings().persistence.diffbase_storage
    assert isinstance(storage, DigestDiffBaseStorage)
    huge = {
        "syscalls": ["execve"],
        "functions": [{"binaryPath": "/x", "symbols": [f"s{i}" for i in range(50_000)]}],
    }
    record = _stored(storage, _body(huge))
    assert set(json.loads(record)) == {DIGEST_FIELD} and len(record) < 100


def test_unchanged_reads_unchanged_and_a_change_reads_changed() -> None:
    storage = DigestDiffBaseStorage(prefix=ANNOTATION_PREFIX, key=DIFFBASE_KEY)
    spec = {"syscalls": ["execve"]}
    record = _stored(storage, _body(spec))
    same = _body(spec, record)
    assert storage.fetch(body=same) == storage.build(body=same)  # kopf sees no diff: no write
    changed = _body({"syscalls": ["execve", "openat"]}, record)
    assert storage.fetch(body=changed) == {}  # a diff: kopf stores the new digest
    assert storage.fetch(body=_body(spec)) is None  # never handled


def test_an_older_full_record_is_kept_and_a_broken_one_is_a_change() -> None:
    storage = DigestDiffBaseStorage(prefix=ANNOTATION_PREFIX, key=DIFFBASE_KEY)
    spec = {"syscalls": ["execve"]}
    full = json.dumps(storage.build(body=_body(spec)), separators=(",", ":"))  # kopf's own format
    legacy = _body(spec, full)
    assert storage.fetch(body=legacy) == storage.build(body=legacy)  # an upgrade writes nothing
    assert storage.fetch(body=_body(spec, "{not json")) == {}


def test_no_handler_of_ours_has_field_filters() -> None:
    registry = build_registry(ControllerConfig())
    for sub in (registry._changing, registry._watching, registry._spawning):
        for handler in sub.get_all_handlers():
            assert getattr(handler, "field", None) is None, handler
