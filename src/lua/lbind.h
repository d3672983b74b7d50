// lbind.h: what the Lua binding files share. Each l_<type>.c exposes one
// native type to Lua; l_lupine.c opens the module and owns the per-state host.
//
// The host: every lua_State that uses lupine has one l_host (its address in
// the registry), holding the loop that state drives. In the inline mode the
// host creates the loop on first use; a worker thread's state gets its worker
// loop from the launcher. After a reload several states share a worker's loop:
// each channel and each future with a Lua value says which state owns it
// (ch->host, f->host), and everything reaches Lua through that host, never
// through loop->host (which names only the newest state). Handlers, listeners,
// timers and every other call into Lua from C run on the state's main thread
// (host->L), never on a coroutine: a coroutine that entered C may be suspended
// or dead by the time the next event comes.
#ifndef LP_LBIND_H
#define LP_LBIND_H

#include <lauxlib.h>
#include <lua.h>

#include "buffer.h"
#include "channel.h"
#include "error.h"
#include "future.h"
#include "loop.h"
#include "pipeline.h"
#include "server.h"
#include "host.h"

typedef struct l_host l_host;
struct l_host {
  lua_State *L;     // the main thread of the state: all calls into Lua run on it
  lp_loop *loop;
  bool owns_loop;   // inline mode: freed with the state
  bool closing;     // the state is closing: call no more Lua
  int running;      // nesting of loop runs driven from this state
  int loop_ref;     // the state's lupine.Loop object (0: not made yet)
  int ev_name_ref[LP_EV_COUNT]; // interned event names, for fast method lookups
  size_t nchannels; // channels owned (l_channel_adopt), until their teardown
  void (*on_empty)(l_host *h); // nchannels fell to 0 (l_group.c: a draining old state)
  void *launcher;   // l_group.c's record of this state (a generation), NULL elsewhere
  void *group;      // the lp_group this state serves in (lupine.reload), NULL elsewhere
};

// ---- userdata types -----------------------------------------------------------------
// Every lupine userdata starts with the address of its type's key (L_BOX_HEAD),
// so a type check is one compare; luaL_checkudata looks the type's name up as a
// string, which costs a few hundred instructions per call on the hot path. The
// metatables are registered under the same keys, and protected by __metatable.
extern const char l_key_buffer, l_key_buffer_lent, l_key_context, l_key_context_box, l_key_pipeline, l_key_future, l_key_channel, l_key_config,
    l_key_server, l_key_loop, l_key_timer, l_key_native, l_key_error;
#define L_BOX_HEAD const void *l_tag
void l_newmetatable(lua_State *L, const char *tname, const void *key); // leaves it on the stack
static inline void l_setmetatable(lua_State *L, const void *key) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, key);
  lua_setmetatable(L, -2);
}
// A new userdata of type key (size bytes, starting with L_BOX_HEAD), zeroed, on the stack.
void *l_newudata(lua_State *L, size_t size, int nuv, const void *key);
// The Lua type first: a light userdata's address may point anywhere (a
// registry key is one byte), and only a full userdata of at least a pointer's
// size has a tag to read.
static inline void *l_testudata(lua_State *L, int i, const void *key) {
  if (lua_type(L, i) != LUA_TUSERDATA || lua_rawlen(L, i) < sizeof(void *)) return NULL;
  const void *const *p = (const void *const *)lua_touserdata(L, i);
  return *p == key ? (void *)p : NULL;
}

