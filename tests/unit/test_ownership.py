"""Which objects the operator may overwrite or delete (``controller.ownership``), case by case."""

from __future__ import annotations

from typing import Any

import pytest

from stellaops_runtime.contracts.crds import (
    API_VERSION,
    MANAGED_BY,
    OBSERVER_KIND,
    OBSERVER_LABEL,
    POLICY_KIND,
)
from stellaops_runtime.controller.ownership import POLICY_ANNOTATION, NotOwnedError, Owner, why_not_ours

ENTRY = f"{POLICY_KIND}/shop/web"
WEB = Owner(api_version=API_VERSION, kind=POLICY_KIND, name="web", uid="u1", entry=ENTRY)
FLEET = Owner(api_version=API_VERSION, kind=OBSERVER_KIND, name="fleet", uid="u2")


def _obj(
    *, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None, refs: Any = None
) -> dict:
    meta: dict[str, Any] = {"name": "x", "labels": labels or {}, "annotations": annotations or {}}
    if refs is not None:
        meta["ownerReferences"] = refs
    return {"metadata": meta}


def _ref(kind: str, name: str, uid: str = "u1", controller: bool = True, api: str = API_VERSION) -> dict:
    return {"apiVersion": api, "kind": kind, "name": name, "uid": uid, "controller": controller}


OURS = {MANAGED_BY[0]: MANAGED_BY[1]}


@pytest.mark.parametrize(
    ("current", "owner", "why"),
    [
        (_obj(refs=[_ref(POLICY_KIND, "web")]), WEB, "not labelled"),
        (_obj(labels={MANAGED_BY[0]: "someone-else"}), WEB, "not labelled"),
        (
            _obj(labels=OURS, refs=[_ref(POLICY_KIND, "other")]),
            WEB,
            "its controller is ObservationPolicy other",
        ),
        (
            _obj(labels=OURS, refs=[_ref("Deployment", "web", api="apps/v1")]),
            WEB,
            "its controller is Deployment",
        ),
        (_obj(labels=OURS, refs=[_ref(POLICY_KIND, "web", api="other.io/v1")]), WEB, "its controller is"),
        (_obj(labels=OURS), WEB, "no controller owner reference to ObservationPolicy web"),
        (_obj(labels=OURS, annotations={POLICY_ANNOTATION: f"{POLICY_KIND}/shop/api"}), WEB, "no controller"),
        # a non-controller reference does not make it ours
        (_obj(labels=OURS, refs=[_ref(POLICY_KIND, "web", controller=False)]), WEB, "no controller"),
        (
            _obj(labels={**OURS, OBSERVER_LABEL: "other"}),
            FLEET,
            "no controller owner reference to RuntimeObserver",
        ),
    ],
)
def test_not_ours(current: dict, owner: Owner, why: str) -> None:
    reason = why_not_ours(current, owner)
    assert reason is not None and why in reason


@pytest.mark.parametrize(
    ("current", "owner"),
    [
        (_obj(labels=OURS, refs=[_ref(POLICY_KIND, "web")]), WEB),
        # the same policy re-created (new uid): still its name's objects
        (_obj(labels=OURS, refs=[_ref(POLICY_KIND, "web", uid="u-old")]), WEB),
        # owner references stripped by hand: our annotation / observer label says whose
        (_obj(labels=OURS, annotations={POLICY_ANNOTATION: ENTRY}), WEB),
        (_obj(labels={**OURS, OBSERVER_LABEL: "fleet"}), FLEET),
        # the owner is gone and known only by uid (orphans of a deleted RuntimeObserver)
        (
            _obj(labels=OURS, refs=[_ref(OBSERVER_KIND, "fleet", uid="u2")]),
            Owner(API_VERSION, OBSERVER_KIND, uid="u2"),
        ),
        # no owner expected: the label alone
        (_obj(labels=OURS), None),
    ],
)
def test_ours(current: dict, owner: Owner | None) -> None:
    assert why_not_ours(current, owner) is None


def test_an_orphan_of_another_uid_is_not_ours() -> None:
    current = _obj(labels=OURS, refs=[_ref(OBSERVER_KIND, "fleet", uid="u3")])
    assert why_not_ours(current, Owner(API_VERSION, OBSERVER_KIND, uid="u2")) is not None


def test_the_owner_of_a_rendered_object_and_the_error_text() -> None:
    desired = _obj(labels=OURS, annotations={POLICY_ANNOTATION: ENTRY}, refs=[_ref(POLICY_KIND, "web")])
    assert Owner.of_desired(desired) == WEB
    assert Owner.of_desired(_obj(labels=OURS)) is None
    err = NotOwnedError(kind="TracingPolicyNamespaced", namespace="shop", name="stellaops-web", why="it is x")
    assert str(err) == "TracingPolicyNamespaced shop/stellaops-web is not ours: it is x; it is left as it is"
    assert err.reason == "NotOwned"
