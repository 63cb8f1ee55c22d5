-- Argo CD health of a StellaOps Runtime ObservationNode, read from the
-- conditions its node's agent writes (docs/operator.md, "ObservationNode";
-- docs/gitops.md, "Health in Argo CD").
--
-- Argo CD runs this with Lua's base and table libraries only, so it uses no
-- string or math function. `obj` is the live object; the result is
-- {status = <Argo CD health>, message = <text>}. The worst that applies wins:
--
--   Ready False or Unknown (e.g. TetragonUnreachable)     -> Degraded
--   ExportPositionRecorded not True (WatchRecordUnwritable: the agent holds
--     what it read and stores nothing)                    -> Degraded
--   ContainersKnown not True (NoRuntimeSocket, LifecycleDisabled, any other
--     reason: no window of a container's image backs "not observed")
--                                                         -> Degraded
--   TetragonLossesKnown not True (MetricsUnreadable: Tetragon's metrics cannot
--     be read, what it loses is unknown, so the node's time is a gap; make
--     them reachable or set spec.tetragon.metricsUrl "") -> Degraded
--   EventSource not True (NoEventSource: Tetragon answers but the agent's
--     event stream is not connected, nothing on the node is observed; the
--     agent reconnects by itself, and the policies turn Degraded after the
--     operator's bound), unless status.source names a working source
--     (tetragon, native: the condition an older agent kept) -> Progressing
--   ContainersKnown False, RegistryNotInSync (before the registry's first
--     sample, the runtime away: the agent retries by itself) -> Progressing
--   no Ready condition yet (the agent has not reported)   -> Progressing
--   Ready True (Tetragon answers), none of the above      -> Healthy
-- The message of the first two is the condition's "<reason>: <message>";
-- for ExportPositionRecorded, ContainersKnown, TetragonLossesKnown and
-- EventSource it starts with "<type> <status>: ". The first three are written
-- only when they apply (the export source; an agent that reports its container
-- runtime; a tetragon.metricsUrl), and an older agent writes no EventSource or
-- TetragonLossesKnown, so their absence is no fault.
-- Whether the heartbeat is recent cannot be judged here (Argo CD's Lua has
-- no clock parser): a stale node shows in the policies' rollout.nodesStale.
local hs = {}
hs.status = "Progressing"
hs.message = "Waiting for the node's agent to report"

local function text(v)
  if type(v) == "string" then
    return v
  end
  return ""
end

local function describe(c)
  local reason = text(c.reason)
  local message = text(c.message)
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if reason ~= "" then
    return reason
  end
  return message
end

-- "<type> <status>: <reason>: <message>" of a condition that is not True
local function named(kind, c)
  local state = text(c.status)
  if state == "" then
    state = "not True"
  end
  local said = describe(c)
  if said == "" then
    return kind .. " is " .. state
  end
  return kind .. " " .. state .. ": " .. said
end

local found = {}
if type(obj) == "table" and type(obj.status) == "table" and type(obj.status.conditions) == "table" then
  for _, c in ipairs(obj.status.conditions) do
    if type(c) == "table" and type(c.type) == "string" and found[c.type] == nil then
      found[c.type] = c
    end
  end
end

local ready = found.Ready
local export = found.ExportPositionRecorded
local containers = found.ContainersKnown
local source = found.EventSource
local losses = found.TetragonLossesKnown
-- what the status says delivers events: an EventSource False beside a working source is one
-- a newer agent left to an older one, which keeps conditions it does not write
local works = type(obj) == "table" and type(obj.status) == "table"
  and (obj.status.source == "tetragon" or obj.status.source == "native")
local syncing = containers ~= nil and containers.status == "False" and containers.reason == "RegistryNotInSync"

if ready ~= nil and ready.status ~= "True" then
  hs.status = "Degraded"
  hs.message = describe(ready)
  if hs.message == "" then
    hs.message = "Ready is " .. text(ready.status)
  end
elseif export ~= nil and export.status ~= "True" then
  hs.status = "Degraded"
  hs.message = named("ExportPositionRecorded", export)
elseif containers ~= nil and containers.status ~= "True" and not syncing then
  hs.status = "Degraded"
  hs.message = named("ContainersKnown", containers)
elseif losses ~= nil and losses.status ~= "True" then
  hs.status = "Degraded"
  hs.message = named("TetragonLossesKnown", losses)
elseif source ~= nil and source.status ~= "True" and not works then
  hs.status = "Progressing"
  hs.message = named("EventSource", source)
elseif syncing then
  hs.status = "Progressing"
  hs.message = named("ContainersKnown", containers)
elseif ready ~= nil then
  hs.status = "Healthy"
  hs.message = describe(ready)
  if hs.message == "" then
    hs.message = "Ready is True"
  end
end
return hs
