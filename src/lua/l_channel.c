// l_channel.c: lupine.Channel, lupine.ChannelConfig, lupine.Server, and the
// two ways channels are born: accepted (l_accept) and connected (l_connect).
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

typedef struct {
  L_BOX_HEAD;
  lp_server s;
  l_host *h;
  int init_ref;
  int self_ref;
  lp_channel_config child;
  lp_future *close_future;
} l_server;

// ---- lupine.Channel ---------------------------------------------------------------

void l_channel_push(lua_State *L, lp_channel *ch) {
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
  l_host *h = ch->loop->host;
  if (ch->host_ref >= 0 && !h->closing) luaL_unref(h->cur, LUA_REGISTRYINDEX, ch->host_ref);
  ch->host_ref = -1;
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
  char d[160];
  lp_channel_describe(ch, d, sizeof d);
  lua_pushfstring(L, "lupine.Channel%s %s", d,
                  lp_channel_is_active(ch) ? "active" : (ch->flags & LP_CH_CLOSED) ? "closed" : "inactive");
  return 1;
}

static int push_addr(lua_State *L, const lp_sockaddr *a, int what) {
  char s[80];
  if (a->sa.sa_family != AF_INET && a->sa.sa_family != AF_INET6) return 0;
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
  l_host *h = ch->loop->host;
  lua_State *prev = l_enter(h, L);
  lp_channel_shutdown_output(ch, f);
  l_leave(h, prev);
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
    if (strcmp(k, "localAddress") == 0) return push_addr(L, &ch->local, 0);
    if (strcmp(k, "localHost") == 0) return push_addr(L, &ch->local, 1);
    if (strcmp(k, "localPort") == 0) return push_addr(L, &ch->local, 2);
    break;
  case 'p':
    if (strcmp(k, "pipeline") == 0) {
      l_pipeline_push(L, ch);
      return 1;
    }
    break;
  case 'r':
    if (strcmp(k, "remoteAddress") == 0) return push_addr(L, &ch->remote, 0);
    if (strcmp(k, "remoteHost") == 0) return push_addr(L, &ch->remote, 1);
    if (strcmp(k, "remotePort") == 0) return push_addr(L, &ch->remote, 2);
    break;
  case 'w':
    if (strcmp(k, "worker") == 0) {
      lua_pushinteger(L, ch->worker);
      return 1;
    }
    break;
  case 'e':
    if (strcmp(k, "executor") == 0) {
      l_loop_push(L, ch->loop->host);
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
  luaL_checktype(L, 2, LUA_TBOOLEAN);
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
  lua_Integer low = luaL_checkinteger(L, 2), high = luaL_checkinteger(L, 3);
  if (low < 0 || high < low) return luaL_error(L, "setWriteBufferWaterMark: need 0 <= low <= high");
  lp_channel_set_water_marks(ch, (size_t)low, (size_t)high);
  lua_settop(L, 1);
  return 1;
}

// cfg:setOption(name, value): any option lupine.server/connect accept.
static int config_set_option(lua_State *L) {
  lp_channel *ch = check_config(L);
  luaL_checkstring(L, 2);
  luaL_checkany(L, 3);
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
  const char *k = luaL_checkstring(L, 2);
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

// ---- accepting -------------------------------------------------------------------------

// Under pcall: init(ch), with [1] init and [2] the channel as light userdata
// (its box is made here, where running out of memory is caught).
static int call_init(lua_State *L) {
  l_channel_push(L, lua_touserdata(L, 2));
  lua_replace(L, 2);
  lua_call(L, 1, 0);
  return 0;
}

lp_channel *l_accept(l_host *h, int fd, const lp_channel_config *cfg, int init_ref) {
  lp_channel *ch = lp_channel_new(h->loop, &lp_socket_unsafe, fd, cfg);
  if (!ch) {
    lp_log(LP_LOG_ERROR, 0, "out of memory for a new channel: connection closed");
    close(fd);
    return NULL;
  }
  int rc = lp_channel_apply_socket_options(ch);
  if (rc) lp_log(LP_LOG_DEBUG, ch->id, "socket options: %s", strerror(-rc));
  if (h->closing) {
    lp_channel_close_now(ch);
    return NULL;
  }
  lua_State *L = h->cur;
  lua_checkstack(L, 4);
  lua_pushcfunction(L, call_init);
  lua_rawgeti(L, LUA_REGISTRYINDEX, init_ref);
  lua_pushlightuserdata(L, ch);
  lp_pipeline_enter(&ch->pipeline);
  bool ok = l_pcall_log(L, 2, "init(ch)", ch->id);
  lp_pipeline_leave(&ch->pipeline);
  if (!ok) {
    lp_log(LP_LOG_WARN, ch->id, "closing the channel: its init function failed");
    lp_channel_close_now(ch);
    return NULL;
  }
  lp_channel_register(ch);
  return ch;
}

static void server_on_accept(lp_server *s, int fd) {
  l_server *ls = lp_container_of(s, l_server, s);
  l_accept(ls->h, fd, &ls->child, ls->init_ref);
}

static l_server *check_server(lua_State *L) { return l_checkudata(L, 1, &l_key_server, "lupine.Server"); }

static void server_release(lua_State *L, l_server *ls) {
  lp_server_close(&ls->s);
  if (ls->close_future) lp_future_succeed(ls->close_future);
  if (ls->h->closing) return;
  if (ls->init_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, ls->init_ref);
  if (ls->self_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, ls->self_ref);
  ls->init_ref = ls->self_ref = LUA_NOREF;
}

// lupine.server{ host = "127.0.0.1", port = 0, init = fn, backlog = 511, reusePort = false, options = {...} }
int l_server_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  l_host *h = l_host_get(L);
  const char *host = l_opt_string(L, 1, "host", "127.0.0.1");
  int port = (int)l_opt_int(L, 1, "port", 0, 0, 65535);
  int backlog = (int)l_opt_int(L, 1, "backlog", 511, 1, 65535);
  bool reuse_port = l_opt_bool(L, 1, "reusePort", false);
  if (lua_getfield(L, 1, "init") != LUA_TFUNCTION) return luaL_error(L, "lupine.server: 'init' must be a function(ch)");
  int init = lua_gettop(L);
  lp_channel_config cfg;
  lp_channel_config_default(&cfg);
  if (lua_getfield(L, 1, "options") != LUA_TNIL) l_channel_config_read(L, -1, &cfg);
  lua_pop(L, 1);
  lp_sockaddr addr;
  if (lp_addr_parse(host, port, &addr) != 0)
    return luaL_error(L, "lupine.server: host '%s' is not a numeric IPv4/IPv6 address or localhost", host);
  l_server *ls = l_newudata(L, sizeof *ls, 0, &l_key_server);
  ls->s.fd = ls->s.spare_fd = -1;
  ls->s.closed = true;
  ls->init_ref = ls->self_ref = LUA_NOREF;
  int rc = lp_server_open(&ls->s, h->loop, &addr, backlog, reuse_port, server_on_accept, NULL);
  if (rc) {
    char a[80];
    lua_pushfstring(L, "listen on %s", lp_addr_format(&addr, a, sizeof a));
    return l_fail(L, rc, lua_tostring(L, -1));
  }
  ls->h = h;
  ls->child = cfg;
  lua_pushvalue(L, init);
  ls->init_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  ls->self_ref = luaL_ref(L, LUA_REGISTRYINDEX); // a listening server is never collected
  lp_server_start(&ls->s);
  return 1;
}

static int server_close(lua_State *L) {
  l_server *ls = check_server(L);
  if (!ls->h) return 0;
  server_release(L, ls);
  lp_future *f = lp_future_new(ls->h->loop);
  if (!f) return luaL_error(L, "close: out of memory");
  lp_future_succeed(f);
  l_future_push(L, f);
  lp_future_unref(f);
  return 1;
}

static int server_gc(lua_State *L) {
  l_server *ls = check_server(L);
  if (ls->h) {
    lp_server_close(&ls->s);
    if (ls->close_future) lp_future_unref(ls->close_future);
    ls->close_future = NULL;
  }
  return 0;
}

static int server_index(lua_State *L) {
  l_server *ls = check_server(L);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  const char *k = lua_tostring(L, 2);
  if (!k || !ls->h) return 0;
  if (strcmp(k, "localAddress") == 0) return push_addr(L, &ls->s.addr, 0);
  if (strcmp(k, "host") == 0) return push_addr(L, &ls->s.addr, 1);
  if (strcmp(k, "port") == 0) return push_addr(L, &ls->s.addr, 2);
  if (strcmp(k, "accepted") == 0) {
    lua_pushinteger(L, (lua_Integer)ls->s.accepted);
    return 1;
  }
  if (strcmp(k, "closeFuture") == 0) {
    if (!ls->close_future) {
      ls->close_future = lp_future_new(ls->h->loop);
      if (!ls->close_future) return luaL_error(L, "closeFuture: out of memory");
      if (ls->s.closed) lp_future_succeed(ls->close_future);
    }
    l_future_push(L, ls->close_future);
    return 1;
  }
  return 0;
}

static int server_tostring(lua_State *L) {
  l_server *ls = check_server(L);
  char a[80];
  lua_pushfstring(L, "lupine.Server(%s%s)", ls->h ? lp_addr_format(&ls->s.addr, a, sizeof a) : "?",
                  ls->s.closed ? ", closed" : "");
  return 1;
}

// ---- connecting --------------------------------------------------------------------------

static void drop_channel(void *ch) { lp_channel_unref(ch); }

// lupine.connect{ host, port, init = fn, timeout = 5, options = {...} } -> future of the channel.
// The channel is made, init(ch) runs and the channel registers at once; then
// the connect: a numeric address directly, a name after the loop's resolver
// answered (every address found is tried in order). timeout (seconds, 0: no
// limit) bounds the lookup and the connect together. A failed connect closes
// the channel and fails the future: "ECONNREFUSED: Connection refused (connect
// to 127.0.0.1:1)", "ConnectTimeout: connect to ... timed out after 5 s",
// "UnknownHost: cannot resolve 'x': Domain name not found".
int l_connect(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  l_host *h = l_host_get(L);
  const char *host = l_opt_string(L, 1, "host", "127.0.0.1");
  int port = (int)l_opt_int(L, 1, "port", -1, 1, 65535);
  if (port < 0) return luaL_error(L, "lupine.connect: 'port' is required");
  double timeout = l_opt_number(L, 1, "timeout", 5.0);
  if (!(timeout >= 0) || timeout > 1e9) return luaL_error(L, "lupine.connect: 'timeout' must be seconds >= 0 (0: no limit)");
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
  lp_future *f = lp_future_new(h->loop);
  if (!f) return luaL_error(L, "lupine.connect: out of memory");
  l_future_push(L, f);
  lp_future_unref(f); // the box holds it
  int fidx = lua_gettop(L);
  lp_channel *ch = lp_channel_new(h->loop, &lp_socket_unsafe, -1, &cfg);
  if (!ch) {
    lp_future_fail_code(f, -ENOMEM, "connect");
    return 1;
  }
  f->value = lp_channel_ref(ch); // the future's value: the channel
  f->value_drop = drop_channel;
  lua_State *prev = l_enter(h, L);
  if (init) {
    lua_pushcfunction(L, l_traceback);
    lua_pushcfunction(L, call_init);
    lua_pushvalue(L, init);
    lua_pushlightuserdata(L, ch);
    lp_pipeline_enter(&ch->pipeline);
    int rc = lua_pcall(L, 2, 0, fidx + 1);
    lp_pipeline_leave(&ch->pipeline);
    if (rc != LUA_OK) { // the future says why; the channel never registers
      char text[LP_ERROR_MESSAGE_MAX];
      lp_error e;
      lp_error_named(&e, LP_EHOST, "init(ch) raised: %s", l_tostring(L, -1, text, sizeof text));
      lp_channel_close_now(ch);
      lp_future_fail(f, &e);
      l_leave(h, prev);
      lua_settop(L, fidx);
      return 1;
    }
  }
  lp_channel_register(ch);
  lp_channel_connect_host(ch, host, port, timeout, f);
  l_leave(h, prev);
  lua_settop(L, fidx);
  return 1;
}

// ---- registration --------------------------------------------------------------------------

static const luaL_Reg channel_methods[] = {
    {"isActive", channel_is_active},
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

// server:setAutoRead(false) stops accepting (connections wait in the kernel's
// backlog, then are refused or left waiting by it), true resumes: Netty's
// autoRead on a server channel.
static int server_set_auto_read(lua_State *L) {
  l_server *ls = check_server(L);
  luaL_checktype(L, 2, LUA_TBOOLEAN);
  if (!ls->h || ls->s.closed) return luaL_error(L, "setAutoRead: the server is closed");
  if (lua_toboolean(L, 2)) lp_server_start(&ls->s);
  else lp_server_stop(&ls->s);
  lua_settop(L, 1);
  return 1;
}

static const luaL_Reg server_methods[] = {
    {"close", server_close},
    {"setAutoRead", server_set_auto_read},
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

  l_newmetatable(L, "lupine.Server", &l_key_server);
  lua_pushcfunction(L, server_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, server_tostring);
  lua_setfield(L, -2, "__tostring");
  luaL_newlib(L, server_methods);
  lua_pushcclosure(L, server_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
