// l_pipeline.c: lupine.Pipeline, a channel's list of handlers: adding,
// removing and replacing them by name (making their contexts), lookups, and
// events fired or operations started at the pipeline's ends.
#include "lbind.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  L_BOX_HEAD;
  lp_channel *ch;
} l_pipeline;

void l_pipeline_push(lua_State *L, lp_channel *ch) {
  l_pipeline *box = l_newudata(L, sizeof *box, 0, &l_key_pipeline);
  box->ch = lp_channel_ref(ch);
}

static lp_pipeline *check_pipeline(lua_State *L, int i) {
  return &((l_pipeline *)l_checkudata(L, i, &l_key_pipeline, "lupine.Pipeline"))->ch->pipeline;
}

static int pipeline_gc(lua_State *L) {
  l_pipeline *box = l_checkudata(L, 1, &l_key_pipeline, "lupine.Pipeline");
  if (box->ch) lp_channel_unref(box->ch);
  box->ch = NULL;
  return 0;
}

// Make a context for the handler at index hi (table or native factory).
static lp_ctx *make_ctx(lua_State *L, lp_pipeline *p, const char *name, int hi) {
  hi = lua_absindex(L, hi);
  if (p->destroyed) luaL_error(L, "pipeline of channel #%I is gone (the channel was closed)", (lua_Integer)p->channel->id);
  if (name && lp_pipeline_get(p, name)) luaL_error(L, "pipeline: duplicate handler name '%s'", name);
  lp_ctx *c;
  l_native *n = l_testudata(L, hi, &l_key_native);
  if (n) {
    char gen[96];
    if (!name) {
      lp_pipeline_gen_name(p, n->type_name, gen, sizeof gen);
      name = gen;
    }
    c = n->make(n, p, name, L);
  } else {
    l_argexpected(L, lua_istable(L, hi), hi, "handler table");
    char gen[96];
    if (!name) {
      const char *base = lua_getfield(L, hi, "name") == LUA_TSTRING ? lua_tostring(L, -1) : "handler";
      if (!l_is_cstring(L, -1) && lua_type(L, -1) == LUA_TSTRING) luaL_error(L, "pipeline: a handler's name " L_NUL_MESSAGE);
      lp_pipeline_gen_name(p, base, gen, sizeof gen);
      lua_pop(L, 1);
      name = gen;
    }
    uint32_t mask = l_handler_mask(L, hi); // may raise: before the context exists
    c = lp_ctx_new(p, l_handler_ops_for(L, hi), NULL, name);
    if (c) c->mask = mask;
  }
  if (!c) luaL_error(L, "pipeline: out of memory");
  // Protected: a raise here (out of memory) would leak the context.
  lua_pushvalue(L, hi);
  c->host_ref = l_ref(L);
  if (c->host_ref == LUA_NOREF) {
    c->host_ref = -1;
    lp_ctx_unref(c);
    luaL_error(L, "pipeline: out of memory");
  }
  return c;
}

// Make a Lua handler's context table now, where running out of memory raises
// to the caller, so that dispatching to it later needs no allocation.
static void prepare_ctx(lua_State *L, lp_ctx *c) {
  if ((c->ops == &l_lua_handler_ops || c->ops == &l_co_tail_ops) && !c->removed) {
    l_context_push(L, c);
    lua_pop(L, 1);
  }
}

static void link_ctx(lua_State *L, lp_pipeline *p, int where, const char *base, lp_ctx *c) {
  l_host *h = p->channel->host;
  l_entry e;
  l_enter(&e, L, h, NULL, 0); // may raise: before the reference below
  c->refs++; // held across the add: a handlerAdded that fails removes it again (and may free it)
  int rc = lp_pipeline_add(p, where, base, c);
  l_leave(&e);
  bool dropped = rc == 0 && c->removed;
  char name[128];
  snprintf(name, sizeof name, "%s", c->name);
  lp_ctx_unref(c);
  if (rc == 0 && !dropped) {
    prepare_ctx(L, c);
    return;
  }
  if (dropped) luaL_error(L, "pipeline: handler '%s' was not added: its handlerAdded raised: %s", name, l_added_error);
  lp_ctx_unref(c); // never linked: the reference it was made with
  if (rc == -EEXIST) luaL_error(L, "pipeline: duplicate handler name '%s'", name);
  if (rc == -ENOENT) luaL_error(L, "pipeline: no handler named '%s'", base);
  luaL_error(L, "pipeline of channel #%I is gone (the channel was closed)", (lua_Integer)p->channel->id);
}

