// main.c: the lupine launcher. `lupine [options] app.lua|module` loads the app
// (a Lua file or module returning a table with init(ch)) and serves it through
// lupine.serve: with N worker threads (each with its own Lua state loading the
// same app), or with -w 0 in this thread's loop and state (the inline mode).
// The launcher carries the core module and the lupine Lua package inside it
// (package.preload, in every state it makes), so it needs no install paths.
//
// Errors in options, in loading the app or in starting up are one line on
// stderr and a non-zero exit: 2 for the command line, 1 for the rest.
#include "lbind.h"
#include "log.h"

#include <lualib.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int luaopen_lupine_core(lua_State *L);

extern const struct {
  const char *name;
  const char *src;
  size_t len;
} lupine_embedded[];

typedef struct {
  const char *bind;
  int port;            // -1: the app's
  int workers;         // -1: the app's, else one per core
  double shutdown;     // <0: the app's, else 10 s
  long long max_conns; // -1: the app's
  long long mem_limit; // -1: the app's
  const char *tls_cert, *tls_key; // NULL: the app's tls field, if any
  const char *admin;   // NULL: the app's admin field, if any
  const char *log_format; // NULL: the app's logFormat, if any
  const char *app;
  bool reuse_port;     // --reuseport: each worker listens on its own socket
  double reload_drain; // <0: the app's, else 0 (wait for the last connection)
} options;

static void usage(FILE *out) {
  fprintf(out,
          "usage: lupine [options] app.lua|module\n"
          "\n"
          "Serve a lupine app: a Lua file or module returning a table with init(ch).\n"
          "Options given here override the app's own fields.\n"
          "\n"
          "  -b, --bind ADDR           address to listen on (default: the app's host, else 127.0.0.1;\n"
          "                            every interface only with an explicit 0.0.0.0 or ::);\n"
          "                            unix:/path or unix:@name for a Unix domain socket\n"
          "  -p, --port PORT           port (default: the app's port, else 0 = any free port)\n"
          "  -w, --workers N           worker threads, each with its own Lua state (default: the app's,\n"
          "                            else one per core); 0: one loop in this thread\n"
          "      --reuseport           each worker listens on its own socket (SO_REUSEPORT) and accepts\n"
          "                            its own connections, instead of the main thread handing them out\n"
          "      --shutdown-timeout S  on SIGINT/SIGTERM, seconds to finish sending before closing (default 10)\n"
          "      --reload-drain-timeout S  after a reload (SIGHUP), seconds the old code may keep its\n"
          "                            connections before they are closed gracefully (default 0: no limit)\n"
          "      --max-connections N   above N open connections, close new ones at once (default: no limit)\n"
          "      --memory-limit SIZE   per Lua state, bytes or with K, M, G (default: none); a state over\n"
          "                            it fails the channel it was serving, not the process\n"
          "      --tls-cert FILE       serve TLS with this PEM certificate chain (needs --tls-key);\n"
          "                            overrides the app's tls.cert\n"
          "      --tls-key FILE        the certificate's PEM private key\n"
          "      --log-level LVL       debug, info, warn, error or off (default info); the log goes to stderr\n"
          "      --log-format FMT      text or json (one JSON object a line; default text)\n"
          "      --admin [HOST:]PORT   serve /stats, /metrics, /channels and POST /reload over HTTP there\n"
          "                            (default: off; a port alone listens on 127.0.0.1)\n"
          "  -h, --help                this text\n"
          "      --version             print the version\n");
}

static int die(const char *fmt, const char *arg) {
  fprintf(stderr, "lupine: ");
  fprintf(stderr, fmt, arg);
  fputc('\n', stderr);
  return 2;
}

static int parse_int(const char *s, long long min, long long max, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < min || v > max) return -1;
  *out = v;
  return 0;
}

static int parse_seconds(const char *s, double *out) {
  char *end;
  errno = 0;
  double d = strtod(s, &end);
  if (errno || end == s || *end || !(d >= 0 && d <= 86400)) return -1;
  *out = d;
  return 0;
}

