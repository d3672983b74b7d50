// socket.c: socket syscalls, non-blocking and close-on-exec from the start.
#include "socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int lp_addr_parse(const char *host, int port, lp_sockaddr *out) {
  memset(out, 0, sizeof *out);
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
  return a->sa.sa_family == AF_INET6 ? sizeof a->in6 : sizeof a->in4;
}

int lp_addr_port(const lp_sockaddr *a) {
  if (a->sa.sa_family == AF_INET) return ntohs(a->in4.sin_port);
  if (a->sa.sa_family == AF_INET6) return ntohs(a->in6.sin6_port);
  return 0;
}

const char *lp_addr_host(const lp_sockaddr *a, char *out, size_t outlen) {
  out[0] = 0;
  if (a->sa.sa_family == AF_INET) inet_ntop(AF_INET, &a->in4.sin_addr, out, (socklen_t)outlen);
  else if (a->sa.sa_family == AF_INET6) inet_ntop(AF_INET6, &a->in6.sin6_addr, out, (socklen_t)outlen);
  return out;
}

const char *lp_addr_format(const lp_sockaddr *a, char *out, size_t outlen) {
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
  int fd = socket(addr->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int rc = lp_sock_set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  if (!rc && reuse_port) rc = lp_sock_set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
  if (!rc && addr->sa.sa_family == AF_INET6) rc = lp_sock_set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0);
  if (!rc && bind(fd, &addr->sa, lp_addr_len(addr)) < 0) rc = -errno;
  if (!rc && listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0) rc = -errno;
  if (rc) {
    close(fd);
    return rc;
  }
  return fd;
}

int lp_sock_accept(int lfd, lp_sockaddr *peer) {
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

int lp_sock_local(int fd, lp_sockaddr *out) {
  socklen_t len = sizeof *out;
  return getsockname(fd, &out->sa, &len) == 0 ? 0 : -errno;
}

int lp_sock_peer(int fd, lp_sockaddr *out) {
  socklen_t len = sizeof *out;
  return getpeername(fd, &out->sa, &len) == 0 ? 0 : -errno;
}
