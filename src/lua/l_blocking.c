// l_blocking.c: lupine.blocking, blocking work off the loop. A job runs on the
// process's pool of threads (src/core/workpool.c), each with a Lua state of its own,
// and its result comes back as a future completed on the calling loop.
//
//   lupine.blocking(module, fnName, ...)   require(module)[fnName](...) in a pool state
//   lupine.blocking.run(source | fn, ...)  a chunk whose source returns a function,
//                                          or a Lua function without upvalues (string.dump)
//   lupine.blocking.configure{ threads = n, maxJobs = n }
//   lupine.blocking.stats()                { threads, queued, running, maxJobs }
//
// Values cross threads as a flat C serialisation (l_flat.c): nil,
// booleans, integers and floats (kept apart), strings, and tables of those
// with string or integer keys and no metatable. Nothing of Lua crosses: the
// job holds only malloc'd bytes, and only the loop's thread touches its future.
//
// The pool: one per process, made on the first job of any state, with the
// package paths of that state (copied as C strings) and the launcher's
// preloads (l_preload), so `require` finds the same modules in pool states.
// Each state that submits attaches a client (a userdata in its registry, made
// after the state's host so that its __gc runs first when the state closes):
// its __gc cancels its queued jobs, abandons its running ones, and, for the
// last client, stops the pool and joins its threads. A pool state is reused
// across jobs: a module is required once per pool thread.
//
// Ownership: a job (l_job) is malloc'd at submit and freed by its completion
// on the loop (or by the pool thread after its state closed, see workpool.h);
// its future reference is dropped on the loop's thread only. The pool's
// environment (pool_env) lives as long as the pool.
#include "lbind.h"

#include "log.h"
#include "workpool.h"
#include "l_flat.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_MAX_JOBS 10000
#define SOURCE_CACHE_MAX 256 // compiled run() sources kept per pool state


// ---- the process's pool -----------------------------------------------------------------

typedef struct pool_env {
  char *path, *cpath; // package.path / cpath of the state that made the pool
} pool_env;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static lp_workpool *g_pool;     // NULL until the first job, and after the last client closed
static pool_env *g_env;
static int g_clients;           // attached states
static int g_threads;           // configured thread count (0: one per core)
static size_t g_max_jobs = DEFAULT_MAX_JOBS;

static _Thread_local bool in_pool_thread;

static const char client_key = 'c', src_cache_key = 's', dump_cache_key = 'd';

static int default_threads(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > LP_WORKPOOL_MAX_THREADS ? LP_WORKPOOL_MAX_THREADS : (int)n;
}

static int configured_threads(void) { return g_threads ? g_threads : default_threads(); }

// Protected, in a pool thread's new state: [1] pool_env.
static int pool_boot(lua_State *L) {
  pool_env *env = lua_touserdata(L, 1);
  l_state_boot(L, env->path, env->cpath);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &src_cache_key);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &dump_cache_key);
  return 0;
}

// On each pool thread: its Lua state (NULL when it cannot be made; its jobs
// then fail with a message saying so).
static void *pool_thread_start(void *ud) {
  in_pool_thread = true;
  lua_State *L = l_newstate(0);
  if (!L) {
    lp_log(LP_LOG_ERROR, 0, "lupine.blocking: cannot create a pool thread's Lua state (out of memory)");
    return NULL;
  }
  lua_pushcfunction(L, pool_boot);
  lua_pushlightuserdata(L, ud);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    lp_log(LP_LOG_ERROR, 0, "lupine.blocking: a pool thread's Lua state failed to start: %s",
           lua_isstring(L, -1) ? lua_tostring(L, -1) : "(not a string)");
    l_closestate(L);
    return NULL;
  }
  return L;
}

static void pool_thread_stop(void *tctx, void *ud) {
  LP_UNUSED(ud);
  if (tctx) l_closestate(tctx);
}

static const lp_workpool_ops pool_ops = {pool_thread_start, pool_thread_stop};

static void env_free(pool_env *env) {
  if (!env) return;
  free(env->path);
  free(env->cpath);
  free(env);
}

