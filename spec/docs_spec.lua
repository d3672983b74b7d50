-- The docs cannot rot: every Lua code block in README.md and docs/*.md runs
-- here, and docs/reference.md names every public function and method.
--
-- How a block is treated depends on its fence's info string:
--   ```lua            run, in a fresh environment (globals fall back to _G's;
--                     `assert` is luassert's, so `assert.equal(a, b)` works;
--                     `describe(name, fn)` and `it(name, fn)` just call fn).
--                     It must leave no channel or descriptor open (a server
--                     it starts on port 0 it closes) and finish by itself.
--                     A line `print(...) --> text` says what print writes:
--                     a block with such lines must print exactly those lines.
--   ```lua fragment   only compiled (load), never run: for pieces of a
--                     handler or an app that need a context to run in.
--   ```lua prelude    run before every later runnable block of the same page,
--                     in the same chunk (its locals are visible there): shared
--                     setup, shown once on the page.
-- Any other fence (sh, c, text, ...) is not looked at. Line numbers in errors
-- are the page's own (the chunk is padded with newlines).
local lupine = require "lupine"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function pages()
  local list = { "README.md" }
  local p = io.popen("ls docs/*.md 2>/dev/null")
  for name in p:lines() do list[#list + 1] = name end
  p:close()
  return list
end

-- The Lua blocks of a page: { kind = "run"|"fragment"|"prelude", line = first code line, code }.
local function blocks(path)
  local out, cur = {}, nil
  local n = 0
  for line in (read(path) .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    if cur then
      if line:match("^```%s*$") then
        cur.code = table.concat(cur.lines, "\n")
        out[#out + 1] = cur
        cur = nil
      else
        cur.lines[#cur.lines + 1] = line
      end
    else
      local info = line:match("^```(.*)$")
      if info then
        local lang, mark = info:match("^(%S*)%s*(%S*)")
        if lang == "lua" then
          local kind = mark == "" and "run" or mark
          if kind ~= "run" and kind ~= "fragment" and kind ~= "prelude" then
            error(("%s:%d: unknown block marker '%s' (run, fragment or prelude)"):format(path, n, mark))
          end
          cur = { kind = kind, line = n + 1, lines = {} }
        else
          cur = { kind = "other", line = n + 1, lines = {} }
        end
      end
    end
  end
  assert(not cur, path .. ": a code block is not closed")
  local lua = {}
  for _, b in ipairs(out) do
    if b.kind ~= "other" then lua[#lua + 1] = b end
  end
  return lua
end

-- Segments placed at their own lines of the page, so errors name page lines.
local function chunk(segments)
  local parts, line = {}, 1
  for _, b in ipairs(segments) do
    parts[#parts + 1] = ("\n"):rep(b.line - line)
    parts[#parts + 1] = b.code
    line = b.line + select(2, b.code:gsub("\n", "")) -- the line the code ends on
  end
  return table.concat(parts)
end

local function expected_prints(code)
  local want = {}
  for line in (code .. "\n"):gmatch("(.-)\n") do
    local text = line:match("print%(.*%)%s*%-%->%s?(.*)$")
    if text then want[#want + 1] = text end
  end
  return want
end

describe("docs", function()
  local leaks = leak_check()

  for _, path in ipairs(pages()) do
    local preludes = {}
    for _, b in ipairs(blocks(path)) do
      local name = ("%s:%d (%s)"):format(path, b.line, b.kind)
      if b.kind == "prelude" then preludes[#preludes + 1] = b end
      if b.kind == "fragment" then
        it("compiles " .. name, function()
          local fn, err = load(chunk { b }, "@" .. path, "t", {})
          assert(fn, err)
        end)
      else
        local segments = {}
        for _, p in ipairs(preludes) do
          if p ~= b then segments[#segments + 1] = p end
        end
        segments[#segments + 1] = b
        it("runs " .. name, function()
          leaks.before()
          local printed = {}
          local env = setmetatable({
            assert = assert,
            describe = function(_, fn) fn() end,
            it = function(_, fn) fn() end,
            print = function(...)
              local t = table.pack(...)
              for i = 1, t.n do t[i] = tostring(t[i]) end
              printed[#printed + 1] = table.concat(t, "\t")
            end,
          }, { __index = _G })
          local fn, err = load(chunk(segments), "@" .. path, "t", env)
          assert(fn, err)
          fn()
          local want = expected_prints(b.code)
          if #want > 0 then assert.same(want, printed) end
          leaks.after()
        end)
      end
    end
  end
end)

-- Every method of every public type, and every public function of each
-- module, appears in docs/reference.md as `prefix:name(` or `prefix.name(`
-- (or `prefix.name{`).
describe("docs/reference.md", function()
  local ref = read("docs/reference.md")
  local test = require "lupine.test"
  local codec = require "lupine.codec"
  local handler = require "lupine.handler"

  local function methods_of(value)
    local mt = debug.getmetatable(value)
    local index = mt.__index
    if type(index) == "function" then -- a C __index with the method table as upvalue 1
      local _, t = debug.getupvalue(index, 1)
      index = t
    end
    if type(index) ~= "table" then index = mt end
    local names = {}
    for k, v in pairs(index) do
      if type(k) == "string" and type(v) == "function" and not k:match("^_") then names[#names + 1] = k end
    end
    table.sort(names)
    return names
  end

  -- Buffer's integer accessors are one family in the reference.
  local ops = { read = true, get = true, write = true, set = true }
  local function is_int_accessor(name)
    local op = name:match("^(%l+)[UI]%d+$") or name:match("^(%l+)[UI]%d+LE$")
    return op ~= nil and ops[op] ~= nil
  end

  local function check(prefix, sep, names)
    local missing = {}
    for _, n in ipairs(names) do
      local name = prefix .. sep .. n
      if not (ref:find(name .. "(", 1, true) or ref:find(name .. "{", 1, true)) then missing[#missing + 1] = name end
    end
    assert.same({}, missing)
  end

  local loop = lupine.loop()

  it("names every method of the native types", function()
    local buf = lupine.buffer()
    local names = {}
    for _, n in ipairs(methods_of(buf)) do
      if not is_int_accessor(n) then names[#names + 1] = n end
    end
    check("buf", ":", names)
    for _, width in ipairs { "U8", "I8", "U16", "I16", "U24", "I24", "U32", "I32", "U64", "I64" } do
      assert.truthy(ref:find("`" .. width .. "`", 1, true), "the integer width " .. width)
    end
    check("f", ":", methods_of(lupine.promise()))
    check("loop", ":", methods_of(loop))
    local timer = loop:schedule(10, function() end)
    check("timer", ":", methods_of(timer))
    timer:cancel()
    check("group", ":", methods_of(lupine.channelGroup()))

    local server = assert(lupine.server { port = 0, init = function() end })
    check("server", ":", methods_of(server))
    local client = test.client(server.port)
    check("c", ":", methods_of(client))
    local ch = client.channel
    check("ch", ":", methods_of(ch))
    check("cfg", ":", methods_of(ch:config()))
    check("pipeline", ":", methods_of(ch.pipeline))
    local ctx
    ch.pipeline:addLast("probe", {})
    ctx = ch.pipeline:context("probe")
    check("ctx", ":", methods_of(ctx))
    loop:runUntil(ch:close(), 5)
    server:close()

    local file = assert(lupine.file("docs/reference.md"))
    check("file", ":", methods_of(file))
    file:close()

    local emb = test.embedded()
    check("emb", ":", methods_of(emb))
    emb:finish()
  end)

  it("names every function of the modules", function()
    local function funcs(t)
      local names = {}
      for k, v in pairs(t) do
        if type(v) == "function" and not k:match("^_") then names[#names + 1] = k end
      end
      table.sort(names)
      return names
    end
    check("lupine", ".", funcs(lupine))
    check("codec", ".", funcs(codec))
    check("handler", ".", funcs(handler))
    check("test", ".", funcs(test))
    check("ws", ".", funcs(require "lupine.ws"))
    check("tls", ".", funcs(require "lupine.tls"))
    check("admin", ".", funcs(require "lupine.admin"))
    local http = require "lupine.http"
    check("http", ".", funcs(http))
    check("test.http", ".", funcs(test.http))
    check("router", ":", methods_of(http.router()))
    -- a Response exists only inside a request: take one from a handler
    local res_methods
    local server = test.server(http.server { handler = function(req, res)
      res_methods = methods_of(res)
      check("req", ":", methods_of(req))
      res:send("ok")
    end })
    test.http.get(("http://127.0.0.1:%d/"):format(server.port))
    check("res", ":", res_methods)
    http.closeIdle()
    loop:runUntil(function() return loop:channelCount() == 0 end, 5)
    server:close()
  end)

  it("names the channel's properties, and they exist", function()
    local server = assert(lupine.server { port = 0, init = function() end })
    local ch = test.client(server.port).channel
    for _, p in ipairs { "id", "pipeline", "attr", "closeFuture", "executor", "worker", "localAddress",
      "localHost", "localPort", "remoteAddress", "remoteHost", "remotePort" } do
      assert.truthy(ref:find("ch." .. p, 1, true), "ch." .. p .. " in the reference")
      assert.is_not_nil(ch[p], "ch." .. p)
    end
    for _, p in ipairs { "localAddress", "host", "port", "accepted", "closeFuture" } do
      assert.truthy(ref:find("server." .. p, 1, true), "server." .. p .. " in the reference")
      assert.is_not_nil(server[p], "server." .. p)
    end
    loop:runUntil(ch:close(), 5)
    server:close()
  end)

  it("names every channel option and error kind", function()
    -- the option names the binding accepts, read from its source (the list
    -- that l_channel_config_read checks names against)
    local options = {}
    local p = io.popen("cat src/lua/*.c")
    local src = p:read("a")
    p:close()
    local list = src:match("channel_options%[%]%s*=%s*(%b{})")
    assert.truthy(list, "the channel_options list in src/lua/*.c")
    for o in list:gmatch('"(%w+)"') do options[#options + 1] = o end
    assert.is_true(#options >= 12)
    for _, o in ipairs(options) do assert.truthy(ref:find("`" .. o .. "`", 1, true), "option " .. o) end
    -- the kinds the core names (src/core/error.h), read from the source itself
    local kinds = {}
    for kind in read("src/core/error.h"):gmatch("LP_E%u+ = %-%d+,%s*// (%u%a+)") do kinds[#kinds + 1] = kind end
    assert.is_true(#kinds >= 10)
    for _, k in ipairs(kinds) do assert.truthy(ref:find("`" .. k .. "`", 1, true), "error kind " .. k) end
    assert.truthy(ref:find("`ChannelGroupFailure`", 1, true))
  end)
end)
