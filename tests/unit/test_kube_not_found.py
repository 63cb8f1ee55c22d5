"""``ApiError.kind_not_served``: a 404 naming no object (kube/errors.py), read off the answers
kube-apiserver v1.20 gives (tests/realkube/test_not_found_real.py checks them on the real server)."""

from __future__ import annotations

import json

from stellaops_runtime.kube.errors import api_error


def _status(details: object) -> str:
    return json.dumps(
        {"kind": "Status", "code": 404, "reason": "NotFound", "message": "x", "details": details}
    )


def test_the_servers_bare_404_is_a_kind_not_served() -> None:
    e = api_error(404, "404 page not found\n", method="POST", path="/apis/cilium.io/v1alpha1/tracingpolicies")
    assert e.not_found and e.kind_not_served


def test_a_status_naming_the_object_or_its_namespace_is_a_missing_object() -> None:
    for details in (
        {"name": "web", "group": "cilium.io", "kind": "tracingpolicies"},
        {"name": "ns", "kind": "namespaces"},
    ):
        e = api_error(404, _status(details), method="PATCH", path="/x")
        assert e.not_found and not e.kind_not_served and e.object_name == details["name"]


def test_odd_details_name_nothing() -> None:
    for details in ({}, None, [], {"name": 5}, {"name": ""}, "web"):
        assert api_error(404, _status(details), method="GET", path="/x").kind_not_served
    long = api_error(404, _status({"name": "n" * 10_000}), method="GET", path="/x")
    assert len(long.object_name) == 253 and not long.kind_not_served
    assert not api_error(409, _status({"name": ""}), method="GET", path="/x").kind_not_served
