// l_group.c: serving an app on a group of loops (lupine.serve and the
// launcher): one Lua state per worker thread, loading apps, Lua states with a
// memory limit, and the launcher's preload hook.
//
// Threads: core.serve runs on the caller's thread, whose loop is the boss.
// With workers = 0 that loop and the caller's state serve too (the inline
// mode). With workers = N each worker thread makes its own state: the same
// libraries, package paths (copied as C strings) and preloads, the lupine
// module attached to the worker's loop, the app loaded from its source; no
// Lua value ever crosses threads.
//
// Ownership: the serve context (group, copied strings) is malloc'd and freed
// when core.serve returns. A worker's l_worker and state belong to the worker
// and are freed by its free() on its own thread (the inline worker's refs live
// in the caller's state and are dropped there).
#include "lbind.h"

#include "group.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

lua_CFunction l_preload = NULL;

int luaopen_lupine_core(lua_State *L);

// ---- states with a memory limit ----------------------------------------------------

typedef struct l_mem {
  size_t used, limit; // limit 0: none
} l_mem;

// Over the limit an allocation fails; Lua then collects garbage, retries, and
// raises "not enough memory" into whatever pcall is running (a handler's).
static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  l_mem *m = ud;
  size_t old = ptr ? osize : 0; // with ptr NULL, osize is a type tag
  if (nsize == 0) {
    free(ptr);
    m->used -= old;
    return NULL;
  }
  if (m->limit && nsize > old && m->used + (nsize - old) > m->limit) return NULL;
  void *p = realloc(ptr, nsize);
  if (p) m->used = m->used - old + nsize;
  return p;
}

static int panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  lp_log(LP_LOG_ERROR, 0, "unprotected error in a Lua state: %s", msg ? msg : "(not a string)");
  return 0; // Lua aborts next
}

// A new state of the launcher's or the pool's (on its own thread): the standard
// libraries, the package paths copied from the state that made it (NULL:
// Lua's defaults), lupine.core preloaded as this very module (not another
// copy), and the launcher's embedded sources. Raises (run it protected).
void l_state_boot(lua_State *L, const char *path, const char *cpath) {
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  if (path) {
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
  }
  if (cpath) {
    lua_pushstring(L, cpath);
    lua_setfield(L, -2, "cpath");
  }
  lua_pop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_lupine_core); // this very module, not another copy
  lua_setfield(L, -2, "lupine.core");
  lua_pop(L, 1);
  if (l_preload) {
    lua_pushcfunction(L, l_preload);
    lua_call(L, 0, 0);
  }
}

lua_State *l_newstate(size_t limit) {
  l_mem *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->limit = limit;
  lua_State *L = lua_newstate(limited_alloc, m);
  if (!L) {
    free(m);
    return NULL;
  }
  lua_atpanic(L, panic);
  return L;
}

void l_closestate(lua_State *L) {
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  lua_close(L);
  if (f == limited_alloc) free(ud);
}

static bool set_limit(lua_State *L, size_t limit) {
  void *ud;
  if (lua_getallocf(L, &ud) != limited_alloc) return false;
  ((l_mem *)ud)->limit = limit;
  return true;
}

// ---- loading apps ----------------------------------------------------------------------

static bool is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool looks_like_path(const char *s) {
  size_t n = strlen(s);
  return strchr(s, '/') || (n > 4 && strcmp(s + n - 4, ".lua") == 0);
}

