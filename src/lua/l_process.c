// l_process.c: child processes for the test kit (lupine.test.spawn, and through
// it spec/proc.lua): core._spawn, core._wait, core._kill.
//
// Rules it keeps:
// - A spawned program is a direct child of this process, in a process group of
//   its own (so one signal reaches everything it started), with a parent-death
//   signal (PR_SET_PDEATHSIG, SIGKILL): when the spec run dies, even by
//   SIGKILL, the kernel kills the program instead of leaving it running.
//   The signal is tied to the thread that forked (spawn from the main thread).
// - _spawn returns only once the program was exec'd (or failed to be: then it
//   returns the reason), so the parent-death signal is armed by then.
// - Between fork and exec the child makes only async-signal-safe calls: this
//   process may have threads (worker loops, c-ares).
// - Nothing but stdin, stdout and stderr reaches the program: every other
//   descriptor (listening sockets, pipes) is closed on exec.
// - Who reaps: _wait (the Lua side calls it until it has the status); a
//   program whose Process object is collected is killed and reaped there.
#include "lbind.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define SPAWN_ARGS_MAX 256 // arguments of one program, its name included
#define SPAWN_ENV_MAX 64   // variables added to the environment
#define PATH_LEN_MAX 4096

extern char **environ;

// A Lua string argument as a C string: refused if it holds a NUL.
static const char *cstring(lua_State *L, int idx, const char *what) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  if (!s) luaL_error(L, "spawn: %s must be a string or a number", what);
  if (strlen(s) != len) luaL_error(L, "spawn: %s " L_NUL_MESSAGE, what);
  return s;
}

// The file to exec for name: name itself when it holds a '/', else the first
// executable name in $PATH. false when there is none.
static bool find_program(const char *name, char *out, size_t outlen) {
  if (strchr(name, '/')) {
    if (strlen(name) >= outlen) return false;
    strcpy(out, name);
    return access(out, X_OK) == 0;
  }
  const char *path = getenv("PATH");
  if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
  while (*path) {
    const char *end = strchr(path, ':');
    size_t dirlen = end ? (size_t)(end - path) : strlen(path);
    int n = snprintf(out, outlen, "%.*s%s%s", (int)dirlen, path, dirlen ? "/" : "", name);
    if (n > 0 && (size_t)n < outlen && access(out, X_OK) == 0) return true;
    if (!end) break;
    path = end + 1;
  }
  return false;
}

static int open_out(const char *path) {
  return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
}

// In the child, after fork: set up and exec; on failure report errno through
// report (close-on-exec) and exit 127. Async-signal-safe calls only.
static void child(pid_t parent, const char *path, char *const argv[], char *const envp[], const int fds[3],
                  long nofile, int report) {
  int err = 0;
  setpgid(0, 0);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) err = errno;
  else if (getppid() != parent) _exit(127); // the parent died before the signal was armed
  // Signals as a fresh program expects them: the launcher ignores SIGPIPE and
  // worker threads block SIGINT/SIGTERM/SIGHUP; an ignored or blocked signal
  // would stay so across exec.
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  static const int reset[] = {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD};
  for (size_t i = 0; i < LP_ARRAY_LEN(reset); i++) sigaction(reset[i], &dfl, NULL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  for (int i = 0; i < 3 && !err; i++)
    if (dup2(fds[i], i) < 0) err = errno; // the copy is not close-on-exec
  if (!err && nofile > 0) {
    struct rlimit rl = {(rlim_t)nofile, (rlim_t)nofile};
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) err = errno;
  }
  if (!err) {
    close_range(3, ~0U, CLOSE_RANGE_CLOEXEC); // nothing else leaks into the program
    execve(path, argv, envp);
    err = errno;
  }
  while (write(report, &err, sizeof err) < 0 && errno == EINTR) {
  }
  _exit(127);
}

// Everything _spawn allocates, freed on every path (the Lua strings the
// pointers refer to stay on the stack until it returns).
typedef struct {
  const char *argv[SPAWN_ARGS_MAX + 1];
  char **envp;
  int fds[3];
  int report[2];
} spawn_job;

