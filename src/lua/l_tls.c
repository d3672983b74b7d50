// l_tls.c: TLS from Lua (tls.h): lupine.core._tls.server{...} and client{...}
// make handler factories (lupine.NativeHandler "tls"), each holding one
// lp_tls_context built when the factory is made: once per Lua state (a
// worker), shared by every channel it is added to. ch:tls() reads what a
// channel negotiated; tls.handshake(ch) is its handshake future.
//
// lua/lupine/tls.lua is the public face (lupine.tls), and wraps an app's init
// for the app field `tls = {...}`; lupine.connect{ tls = {...} } comes here
// through l_tls_add_client.
#include "lbind.h"

#include "log.h"
#include "tls.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include <openssl/ssl.h>

typedef struct {
  l_native base;
  lp_tls_context *tc;
  char server_name[256]; // clients: "" for none (connect uses its host)
  l_host *h;             // servers with an sni function: the state it lives in
  int sni_ref;           // that function (registry), or LUA_NOREF
} l_tls_factory;

static lp_ctx *make_tls(l_native *self, lp_pipeline *p, const char *name, lua_State *L) {
  LP_UNUSED(L);
  l_tls_factory *f = (l_tls_factory *)self;
  return lp_tls_handler_new(p, name, f->tc, f->server_name[0] ? f->server_name : NULL);
}

static void free_tls(l_native *self) {
  l_tls_factory *f = (l_tls_factory *)self;
  if (f->tc) lp_tls_context_set_pick(f->tc, NULL, NULL); // handlers may hold tc longer than f lives
  lp_tls_context_unref(f->tc);
  f->tc = NULL;
  if (f->sni_ref != LUA_NOREF && f->h && !f->h->closing) luaL_unref(f->h->L, LUA_REGISTRYINDEX, f->sni_ref);
  f->sni_ref = LUA_NOREF;
}

static bool is_tls_factory(lua_State *L, int idx);

// Protected: [1] the factory (light), [2] the name (light): sni(name) -> a
// server factory or nil.
static int sni_call(lua_State *L) {
  l_tls_factory *f = lua_touserdata(L, 1);
  const char *name = lua_touserdata(L, 2);
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, f->sni_ref);
  lua_pushstring(L, name);
  lua_call(L, 1, 1);
  if (!lua_isnil(L, -1) &&
      (!is_tls_factory(L, -1) || !lp_tls_context_is_server(((l_tls_factory *)lua_touserdata(L, -1))->tc)))
    luaL_error(L, "lupine.tls.server: the sni function must return a lupine.tls.server factory or nil, not %s",
               luaL_typename(L, -1));
  return 1;
}

// The core's pick hook: the sni function, called on the state's main thread
// during a handshake. An error is logged and the default certificate used.
static lp_tls_context *sni_pick(void *ud, const char *name) {
  l_tls_factory *f = ud;
  if (f->h->closing || !lua_checkstack(f->h->L, 6)) return NULL;
  lua_State *L = f->h->L;
  int top = lua_gettop(L);
  lua_pushcfunction(L, l_traceback);
  lua_pushcfunction(L, sni_call);
  lua_pushlightuserdata(L, f);
  lua_pushlightuserdata(L, (void *)name);
  lp_tls_context *picked = NULL;
  if (lua_pcall(L, 2, 1, top + 1) == LUA_OK) {
    // The factory may be collected once this returns: the handler takes its own reference at once.
    if (!lua_isnil(L, -1)) picked = ((l_tls_factory *)lua_touserdata(L, -1))->tc;
  } else {
    char text[LP_ERROR_MESSAGE_MAX];
    lp_log(LP_LOG_WARN, 0, "tls: the sni function failed for '%s', using the default certificate: %s", name,
           l_error_message(L, -1, text, sizeof text));
  }
  lua_settop(L, top);
  return picked;
}

static const char *const server_keys[] = {"cert", "key", "ca", "verifyClient", "minVersion", "maxVersion", "ciphers",
                                          "ciphersuites", "groups", "alpn", "sni", "handshakeTimeout", "sessionTickets",
                                          NULL};
static const char *const client_keys[] = {"cert", "key", "ca", "verify", "checkHostname", "serverName", "minVersion",
                                          "maxVersion", "ciphers", "ciphersuites", "groups", "alpn",
                                          "handshakeTimeout", NULL};

static int version_opt(lua_State *L, int t, const char *what, const char *field) {
  const char *v = l_opt_string(L, t, field, NULL);
  if (!v) return 0;
  if (strcmp(v, "1.2") == 0) return TLS1_2_VERSION;
  if (strcmp(v, "1.3") == 0) return TLS1_3_VERSION;
  return luaL_error(L, "%s: option '%s' must be \"1.2\" or \"1.3\"", what, field);
}

