"""Tetragon TracingPolicy templates the policy renderer starts from.

The YAML files in ``controller/templates/`` are the one copy (the
repository's ``tracingpolicies/`` is a symlink to that folder); each is a
valid TracingPolicy on its own. They are read through
:mod:`importlib.resources` so an installed wheel carries them too.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from typing import Any

import yaml

TEMPLATE_NAMES = ("base.yaml", "syscalls.yaml", "uprobes.yaml")


@functools.cache
def _load(name: str) -> dict[str, Any]:
    if name not in TEMPLATE_NAMES:
        raise KeyError(f"no TracingPolicy template {name!r}; have {', '.join(TEMPLATE_NAMES)}")
    text = resources.files("stellaops_runtime.controller").joinpath("templates", name).read_text("utf-8")
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or doc.get("apiVersion") != "cilium.io/v1alpha1":
        raise ValueError(f"template {name} is not a cilium.io/v1alpha1 object")
    return doc


def load_template(name: str) -> dict[str, Any]:
    """A fresh deep copy of one template (callers may mutate it)."""
    return copy.deepcopy(_load(name))