static void job_free(spawn_job *j) {
  free(j->envp);
  for (int i = 0; i < 3; i++)
    if (j->fds[i] >= 0 && (i == 0 || j->fds[i] != j->fds[i - 1])) close(j->fds[i]);
  for (int i = 0; i < 2; i++)
    if (j->report[i] >= 0) close(j->report[i]);
}

// Push nil and "what: strerror" (after freeing j); returns 2.
static int spawn_fail(lua_State *L, spawn_job *j, const char *what, int err) {
  job_free(j);
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", what, strerror(err));
  return 2;
}

// core._spawn(argv, opts) -> pid | nil, why. argv = { program, args... }
// (strings or numbers); opts: env = { NAME = value } added to this process's
// environment, stdout and stderr = file paths (created or truncated; the same
// path twice: one file for both; nil: /dev/null), nofile = a descriptor limit.
// why is "not found" when the program is not on PATH.
static int process_spawn(lua_State *L) {
  l_checktype(L, 1, LUA_TTABLE);
  if (lua_isnoneornil(L, 2)) {
    lua_settop(L, 1);
    lua_newtable(L);
  }
  l_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  spawn_job j = {.envp = NULL, .fds = {-1, -1, -1}, .report = {-1, -1}};
  lua_Integer argc = (lua_Integer)lua_rawlen(L, 1);
  if (argc < 1) return l_argerror(L, 1, "expected { program, args... }");
  if (argc > SPAWN_ARGS_MAX) return l_argerror(L, 1, "too many arguments");
  luaL_checkstack(L, (int)argc + SPAWN_ENV_MAX + 8, "spawn");
  for (lua_Integer i = 1; i <= argc; i++) {
    lua_rawgeti(L, 1, i); // stays on the stack: argv points into it
    j.argv[i - 1] = cstring(L, -1, "an argument");
  }
  j.argv[argc] = NULL;
  // The environment: this process's, each name in env replaced or added.
  int env_first = lua_gettop(L) + 1, nenv = 0;
  int envtype = lua_getfield(L, 2, "env");
  if (envtype != LUA_TNIL && envtype != LUA_TTABLE) return luaL_error(L, "spawn: env must be a table");
  if (envtype == LUA_TTABLE) {
    int t = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t)) {
      if (nenv == SPAWN_ENV_MAX) return luaL_error(L, "spawn: more than %d variables in env", SPAWN_ENV_MAX);
      if (lua_type(L, -2) != LUA_TSTRING) return luaL_error(L, "spawn: env names must be strings");
      const char *k = cstring(L, -2, "a variable name");
      if (!*k || strchr(k, '=')) return luaL_error(L, "spawn: bad variable name '%s'", k);
      const char *v = cstring(L, -1, "a variable's value");
      lua_pushfstring(L, "%s=%s", k, v);
      lua_insert(L, env_first + nenv++); // below the table, the key and the value
      t++;
      lua_pop(L, 1);
    }
  }
  lua_Integer nofile = l_opt_int(L, 2, "nofile", 0, 0, 1 << 24);
  const char *out = l_opt_string(L, 2, "stdout", NULL);
  const char *err = l_opt_string(L, 2, "stderr", NULL);
  char path[PATH_LEN_MAX];
  if (!find_program(j.argv[0], path, sizeof path)) {
    lua_pushnil(L);
    lua_pushliteral(L, "not found");
    return 2;
  }
  size_t nsys = 0;
  while (environ && environ[nsys]) nsys++;
  j.envp = malloc((nsys + (size_t)nenv + 1) * sizeof *j.envp);
  if (!j.envp) return spawn_fail(L, &j, "spawn", ENOMEM);
  size_t n = 0;
  for (size_t i = 0; i < nsys; i++) {
    bool replaced = false;
    for (int e = 0; e < nenv && !replaced; e++) {
      const char *kv = lua_tostring(L, env_first + e);
      size_t klen = (size_t)(strchr(kv, '=') - kv) + 1; // "NAME="
      replaced = strncmp(environ[i], kv, klen) == 0;
    }
    if (!replaced) j.envp[n++] = environ[i];
  }
  for (int e = 0; e < nenv; e++) j.envp[n++] = (char *)lua_tostring(L, env_first + e);
  j.envp[n] = NULL;
  if ((j.fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) return spawn_fail(L, &j, "/dev/null", errno);
  j.fds[1] = out ? open_out(out) : open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (j.fds[1] < 0) return spawn_fail(L, &j, out ? out : "/dev/null", errno);
  if (err && out && strcmp(err, out) == 0) j.fds[2] = j.fds[1];
  else if ((j.fds[2] = err ? open_out(err) : open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0)
    return spawn_fail(L, &j, err ? err : "/dev/null", errno);
  if (pipe2(j.report, O_CLOEXEC) != 0) return spawn_fail(L, &j, "pipe", errno);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return spawn_fail(L, &j, "fork", errno);
  if (pid == 0) child(parent, path, (char *const *)j.argv, j.envp, j.fds, (long)nofile, j.report[1]);
  setpgid(pid, pid); // also here: whichever runs first, the group exists when we return
  close(j.report[1]);
  j.report[1] = -1;
  int exec_err = 0;
  ssize_t got;
  while ((got = read(j.report[0], &exec_err, sizeof exec_err)) < 0 && errno == EINTR) {
  }
  if (got > 0) { // exec failed: the child exits at once
    waitpid(pid, NULL, 0);
    return spawn_fail(L, &j, j.argv[0], exec_err ? exec_err : EIO);
  }
  job_free(&j);
  lua_pushinteger(L, pid);
  return 1;
}

// core._wait(pid [, peek]) -> nil while it runs, else its status: the exit
// code, or 128 + the signal that ended it (as a shell's $?). It reaps the
// child unless peek: a zombie keeps its pid and group id taken, so the group
// can still be signalled safely.
static int process_wait(lua_State *L) {
  pid_t pid = (pid_t)l_checkinteger(L, 1);
  if (pid <= 0) return l_argerror(L, 1, "not a process id");
  siginfo_t info;
  memset(&info, 0, sizeof info);
  int flags = WEXITED | WNOHANG | (lua_toboolean(L, 2) ? WNOWAIT : 0);
  int rc;
  while ((rc = waitid(P_PID, (id_t)pid, &info, flags)) < 0 && errno == EINTR) {
  }
  if (rc < 0) return l_fail(L, -errno, "waitid");
  if (info.si_pid == 0) return 0; // still running
  lua_pushinteger(L, info.si_code == CLD_EXITED ? info.si_status : 128 + info.si_status);
  return 1;
}

static const struct {
  const char *name;
  int sig;
} signals[] = {{"TERM", SIGTERM}, {"KILL", SIGKILL}, {"INT", SIGINT},   {"HUP", SIGHUP}, {"QUIT", SIGQUIT},
               {"STOP", SIGSTOP}, {"CONT", SIGCONT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}};

// core._kill(pid, sig) -> true | nil, err: kill(2); a negative pid is a
// process group; sig is a name ("TERM", "KILL", ...) or a number.
static int process_kill(lua_State *L) {
  pid_t pid = (pid_t)l_checkinteger(L, 1);
  if (pid == 0 || pid == -1) return l_argerror(L, 1, "not a process or group id");
  int sig = -1;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    sig = (int)l_checkinteger(L, 2);
  } else {
    const char *name = l_checkstring(L, 2);
    if (strncmp(name, "SIG", 3) == 0) name += 3;
    for (size_t i = 0; i < LP_ARRAY_LEN(signals); i++)
      if (strcmp(name, signals[i].name) == 0) sig = signals[i].sig;
    if (sig < 0) return l_argerror(L, 2, "unknown signal name");
  }
  if (kill(pid, sig) != 0) return l_fail(L, -errno, "kill");
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg funcs[] = {
    {"_spawn", process_spawn},
    {"_wait", process_wait},
    {"_kill", process_kill},
    {NULL, NULL},
};

void l_process_open(lua_State *L) { luaL_setfuncs(L, funcs, 0); }
