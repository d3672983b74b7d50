// l_server.c: lupine.Server, a listening socket on this state's loop, and
// l_accept: how an accepted connection becomes a channel (init(ch), then
// registration), for servers and for the worker group alike.
#include "lbind.h"

#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  L_BOX_HEAD;
  lp_server s;
  l_host *h;
  int init_ref;
  int self_ref;
  lp_channel_config child;
  lp_future *close_future;
} l_server;

// Under pcall: init(ch), with [1] init and [2] the channel as light userdata
// (its box is made here, where running out of memory is caught).
int l_call_init(lua_State *L) {
  l_channel_push(L, lua_touserdata(L, 2));
  lua_replace(L, 2);
  lua_call(L, 1, 0);
  return 0;
}

lp_channel *l_accept(l_host *h, int fd, const lp_sockaddr *peer, const lp_channel_config *cfg, int init_ref) {
  lp_channel *ch = lp_channel_new(h->loop, &lp_socket_transport, fd, cfg);
  if (!ch) {
    lp_log(LP_LOG_ERROR, 0, "out of memory for a new channel: connection closed");
    close(fd);
    return NULL;
  }
  l_channel_adopt(h, ch);
  ch->flags |= LP_CH_ACCEPTED;
  // accept()'s answer, not getpeername()'s: a peer that reset at once has no
  // address any more by the time the channel is made (a worker's task later).
  if (peer && peer->sa.sa_family) lp_chaddr_set(&ch->remote, peer);
  int rc = lp_channel_apply_socket_options(ch);
  if (rc) lp_log(LP_LOG_DEBUG, ch->id, "socket options: %s", strerror(-rc));
  if (h->closing) {
    lp_channel_close_now(ch);
    return NULL;
  }
  lua_State *L = h->L;
  lua_checkstack(L, 4);
  lua_pushcfunction(L, l_call_init);
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

static void server_on_accept(lp_server *s, int fd, const lp_sockaddr *peer) {
  l_server *ls = lp_container_of(s, l_server, s);
  l_accept(ls->h, fd, peer, &ls->child, ls->init_ref);
}

void l_listen_addr(lua_State *L, const char *who, const char *host, int port, lp_sockaddr *addr) {
  int rc = lp_addr_parse(host, port, addr);
  if (rc == -ENAMETOOLONG)
    luaL_error(L, "%s: the socket path in '%s' is too long (at most %d bytes)", who, host, (int)LP_UNIX_PATH_MAX);
  else if (rc && lp_addr_is_unix_text(host))
    luaL_error(L, "%s: host '%s' needs a path or a name after unix: (unix:/path or unix:@name)", who, host);
  else if (rc)
    luaL_error(L, "%s: host '%s' is not a numeric IPv4/IPv6 address or localhost", who, host);
}

int l_opt_mode(lua_State *L, int t, const char *who, const lp_sockaddr *addr) {
  int ty = lua_getfield(L, t, "mode");
  long mode = -1;
  if (ty == LUA_TSTRING) {
    const char *s = lua_tostring(L, -1);
    char *end;
    mode = *s >= '0' && *s <= '7' ? strtol(s, &end, 8) : -1;
    if (mode < 0 || *end || mode > 0777) mode = -2;
  } else if (ty == LUA_TNUMBER) {
    int isint;
    mode = (long)lua_tointegerx(L, -1, &isint);
    if (!isint || mode < 0 || mode > 0777) mode = -2;
  } else if (ty != LUA_TNIL) {
    mode = -2;
  }
  lua_pop(L, 1);
  if (mode == -2) luaL_error(L, "%s: option 'mode' must be an octal string such as \"0660\" (or an integer up to 0777)", who);
  if (mode >= 0 && (addr->sa.sa_family != AF_UNIX || !addr->un.sun_path[0]))
    luaL_error(L, "%s: option 'mode' applies to Unix socket files (host = \"unix:/path\") only", who);
  return (int)mode;
}

const char *l_listen_why(int rc, const lp_sockaddr *addr) {
  if (addr->sa.sa_family != AF_UNIX) return "";
  if (rc == -EADDRINUSE) return " (a server is listening on it)";
  if (rc == -EEXIST) return " (a file that is not a socket is in the way)";
  return "";
}

int l_fail_listen(lua_State *L, int rc, const lp_sockaddr *addr) {
  char a[LP_ADDR_STRLEN];
  lua_pushfstring(L, "listen on %s%s", lp_addr_format(addr, a, sizeof a), l_listen_why(rc, addr));
  return l_fail(L, rc, lua_tostring(L, -1));
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

// lupine.server{ host = "127.0.0.1", port = 0, init = fn, backlog = 511, reusePort = false, mode = nil, options = {...} }
// host "unix:/path" or "unix:@name": a Unix domain socket (socket.c: a stale
// file is replaced, a live one refused); mode: the socket file's permissions.
int l_server_new(lua_State *L) {
  l_checktype(L, 1, LUA_TTABLE);
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
  l_listen_addr(L, "lupine.server", host, port, &addr);
  if (reuse_port && addr.sa.sa_family == AF_UNIX)
    return luaL_error(L, "lupine.server: reusePort does not apply to Unix domain sockets");
  lp_listen_opts lo = {backlog, reuse_port, l_opt_mode(L, 1, "lupine.server", &addr)};
  l_server *ls = l_newudata(L, sizeof *ls, 0, &l_key_server);
  ls->s.fd = ls->s.spare_fd = -1;
  ls->s.closed = true;
  ls->init_ref = ls->self_ref = LUA_NOREF;
  int rc = lp_server_open(&ls->s, h->loop, &addr, &lo, server_on_accept, NULL);
  if (rc) return l_fail_listen(L, rc, &addr);
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
  if (strcmp(k, "localAddress") == 0) return l_push_addr(L, &ls->s.addr, 0);
  if (strcmp(k, "host") == 0) return l_push_addr(L, &ls->s.addr, 1);
  if (strcmp(k, "port") == 0) return l_push_addr(L, &ls->s.addr, 2);
  if (strcmp(k, "path") == 0 && ls->s.addr.sa.sa_family == AF_UNIX) return l_push_addr(L, &ls->s.addr, 3);
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
  char a[LP_ADDR_STRLEN];
  lua_pushfstring(L, "lupine.Server(%s%s)", ls->h ? lp_addr_format(&ls->s.addr, a, sizeof a) : "?",
                  ls->s.closed ? ", closed" : "");
  return 1;
}

// server:setAutoRead(false) stops accepting (connections wait in the kernel's
// backlog, then are refused or left waiting by it), true resumes: Netty's
// autoRead on a server channel.
static int server_set_auto_read(lua_State *L) {
  l_server *ls = check_server(L);
  l_checktype(L, 2, LUA_TBOOLEAN);
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

void l_server_open(lua_State *L) {
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