// ---- l_args.c: argument checks ---------------------------------------------------
// luaL_argerror and the luaL_check* family, except that an error names the
// method even when Lua does not know the name (a method called from C, as
// pcall(ctx.write, ctx): "bad argument #2 to 'write' (value expected)", where
// luaL_argerror says '?'). Use these in the binding, never the luaL_ ones.
int l_argerror(lua_State *L, int arg, const char *extramsg);
int l_typeerror(lua_State *L, int arg, const char *tname);
int l_tagerror(lua_State *L, int arg, int tag);
int l_interror(lua_State *L, int arg); // not an integer
#define l_argcheck(L, cond, arg, msg) ((void)(LP_LIKELY(cond) || l_argerror(L, (arg), (msg))))
#define l_argexpected(L, cond, arg, tname) ((void)(LP_LIKELY(cond) || l_typeerror(L, (arg), (tname))))
static inline lua_Integer l_checkinteger(lua_State *L, int arg) {
  int isnum;
  lua_Integer v = lua_tointegerx(L, arg, &isnum);
  if (LP_UNLIKELY(!isnum)) l_interror(L, arg);
  return v;
}
static inline lua_Integer l_optinteger(lua_State *L, int arg, lua_Integer def) {
  return lua_isnoneornil(L, arg) ? def : l_checkinteger(L, arg);
}
static inline lua_Number l_checknumber(lua_State *L, int arg) {
  int isnum;
  lua_Number v = lua_tonumberx(L, arg, &isnum);
  if (LP_UNLIKELY(!isnum)) l_tagerror(L, arg, LUA_TNUMBER);
  return v;
}
static inline lua_Number l_optnumber(lua_State *L, int arg, lua_Number def) {
  return lua_isnoneornil(L, arg) ? def : l_checknumber(L, arg);
}
static inline void l_checktype(lua_State *L, int arg, int t) {
  if (LP_UNLIKELY(lua_type(L, arg) != t)) l_tagerror(L, arg, t);
}
static inline void l_checkany(lua_State *L, int arg) {
  if (LP_UNLIKELY(lua_type(L, arg) == LUA_TNONE)) l_argerror(L, arg, "value expected");
}
const char *l_checklstring(lua_State *L, int arg, size_t *len);
const char *l_optlstring(lua_State *L, int arg, const char *def, size_t *len);
#define l_checkstring(L, arg) l_checklstring(L, (arg), NULL)
#define l_optstring(L, arg, def) l_optlstring(L, (arg), (def), NULL)
static inline void *l_checkudata(lua_State *L, int i, const void *key, const char *tname) {
  void *p = l_testudata(L, i, key);
  if (!p) l_typeerror(L, i, tname);
  return p;
}
// Lua strings that become C strings (hosts, names, paths, log text) hold no
// NUL byte: "127.0.0.1\0.allowed.example" must not pass a Lua check on its
// suffix and then connect to its prefix. l_is_cstring: the value at idx is a
// string without NUL. l_checkcstring / l_optcstring: l_checkstring /
// l_optstring, raising "bad argument #n to 'f' (must not contain NUL bytes)".
bool l_is_cstring(lua_State *L, int idx);
const char *l_checkcstring(lua_State *L, int arg);
const char *l_optcstring(lua_State *L, int arg, const char *def);
#define L_NUL_MESSAGE "must not contain NUL bytes"

// ---- l_lupine.c ----------------------------------------------------------------
l_host *l_host_get(lua_State *L);                 // creates the inline loop on first use
l_host *l_host_find(lua_State *L);               // the state's host, or NULL; never raises
// A worker state: use this loop. The caller owns the host: l_host_free once
// the loop has ended (the state's close only marks it closing).
l_host *l_host_attach(lua_State *L, lp_loop *loop);
void l_host_free(l_host *h);
void l_host_detach(l_host *h); // the state is closing: close its channels, let the loop go on
// A new channel belongs to h's state (counted in h->nchannels until teardown,
// unless LP_CH_UNCOUNTED is set first). Every lp_channel_new in the binding is
// followed by this: without it the channel belongs to the loop's newest state.
void l_channel_adopt(l_host *h, lp_channel *ch);
static inline lp_pool *l_pool(lua_State *L) { return l_host_get(L)->loop->pool; }