static char *package_field(lua_State *L, const char *k) {
  int top = lua_gettop(L);
  char *copy = NULL;
  if (lua_getglobal(L, "package") == LUA_TTABLE && lua_getfield(L, -1, k) == LUA_TSTRING) copy = strdup(lua_tostring(L, -1));
  lua_settop(L, top);
  return copy;
}

typedef struct l_client {
  lp_work_client *c; // NULL until attached
} l_client;

static int client_gc(lua_State *L) {
  l_client *box = lua_touserdata(L, 1);
  if (!box->c) return 0;
  lp_workpool *stop = NULL;
  pool_env *env = NULL;
  pthread_mutex_lock(&g_lock);
  lp_workpool_detach(box->c); // its jobs' futures are failed or dropped, now, on this thread
  box->c = NULL;
  if (--g_clients == 0) {
    stop = g_pool;
    env = g_env;
    g_pool = NULL;
    g_env = NULL;
  }
  pthread_mutex_unlock(&g_lock);
  // The last state to close stops the pool: its threads are joined here (a job
  // that never returns keeps this waiting; see docs/blocking.md).
  lp_workpool_free(stop);
  env_free(env);
  return 0;
}

// The state's client, attached (and the pool made) on first use.
static lp_work_client *client_get(lua_State *L, const char *api) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &client_key) == LUA_TUSERDATA) {
    l_client *box = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!box->c) luaL_error(L, "%s: this Lua state is closing", api);
    return box->c;
  }
  lua_pop(L, 1);
  l_host *h = l_host_get(L); // the host first: its __gc must run after the client's
  // The finalizer is set before attaching: whatever raises after, __gc detaches.
  l_client *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->c = NULL;
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, client_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushliteral(L, "lupine.BlockingClient");
  lua_setfield(L, -2, "__name");
  lua_setmetatable(L, -2);
  char *path = package_field(L, "path"), *cpath = package_field(L, "cpath");
  pool_env *env = calloc(1, sizeof *env);
  if (!env) {
    free(path);
    free(cpath);
    luaL_error(L, "%s: out of memory", api);
  }
  env->path = path;
  env->cpath = cpath;
  int err = 0;
  pthread_mutex_lock(&g_lock);
  if (!g_pool) {
    lp_workpool_config cfg = {configured_threads(), g_max_jobs};
    g_pool = lp_workpool_new(&cfg, &pool_ops, env, &err);
    if (g_pool) {
      g_env = env;
      env = NULL;
    }
  }
  if (g_pool && !(box->c = lp_workpool_attach(g_pool, h->loop))) err = -ENOMEM;
  if (box->c) g_clients++;
  pthread_mutex_unlock(&g_lock);
  env_free(env);
  if (!box->c) {
    lp_error e;
    lp_error_sys(&e, -err, NULL);
    luaL_error(L, "%s: cannot start the pool's threads: %s", api, e.message);
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &client_key);
  return box->c;
}

// ---- jobs ---------------------------------------------------------------------------------

enum { JOB_MODULE, JOB_SOURCE, JOB_FUNCTION };

typedef struct l_job {
  lp_work work;
  // The loop's thread only.
  lp_future *future;
  l_host *h;
  // Set at submit; read by the pool thread.
  int kind;
  const char *api;
  char *code;       // module name, source, or dumped function
  size_t code_len;
  char *fn;         // JOB_MODULE: the function's name
  l_blob args;
  int nargs;
  // Set by the pool thread; read by the loop's thread after the post.
  l_blob result;      // the job's result (one value), or nothing for none
  bool has_result;
  char *error;      // the job failed: message and traceback
} l_job;

static void job_free(l_job *job) {
  free(job->code);
  free(job->fn);
  l_blob_free(&job->args);
  l_blob_free(&job->result);
  free(job->error);
  free(job);
}

static void job_fail_text(l_job *job, const char *fmt, ...) LP_PRINTF(2, 3);
static void job_fail_text(l_job *job, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  free(job->error);
  job->error = strdup(buf);
}

