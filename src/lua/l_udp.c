// l_udp.c: UDP from Lua. lupine.udp{...} (a bound datagram channel, the
// server side), lupine.udp.open{...} (a client, connected or not), and
// lupine.Datagram, the message both ways: what channelRead gets (data and
// sender) and what lupine.datagram(data, to) makes for ctx:write (data and
// recipient). The core's datagram messages (udp.h) become Datagrams here
// (l_datagram_push), and Datagrams become bytes and an address at the head
// (l_host_to_datagram, a host hook).
#include "lbind.h"

#include "udp.h"

#include <errno.h>
#include <string.h>

// A datagram: its address (the sender of a received one, the recipient of
// one to send) and, in user value 1, its data (a Buffer or a string).
typedef struct {
  L_BOX_HEAD;
  lp_sockaddr addr;
  bool received;
} l_datagram;

static const char l_key_datagram = 0;

static void push_datagram(lua_State *L, lp_msg *m, bool lent) {
  lp_dgram *d = m->u.ptr;
  l_datagram *box = l_newudata(L, sizeof *box, 1, &l_key_datagram);
  box->addr = d->addr;
  box->received = true;
  // The message keeps the datagram until the data is on the stack: if an
  // allocation raises first, the caller's release frees it whole.
  if (m->flags & LP_MSGF_STRING) {
    lua_pushlstring(L, (const char *)lp_buf_rptr(d->buf), lp_buf_readable(d->buf));
  } else {
    if (lent) l_buffer_push_lent(L, d->buf); // raises (if at all) before the box has it
    else l_buffer_push(L, d->buf);
    d->buf = NULL;
  }
  lua_setiuservalue(L, -2, 1);
  m->kind = LP_MSG_NONE;
  lp_dgram_free(d);
}

void l_datagram_push(lua_State *L, lp_msg *m) { push_datagram(L, m, false); }
void l_datagram_push_lent(lua_State *L, lp_msg *m) { push_datagram(L, m, true); }

void l_datagram_settle(lua_State *L, int idx) {
  if (!l_testudata(L, idx, &l_key_datagram)) return;
  lua_getiuservalue(L, idx, 1);
  if (lua_type(L, -1) == LUA_TUSERDATA) l_buffer_settle(L, -1);
  lua_pop(L, 1);
}

int l_host_to_datagram(lp_channel *ch, lp_msg *m, lp_bytes *out, lp_sockaddr *to, bool *has_to, lp_error *err) {
  l_host *h = ch->host;
  lua_State *L = h->L;
  *has_to = false;
  l_datagram *d = l_testudata(L, m->host, &l_key_datagram);
  if (!d) return l_host_to_bytes(ch, m, out, err);
  if (d->received) {
    lp_error_named(err, LP_EUNSUPPORTED,
                   "cannot write a received datagram: answer its sender with lupine.datagram(data, msg)");
    return -1;
  }
  if (!lua_checkstack(L, 2)) {
    lp_error_sys(err, ENOMEM, "write");
    return -1;
  }
  lua_getiuservalue(L, m->host, 1);
  lp_msg inner = l_host_msg(lua_gettop(L));
  int rc = l_host_to_bytes(ch, &inner, out, err);
  lua_pop(L, 1);
  if (rc) return rc;
  *to = d->addr;
  *has_to = true;
  return 0;
}

static l_datagram *check_datagram(lua_State *L, int i) {
  return l_checkudata(L, i, &l_key_datagram, "lupine.Datagram");
}

// lupine.datagram(data, to): data a Buffer or a string (a Buffer is handed
// off when the datagram is written); to "host:port" ("[::1]:5000" for IPv6),
// or a received datagram (its sender: the answer's fast path) or one made
// here (its recipient).
static int datagram_new(lua_State *L) {
  l_argexpected(L, lua_type(L, 1) == LUA_TSTRING || l_buffer_test(L, 1), 1, "Buffer or string");
  lp_sockaddr addr;
  const l_datagram *other = l_testudata(L, 2, &l_key_datagram);
  if (other) {
    addr = other->addr;
  } else {
    const char *to = l_checkcstring(L, 2);
    if (lp_udp_parse_addr(to, &addr) != 0)
      return l_argerror(L, 2, lua_pushfstring(L, "'%s' is not host:port with a numeric host ([::1]:5000 for IPv6)", to));
  }
  l_datagram *box = l_newudata(L, sizeof *box, 1, &l_key_datagram);
  box->addr = addr;
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  return 1;
}

static int datagram_index(lua_State *L) {
  l_datagram *d = check_datagram(L, 1);
  const char *k = lua_tostring(L, 2);
  if (!k) return 0;
  if (strcmp(k, "data") == 0) {
    lua_getiuservalue(L, 1, 1);
    return 1;
  }
  if (strcmp(k, d->received ? "sender" : "recipient") == 0) return l_push_addr(L, &d->addr, 0);
  return 0;
}

static int datagram_tostring(lua_State *L) {
  l_datagram *d = check_datagram(L, 1);
  char a[64];
  lua_getiuservalue(L, 1, 1);
  lp_buf *b = l_buffer_test(L, -1); // NULL too for a Buffer handed off: 0 bytes left in it
  size_t n = lua_type(L, -1) == LUA_TSTRING ? lua_rawlen(L, -1) : b ? lp_buf_readable(b) : 0;
  lua_pushfstring(L, "lupine.Datagram(%I bytes %s %s)", (lua_Integer)n, d->received ? "from" : "to",
                  lp_addr_format(&d->addr, a, sizeof a));
  return 1;
}

