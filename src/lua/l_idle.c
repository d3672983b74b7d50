// l_idle.c: native handler factories for time in the pipeline (idle.h):
// lupine.core._handler.idleState(reader, writer, all), readTimeout(s),
// writeTimeout(s). lua/lupine/handler.lua checks the arguments users give and
// is the public face (lupine.handler.idleState{...}).
//
// A factory is an l_native userdata holding the seconds; each pipeline it is
// added to gets a fresh context with its own timers (make()).
#include "lbind.h"

#include "idle.h"

#include <math.h>

enum { KIND_IDLE, KIND_READ_TIMEOUT, KIND_WRITE_TIMEOUT };

typedef struct {
  l_native base;
  int kind;
  double reader, writer, all;
} l_timer_factory;

static lp_ctx *make_timer(l_native *self, lp_pipeline *p, const char *name, lua_State *L) {
  LP_UNUSED(L);
  const l_timer_factory *f = (const l_timer_factory *)self;
  switch (f->kind) {
  case KIND_IDLE: return lp_idle_state_new(p, name, f->reader, f->writer, f->all);
  case KIND_READ_TIMEOUT: return lp_read_timeout_new(p, name, f->reader);
  default: return lp_write_timeout_new(p, name, f->writer);
  }
}

static double check_seconds(lua_State *L, int i, bool zero_ok) {
  double s = l_checknumber(L, i);
  if (!isfinite(s) || s < 0 || (!zero_ok && s == 0))
    l_argerror(L, i, zero_ok ? "seconds must be >= 0" : "seconds must be > 0");
  return s;
}

static l_timer_factory *new_factory(lua_State *L, int kind, const char *type_name) {
  l_timer_factory *f = (l_timer_factory *)l_native_new(L, sizeof *f, type_name);
  f->base.make = make_timer;
  f->kind = kind;
  return f;
}

static int new_idle_state(lua_State *L) {
  double r = check_seconds(L, 1, true), w = check_seconds(L, 2, true), a = check_seconds(L, 3, true);
  l_timer_factory *f = new_factory(L, KIND_IDLE, "idleState");
  f->reader = r;
  f->writer = w;
  f->all = a;
  return 1;
}

static int new_read_timeout(lua_State *L) {
  double s = check_seconds(L, 1, false);
  new_factory(L, KIND_READ_TIMEOUT, "readTimeout")->reader = s;
  return 1;
}

static int new_write_timeout(lua_State *L) {
  double s = check_seconds(L, 1, false);
  new_factory(L, KIND_WRITE_TIMEOUT, "writeTimeout")->writer = s;
  return 1;
}

static const luaL_Reg factories[] = {
    {"idleState", new_idle_state},
    {"readTimeout", new_read_timeout},
    {"writeTimeout", new_write_timeout},
    {NULL, NULL},
};

void l_idle_open(lua_State *L) {
  luaL_newlib(L, factories);
  lua_setfield(L, -2, "_handler");
}