// addFirst/addLast([name,] handler): name may be nil or absent.
static int pipeline_add_end(lua_State *L, int where) {
  lp_pipeline *p = check_pipeline(L, 1);
  const char *name = NULL;
  int hi = 2;
  if (lua_gettop(L) >= 3) {
    name = l_optcstring(L, 2, NULL);
    hi = 3;
  }
  lp_ctx *c = make_ctx(L, p, name, hi);
  link_ctx(L, p, where, NULL, c);
  lua_settop(L, 1);
  return 1;
}

static int pipeline_add_first(lua_State *L) { return pipeline_add_end(L, LP_ADD_FIRST); }
static int pipeline_add_last(lua_State *L) { return pipeline_add_end(L, LP_ADD_LAST); }

static int pipeline_add_rel(lua_State *L, int where) {
  lp_pipeline *p = check_pipeline(L, 1);
  const char *base = l_checkcstring(L, 2);
  const char *name = l_optcstring(L, 3, NULL);
  if (!lp_pipeline_get(p, base)) return luaL_error(L, "pipeline: no handler named '%s'", base);
  lp_ctx *c = make_ctx(L, p, name, 4);
  link_ctx(L, p, where, base, c);
  lua_settop(L, 1);
  return 1;
}

static int pipeline_add_before(lua_State *L) { return pipeline_add_rel(L, LP_ADD_BEFORE); }
static int pipeline_add_after(lua_State *L) { return pipeline_add_rel(L, LP_ADD_AFTER); }

// Find a context by name, handler (table or factory) or Context.
static lp_ctx *find_ctx(lua_State *L, lp_pipeline *p, int i) {
  if (lua_type(L, i) == LUA_TSTRING) return lp_pipeline_get(p, l_checkcstring(L, i));
  lp_ctx *found = l_context_test(L, i);
  if (found) return !found->removed && found->pipeline == p ? found : NULL;
  for (lp_ctx *c = lp_pipeline_first(p); c; c = lp_pipeline_next(p, c)) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->host_ref);
    bool same = lua_rawequal(L, -1, i);
    lua_pop(L, 1);
    if (same) return c;
  }
  return NULL;
}

static lp_ctx *check_find(lua_State *L, lp_pipeline *p, int i) {
  lp_ctx *c = find_ctx(L, p, i);
  if (!c) {
    if (lua_type(L, i) == LUA_TSTRING) luaL_error(L, "pipeline: no handler named '%s'", lua_tostring(L, i));
    luaL_error(L, "pipeline: no such handler (%s)", luaL_tolstring(L, i, NULL));
  }
  return c;
}

static int pipeline_remove(lua_State *L) {
  lp_pipeline *p = check_pipeline(L, 1);
  lp_ctx *c = check_find(L, p, 2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->host_ref); // the removed handler, returned
  l_entry e;
  l_enter(&e, L, p->channel->host, NULL, 0);
  lp_pipeline_remove(p, c);
  l_leave(&e);
  return 1;
}

static int pipeline_replace(lua_State *L) {
  lp_pipeline *p = check_pipeline(L, 1);
  lp_ctx *old = check_find(L, p, 2);
  const char *name = l_optcstring(L, 3, NULL);
  if (name && strcmp(name, old->name) != 0 && lp_pipeline_get(p, name))
    return luaL_error(L, "pipeline: duplicate handler name '%s'", name);
  lua_rawgeti(L, LUA_REGISTRYINDEX, old->host_ref); // returned
  // The new context may take the old one's name: build it unnamed, then rename.
  lp_ctx *c = make_ctx(L, p, NULL, 4);
  char *nm = strdup(name ? name : old->name);
  if (!nm) {
    lp_ctx_unref(c);
    return luaL_error(L, "pipeline: out of memory");
  }
  free(c->name);
  c->name = nm;
  l_entry e;
  l_enter(&e, L, p->channel->host, NULL, 0);
  int rc = lp_pipeline_replace(p, old, c);
  l_leave(&e);
  if (rc) {
    lp_ctx_unref(c);
    return luaL_error(L, "pipeline: cannot replace '%s'", old->name);
  }
  prepare_ctx(L, c);
  return 1;
}

