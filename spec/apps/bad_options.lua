local lupine = require "lupine"
return lupine.app { options = { highWaterMrk = 1 }, init = function(ch) end }