// ---- entering the core from Lua --------------------------------------------------
// A call from Lua that goes into the core (and through it into handlers)
// opens one entry, after every check of its arguments: between l_enter and
// l_leave nothing raises, so a bad argument can never leave a pipeline's depth
// counted (a removed context would never be freed). Handlers run on the main
// thread; a call from a coroutine lends its message to the main thread's
// stack for the duration (the one slot the core's LP_MSG_HOST names). On the
// main thread, the common case, the entry costs one compare.
typedef struct l_entry {
  l_host *h;
  lp_pipeline *p; // its depth is counted while the entry is open (NULL: none)
  int top;        // the main thread's top to restore; -1 when entered from it
} l_entry;
// Raise when L is not a thread of h's state: a channel a reload moved to the
// new code (migrate) is out of reach of the old state's handles.
static inline void l_check_state(lua_State *L, const l_host *h) {
  if (LP_LIKELY(L == h->L)) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  bool same = lua_tothread(L, -1) == h->L;
  lua_pop(L, 1);
  if (!same) luaL_error(L, "lupine: this channel belongs to another Lua state (a reload moved it to the new code)");
}
// The coroutine case of l_enter; with a message it may raise (stack
// overflow), before it changes anything; without one it never raises.
int l_enter_thread(l_entry *e, lua_State *L, int msg);
// Open an entry from Lua state L into h's loop (and pipeline p, if any). msg:
// the stack index in L of a message for the core, or 0. Returns the message's
// slot on the main thread (0: none), for l_host_msg. Call it after every
// argument check; it raises only when lending a message, before it enters.
static inline int l_enter(l_entry *e, lua_State *L, l_host *h, lp_pipeline *p, int msg) {
  e->h = h;
  e->p = p;
  e->top = -1;
  if (LP_UNLIKELY(L != h->L)) msg = l_enter_thread(e, L, msg);
  if (p) lp_pipeline_enter(p);
  return msg;
}
static inline void l_leave(l_entry *e) {
  if (e->p) lp_pipeline_leave(e->p);
  if (LP_UNLIKELY(e->top >= 0)) lua_settop(e->h->L, e->top);
}
// Sync failure convention: pushes nil, "EADDRINUSE: Address already in use", "EADDRINUSE"; returns 3.
int l_fail(lua_State *L, int rc, const char *what);
// Push an error object: a table { kind, message, code, limit?, length? } whose
// __tostring is its message (metatable "lupine.Error").
void l_push_error(lua_State *L, const lp_error *e);
// tostring(v) of the value at idx into buf, protected (a __tostring that
// raises, out of memory): safe from libev callbacks. Returns buf.
const char *l_tostring(lua_State *L, int idx, char *buf, size_t len);
// luaL_ref of the value on top (popped), protected; LUA_NOREF on failure.
int l_ref(lua_State *L);
// Message handler for lua_pcall when entering Lua from C. A string (or any
// non-table) error becomes a lupine.Error { kind = "LuaError", message,
// traceback }; a lupine.Error gets a traceback unless it has one; any other
// value (a table the user raised) stays itself, its traceback kept beside it
// (lupine.traceback(err), l_push_traceback_of).
int l_traceback(lua_State *L);
// Whether the value at idx is a lupine.Error (raw check, never raises).
bool l_is_error(lua_State *L, int idx);
// Push the traceback of the raised value at idx (a string), or nil.
void l_push_traceback_of(lua_State *L, int idx);
// Say which handler and event raised the error at idx, unless it says so
// already (it was raised in another handler and passed on): sets `handler`
// and `event` on a lupine.Error (a string becomes one first, in place); other
// values are left alone. Allocates: call it protected.
void l_error_decorate(lua_State *L, int idx, const char *handler, const char *event);
// The raised value at idx for a log line: its tostring, and its traceback
// when it is not part of that (a table the user raised). Protected; returns buf.
const char *l_describe_error(lua_State *L, int idx, char *buf, size_t len);
// The raised value at idx without its traceback ("handler 'h' ev: message"
// for a lupine.Error): for a failed future's text. Protected; returns buf.
const char *l_error_message(lua_State *L, int idx, char *buf, size_t len);
// Call the function at the top with nargs below it under pcall + traceback; on
// error log it (what = "timer callback", ...). Pops everything. Returns ok.
bool l_pcall_log(lua_State *L, int nargs, const char *what, uint64_t channel_id);
// Read an integer option field, raising "<what>: option 'name' must be ..." on a wrong type.
lua_Integer l_opt_int(lua_State *L, int t, const char *field, lua_Integer def, lua_Integer min, lua_Integer max);
bool l_opt_bool(lua_State *L, int t, const char *field, bool def);
// Every key of the option table at t must be one of known (NULL-terminated):
// else "<fn>: unknown option 'key'".
void l_check_options(lua_State *L, int t, const char *fn, const char *const *known);
// The registry table under key, made on first use with weak mode ("k", "v"), pushed.
void l_push_weak_table(lua_State *L, const void *key, const char *mode);
double l_opt_number(lua_State *L, int t, const char *field, double def);
// A string option that becomes a C string: a NUL byte in it raises "option
// 'host' must not contain NUL bytes" (C would see only what comes before it).
const char *l_opt_string(lua_State *L, int t, const char *field, const char *def);
// Parse channel options from table t into cfg (raising on a bad name or value).
void l_channel_config_read(lua_State *L, int t, lp_channel_config *cfg);

