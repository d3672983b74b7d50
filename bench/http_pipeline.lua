-- bench/http_pipeline.lua: a wrk script sending requests 16 deep, pipelined.
local depth = tonumber(os.getenv("DEPTH")) or 16
init = function()
  local r = {}
  for i = 1, depth do r[i] = wrk.format(nil, "/") end
  req = table.concat(r)
end
request = function() return req end
