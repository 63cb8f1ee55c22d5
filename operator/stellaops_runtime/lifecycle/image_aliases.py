"""The other manifests of an image's config: the digests kubelet may name a container's image by.

Kubernetes' CRI (containerd's CRI plugin) keeps images by their image id, the config digest:
every image in containerd's store whose manifest names that config is one CRI image, and a
container's ``imageID`` (kubelet's, so Tetragon's image id) is the first repo digest of that
CRI image, else the config digest. So a container created from ``test.local/app:1`` (manifest
M1) is named by ``registry.example/app@M2`` once an image of the same config but another
manifest (another compression, another build tool) was pulled. The containerd observer files it
under M1 (its reference's target), Tetragon under M2: one container's calls under two keys.

A config digest names one file system (its ``rootfs.diff_ids``), so M1 and M2 are the same
image's code. The observer learns the config of every image target in its namespace (Images/List
at each resync, containerd's image events after it; each manifest read once, containerd_client
``image_config``) and gives each record the other targets of its config
(``ContainerRecord.image_aliases``). The lookup files a Tetragon event naming one of them under
the record's own digest (lifecycle/lookup.py ``enrich``), as it does the config digest itself.
"""

from __future__ import annotations

import logging
from typing import Protocol

from stellaops_runtime import rpc
from stellaops_runtime.lifecycle.registry import ContainerRegistry

log = logging.getLogger(__name__)

TARGETS_MAX = 4096  # image targets followed; past it, a target is no alias (never a guess)
ALIASES_MAX = 64  # targets kept per config: a record's aliases, rebuilt at every image event, stay small


class _Client(Protocol):
    async def image_targets(self) -> list[str]: ...

    async def image_config(self, target: str) -> str: ...


class ImageConfigs:
    """Target digest -> config digest of the images in the observer's namespace."""

    def __init__(self) -> None:
        self._config: dict[str, str] = {}
        self._targets: dict[str, set[str]] = {}  # config -> its targets

    def aliases(self, config: str, own: str) -> tuple[str, ...]:
        """The targets of ``config`` other than ``own`` (sorted); () without both."""
        if not config or not own:
            return ()
        return tuple(sorted(self._targets.get(config, set()) - {own}))

    def _add(self, target: str, config: str) -> bool:
        if not target or not config or target in self._config or len(self._config) >= TARGETS_MAX:
            return False
        if len(self._targets.get(config, ())) >= ALIASES_MAX:  # a config copied thousands of times
            return False
        self._config[target] = config
        self._targets.setdefault(config, set()).add(target)
        return True

    async def relist(self, client: _Client) -> None:
        """Rebuild from containerd's image list (a resync): images removed since are dropped. A list
        that fails keeps what was known (the registry itself does not depend on it)."""
        try:
            targets = await client.image_targets()
        except rpc.RpcError as e:
            log.warning("containerd's image list failed (%s): image aliases kept as they were", e.code().name)
            return
        self._config, self._targets = {}, {}
        for target in list(dict.fromkeys(targets))[:TARGETS_MAX]:  # each read at most once per resync
            self._add(target, await client.image_config(target))

    async def learn(self, client: _Client, target: str) -> bool:
        """An image created or updated with ``target``: True when that gave a config a new target."""
        if not target or target in self._config:
            return False
        return self._add(target, await client.image_config(target))


def realias(registry: ContainerRegistry, images: ImageConfigs) -> None:
    """Give every record of ``registry`` the other targets of its image's config."""
    for r in registry.records():
        live = registry.get(r.namespace, r.container_id)
        if live is not None:
            live.image_aliases = images.aliases(live.image_config, live.image_digest)
