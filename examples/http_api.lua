-- examples/http_api.lua: a small JSON API over an in-memory resource, with the router.
--   lua5.4 examples/http_api.lua           serve inline on 127.0.0.1:8081 (PORT=...)
--   curl -s -X POST -d '{"name":"lupin"}' http://127.0.0.1:8081/items
--   curl -s http://127.0.0.1:8081/items/1 ; curl -s -X DELETE http://127.0.0.1:8081/items/1
-- JSON through lua-cjson (Debian's lua-cjson). The store is per Lua state: under the
-- launcher with several workers each worker has its own (serve it with -w 1, or inline).
local http = require "lupine.http"
local cjson = require "cjson.safe" -- decode returns nil, err on bad input instead of raising

local items, next_id = {}, 1

local function json(res, status, value)
  res:header("Content-Type", "application/json")
  res:send(status, cjson.encode(value))
end

local router = http.router()

router:get("/items", function(_, res)
  local list = {}
  for _, item in pairs(items) do list[#list + 1] = item end
  table.sort(list, function(a, b) return a.id < b.id end)
  -- Debian's lua-cjson 2.1.0 encodes an empty table as {}: say [] ourselves.
  res:header("Content-Type", "application/json")
  res:send(200, #list == 0 and "[]" or cjson.encode(list))
end)

router:get("/items/:id", function(req, res)
  local item = items[tonumber(req.params.id)]
  if not item then return json(res, 404, { error = "no item " .. req.params.id }) end
  json(res, 200, item)
end)

router:post("/items", function(req, res)
  local body = cjson.decode(req.body)
  if type(body) ~= "table" or type(body.name) ~= "string" or body.name == "" then
    return json(res, 400, { error = 'expected a JSON object with a "name" string' })
  end
  local item = { id = next_id, name = body.name }
  items[next_id], next_id = item, next_id + 1
  res:header("Location", "/items/" .. item.id)
  json(res, 201, item)
end)

router:delete("/items/:id", function(req, res)
  local id = tonumber(req.params.id)
  if not items[id] then return json(res, 404, { error = "no item " .. req.params.id }) end
  items[id] = nil
  res:send(204)
end)

return http.server {
  name = "http_api",
  port = tonumber(os.getenv("PORT")) or 8081,
  maxBody = 64 * 1024,
  handler = router,
}