// ---- l_buffer.c ----------------------------------------------------------------
typedef struct l_buffer_box {
  L_BOX_HEAD;
  lp_buf *buf; // NULL once released or handed off
} l_buffer_box;
void l_buffer_open(lua_State *L);
void l_buffer_push(lua_State *L, lp_buf *b);  // the new box takes the reference
void l_buffer_push_lent(lua_State *L, lp_buf *b); // a box without finalizer, for a dispatch
void l_buffer_settle(lua_State *L, int idx);      // after the dispatch: finalizer if still full
lp_buf *l_buffer_check(lua_State *L, int i);  // raises when not a live Buffer
lp_buf *l_buffer_test(lua_State *L, int i);   // NULL when not a live Buffer
lp_buf *l_buffer_take(lua_State *L, int i);   // hand-off: empties the box (raises if released)
int l_buffer_new(lua_State *L);               // lupine.buffer([capacity | string])

// ---- l_future.c ----------------------------------------------------------------
void l_future_open(lua_State *L);
void l_future_push(lua_State *L, lp_future *f); // the box takes a new reference
lp_future *l_future_check(lua_State *L, int i);
lp_future *l_future_test(lua_State *L, int i);
int l_future_new(lua_State *L);                 // lupine.promise()
void l_future_listen(lua_State *L, lp_future *f, int fn); // add the Lua function at fn as a listener
// Give promise f to operation op ("write", "close", "connect") started from
// context from: raises when f is complete, or belongs to an operation and from
// is not the handler holding it (a promise serves one operation).
void l_future_take(lua_State *L, lp_future *f, const char *op, const lp_ctx *from);
// Keep the value on top (popped) as f's Lua value, unless it has one; false
// when out of memory (nothing kept). Never raises.
bool l_future_keep(lua_State *L, lp_future *f);
void l_future_drop(lp_future *f); // host hook: f is being freed, its value goes

// ---- l_resolver.c, l_idle.c ------------------------------------------------------
void l_resolver_open(lua_State *L); // adds resolve, setResolver to the module table on top
void l_idle_open(lua_State *L);     // adds _handler (idle state, read/write timeouts) to it

// ---- l_loop.c ------------------------------------------------------------------
void l_loop_open(lua_State *L);
void l_loop_push(lua_State *L, l_host *h);      // the state's loop object
// Run the loop from state L until done(L, ud) or timeout seconds; returns done.
bool l_run_until(l_host *h, lua_State *L, bool (*done)(lua_State *L, void *ud), void *ud, double timeout);

// ---- l_channel.c ----------------------------------------------------------------
void l_channel_open(lua_State *L);
void l_channel_push(lua_State *L, lp_channel *ch);
lp_channel *l_channel_check(lua_State *L, int i);
void l_channel_teardown(lp_channel *ch); // host hook: drop the strong handle
// Push an address (what: 0 "host:port", 1 host, 2 port); nothing for a non-IP family. Returns the count.
int l_push_addr(lua_State *L, const lp_sockaddr *a, int what);
int l_push_chaddr(lua_State *L, const lp_chaddr *a, int what); // a channel's address, as l_push_addr

// ---- l_server.c, l_connect.c ------------------------------------------------------
void l_server_open(lua_State *L);
int l_server_new(lua_State *L);                 // lupine.server{...}
int l_connect(lua_State *L);                    // lupine.connect{...}
// Under pcall: init(ch), with [1] init and [2] the channel as light userdata.
int l_call_init(lua_State *L);
// Build a channel for an accepted fd on h's loop, run init(ch) (the function
// referenced by init_ref) and register it; an init that raises closes only
// that channel, with a log line.
// Returns the channel (borrowed), or NULL when it was closed at once.
lp_channel *l_accept(l_host *h, int fd, const lp_sockaddr *peer, const lp_channel_config *cfg, int init_ref);
// l_file.c: lupine.File. For the value at idx: 1 when it is no File; else
// the region handed off (0) into out, or its bytes read into *out (to_buf),
// or -1 with err set (used after hand-off, a read error, FileTooShort).
extern const char l_key_file;
int l_file_to_bytes(lua_State *L, int idx, lp_bytes *out, lp_error *err);
int l_file_to_buf(lua_State *L, int idx, lp_pool *pool, lp_buf **out, lp_error *err);
// The region's length when idx is a lupine.File (raises when it was handed off or closed), else -1.
lua_Integer l_file_length(lua_State *L, int idx);
void l_file_open(lua_State *L); // the metatable, and lupine.file in the library table on top
// host (and port) to a listening address; raises "<who>: host 'x' ..." when it is none.
void l_listen_addr(lua_State *L, const char *who, const char *host, int port, lp_sockaddr *addr);
// Table t's 'mode' ("0660" or an integer): a Unix socket file's permissions, -1 absent; raises when bad.
int l_opt_mode(lua_State *L, int t, const char *who, const lp_sockaddr *addr);
// " (a server is listening on it)" for a live Unix socket (EADDRINUSE), ... or "".
const char *l_listen_why(int rc, const lp_sockaddr *addr);
// nil, "listen on <addr>[ (why)]: EADDRINUSE: ...", kind.
int l_fail_listen(lua_State *L, int rc, const lp_sockaddr *addr);