static int parse_size(const char *s, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || v < 0) return -1;
  long long unit = 1;
  if (*end) {
    switch (*end) {
    case 'k': case 'K': unit = 1LL << 10; break;
    case 'm': case 'M': unit = 1LL << 20; break;
    case 'g': case 'G': unit = 1LL << 30; break;
    default: return -1;
    }
    if (end[1] && !((end[1] == 'b' || end[1] == 'B') && !end[2])) return -1;
  }
  if (v > (1LL << 46) / unit) return -1;
  *out = v * unit;
  return 0;
}

// --admin: PORT, HOST:PORT or [V6]:PORT (the host itself is checked when it is used).
static bool valid_admin(const char *s) {
  const char *colon = strrchr(s, ':');
  const char *port = colon ? colon + 1 : s;
  long long v;
  if (colon == s || parse_int(port, 0, 65535, &v)) return false;
  return !colon || s[0] != '[' || colon[-1] == ']';
}

// package.preload: the core module and the embedded lupine.* sources. The
// launcher's states and every worker state run this (l_preload).
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

static void set_number(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void set_integer(lua_State *L, const char *k, long long v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

static void set_string(lua_State *L, const char *k, const char *v) { // NULL: not given
  if (!v) return;
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

// Runs in protected mode: load the app and hand it to lupine.serve.
static int run(lua_State *L) {
  const options *o = lua_touserdata(L, 1);
  luaL_openlibs(L);
  lua_pushcfunction(L, preload_embedded);
  lua_call(L, 0, 0);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "lupine");
  lua_call(L, 1, 1);
  int lupine = lua_gettop(L);
  lua_pushboolean(L, 1);
  lua_setfield(L, lupine, "launched");
  l_load_app(L, o->app);
  int app = lua_gettop(L);
  lua_getfield(L, lupine, "serve");
  lua_pushvalue(L, app);
  lua_createtable(L, 0, 8);
  lua_pushstring(L, o->app);
  lua_setfield(L, -2, "source");
  if (o->bind) {
    lua_pushstring(L, o->bind);
    lua_setfield(L, -2, "host");
  }
  if (o->port >= 0) set_integer(L, "port", o->port);
  if (o->workers >= 0) set_integer(L, "workers", o->workers);
  if (o->shutdown >= 0) set_number(L, "shutdownTimeout", o->shutdown);
  if (o->reload_drain >= 0) set_number(L, "reloadDrainTimeout", o->reload_drain);
  if (o->max_conns >= 0) set_integer(L, "maxConnections", o->max_conns);
  if (o->mem_limit >= 0) set_integer(L, "memoryLimit", o->mem_limit);
  if (o->reuse_port) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "reusePort");
  }
  set_string(L, "tlsCert", o->tls_cert);
  set_string(L, "tlsKey", o->tls_key);
  set_string(L, "admin", o->admin);
  set_string(L, "logFormat", o->log_format);
  lua_call(L, 2, 0);
  return 0;
}

