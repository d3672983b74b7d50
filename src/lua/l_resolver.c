// l_resolver.c: name resolution from Lua: lupine.resolve(host [, port]) and
// lupine.setResolver{...}. (lupine.connect, l_connect.c, resolves through the
// same loop resolver.)
#include "lbind.h"

#include "resolver.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  const lp_sockaddr *addrs;
  size_t n;
} addr_list;

// Under pcall: { "127.0.0.1", "::1", ... } from [1], an addr_list.
static int push_addrs(lua_State *L) {
  const addr_list *a = lua_touserdata(L, 1);
  lua_createtable(L, (int)a->n, 0);
  for (size_t i = 0; i < a->n; i++) {
    char s[64];
    lua_pushstring(L, lp_addr_host(&a->addrs[i], s, sizeof s));
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static void on_lookup(void *ud, const lp_error *err, const lp_sockaddr *addrs, size_t n) {
  lp_future *f = ud;
  l_host *h = f->host;
  if (err) {
    lp_future_fail(f, err);
  } else if (h && !h->closing) {
    lua_State *L = h->L;
    int top = lua_gettop(L);
    addr_list a = {addrs, n};
    lua_pushcfunction(L, push_addrs);
    lua_pushlightuserdata(L, &a);
    bool kept = lua_pcall(L, 1, 1, 0) == LUA_OK && l_future_keep(L, f);
    lua_settop(L, top);
    if (kept) lp_future_succeed(f);
    else lp_future_fail_code(f, -ENOMEM, "resolve");
  } else {
    lp_future_fail_code(f, LP_ESHUTDOWN, "the Lua state closed before the name resolved");
  }
  lp_future_unref(f);
}

// lupine.resolve(host [, port]) -> future of { address, ... } (numeric
// addresses and localhost without a lookup; the future fails with UnknownHost).
static int l_resolve(lua_State *L) {
  const char *host = l_checkcstring(L, 1);
  int port = (int)l_optinteger(L, 2, 0);
  l_argcheck(L, port >= 0 && port <= 65535, 2, "port must be 0..65535");
  l_host *h = l_host_get(L);
  lp_future *f = lp_future_new(h->loop);
  if (!f) return luaL_error(L, "lupine.resolve: out of memory");
  f->host = h; // on_lookup pushes the addresses on this state
  l_future_push(L, f); // the box holds one reference, the lookup the other
  if (!lp_resolve(h->loop, host, port, on_lookup, f)) {
    lp_future_fail_code(f, -ENOMEM, "resolve");
    lp_future_unref(f);
  }
  return 1;
}

// lupine.setResolver{ servers = "127.0.0.1:53" | { "127.0.0.1:5353", ... },
//   tcp = false, timeout = seconds per try, tries = n }; nil: the system's
// settings again (/etc/resolv.conf). Applies to this loop; lookups under way
// fail with Shutdown.
static int l_set_resolver(lua_State *L) {
  l_host *h = l_host_get(L);
  if (lua_isnoneornil(L, 1)) {
    lp_resolver_configure(h->loop, NULL);
    return 0;
  }
  l_checktype(L, 1, LUA_TTABLE);
  lp_resolver_config cfg = {0};
  char list[1024] = "";
  int ty = lua_getfield(L, 1, "servers");
  if (ty == LUA_TTABLE) {
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
      if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "setResolver: 'servers' must be strings like \"127.0.0.1:53\"");
      if (!l_is_cstring(L, -1)) return luaL_error(L, "setResolver: 'servers' " L_NUL_MESSAGE);
      size_t used = strlen(list);
      if (snprintf(list + used, sizeof list - used, "%s%s", i > 1 ? "," : "", lua_tostring(L, -1)) >= (int)(sizeof list - used))
        return luaL_error(L, "setResolver: the list of servers is too long");
      lua_pop(L, 1);
    }
    cfg.servers = list;
  } else if (ty == LUA_TSTRING) {
    if (!l_is_cstring(L, -1)) return luaL_error(L, "setResolver: 'servers' " L_NUL_MESSAGE);
    cfg.servers = lua_tostring(L, -1); // kept alive by the table
  } else if (ty != LUA_TNIL) {
    return luaL_error(L, "setResolver: 'servers' must be a string or a list of strings");
  }
  cfg.tcp = l_opt_bool(L, 1, "tcp", false);
  double timeout = l_opt_number(L, 1, "timeout", 0);
  if (!isfinite(timeout) || timeout < 0 || timeout > 3600) return luaL_error(L, "setResolver: 'timeout' must be 0..3600 seconds");
  cfg.timeout_ms = (int)ceil(timeout * 1000);
  cfg.tries = (int)l_opt_int(L, 1, "tries", 0, 0, 100);
  int rc = lp_resolver_configure(h->loop, &cfg);
  if (rc == -EINVAL) return luaL_error(L, "setResolver: servers '%s' not understood (want \"host:port,...\")", cfg.servers);
  if (rc) return luaL_error(L, "setResolver: out of memory");
  return 0;
}

void l_resolver_open(lua_State *L) {
  lua_pushcfunction(L, l_resolve);
  lua_setfield(L, -2, "resolve");
  lua_pushcfunction(L, l_set_resolver);
  lua_setfield(L, -2, "setResolver");
}
