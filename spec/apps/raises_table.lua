-- spec/apps/raises_table.lua: raises a table (not a string) while loading.
error({ code = 42 })
