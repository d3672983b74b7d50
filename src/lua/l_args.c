// l_args.c: checking the arguments of calls from Lua. Argument errors name
// the method even where Lua cannot (a method called from C, as in
// pcall(ctx.write, ctx), has no name in the debug info: "bad argument #2 to
// '?'"), and Lua strings that become C strings are checked for NUL bytes.
//
// The names: on an argument error Lua has no name for, the running function
// is looked up in the method tables of lupine's types (only the error path
// pays for it, and no table is kept: a new registry entry would move the
// registry's integer keys, which the hot path reads, between its array and
// hash parts). Module functions need no lookup: Lua finds them in
// package.loaded ("bad argument #1 to 'lupine.buffer'").
#include "lbind.h"

#include <string.h>

// Push the name of the function at fn (absolute) in the method table at t; false if none.
static bool name_in(lua_State *L, int t, int fn) {
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_rawequal(L, -1, fn)) {
      lua_pop(L, 1);
      return true; // the key, on top
    }
    lua_pop(L, 1);
  }
  return false;
}

// Push the method name of the function at fn (absolute); false if it is none of lupine's.
static bool method_name(lua_State *L, int fn) {
  static const char *const keys[] = {&l_key_buffer, &l_key_context, &l_key_pipeline, &l_key_future, &l_key_channel,
                                     &l_key_config, &l_key_server,  &l_key_loop,     &l_key_timer};
  for (size_t i = 0; i < LP_ARRAY_LEN(keys); i++) {
    int top = lua_gettop(L);
    lua_rawgetp(L, LUA_REGISTRYINDEX, keys[i]); // the type's metatable
    int ty = lua_type(L, -1) == LUA_TTABLE ? lua_getfield(L, -1, "__index") : LUA_TNIL;
    if (ty == LUA_TFUNCTION && lua_getupvalue(L, -1, 1)) ty = lua_type(L, -1); // an __index function over a method table
    if (ty == LUA_TTABLE && name_in(L, lua_gettop(L), fn)) {
      lua_replace(L, top + 1);
      lua_settop(L, top + 1);
      return true;
    }
    lua_settop(L, top);
  }
  return false;
}

int l_argerror(lua_State *L, int arg, const char *extramsg) {
  lua_Debug ar;
  // Only when Lua has no name for the function: otherwise its message, which
  // also counts arguments as the caller wrote them (ctx:write() -> #1).
  if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "nf", &ar) && ar.name == NULL && lua_checkstack(L, 8) &&
      method_name(L, lua_gettop(L)))
    return luaL_error(L, "bad argument #%d to '%s' (%s)", arg, lua_tostring(L, -1), extramsg);
  return luaL_argerror(L, arg, extramsg);
}

int l_typeerror(lua_State *L, int arg, const char *tname) {
  const char *got;
  if (luaL_getmetafield(L, arg, "__name") == LUA_TSTRING) got = lua_tostring(L, -1);
  else if (lua_type(L, arg) == LUA_TLIGHTUSERDATA) got = "light userdata";
  else got = luaL_typename(L, arg);
  return l_argerror(L, arg, lua_pushfstring(L, "%s expected, got %s", tname, got));
}

int l_tagerror(lua_State *L, int arg, int tag) { return l_typeerror(L, arg, lua_typename(L, tag)); }

int l_interror(lua_State *L, int arg) {
  if (lua_isnumber(L, arg)) return l_argerror(L, arg, "number has no integer representation");
  return l_tagerror(L, arg, LUA_TNUMBER);
}

const char *l_checklstring(lua_State *L, int arg, size_t *len) {
  const char *s = lua_tolstring(L, arg, len);
  if (LP_UNLIKELY(!s)) l_tagerror(L, arg, LUA_TSTRING);
  return s;
}

const char *l_optlstring(lua_State *L, int arg, const char *def, size_t *len) {
  if (lua_isnoneornil(L, arg)) {
    if (len) *len = def ? strlen(def) : 0;
    return def;
  }
  return l_checklstring(L, arg, len);
}

bool l_is_cstring(lua_State *L, int idx) {
  size_t n;
  const char *s = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &n) : NULL;
  return s && !memchr(s, 0, n);
}

const char *l_checkcstring(lua_State *L, int arg) {
  const char *s = l_checkstring(L, arg);
  if (!l_is_cstring(L, arg)) l_argerror(L, arg, L_NUL_MESSAGE);
  return s;
}

const char *l_optcstring(lua_State *L, int arg, const char *def) {
  return lua_isnoneornil(L, arg) ? def : l_checkcstring(L, arg);
}

void l_check_options(lua_State *L, int t, const char *fn, const char *const *known) {
  lua_pushnil(L);
  while (lua_next(L, t)) {
    bool ok = false;
    if (lua_type(L, -2) == LUA_TSTRING)
      for (int i = 0; known[i] && !ok; i++) ok = strcmp(lua_tostring(L, -2), known[i]) == 0;
    if (!ok) luaL_error(L, "%s: unknown option '%s'", fn, luaL_tolstring(L, -2, NULL));
    lua_pop(L, 1);
  }
}
