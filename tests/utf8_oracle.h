// tests/utf8_oracle.h: UTF-8 validity by its definition, one code point at a
// time (shortest form, at most U+10FFFF, no surrogates): the oracle that
// tests/test_ws.c and fuzz/fuzz_ws.c hold lp_utf8_valid and the WebSocket
// decoder to. Slow and plain on purpose: it shares nothing with the code under test.
#ifndef LP_TESTS_UTF8_ORACLE_H
#define LP_TESTS_UTF8_ORACLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline bool utf8_oracle(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint32_t c = p[i];
    size_t k;
    uint32_t min;
    if (c < 0x80) { i++; continue; }
    else if ((c & 0xe0) == 0xc0) k = 1, c &= 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0) k = 2, c &= 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0) k = 3, c &= 0x07, min = 0x10000;
    else return false;
    if (n - i - 1 < k) return false;
    for (size_t j = 1; j <= k; j++) {
      if ((p[i + j] & 0xc0) != 0x80) return false;
      c = c << 6 | (p[i + j] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return false;
    i += k + 1;
  }
  return true;
}

#endif
