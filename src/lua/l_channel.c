// l_channel.c: lupine.Channel and lupine.ChannelConfig (options at run time).
// Channels are born accepted (l_server.c) or connected (l_connect.c).
//
// A channel's box holds a reference on the channel and, as its one user value,
// the channel's `attr` table (made on first use). While the channel is open the
// registry holds the box (ch->host_ref), so `attr` lives as long as the
// channel; the teardown hook drops that reference.
#include "lbind.h"

#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  L_BOX_HEAD;
  lp_channel *ch;
} l_channel;

// ---- lupine.Channel ---------------------------------------------------------------

void l_channel_push(lua_State *L, lp_channel *ch) {
  l_check_state(L, ch->host); // host_ref is in the registry of the channel's own state
  if (ch->host_ref >= 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ch->host_ref);
    return;
  }
  l_channel *box = l_newudata(L, sizeof *box, 1, &l_key_channel);
  box->ch = lp_channel_ref(ch);
  if (!(ch->flags & LP_CH_TORN_DOWN)) {
    lua_pushvalue(L, -1);
    ch->host_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
}

void l_channel_teardown(lp_channel *ch) {
  l_host *h = ch->host;
  if (ch->host_ref >= 0 && !h->closing) luaL_unref(h->L, LUA_REGISTRYINDEX, ch->host_ref);
  ch->host_ref = -1;
  if ((ch->flags & LP_CH_HOST_COUNTED) && --h->nchannels == 0 && h->on_empty) h->on_empty(h); // a drained old state
}

lp_channel *l_channel_check(lua_State *L, int i) { return ((l_channel *)l_checkudata(L, i, &l_key_channel, "lupine.Channel"))->ch; }

static int channel_gc(lua_State *L) {
  l_channel *box = l_checkudata(L, 1, &l_key_channel, "lupine.Channel");
  if (box->ch) lp_channel_unref(box->ch);
  box->ch = NULL;
  return 0;
}

static int channel_eq(lua_State *L) {
  l_channel *a = l_testudata(L, 1, &l_key_channel), *b = l_testudata(L, 2, &l_key_channel);
  lua_pushboolean(L, a && b && a->ch == b->ch);
  return 1;
}

static int channel_tostring(lua_State *L) {
  lp_channel *ch = l_channel_check(L, 1);
  char d[2 * LP_ADDR_STRLEN + 32];
  lp_channel_describe(ch, d, sizeof d);
  lua_pushfstring(L, "lupine.Channel%s %s", d,
                  lp_channel_is_active(ch) ? "active" : (ch->flags & LP_CH_CLOSED) ? "closed" : "inactive");
  return 1;
}

// what: 0 the address ("127.0.0.1:5000", "unix:/path"), 1 the host (for a
// Unix socket the address too, so that it can be connected to), 2 the port
// (none for Unix sockets), 3 a Unix socket's path ("/path", "@name").
int l_push_chaddr(lua_State *L, const lp_chaddr *c, int what) {
  lp_sockaddr a;
  lp_chaddr_get(c, &a);
  return l_push_addr(L, &a, what);
}

int l_push_addr(lua_State *L, const lp_sockaddr *a, int what) {
  char s[LP_ADDR_STRLEN];
  if (a->sa.sa_family == AF_UNIX) {
    if (what == 2) return 0;
    lp_addr_format(a, s, sizeof s);
    lua_pushstring(L, what == 3 ? s + 5 : s);
    return 1;
  }
  if (a->sa.sa_family != AF_INET && a->sa.sa_family != AF_INET6) return 0;
  if (what == 3) return 0;
  if (what == 0) lua_pushstring(L, lp_addr_format(a, s, sizeof s));
  else if (what == 1) lua_pushstring(L, lp_addr_host(a, s, sizeof s));
  else lua_pushinteger(L, lp_addr_port(a));
  return 1;
}

// ch:write(...) and friends are the pipeline's: they start at the tail.
static int channel_write(lua_State *L) { return l_outbound_write(L, &l_channel_check(L, 1)->pipeline.tail, false); }
static int channel_write_and_flush(lua_State *L) {
  return l_outbound_write(L, &l_channel_check(L, 1)->pipeline.tail, true);
}
static int channel_flush(lua_State *L) { return l_outbound_simple(L, &l_channel_check(L, 1)->pipeline.tail, LP_OP_FLUSH); }
static int channel_read(lua_State *L) { return l_outbound_simple(L, &l_channel_check(L, 1)->pipeline.tail, LP_OP_READ); }
static int channel_close(lua_State *L) { return l_outbound_simple(L, &l_channel_check(L, 1)->pipeline.tail, LP_OP_CLOSE); }

