"""Generated messages for our subset of containerd's gRPC API.

``types_pb2`` (Envelope, Descriptor), ``task_pb2`` (Process, Status),
``events_pb2`` (TaskStart, TaskExit, ContainerCreate ... payloads),
``image_events_pb2`` (ImageCreate ...), and the request/response messages of
the services we call: ``events_service_pb2``, ``containers_pb2``,
``tasks_pb2``, ``images_pb2``. Never edit the ``*_pb2*`` files by hand: change
``protos/containerd/*.proto`` and run
``python -m stellaops_runtime.wire.containerd.generate``.
"""
