"""The JSON patch of a status write (controller/status_write.py): uid first, then /status only."""

from __future__ import annotations

import jsonpatch

from stellaops_runtime.controller.patches import status_patch
from stellaops_runtime.controller.status_write import status_ops


def test_the_first_write_adds_the_whole_status_after_the_uid_test() -> None:
    ops = status_ops("u-1", None, {"observedGeneration": 1, "notes": []})
    assert ops == [
        {"op": "test", "path": "/metadata/uid", "value": "u-1"},
        {"op": "add", "path": "/status", "value": {"observedGeneration": 1, "notes": []}},
    ]


def test_later_writes_replace_changed_keys_whole_and_remove_dropped_ones() -> None:
    current = {"observedGeneration": 1, "rollout": {"nodesTotal": 2, "nodesPartial": 1}, "purlFunctions": [1]}
    desired = {"observedGeneration": 2, "rollout": {"nodesTotal": 2}}
    changes = (status_patch(current, desired, owned_keys=("purlFunctions",)) or {})["status"]
    ops = status_ops("u-1", current, changes)
    obj = {"metadata": {"uid": "u-1"}, "status": current}
    # applied: exactly the desired status (a merge patch would have kept rollout.nodesPartial)
    assert jsonpatch.apply_patch(obj, ops)["status"] == desired


def test_another_objects_uid_fails_the_patch() -> None:
    ops = status_ops("u-dead", {"a": 1}, {"a": 2})
    try:
        jsonpatch.apply_patch({"metadata": {"uid": "u-new"}, "status": {"a": 1}}, ops)
    except jsonpatch.JsonPatchTestFailed:
        return
    raise AssertionError("a patch for another uid applied")


def test_keys_are_escaped_and_no_uid_means_no_test() -> None:
    assert status_ops(None, {"a/b~c": 1}, {"a/b~c": 2}) == [
        {"op": "add", "path": "/status/a~1b~0c", "value": 2}
    ]
