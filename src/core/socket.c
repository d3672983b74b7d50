// socket.c: socket syscalls, non-blocking and close-on-exec from the start.
#include "socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// "unix:/path" or "unix:@name" (after the "unix:").
static int parse_unix(const char *path, lp_sockaddr *out) {
  size_t n = strlen(path);
  if (n == 0 || (path[0] == '@' && n == 1)) return -EINVAL;
  if (n > LP_UNIX_PATH_MAX) return -ENAMETOOLONG;
  out->un.sun_family = AF_UNIX;
  memcpy(out->un.sun_path, path, n);
  if (path[0] == '@') out->un.sun_path[0] = 0; // abstract: the name follows the NUL
  return 0;
}

static bool is_abstract(const lp_sockaddr *a) { return a->un.sun_path[0] == 0 && a->un.sun_path[1] != 0; }

int lp_addr_parse(const char *host, int port, lp_sockaddr *out) {
  memset(out, 0, sizeof *out);
  if (lp_addr_is_unix_text(host)) return parse_unix(host + 5, out);
  if (port < 0 || port > 65535) return -EINVAL;
  if (!host || !*host || strcmp(host, "localhost") == 0) host = "127.0.0.1";
  if (inet_pton(AF_INET, host, &out->in4.sin_addr) == 1) {
    out->in4.sin_family = AF_INET;
    out->in4.sin_port = htons((uint16_t)port);
    return 0;
  }
  const char *h = host;
  char tmp[INET6_ADDRSTRLEN + 2];
  size_t n = strlen(host);
  if (n > 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof tmp) { // "[::1]"
    memcpy(tmp, host + 1, n - 2);
    tmp[n - 2] = 0;
    h = tmp;
  }
  if (inet_pton(AF_INET6, h, &out->in6.sin6_addr) == 1) {
    out->in6.sin6_family = AF_INET6;
    out->in6.sin6_port = htons((uint16_t)port);
    return 0;
  }
  return -EINVAL;
}

socklen_t lp_addr_len(const lp_sockaddr *a) {
  if (a->sa.sa_family == AF_UNIX) {
    const char *p = a->un.sun_path;
    size_t n = p[0] ? strnlen(p, LP_UNIX_PATH_MAX) + 1 : is_abstract(a) ? 1 + strnlen(p + 1, LP_UNIX_PATH_MAX) : 0;
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
  }
  return a->sa.sa_family == AF_INET6 ? sizeof a->in6 : sizeof a->in4;
}

int lp_addr_port(const lp_sockaddr *a) {
  if (a->sa.sa_family == AF_INET) return ntohs(a->in4.sin_port);
  if (a->sa.sa_family == AF_INET6) return ntohs(a->in6.sin6_port);
  return 0;
}

const char *lp_addr_host(const lp_sockaddr *a, char *out, size_t outlen) {
  if (a->sa.sa_family == AF_UNIX) return lp_addr_format(a, out, outlen);
  out[0] = 0;
  if (a->sa.sa_family == AF_INET) inet_ntop(AF_INET, &a->in4.sin_addr, out, (socklen_t)outlen);
  else if (a->sa.sa_family == AF_INET6) inet_ntop(AF_INET6, &a->in6.sin6_addr, out, (socklen_t)outlen);
  return out;
}

const char *lp_addr_format(const lp_sockaddr *a, char *out, size_t outlen) {
  if (a->sa.sa_family == AF_UNIX) {
    const char *p = a->un.sun_path;
    if (is_abstract(a)) snprintf(out, outlen, "unix:@%.*s", (int)LP_UNIX_PATH_MAX - 1, p + 1);
    else snprintf(out, outlen, "unix:%.*s", (int)LP_UNIX_PATH_MAX, p);
    return out;
  }
  char host[INET6_ADDRSTRLEN];
  lp_addr_host(a, host, sizeof host);
  if (a->sa.sa_family == AF_INET6) snprintf(out, outlen, "[%s]:%d", host, lp_addr_port(a));
  else if (a->sa.sa_family == AF_INET) snprintf(out, outlen, "%s:%d", host, lp_addr_port(a));
  else snprintf(out, outlen, "?");
  return out;
}

int lp_sock_set_int(int fd, int level, int opt, int value) {
  return setsockopt(fd, level, opt, &value, sizeof value) == 0 ? 0 : -errno;
}

int lp_sock_get_int(int fd, int level, int opt, int *value) {
  socklen_t len = sizeof *value;
  return getsockopt(fd, level, opt, value, &len) == 0 ? 0 : -errno;
}

int lp_sock_set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
  return 0;
}

int lp_sock_listen(const lp_sockaddr *addr, int backlog, bool reuse_port) {
  lp_listen_opts o = {backlog, reuse_port, -1};
  return lp_sock_listen_opts(addr, &o, NULL);
}

