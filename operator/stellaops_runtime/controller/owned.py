"""Writes of the objects the operator owns: create, patch back to the rendering, delete.

Every patch and delete goes through one ownership check first
(:func:`controller.ownership.why_not_ours`): the operator's RBAC lets it
write every Tetragon policy in the cluster, so the code is what keeps it to
its own (the module docstring of ``ownership`` says why RBAC cannot). The
check runs on the object as the operator last saw it, and the write carries
that object's uid as a precondition (``metadata.uid`` in a merge patch,
``preconditions.uid`` on a delete), so an object deleted and re-created by
someone else in between is refused by the API server instead of overwritten.
On that refusal (``ApiError.uid_mismatch``) ``apply`` reads the live object and
decides on it once: ours is patched to its rendering under its own uid,
another's is refused (``NotOwnedError``), so a replaced object neither fails
the reconcile nor stays as it was restored until the index catches up. A patch
answered 404 for the object (deleted since the operator saw it; not a kind that
is not served, ``ApiError.kind_not_served``) creates it, as a reconcile that had
read it gone would have. ``delete_owned`` decides the same way on a delete refused
for its uid: a replacement that is gone is done, ours is deleted under its own uid,
another's is refused (``NotOwnedError``).

An object of ours that is being deleted (``deletionTimestamp`` set, a finalizer pending: a
foreground deletion, another controller's finalizer) is not written to and not applied: ``apply``
raises ``TerminatingError`` (nothing written) and the owner's status says so (reason
``WaitingForDeletion``), where it used to patch it and count it as applied until it went; so does
a patch answered with the object marked deleted (deleted after the copy the operator read). Its
DELETED event reconciles the owner, which creates it again
(tests/integration/test_owned_terminating.py, tests/realkube/test_owned_terminating_real.py).
Held for the operator's stale bound (``stale_after_seconds``) or more, the owner is Degraded with
the same reason (``held_too_long``; no event comes while a finalizer stays, so ``look_again``
reconciles it at the bound), and an object whose namespace is itself being deleted is not promised
back (tests/integration/test_owned_terminating_held.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from stellaops_runtime.contracts import crds
from stellaops_runtime.controller.conditions import WAITING_FOR_DELETION
from stellaops_runtime.controller.loaded_version import Version, object_version
from stellaops_runtime.controller.ownership import NotOwnedError, Owner, why_not_ours
from stellaops_runtime.controller.patches import (
    SPEC_WRITTEN_ANNOTATION,
    for_create,
    owned_patch,
)
from stellaops_runtime.controller.rollout import parse_time
from stellaops_runtime.controller.state import (
    INDEX_CHILDREN,
    INDEX_OWNED,
    ObjKey,
    ReconcilerState,
    obj_key,
    owned_part,
    utcnow,
)
from stellaops_runtime.kube.client import ApiError
from stellaops_runtime.kube.resources import Resource, resource_for

log = logging.getLogger(__name__)

# Kinds whose load state the nodes report by name (Tetragon's policies): a spec patch is stamped.
REPORTED_KINDS = frozenset({crds.TETRAGON_POLICY_KIND, crds.TETRAGON_NAMESPACED_KIND})


class TerminatingError(RuntimeError):
    """An object of a rendered name is being deleted: not written, not applied; made again once gone.

    ``since``: when it was marked deleted, for the bound after which its owner is Degraded
    (:func:`held_too_long`); ``namespace_going``: its namespace is being deleted too, so it is
    not made again (the message says so instead of promising it).
    """

    reason = WAITING_FOR_DELETION

    def __init__(
        self,
        *,
        kind: str,
        namespace: str | None,
        name: str,
        meta: Mapping[str, Any],
        since: datetime | None = None,
        namespace_going: bool = False,
    ) -> None:
        where = f"{namespace}/{name}" if namespace else name
        finalizers = meta.get("finalizers")
        every = [str(f) for f in finalizers] if isinstance(finalizers, list) else []
        held = every[:5]
        more = f" and {len(every) - 5} more" if len(every) > 5 else ""
        pending = f"; finalizers pending: {', '.join(held)}{more}" if held else ""
        then = (
            f"its namespace {namespace} is being deleted too, so it is not created again"
            if namespace_going
            else "it is created again once it is gone"
        )
        super().__init__(
            f"{kind} {where} is being deleted (since {meta.get('deletionTimestamp')}{pending}): {then}"
        )
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.since = since
        self.namespace_going = namespace_going


def held_too_long(
    errors: list[TerminatingError], *, now: datetime, bound: float
) -> tuple[list[TerminatingError], float | None]:
    """Those of ``errors`` held for ``bound`` seconds or more, and in how many seconds the next is.

    An object a finalizer never releases kept its owner Progressing for ever, so Argo CD and
    ``kubectl wait`` waited for ever: past the bound the owner is Degraded
    (tests/unit/test_owned_terminating_bound.py). One with no ``since`` is never overdue.
    """
    overdue: list[TerminatingError] = []
    next_in: float | None = None
    for e in errors:
        if e.since is None:
            continue
        left = bound - (now - e.since).total_seconds()
        if left <= 0:
            overdue.append(e)
        else:
            next_in = left if next_in is None else min(next_in, left)
    return overdue, next_in


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class OwnedWriter(ReconcilerState):
    """``apply`` and ``delete_owned`` with the ownership check; ``_children`` from kopf's index."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._terminating: set[str] = set()  # namespaces being deleted: nothing is created there
        # Objects of ours seen being deleted: their uid and when first seen (operator's clock).
        self._deleting_seen: dict[ObjKey, tuple[str, datetime]] = {}
        self._look_again: dict[Any, asyncio.TimerHandle] = {}  # owners to reconcile at a bound

    def look_again(self, key: Any, delay: float) -> None:
        """Reconcile the owner ``key`` (a reconcile key) again in ``delay`` seconds.

        No event comes while a finalizer stays; the timer is kept off the scheduler's queue until
        it fires, so a wait for a bound is not pending work (one timer per owner: the last wins).
        """
        trigger = getattr(self, "trigger", None)  # reconcile.Reconciler's scheduler
        if trigger is None:
            return
        if (old := self._look_again.pop(key, None)) is not None:
            old.cancel()

        def fire() -> None:
            self._look_again.pop(key, None)
            trigger(key)

        self._look_again[key] = asyncio.get_running_loop().call_later(delay, fire)

    def _terminating_error(self, key: ObjKey, meta: Mapping[str, Any]) -> TerminatingError:
        """What to raise for an object of ours being deleted, timed from its ``deletionTimestamp``.

        The stamp is the API server's; when it is unreadable or later than the operator first saw
        the object going (clock skew), the operator's first sight is used. A first sight is kept
        while its object is in kopf's index: those of objects gone for good (never applied again,
        their owner deleted too) are forgotten when another is first seen, so the memory is bounded
        by the objects being deleted at once (tests/unit/test_owned_terminating_bound.py).
        """
        uid = str(meta.get("uid") or "")
        known = self._deleting_seen.get(key)
        if known is None or known[0] != uid:
            for gone in [k for k in self._deleting_seen if k != key and self._one(INDEX_OWNED, k) is None]:
                del self._deleting_seen[gone]
            known = self._deleting_seen[key] = (uid, utcnow())
        seen = known[1]
        stamp = parse_time(meta.get("deletionTimestamp"))
        namespace = key[2]
        return TerminatingError(
            kind=key[1],
            namespace=namespace,
            name=key[3],
            meta=meta,
            since=seen if stamp is None else min(seen, stamp),
            namespace_going=namespace is not None and namespace in self._terminating,
        )

    def _check_ours(self, key: ObjKey, current: Mapping[str, Any], owner: Owner | None) -> None:
        why = why_not_ours(current, owner)
        if why is None:
            return
        err = NotOwnedError(kind=key[1], namespace=key[2], name=key[3], why=why)
        self.stats.errors["not-owned"] += 1
        log.warning("refused to write %s", err)
        raise err

    async def apply(self, desired: Mapping[str, Any]) -> str:
        """Create or patch one owned object; "created", "patched" or "unchanged".

        Raises NotOwnedError (nothing written) when an object of that name exists and is not ours,
        TerminatingError when it is ours and being deleted (nothing written; unless it was deleted
        after the copy we read, the patch's answer then showing it going).
        """
        res = resource_for(str(desired["apiVersion"]), str(desired["kind"]))
        key = obj_key(desired)
        name, namespace = key[3], key[2]
        seen = self._one(INDEX_OWNED, key)
        part = owned_part(seen)
        current = self._owned(key)
        if current is not None and seen is not None and (seen.get("metadata") or {}).get("deletionTimestamp"):
            # Our last write (the overlay) predates its deletion, which the overlay's part does not
            # show (tests/integration/test_owned_terminating.py): the index's copy says it is going.
            current = seen
        if current is None:
            try:
                return await self._create(res, key, part, desired)
            except ApiError as e:
                if not e.conflict:
                    raise
                current = await self.api.get(res, name=name, namespace=namespace)
                if current is None:
                    raise
        try:
            return await self._patch(res, key, part, desired, current)
        except ApiError as e:
            if e.not_found and not e.kind_not_served:
                # Deleted since the operator saw it: wanted, so made again now (a 404 read as a
                # missing CRD said TetragonNotInstalled: tests/integration/test_policy_child_gone.py).
                return await self._create(res, key, part, desired)
            if not e.uid_mismatch:
                raise
            # Replaced under its name since the operator saw it (kopf has not indexed the new
            # object): decided on the live one, once (tests/integration/test_owned_patch_uid.py).
            live = await self.api.get(res, name=name, namespace=namespace)
            if live is None:  # gone again: wanted, so made (test_owned_patch_uid.py)
                return await self._create(res, key, part, desired)
        return await self._patch(res, key, part, desired, live)

    async def _create(self, res: Resource, key: ObjKey, part: Any, desired: Mapping[str, Any]) -> str:
        body = await self.api.create(res, for_create(desired))
        self.stats.writes[f"create {desired['kind']}"] += 1
        self._remember(key, part, body)
        return "created"

    async def _patch(
        self, res: Resource, key: ObjKey, part: Any, desired: Mapping[str, Any], current: Mapping[str, Any]
    ) -> str:
        """Patch ``current`` to its rendering under its uid, after the ownership check."""
        name, namespace = key[3], key[2]
        self._check_ours(key, current, Owner.of_desired(desired))
        live_meta = current.get("metadata") or {}
        if live_meta.get("deletionTimestamp"):  # going: a patch would be applied, and lost with it
            raise self._terminating_error(key, live_meta)
        self._deleting_seen.pop(key, None)  # not going (any more): forgotten
        patch = owned_patch(desired, current)
        if patch is None:
            return "unchanged"
        uid = (current.get("metadata") or {}).get("uid")
        if uid:  # a precondition: the API server refuses to change an object's uid
            patch = {**patch, "metadata": {**(patch.get("metadata") or {}), "uid": uid}}
        written = utcnow()
        if "spec" in patch and desired["kind"] in REPORTED_KINDS:  # nodes list these by name only
            meta = patch["metadata"] = dict(patch.get("metadata") or {})
            meta["annotations"] = {
                **(meta.get("annotations") or {}),
                SPEC_WRITTEN_ANNOTATION: _rfc3339(written),
            }
        body = await self.api.patch(res, name=name, namespace=namespace, patch=patch)
        self.stats.writes[f"patch {desired['kind']}"] += 1
        self._remember(key, part, body)
        if "spec" in patch:  # a new version of a name the nodes may list already (rollout.fold_rollout)
            self._spec_written[key] = written
        log.info("%s %s/%s differed from its rendering: patched", desired["kind"], namespace or "", name)
        answered = body.get("metadata") if isinstance(body, Mapping) else None
        if isinstance(answered, Mapping) and answered.get("deletionTimestamp"):
            # Deleted between the copy read and the patch: written, but going all the same
            # (tests/integration/test_owned_terminating.py).
            raise self._terminating_error(key, answered)
        return "patched"

    async def delete_owned(self, key: ObjKey, owner: Owner) -> bool:
        """Delete one owned object of ``owner``; False when it was already gone.

        Raises NotOwnedError (nothing deleted) when the object is not ``owner``'s.
        """
        seen = self._one(INDEX_OWNED, key)
        current = self._owned(key)
        if current is None:
            return False
        res = resource_for(key[0], key[1])
        try:
            gone = await self._delete(res, key, current, owner)
        except ApiError as e:
            if not e.uid_mismatch:
                raise
            # Replaced under its name since the operator saw it (kopf has not indexed the new
            # object): decided on the live one, once (tests/integration/test_owned_delete_uid.py).
            live = await self.api.get(res, name=key[3], namespace=key[2])
            if live is None:
                gone = False
            else:
                try:
                    gone = await self._delete(res, key, live, owner)
                except ApiError as again:
                    if not again.uid_mismatch:
                        raise
                    raise NotOwnedError(
                        kind=key[1], namespace=key[2], name=key[3], why="it was replaced by another object"
                    ) from None
        self._remember(key, owned_part(seen), None)
        self._spec_written.pop(key, None)
        if gone:
            self.stats.writes[f"delete {key[1]}"] += 1
        return gone

    async def _delete(self, res: Resource, key: ObjKey, current: Mapping[str, Any], owner: Owner) -> bool:
        """Delete ``current`` under its uid, after the ownership check."""
        self._check_ours(key, current, owner)
        uid = str((current.get("metadata") or {}).get("uid") or "") or None
        return await self.api.delete(res, name=key[3], namespace=key[2], uid=uid)

    async def delete_children(self, children: set[ObjKey], owner: Owner) -> list[NotOwnedError]:
        """Delete each child (sorted); the refusals are returned, the others raised."""
        refused: list[NotOwnedError] = []
        for child in sorted(children, key=str):
            try:
                await self.delete_owned(child, owner)
            except NotOwnedError as e:
                refused.append(e)
        return refused

    def _children(self, *owners: Any) -> set[ObjKey]:
        out: set[ObjKey] = set()
        for owner in owners:
            for child in self._all(INDEX_CHILDREN, owner):
                if self._owned(child) is not None:
                    out.add(child)
        return out

    def spec_written_at(self, key: ObjKey) -> datetime | None:
        """When the current version of an owned object's spec was written, as far as anyone can tell.

        The latest of: this process's own last spec patch, the annotation every spec patch sets
        (which outlives the process: a restarted operator reads it), and the object's
        ``creationTimestamp`` (a name deleted and created again is a new version too).
        """
        current = self._owned(key)
        meta = (current or {}).get("metadata") or {}
        annotations = meta.get("annotations") if isinstance(meta.get("annotations"), Mapping) else {}
        times = [
            self._spec_written.get(key),
            parse_time((annotations or {}).get(SPEC_WRITTEN_ANNOTATION)),
            parse_time(meta.get("creationTimestamp")),
        ]
        return max((t for t in times if t is not None), default=None)

    def written_versions(
        self, keys: set[ObjKey]
    ) -> tuple[dict[tuple[str, str], datetime], dict[tuple[str, str], Version]]:
        """Per owned Tetragon object, (namespace or "", name) -> when its spec was written, and ->
        its (uid, generation) now: what a node's report must be newer than, or name
        (``rollout.fold_rollout``)."""
        written: dict[tuple[str, str], datetime] = {}
        versions: dict[tuple[str, str], Version] = {}
        for key in keys:
            ref = (key[2] or "", key[3])
            if (t := self.spec_written_at(key)) is not None:
                written[ref] = t
            if (v := object_version(self._owned(key))) is not None:
                versions[ref] = v
        return written, versions

    def _is_ours(self, key: ObjKey, owner: Owner) -> bool:
        current = self._owned(key)
        return current is not None and why_not_ours(current, owner) is None
