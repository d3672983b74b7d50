// socket.h: thin wrappers over the socket calls. Every function returns 0 (or
// a descriptor) on success and -errno on failure; none logs or raises.
#ifndef LP_SOCKET_H
#define LP_SOCKET_H

#include "common.h"
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

// Unix domain addresses keep the rest of sun_path zeroed: their length is
// derived from the path (a file path ends at its NUL; an abstract name,
// sun_path[0] == 0, is the bytes after it up to the first NUL, so abstract
// names with NUL bytes in them are not supported). An accepted connection's
// peer is usually unnamed: AF_UNIX with an empty path.
typedef union lp_sockaddr {
  struct sockaddr sa;
  struct sockaddr_in in4;
  struct sockaddr_in6 in6;
  struct sockaddr_un un;
} lp_sockaddr;

// Room for any formatted address: "unix:" and a 107-byte path, or "[v6]:port".
#define LP_ADDR_STRLEN 120
#define LP_UNIX_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

// Numeric address only ("127.0.0.1", "::1", "0.0.0.0"; "localhost" maps to
// 127.0.0.1), or a Unix domain socket: "unix:/path" (a file) or "unix:@name"
// (Linux's abstract namespace; port ignored). -EINVAL for anything else (names
// are resolved elsewhere), -ENAMETOOLONG for a path over LP_UNIX_PATH_MAX.
int lp_addr_parse(const char *host, int port, lp_sockaddr *out);
static inline bool lp_addr_is_unix_text(const char *host) {
  return host && host[0] == 'u' && host[1] == 'n' && host[2] == 'i' && host[3] == 'x' && host[4] == ':';
}
socklen_t lp_addr_len(const lp_sockaddr *a);
int lp_addr_port(const lp_sockaddr *a); // 0 for Unix domain addresses
// "127.0.0.1" / "::1" (Unix: as lp_addr_format) into out; returns out.
const char *lp_addr_host(const lp_sockaddr *a, char *out, size_t outlen);
// "127.0.0.1:5000" / "[::1]:5000" / "unix:/path" / "unix:@name" / "unix:"
// (an unnamed peer); returns out.
const char *lp_addr_format(const lp_sockaddr *a, char *out, size_t outlen);

// A channel's address, kept small (every channel holds two): an IP address in
// place; a Unix domain address, rarer and 110 bytes, out of line in a copy the
// lp_chaddr owns (NULL for an unnamed peer, or when the copy could not be made:
// it prints as "unix:"). Zeroed: no address (family 0).
typedef union lp_chaddr {
  struct sockaddr sa;
  struct sockaddr_in in4;
  struct sockaddr_in6 in6;
  struct {
    sa_family_t family; // AF_UNIX
    struct sockaddr_un *path;
  } un;
} lp_chaddr;

void lp_chaddr_set(lp_chaddr *d, const lp_sockaddr *a); // replaces (and frees) what d held
void lp_chaddr_get(const lp_chaddr *d, lp_sockaddr *out);
void lp_chaddr_free(lp_chaddr *d);
const char *lp_chaddr_format(const lp_chaddr *d, char *out, size_t outlen); // as lp_addr_format
static inline sa_family_t lp_chaddr_family(const lp_chaddr *d) { return d->sa.sa_family; }

// How to listen. mode: a Unix socket file's permissions (chmod before
// listen(), so no connection is taken under the umask's), -1: leave them.
typedef struct lp_listen_opts {
  int backlog;
  bool reuse_port;
  int mode;
} lp_listen_opts;

// A Unix socket file this process bound: removed on close only while the path
// still names it (dev/ino), never a file someone else put there since.
typedef struct lp_unix_owner {
  bool owned;
  dev_t dev;
  ino_t ino;
} lp_unix_owner;

int lp_sock_listen(const lp_sockaddr *addr, int backlog, bool reuse_port); // fd or -errno
// The same with options; for a Unix socket file: a stale file (a socket no
// server answers on: ECONNREFUSED) is removed and bound again; a live one is
// -EADDRINUSE, a file that is not a socket -EEXIST. own (may be NULL) records
// the file bound, for lp_sock_unlink_owned.
int lp_sock_listen_opts(const lp_sockaddr *addr, const lp_listen_opts *o, lp_unix_owner *own);
// Remove the socket file addr names if it is still the one in own.
void lp_sock_unlink_owned(const lp_sockaddr *addr, lp_unix_owner *own);
int lp_sock_accept(int lfd, lp_sockaddr *peer);                             // fd or -errno
int lp_sock_connect_start(const lp_sockaddr *addr, int *fd_out);           // 0, -EINPROGRESS, or -errno
int lp_sock_error(int fd);                                                  // SO_ERROR as -errno, or 0
int lp_sock_local(int fd, lp_sockaddr *out);
int lp_sock_peer(int fd, lp_sockaddr *out);
int lp_sock_set_int(int fd, int level, int opt, int value);
int lp_sock_get_int(int fd, int level, int opt, int *value);
int lp_sock_set_nonblock(int fd);

#endif