// The option table at t into o (its strings stay valid while the table is on
// the stack); ALPN protocols are built in wire format into alpn[alpncap].
static void read_options(lua_State *L, int t, bool server, lp_tls_options *o, uint8_t *alpn, size_t alpncap) {
  const char *what = server ? "lupine.tls.server" : "lupine.tls.client";
  const char *const *keys = server ? server_keys : client_keys;
  l_check_options(L, t, what, keys);
  memset(o, 0, sizeof *o);
  o->server = server;
  o->cert = l_opt_string(L, t, "cert", NULL);
  o->key = l_opt_string(L, t, "key", NULL);
  o->ca = l_opt_string(L, t, "ca", NULL);
  o->ciphers = l_opt_string(L, t, "ciphers", NULL);
  o->ciphersuites = l_opt_string(L, t, "ciphersuites", NULL);
  o->groups = l_opt_string(L, t, "groups", NULL);
  o->min_version = version_opt(L, t, what, "minVersion");
  o->max_version = version_opt(L, t, what, "maxVersion");
  o->handshake_timeout = l_opt_number(L, t, "handshakeTimeout", 10.0);
  if (!(o->handshake_timeout >= 0 && o->handshake_timeout <= 1e9))
    luaL_error(L, "%s: option 'handshakeTimeout' must be seconds from 0 to 1e9 (0: no limit)", what);
  if (server) {
    const char *v = l_opt_string(L, t, "verifyClient", "none");
    if (strcmp(v, "none") == 0) o->verify = LP_TLS_VERIFY_NONE;
    else if (strcmp(v, "optional") == 0) o->verify = LP_TLS_VERIFY_OPTIONAL;
    else if (strcmp(v, "require") == 0) o->verify = LP_TLS_VERIFY_REQUIRE;
    else luaL_error(L, "%s: option 'verifyClient' must be \"none\", \"optional\" or \"require\"", what);
    if (o->verify != LP_TLS_VERIFY_NONE && !o->ca)
      luaL_error(L, "%s: option 'verifyClient' needs 'ca' (the CA that signs client certificates)", what);
    o->session_tickets = l_opt_bool(L, t, "sessionTickets", true);
  } else {
    o->verify = l_opt_bool(L, t, "verify", true) ? LP_TLS_VERIFY_REQUIRE : LP_TLS_VERIFY_NONE;
    o->check_hostname = l_opt_bool(L, t, "checkHostname", true);
  }
  int ty = lua_getfield(L, t, "alpn");
  if (ty == LUA_TTABLE) {
    size_t n = 0;
    lua_Integer len = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= len; i++) {
      lua_geti(L, -1, i);
      size_t l;
      const char *s = lua_tolstring(L, -1, &l);
      if (lua_type(L, -1) != LUA_TSTRING || l == 0 || l > 255 || n + 1 + l > alpncap)
        luaL_error(L, "%s: option 'alpn' must be a list of protocol names (1 to 255 bytes each)", what);
      alpn[n++] = (uint8_t)l;
      memcpy(alpn + n, s, l);
      n += l;
      lua_pop(L, 1);
    }
    o->alpn = n ? alpn : NULL;
    o->alpn_len = n;
  } else if (ty != LUA_TNIL) {
    luaL_error(L, "%s: option 'alpn' must be a list of protocol names", what);
  }
  lua_pop(L, 1);
}

static l_tls_factory *new_factory(lua_State *L, bool server) {
  l_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lp_tls_options o;
  uint8_t alpn[512];
  read_options(L, 1, server, &o, alpn, sizeof alpn);
  const char *what = server ? "lupine.tls.server" : "lupine.tls.client";
  const char *sn = server ? NULL : l_opt_string(L, 1, "serverName", NULL);
  if (sn && strlen(sn) >= 256) luaL_error(L, "%s: option 'serverName' is longer than 255 bytes", what);
  l_tls_factory *f = (l_tls_factory *)l_native_new(L, sizeof *f, "tls");
  f->base.make = make_tls;
  f->base.free = free_tls;
  f->sni_ref = LUA_NOREF;
  if (sn) snprintf(f->server_name, sizeof f->server_name, "%s", sn);
  char why[300];
  if (lp_tls_context_new(&o, &f->tc, why, sizeof why) != 0) luaL_error(L, "%s: %s", what, why);
  if (server && lua_getfield(L, 1, "sni") == LUA_TNIL) {
    lua_pop(L, 1);
  } else if (server && lua_isfunction(L, -1)) {
    f->h = l_host_get(L);
    f->sni_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lp_tls_context_set_pick(f->tc, sni_pick, f);
  } else if (server) {
    if (!lua_istable(L, -1))
      luaL_error(L, "%s: option 'sni' must be a table { [name] = { cert = ..., key = ... } } or a function(name)", what);
    int sni = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, sni)) {
      if (!l_is_cstring(L, -2) || !lua_istable(L, -1))
        luaL_error(L, "%s: option 'sni' must be a table { [name] = { cert = ..., key = ... } }", what);
      const char *name = lua_tostring(L, -2);
      const char *cert = l_opt_string(L, lua_gettop(L), "cert", NULL);
      const char *key = l_opt_string(L, lua_gettop(L), "key", NULL);
      if (!cert || !key) luaL_error(L, "%s: sni '%s' needs cert and key", what, name);
      if (lp_tls_context_add_sni(f->tc, name, cert, key, why, sizeof why) != 0)
        luaL_error(L, "%s: sni '%s': %s", what, name, why);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  return f;
}

