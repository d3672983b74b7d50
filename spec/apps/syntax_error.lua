local lupine = require "lupine"
return lupine.app {
  init = function(ch) ch.pipeline:addLast({}) end
  port = 1,
}
