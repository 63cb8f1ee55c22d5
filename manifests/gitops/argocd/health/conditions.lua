-- Argo CD health of a StellaOps Runtime RuntimeObserver, ObservationPolicy or
-- ClusterObservationPolicy, read from the status the operator writes
-- (docs/operator.md, "Status"; docs/gitops.md, "Health in Argo CD").
--
-- Argo CD runs this with Lua's base and table libraries only, so it uses no
-- string or math function. `obj` is the live object; the result is
-- {status = <Argo CD health>, message = <text>}.
--
--   no status yet, a deletion under way, or a status older than the spec
--     (observedGeneration < metadata.generation)          -> Progressing
--   Stalled True (an invalid spec)                        -> Degraded
--   Degraded True (applied, but part of it fails)         -> Degraded
--   Progressing True (waiting for the cluster)            -> Progressing
--   Ready True                                            -> Healthy
--   anything else (no condition True)                     -> Progressing
-- A True condition whose own observedGeneration is older than the spec is
-- not believed. Suspended and Missing are never returned (Argo CD reports
-- Missing itself for an object that does not exist).
-- A RuntimeObserver whose agents cannot back "not observed" (its
-- NotObservedBacked condition False) is Degraded, or Progressing for
-- RegistryNotInSync, through these four: the operator folds it in.
local hs = {}
hs.status = "Progressing"
hs.message = "Waiting for the StellaOps operator to report a status"

local function text(v)
  if type(v) == "string" then
    return v
  end
  return ""
end

local function integer(v)
  if type(v) == "number" then
    return v
  end
  return nil
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

local meta = {}
if type(obj) == "table" and type(obj.metadata) == "table" then
  meta = obj.metadata
end
local status = nil
if type(obj) == "table" and type(obj.status) == "table" then
  status = obj.status
end
local generation = integer(meta.generation)

if meta.deletionTimestamp ~= nil then
  hs.message = "Being deleted: the operator removes what it rendered, then its finalizer"
elseif status ~= nil then
  local observed = integer(status.observedGeneration)
  if generation ~= nil and observed ~= nil and observed < generation then
    hs.message = "Waiting for the operator to observe generation " .. generation
      .. " (the status describes generation " .. observed .. ")"
  else
    local found = {}
    if type(status.conditions) == "table" then
      for _, c in ipairs(status.conditions) do
        if type(c) == "table" and type(c.type) == "string" and c.status == "True" and found[c.type] == nil then
          local seen = integer(c.observedGeneration)
          if generation == nil or seen == nil or seen >= generation then
            found[c.type] = c
          end
        end
      end
    end
    if found.Stalled ~= nil then
      hs.status = "Degraded"
      hs.message = describe(found.Stalled)
    elseif found.Degraded ~= nil then
      hs.status = "Degraded"
      hs.message = describe(found.Degraded)
    elseif found.Progressing ~= nil then
      hs.status = "Progressing"
      hs.message = describe(found.Progressing)
    elseif found.Ready ~= nil then
      hs.status = "Healthy"
      hs.message = describe(found.Ready)
    else
      hs.message = "No condition of Ready, Progressing, Degraded or Stalled is True yet"
    end
  end
end
return hs