static bool is_tls_factory(lua_State *L, int idx) {
  l_native *n = l_testudata(L, idx, &l_key_native);
  return n && n->make == make_tls && ((l_tls_factory *)n)->tc;
}

static int tls_server(lua_State *L) {
  new_factory(L, true);
  return 1;
}

static int tls_client(lua_State *L) {
  new_factory(L, false);
  return 1;
}

// ch:tls() -> { protocol, cipher, alpn, serverName, peerSubject, peerIssuer,
// resumed, verified, done, success, error }, or nil when ch has no TLS handler.
static int tls_info(lua_State *L) {
  lp_channel *ch = l_channel_check(L, 1);
  lp_ctx *c = lp_tls_find(&ch->pipeline);
  if (!c) {
    lua_pushnil(L);
    return 1;
  }
  lp_tls_info i;
  lp_tls_get_info(c, &i);
  lua_createtable(L, 0, 11);
  lua_pushboolean(L, i.done);
  lua_setfield(L, -2, "done");
  lua_pushboolean(L, i.success);
  lua_setfield(L, -2, "success");
  lua_pushboolean(L, i.resumed);
  lua_setfield(L, -2, "resumed");
  lua_pushboolean(L, i.verified);
  lua_setfield(L, -2, "verified");
#define SET_STR(field, v)                                                                                              \
  if ((v) && *(v)) {                                                                                                   \
    lua_pushstring(L, (v));                                                                                            \
    lua_setfield(L, -2, field);                                                                                        \
  }
  SET_STR("protocol", i.protocol);
  SET_STR("cipher", i.cipher);
  SET_STR("alpn", i.alpn);
  SET_STR("serverName", i.server_name);
  SET_STR("peerSubject", i.peer_subject);
  SET_STR("peerIssuer", i.peer_issuer);
  SET_STR("error", i.error);
#undef SET_STR
  return 1;
}

// tls.handshake(ch) -> the handshake's future (done with the channel when it
// succeeds), or nil, "ch has no TLS handler".
static int tls_handshake(lua_State *L) {
  lp_channel *ch = l_channel_check(L, 1);
  lp_ctx *c = lp_tls_find(&ch->pipeline);
  if (!c) {
    lua_pushnil(L);
    lua_pushliteral(L, "the channel has no TLS handler");
    return 2;
  }
  l_future_push(L, lp_tls_handshake_future(c));
  return 1;
}

static const char cache_key = 0; // registry: options table -> factory (weak keys)

void l_tls_client_factory(lua_State *L, int opts) {
  opts = lua_absindex(L, opts);
  if (!lua_istable(L, opts)) luaL_error(L, "lupine.connect: 'tls' must be a table of TLS client options");
  // One context per options table and state: connects that pass the same
  // table share it (and its session cache), as accepted channels share theirs.
  l_push_weak_table(L, &cache_key, "k");
  lua_pushvalue(L, opts);
  if (lua_rawget(L, -2) != LUA_TUSERDATA) {
    lua_pop(L, 1);
    lua_pushcfunction(L, tls_client);
    lua_pushvalue(L, opts);
    lua_call(L, 1, 1); // raises on a bad option: before anything is linked
    lua_pushvalue(L, opts);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  }
  lua_remove(L, -2);
}

int l_tls_add_client(lua_State *L, int factory, lp_channel *ch, const char *host) {
  l_tls_factory *f = lua_touserdata(L, factory);
  const char *sn = f->server_name[0] ? f->server_name : host;
  lp_ctx *c = lp_tls_handler_new(&ch->pipeline, "tls", f->tc, sn);
  if (!c) return -ENOMEM;
  int rc = lp_pipeline_add(&ch->pipeline, LP_ADD_FIRST, NULL, c);
  if (rc != 0) lp_ctx_unref(c);
  return rc;
}

static const luaL_Reg functions[] = {
    {"server", tls_server},
    {"client", tls_client},
    {"info", tls_info},
    {"handshake", tls_handshake},
    {NULL, NULL},
};

void l_tls_open(lua_State *L) {
  luaL_newlib(L, functions);
  lua_setfield(L, -2, "_tls"); // lupine.tls (lua/lupine/tls.lua) is the public face
  // ch:tls(), beside the channel's own methods.
  int top = lua_gettop(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &l_key_channel);
  lua_getfield(L, -1, "__index"); // a closure over the methods table (l_channel.c)
  if (lua_getupvalue(L, -1, 1) && lua_istable(L, -1)) {
    lua_pushcfunction(L, tls_info);
    lua_setfield(L, -2, "tls");
  }
  lua_settop(L, top);
}
