"""The uninstall recipe in docs/install.md removes every Node feature label the operator writes.

``kubectl delete -k manifests/`` removes the operator with the CRDs, so nobody
removes the ``feature.stellaops.io/`` labels from the Nodes; the recipe lists
them by hand, and a label added to the code (as ``heartbeat`` was) must be
added to it.
"""

from __future__ import annotations

import re
from pathlib import Path

from stellaops_runtime.controller.node_labels import FEATURE_LABEL_KEYS

INSTALL = Path(__file__).resolve().parents[2] / "docs" / "install.md"


def test_the_uninstall_recipe_removes_every_feature_label() -> None:
    text = INSTALL.read_text()
    recipe = text[text.index("kubectl label nodes --all") :].split("```", 1)[0]
    removed = re.findall(r"(feature\.stellaops\.io/[a-z-]+)-(?=\s|\\|$)", recipe)
    assert sorted(removed) == sorted(FEATURE_LABEL_KEYS)
