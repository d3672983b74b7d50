// l_shared.c: lupine.shared, the process's shared dictionaries (src/core/shdict.c)
// from Lua, with OpenResty's ngx.shared.DICT API in camelCase:
//
//   lupine.shared.declare(name, size)  size: bytes, or "64M", "512k", "1g"
//   local d = lupine.shared.cache       any worker, any state of the process
//   d:get(k) d:set(k, v, ttl) d:add d:replace d:incr(k, delta, init, initTtl)
//   d:delete d:ttl d:expire d:keys(max) d:flushAll d:flushExpired(max)
//   d:capacity d:freeSpace  d:lpush d:rpush d:lpop d:rpop d:llen
//   and for Redis-like servers: d:getDel d:lrange(k, start, stop) d:count
//
// Results follow OpenResty: a refusal is `nil, "exists"` (or "not found",
// "no memory", "not a number", "value not a list"), set-like calls return
// `true, nil, forcible` where forcible says that live entries were evicted.
// ttl and expiry times are seconds (floats, millisecond precision; 0: never).
//
// Ownership: a lupine.SharedDict box points to a dictionary of the process
// registry, which outlives every state; the box owns only its scratch buffer
// (values are copied out into it, then into Lua strings). Each state caches
// one box per name in the lupine.shared table.
#include "lbind.h"

#include "shdict.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX 65535

static const char l_key_shdict = 'S';

typedef struct l_shdict {
  L_BOX_HEAD;
  lp_shdict *d;
  lp_shscratch sc;
} l_shdict;

static l_shdict *checkdict(lua_State *L) { return l_checkudata(L, 1, &l_key_shdict, "lupine.SharedDict"); }

lp_shdict *l_shared_test(lua_State *L, int i) {
  l_shdict *b = l_testudata(L, i, &l_key_shdict);
  return b ? b->d : NULL;
}

static const char *checkkey(lua_State *L, int i, size_t *len) {
  if (lua_type(L, i) != LUA_TSTRING && lua_type(L, i) != LUA_TNUMBER) l_typeerror(L, i, "string");
  const char *k = lua_tolstring(L, i, len);
  if (*len == 0) l_argerror(L, i, "empty key");
  if (*len > KEY_MAX) l_argerror(L, i, "key longer than 65535 bytes");
  return k;
}

// The Lua value at i as a dictionary value (strings borrowed from the stack).
static void checkval(lua_State *L, int i, lp_shval *v, bool nil_ok) {
  memset(v, 0, sizeof *v);
  switch (lua_type(L, i)) {
  case LUA_TNIL:
  case LUA_TNONE:
    if (!nil_ok) l_argerror(L, i, "string, number or boolean expected, got nil");
    v->type = LP_SHV_NIL;
    break;
  case LUA_TBOOLEAN: v->type = LP_SHV_BOOL; v->b = lua_toboolean(L, i); break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, i)) {
      v->type = LP_SHV_INT;
      v->i = lua_tointeger(L, i);
    } else {
      v->type = LP_SHV_FLOAT;
      v->d = lua_tonumber(L, i);
    }
    break;
  case LUA_TSTRING: v->type = LP_SHV_STR; v->str = lua_tolstring(L, i, &v->len); break;
  default: {
    const char *msg = lua_pushfstring(L, "string, number or boolean expected, got %s", luaL_typename(L, i));
    l_argerror(L, i, msg);
  }
  }
}

static void pushval(lua_State *L, const lp_shval *v) {
  switch (v->type) {
  case LP_SHV_BOOL: lua_pushboolean(L, v->b); break;
  case LP_SHV_INT: lua_pushinteger(L, v->i); break;
  case LP_SHV_FLOAT: lua_pushnumber(L, v->d); break;
  case LP_SHV_STR: lua_pushlstring(L, v->str, v->len); break;
  default: lua_pushnil(L); break;
  }
}

// Seconds (a number >= 0) as milliseconds; 0: never expires.
static uint64_t checkttl(lua_State *L, int i) {
  lua_Number t = l_optnumber(L, i, 0);
  l_argcheck(L, t >= 0 && t <= 1e12, i, "ttl must be a number of seconds from 0 (never expires) to 1e12");
  if (t == 0) return 0;
  double ms = ceil(t * 1000.0 - 1e-6); // 0.0001 s still expires: at least 1 ms
  return ms < 1 ? 1 : (uint64_t)ms;
}