// A socket file is in the way of bind: is a server behind it? A connect that
// is refused means none (the file outlived its process): remove it, 0 (bind
// again). Anything else (accepted, a full backlog, another socket type) means
// one is: -EADDRINUSE. Not a socket at all: -EEXIST, and it stays.
static int clear_stale(const lp_sockaddr *addr) {
  struct stat st;
  if (lstat(addr->un.sun_path, &st) < 0) return errno == ENOENT ? 0 : -errno; // gone meanwhile: bind again
  if (!S_ISSOCK(st.st_mode)) return -EEXIST;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int rc = connect(fd, &addr->sa, lp_addr_len(addr)) == 0 ? 0 : errno;
  close(fd);
  if (rc == ECONNREFUSED) return unlink(addr->un.sun_path) == 0 || errno == ENOENT ? 0 : -errno;
  if (rc == ENOENT) return 0;
  return -EADDRINUSE;
}

static int bind_unix(int fd, const lp_sockaddr *addr, int mode) {
  bool file = addr->un.sun_path[0] != 0;
  int rc = bind(fd, &addr->sa, lp_addr_len(addr)) == 0 ? 0 : -errno;
  if (rc == -EADDRINUSE && file && (rc = clear_stale(addr)) == 0) // one retry: a race with another starter loses
    rc = bind(fd, &addr->sa, lp_addr_len(addr)) == 0 ? 0 : -errno;
  if (!rc && file && mode >= 0 && chmod(addr->un.sun_path, (mode_t)mode) < 0) {
    rc = -errno;
    unlink(addr->un.sun_path);
  }
  return rc;
}

int lp_sock_listen_opts(const lp_sockaddr *addr, const lp_listen_opts *o, lp_unix_owner *own) {
  bool un = addr->sa.sa_family == AF_UNIX;
  if (own) own->owned = false;
  int fd = socket(addr->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int rc = 0;
  if (!un) rc = lp_sock_set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  if (!rc && o->reuse_port) rc = lp_sock_set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
  if (!rc && addr->sa.sa_family == AF_INET6) rc = lp_sock_set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0);
  if (!rc) rc = un ? bind_unix(fd, addr, o->mode) : bind(fd, &addr->sa, lp_addr_len(addr)) < 0 ? -errno : 0;
  struct stat st;
  bool file = un && addr->un.sun_path[0] != 0;
  if (!rc && file && own && stat(addr->un.sun_path, &st) == 0) {
    own->owned = true;
    own->dev = st.st_dev;
    own->ino = st.st_ino;
  }
  if (!rc && listen(fd, o->backlog > 0 ? o->backlog : SOMAXCONN) < 0) rc = -errno;
  if (rc) {
    if (own) lp_sock_unlink_owned(addr, own);
    close(fd);
    return rc;
  }
  return fd;
}

void lp_sock_unlink_owned(const lp_sockaddr *addr, lp_unix_owner *own) {
  struct stat st;
  if (!own->owned) return;
  own->owned = false;
  if (stat(addr->un.sun_path, &st) == 0 && st.st_dev == own->dev && st.st_ino == own->ino) unlink(addr->un.sun_path);
}

int lp_sock_accept(int lfd, lp_sockaddr *peer) {
  memset(peer, 0, sizeof *peer);
  socklen_t len = sizeof *peer;
  int fd = accept4(lfd, &peer->sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
  return fd >= 0 ? fd : -errno;
}

int lp_sock_connect_start(const lp_sockaddr *addr, int *fd_out) {
  int fd = socket(addr->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  *fd_out = fd;
  if (connect(fd, &addr->sa, lp_addr_len(addr)) == 0) return 0;
  return -errno;
}

int lp_sock_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -errno;
  return -err;
}

void lp_chaddr_free(lp_chaddr *d) {
  if (d->sa.sa_family == AF_UNIX) free(d->un.path);
  memset(d, 0, sizeof *d);
}

void lp_chaddr_set(lp_chaddr *d, const lp_sockaddr *a) {
  lp_chaddr_free(d);
  switch (a->sa.sa_family) {
  case AF_INET: d->in4 = a->in4; break;
  case AF_INET6: d->in6 = a->in6; break;
  case AF_UNIX:
    d->un.family = AF_UNIX;
    if (a->un.sun_path[0] || a->un.sun_path[1]) { // named (a path, or an abstract name)
      d->un.path = malloc(sizeof a->un);
      if (d->un.path) memcpy(d->un.path, &a->un, sizeof a->un);
    }
    break;
  default: break; // no address
  }
}

void lp_chaddr_get(const lp_chaddr *d, lp_sockaddr *out) {
  memset(out, 0, sizeof *out);
  switch (d->sa.sa_family) {
  case AF_INET: out->in4 = d->in4; break;
  case AF_INET6: out->in6 = d->in6; break;
  case AF_UNIX:
    if (d->un.path) out->un = *d->un.path;
    else out->un.sun_family = AF_UNIX;
    break;
  default: break;
  }
}

const char *lp_chaddr_format(const lp_chaddr *d, char *out, size_t outlen) {
  lp_sockaddr a;
  lp_chaddr_get(d, &a);
  return lp_addr_format(&a, out, outlen);
}

int lp_sock_local(int fd, lp_sockaddr *out) {
  memset(out, 0, sizeof *out);
  socklen_t len = sizeof *out;
  return getsockname(fd, &out->sa, &len) == 0 ? 0 : -errno;
}

int lp_sock_peer(int fd, lp_sockaddr *out) {
  memset(out, 0, sizeof *out);
  socklen_t len = sizeof *out;
  return getpeername(fd, &out->sa, &len) == 0 ? 0 : -errno;
}
