-- Argo CD health of a StellaOps Runtime ObservationNode, read from the Ready
-- condition its node's agent writes (docs/operator.md, "ObservationNode";
-- docs/gitops.md, "Health in Argo CD").
--
-- Argo CD runs this with Lua's base and table libraries only, so it uses no
-- string or math function. `obj` is the live object; the result is
-- {status = <Argo CD health>, message = <text>}.
--
--   no Ready condition yet (the agent has not reported)   -> Progressing
--   Ready True (the agent reaches its event source)       -> Healthy
--   Ready False or Unknown (e.g. TetragonUnreachable)     -> Degraded
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

local ready = nil
if type(obj) == "table" and type(obj.status) == "table" and type(obj.status.conditions) == "table" then
  for _, c in ipairs(obj.status.conditions) do
    if ready == nil and type(c) == "table" and c.type == "Ready" then
      ready = c
    end
  end
end

if ready ~= nil then
  local reason = text(ready.reason)
  local message = text(ready.message)
  if reason ~= "" and message ~= "" then
    hs.message = reason .. ": " .. message
  elseif reason ~= "" then
    hs.message = reason
  elseif message ~= "" then
    hs.message = message
  else
    hs.message = "Ready is " .. text(ready.status)
  end
  if ready.status == "True" then
    hs.status = "Healthy"
  else
    hs.status = "Degraded"
  end
end
return hs
