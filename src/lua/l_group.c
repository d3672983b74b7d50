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
#include "udp.h"

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
//
// Generations: a worker serves the app from one Lua state at a time, `cur`,
// the one new connections go to. A reload prepares the next generation
// (`pending`: a new state on the same loop, the app loaded afresh, workerInit
// run) beside it; commit makes it `cur` and retires the old one, which keeps
// the channels it owns (ch->host) until the last has closed, then runs its
// workerExit and closes (a deferred task, never inside a handler). Several old
// generations may drain at once. With reloadDrainTimeout, a generation still
// draining when it fires has its channels closed gracefully, and closed at
// once shutdownTimeout later. A new app's migrate(ch, oldAttr) moves each open
// accepted channel of the old generation to the new one at commit (a task: no
// handler is running on any channel).
//
// Ownership: l_worker and its generations are the worker thread's. A closed
// generation's host stays allocated (lw->zombies) until the worker ends,
// because futures, listeners and blocking jobs that outlive a state still read
// its `closing` flag: about 150 bytes per reload per worker.

typedef struct serve_ctx {
  lp_group group;
  char *source;        // how worker states load the app (file or module)
  char *path, *cpath;  // the caller's package.path / package.cpath
  size_t memory_limit;
  int nworkers;
  double shutdown_timeout, reload_drain_timeout; // seconds; drain 0: wait for the last channel
  lua_State *L;        // the caller (inline worker)
  l_host *h;
  int app_idx;         // the app table on the caller's stack
  char *tls_cert, *tls_key; // the launcher's --tls-cert/--tls-key (NULL: none)
} serve_ctx;

typedef struct l_worker l_worker;

#define LP_RELOAD_STRIP_MAX 1024 // handlers removed from one channel by migrate, at most

typedef struct l_gen {
  struct l_gen *next;  // in the worker's retired list
  l_worker *lw;
  lua_State *L;        // the state handlers run on; NULL once closed
  l_host *h;           // NULL when the state failed before it had one
  bool own_state;      // a worker thread's state (the inline worker uses the caller's)
  unsigned number;     // 1: the first load; +1 per reload
  int init_ref, app_ref, worker_ref, migrate_ref;
  lp_channel_config cfg;
  ev_timer drain;      // reloadDrainTimeout, while retired
  int drain_stage;     // 0: waiting; 1: channels closed gracefully
  bool exited;         // workerExit ran (it runs once)
} l_gen;

struct l_worker {
  lp_worker *w;
  l_gen *cur, *pending;
  l_gen *retired;      // draining, newest first
  l_host **zombies;    // hosts of closed states (see above)
  size_t nzombies, zcap;
  unsigned generations; // loaded so far
  lp_task reap_task;   // deferred when a retired generation's last channel goes
  bool reap_queued;
  const char *tls_cert, *tls_key; // serve_ctx's, for the app's TLS handler
};

// [1] l_gen, [2] the app table, [3] worker id, [4] worker count: read the
// app's options, keep init, make the `worker` table and run workerInit.
static size_t state_memory(const l_gen *gen) {
  if (!gen || !gen->L || !gen->h || gen->h->closing) return 0;
  return (size_t)lua_gc(gen->L, LUA_GCCOUNT) * 1024 + (size_t)lua_gc(gen->L, LUA_GCCOUNTB);
}

size_t l_worker_memory(l_host *h) {
  const l_gen *gen = h->launcher;
  const l_worker *lw = gen->lw;
  size_t sum = state_memory(lw->cur);
  for (const l_gen *g = lw->retired; g; g = g->next) sum += state_memory(g);
  return sum;
}