// ch:peerCredentials() -> { pid, uid, gid } of the process at the other end
// of a Unix domain socket (SO_PEERCRED: as it was when the connection was
// made), or nil and why.
static int channel_peer_credentials(lua_State *L) {
  lp_channel *ch = l_channel_check(L, 1);
  if (lp_chaddr_family(&ch->local) != AF_UNIX || ch->fd < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "peerCredentials: channel #%I is %s", (lua_Integer)ch->id,
                    ch->fd < 0 ? "not connected" : "not a Unix domain socket");
    return 2;
  }
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(ch->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return l_fail(L, -errno, "peerCredentials");
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, cred.pid);
  lua_setfield(L, -2, "pid");
  lua_pushinteger(L, cred.uid);
  lua_setfield(L, -2, "uid");
  lua_pushinteger(L, cred.gid);
  lua_setfield(L, -2, "gid");
  return 1;
}

static int channel_is_active(lua_State *L) {
  lua_pushboolean(L, lp_channel_is_active(l_channel_check(L, 1)));
  return 1;
}

static int channel_is_open(lua_State *L) {
  lua_pushboolean(L, !(l_channel_check(L, 1)->flags & LP_CH_CLOSED));
  return 1;
}

static int channel_is_writable(lua_State *L) {
  lua_pushboolean(L, lp_channel_is_writable(l_channel_check(L, 1)));
  return 1;
}

static int channel_bytes_before_unwritable(lua_State *L) {
  lp_channel *ch = l_channel_check(L, 1);
  size_t hw = ch->config.high_water;
  lua_pushinteger(L, lp_channel_is_writable(ch) && ch->out.pending < hw ? (lua_Integer)(hw - ch->out.pending) : 0);
  return 1;
}

static int channel_pending_bytes(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)l_channel_check(L, 1)->out.pending);
  return 1;
}

static int channel_shutdown_output(lua_State *L) {
  lp_channel *ch = l_channel_check(L, 1);
  lp_future *f = lp_future_new(ch->loop);
  if (!f) return luaL_error(L, "shutdownOutput: out of memory");
  l_entry e;
  l_enter(&e, L, ch->host, NULL, 0);
  lp_channel_shutdown_output(ch, f);
  l_leave(&e);
  l_future_push(L, f);
  lp_future_unref(f);
  return 1;
}

static int channel_index(lua_State *L) {
  lp_channel *ch = l_channel_check(L, 1);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  const char *k = lua_tostring(L, 2);
  if (!k) return 0;
  switch (k[0]) {
  case 'a':
    if (strcmp(k, "attr") == 0) {
      if (lua_getiuservalue(L, 1, 1) == LUA_TTABLE) return 1;
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_setiuservalue(L, 1, 1);
      return 1;
    }
    break;
  case 'c':
    if (strcmp(k, "closeFuture") == 0) {
      lp_future *f = lp_channel_close_future(ch);
      if (!f) return luaL_error(L, "closeFuture: out of memory");
      l_future_push(L, f);
      return 1;
    }
    break;
  case 'i':
    if (strcmp(k, "id") == 0) {
      lua_pushinteger(L, (lua_Integer)ch->id);
      return 1;
    }
    break;
  case 'l':
    if (strcmp(k, "localAddress") == 0) return l_push_chaddr(L, &ch->local, 0);
    if (strcmp(k, "localHost") == 0) return l_push_chaddr(L, &ch->local, 1);
    if (strcmp(k, "localPort") == 0) return l_push_chaddr(L, &ch->local, 2);
    break;
  case 'p':
    if (strcmp(k, "pipeline") == 0) {
      l_pipeline_push(L, ch);
      return 1;
    }
    break;
  case 'r':
    if (strcmp(k, "remoteAddress") == 0) return l_push_chaddr(L, &ch->remote, 0);
    if (strcmp(k, "remoteHost") == 0) return l_push_chaddr(L, &ch->remote, 1);
    if (strcmp(k, "remotePort") == 0) return l_push_chaddr(L, &ch->remote, 2);
    break;
  case 'w':
    if (strcmp(k, "worker") == 0) {
      lua_pushinteger(L, ch->loop->id);
      return 1;
    }
    break;
  case 'e':
    if (strcmp(k, "executor") == 0) {
      l_loop_push(L, ch->host);
      return 1;
    }
    break;
  }
  return 0;
}

// ---- options at run time: ch:config() -------------------------------------------------

typedef struct {
  L_BOX_HEAD;
  lp_channel *ch;
} l_config;

static lp_channel *check_config(lua_State *L) { return ((l_config *)l_checkudata(L, 1, &l_key_config, "lupine.ChannelConfig"))->ch; }

static int config_gc(lua_State *L) {
  l_config *c = l_checkudata(L, 1, &l_key_config, "lupine.ChannelConfig");
  if (c->ch) lp_channel_unref(c->ch);
  c->ch = NULL;
  return 0;
}

static int config_set_auto_read(lua_State *L) {
  lp_channel *ch = check_config(L);
  l_checktype(L, 2, LUA_TBOOLEAN);
  lp_channel_set_auto_read(ch, lua_toboolean(L, 2));
  lua_settop(L, 1);
  return 1;
}

static int config_is_auto_read(lua_State *L) {
  lua_pushboolean(L, check_config(L)->config.auto_read);
  return 1;
}