// A compiled function from a cache table in the pool state's registry (key:
// the source or dump bytes); pushes it.
static void cached_function(lua_State *L, const void *cache_key, l_job *job) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, cache_key);
  lua_pushlstring(L, job->code, job->code_len);
  if (lua_rawget(L, -2) == LUA_TFUNCTION) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  int rc = job->kind == JOB_SOURCE ? luaL_loadbufferx(L, job->code, job->code_len, "=(blocking source)", "t")
                                   : luaL_loadbufferx(L, job->code, job->code_len, "=(blocking function)", "b");
  if (rc != LUA_OK) luaL_error(L, "%s: %s", job->api, lua_tostring(L, -1));
  if (job->kind == JOB_SOURCE) { // the chunk returns the job's function
    lua_call(L, 0, 1);
    if (!lua_isfunction(L, -1))
      luaL_error(L, "%s: the source must return a function (it returned %s)", job->api, luaL_typename(L, -1));
  }
  // A bounded cache: past the limit, start a new table.
  lua_Integer n = 0;
  lua_pushnil(L);
  while (n <= SOURCE_CACHE_MAX && lua_next(L, -3)) {
    lua_pop(L, 1);
    n++;
  }
  if (n > SOURCE_CACHE_MAX) { // cache fn key
    lua_pop(L, 1);             // the key lua_next left
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, cache_key);
    lua_replace(L, -3);        // the new cache in place of the old: cache fn
  }
  lua_pushlstring(L, job->code, job->code_len);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);
  lua_remove(L, -2);
}

// Protected (under the traceback handler), on the pool thread: [1] the job.
// Calls the job's function and returns its results.
static int job_call(lua_State *L) {
  l_job *job = lua_touserdata(L, 1);
  if (job->kind == JOB_MODULE) {
    lua_getglobal(L, "require");
    lua_pushstring(L, job->code);
    lua_call(L, 1, 1);
    if (!lua_istable(L, -1))
      return luaL_error(L, "%s: module '%s' returned %s, not a table of functions", job->api, job->code, luaL_typename(L, -1));
    if (lua_getfield(L, -1, job->fn) != LUA_TFUNCTION)
      return luaL_error(L, "%s: module '%s' has no function '%s'", job->api, job->code, job->fn);
    lua_remove(L, -2);
  } else {
    cached_function(L, job->kind == JOB_SOURCE ? &src_cache_key : &dump_cache_key, job);
  }
  l_reader r = {job->args.data, job->args.data + job->args.len};
  for (int i = 0; i < job->nargs; i++) l_flat_decode(L, &r);
  lua_call(L, job->nargs, LUA_MULTRET);
  return lua_gettop(L) - 1;
}

static int tostring_protected(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

static void job_run(lp_work *w, void *tctx) {
  l_job *job = lp_container_of(w, l_job, work);
  lua_State *L = tctx;
  if (!L) {
    job_fail_text(job, "%s: this pool thread has no Lua state (it could not be created: see the log)", job->api);
    return;
  }
  lua_settop(L, 0);
  lua_pushcfunction(L, l_traceback);
  lua_pushcfunction(L, job_call);
  lua_pushlightuserdata(L, job);
  if (lua_pcall(L, 1, LUA_MULTRET, 1) != LUA_OK) {
    // The message with its traceback (an error object: its tostring).
    lua_pushcfunction(L, tostring_protected);
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
      size_t len;
      const char *msg = lua_tolstring(L, -1, &len);
      job->error = malloc(len + 1);
      if (job->error) memcpy(job->error, msg, len + 1);
    }
    if (!job->error) job_fail_text(job, "%s: the job raised an error that could not be shown", job->api);
  } else {
    int nres = lua_gettop(L) - 1;
    if (nres > 1) {
      job_fail_text(job, "%s: the job returned %d values: return one (a flat table holds several)", job->api, nres);
    } else if (nres == 1) {
      char err[L_FLAT_ERR_MAX];
      l_crossing x = {job->api, "result", "back from the pool", 1, err};
      job->has_result = l_flat_encode(L, 2, &job->result, &x);
      if (!job->has_result) job->error = strdup(err);
      else if (job->result.oom) job_fail_text(job, "%s: out of memory copying the result", job->api);
    }
  }
  lua_settop(L, 0);
}

