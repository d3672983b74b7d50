// l_native.c: lupine.NativeHandler, the factories of native handlers (frame
// decoders, encoders, idle state). A factory is shared; adding it to a
// pipeline makes a fresh context through its make() (l_pipeline.c).
#include "lbind.h"

l_native *l_native_new(lua_State *L, size_t size, const char *type_name) {
  l_native *n = l_newudata(L, size, 0, &l_key_native);
  n->type_name = type_name;
  return n;
}

static int native_gc(lua_State *L) {
  l_native *n = l_checkudata(L, 1, &l_key_native, "lupine.NativeHandler");
  if (n->free) n->free(n);
  n->free = NULL;
  return 0;
}

static int native_tostring(lua_State *L) {
  l_native *n = l_checkudata(L, 1, &l_key_native, "lupine.NativeHandler");
  lua_pushfstring(L, "lupine.NativeHandler(%s)", n->type_name);
  return 1;
}

void l_native_open(lua_State *L) {
  l_newmetatable(L, "lupine.NativeHandler", &l_key_native);
  lua_pushcfunction(L, native_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, native_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}