static int fail(lua_State *L, int rc) {
  lua_pushnil(L);
  lua_pushstring(L, lp_shdict_strerror(rc));
  return 2;
}

static int set_like(lua_State *L, int mode) {
  l_shdict *b = checkdict(L);
  size_t klen;
  const char *k = checkkey(L, 2, &klen);
  lp_shval v;
  checkval(L, 3, &v, mode == LP_SHSET_ANY);
  uint64_t ttl = checkttl(L, 4);
  bool evicted = false;
  int rc = lp_shdict_set(b->d, k, klen, &v, ttl, mode, &evicted);
  if (rc) lua_pushnil(L);
  else lua_pushboolean(L, 1);
  if (rc) lua_pushstring(L, lp_shdict_strerror(rc));
  else lua_pushnil(L);
  lua_pushboolean(L, evicted);
  return 3;
}

static int d_set(lua_State *L) { return set_like(L, LP_SHSET_ANY); }
static int d_add(lua_State *L) { return set_like(L, LP_SHSET_ADD); }
static int d_replace(lua_State *L) { return set_like(L, LP_SHSET_REPLACE); }

// A value read from the dictionary: it, nil when absent, or the failure.
static int push_found(lua_State *L, int rc, const lp_shval *v) {
  if (rc == LP_SHD_NOTFOUND) {
    lua_pushnil(L);
    return 1;
  }
  if (rc) return fail(L, rc);
  pushval(L, v);
  return 1;
}

static int get_like(lua_State *L, bool take) {
  l_shdict *b = checkdict(L);
  size_t klen;
  const char *k = checkkey(L, 2, &klen);
  lp_shval v;
  int rc = take ? lp_shdict_take(b->d, k, klen, &v, &b->sc) : lp_shdict_get(b->d, k, klen, &v, &b->sc, NULL);
  return push_found(L, rc, &v);
}

static int d_get(lua_State *L) { return get_like(L, false); }
static int d_getdel(lua_State *L) { return get_like(L, true); }

static int d_incr(lua_State *L) {
  l_shdict *b = checkdict(L);
  size_t klen;
  const char *k = checkkey(L, 2, &klen);
  lp_shval delta, init, out;
  l_checknumber(L, 3);
  checkval(L, 3, &delta, false);
  bool has_init = !lua_isnoneornil(L, 4);
  if (has_init) {
    l_checknumber(L, 4);
    checkval(L, 4, &init, false);
  }
  uint64_t ttl = checkttl(L, 5);
  bool evicted = false;
  int rc = lp_shdict_incr(b->d, k, klen, &delta, has_init ? &init : NULL, ttl, &out, &evicted);
  if (rc) return fail(L, rc);
  pushval(L, &out);
  lua_pushnil(L);
  lua_pushboolean(L, evicted);
  return 3;
}

static int d_delete(lua_State *L) {
  l_shdict *b = checkdict(L);
  size_t klen;
  const char *k = checkkey(L, 2, &klen);
  lua_pushboolean(L, lp_shdict_delete(b->d, k, klen) == 0); // whether it was there
  return 1;
}

static int d_ttl(lua_State *L) {
  l_shdict *b = checkdict(L);
  size_t klen;
  const char *k = checkkey(L, 2, &klen);
  uint64_t ms;
  int rc = lp_shdict_ttl(b->d, k, klen, &ms);
  if (rc) return fail(L, rc);
  lua_pushnumber(L, (lua_Number)ms / 1000.0);
  return 1;
}

