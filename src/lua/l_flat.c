// l_flat.c: values copied across threads as flat bytes (lupine.blocking's
// jobs and results, lupine.broadcast's messages): nil, booleans, integers and
// floats (kept apart), strings, and tables of those with string or integer
// keys and no metatable. Nothing of Lua crosses: the bytes are malloc'd, owned
// by whoever holds the l_blob, and decoded into another state on its thread.
#include "l_flat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void l_blob_put(l_blob *b, const void *p, size_t n) {
  if (b->oom) return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
      b->oom = true;
      return;
    }
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

static void put_tag(l_blob *b, char tag) { l_blob_put(b, &tag, 1); }

void l_blob_free(l_blob *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

enum { T_NIL = 'n', T_FALSE = 'f', T_TRUE = 't', T_INT = 'i', T_FLOAT = 'd', T_STRING = 's', T_TABLE = 'T' };

#define ONLY_FLAT "only nil, booleans, numbers, strings and flat tables of those cross"

static bool refuse(l_crossing *x, const char *fmt, const char *detail) {
  char what[96];
  snprintf(what, sizeof what, fmt, detail);
  if (strstr(fmt, "inside a table"))
    snprintf(x->err, L_FLAT_ERR_MAX, "%s: %s #%d %s: only flat tables of strings, numbers and booleans cross %s", x->api,
             x->what, x->n, what, x->where);
  else
    snprintf(x->err, L_FLAT_ERR_MAX, "%s: %s #%d %s: " ONLY_FLAT " %s", x->api, x->what, x->n, what, x->where);
  return false;
}

static void put_scalar(lua_State *L, int idx, l_blob *b) {
  switch (lua_type(L, idx)) {
  case LUA_TBOOLEAN: put_tag(b, lua_toboolean(L, idx) ? T_TRUE : T_FALSE); break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      lua_Integer i = lua_tointeger(L, idx);
      put_tag(b, T_INT);
      l_blob_put(b, &i, sizeof i);
    } else {
      lua_Number d = lua_tonumber(L, idx);
      put_tag(b, T_FLOAT);
      l_blob_put(b, &d, sizeof d);
    }
    break;
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len); // a string already: no conversion
    put_tag(b, T_STRING);
    l_blob_put(b, &len, sizeof len);
    l_blob_put(b, s, len);
    break;
  }
  default: put_tag(b, T_NIL); break;
  }
}

static bool is_scalar(int t) { return t == LUA_TBOOLEAN || t == LUA_TNUMBER || t == LUA_TSTRING; }

// Append the value at idx; false with x->err set when it cannot cross. Never
// raises (the caller holds malloc'd memory): no conversions, no metamethods.
bool l_flat_encode(lua_State *L, int idx, l_blob *b, l_crossing *x) {
  int t = lua_type(L, idx);
  if (t == LUA_TNIL || is_scalar(t)) {
    put_scalar(L, idx, b);
    return true;
  }
  if (t != LUA_TTABLE) return refuse(x, "is a %s", lua_typename(L, t));
  if (lua_getmetatable(L, idx)) {
    lua_pop(L, 1);
    return refuse(x, "is a table with a metatable%s", "");
  }
  if (!lua_checkstack(L, 3)) return refuse(x, "is too deep for the C stack%s", "");
  idx = lua_absindex(L, idx);
  put_tag(b, T_TABLE);
  size_t count_at = b->len;
  uint32_t count = 0;
  l_blob_put(b, &count, sizeof count);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int kt = lua_type(L, -2), vt = lua_type(L, -1);
    bool ok = true;
    if (kt == LUA_TNUMBER && !lua_isinteger(L, -2)) ok = refuse(x, "has a %s key: only string and integer keys cross", "float");
    else if (kt != LUA_TNUMBER && kt != LUA_TSTRING) ok = refuse(x, "has a %s key: only string and integer keys cross", lua_typename(L, kt));
    else if (vt == LUA_TTABLE) ok = refuse(x, "is a table inside a table%s", "");
    else if (!is_scalar(vt)) ok = refuse(x, "holds a %s", lua_typename(L, vt));
    if (!ok) {
      lua_pop(L, 2);
      return false;
    }
    put_scalar(L, -2, b);
    put_scalar(L, -1, b);
    lua_pop(L, 1);
    if (++count == UINT32_MAX) {
      lua_pop(L, 1);
      return refuse(x, "has too many entries%s", "");
    }
  }
  if (!b->oom) memcpy(b->data + count_at, &count, sizeof count);
  return true;
}

static bool take(l_reader *r, void *out, size_t n) {
  if ((size_t)(r->end - r->p) < n) return false;
  memcpy(out, r->p, n);
  r->p += n;
  return true;
}

// Push the next value of r; raises only when out of memory (callers run it
// protected). The bytes were made by encode in this process: a short read is a
// bug, reported as an error rather than trusted.
void l_flat_decode(lua_State *L, l_reader *r) {
  char tag = 0;
  if (!take(r, &tag, 1)) luaL_error(L, "lupine: internal error: truncated value");
  luaL_checkstack(L, 3, "lupine: decoding a copied value");
  switch (tag) {
  case T_NIL: lua_pushnil(L); break;
  case T_FALSE: lua_pushboolean(L, 0); break;
  case T_TRUE: lua_pushboolean(L, 1); break;
  case T_INT: {
    lua_Integer i = 0;
    if (!take(r, &i, sizeof i)) luaL_error(L, "lupine: internal error: truncated integer");
    lua_pushinteger(L, i);
    break;
  }
  case T_FLOAT: {
    lua_Number d = 0;
    if (!take(r, &d, sizeof d)) luaL_error(L, "lupine: internal error: truncated number");
    lua_pushnumber(L, d);
    break;
  }
  case T_STRING: {
    size_t len = 0;
    if (!take(r, &len, sizeof len) || (size_t)(r->end - r->p) < len)
      luaL_error(L, "lupine: internal error: truncated string");
    lua_pushlstring(L, r->p, len);
    r->p += len;
    break;
  }
  case T_TABLE: {
    uint32_t count = 0;
    if (!take(r, &count, sizeof count)) luaL_error(L, "lupine: internal error: truncated table");
    lua_createtable(L, 0, (int)(count < 1024 ? count : 1024));
    for (uint32_t i = 0; i < count; i++) {
      l_flat_decode(L, r);
      l_flat_decode(L, r);
      lua_rawset(L, -3);
    }
    break;
  }
  default: luaL_error(L, "lupine: internal error: bad tag %d", tag);
  }
}