static int pipeline_get(lua_State *L) {
  lp_pipeline *p = check_pipeline(L, 1);
  lp_ctx *c = lp_pipeline_get(p, l_checkcstring(L, 2));
  if (!c) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->host_ref);
  return 1;
}

static int pipeline_context(lua_State *L) {
  lp_pipeline *p = check_pipeline(L, 1);
  lp_ctx *c = find_ctx(L, p, 2);
  if (!c) return 0;
  l_context_push(L, c);
  return 1;
}

static int pipeline_names(lua_State *L) {
  lp_pipeline *p = check_pipeline(L, 1);
  lua_createtable(L, (int)p->count, 0);
  int i = 1;
  for (lp_ctx *c = lp_pipeline_first(p); c; c = lp_pipeline_next(p, c)) {
    lua_pushstring(L, c->name);
    lua_rawseti(L, -2, i++);
  }
  return 1;
}

static int pipeline_fire(lua_State *L) {
  lp_pipeline *p = check_pipeline(L, 1);
  int ev = (int)lua_tointeger(L, lua_upvalueindex(1));
  bool with_msg = ev == LP_EV_READ || ev == LP_EV_USER_EVENT || ev == LP_EV_EXCEPTION;
  if (with_msg) l_checkany(L, 2);
  l_entry e;
  lp_msg m = l_host_msg(l_enter(&e, L, p->channel->host, p, with_msg ? 2 : 0));
  lp_pipeline_fire(p, ev, with_msg ? &m : NULL);
  l_leave(&e);
  lua_settop(L, 1);
  return 1;
}

static int pipeline_write(lua_State *L) { return l_outbound_write(L, &check_pipeline(L, 1)->tail, false); }
static int pipeline_write_and_flush(lua_State *L) { return l_outbound_write(L, &check_pipeline(L, 1)->tail, true); }
static int pipeline_flush(lua_State *L) { return l_outbound_simple(L, &check_pipeline(L, 1)->tail, LP_OP_FLUSH); }
static int pipeline_read(lua_State *L) { return l_outbound_simple(L, &check_pipeline(L, 1)->tail, LP_OP_READ); }
static int pipeline_close(lua_State *L) { return l_outbound_simple(L, &check_pipeline(L, 1)->tail, LP_OP_CLOSE); }

static int pipeline_index(lua_State *L) {
  lp_pipeline *p = check_pipeline(L, 1);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "channel") == 0) {
    l_channel_push(L, p->channel);
    return 1;
  }
  return 0;
}

static int pipeline_len(lua_State *L) {
  lua_pushinteger(L, check_pipeline(L, 1)->count);
  return 1;
}

static int pipeline_tostring(lua_State *L) {
  lp_pipeline *p = check_pipeline(L, 1);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_pushfstring(L, "lupine.Pipeline(#%I: head", (lua_Integer)p->channel->id);
  luaL_addvalue(&b);
  for (lp_ctx *c = lp_pipeline_first(p); c; c = lp_pipeline_next(p, c)) {
    luaL_addstring(&b, ", ");
    luaL_addstring(&b, c->name);
  }
  luaL_addstring(&b, ", tail)");
  luaL_pushresult(&b);
  return 1;
}

// ---- registration -----------------------------------------------------------------------

static const luaL_Reg pipeline_methods[] = {
    {"addFirst", pipeline_add_first},   {"addLast", pipeline_add_last},   {"addBefore", pipeline_add_before},
    {"addAfter", pipeline_add_after},   {"remove", pipeline_remove},      {"replace", pipeline_replace},
    {"get", pipeline_get},              {"context", pipeline_context},    {"names", pipeline_names},
    {"write", pipeline_write},          {"writeAndFlush", pipeline_write_and_flush},
    {"flush", pipeline_flush},          {"read", pipeline_read},          {"close", pipeline_close},
    {NULL, NULL},
};

void l_pipeline_open(lua_State *L) {
  l_newmetatable(L, "lupine.Pipeline", &l_key_pipeline);
  lua_pushcfunction(L, pipeline_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, pipeline_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, pipeline_len);
  lua_setfield(L, -2, "__len");
  lua_newtable(L);
  luaL_setfuncs(L, pipeline_methods, 0);
  l_add_fire_methods(L, pipeline_fire);
  lua_pushcclosure(L, pipeline_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
