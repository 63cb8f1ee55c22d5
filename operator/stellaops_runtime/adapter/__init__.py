"""Event adapter: each source's wire format -> one RuntimeCallEvent.

``from_proto`` reads Tetragon's protobuf messages (gRPC), ``from_json`` its
JSON export lines; ``common`` holds every decision the two share.
"""
