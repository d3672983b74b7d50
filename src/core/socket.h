// socket.h: thin wrappers over the socket calls. Every function returns 0 (or
// a descriptor) on success and -errno on failure; none logs or raises.
#ifndef LP_SOCKET_H
#define LP_SOCKET_H

#include "common.h"
#include <netinet/in.h>
#include <sys/socket.h>

typedef union lp_sockaddr {
  struct sockaddr sa;
  struct sockaddr_in in4;
  struct sockaddr_in6 in6;
} lp_sockaddr;

// Numeric address only ("127.0.0.1", "::1", "0.0.0.0"; "localhost" maps to
// 127.0.0.1); -EINVAL for anything else (names are resolved elsewhere).
int lp_addr_parse(const char *host, int port, lp_sockaddr *out);
socklen_t lp_addr_len(const lp_sockaddr *a);
int lp_addr_port(const lp_sockaddr *a);
// "127.0.0.1" / "::1" into out; returns out.
const char *lp_addr_host(const lp_sockaddr *a, char *out, size_t outlen);
// "127.0.0.1:5000" / "[::1]:5000"; returns out.
const char *lp_addr_format(const lp_sockaddr *a, char *out, size_t outlen);

int lp_sock_listen(const lp_sockaddr *addr, int backlog, bool reuse_port); // fd or -errno
int lp_sock_accept(int lfd, lp_sockaddr *peer);                             // fd or -errno
int lp_sock_connect_start(const lp_sockaddr *addr, int *fd_out);           // 0, -EINPROGRESS, or -errno
int lp_sock_error(int fd);                                                  // SO_ERROR as -errno, or 0
int lp_sock_local(int fd, lp_sockaddr *out);
int lp_sock_peer(int fd, lp_sockaddr *out);
int lp_sock_set_int(int fd, int level, int opt, int value);
int lp_sock_get_int(int fd, int level, int opt, int *value);
int lp_sock_set_nonblock(int fd);

#endif