static int worker_setup(lua_State *L) {
  l_gen *gen = lua_touserdata(L, 1);
  l_checktype(L, 2, LUA_TTABLE);
  lp_channel_config_default(&gen->cfg);
  if (lua_getfield(L, 2, "options") != LUA_TNIL) l_channel_config_read(L, lua_gettop(L), &gen->cfg);
  lua_pop(L, 1);
  if (lua_getfield(L, 2, "init") != LUA_TFUNCTION) return luaL_error(L, "the app has no init(ch) function");
  lua_pop(L, 1);
  static const char *const hooks[] = {"workerInit", "workerExit"};
  for (int i = 0; i < 2; i++) {
    int ty = lua_getfield(L, 2, hooks[i]);
    if (ty != LUA_TNIL && ty != LUA_TFUNCTION) return luaL_error(L, "the app's %s must be a function(worker)", hooks[i]);
    lua_pop(L, 1);
  }
  int ty = lua_getfield(L, 2, "migrate");
  if (ty != LUA_TNIL && ty != LUA_TFUNCTION) return luaL_error(L, "the app's migrate must be a function(ch, oldAttr)");
  int migrate = lua_gettop(L);
  lua_createtable(L, 0, 3); // worker = { id, workers, loop }
  lua_pushvalue(L, 3);
  lua_setfield(L, -2, "id");
  lua_pushvalue(L, 4);
  lua_setfield(L, -2, "workers");
  l_loop_push(L, gen->h);
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
  if (lua_getfield(L, 2, "tls") != LUA_TNIL || gen->lw->tls_cert) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "lupine.tls");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "_appInit");
    lua_pushvalue(L, 2);
    if (gen->lw->tls_cert) lua_pushstring(L, gen->lw->tls_cert);
    else lua_pushnil(L);
    if (gen->lw->tls_key) lua_pushstring(L, gen->lw->tls_key);
    else lua_pushnil(L);
    lua_call(L, 3, 1); // raises a one-line error naming the file
  } else {
    lua_getfield(L, 2, "init");
  }
  // The references come last: nothing raises after them.
  gen->init_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 2);
  gen->app_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, worker);
  gen->worker_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, migrate);
  gen->migrate_ref = lua_isnil(L, -1) ? (lua_pop(L, 1), LUA_NOREF) : luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

// Protected, in a worker thread's new state: [1] l_gen.
static int worker_boot(lua_State *L) {
  l_gen *gen = lua_touserdata(L, 1);
  lp_worker *w = gen->lw->w;
  serve_ctx *s = w->group->ud;
  l_state_boot(L, s->path, s->cpath);
  gen->h = l_host_attach(L, w->loop);
  gen->h->running = 1; // the group drives this loop: runUntil from here would nest
  gen->h->launcher = gen;
  gen->h->group = w->group;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "lupine");
  lua_call(L, 1, 1);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "launched"); // lupine.app() returns the app instead of serving it
  lua_pop(L, 1);
  l_load_app(L, s->source);
  int app = lua_gettop(L);
  lua_pushcfunction(L, worker_setup);
  lua_pushlightuserdata(L, gen);
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

static l_gen *gen_new(l_worker *lw) {
  l_gen *gen = calloc(1, sizeof *gen);
  if (!gen) return NULL;
  gen->lw = lw;
  gen->init_ref = gen->app_ref = gen->worker_ref = gen->migrate_ref = LUA_NOREF;
  gen->number = ++lw->generations;
  return gen;
}

// The loop's "newest state" (loop->host) is the one new connections go to.
static void point_loop(l_worker *lw) {
  if (lw->cur && lw->cur->h) lw->w->loop->host = lw->cur->h;
}

