// l_connect.c: lupine.connect{...}, a client channel: made, initialised and
// registered at once, then connected through the core's connect (names are
// resolved on the loop's resolver).
#include "lbind.h"

#include "connect.h"

#include <errno.h>

static void drop_channel(void *ch) { lp_channel_unref(ch); }

// lupine.connect{ host, port, init = fn, timeout = 5, options = {...}, tls = {...} } -> future of the channel.
// host "unix:/path" or "unix:@name": a Unix domain socket (no port, no lookup).
// tls: client options (l_tls.c); the TLS handler goes first, before init runs.
// The channel is made, init(ch) runs and the channel registers at once; then
// the connect: a numeric address directly, a name after the loop's resolver
// answered (every address found is tried in order). timeout (seconds, 0: no
// limit) bounds the lookup and the connect together. A failed connect closes
// the channel and fails the future: "ECONNREFUSED: Connection refused (connect
// to 127.0.0.1:1)", "ConnectTimeout: connect to ... timed out after 5 s",
// "UnknownHost: cannot resolve 'x': Domain name not found".
int l_connect(lua_State *L) {
  l_checktype(L, 1, LUA_TTABLE);
  l_host *h = l_host_get(L);
  const char *host = l_opt_string(L, 1, "host", "127.0.0.1");
  // An empty name would connect to this machine: a bug upstream (an unset
  // variable), not a request for 127.0.0.1, which omitting host gives.
  if (!*host) return luaL_error(L, "lupine.connect: 'host' is empty (omit it for 127.0.0.1)");
  int port = (int)l_opt_int(L, 1, "port", -1, 1, 65535);
  if (port < 0 && !lp_addr_is_unix_text(host)) return luaL_error(L, "lupine.connect: 'port' is required");
  if (port < 0) port = 0; // a Unix domain socket: "unix:/path" or "unix:@name"
  double timeout = l_opt_number(L, 1, "timeout", 5.0);
  if (!(timeout >= 0 && timeout <= 1e9)) // also NaN
    return luaL_error(L, "lupine.connect: 'timeout' must be seconds from 0 to 1e9 (0: no limit)");
  int init = 0;
  if (lua_getfield(L, 1, "init") == LUA_TFUNCTION) init = lua_gettop(L);
  else if (!lua_isnil(L, -1)) return luaL_error(L, "lupine.connect: 'init' must be a function(ch)");
  lp_channel_config cfg;
  lp_channel_config_default(&cfg);
  // A client's reads answer its writes; they are not made by them. Pausing its
  // reads while it cannot write would deadlock it against any server that
  // does the same (both sides full, neither reading): off unless asked.
  cfg.auto_backpressure = false;
  if (lua_getfield(L, 1, "options") != LUA_TNIL) l_channel_config_read(L, -1, &cfg);
  lua_pop(L, 1);
  int tls = 0; // the TLS client factory (made before the channel: a bad option raises)
  if (lua_getfield(L, 1, "tls") != LUA_TNIL) {
    l_tls_client_factory(L, -1);
    tls = lua_gettop(L);
  }
  lp_future *f = lp_future_new(h->loop);
  if (!f) return luaL_error(L, "lupine.connect: out of memory");
  l_future_push(L, f);
  lp_future_unref(f); // the box holds it
  f->taken_by = "connect"; // the connect completes it, not a setSuccess
  int fidx = lua_gettop(L);
  lp_channel *ch = lp_channel_new(h->loop, &lp_socket_transport, -1, &cfg);
  if (!ch) {
    lp_future_fail_code(f, -ENOMEM, "connect");
    return 1;
  }
  l_channel_adopt(h, ch);
  f->value = lp_channel_ref(ch); // the future's value: the channel
  f->value_drop = drop_channel;
  if (tls && l_tls_add_client(L, tls, ch, host) != 0) {
    lp_channel_close_now(ch);
    lp_future_fail_code(f, -ENOMEM, "connect");
    return 1;
  }
  if (init) { // on the caller's thread, as a plain call: handlers it adds run on the main thread
    lua_pushcfunction(L, l_traceback);
    lua_pushcfunction(L, l_call_init);
    lua_pushvalue(L, init);
    lua_pushlightuserdata(L, ch);
    lp_pipeline_enter(&ch->pipeline);
    int rc = lua_pcall(L, 2, 0, fidx + 1);
    lp_pipeline_leave(&ch->pipeline);
    if (rc != LUA_OK) { // the future says why; the channel never registers
      char text[LP_ERROR_MESSAGE_MAX];
      lp_error e;
      lp_error_named(&e, LP_EHOST, "init(ch) raised: %s", l_error_message(L, -1, text, sizeof text));
      lp_channel_close_now(ch);
      lp_future_fail(f, &e);
      lua_settop(L, fidx);
      return 1;
    }
  }
  lp_channel_register(ch);
  lp_channel_connect_host(ch, host, port, timeout, f);
  lua_settop(L, fidx);
  return 1;
}
