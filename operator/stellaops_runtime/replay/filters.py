"""Tetragon's GetEvents allow/deny filter semantics, as pure functions over ReplayEvents.

A replay server that stands in for Tetragon must filter like Tetragon, or tests
of our agent's filters prove nothing. The rules (Tetragon's events.proto
comments and filter code, summarised in the project's Tetragon fact sheet):

- inside one Filter every set field must match (AND); inside a list field any
  value may match (OR); several allow Filters are ORed; a deny match wins over
  an allow match; no allow_list means everything is allowed;
- ``namespace: [""]`` matches host (non-pod) processes; ``labels`` is a
  Kubernetes equality/set-based selector and never matches host processes;
- regexes use search semantics (Go's ``regexp.MatchString``), here Python ``re``.

Deliberate choices, documented here because a client could notice them:

- ``container_id`` is a *prefix* match against the container id, both as
  Tetragon reports it (``containerd://<hex>``) and without the runtime scheme;
- ``namespace_regex`` is matched against "" for host processes;
- filters that look at the process never match events without one (throttle,
  rate-limit info, test).

Filter fields this replay does not implement make compile_request raise
UnsupportedFilterError, and bad regexes or label selectors raise
InvalidFilterError: a filter is never silently ignored. ``field_filters``
(which would change the payload) is unsupported too; ``aggregation_options``
is accepted and ignored, as Tetragon aggregates no current event type.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stellaops_runtime.replay.events import ReplayEvent
from stellaops_runtime.wire.tetragon import events_pb2

Predicate = Callable[[ReplayEvent], bool]

# Filter fields we do not evaluate; a request using any of them is rejected.
UNSUPPORTED_FIELDS = (
    "health_check",
    "pid_set",
    "capabilities",
    "parent_binary_regex",
    "cel_expression",
    "parent_arguments_regex",
    "in_init_tree",
    "ancestor_binary_regex",
)


class FilterError(ValueError):
    """The request's filters cannot be applied (the server answers INVALID_ARGUMENT)."""


class UnsupportedFilterError(FilterError):
    """The request uses a filter field the replay does not implement."""


class InvalidFilterError(FilterError):
    """A regex or label selector in the request does not compile."""


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    """One Filter: the event matches when every predicate does."""

    predicates: tuple[Predicate, ...]

    def matches(self, event: ReplayEvent) -> bool:
        return all(p(event) for p in self.predicates)


@dataclass(frozen=True, slots=True)
class RequestFilter:
    """The allow and deny lists of one GetEventsRequest, compiled once per stream."""

    allow: tuple[CompiledFilter, ...] = ()
    deny: tuple[CompiledFilter, ...] = ()

    def accepts(self, event: ReplayEvent) -> bool:
        return accepts(event, allow=self.allow, deny=self.deny)


def accepts(
    event: ReplayEvent,
    *,
    allow: Sequence[CompiledFilter],
    deny: Sequence[CompiledFilter],
) -> bool:
    """Tetragon's rule: allowed by some allow filter (or no allow list) and by no deny filter."""
    if allow and not any(f.matches(event) for f in allow):
        return False
    return not any(f.matches(event) for f in deny)


def _compile_regexes(field_name: str, patterns: Sequence[str]) -> list[re.Pattern[str]]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as e:
            raise InvalidFilterError(f"filter field {field_name}: bad regex {pattern!r}: {e}") from e
    return compiled


def _regex_predicate(
    field_name: str,
    patterns: Sequence[str],
    get: Callable[[ReplayEvent], str],
    *,
    needs_pod: bool = False,
) -> Predicate:
    regexes = _compile_regexes(field_name, patterns)

    def pred(event: ReplayEvent) -> bool:
        if not event.has_process or (needs_pod and not event.in_pod):
            return False
        value = get(event)
        return any(r.search(value) for r in regexes)

    return pred


# --- Kubernetes label selectors -------------------------------------------------

_KEY_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$")
_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_SET_RE = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")

LabelRequirement = Callable[[dict[str, str]], bool]


def _split_selector(selector: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts]


def _check_key(key: str, selector: str) -> str:
    if not _KEY_RE.match(key):
        raise InvalidFilterError(f"filter field labels: bad label key {key!r} in {selector!r}")
    return key


def _check_value(value: str, selector: str) -> str:
    if not _VALUE_RE.match(value):
        raise InvalidFilterError(f"filter field labels: bad label value {value!r} in {selector!r}")
    return value


