// main.c: the lupine launcher. `lupine [options] app.lua|module` loads the app
// (a Lua file or module returning a table with init(ch)) and serves it.
// The launcher carries the core module and the lupine Lua package inside it
// (package.preload), so it needs no install paths.
#include "log.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int luaopen_lupine_core(lua_State *L);

extern const struct {
  const char *name;
  const char *src;
  size_t len;
} lupine_embedded[];

typedef struct {
  const char *bind;
  int port;     // -1: the app's
  int workers;  // -1: the app's
  const char *app;
} options;

static void usage(FILE *out) {
  fprintf(out,
          "usage: lupine [options] app.lua|module\n"
          "\n"
          "Serve a lupine app: a Lua file or module returning a table with init(ch).\n"
          "\n"
          "  -b, --bind ADDR       address to listen on (default: the app's host, else 127.0.0.1;\n"
          "                        every interface only with an explicit 0.0.0.0 or ::)\n"
          "  -p, --port PORT       port (default: the app's port, else 0 = any free port)\n"
          "  -w, --workers N       worker loops (0: one loop in this thread)\n"
          "      --log-level LVL   debug, info, warn, error or off (default info)\n"
          "  -h, --help            this text\n"
          "      --version         print the version\n");
}

static int die(const char *fmt, const char *arg) {
  fprintf(stderr, "lupine: ");
  fprintf(stderr, fmt, arg);
  fputc('\n', stderr);
  return 2;
}

static int parse_int(const char *s, int min, int max, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < min || v > max) return -1;
  *out = (int)v;
  return 0;
}

static int preload_embedded(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_lupine_core);
  lua_setfield(L, -2, "lupine.core");
  for (int i = 0; lupine_embedded[i].name; i++) {
    char chunk[96];
    snprintf(chunk, sizeof chunk, "=[lupine %s]", lupine_embedded[i].name);
    if (luaL_loadbuffer(L, lupine_embedded[i].src, lupine_embedded[i].len, chunk) != LUA_OK) return lua_error(L);
    lua_setfield(L, -2, lupine_embedded[i].name);
  }
  lua_pop(L, 1);
  return 0;
}

static bool is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// Runs in protected mode: load the app and hand it to lupine.serve.
static int run(lua_State *L) {
  const options *o = lua_touserdata(L, 1);
  preload_embedded(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "lupine");
  lua_call(L, 1, 1);
  int lupine = lua_gettop(L);
  lua_pushboolean(L, 1);
  lua_setfield(L, lupine, "launched");
  if (is_file(o->app)) {
    if (luaL_loadfile(L, o->app) != LUA_OK) return lua_error(L);
    lua_call(L, 0, 1);
  } else {
    lua_getglobal(L, "require");
    lua_pushstring(L, o->app);
    lua_call(L, 1, 1);
  }
  if (!lua_istable(L, -1)) return luaL_error(L, "%s did not return an app table (return lupine.app { init = ... })", o->app);
  if (lua_getfield(L, -1, "init") != LUA_TFUNCTION) return luaL_error(L, "%s: the app has no init(ch) function", o->app);
  lua_pop(L, 1);
  int app = lua_gettop(L);
  lua_getfield(L, lupine, "serve");
  lua_pushvalue(L, app);
  lua_createtable(L, 0, 3);
  if (o->bind) {
    lua_pushstring(L, o->bind);
    lua_setfield(L, -2, "host");
  }
  if (o->port >= 0) {
    lua_pushinteger(L, o->port);
    lua_setfield(L, -2, "port");
  }
  if (o->workers >= 0) {
    lua_pushinteger(L, o->workers);
    lua_setfield(L, -2, "workers");
  }
  lua_call(L, 2, 0);
  return 0;
}

int main(int argc, char **argv) {
  options o = {NULL, -1, -1, NULL};
  static const struct option longs[] = {
      {"bind", required_argument, NULL, 'b'}, {"port", required_argument, NULL, 'p'},
      {"workers", required_argument, NULL, 'w'}, {"log-level", required_argument, NULL, 'L'},
      {"help", no_argument, NULL, 'h'},          {"version", no_argument, NULL, 'V'},
      {NULL, 0, NULL, 0},
  };
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "+b:p:w:h", longs, NULL)) != -1) {
    switch (c) {
    case 'b': o.bind = optarg; break;
    case 'p':
      if (parse_int(optarg, 0, 65535, &o.port)) return die("invalid port '%s' (0..65535)", optarg);
      break;
    case 'w':
      if (parse_int(optarg, 0, 1024, &o.workers)) return die("invalid worker count '%s' (0..1024)", optarg);
      break;
    case 'L': {
      int lvl = lp_log_parse_level(optarg);
      if (lvl < 0) return die("invalid log level '%s' (debug, info, warn, error, off)", optarg);
      lp_log_set_level(lvl);
      break;
    }
    case 'h': usage(stdout); return 0;
    case 'V': printf("lupine %s (%s)\n", LP_VERSION, LUA_RELEASE); return 0;
    default:
      if (optopt && strchr("bpw", optopt)) return die("option -%s needs a value", (char[]){(char)optopt, 0});
      return die("unknown option '%s' (see lupine --help)", argv[optind - 1]);
    }
  }
  if (optind != argc - 1) {
    usage(stderr);
    return 2;
  }
  o.app = argv[optind];
  signal(SIGPIPE, SIG_IGN);
  lua_State *L = luaL_newstate();
  if (!L) return die("%s", "cannot create a Lua state");
  luaL_openlibs(L);
  lua_pushcfunction(L, run);
  lua_pushlightuserdata(L, &o);
  int rc = lua_pcall(L, 1, 0, 0);
  if (rc != LUA_OK) fprintf(stderr, "lupine: %s\n", luaL_tolstring(L, -1, NULL));
  lua_close(L);
  return rc == LUA_OK ? 0 : 1;
}