static void log_unobserved(lp_future *f, void *ud) {
  LP_UNUSED(ud);
  char text[1024] = "";
  l_host *h = f->host;
  if (h && !h->closing && f->host_ref >= 0) {
    lua_rawgeti(h->L, LUA_REGISTRYINDEX, f->host_ref);
    l_tostring(h->L, -1, text, sizeof text);
    lua_pop(h->L, 1);
  } else if (f->cause) {
    snprintf(text, sizeof text, "%s", f->cause->message);
  }
  lp_log(LP_LOG_ERROR, 0, "a blocking job failed and nobody listened to its future: %s", text);
}

static void fail_shutdown(lp_future *f) {
  if (lp_future_done(f)) return;
  lp_error e;
  lp_error_named(&e, LP_ESHUTDOWN, "lupine.blocking: the job was cancelled (its Lua state closed)");
  f->quiet = true; // nobody is left to tell
  lp_future_fail(f, &e);
}

// Protected, on the loop's thread: [1] the job. Completes its future.
static int job_deliver(lua_State *L) {
  l_job *job = lua_touserdata(L, 1);
  lp_future *f = job->future;
  if (lp_future_done(f)) return 0; // completed by hand (setSuccess): its value stays
  if (job->error) {
    lua_pushstring(L, job->error);
    if (!l_future_keep(L, f)) return luaL_error(L, "out of memory");
    lp_error e;
    lp_error_named(&e, LP_EHOST, "%s", job->error);
    char *nl = strchr(e.message, '\n');
    if (nl) *nl = 0;
    lp_future_fail(f, &e);
    return 0;
  }
  if (job->has_result) {
    l_reader r = {job->result.data, job->result.data + job->result.len};
    l_flat_decode(L, &r);
    if (!lua_isnil(L, -1) && !l_future_keep(L, f)) return luaL_error(L, "out of memory");
  }
  lp_future_succeed(f);
  return 0;
}

static void job_complete(lp_work *w, int status) {
  l_job *job = lp_container_of(w, l_job, work);
  lp_future *f = job->future;
  if (status != 0 || !f || job->h->closing) {
    job->future = NULL;
    if (f) {
      fail_shutdown(f);
      lp_future_unref(f);
    }
    if (status != LP_WORK_ABANDONED) job_free(job); // else the pool thread frees it
    return;
  }
  lua_State *L = job->h->L;
  if (lua_checkstack(L, 3)) {
    lua_pushcfunction(L, job_deliver);
    lua_pushlightuserdata(L, job);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);
  }
  if (!lp_future_done(f)) {
    l_future_drop(f);
    lp_future_fail_code(f, -ENOMEM, "lupine.blocking: delivering the result");
  }
  lp_future_unref(f);
  job_free(job);
}

static void job_pool_free(lp_work *w) { job_free(lp_container_of(w, l_job, work)); }

