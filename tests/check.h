// check.h: the C unit tests' whole framework. CHECK records a failure with its
// line and goes on; check_report() prints the tally and is main's exit code.
#ifndef LP_CHECK_H
#define LP_CHECK_H

#include <stdio.h>

static int check_total, check_failed;

#define CHECK(cond)                                                          \
  do {                                                                       \
    check_total++;                                                           \
    if (!(cond)) {                                                           \
      check_failed++;                                                        \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                        \
  } while (0)

static inline int check_report(void) {
  printf("%d checks, %d failed\n", check_total, check_failed);
  return check_failed != 0 || check_total == 0;
}

#endif