static int config_set_water_marks(lua_State *L) {
  lp_channel *ch = check_config(L);
  lua_Integer low = l_checkinteger(L, 2), high = l_checkinteger(L, 3);
  if (low < 0 || high < low) return luaL_error(L, "setWriteBufferWaterMark: need 0 <= low <= high");
  lp_channel_set_water_marks(ch, (size_t)low, (size_t)high);
  lua_settop(L, 1);
  return 1;
}

// cfg:setOption(name, value): any option lupine.server/connect accept.
static int config_set_option(lua_State *L) {
  lp_channel *ch = check_config(L);
  l_checkcstring(L, 2);
  l_checkany(L, 3);
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, 3);
  lua_setfield(L, -2, lua_tostring(L, 2));
  lp_channel_config c = ch->config;
  l_channel_config_read(L, lua_gettop(L), &c);
  bool autoread_changed = c.auto_read != ch->config.auto_read;
  size_t low = c.low_water, high = c.high_water;
  c.low_water = ch->config.low_water;
  c.high_water = ch->config.high_water;
  ch->config = c;
  int rc = lp_channel_apply_socket_options(ch);
  if (rc) return l_fail(L, rc, "setOption");
  if (autoread_changed) lp_channel_set_auto_read(ch, c.auto_read);
  if (low != ch->config.low_water || high != ch->config.high_water) lp_channel_set_water_marks(ch, low, high);
  lua_settop(L, 1);
  return 1;
}

static int config_get_option(lua_State *L) {
  lp_channel *ch = check_config(L);
  const char *k = l_checkcstring(L, 2);
  const lp_channel_config *c = &ch->config;
  if (strcmp(k, "tcpNoDelay") == 0) lua_pushboolean(L, c->tcp_nodelay);
  else if (strcmp(k, "keepAlive") == 0) lua_pushboolean(L, c->keepalive);
  else if (strcmp(k, "autoRead") == 0) lua_pushboolean(L, c->auto_read);
  else if (strcmp(k, "allowHalfClosure") == 0) lua_pushboolean(L, c->allow_half_closure);
  else if (strcmp(k, "autoBackpressure") == 0) lua_pushboolean(L, c->auto_backpressure);
  else if (strcmp(k, "closeOnException") == 0) lua_pushboolean(L, c->close_on_exception);
  else if (strcmp(k, "maxMessagesPerRead") == 0) lua_pushinteger(L, c->max_messages_per_read);
  else if (strcmp(k, "highWaterMark") == 0) lua_pushinteger(L, (lua_Integer)c->high_water);
  else if (strcmp(k, "lowWaterMark") == 0) lua_pushinteger(L, (lua_Integer)c->low_water);
  else if (strcmp(k, "maxPendingBytes") == 0) lua_pushinteger(L, (lua_Integer)c->max_pending);
  else if (strcmp(k, "drainTimeout") == 0) lua_pushnumber(L, c->drain_timeout);
  else if (strcmp(k, "rcvBuf") == 0 || strcmp(k, "sndBuf") == 0) {
    int v = 0;
    if (ch->fd >= 0) lp_sock_get_int(ch->fd, SOL_SOCKET, k[0] == 'r' ? SO_RCVBUF : SO_SNDBUF, &v);
    lua_pushinteger(L, v); // what the kernel uses (Linux doubles what was asked)
  } else return luaL_error(L, "unknown channel option '%s'", k);
  return 1;
}

static int channel_get_config(lua_State *L) {
  lp_channel *ch = l_channel_check(L, 1);
  l_config *c = l_newudata(L, sizeof *c, 0, &l_key_config);
  c->ch = lp_channel_ref(ch);
  return 1;
}

// ---- registration --------------------------------------------------------------------------

static const luaL_Reg channel_methods[] = {
    {"isActive", channel_is_active},
    {"peerCredentials", channel_peer_credentials},
    {"isOpen", channel_is_open},
    {"isWritable", channel_is_writable},
    {"bytesBeforeUnwritable", channel_bytes_before_unwritable},
    {"pendingBytes", channel_pending_bytes},
    {"shutdownOutput", channel_shutdown_output},
    {"config", channel_get_config},
    {"write", channel_write},
    {"writeAndFlush", channel_write_and_flush},
    {"flush", channel_flush},
    {"read", channel_read},
    {"close", channel_close},
    {NULL, NULL},
};

static const luaL_Reg config_methods[] = {
    {"setAutoRead", config_set_auto_read},
    {"isAutoRead", config_is_auto_read},
    {"setWriteBufferWaterMark", config_set_water_marks},
    {"setOption", config_set_option},
    {"getOption", config_get_option},
    {NULL, NULL},
};

void l_channel_open(lua_State *L) {
  l_newmetatable(L, "lupine.Channel", &l_key_channel);
  lua_pushcfunction(L, channel_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, channel_eq);
  lua_setfield(L, -2, "__eq");
  lua_pushcfunction(L, channel_tostring);
  lua_setfield(L, -2, "__tostring");
  luaL_newlib(L, channel_methods);
  lua_pushcclosure(L, channel_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  l_newmetatable(L, "lupine.ChannelConfig", &l_key_config);
  lua_pushcfunction(L, config_gc);
  lua_setfield(L, -2, "__gc");
  luaL_newlib(L, config_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