// workerExit(worker) of a generation, once its channels are gone (or at shutdown).
static void gen_exit(l_gen *gen) {
  if (!gen || gen->exited || !gen->L || !gen->h || gen->h->closing || gen->app_ref == LUA_NOREF) return;
  gen->exited = true;
  lua_State *L = gen->L;
  if (!lua_checkstack(L, 4)) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, gen->app_ref);
  if (lua_getfield(L, -1, "workerExit") == LUA_TFUNCTION) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, gen->worker_ref);
    l_pcall_log(L, 1, "workerExit", 0);
  } else {
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

// Keep a closed state's host until the worker ends; out of memory, never free it.
static void keep_zombie(l_worker *lw, l_host *h) {
  if (lw->nzombies == lw->zcap) {
    size_t cap = lw->zcap ? 2 * lw->zcap : 8;
    l_host **z = realloc(lw->zombies, cap * sizeof *z);
    if (!z) return;
    lw->zombies = z;
    lw->zcap = cap;
  }
  lw->zombies[lw->nzombies++] = h;
}

// Close a generation's state (its channels close with it) and free its record.
// Closing a state runs the loop's queued tasks (l_host_detach).
static void gen_close(l_gen *gen) {
  if (!gen) return;
  l_worker *lw = gen->lw;
  if (ev_is_active(&gen->drain)) ev_timer_stop(lw->w->loop->ev, &gen->drain);
  if (gen->h) gen->h->on_empty = NULL;
  if (gen->L && gen->own_state) {
    l_closestate(gen->L);
  } else if (gen->L && !gen->h->closing) { // the inline worker: the caller's state lives on
    int refs[] = {gen->init_ref, gen->app_ref, gen->worker_ref, gen->migrate_ref};
    for (size_t i = 0; i < LP_ARRAY_LEN(refs); i++) luaL_unref(gen->L, LUA_REGISTRYINDEX, refs[i]);
    gen->h->launcher = NULL;
    gen->h->group = NULL;
  }
  if (gen->own_state && gen->h) {
    gen->h->launcher = NULL; // this record goes
    keep_zombie(lw, gen->h);
  }
  free(gen);
}

// A new generation on its own state, app loaded and workerInit run; NULL with
// a one-line reason ("app.lua:3: ...") in err.
static l_gen *gen_boot(l_worker *lw, char *err, size_t errlen) {
  serve_ctx *s = lw->w->group->ud;
  l_gen *gen = gen_new(lw);
  if (!gen) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  lua_State *L = l_newstate(s->memory_limit);
  if (!L) {
    snprintf(err, errlen, "cannot create a Lua state (out of memory)");
    free(gen);
    lw->generations--;
    return NULL;
  }
  gen->L = L;
  gen->own_state = true;
  lua_pushcfunction(L, worker_boot);
  lua_pushlightuserdata(L, gen);
  bool ok = lua_pcall(L, 1, 0, 0) == LUA_OK;
  if (!ok) copy_error(L, err, errlen);
  point_loop(lw); // attaching made the new state the loop's newest
  if (ok) return gen;
  lw->generations--;
  gen_close(gen); // its host (when it got one) may still be seen by what workerInit started
  return NULL;
}

static void free_zombies(l_worker *lw) {
  for (size_t i = 0; i < lw->nzombies; i++) l_host_free(lw->zombies[i]);
  free(lw->zombies);
}

static int w_start(lp_worker *w, char *err, size_t errlen) {
  serve_ctx *s = w->group->ud;
  l_worker *lw = calloc(1, sizeof *lw);
  if (!lw) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  lw->w = w;
  lw->tls_cert = s->tls_cert;
  lw->tls_key = s->tls_key;
  w->host = lw;
  if (w->threaded) {
    lw->cur = gen_boot(lw, err, errlen);
    if (lw->cur) return 0;
  } else if ((lw->cur = gen_new(lw)) != NULL) { // inline: the caller's state and loop
    l_gen *gen = lw->cur;
    gen->L = s->L;
    gen->h = s->h;
    lua_State *L = s->L;
    lua_pushcfunction(L, worker_setup);
    lua_pushlightuserdata(L, gen);
    lua_pushvalue(L, s->app_idx);
    lua_pushinteger(L, 0);
    lua_pushinteger(L, 0);
    if (lua_pcall(L, 4, 0, 0) == LUA_OK) {
      gen->h->launcher = gen;
      return 0;
    }
    copy_error(L, err, errlen);
    lua_pop(L, 1);
    free(gen);
  } else {
    snprintf(err, errlen, "out of memory");
  }
  if (w->threaded) { // no state is left on this loop
    w->loop->host = NULL;
    w->loop->host_ops = NULL;
  }
  free_zombies(lw);
  free(lw);
  w->host = NULL;
  return -1;
}

static lp_channel *w_accept(lp_worker *w, int fd, const lp_sockaddr *peer) {
  l_gen *gen = ((l_worker *)w->host)->cur;
  return l_accept(gen->h, fd, peer, &gen->cfg, gen->init_ref);
}

static void w_stop(lp_worker *w) {
  l_worker *lw = w->host;
  for (l_gen *gen = lw->retired; gen; gen = gen->next) gen_exit(gen);
  gen_exit(lw->cur);
}

static void w_free(lp_worker *w) {
  l_worker *lw = w->host;
  if (!lw) return;
  // Each close runs queued tasks (a late reload phase among them): unlink first.
  l_gen *gen = lw->pending;
  lw->pending = NULL;
  if (gen) gen_close(gen);
  while ((gen = lw->retired) != NULL) {
    lw->retired = gen->next;
    gen_close(gen);
  }
  gen = lw->cur;
  lw->cur = NULL;
  gen_close(gen);
  // The reap task lives in lw: let it run (it finds nothing) before lw goes.
  for (int i = 0; i < 64 && lw->reap_queued; i++) lp_loop_run_tasks(w->loop);
  if (w->threaded) { // no state is left on this loop: nothing may call into one
    w->loop->host = NULL;
    w->loop->host_ops = NULL;
  }
  free_zombies(lw);
  free(lw);
  w->host = NULL;
}

// ---- reload -------------------------------------------------------------------------------

// Close every retired generation whose last channel has gone (each close may
// run queued tasks, a reload's among them: look again after each).
static void reap(lp_task *t, lp_loop *loop) {
  LP_UNUSED(loop);
  l_worker *lw = lp_container_of(t, l_worker, reap_task);
  lw->reap_queued = false;
  for (;;) {
    l_gen **pp = &lw->retired;
    while (*pp && (*pp)->h->nchannels) pp = &(*pp)->next;
    l_gen *gen = *pp;
    if (!gen) return;
    *pp = gen->next;
    gen_exit(gen);
    gen_close(gen);
  }
}

static void reap_soon(l_worker *lw) {
  if (lw->reap_queued) return;
  lw->reap_queued = true;
  lw->reap_task.run = reap;
  lp_loop_defer(lw->w->loop, &lw->reap_task);
}

static void on_empty(l_host *h) { reap_soon(((l_gen *)h->launcher)->lw); }

static void on_drain_timeout(struct ev_loop *ev, ev_timer *t, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  l_gen *gen = lp_container_of(t, l_gen, drain);
  lp_loop *loop = gen->lw->w->loop;
  serve_ctx *s = gen->lw->w->group->ud;
  bool now = gen->drain_stage++ > 0;
  size_t n = 0;
  for (lp_list *l = loop->channels.next; l != &loop->channels;) {
    lp_channel *ch = lp_container_of(l, lp_channel, link);
    l = l->next; // closing never unlinks at once
    if (ch->host != gen->h || (ch->flags & LP_CH_CLOSED)) continue;
    n++;
    if (now) lp_channel_close_now(ch);
    else if (!(ch->flags & LP_CH_DRAINING)) lp_channel_close_gracefully(ch);
  }
  if (now) {
    lp_log(LP_LOG_WARN, 0, "reload: closing the %zu channel(s) of the old code still open %g s after the drain timeout", n,
           s->shutdown_timeout);
    return;
  }
  lp_log(LP_LOG_INFO, 0, "reloadDrainTimeout (%g s): closing the %zu channel(s) still on the old code", s->reload_drain_timeout, n);
  ev_timer_set(t, s->shutdown_timeout, 0.);
  ev_timer_start(loop->ev, t);
}

// ---- migrate(ch, oldAttr) ----

static void push_flat(lua_State *to, lua_State *from, int idx) {
  if (lua_type(from, idx) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(from, idx, &len);
    lua_pushlstring(to, s, len);
  } else if (lua_type(from, idx) == LUA_TBOOLEAN) {
    lua_pushboolean(to, lua_toboolean(from, idx));
  } else if (lua_isinteger(from, idx)) {
    lua_pushinteger(to, lua_tointeger(from, idx));
  } else {
    lua_pushnumber(to, lua_tonumber(from, idx));
  }
}

static bool is_flat(lua_State *L, int idx) {
  int t = lua_type(L, idx);
  return t == LUA_TSTRING || t == LUA_TNUMBER || t == LUA_TBOOLEAN;
}

// Protected, on the new state: [1] the channel, [2] the old state (light
// userdata). Pushes a copy of the flat entries of the channel's attr table
// there (string or number keys; string, number or boolean values). The caller
// restores the old state's stack.
static int copy_attr(lua_State *L) {
  lp_channel *ch = lua_touserdata(L, 1);
  lua_State *from = lua_touserdata(L, 2);
  lua_newtable(L);
  if (ch->host_ref < 0 || !lua_checkstack(from, 4)) return 1;
  lua_rawgeti(from, LUA_REGISTRYINDEX, ch->host_ref); // the channel's box
  if (lua_getiuservalue(from, -1, 1) != LUA_TTABLE) return 1;
  lua_pushnil(from);
  while (lua_next(from, -2)) {
    int kt = lua_type(from, -2);
    if ((kt == LUA_TSTRING || kt == LUA_TNUMBER) && is_flat(from, -1)) {
      push_flat(L, from, -2);
      push_flat(L, from, -1);
      lua_rawset(L, -3);
    }
    lua_pop(from, 1);
  }
  return 1;
}

// Under pcall: [1] migrate, [2] the channel (light userdata), [3] oldAttr.
static int call_migrate(lua_State *L) {
  l_channel_push(L, lua_touserdata(L, 2));
  lua_replace(L, 2);
  lua_call(L, 2, 0);
  return 0;
}

// Move ch from generation old to gen: its flat attributes copied, its handlers
// removed on the old state (handlerRemoved there), its handle there dropped,
// then migrate(ch, oldAttr) on the new state builds the pipeline anew. A
// migrate that raises closes the channel.
static void migrate_one(l_gen *old, l_gen *gen, lp_channel *ch) {
  lua_State *OL = old->L, *L = gen->L;
  int otop = lua_gettop(OL), top = lua_gettop(L);
  if (!lua_checkstack(L, 6)) return;
  lua_pushcfunction(L, copy_attr);
  lua_pushlightuserdata(L, ch);
  lua_pushlightuserdata(L, OL);
  bool ok = lua_pcall(L, 2, 1, 0) == LUA_OK;
  lua_settop(OL, otop);
  if (!ok) { // out of memory: the channel stays on the old code
    lua_settop(L, top);
    return;
  }
  lp_channel_ref(ch);
  lp_pipeline *p = &ch->pipeline;
  lp_pipeline_enter(p);
  for (int i = 0; i < LP_RELOAD_STRIP_MAX; i++) { // a handlerRemoved that adds handlers must not loop forever
    lp_ctx *c = lp_pipeline_first(p);
    if (!c) break;
    lp_pipeline_remove(p, c);
  }
  lp_pipeline_leave(p); // removed contexts are freed here, on the old state
  if (ch->host_ref >= 0 && !old->h->closing) luaL_unref(OL, LUA_REGISTRYINDEX, ch->host_ref);
  ch->host_ref = -1;
  if (ch->flags & LP_CH_HOST_COUNTED) old->h->nchannels--; // the old state's reap follows the commit
  ch->flags &= ~(uint32_t)LP_CH_HOST_COUNTED;
  l_channel_adopt(gen->h, ch);
  if (!(ch->flags & LP_CH_CLOSED)) {
    int attr = lua_gettop(L);
    lua_pushcfunction(L, call_migrate);
    lua_rawgeti(L, LUA_REGISTRYINDEX, gen->migrate_ref);
    lua_pushlightuserdata(L, ch);
    lua_pushvalue(L, attr);
    lp_pipeline_enter(p);
    ok = l_pcall_log(L, 3, "migrate(ch, oldAttr)", ch->id);
    lp_pipeline_leave(p);
    if (!ok) {
      lp_log(LP_LOG_WARN, ch->id, "closing the channel: migrate failed");
      lp_channel_close_now(ch);
    }
  }
  lua_settop(L, top);
  lp_channel_unref(ch);
}

static void migrate_all(l_gen *old, l_gen *gen) {
  lp_loop *loop = gen->lw->w->loop;
  for (lp_list *l = loop->channels.next; l != &loop->channels;) {
    lp_channel *ch = lp_container_of(l, lp_channel, link);
    l = l->next; // closing never unlinks at once; new channels are the new state's
    if (ch->host == old->h && (ch->flags & LP_CH_ACCEPTED) && !(ch->flags & (LP_CH_CLOSED | LP_CH_DRAINING)) &&
        ch->pipeline.depth == 0)
      migrate_one(old, gen, ch);
  }
}

static int w_reload_prepare(lp_worker *w, char *err, size_t errlen) {
  l_worker *lw = w->host;
  if (lw->pending) { // cannot happen (the boss finishes each reload first): drop it
    gen_close(lw->pending);
    lw->pending = NULL;
  }
  lw->pending = gen_boot(lw, err, errlen);
  return lw->pending ? 0 : -1;
}

static void w_reload_finish(lp_worker *w, bool commit) {
  l_worker *lw = w->host;
  serve_ctx *s = w->group->ud;
  l_gen *gen = lw->pending, *old = lw->cur;
  lw->pending = NULL;
  if (!gen) return;
  if (!commit || !old) { // another worker failed: this one's new state goes
    gen_exit(gen);
    gen_close(gen);
    return;
  }
  lw->cur = gen;
  point_loop(lw);
  // The old state's UDP channels (an app's udp field: bound beside the new
  // state's with SO_REUSEPORT) stop now: datagrams go to the new code, and a
  // socket that never ends would keep the old state from draining.
  for (lp_list *n = w->loop->channels.next; n != &w->loop->channels;) {
    lp_channel *ch = lp_container_of(n, lp_channel, link);
    n = n->next;
    if (ch->host == old->h && ch->transport == &lp_udp_transport) lp_channel_close_gracefully(ch);
  }
  old->next = lw->retired;
  lw->retired = old;
  old->h->on_empty = on_empty;
  if (s->reload_drain_timeout > 0) {
    ev_timer_init(&old->drain, on_drain_timeout, s->reload_drain_timeout, 0.);
    ev_timer_start(w->loop->ev, &old->drain);
  }
  if (gen->migrate_ref != LUA_NOREF) migrate_all(old, gen);
  if (old->h->nchannels == 0) reap_soon(lw);
}

static const lp_worker_ops worker_ops = {w_start, w_accept, w_stop, w_free, w_reload_prepare, w_reload_finish};

// lupine.reload(): ask the server this state belongs to for a reload.
int l_reload(lua_State *L) {
  l_host *h = l_host_get(L);
  if (!h->group) return luaL_error(L, "lupine.reload: this Lua state is not serving an app (lupine.serve or the launcher)");
  if (lp_group_reload(h->group) != 0)
    return luaL_error(L, "lupine.reload: reloading needs worker threads (workers = 0 serves inline, in one Lua state)");
  lua_pushboolean(L, 1);
  return 1;
}

static void push_state_info(lua_State *L, lua_State *of, l_host *h, unsigned number, bool current) {
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, number);
  lua_setfield(L, -2, "generation");
  lua_pushboolean(L, current);
  lua_setfield(L, -2, "current");
  lua_pushinteger(L, (lua_Integer)h->nchannels);
  lua_setfield(L, -2, "channels");
  lua_pushinteger(L, (lua_Integer)lua_gc(of, LUA_GCCOUNT) * 1024 + lua_gc(of, LUA_GCCOUNTB));
  lua_setfield(L, -2, "memory");
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

// lupine.workerStates(): this worker's Lua states, the current one first, then
// the ones still draining after reloads, newest first.
int l_worker_states(lua_State *L) {
  l_host *h = l_host_get(L);
  l_gen *me = h->launcher;
  lua_newtable(L);
  if (!me) {
    push_state_info(L, h->L, h, 1, true);
    return 1;
  }
  l_worker *lw = me->lw;
  push_state_info(L, lw->cur->L, lw->cur->h, lw->cur->number, true);
  for (l_gen *gen = lw->retired; gen; gen = gen->next) push_state_info(L, gen->L, gen->h, gen->number, false);
  return 1;
}

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
// reloadDrainTimeout, maxConnections, memoryLimit, reusePort, mode }: serve until shut down (SIGINT/SIGTERM, or the
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
  double drain = l_opt_number(L, 1, "reloadDrainTimeout", 0.0);
  if (!(drain >= 0 && drain <= 86400))
    return luaL_error(L, "option 'reloadDrainTimeout' must be from 0 (wait for the last connection) to 86400 seconds");
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
  s->shutdown_timeout = timeout;
  s->reload_drain_timeout = drain;
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
  h->group = &s->group; // lupine.reload() from this state's timers
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
  h->group = NULL;
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
