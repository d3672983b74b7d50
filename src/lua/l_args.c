// l_args.c: checking the arguments of calls from Lua. Argument errors name
// the method even where Lua cannot (a method called from C, as in
// pcall(ctx.write, ctx), has no name in the debug info: "bad argument #2 to
// '?'"), and Lua strings that become C strings are checked for NUL bytes.
//
// The names: luaopen records, in a registry table keyed by function, the name
// of every function in lupine's method tables (names_key). Only the error
// path reads it. Module functions need no entry: Lua finds them in
// package.loaded ("bad argument #1 to 'lupine.buffer'").
#include "lbind.h"

#include <string.h>

static const char names_key = 'n';

// The methods (and module functions) in the table at t, by function.
static void record_names(lua_State *L, int t, int names) {
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_iscfunction(L, -1)) {
      lua_pushvalue(L, -1);
      lua_pushvalue(L, -3);
      lua_rawset(L, names); // names[fn] = "write"
    }
    lua_pop(L, 1);
  }
}

void l_args_open(lua_State *L, const void *const *keys, int nkeys) {
  lua_newtable(L);
  int names = lua_gettop(L);
  for (int i = 0; i < nkeys; i++) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, keys[i]); // the type's metatable
    int ty = lua_type(L, -1) == LUA_TTABLE ? lua_getfield(L, -1, "__index") : LUA_TNIL;
    if (ty == LUA_TFUNCTION && lua_getupvalue(L, -1, 1)) { // an __index function over a method table
      lua_replace(L, -2);
      ty = lua_type(L, -1);
    }
    if (ty == LUA_TTABLE) record_names(L, lua_gettop(L), names);
    lua_settop(L, names);
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &names_key);
}

int l_argerror(lua_State *L, int arg, const char *extramsg) {
  lua_Debug ar;
  // Only when Lua has no name for the function: otherwise its message, which
  // also counts arguments as the caller wrote them (ctx:write() -> #1).
  if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "nf", &ar) && ar.name == NULL) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &names_key);
    if (lua_istable(L, -1)) {
      lua_pushvalue(L, -2);
      if (lua_rawget(L, -2) == LUA_TSTRING)
        return luaL_error(L, "bad argument #%d to '%s' (%s)", arg, lua_tostring(L, -1), extramsg);
    }
  }
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
