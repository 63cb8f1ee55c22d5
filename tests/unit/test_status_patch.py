"""agent/status_patch.py: empty strings become null under object keys and are left out inside lists."""

from __future__ import annotations

from stellaops_runtime.agent.status_patch import patchable


def test_empty_strings_are_null_in_objects_and_left_out_in_lists() -> None:
    status = {
        "maxPostureReason": "",
        "capabilities": {"kernelVersion": "6.1", "tetragon": {"address": ""}},
        "policies": [{"name": "p", "namespace": "", "sensors": ["", "s"]}],
        "conditions": [{"type": "Ready", "message": ""}],
        "agentTemplate": None,
        "purlFunctionsOmitted": 0,
    }
    assert patchable(status) == {
        "maxPostureReason": None,
        "capabilities": {"kernelVersion": "6.1", "tetragon": {"address": None}},
        "policies": [{"name": "p", "sensors": ["s"]}],
        "conditions": [{"type": "Ready"}],
        "agentTemplate": None,
        "purlFunctionsOmitted": 0,
    }
    assert status["maxPostureReason"] == ""  # the status itself is left as it was
