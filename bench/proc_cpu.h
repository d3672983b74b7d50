// proc_cpu.h: the CPU time of another process, for the load generators
// (loadgen, linegen) to measure the server over exactly their own window.
#ifndef BENCH_PROC_CPU_H
#define BENCH_PROC_CPU_H

#include <stdio.h>
#include <string.h>
#include <unistd.h>

// utime+stime of a process (all threads, live and exited), in seconds; -1 when unreadable.
static inline double proc_cpu_s(int pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')'); // the command name may hold spaces and parentheses
  unsigned long long ut, st;
  // after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
  if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

#endif