static int d_expire(lua_State *L) {
  l_shdict *b = checkdict(L);
  size_t klen;
  const char *k = checkkey(L, 2, &klen);
  l_checknumber(L, 3);
  int rc = lp_shdict_expire(b->d, k, klen, checkttl(L, 3));
  if (rc) return fail(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int d_keys(lua_State *L) {
  l_shdict *b = checkdict(L);
  lua_Integer max = l_optinteger(L, 2, 1024);
  l_argcheck(L, max >= 0, 2, "max must be 0 (all) or more");
  size_t *lens, n;
  char **keys = lp_shdict_keys(b->d, (size_t)max, &lens, &n);
  if (!keys) return luaL_error(L, "not enough memory");
  // Pushing raises only when out of memory; then the copies leak (rare, bounded by max).
  lua_createtable(L, (int)(n < 1u << 20 ? n : 1u << 20), 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushlstring(L, keys[i], lens[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lp_shdict_keys_free(keys, lens, n);
  return 1;
}

static int d_flush_all(lua_State *L) {
  lp_shdict_flush_all(checkdict(L)->d);
  return 0;
}

static int d_flush_expired(lua_State *L) {
  l_shdict *b = checkdict(L);
  lua_Integer max = l_optinteger(L, 2, 0);
  l_argcheck(L, max >= 0, 2, "max must be 0 (all) or more");
  lua_pushinteger(L, (lua_Integer)lp_shdict_flush_expired(b->d, (size_t)max));
  return 1;
}

static int d_capacity(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lp_shdict_capacity(checkdict(L)->d));
  return 1;
}

static int d_free_space(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lp_shdict_free_space(checkdict(L)->d));
  return 1;
}

static int d_count(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lp_shdict_count(checkdict(L)->d));
  return 1;
}

static int push_like(lua_State *L, bool left) {
  l_shdict *b = checkdict(L);
  size_t klen;
  const char *k = checkkey(L, 2, &klen);
  lp_shval v;
  checkval(L, 3, &v, false);
  size_t len;
  bool evicted = false;
  int rc = lp_shdict_push(b->d, k, klen, &v, left, &len, &evicted);
  if (rc) return fail(L, rc);
  lua_pushinteger(L, (lua_Integer)len);
  lua_pushnil(L);
  lua_pushboolean(L, evicted);
  return 3;
}

static int d_lpush(lua_State *L) { return push_like(L, true); }
static int d_rpush(lua_State *L) { return push_like(L, false); }

static int pop_like(lua_State *L, bool left) {
  l_shdict *b = checkdict(L);
  size_t klen;
  const char *k = checkkey(L, 2, &klen);
  lp_shval v;
  int rc = lp_shdict_pop(b->d, k, klen, left, &v, &b->sc);
  return push_found(L, rc, &v);
}

static int d_lpop(lua_State *L) { return pop_like(L, true); }
static int d_rpop(lua_State *L) { return pop_like(L, false); }

static int d_llen(lua_State *L) {
  l_shdict *b = checkdict(L);
  size_t klen;
  const char *k = checkkey(L, 2, &klen);
  size_t len;
  int rc = lp_shdict_llen(b->d, k, klen, &len);
  if (rc) return fail(L, rc);
  lua_pushinteger(L, (lua_Integer)len);
  return 1;
}

// lrange copies the items into a malloc'd list under the lock (no Lua there),
// then pushes them.
typedef struct range_acc {
  lp_shval *v;
  char **s;
  size_t n, cap;
  bool oom;
} range_acc;

static void range_add(void *ud, const lp_shval *v) {
  range_acc *a = ud;
  if (a->oom) return;
  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 16;
    lp_shval *nv = realloc(a->v, cap * sizeof *nv);
    if (nv) a->v = nv;
    char **ns = nv ? realloc(a->s, cap * sizeof *ns) : NULL;
    if (ns) a->s = ns;
    if (!nv || !ns) {
      a->oom = true;
      return;
    }
    a->cap = cap;
  }
  a->v[a->n] = *v;
  a->s[a->n] = NULL;
  if (v->type == LP_SHV_STR) {
    char *c = malloc(v->len ? v->len : 1);
    if (!c) {
      a->oom = true;
      return;
    }
    if (v->len) memcpy(c, v->str, v->len);
    a->s[a->n] = c;
    a->v[a->n].str = c;
  }
  a->n++;
}

static void range_free(range_acc *a) {
  for (size_t i = 0; i < a->n; i++) free(a->s[i]);
  free(a->s);
  free(a->v);
}

static int d_lrange(lua_State *L) {
  l_shdict *b = checkdict(L);
  size_t klen;
  const char *k = checkkey(L, 2, &klen);
  lua_Integer start = l_optinteger(L, 3, 0), stop = l_optinteger(L, 4, -1);
  range_acc a = {0};
  int rc = lp_shdict_lrange(b->d, k, klen, start, stop, range_add, &a);
  if (rc || a.oom) {
    range_free(&a);
    if (!rc) return luaL_error(L, "not enough memory");
    return fail(L, rc);
  }
  if (!lua_checkstack(L, 4)) {
    range_free(&a);
    return luaL_error(L, "stack overflow");
  }
  lua_createtable(L, (int)(a.n < 1u << 20 ? a.n : 1u << 20), 0);
  for (size_t i = 0; i < a.n; i++) {
    pushval(L, &a.v[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  range_free(&a);
  return 1;
}

static int d_gc(lua_State *L) {
  l_shdict *b = lua_touserdata(L, 1);
  free(b->sc.data);
  b->sc.data = NULL;
  b->sc.cap = 0;
  return 0;
}

static int d_tostring(lua_State *L) {
  l_shdict *b = checkdict(L);
  lua_pushfstring(L, "lupine.SharedDict '%s' (%I of %I bytes free)", lp_shdict_name(b->d),
                  (lua_Integer)lp_shdict_free_space(b->d), (lua_Integer)lp_shdict_capacity(b->d));
  return 1;
}

// "64M", "512k", "1g", "8192" or a number: bytes; -1 when not a size.
static lua_Integer parse_size(lua_State *L, int i) {
  if (lua_type(L, i) == LUA_TNUMBER) return lua_isinteger(L, i) ? lua_tointeger(L, i) : -1;
  if (lua_type(L, i) != LUA_TSTRING) return -1;
  const char *s = lua_tostring(L, i);
  char *end;
  double v = strtod(s, &end);
  if (end == s || v < 0) return -1;
  double mult = 1;
  switch (*end) {
  case 'k': case 'K': mult = 1024; end++; break;
  case 'm': case 'M': mult = 1024.0 * 1024; end++; break;
  case 'g': case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
  default: break;
  }
  if (*end == 'b' || *end == 'B') end++;
  if (*end || v * mult > 1e15) return -1;
  return (lua_Integer)(v * mult);
}

static void push_box(lua_State *L, lp_shdict *d) {
  l_shdict *b = l_newudata(L, sizeof *b, 0, &l_key_shdict);
  b->d = d;
}

// lupine.shared.declare(name, size) -> the dictionary (the existing one when declared already).
static int s_declare(lua_State *L) {
  const char *name = l_checkcstring(L, 1);
  l_argcheck(L, *name && strlen(name) < LP_SHDICT_NAME_MAX, 1, "name must be 1 to 63 bytes");
  lua_Integer size = parse_size(L, 2);
  if (size < 0)
    return luaL_error(L, "lupine.shared: size of '%s' must be bytes, or a number with k, m or g (\"64m\")", name);
  if (size < LP_SHDICT_MIN_SIZE)
    return luaL_error(L, "lupine.shared: size of '%s' must be at least %d bytes", name, LP_SHDICT_MIN_SIZE);
  lp_shdict *d = lp_shdict_declare(name, (size_t)size);
  if (!d) return luaL_error(L, "lupine.shared: cannot make '%s' (out of memory, or too many dictionaries)", name);
  push_box(L, d);
  lua_pushvalue(L, -1);
  lua_setfield(L, lua_upvalueindex(1), name); // cached in lupine.shared
  return 1;
}

// lupine.shared.NAME: the dictionary, or an error naming how to declare it.
static int s_index(lua_State *L) {
  const char *name = lua_tostring(L, 2);
  lp_shdict *d = name && l_is_cstring(L, 2) ? lp_shdict_lookup(name) : NULL;
  if (!d)
    return luaL_error(L, "lupine.shared: no dictionary '%s' (declare it in the app: shared = { %s = \"1m\" })",
                      name ? name : "?", name ? name : "name");
  push_box(L, d);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, -2);
  lua_rawset(L, 1);
  return 1;
}

static const luaL_Reg methods[] = {
    {"get", d_get}, {"set", d_set}, {"add", d_add}, {"replace", d_replace}, {"incr", d_incr},
    {"delete", d_delete}, {"ttl", d_ttl}, {"expire", d_expire}, {"keys", d_keys}, {"flushAll", d_flush_all},
    {"flushExpired", d_flush_expired}, {"capacity", d_capacity}, {"freeSpace", d_free_space},
    {"lpush", d_lpush}, {"rpush", d_rpush}, {"lpop", d_lpop}, {"rpop", d_rpop}, {"llen", d_llen},
    {"lrange", d_lrange}, {"getDel", d_getdel}, {"count", d_count}, {NULL, NULL}};

void l_shared_open(lua_State *L) {
  l_newmetatable(L, "lupine.SharedDict", &l_key_shdict);
  lua_pushcfunction(L, d_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, d_tostring);
  lua_setfield(L, -2, "__tostring");
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_newtable(L); // lupine.shared
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, s_declare, 1);
  lua_setfield(L, -2, "declare");
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, s_index);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "shared");
}