// Submit a job whose arguments are the values from first to the top; argument
// numbers in messages are stack index - shift. Pushes the future.
static int submit(lua_State *L, int kind, const char *api, const char *code, size_t code_len, const char *fn, int first,
                  int shift) {
  if (in_pool_thread) return luaL_error(L, "%s: called from a blocking job: a job cannot start another", api);
  lp_work_client *c = client_get(L, api);
  l_host *h = l_host_get(L);
  lp_future *f = lp_future_new(h->loop);
  if (!f) return luaL_error(L, "%s: out of memory", api);
  f->host = h;
  l_future_push(L, f); // the box owns f from here
  lp_future_unref(f);
  int top = lua_gettop(L) - 1; // below the future
  // Nothing raises from here until the job is submitted or freed.
  l_job *job = calloc(1, sizeof *job);
  char err[L_FLAT_ERR_MAX] = "";
  bool ok = job != NULL;
  if (ok) {
    job->kind = kind;
    job->api = api;
    job->h = h;
    job->code = malloc(code_len + 1);
    job->code_len = code_len;
    job->fn = fn ? strdup(fn) : NULL;
    ok = job->code && (!fn || job->fn);
    if (ok) {
      memcpy(job->code, code, code_len);
      job->code[code_len] = 0;
    }
    for (int i = first; ok && i <= top; i++) {
      l_crossing x = {api, "argument", "to the pool", i - shift, err};
      ok = l_flat_encode(L, i, &job->args, &x);
      job->nargs++;
    }
    if (ok && job->args.oom) ok = false;
  }
  if (!ok) {
    if (job) job_free(job);
    if (!err[0]) snprintf(err, sizeof err, "%s: out of memory", api);
    lua_pushstring(L, err);
    return lua_error(L);
  }
  job->work.run = job_run;
  job->work.complete = job_complete;
  job->work.free = job_pool_free;
  job->future = lp_future_ref(f);
  lp_future_on_unobserved(f, log_unobserved, NULL, NULL);
  int rc = lp_workpool_submit(c, &job->work);
  if (rc != 0) {
    job->future = NULL;
    job_free(job);
    lp_error e;
    if (rc == -EAGAIN) {
      // Named like the core's errors; the pool's limit, not the system's.
      lp_error_sys(&e, EAGAIN, NULL);
      e.kind = "BlockingQueueFull";
      pthread_mutex_lock(&g_lock);
      size_t max = g_max_jobs;
      pthread_mutex_unlock(&g_lock);
      snprintf(e.message, sizeof e.message, "BlockingQueueFull: %zu jobs are queued or running (maxJobs)", max);
    } else {
      lp_error_named(&e, LP_ESHUTDOWN, "%s: the pool is shutting down", api);
    }
    lp_future_fail(f, &e);
    lp_future_unref(f);
  }
  return 1;
}

// A string argument that becomes a C string; n is its number for the user.
static const char *check_cstring(lua_State *L, int i, int n, size_t *len, const char *what) {
  if (lua_type(L, i) != LUA_TSTRING)
    luaL_error(L, "lupine.blocking: argument #%d (the %s) must be a string, not %s", n, what,
               lua_isnone(L, i) ? "nil" : luaL_typename(L, i));
  const char *s = lua_tolstring(L, i, len);
  if (strlen(s) != *len) luaL_error(L, "lupine.blocking: argument #%d (the %s) contains a NUL byte", n, what);
  return s;
}

// lupine.blocking(module, fnName, ...): [1] the blocking table.
static int blocking_call(lua_State *L) {
  size_t mlen, flen;
  const char *api = "lupine.blocking";
  const char *module = check_cstring(L, 2, 1, &mlen, "module name");
  const char *fn = check_cstring(L, 3, 2, &flen, "function name");
  return submit(L, JOB_MODULE, api, module, mlen, fn, 4, 1);
}

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  LP_UNUSED(L);
  l_blob_put(ud, p, sz);
  return ((l_blob *)ud)->oom;
}

// lupine.blocking.run(source | fn, ...)
static int blocking_run(lua_State *L) {
  const char *api = "lupine.blocking.run";
  if (lua_type(L, 1) == LUA_TSTRING) {
    size_t len;
    const char *src = lua_tolstring(L, 1, &len);
    return submit(L, JOB_SOURCE, api, src, len, NULL, 2, 0);
  }
  if (lua_type(L, 1) != LUA_TFUNCTION)
    return l_argerror(L, 1, "a Lua function, or the source of a chunk that returns one");
  if (lua_iscfunction(L, 1))
    return luaL_error(L, "%s: a C function cannot cross to the pool (give a Lua function, or its source)", api);
  for (int i = 1;; i++) {
    const char *name = lua_getupvalue(L, 1, i);
    if (!name) break;
    lua_pop(L, 1);
    // _ENV alone is fine: loading binds it to the pool state's globals.
    if (i == 1 && strcmp(name, "_ENV") == 0) continue;
    return luaL_error(L,
                      "%s: the function uses '%s', a local variable of an enclosing function (an upvalue): a job "
                      "runs in another Lua state; pass it as an argument",
                      api, *name ? name : "?");
  }
  l_blob b = {0};
  lua_pushvalue(L, 1);
  int rc = lua_dump(L, dump_writer, &b, 0);
  lua_pop(L, 1);
  if (rc != 0 || b.oom) {
    l_blob_free(&b);
    return luaL_error(L, "%s: out of memory dumping the function", api);
  }
  // The dump goes into a Lua string so that nothing leaks if submit raises.
  lua_pushlstring(L, b.data, b.len);
  l_blob_free(&b);
  lua_replace(L, 1);
  size_t len;
  const char *code = lua_tolstring(L, 1, &len);
  return submit(L, JOB_FUNCTION, api, code, len, NULL, 2, 0);
}