// ---- l_group.c -------------------------------------------------------------------
int l_serve(lua_State *L);                      // lupine.core.serve{...}: a group of loops
int l_cpu_count(lua_State *L);                  // lupine.cpuCount()
int l_reload(lua_State *L);                     // lupine.reload()
int l_worker_states(lua_State *L);              // lupine.workerStates()
// A state whose allocator enforces limit bytes (0: none); NULL when out of
// memory. Close it with l_closestate.
lua_State *l_newstate(size_t limit);
void l_closestate(lua_State *L);
// Set up a new state on its own thread: standard libraries, package paths (NULL: the defaults),
// lupine.core preloaded, the launcher's sources (l_preload). Raises: run it protected.
void l_state_boot(lua_State *L, const char *path, const char *cpath);
// Load an app (a file path, else a module name) and push its table; raises a
// one-line error ("file:line: message", "cannot find app 'x' ...").
int l_load_app(lua_State *L, const char *source);
// The launcher's preloader (its embedded Lua sources), run in every state it
// makes, worker states included; NULL in the plain module.
extern lua_CFunction l_preload;

// ---- l_native.c: native handlers ------------------------------------------------
// A native handler factory exposed to Lua (frame decoders, encoders, idle
// state): a userdata whose metatable is "lupine.NativeHandler" and whose memory
// starts with this header. Adding it to a pipeline calls make() for a fresh
// context (per-channel state), so one factory serves every channel.
typedef struct l_native {
  L_BOX_HEAD;
  const char *type_name;
  lp_ctx *(*make)(struct l_native *self, lp_pipeline *p, const char *name, lua_State *L);
  void (*free)(struct l_native *self); // __gc; may be NULL
} l_native;
// New factory userdata of size bytes (>= sizeof(l_native)), header zeroed, on the stack.
l_native *l_native_new(lua_State *L, size_t size, const char *type_name);
void l_native_open(lua_State *L);

// ---- l_dispatch.c: entering Lua for an event -----------------------------------------
// Push a message as a Lua value: a buffer moves into a new box (a frame marked
// LP_MSGF_STRING becomes a string), a host value is copied from its slot.
void l_push_msg(lua_State *L, lp_msg *m);
// A message from Lua: the value in stack slot idx of the host's main thread
// (the current C frame's slot there; l_enter lends a coroutine's value).
static inline lp_msg l_host_msg(int idx) {
  lp_msg m = {.kind = LP_MSG_HOST, .host = idx};
  return m;
}
// A string written to the head up to this size is copied into a buffer;
// a longer one is written in place, pinned until written.
#define L_STRING_COPY_MAX 1024
// Host hooks the core calls (installed on every loop a host drives).
extern const lp_host_ops l_host_ops;
// The core's operations for a Lua handler's context.
extern const lp_handler_ops l_lua_handler_ops;
// The events a handler table defines (through __index), as LP_MASK bits; may raise.
uint32_t l_handler_mask(lua_State *L, int h);
// Why the last handler of this thread's state failed to be added (its handlerAdded raised).
extern _Thread_local char l_added_error[LP_ERROR_MESSAGE_MAX];
// The context table of the handler running now on this thread, and its
// context (initial-exec: a plain thread-local access, not a __tls_get_addr
// call per use; the module needs 16 bytes of the static TLS glibc keeps for
// dlopen'd code).
#define L_TLS _Thread_local __attribute__((tls_model("initial-exec")))
extern L_TLS const void *l_dispatch_table;
extern L_TLS lp_ctx *l_dispatch_ctx;