// The error on top as one line: newlines and the tabs after them become "; ".
static int one_line_error(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  if (!msg || !strchr(msg, '\n')) return lua_error(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (const char *p = msg; *p; p++) {
    if (*p == '\n') {
      luaL_addstring(&b, "; ");
      while (p[1] == '\t' || p[1] == ' ') p++;
    } else {
      luaL_addchar(&b, *p);
    }
  }
  luaL_pushresult(&b);
  return lua_error(L);
}

// The app raised a value that is not a string while loading (error({})):
// name the app, with the value's own tostring when it has one.
static int load_error(lua_State *L, const char *source) {
  int t = lua_type(L, -1);
  if (t == LUA_TSTRING || t == LUA_TNUMBER) return one_line_error(L); // "file:line: message" already
  if (luaL_getmetafield(L, -1, "__tostring") != LUA_TNIL) {
    lua_pop(L, 1);
    char text[LP_ERROR_MESSAGE_MAX];
    lua_pushfstring(L, "%s: %s", source, l_tostring(L, -1, text, sizeof text));
  } else {
    lua_pushfstring(L, "%s: (error object is a %s value)", source, luaL_typename(L, -1));
  }
  return one_line_error(L);
}

int l_load_app(lua_State *L, const char *source) {
  if (is_file(source)) {
    if (luaL_loadfile(L, source) != LUA_OK) return one_line_error(L); // "file:line: message"
    if (lua_pcall(L, 0, 1, 0) != LUA_OK) return load_error(L, source);
  } else if (looks_like_path(source)) {
    return luaL_error(L, "cannot open app '%s': %s", source, strerror(errno ? errno : ENOENT));
  } else {
    lua_getglobal(L, "require");
    lua_pushstring(L, source);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
      const char *msg = lua_tostring(L, -1);
      if (msg && strncmp(msg, "module '", 8) == 0 && strstr(msg, "' not found:"))
        return luaL_error(L, "cannot find app '%s': no such file, and no module of that name", source);
      return load_error(L, source);
    }
  }
  if (!lua_istable(L, -1))
    return luaL_error(L, "%s did not return an app table (end it with: return lupine.app { init = ... })", source);
  if (lua_getfield(L, -1, "init") != LUA_TFUNCTION) return luaL_error(L, "%s: the app has no init(ch) function", source);
  lua_pop(L, 1);
  return 1;
}

// ---- the per-worker host -----------------------------------------------------------------

typedef struct serve_ctx {
  lp_group group;
  char *source;        // how worker states load the app (file or module)
  char *path, *cpath;  // the caller's package.path / package.cpath
  size_t memory_limit;
  int nworkers;
  lua_State *L;        // the caller (inline worker)
  l_host *h;
  int app_idx;         // the app table on the caller's stack
  char *tls_cert, *tls_key; // the launcher's --tls-cert/--tls-key (NULL: none)
} serve_ctx;

typedef struct l_worker {
  lua_State *L;        // the state handlers run on
  l_host *h;
  bool own_state;      // a worker thread's state (closed in free)
  int init_ref, app_ref, worker_ref;
  lp_channel_config cfg;
  const char *tls_cert, *tls_key; // serve_ctx's, for the app's TLS handler
} l_worker;

// [1] l_worker, [2] the app table, [3] worker id, [4] worker count: read the
// app's options, keep init, make the `worker` table and run workerInit.
static int worker_setup(lua_State *L) {
  l_worker *lw = lua_touserdata(L, 1);
  l_checktype(L, 2, LUA_TTABLE);
  lp_channel_config_default(&lw->cfg);
  if (lua_getfield(L, 2, "options") != LUA_TNIL) l_channel_config_read(L, lua_gettop(L), &lw->cfg);
  lua_pop(L, 1);
  if (lua_getfield(L, 2, "init") != LUA_TFUNCTION) return luaL_error(L, "the app has no init(ch) function");
  lua_pop(L, 1);
  int ty = lua_getfield(L, 2, "workerInit");
  if (ty != LUA_TNIL && ty != LUA_TFUNCTION) return luaL_error(L, "the app's workerInit must be a function(worker)");
  ty = lua_getfield(L, 2, "workerExit");
  if (ty != LUA_TNIL && ty != LUA_TFUNCTION) return luaL_error(L, "the app's workerExit must be a function(worker)");
  lua_pop(L, 2);
  lua_createtable(L, 0, 3); // worker = { id, workers, loop }
  lua_pushvalue(L, 3);
  lua_setfield(L, -2, "id");
  lua_pushvalue(L, 4);
  lua_setfield(L, -2, "workers");
  l_loop_push(L, lw->h);
  lua_setfield(L, -2, "loop");
  int worker = lua_gettop(L);
  if (lua_getfield(L, 2, "workerInit") == LUA_TFUNCTION) {
    lua_pushvalue(L, worker);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      luaL_tolstring(L, -1, NULL);
      return luaL_error(L, "workerInit raised: %s", lua_tostring(L, -1));
    }
  } else {
    lua_pop(L, 1);
  }
  // The app's `tls` field (or the launcher's certificate): init wrapped to put
  // a TLS handler first, its context built once here for this worker.
  if (lua_getfield(L, 2, "tls") != LUA_TNIL || lw->tls_cert) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "lupine.tls");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "_appInit");
    lua_pushvalue(L, 2);
    if (lw->tls_cert) lua_pushstring(L, lw->tls_cert);
    else lua_pushnil(L);
    if (lw->tls_key) lua_pushstring(L, lw->tls_key);
    else lua_pushnil(L);
    lua_call(L, 3, 1); // raises a one-line error naming the file
  } else {
    lua_getfield(L, 2, "init");
  }
  // The references come last: nothing raises after them.
  lw->init_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 2);
  lw->app_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, worker);
  lw->worker_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

