-- spec/fake_dns.lua: a DNS server over TCP (RFC 1035 section 4.2.2: each
-- message after a 2-byte length), written on lupine for the specs, so that
-- name resolution is tested without any network: point the loop's resolver
-- at it with lupine.setResolver { servers = "127.0.0.1:" .. port, tcp = true }.
--
-- It runs in the same loop as the resolver it answers: a resolver that blocked
-- the loop would never get its answer.
--
--   local dns = fake_dns.start { zone = { ["svc.test"] = { a = { "127.0.0.1" } } }, delay = 0.3 }
--   dns.port, dns.queries (names asked, in order), dns:close()
--
-- Names not in the zone get NXDOMAIN; a name listed with silent = true gets
-- no answer at all.
local lupine = require "lupine"
local test = require "lupine.test"

local fake_dns = {}

local function ipv4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  return string.char(tonumber(a), tonumber(b), tonumber(c), tonumber(d))
end

local function ipv6(s)
  assert(s == "::1", "fake_dns knows one IPv6 address: ::1")
  return ("\0"):rep(15) .. "\1"
end

-- id, the name asked (lower case), its type, and the question section as sent.
local function parse_query(msg)
  local id = string.unpack(">I2", msg)
  local pos, labels = 13, {}
  while true do
    local len = msg:byte(pos)
    pos = pos + 1
    if len == 0 then break end
    labels[#labels + 1] = msg:sub(pos, pos + len - 1)
    pos = pos + len
  end
  local qtype = string.unpack(">I2", msg, pos)
  return id, table.concat(labels, "."):lower(), qtype, msg:sub(13, pos + 3)
end

local function response(id, question, rcode, records)
  local out = { string.pack(">I2I2I2I2I2I2", id, 0x8180 | rcode, 1, #records, 0, 0), question }
  for _, r in ipairs(records) do
    -- name: a pointer to the question's name at offset 12; class IN; TTL 60
    out[#out + 1] = string.pack(">I2I2I2I4s2", 0xC00C, r.type, 1, 60, r.data)
  end
  return table.concat(out)
end

function fake_dns.start(opts)
  local zone, delay = opts.zone or {}, opts.delay or 0
  local dns = { queries = {} }
  local function answer(msg)
    local id, name, qtype, question = parse_query(msg)
    dns.queries[#dns.queries + 1] = name
    local entry = zone[name]
    if entry and entry.silent then return nil end
    if not entry then return response(id, question, 3, {}) end -- NXDOMAIN
    local records = {}
    if qtype == 1 then
      for _, a in ipairs(entry.a or {}) do records[#records + 1] = { type = 1, data = ipv4(a) } end
    elseif qtype == 28 then
      for _, a in ipairs(entry.aaaa or {}) do records[#records + 1] = { type = 28, data = ipv6(a) } end
    end
    return response(id, question, 0, records)
  end
  dns.server = test.server(function(ch)
    local pending = ""
    ch.pipeline:addLast("dns", {
      channelRead = function(_, ctx, buf)
        pending = pending .. buf:readString()
        while #pending >= 2 do
          local len = string.unpack(">I2", pending)
          if #pending < 2 + len then break end
          local reply = answer(pending:sub(3, 2 + len))
          pending = pending:sub(3 + len)
          if reply then
            local framed = string.pack(">s2", reply)
            if delay > 0 then
              ctx.executor:schedule(delay, function()
                if ctx.channel:isOpen() then ctx:writeAndFlush(framed) end
              end)
            else
              ctx:writeAndFlush(framed)
            end
          end
        end
      end,
    })
  end)
  dns.port = dns.server.port
  function dns:close() self.server:close() end
  return dns
end

return fake_dns