// ---- l_context.c ----------------------------------------------------------------
void l_context_open(lua_State *L);
void l_context_push(lua_State *L, lp_ctx *ctx);
lp_ctx *l_context_test(lua_State *L, int i); // NULL when not a lupine.Context
// Add ctx:fireXxx-style methods (one closure per inbound event, the event id as upvalue) to the table on top.
void l_add_fire_methods(lua_State *L, lua_CFunction fn);
// Outbound calls from Lua starting at `from` (a context, or the pipeline's tail
// for channel/pipeline calls). write: (self, msg [, promise]) -> future;
// simple ops (flush, read, close [, promise]) -> self, or a future for close.
int l_outbound_write(lua_State *L, lp_ctx *from, bool flush);
int l_outbound_simple(lua_State *L, lp_ctx *from, int op);

// ---- l_pipeline.c ----------------------------------------------------------------
void l_pipeline_open(lua_State *L);
void l_pipeline_push(lua_State *L, lp_channel *ch);

// ---- l_codec.c, l_embedded.c ---------------------------------------------------------------
// Add the codec factories (core.codec) and the embedded channel functions to
// the module table on the top of the stack.
void l_codec_open(lua_State *L);
void l_embedded_open(lua_State *L);
void l_process_open(lua_State *L); // _spawn, _wait, _kill (l_process.c): the test kit's processes
void l_blocking_open(lua_State *L); // blocking: run, configure, stats and calls (l_blocking.c)
void l_ws_open(lua_State *L);       // _ws (l_ws.c): lupine.ws's native side
// l_tls.c: core.tls (server, client, info, handshake) and ch:tls(); after l_channel_open.
void l_tls_open(lua_State *L);
// lupine.connect{ tls = opts }: push the client factory for the options
// table at opts (made once per table and state; raises on a bad option), then
// add a handler from the factory at index factory first in ch's pipeline
// (host: SNI and the name to check unless opts.serverName). 0 or -errno.
void l_tls_client_factory(lua_State *L, int opts);
int l_tls_add_client(lua_State *L, int factory, lp_channel *ch, const char *host);
void l_shared_open(lua_State *L);   // shared: the process's shared dictionaries (l_shared.c)
// The dictionary of a lupine.SharedDict at i (the process's: it outlives L), or NULL.
struct lp_shdict *l_shared_test(lua_State *L, int i);
void l_broadcast_open(lua_State *L); // broadcast, subscribe, unsubscribe, setBroadcastLimit (l_broadcast.c)
void l_resp_open(lua_State *L);      // _resp: the RESP codec for lupine.redis (l_resp.c)
void l_http_open(lua_State *L);    // _http (l_http.c): lupine.http's native side
void l_co_open(lua_State *L);      // _onUnobserved, _logChannel, _coSetup (l_co.c): lua/lupine/co.lua
// The operations for a Lua handler table's context: co.lua's socket handler
// gets l_co_tail_ops (strings in, the parked receiveAny resumed natively).
const lp_handler_ops *l_handler_ops_for(lua_State *L, int hi);
extern const lp_handler_ops l_co_tail_ops;

// ---- l_udp.c: lupine.udp, lupine.datagram --------------------------------------------
void l_udp_open(lua_State *L);     // udp (callable, with open) and datagram, on the module table on top
// An LP_MSG_DGRAM as a lupine.Datagram (the message is emptied); may raise (allocation).
void l_datagram_push(lua_State *L, lp_msg *m);
// The same for a dispatch: its Buffer is lent (l_buffer_push_lent), and
// l_datagram_settle(L, idx) settles it when the handler has returned.
void l_datagram_push_lent(lua_State *L, lp_msg *m);
void l_datagram_settle(lua_State *L, int idx);
// Host hook to_datagram: a lupine.Datagram's data and recipient, or a Buffer or string without one.
int l_host_to_datagram(lp_channel *ch, lp_msg *m, lp_bytes *out, lp_sockaddr *to, bool *has_to, lp_error *err);
// Host hook to_bytes (l_dispatch.c): a Buffer handed off, a string copied or pinned.
int l_host_to_bytes(lp_channel *ch, lp_msg *m, lp_bytes *out, lp_error *err);
// The Lua memory of every state of a launcher worker (h->launcher set): the
// current one and those still draining after reloads; on the worker's thread.
size_t l_worker_memory(l_host *h);
void l_stats_open(lua_State *L);   // stats, _statsOff, _channels (l_stats.c): lupine.stats, lua/lupine/admin.lua

#endif
