"""How a node that does not fully run a policy reads in its rollout's ``failures``.

Split from ``controller.rollout`` (which folds the nodes): a ``PARTIALLY_ENABLED``
entry's ``failedHooks`` (the agent's copy of Tetragon's ``hook_statuses``)
become ``kprobes[1] do_sys_foo: CALL_NOT_FOUND`` texts and one failure
entry whose message starts ``N of M hooks loaded``; a node whose Tetragon
loaded the policy while its agent gets no events (``source: none``) gets one
``NoEventSource`` entry (``no_source_entry``), one that cannot reach Tetragon
a ``TetragonUnreachable`` entry (``unreachable_entry``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

MAX_MESSAGE_CHARS = 512
MAX_HOOKS_LISTED = 10


def hook_text(hook: Mapping[str, Any]) -> str:
    """``kprobes[1] do_sys_foo: CALL_NOT_FOUND`` for one ``failedHooks`` entry."""
    where = f"{hook.get('section') or 'hooks'}[{hook.get('index', '?')}]"
    name = str(hook.get("hook") or "")
    return f"{where}{' ' + name if name else ''}: {hook.get('state') or 'UNKNOWN'}"


def partial_entry(node: str, policy: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """The ``failures`` entry of a node where ``policy`` is PARTIALLY_ENABLED."""
    raw = entry.get("failedHooks")
    hooks = [hook_text(h) for h in raw if isinstance(h, Mapping)] if isinstance(raw, list) else []
    total, loaded = entry.get("hooksTotal"), entry.get("hooksLoaded")
    if isinstance(total, int) and isinstance(loaded, int) and total:
        head = f"{loaded} of {total} hooks loaded"
    else:
        head = "some hooks were not loaded"
    detail = "; ".join(hooks[:MAX_HOOKS_LISTED]) or str(entry.get("error") or "")
    return {
        "node": node,
        "policy": policy,
        "state": "PARTIALLY_ENABLED",
        "message": (f"{head}: {detail}" if detail else head)[:MAX_MESSAGE_CHARS],
        "hooks": hooks[:MAX_HOOKS_LISTED],
    }


NO_SOURCE_STATE = "NoEventSource"
UNREACHABLE_STATE = "TetragonUnreachable"


def unreachable_entry(
    node: str, wanted: Sequence[tuple[str, str]], since: datetime | None, detail: str
) -> dict[str, Any]:
    """The ``failures`` entry of a node whose agent cannot reach Tetragon (since when, and why)."""
    when = f" since {since.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}" if since is not None else ""
    ns, name = wanted[0] if wanted else ("", "")
    return {
        "node": node,
        "policy": f"{ns}/{name}" if ns else name,
        "state": UNREACHABLE_STATE,
        "message": f"the agent cannot reach Tetragon{when}{': ' + detail if detail else ''}"[
            :MAX_MESSAGE_CHARS
        ],
    }


def no_source_entry(node: str, wanted: Sequence[tuple[str, str]], why: str) -> dict[str, Any]:
    """The ``failures`` entry of a node whose Tetragon runs the policy while its agent gets no events
    from it (``source: none``; ``why``: the agent's ``maxPostureReason``)."""
    ns, name = wanted[0] if wanted else ("", "")
    message = "the agent gets no events here (source none), so nothing it traces is observed"
    return {
        "node": node,
        "policy": f"{ns}/{name}" if ns else name,
        "state": NO_SOURCE_STATE,
        "message": (f"{message}: {why}" if why else message)[:MAX_MESSAGE_CHARS],
    }
