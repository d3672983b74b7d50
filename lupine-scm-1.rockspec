package = "lupine"
version = "scm-1"
source = {
  url = "git+https://example.invalid/lupine.git",
}
description = {
  summary = "Netty's architecture in C on libev, scripted from Lua 5.4",
  detailed = [[
    An event-loop network framework: channels with pipelines of handlers
    written as Lua tables (or native C codecs), pooled buffers, an outbound
    buffer with water marks, and a launcher that runs apps on worker threads.
  ]],
  license = "MIT",
}
-- Only lua itself: no rocks server is needed (Debian's libev-dev provides libev).
dependencies = {
  "lua >= 5.4, < 5.5",
}
-- TLS needs OpenSSL 3 (Debian: libssl-dev); CMake's find_package(OpenSSL) links it.
external_dependencies = {
  OPENSSL = { header = "openssl/ssl.h" },
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    LUPINE_TESTS = "OFF",
    LUPINE_BENCH = "OFF",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
    BINDIR = "$(BINDIR)",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
  },
}
