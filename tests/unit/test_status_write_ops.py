"""The JSON patch of a status write (controller/status_write.py): uid first, then /status only."""

from __future__ import annotations

import asyncio
from typing import Any

import jsonpatch
import pytest

from stellaops_runtime.controller.patches import status_patch
from stellaops_runtime.controller.status_write import patch_status, status_ops
from stellaops_runtime.kube import resources as r
from stellaops_runtime.kube.client import ApiError


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


class _Api:
    """Answers each status PATCH with the next of ``answers`` (an ApiError is raised), GETs with ``live``."""

    def __init__(self, answers: list[Any], live: list[dict[str, Any] | None]) -> None:
        self.answers, self.live = answers, live
        self.patches: list[Any] = []

    async def request(self, method: str, path: str, *, body: Any, **_: Any) -> Any:
        self.patches.append(body)
        answer = self.answers.pop(0)
        if isinstance(answer, ApiError):
            raise answer
        return answer

    async def get(self, res: Any, *, name: str, namespace: str | None) -> dict[str, Any] | None:
        return self.live.pop(0)


def _invalid() -> ApiError:
    return ApiError(status=422, reason="Invalid", message="x", method="PATCH", path="/p")


def _write(api: _Api, current: dict[str, Any]) -> Any:
    return asyncio.run(
        patch_status(
            api,  # type: ignore[arg-type]
            r.OBSERVATION_POLICIES,
            name="web",
            namespace="shop",
            uid="u-1",
            current=current,
            changes={"rollout": None, "notes": []},
        )
    )


def test_a_refusal_of_the_same_status_is_raised_without_a_second_write() -> None:
    api = _Api([_invalid()], [{"metadata": {"uid": "u-1"}, "status": {"rollout": {}}}])
    with pytest.raises(ApiError):
        _write(api, {"rollout": {}})
    assert len(api.patches) == 1


def test_a_stale_copy_is_written_again_once_against_the_live_status_then_raised() -> None:
    live = {"metadata": {"uid": "u-1"}, "status": {"notes": ["a"]}}
    api = _Api([_invalid(), {}], [live])
    assert _write(api, {"rollout": {}, "notes": ["a"]}) == {"notes": ["a"]}
    assert api.patches[1] == [
        {"op": "test", "path": "/metadata/uid", "value": "u-1"},
        {"op": "add", "path": "/status/notes", "value": []},
    ]  # no remove of the rollout the live status no longer has
    refused = _Api([_invalid(), _invalid()], [live, {**live, "status": {"notes": ["b"]}}])
    with pytest.raises(ApiError):  # refused again: raised, not tried a third time
        _write(refused, {"rollout": {}, "notes": ["a"]})
    assert len(refused.patches) == 2


def test_an_object_replaced_before_the_second_write_gets_nothing() -> None:
    api = _Api(
        [_invalid(), _invalid()],
        [{"metadata": {"uid": "u-1"}, "status": {}}, {"metadata": {"uid": "u-2"}, "status": {}}],
    )
    assert _write(api, {"rollout": {}}) is None
    assert len(api.patches) == 2