def _parse_requirement(text: str, selector: str) -> LabelRequirement:
    m = _SET_RE.match(text)
    if m:
        key = _check_key(m["key"], selector)
        values = frozenset(_check_value(v.strip(), selector) for v in m["values"].split(","))
        if m["op"] == "in":
            return lambda labels: key in labels and labels[key] in values
        return lambda labels: key not in labels or labels[key] not in values
    for op in ("!=", "==", "="):
        if op in text:
            raw_key, _, raw_value = text.partition(op)
            key = _check_key(raw_key.strip(), selector)
            value = _check_value(raw_value.strip(), selector)
            if op == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: key in labels and labels[key] == value
    if text.startswith("!"):
        key = _check_key(text[1:].strip(), selector)
        return lambda labels: key not in labels
    key = _check_key(text, selector)
    return lambda labels: key in labels


def parse_label_selector(selector: str) -> Callable[[dict[str, str]], bool]:
    """Compile one Kubernetes label selector (``k=v``, ``k!=v``, ``k``, ``!k``,
    ``k in (a,b)``, ``k notin (a,b)``, comma-ANDed). An empty selector matches any labels."""
    if not selector.strip():
        return lambda labels: True
    requirements = []
    for part in _split_selector(selector):
        if not part:
            raise InvalidFilterError(f"filter field labels: empty requirement in {selector!r}")
        requirements.append(_parse_requirement(part, selector))
    return lambda labels: all(req(labels) for req in requirements)


# --- compiling Filters ----------------------------------------------------------


def _container_id_matches(prefixes: Sequence[str], container_id: str) -> bool:
    bare = container_id.split("://", 1)[1] if "://" in container_id else container_id
    return any(container_id.startswith(p) or bare.startswith(p) for p in prefixes)


def compile_filter(f: events_pb2.Filter) -> CompiledFilter:
    """Compile one Filter; raises UnsupportedFilterError / InvalidFilterError."""
    set_fields = {descriptor.name for descriptor, _ in f.ListFields()}
    for name in UNSUPPORTED_FIELDS:
        if name in set_fields:
            raise UnsupportedFilterError(f"filter field {name} is not supported by the replay server")

    preds: list[Predicate] = []
    if f.binary_regex:
        preds.append(_regex_predicate("binary_regex", f.binary_regex, lambda e: e.binary))
    if f.namespace:
        namespaces = frozenset(f.namespace)
        preds.append(lambda e: e.has_process and e.namespace in namespaces)
    if f.pid:
        pids = frozenset(f.pid)
        preds.append(lambda e: e.has_process and e.pid in pids)
    if f.event_set:
        types = frozenset(int(t) for t in f.event_set)
        preds.append(lambda e: e.event_type in types)
    if f.pod_regex:
        preds.append(_regex_predicate("pod_regex", f.pod_regex, lambda e: e.pod_name, needs_pod=True))
    if f.arguments_regex:
        preds.append(_regex_predicate("arguments_regex", f.arguments_regex, lambda e: e.arguments))
    if f.labels:
        selectors = [parse_label_selector(s) for s in f.labels]
        preds.append(lambda e: e.in_pod and any(sel(e.labels) for sel in selectors))
    if f.policy_names:
        policies = frozenset(f.policy_names)
        preds.append(lambda e: e.policy_name in policies)
    if f.container_id:
        prefixes = tuple(f.container_id)
        preds.append(lambda e: e.in_pod and _container_id_matches(prefixes, e.container_id))
    if f.container_name_regex:
        preds.append(
            _regex_predicate(
                "container_name_regex", f.container_name_regex, lambda e: e.container_name, needs_pod=True
            )
        )
    if f.namespace_regex:
        preds.append(_regex_predicate("namespace_regex", f.namespace_regex, lambda e: e.namespace))
    return CompiledFilter(tuple(preds))


def compile_request(request: events_pb2.GetEventsRequest) -> RequestFilter:
    """Compile a GetEventsRequest's allow and deny lists; raises FilterError subclasses."""
    if request.field_filters:
        raise UnsupportedFilterError("request field field_filters is not supported by the replay server")
    return RequestFilter(
        allow=tuple(compile_filter(f) for f in request.allow_list),
        deny=tuple(compile_filter(f) for f in request.deny_list),
    )