// Protected, in a worker thread's new state: [1] lp_worker.
static int worker_boot(lua_State *L) {
  lp_worker *w = lua_touserdata(L, 1);
  serve_ctx *s = w->group->ud;
  l_worker *lw = w->host;
  l_state_boot(L, s->path, s->cpath);
  lw->h = l_host_attach(L, w->loop);
  lw->h->running = 1; // the group drives this loop: runUntil from here would nest
  lua_getglobal(L, "require");
  lua_pushliteral(L, "lupine");
  lua_call(L, 1, 1);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "launched"); // lupine.app() returns the app instead of serving it
  lua_pop(L, 1);
  l_load_app(L, s->source);
  int app = lua_gettop(L);
  lua_pushcfunction(L, worker_setup);
  lua_pushlightuserdata(L, lw);
  lua_pushvalue(L, app);
  lua_pushinteger(L, w->id);
  lua_pushinteger(L, s->nworkers);
  lua_call(L, 4, 0);
  return 0;
}

static void copy_error(lua_State *L, char *err, size_t errlen) {
  const char *msg = lua_tostring(L, -1);
  snprintf(err, errlen, "%s", msg ? msg : "an error that is not a string");
  char *nl = strchr(err, '\n');
  if (nl) *nl = 0;
}

static int w_start(lp_worker *w, char *err, size_t errlen) {
  serve_ctx *s = w->group->ud;
  l_worker *lw = calloc(1, sizeof *lw);
  if (!lw) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  lw->init_ref = lw->app_ref = lw->worker_ref = LUA_NOREF;
  lw->tls_cert = s->tls_cert;
  lw->tls_key = s->tls_key;
  w->host = lw;
  if (!w->threaded) { // inline: the caller's state and loop
    lw->L = s->L;
    lw->h = s->h;
    lua_State *L = s->L;
    lua_pushcfunction(L, worker_setup);
    lua_pushlightuserdata(L, lw);
    lua_pushvalue(L, s->app_idx);
    lua_pushinteger(L, 0);
    lua_pushinteger(L, 0);
    if (lua_pcall(L, 4, 0, 0) == LUA_OK) return 0;
    copy_error(L, err, errlen);
    lua_pop(L, 1);
  } else {
    lua_State *L = l_newstate(s->memory_limit);
    if (L) {
      lw->L = L;
      lw->own_state = true;
      lua_pushcfunction(L, worker_boot);
      lua_pushlightuserdata(L, w);
      if (lua_pcall(L, 1, 0, 0) == LUA_OK) return 0;
      copy_error(L, err, errlen);
      l_closestate(L);
    } else {
      snprintf(err, errlen, "cannot create a Lua state (out of memory)");
    }
  }
  free(lw);
  w->host = NULL;
  return -1;
}

static lp_channel *w_accept(lp_worker *w, int fd, const lp_sockaddr *peer) {
  l_worker *lw = w->host;
  return l_accept(lw->h, fd, peer, &lw->cfg, lw->init_ref);
}

