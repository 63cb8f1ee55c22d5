from stellaops_runtime.wire.tetragon import events_pb2 as _events_pb2
from stellaops_runtime.wire.tetragon import tetragon_pb2 as _tetragon_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TracingPolicyState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TP_STATE_UNKNOWN: _ClassVar[TracingPolicyState]
    TP_STATE_ENABLED: _ClassVar[TracingPolicyState]
    TP_STATE_DISABLED: _ClassVar[TracingPolicyState]
    TP_STATE_LOAD_ERROR: _ClassVar[TracingPolicyState]
    TP_STATE_ERROR: _ClassVar[TracingPolicyState]
    TP_STATE_LOADING: _ClassVar[TracingPolicyState]
    TP_STATE_UNLOADING: _ClassVar[TracingPolicyState]
    TP_STATE_SKIPPED: _ClassVar[TracingPolicyState]
    TP_STATE_PARTIALLY_ENABLED: _ClassVar[TracingPolicyState]

class TracingPolicyMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TP_MODE_UNKNOWN: _ClassVar[TracingPolicyMode]
    TP_MODE_ENFORCE: _ClassVar[TracingPolicyMode]
    TP_MODE_MONITOR: _ClassVar[TracingPolicyMode]
    TP_MODE_MONITOR_ONLY: _ClassVar[TracingPolicyMode]

class HookState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_UNSPECIFIED: _ClassVar[HookState]
    STATUS_LOADED: _ClassVar[HookState]
    STATUS_DIGEST_REJECTED: _ClassVar[HookState]
    STATUS_CALL_NOT_FOUND: _ClassVar[HookState]
    STATUS_PARTIAL_CALL_NOT_FOUND: _ClassVar[HookState]
TP_STATE_UNKNOWN: TracingPolicyState
TP_STATE_ENABLED: TracingPolicyState
TP_STATE_DISABLED: TracingPolicyState
TP_STATE_LOAD_ERROR: TracingPolicyState
TP_STATE_ERROR: TracingPolicyState
TP_STATE_LOADING: TracingPolicyState
TP_STATE_UNLOADING: TracingPolicyState
TP_STATE_SKIPPED: TracingPolicyState
TP_STATE_PARTIALLY_ENABLED: TracingPolicyState
TP_MODE_UNKNOWN: TracingPolicyMode
TP_MODE_ENFORCE: TracingPolicyMode
TP_MODE_MONITOR: TracingPolicyMode
TP_MODE_MONITOR_ONLY: TracingPolicyMode
STATUS_UNSPECIFIED: HookState
STATUS_LOADED: HookState
STATUS_DIGEST_REJECTED: HookState
STATUS_CALL_NOT_FOUND: HookState
STATUS_PARTIAL_CALL_NOT_FOUND: HookState

class TracingPolicyActionCounters(_message.Message):
    __slots__ = ("post", "signal", "monitor_signal", "override", "monitor_override", "notify_enforcer", "monitor_notify_enforcer", "set", "monitor_set")
    POST_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    MONITOR_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    MONITOR_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_ENFORCER_FIELD_NUMBER: _ClassVar[int]
    MONITOR_NOTIFY_ENFORCER_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    MONITOR_SET_FIELD_NUMBER: _ClassVar[int]
    post: int
    signal: int
    monitor_signal: int
    override: int
    monitor_override: int
    notify_enforcer: int
    monitor_notify_enforcer: int
    set: int
    monitor_set: int
    def __init__(self, post: _Optional[int] = ..., signal: _Optional[int] = ..., monitor_signal: _Optional[int] = ..., override: _Optional[int] = ..., monitor_override: _Optional[int] = ..., notify_enforcer: _Optional[int] = ..., monitor_notify_enforcer: _Optional[int] = ..., set: _Optional[int] = ..., monitor_set: _Optional[int] = ...) -> None: ...

class TracingPolicyStats(_message.Message):
    __slots__ = ("action_counters",)
    ACTION_COUNTERS_FIELD_NUMBER: _ClassVar[int]
    action_counters: TracingPolicyActionCounters
    def __init__(self, action_counters: _Optional[_Union[TracingPolicyActionCounters, _Mapping]] = ...) -> None: ...

class HookStatus(_message.Message):
    __slots__ = ("section", "state", "hook_description", "hook_idx")
    SECTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    HOOK_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    HOOK_IDX_FIELD_NUMBER: _ClassVar[int]
    section: str
    state: HookState
    hook_description: str
    hook_idx: int
    def __init__(self, section: _Optional[str] = ..., state: _Optional[_Union[HookState, str]] = ..., hook_description: _Optional[str] = ..., hook_idx: _Optional[int] = ...) -> None: ...

class TracingPolicyStatus(_message.Message):
    __slots__ = ("id", "name", "namespace", "info", "sensors", "enabled", "filter_id", "error", "state", "kernel_memory_bytes", "mode", "stats", "domain", "hook_statuses")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    SENSORS_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    FILTER_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    KERNEL_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    HOOK_STATUSES_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    namespace: str
    info: str
    sensors: _containers.RepeatedScalarFieldContainer[str]
    enabled: bool
    filter_id: int
    error: str
    state: TracingPolicyState
    kernel_memory_bytes: int
    mode: TracingPolicyMode
    stats: TracingPolicyStats
    domain: str
    hook_statuses: _containers.RepeatedCompositeFieldContainer[HookStatus]
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., info: _Optional[str] = ..., sensors: _Optional[_Iterable[str]] = ..., enabled: _Optional[bool] = ..., filter_id: _Optional[int] = ..., error: _Optional[str] = ..., state: _Optional[_Union[TracingPolicyState, str]] = ..., kernel_memory_bytes: _Optional[int] = ..., mode: _Optional[_Union[TracingPolicyMode, str]] = ..., stats: _Optional[_Union[TracingPolicyStats, _Mapping]] = ..., domain: _Optional[str] = ..., hook_statuses: _Optional[_Iterable[_Union[HookStatus, _Mapping]]] = ...) -> None: ...

class ListTracingPoliciesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTracingPoliciesResponse(_message.Message):
    __slots__ = ("policies",)
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[TracingPolicyStatus]
    def __init__(self, policies: _Optional[_Iterable[_Union[TracingPolicyStatus, _Mapping]]] = ...) -> None: ...

class GetVersionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    def __init__(self, version: _Optional[str] = ...) -> None: ...
