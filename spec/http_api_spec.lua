-- examples/http_api.lua driven by real clients: curl and Python's http.client.
local test = require "lupine.test"
local run = require("proc").output

describe("examples/http_api.lua", function()
  local leaks = leak_check()
  before_each(leaks.before)
  after_each(leaks.after)
  local server
  setup(function() server = test.server(dofile("examples/http_api.lua")) end)
  teardown(function() server:close() end)

  it("creates, reads, lists and deletes items for curl", function()
    local base = ("http://127.0.0.1:%d"):format(server.port)
    local out, code = run { "curl", "-sS", "-X", "POST", "-H", "Content-Type: application/json",
      "-d", '{"name":"lupin"}', "-w", " %{http_code} %{header_json}", base .. "/items" }
    assert.equal(0, code, out)
    -- cjson orders keys as its table walk finds them: either way
    assert.truthy(out:find('^{"id":1,"name":"lupin"} 201 ') or out:find('^{"name":"lupin","id":1} 201 '), out)
    assert.matches('"location":%["/items/1"%]', out)
    out = run { "curl", "-sS", "-w", " %{http_code}", base .. "/items/1" }
    assert.truthy(out == '{"id":1,"name":"lupin"} 200' or out == '{"name":"lupin","id":1} 200', out)
    out = run { "curl", "-sS", "-w", " %{http_code}", base .. "/items" }
    assert.truthy(out == '[{"id":1,"name":"lupin"}] 200' or out == '[{"name":"lupin","id":1}] 200', out)
    out = run { "curl", "-sS", "-X", "DELETE", "-w", "%{http_code}", base .. "/items/1" }
    assert.equal("204", out)
    out = run { "curl", "-sS", "-w", " %{http_code}", base .. "/items/1" }
    assert.equal('{"error":"no item 1"} 404', out)
    out = run { "curl", "-sS", "-w", " %{http_code}", base .. "/items" }
    assert.equal("[] 200", out)
  end)

  it("answers Python's http.client: bad JSON 400, unknown route 404, wrong method 405", function()
    local out, code = run { "python3", "-c", [[
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
def call(method, path, body=None):
    c.request(method, path, body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    return r.status, r.getheader("Content-Type"), r.getheader("Allow"), data
print(call("POST", "/items", "{not json"))
print(call("POST", "/items", json.dumps({"name": 5})))
st, ct, _, data = call("POST", "/items", json.dumps({"name": "x"}))
print(st, ct, json.loads(data)["name"])
print(call("GET", "/nothing")[0], call("PUT", "/items")[0:3])
c.close()
]], tostring(server.port) }
    assert.equal(0, code, out)
    assert.equal([[(400, 'application/json', None, b'{"error":"expected a JSON object with a \\"name\\" string"}')
(400, 'application/json', None, b'{"error":"expected a JSON object with a \\"name\\" string"}')
201 application/json x
404 (405, None, 'GET, POST')
]], out)
  end)
end)
