// ref_args.h: the command line of the reference servers (ref_echo,
// ref_udp_echo): `NAME [-p PORT]`, PORT 0..65535 (0: any free port).
#ifndef BENCH_REF_ARGS_H
#define BENCH_REF_ARGS_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

// The port asked for, or -1 after printing why the command line is wrong.
static inline int ref_port(int argc, char **argv, const char *name) {
  int port = 0, opt;
  while ((opt = getopt(argc, argv, "p:")) != -1) {
    char *end;
    long v;
    switch (opt) {
    case 'p':
      v = strtol(optarg, &end, 10);
      if (*optarg == '\0' || *end || v < 0 || v > 65535) {
        fprintf(stderr, "%s: invalid port '%s' (0..65535)\n", name, optarg);
        return -1;
      }
      port = (int)v;
      break;
    default: fprintf(stderr, "usage: %s [-p PORT]\n", name); return -1;
    }
  }
  return port;
}

#endif