static void w_stop(lp_worker *w) {
  l_worker *lw = w->host;
  if (lw->h->closing) return;
  lua_State *L = lw->h->L;
  if (!lua_checkstack(L, 4)) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lw->app_ref);
  if (lua_getfield(L, -1, "workerExit") == LUA_TFUNCTION) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, lw->worker_ref);
    l_pcall_log(L, 1, "workerExit", 0);
  } else {
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static void w_free(lp_worker *w) {
  l_worker *lw = w->host;
  if (!lw) return;
  if (lw->own_state) {
    l_closestate(lw->L);
  } else if (!lw->h->closing) {
    luaL_unref(lw->L, LUA_REGISTRYINDEX, lw->init_ref);
    luaL_unref(lw->L, LUA_REGISTRYINDEX, lw->app_ref);
    luaL_unref(lw->L, LUA_REGISTRYINDEX, lw->worker_ref);
  }
  free(lw);
  w->host = NULL;
}

static const lp_worker_ops worker_ops = {w_start, w_accept, w_stop, w_free};

// ---- lupine.core.serve ---------------------------------------------------------------------

// A copy of string field k of table t (NULL: absent, not a string without
// NUL, or out of memory). Never raises past its own getfield.
static char *dup_field(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  const char *v = l_is_cstring(L, -1) ? lua_tostring(L, -1) : NULL;
  char *copy = v ? strdup(v) : NULL;
  lua_pop(L, 1);
  return copy;
}

static void ctx_free(serve_ctx *s) {
  free(s->source);
  free(s->path);
  free(s->cpath);
  free(s->tls_cert);
  free(s->tls_key);
  free(s);
}

static bool is_any_address(const lp_sockaddr *a) {
  static const struct in6_addr any6 = IN6ADDR_ANY_INIT;
  if (a->sa.sa_family == AF_INET) return a->in4.sin_addr.s_addr == htonl(INADDR_ANY);
  if (a->sa.sa_family == AF_INET6) return memcmp(&a->in6.sin6_addr, &any6, sizeof any6) == 0;
  return false;
}

// core.serve{ app, source, name, host, port, workers, backlog, shutdownTimeout,
// maxConnections, memoryLimit, reusePort, mode }: serve until shut down (SIGINT/SIGTERM, or the
// loop stopped from inside); raises a one-line error when start-up fails,
// with nothing left listening.
int l_serve(lua_State *L) {
  l_checktype(L, 1, LUA_TTABLE);
  l_host *h = l_host_get(L);
  if (h->running) return luaL_error(L, "lupine: serve called from inside the running loop");
  if (lua_getfield(L, 1, "app") != LUA_TTABLE) return luaL_error(L, "lupine: serve needs an app table");
  int app = lua_gettop(L);
  const char *name = l_opt_string(L, 1, "name", "app");
  const char *host = l_opt_string(L, 1, "host", "127.0.0.1");
  int port = (int)l_opt_int(L, 1, "port", 0, 0, 65535);
  int workers = (int)l_opt_int(L, 1, "workers", 0, 0, LP_GROUP_MAX_WORKERS);
  int backlog = (int)l_opt_int(L, 1, "backlog", 511, 1, 65535);
  double timeout = l_opt_number(L, 1, "shutdownTimeout", 10.0);
  if (!(timeout >= 0 && timeout <= 86400)) return luaL_error(L, "option 'shutdownTimeout' must be from 0 to 86400 seconds");
  lua_Integer maxconn = l_opt_int(L, 1, "maxConnections", 0, 0, (lua_Integer)1 << 40);
  lua_Integer memlimit = l_opt_int(L, 1, "memoryLimit", 0, 0, (lua_Integer)1 << 46);
  if (memlimit && memlimit < (1 << 20)) return luaL_error(L, "option 'memoryLimit' must be 0 (none) or at least 1 MiB");
  bool reuse_port = l_opt_bool(L, 1, "reusePort", false);
  lp_sockaddr addr;
  l_listen_addr(L, "lupine", host, port, &addr);
  if (reuse_port && addr.sa.sa_family == AF_UNIX)
    return luaL_error(L, "lupine: reusePort (--reuseport) does not apply to Unix domain sockets");
  lp_listen_opts lo = {backlog, false, l_opt_mode(L, 1, "lupine", &addr)};
  const char *source = l_opt_string(L, 1, "source", NULL); // a path or module name: no NUL
  if (l_opt_string(L, 1, "tlsCert", NULL) && !l_opt_string(L, 1, "tlsKey", NULL))
    return luaL_error(L, "lupine: --tls-cert needs --tls-key");
  if (workers > 0 && !source)
    return luaL_error(L, "lupine: workers > 0 needs the app's source (a file or module name) to load it in each worker");
  lp_channel_config check; // the app's options, checked here once for every worker
  lp_channel_config_default(&check);
  if (lua_getfield(L, app, "options") != LUA_TNIL) l_channel_config_read(L, lua_gettop(L), &check);
  lua_pop(L, 1);
  if (memlimit && workers == 0 && !set_limit(L, (size_t)memlimit))
    lp_log(LP_LOG_WARN, 0, "memoryLimit applies to Lua states the lupine launcher makes: not to this one");

  // The workers get the caller's package paths as C strings.
  lua_getglobal(L, "package");
  if (lua_istable(L, -1)) {
    static const char *const paths[] = {"path", "cpath"};
    for (int i = 0; i < 2; i++) {
      if (lua_getfield(L, -1, paths[i]) == LUA_TSTRING && !l_is_cstring(L, -1))
        return luaL_error(L, "lupine: package.%s " L_NUL_MESSAGE, paths[i]);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);

  // From here on nothing raises until the group is gone.
  serve_ctx *s = calloc(1, sizeof *s);
  if (!s) return luaL_error(L, "lupine: out of memory");
  s->source = dup_field(L, 1, "source");
  s->tls_cert = dup_field(L, 1, "tlsCert");
  s->tls_key = dup_field(L, 1, "tlsKey");
  lua_getglobal(L, "package");
  if (lua_istable(L, -1)) { // checked for NUL bytes above
    s->path = dup_field(L, lua_gettop(L), "path");
    s->cpath = dup_field(L, lua_gettop(L), "cpath");
  }
  lua_pop(L, 1);
  s->memory_limit = (size_t)memlimit;
  s->nworkers = workers;
  s->L = L;
  s->h = h;
  s->app_idx = app;
  char err[LP_GROUP_ERR_MAX] = "";
  lp_group_config cfg = {workers, timeout, (uint64_t)maxconn, true, reuse_port};
  if (lp_group_init(&s->group, h->loop, &cfg, &worker_ops, s) != 0) {
    lp_group_destroy(&s->group);
    ctx_free(s);
    lua_pushliteral(L, "lupine: out of memory");
    return lua_error(L);
  }
  h->running++;
  int rc = 0;
  lp_sockaddr bound;
  if (lp_group_start(&s->group, err, sizeof err) != 0) {
    rc = -1;
  } else if ((rc = lp_group_listen(&s->group, &addr, &lo, &bound)) != 0) {
    char a[LP_ADDR_STRLEN];
    lp_error e;
    lp_error_sys(&e, -rc, NULL);
    snprintf(err, sizeof err, "listen on %s%s: %s", lp_addr_format(&addr, a, sizeof a), l_listen_why(rc, &addr),
             e.message);
  } else {
    char a[LP_ADDR_STRLEN], how[80];
    if (workers == 0) snprintf(how, sizeof how, "inline: 1 loop");
    else if (reuse_port) snprintf(how, sizeof how, "%d workers, one Lua state and one listener each", workers);
    // Each worker loads the app into its own Lua state: say so, since globals,
    // upvalues and module tables are per worker (until shared state exists).
    else if (workers == 1) snprintf(how, sizeof how, "1 worker, one Lua state");
    else snprintf(how, sizeof how, "%d workers, one Lua state each", workers);
    printf("lupine: %s listening on %s (%s%s)\n", name, lp_addr_format(&bound, a, sizeof a),
           is_any_address(&bound) ? "all interfaces, " : "", how);
    fflush(stdout);
    rc = lp_group_run(&s->group);
    if (!rc) lp_log(LP_LOG_INFO, 0, "stopped");
  }
  if (rc == -ETIMEDOUT) {
    // A worker is stuck (a handler that never returns): its thread still uses
    // the group and the boss loop, so nothing can be freed and no caller can
    // go on safely. The one way out is out of the process.
    lp_log(LP_LOG_ERROR, 0, "exiting without freeing: worker threads did not stop");
    fflush(stdout);
    _exit(1);
  }
  h->running--;
  lp_group_destroy(&s->group);
  ctx_free(s);
  if (!rc) return 0;
  lua_pushfstring(L, "lupine: %s", err);
  return lua_error(L);
}

int l_cpu_count(lua_State *L) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  lua_pushinteger(L, n > 0 ? n : 1);
  return 1;
}
