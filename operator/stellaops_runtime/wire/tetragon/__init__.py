"""Generated messages and stubs for Tetragon's ``tetragon`` gRPC package.

``tetragon_pb2`` (process, events, arguments, health), ``events_pb2``
(GetEvents request, filters, response), ``sensors_pb2`` and
``sensors_pb2_grpc`` (the FineGuidanceSensors service). Never edit the
``*_pb2*`` files by hand: change ``protos/tetragon/*.proto`` and run
``python -m stellaops_runtime.wire.generate``.
"""
