local lupine = require "lupine"
return lupine.app {
  init = function(ch) end,
  workerInit = function(worker)
    if worker.id == 2 then error("no database for worker " .. worker.id) end
  end,
}
