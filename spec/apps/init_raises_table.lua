-- spec/apps/init_raises_table.lua: init raises a table with a __tostring.
local lupine = require "lupine"

local Refused = setmetatable({ code = 403 }, { __tostring = function() return "refused by policy" end })

return lupine.app {
  name = "init_raises_table",
  init = function() error(Refused) end,
}
