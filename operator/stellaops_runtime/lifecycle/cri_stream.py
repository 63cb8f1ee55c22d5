"""What a CRI runtime's ``GetContainerEvents`` stream can be trusted with, from the runtimes' own source.

The CRI observer (cri_observer.py) must not rest the registry on a stream
that loses events silently. What the runtimes do, read in their source:

- containerd 1.7 (``pkg/cri/server/container_events.go``, also ``sbserver``)::

      // TODO (https://github.com/containerd/containerd/issues/7318):
      // replace with a real implementation that broadcasts containerEventsChan
      // to all subscribers.
      for event := range c.containerEventsChan {

  One Go channel (``make(chan runtime.ContainerEventResponse, 1000)``,
  ``service.go``) read by every open stream: each event goes to ONE of them.
  The kubelet's evented PLEG, ``crictl events`` or a second agent takes
  events this observer then never sees. While no stream is open, events wait
  in the channel (up to 1000, then ``generateAndSendContainerEvent`` drops
  them with a debug log) and go to the next stream, however old.
- containerd 2.x (``internal/cri/server/container_events.go``,
  ``internal/eventq``): ``containerEventsQ.Subscribe()`` per stream, every
  subscriber gets every event; with no subscriber, events are held 5 minutes.
  Events sent while another subscriber exists and before this stream's
  ``Subscribe`` are not ours.
- CRI-O before 1.28 (``server/container_events.go``): ``for containerEvent :=
  range s.ContainerEventsChan`` per stream, the same split as containerd
  1.7; from 1.28 (8b230dec7e, "clients connected to container event stream
  now receive the same data") one goroutine sends each event to every stream.
  And with ``enable_pod_events = false``, CRI-O's default
  (docs/crio.conf.5.md), the call returns at once, OK and empty.

So: a stream that ends before its first message is no stream (CRI-O's
default): the observer relists, as for ``UNIMPLEMENTED``. A stream that
splits events between its readers (containerd 1.x, CRI-O before 1.28, or a
runtime this module does not know) only speeds things up: the lists are read
every ``relist_seconds`` all the same. And no runtime acknowledges the
stream: the first message is the only sign it is registered, so until one
arrives the lists are read every ``relist_seconds`` too, and once more when it
arrives (what changed between the last list and the registration).
"""

from __future__ import annotations

import re

from stellaops_runtime import rpc

# The lists are read again when the stream's first message arrives or this long after the request,
# before the registry is said in sync (docs/lifecycle.md "Subscribe, then list").
SETTLE_SECONDS = 0.5

_VERSION = re.compile(r"v?(\d+)\.(\d+)")


def shared_stream(runtime_name: str, runtime_version: str) -> bool:
    """Whether the runtime (its CRI ``Version``) may hand an event to another reader's stream instead of
    ours: containerd before 2.0, CRI-O before 1.28, any runtime or version not known here."""
    m = _VERSION.match(runtime_version.strip())
    if m is None:
        return True
    version = (int(m.group(1)), int(m.group(2)))
    name = runtime_name.strip().lower()
    if name == "containerd":
        return version < (2, 0)
    if name in ("cri-o", "crio"):
        return version < (1, 28)
    return True


def stream_absent(failed: BaseException | None) -> bool:
    """Whether a stream's end (before its first message) says the runtime has no stream: ``UNIMPLEMENTED``
    (containerd 1.6), or OK and empty (CRI-O's default ``enable_pod_events = false``)."""
    if isinstance(failed, StopAsyncIteration):
        return True
    return isinstance(failed, rpc.RpcError) and failed.code() == rpc.StatusCode.UNIMPLEMENTED


def why(e: BaseException | None) -> str:
    """A stream's end in a few words, for a log line or an error."""
    if isinstance(e, rpc.RpcError):
        return f"{e.code().name}: {e.details()}"
    return "ended, OK and empty" if isinstance(e, StopAsyncIteration) else type(e).__name__