// lupine.blocking.configure{ threads = n, maxJobs = n }: for the pool the next
// job makes, or now for a pool that is idle.
static int blocking_configure(lua_State *L) {
  const char *api = "lupine.blocking.configure";
  l_checktype(L, 1, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    if (!k || (strcmp(k, "threads") != 0 && strcmp(k, "maxJobs") != 0))
      return luaL_error(L, "%s: unknown option '%s' (known: threads, maxJobs)", api, luaL_tolstring(L, -2, NULL));
    lua_pop(L, 1);
  }
  pthread_mutex_lock(&g_lock);
  int threads = g_threads;
  size_t max_jobs = g_max_jobs;
  pthread_mutex_unlock(&g_lock);
  threads = (int)l_opt_int(L, 1, "threads", threads, 0, LP_WORKPOOL_MAX_THREADS);
  max_jobs = (size_t)l_opt_int(L, 1, "maxJobs", (lua_Integer)max_jobs, 1, (lua_Integer)1 << 30);
  pthread_mutex_lock(&g_lock);
  int rc = 0;
  if (g_pool) {
    lp_workpool_config cfg = {threads ? threads : default_threads(), max_jobs};
    rc = lp_workpool_configure(g_pool, &cfg);
  }
  if (rc == 0) {
    g_threads = threads;
    g_max_jobs = max_jobs;
  }
  pthread_mutex_unlock(&g_lock);
  if (rc == -EBUSY) return luaL_error(L, "%s: jobs are queued or running; configure the pool while it is idle", api);
  if (rc != 0) {
    lp_error e;
    lp_error_sys(&e, -rc, NULL);
    return luaL_error(L, "%s: %s", api, e.message);
  }
  return 0;
}

// lupine.blocking.stats(): { threads, queued, running, maxJobs, started }.
static int blocking_stats(lua_State *L) {
  lp_workpool_stats st = {0};
  pthread_mutex_lock(&g_lock);
  bool started = g_pool != NULL;
  if (started) lp_workpool_get_stats(g_pool, &st);
  else st.threads = configured_threads();
  size_t max_jobs = g_max_jobs;
  pthread_mutex_unlock(&g_lock);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, st.threads);
  lua_setfield(L, -2, "threads");
  lua_pushinteger(L, (lua_Integer)st.queued);
  lua_setfield(L, -2, "queued");
  lua_pushinteger(L, (lua_Integer)st.running);
  lua_setfield(L, -2, "running");
  lua_pushinteger(L, (lua_Integer)max_jobs);
  lua_setfield(L, -2, "maxJobs");
  lua_pushboolean(L, started);
  lua_setfield(L, -2, "started");
  return 1;
}

static const luaL_Reg funcs[] = {
    {"run", blocking_run},
    {"configure", blocking_configure},
    {"stats", blocking_stats},
    {NULL, NULL},
};

void l_blocking_open(lua_State *L) {
  luaL_newlib(L, funcs);
  lua_createtable(L, 0, 1); // lupine.blocking(...) is a call of the table
  lua_pushcfunction(L, blocking_call);
  lua_setfield(L, -2, "__call");
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "blocking");
}