// ---- opening channels ---------------------------------------------------------------

typedef struct {
  const char *what;   // "lupine.udp" or "lupine.udp.open", for errors
  lp_sockaddr local, remote;
  bool has_local, has_remote, reuse_port;
  int init;           // stack index of init, 0 when none
  lp_channel_config cfg;
  lp_udp_config ucfg;
} udp_args;

static void read_args(lua_State *L, udp_args *a, bool client) {
  l_checktype(L, 1, LUA_TTABLE);
  lp_channel_config_default(&a->cfg);
  lp_udp_channel_defaults(&a->cfg);
  lp_udp_config_default(&a->ucfg);
  const char *host = l_opt_string(L, 1, "host", client ? NULL : "127.0.0.1");
  int port = (int)l_opt_int(L, 1, "port", client ? -1 : 0, 0, 65535);
  const char *connect = client ? l_opt_string(L, 1, "connect", NULL) : NULL;
  a->ucfg.max_datagram = (size_t)l_opt_int(L, 1, "maxDatagramSize", LP_UDP_MAX_DATAGRAM, 1, 65535);
  a->ucfg.as_string = l_opt_bool(L, 1, "asString", false);
  a->reuse_port = l_opt_bool(L, 1, "reusePort", false);
  a->init = 0;
  if (lua_getfield(L, 1, "init") == LUA_TFUNCTION) a->init = lua_gettop(L);
  else if (!lua_isnil(L, -1) || !client) luaL_error(L, "%s: 'init' must be a function(ch)", a->what);
  if (lua_getfield(L, 1, "options") != LUA_TNIL) l_channel_config_read(L, -1, &a->cfg);
  lua_pop(L, 1);
  a->has_remote = connect != NULL;
  if (connect && lp_udp_parse_addr(connect, &a->remote) != 0)
    luaL_error(L, "%s: connect '%s' is not host:port with a numeric host ([::1]:5000 for IPv6)", a->what, connect);
  a->has_local = host || port > 0 || !client;
  if (a->has_local) {
    if (!host) host = a->has_remote && a->remote.sa.sa_family == AF_INET6 ? "::" : client ? "0.0.0.0" : "127.0.0.1";
    if (lp_addr_parse(host, port < 0 ? 0 : port, &a->local) != 0)
      luaL_error(L, "%s: host '%s' is not a numeric IPv4/IPv6 address or localhost", a->what, host);
  }
}

// Open, run init(ch) on the caller's thread, register; push the channel or
// the failure (nil, message, kind). init raising closes the channel and
// raises its error again.
static int open_channel(lua_State *L, udp_args *a) {
  l_host *h = l_host_get(L);
  lp_channel *ch;
  const char *step;
  int rc = lp_udp_open(h->loop, a->has_local ? &a->local : NULL, a->has_remote ? &a->remote : NULL, a->reuse_port,
                       &a->cfg, &a->ucfg, &ch, &step);
  if (rc) {
    char addr[64];
    const lp_sockaddr *at = strcmp(step, "connect") == 0 ? &a->remote : &a->local;
    lua_pushfstring(L, "UDP %s %s", step, lp_addr_format(at, addr, sizeof addr));
    return l_fail(L, rc, lua_tostring(L, -1));
  }
  l_channel_adopt(h, ch); // this state's (during a reload's prepare, the new one's, not the loop's newest)
  l_channel_push(L, ch);
  int chi = lua_gettop(L);
  if (a->init) {
    lua_pushcfunction(L, l_traceback);
    lua_pushcfunction(L, l_call_init);
    lua_pushvalue(L, a->init);
    lua_pushlightuserdata(L, ch);
    lp_pipeline_enter(&ch->pipeline);
    rc = lua_pcall(L, 2, 0, chi + 1);
    lp_pipeline_leave(&ch->pipeline);
    if (rc != LUA_OK) {
      lp_channel_close_now(ch);
      return lua_error(L);
    }
    lua_settop(L, chi);
  }
  lp_channel_register(ch);
  return 1;
}

// lupine.udp{ host = "127.0.0.1", port = 0, init = fn, maxDatagramSize = 65507,
// asString = false, reusePort = false, options = {...} } -> channel, or nil, err, kind.
static int udp_bind(lua_State *L) {
  lua_remove(L, 1); // the lupine.udp table (__call)
  udp_args a = {.what = "lupine.udp"};
  read_args(L, &a, false);
  return open_channel(L, &a);
}

// lupine.udp.open{ host?, port?, connect = "host:port"?, init = fn?, ... } -> channel, or nil, err, kind.
static int udp_open(lua_State *L) {
  udp_args a = {.what = "lupine.udp.open"};
  read_args(L, &a, true);
  if (!a.has_local && !a.has_remote) {
    a.has_local = true;
    lp_addr_parse("0.0.0.0", 0, &a.local);
  }
  return open_channel(L, &a);
}

void l_udp_open(lua_State *L) {
  l_newmetatable(L, "lupine.Datagram", &l_key_datagram);
  lua_pushcfunction(L, datagram_index);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, datagram_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  lua_pushcfunction(L, datagram_new);
  lua_setfield(L, -2, "datagram");
  lua_createtable(L, 0, 1); // lupine.udp: callable, with open
  lua_pushcfunction(L, udp_open);
  lua_setfield(L, -2, "open");
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, udp_bind);
  lua_setfield(L, -2, "__call");
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "udp");
}
