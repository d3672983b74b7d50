// l_file.c: lupine.File, a region of an open file for a channel to send:
// lupine.file(path_or_fd [, offset [, length]]). Written to a socket's head,
// the region is queued like any write and leaves with sendfile(2)
// (outbound.c); a native encoder in the way (TLS, the codecs) cannot take a
// file, so there its bytes are read into a buffer first (l_file_to_buf).
//
// Ownership: the box owns one descriptor (opened here, or a duplicate of the
// one given) until a write takes it, as a Buffer is handed off; from then on
// the outbound entry owns it and closes it when the region is sent or
// dropped. __gc, __close and :close() close what the box still owns.
#include "lbind.h"

#include "buffer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char l_key_file = 0;

typedef struct l_file {
  L_BOX_HEAD;
  int fd;       // -1 once handed off or closed
  uint64_t off; // the region
  uint64_t len;
} l_file;

static l_file *check_file(lua_State *L) { return l_checkudata(L, 1, &l_key_file, "lupine.File"); }

static int fail_text(lua_State *L, const char *kind, const char *text) {
  lua_pushnil(L);
  lua_pushstring(L, text);
  lua_pushstring(L, kind);
  return 3;
}

// lupine.file(path_or_fd [, offset [, length]]) -> a lupine.File, or nil,
// "open /x: ENOENT: No such file or directory", "ENOENT". length defaults to
// the rest of the file from offset.
static int file_new(lua_State *L) {
  int fd;
  char what[300];
  lua_settop(L, 3); // the box below goes to slot 4, above the arguments
  lua_Integer off = luaL_optinteger(L, 2, 0); // every argument first: nothing raises once a descriptor is open
  l_argcheck(L, off >= 0, 2, "offset must be >= 0");
  l_argcheck(L, lua_isnoneornil(L, 3) || l_checkinteger(L, 3) >= 0, 3, "length must be >= 0");
  if (lua_type(L, 1) != LUA_TNUMBER) l_checkcstring(L, 1);
  l_file *f = l_newudata(L, sizeof *f, 0, &l_key_file); // made before the open: its __gc closes what it holds
  f->fd = -1;
  if (lua_type(L, 1) == LUA_TNUMBER) {
    lua_Integer given = l_checkinteger(L, 1);
    l_argcheck(L, given >= 0 && given <= 0x7fffffff, 1, "not a file descriptor");
    fd = fcntl((int)given, F_DUPFD_CLOEXEC, 3); // ours to close; the caller's stays theirs
    snprintf(what, sizeof what, "descriptor %d", (int)given);
    if (fd < 0) return l_fail(L, -errno, what);
  } else {
    const char *path = l_checkcstring(L, 1);
    snprintf(what, sizeof what, "open %s", path);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return l_fail(L, -errno, what);
    snprintf(what, sizeof what, "%s", path);
  }
  struct stat st;
  if (fstat(fd, &st) < 0) {
    int e = errno;
    close(fd);
    return l_fail(L, -e, what);
  }
  char text[400];
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    snprintf(text, sizeof text, "lupine.file: %s is not a regular file", what);
    return fail_text(L, "EINVAL", text);
  }
  if (off > (lua_Integer)st.st_size) {
    close(fd);
    snprintf(text, sizeof text, "lupine.file: offset %lld is past the end of %s (%lld bytes)", (long long)off, what,
             (long long)st.st_size);
    return fail_text(L, "EINVAL", text);
  }
  lua_Integer len = lua_isnoneornil(L, 3) ? (lua_Integer)st.st_size - off : lua_tointeger(L, 3);
  f->fd = fd;
  f->off = (uint64_t)off;
  f->len = (uint64_t)len;
  return 1;
}

static int file_close(lua_State *L) { // __gc, __close and :close(): idempotent
  l_file *f = check_file(L);
  if (f->fd >= 0) close(f->fd);
  f->fd = -1;
  return 0;
}

// Methods from the table in upvalue 1; properties length and offset.
static int file_index(lua_State *L) {
  l_file *f = check_file(L);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  const char *k = lua_tostring(L, 2);
  if (!k) return 0;
  if (strcmp(k, "length") == 0) lua_pushinteger(L, (lua_Integer)f->len);
  else if (strcmp(k, "offset") == 0) lua_pushinteger(L, (lua_Integer)f->off);
  else return 0;
  return 1;
}

static const luaL_Reg file_methods[] = {{"close", file_close}, {NULL, NULL}};

static int file_tostring(lua_State *L) {
  l_file *f = check_file(L);
  if (f->fd < 0) lua_pushfstring(L, "lupine.File(%I bytes, written or closed)", (lua_Integer)f->len);
  else lua_pushfstring(L, "lupine.File(%I bytes from offset %I)", (lua_Integer)f->len, (lua_Integer)f->off);
  return 1;
}

static l_file *take(lua_State *L, int idx, lp_error *err) {
  l_file *f = l_testudata(L, idx, &l_key_file);
  if (f && f->fd < 0) {
    lp_error_named(err, LP_EUNSUPPORTED, "lupine.File used after it was written or closed");
    return NULL;
  }
  return f;
}

lua_Integer l_file_length(lua_State *L, int idx) {
  l_file *f = l_testudata(L, idx, &l_key_file);
  if (!f) return -1;
  if (f->fd < 0) luaL_error(L, "lupine.File used after it was written or closed");
  return (lua_Integer)f->len;
}

int l_file_to_bytes(lua_State *L, int idx, lp_bytes *out, lp_error *err) {
  if (!l_testudata(L, idx, &l_key_file)) return 1;
  l_file *f = take(L, idx, err);
  if (!f) return -1;
  out->file = true;
  out->file_fd = f->fd; // handed off: the outbound entry closes it
  out->file_off = f->off;
  out->len = (size_t)f->len;
  f->fd = -1;
  return 0;
}

int l_file_to_buf(lua_State *L, int idx, lp_pool *pool, lp_buf **out, lp_error *err) {
  if (!l_testudata(L, idx, &l_key_file)) return 1;
  l_file *f = take(L, idx, err);
  if (!f) return -1;
  int fd = f->fd;
  f->fd = -1; // handed off here too: read once, then closed
  lp_buf *b = lp_buf_new(pool, (size_t)f->len);
  size_t got = 0;
  while (b && got < f->len) {
    ssize_t n = pread(fd, b->data + got, (size_t)f->len - got, (off_t)(f->off + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n < 0) lp_error_sys(err, errno, "reading a lupine.File");
      else lp_error_named(err, LP_EFILESHORT, "the file ended with %llu bytes of the region still to read",
                          (unsigned long long)(f->len - got));
      break;
    }
    got += (size_t)n;
  }
  close(fd);
  if (!b) lp_error_sys(err, ENOMEM, "reading a lupine.File");
  if (!b || got < f->len) {
    if (b) lp_buf_unref(b);
    return -1;
  }
  b->wr = got;
  *out = b;
  return 0;
}

void l_file_open(lua_State *L) {
  l_newmetatable(L, "lupine.File", &l_key_file);
  lua_pushcfunction(L, file_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, file_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, file_tostring);
  lua_setfield(L, -2, "__tostring");
  luaL_newlib(L, file_methods);
  lua_pushcclosure(L, file_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, file_new); // into the library table on top
  lua_setfield(L, -2, "file");
}
