"""The uninstall recipe in docs/install.md removes every Node feature label the operator writes.

``kubectl delete -k manifests/`` removes the operator with the CRDs, so nobody
removes the ``feature.stellaops.io/`` labels from the Nodes; the recipe lists
them by hand, and a label added to the code (as ``heartbeat`` was) must be
added to it.
"""

from __future__ import annotations

import re
from pathlib import Path

from stellaops_runtime.contracts.crds import (
    OBSERVE_LEVEL_ANNOTATION,
    POSTURE_ANNOTATION,
    POSTURE_REASON_ANNOTATION,
)
from stellaops_runtime.controller.node_labels import FEATURE_LABEL_KEYS
from stellaops_runtime.controller.posture import POD_LABEL_KEYS

INSTALL = Path(__file__).resolve().parents[2] / "docs" / "install.md"


def test_the_uninstall_recipe_removes_every_feature_label() -> None:
    text = INSTALL.read_text()
    recipe = text[text.index("kubectl label nodes --all") :].split("```", 1)[0]
    removed = re.findall(r"(feature\.stellaops\.io/[a-z-]+)-(?=\s|\\|$)", recipe)
    assert sorted(removed) == sorted(FEATURE_LABEL_KEYS)


def test_the_uninstall_recipe_removes_every_pod_label_and_annotation_the_operator_writes() -> None:
    """The pods' level labels, ``observe-off`` and posture annotations stay after uninstall too (the
    operator that would change them is gone, and a posture annotation then claims a level nobody
    observes): the recipe lists exactly the keys the operator writes on pods, not the user's own
    ``stellaops.io/observe-level``."""
    text = INSTALL.read_text()
    labels = text[text.index("kubectl label pods --all") :].split("\n\n", 1)[0]
    annotations = text[text.index("kubectl annotate pods --all") :].split("\n\n", 1)[0]
    key = r"(stellaops\.io/[a-z-]+)-(?=\s|\\|$)"
    assert sorted(re.findall(key, labels.split("kubectl annotate")[0])) == sorted(POD_LABEL_KEYS)
    assert sorted(re.findall(key, annotations.split("```")[0])) == sorted(
        (POSTURE_ANNOTATION, POSTURE_REASON_ANNOTATION)
    )
    assert OBSERVE_LEVEL_ANNOTATION not in labels + annotations