int main(int argc, char **argv) {
  options o = {NULL, -1, -1, -1, -1, -1, NULL, NULL, NULL, NULL, NULL, false, -1};
  enum { OPT_LOG = 256, OPT_VERSION, OPT_SHUTDOWN, OPT_MAXCONN, OPT_MEMORY, OPT_TLS_CERT, OPT_TLS_KEY, OPT_REUSEPORT,
         OPT_RELOAD_DRAIN, OPT_ADMIN, OPT_LOG_FORMAT };
  static const struct option longs[] = {
      {"bind", required_argument, NULL, 'b'},
      {"port", required_argument, NULL, 'p'},
      {"workers", required_argument, NULL, 'w'},
      {"log-level", required_argument, NULL, OPT_LOG},
      {"shutdown-timeout", required_argument, NULL, OPT_SHUTDOWN},
      {"reload-drain-timeout", required_argument, NULL, OPT_RELOAD_DRAIN},
      {"max-connections", required_argument, NULL, OPT_MAXCONN},
      {"memory-limit", required_argument, NULL, OPT_MEMORY},
      {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
      {"tls-key", required_argument, NULL, OPT_TLS_KEY},
      {"reuseport", no_argument, NULL, OPT_REUSEPORT},
      {"admin", required_argument, NULL, OPT_ADMIN},
      {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, OPT_VERSION},
      {NULL, 0, NULL, 0},
  };
  opterr = 0;
  int c;
  long long v;
  while ((c = getopt_long(argc, argv, "+:b:p:w:h", longs, NULL)) != -1) {
    switch (c) {
    case 'b': o.bind = optarg; break;
    case 'p':
      if (parse_int(optarg, 0, 65535, &v)) return die("invalid port '%s' (0..65535)", optarg);
      o.port = (int)v;
      break;
    case 'w':
      if (parse_int(optarg, 0, 1024, &v)) return die("invalid worker count '%s' (0..1024)", optarg);
      o.workers = (int)v;
      break;
    case OPT_LOG: {
      int lvl = lp_log_parse_level(optarg);
      if (lvl < 0) return die("invalid log level '%s' (debug, info, warn, error, off)", optarg);
      lp_log_set_level(lvl);
      break;
    }
    case OPT_SHUTDOWN:
      if (parse_seconds(optarg, &o.shutdown)) return die("invalid shutdown timeout '%s' (seconds, 0..86400)", optarg);
      break;
    case OPT_RELOAD_DRAIN:
      if (parse_seconds(optarg, &o.reload_drain))
        return die("invalid reload drain timeout '%s' (seconds, 0..86400; 0: no limit)", optarg);
      break;
    case OPT_MAXCONN:
      if (parse_int(optarg, 0, 1LL << 40, &v)) return die("invalid connection limit '%s' (0: none)", optarg);
      o.max_conns = v;
      break;
    case OPT_MEMORY:
      if (parse_size(optarg, &o.mem_limit) || (o.mem_limit && o.mem_limit < (1 << 20)))
        return die("invalid memory limit '%s' (0: none, else at least 1M; e.g. 512M)", optarg);
      break;
    case OPT_TLS_CERT: o.tls_cert = optarg; break;
    case OPT_TLS_KEY: o.tls_key = optarg; break;
    case OPT_REUSEPORT: o.reuse_port = true; break;
    case OPT_ADMIN:
      if (!valid_admin(optarg)) return die("invalid admin address '%s' ([HOST:]PORT, e.g. 127.0.0.1:9100)", optarg);
      o.admin = optarg;
      break;
    case OPT_LOG_FORMAT: {
      int f = lp_log_parse_format(optarg);
      if (f < 0) return die("invalid log format '%s' (text, json)", optarg);
      lp_log_set_format(f); // from here on: start-up errors too
      o.log_format = optarg;
      break;
    }
    case 'h': usage(stdout); return 0;
    case OPT_VERSION: printf("lupine %s (%s)\n", LP_VERSION, LUA_RELEASE); return 0;
    case ':':
      if (optopt) return die("option -%s needs a value", (char[]){(char)optopt, 0});
      return die("option '%s' needs a value", argv[optind - 1]);
    default:
      return die("unknown option '%s' (see lupine --help)", argv[optind - 1]);
    }
  }
  if (!o.tls_cert != !o.tls_key) return die("%s", "--tls-cert and --tls-key go together");
  if (optind == argc) return die("%s", "no app given (usage: lupine [options] app.lua|module; see lupine --help)");
  if (optind != argc - 1) return die("one app only; unexpected '%s'", argv[optind + 1]);
  o.app = argv[optind];
  signal(SIGPIPE, SIG_IGN);
  l_preload = preload_embedded;
  lua_State *L = l_newstate(o.mem_limit > 0 ? (size_t)o.mem_limit : 0);
  if (!L) return die("%s", "cannot create a Lua state (out of memory)");
  lua_pushcfunction(L, run);
  lua_pushlightuserdata(L, &o);
  int rc = lua_pcall(L, 1, 0, 0);
  if (rc != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (!msg) msg = "an error that is not a string";
    size_t n = strcspn(msg, "\n");
    fprintf(stderr, "%s%.*s\n", strncmp(msg, "lupine: ", 8) == 0 ? "" : "lupine: ", (int)n, msg);
  }
  l_closestate(L);
  return rc == LUA_OK ? 0 : 1;
}
