// test_outbound.c: the outbound buffer over a socketpair: flushed vs
// unflushed entries, gathering writes, partial writes, promise completion in
// order, pending-byte accounting (payload plus each entry's overhead), and
// failure (first reported, rest quiet); file regions (sendfile).
#include "buffer.h"
#include "check.h"
#include "future.h"
#include "outbound.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int released;
static void release_ext(void *ud, int tag) {
  (void)ud;
  released += tag;
}

static size_t drain(int fd, char *out, size_t cap) {
  size_t n = 0;
  ssize_t r;
  while (n < cap && (r = read(fd, out + n, cap - n)) > 0) n += (size_t)r;
  return n;
}

int main(void) {
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  fcntl(sv[0], F_SETFL, O_NONBLOCK);
  fcntl(sv[1], F_SETFL, O_NONBLOCK);
  lp_pool *pool = lp_pool_new();
  lp_out_cache cache = {NULL, 0};
  lp_outbound ob;
  lp_outbound_init(&ob, &cache);

  // Two buffers and one external string; nothing goes out before a flush.
  lp_future *f1 = lp_future_new(NULL), *f2 = lp_future_new(NULL), *f3 = lp_future_new(NULL);
  lp_bytes b1 = {.buf = lp_buf_from(pool, "hello ", 6)};
  lp_bytes b2 = {.buf = lp_buf_from(pool, "", 0)}; // empty writes complete in order too
  static const char ext[] = "world";
  lp_bytes b3 = {.p = (const uint8_t *)ext, .len = 5, .release = release_ext, .tag = 7};
  size_t k1 = lp_outbound_cost(&b1), k2 = lp_outbound_cost(&b2), k3 = lp_outbound_cost(&b3);
  // Each entry costs more than its payload: the entry, the buffer struct, the
  // unused rest of a buffer's own block (64 B here), a host string's pin.
  CHECK(k1 == 6 + LP_OUT_ENTRY_OVERHEAD + lp_buf_overhead(b1.buf) && k1 >= 6 + 64 + sizeof(lp_buf));
  CHECK(k2 >= LP_OUT_ENTRY_OVERHEAD + 64);
  CHECK(k3 == 5 + LP_OUT_ENTRY_OVERHEAD + LP_OUT_HOST_OVERHEAD);
  CHECK(lp_outbound_add(&ob, &b1, f1) == 0);
  CHECK(lp_outbound_add(&ob, &b2, f2) == 0);
  bool wb;
  CHECK(ob.pending == k1 + k2 && lp_outbound_payload(&ob) == 6);
  CHECK(lp_outbound_write(&ob, sv[0], &wb) == 0 && !wb); // nothing flushed yet
  lp_outbound_add_flush(&ob);
  CHECK(lp_outbound_add(&ob, &b3, f3) == 0); // after the flush: stays unflushed
  CHECK(ob.pending == k1 + k2 + k3 && ob.flushed == 2);
  CHECK(lp_outbound_write(&ob, sv[0], &wb) == 6 && !wb);
  CHECK(lp_future_ok(f1) && lp_future_ok(f2) && !lp_future_done(f3));
  CHECK(ob.pending == k3 && released == 0);
  lp_outbound_add_flush(&ob);
  CHECK(lp_outbound_write(&ob, sv[0], &wb) == 5);
  CHECK(lp_future_ok(f3) && released == 7 && ob.pending == 0 && ob.head == NULL);
  char got[64] = {0};
  CHECK(drain(sv[1], got, sizeof got) == 11 && strcmp(got, "hello world") == 0);

  // Partial writes: fill the socket; the rest waits, offsets advance.
  int small = 4096;
  setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  size_t total = 0, costs = 0;
  lp_future *big[8];
  for (int i = 0; i < 8; i++) {
    lp_bytes b = {.buf = lp_buf_new(pool, 65536)};
    memset(b.buf->data, 'a' + i, 65536);
    b.buf->wr = 65536;
    big[i] = lp_future_new(NULL);
    costs += lp_outbound_cost(&b);
    CHECK(lp_outbound_add(&ob, &b, big[i]) == 0);
    total += 65536;
  }
  CHECK(ob.pending == costs && costs > total);
  lp_outbound_add_flush(&ob);
  ssize_t w = lp_outbound_write(&ob, sv[0], &wb);
  CHECK(w > 0 && (size_t)w < total && wb);
  size_t done_entries = (size_t)w / 65536; // their overhead went with them
  CHECK(ob.pending == costs - (size_t)w - done_entries * (costs - total) / 8);
  // Drain the reader and keep writing until everything went out, in order.
  static char sink[65536 * 8];
  size_t got_n = 0;
  for (int spins = 0; ob.flushed && spins < 100000; spins++) {
    ssize_t r = read(sv[1], sink + got_n, sizeof sink - got_n);
    if (r > 0) got_n += (size_t)r;
    CHECK(lp_outbound_write(&ob, sv[0], &wb) >= 0);
  }
  got_n += drain(sv[1], sink + got_n, sizeof sink - got_n);
  CHECK(got_n == total && ob.pending == 0);
  bool ordered = true;
  for (size_t i = 0; i < total; i++) ordered &= sink[i] == (char)('a' + i / 65536);
  CHECK(ordered);
  for (int i = 0; i < 8; i++) {
    CHECK(lp_future_ok(big[i]));
    lp_future_unref(big[i]);
  }

  // Failure: the flushed entries fail (the first reported), unflushed stay.
  lp_future *g1 = lp_future_new(NULL), *g2 = lp_future_new(NULL), *g3 = lp_future_new(NULL);
  lp_bytes c1 = {.buf = lp_buf_from(pool, "a", 1)}, c2 = {.buf = lp_buf_from(pool, "b", 1)};
  lp_bytes c3 = {.p = (const uint8_t *)ext, .len = 5, .release = release_ext, .tag = 100};
  lp_outbound_add(&ob, &c1, g1);
  lp_outbound_add(&ob, &c2, g2);
  lp_outbound_add_flush(&ob);
  lp_outbound_add(&ob, &c3, g3);
  lp_error e;
  lp_error_sys(&e, EPIPE, "write");
  lp_outbound_fail(&ob, &e, true, false);
  CHECK(g1->state == LP_FUTURE_FAILED && !g1->quiet && g1->cause && g1->cause->code == -EPIPE);
  CHECK(g2->state == LP_FUTURE_FAILED && g2->quiet);
  CHECK(!lp_future_done(g3) && ob.pending == 5 + LP_OUT_ENTRY_OVERHEAD + LP_OUT_HOST_OVERHEAD && ob.flushed == 0);
  CHECK(strcmp(g1->cause->message, "write: EPIPE: Broken pipe") == 0);
  lp_error_named(&e, LP_ECLOSED, "closed");
  lp_outbound_fail(&ob, &e, false, true);
  CHECK(g3->state == LP_FUTURE_FAILED && g3->quiet && released == 107);
  CHECK(ob.head == NULL && ob.tail == NULL && ob.pending == 0);
  CHECK(strcmp(lp_error_kind(LP_ECLOSED), "ClosedChannel") == 0);

  // A flood of empty writes: each one counts, so it reaches the water marks.
  lp_bytes s1 = {.buf = lp_buf_from(pool, "0123456789abcdef", 16)};
  lp_buf *sl = lp_buf_slice(s1.buf, 4, 0); // shares the block: only its struct counts
  lp_bytes s2 = {.buf = sl};
  CHECK(lp_buf_overhead(sl) == sizeof(lp_buf) && lp_outbound_cost(&s2) == LP_OUT_ENTRY_OVERHEAD + sizeof(lp_buf));
  lp_bytes_release(&s2);
  lp_bytes_release(&s1);
  for (int i = 0; i < 1000; i++) {
    static const char none[1];
    lp_bytes z = {.p = (const uint8_t *)none, .len = 0, .release = release_ext, .tag = 0};
    CHECK(lp_outbound_add(&ob, &z, NULL) == 0);
  }
  CHECK(ob.pending == 1000 * (LP_OUT_ENTRY_OVERHEAD + LP_OUT_HOST_OVERHEAD) && lp_outbound_payload(&ob) == 0);
  lp_outbound_add_flush(&ob);
  CHECK(lp_outbound_write(&ob, sv[0], &wb) == 0 && ob.pending == 0 && ob.head == NULL); // all popped, nothing sent

  // File regions: sent with sendfile between the buffers around them, in
  // order; counted toward pending (and file_pending); a file shorter than its
  // region: LP_EFILESHORT; a failed or finished region's descriptor is closed.
  {
    int fp[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fp) == 0);
    fcntl(fp[0], F_SETFL, O_NONBLOCK);
    fcntl(fp[1], F_SETFL, O_NONBLOCK);
    char tmpl[] = "/tmp/lupine-test-outbound-XXXXXX";
    int ffd = mkstemp(tmpl);
    CHECK(ffd >= 0 && write(ffd, "0123456789", 10) == 10);
    unlink(tmpl);
    lp_future *q[3] = {lp_future_new(NULL), lp_future_new(NULL), lp_future_new(NULL)};
    lp_bytes h = {.buf = lp_buf_from(pool, "<", 1)}, t = {.buf = lp_buf_from(pool, ">", 1)};
    int rfd = dup(ffd);
    lp_bytes fr = {.file = true, .file_fd = rfd, .file_off = 2, .len = 5};
    CHECK(lp_outbound_cost(&fr) == 5 + LP_OUT_ENTRY_OVERHEAD + LP_OUT_HOST_OVERHEAD);
    CHECK(lp_outbound_add(&ob, &h, q[0]) == 0 && lp_outbound_add(&ob, &fr, q[1]) == 0 && lp_outbound_add(&ob, &t, q[2]) == 0);
    CHECK(ob.file_pending == 5 && lp_outbound_payload(&ob) == 7);
    lp_outbound_add_flush(&ob);
    for (int spins = 0; ob.flushed && spins < 10; spins++) CHECK(lp_outbound_write(&ob, fp[0], &wb) >= 0);
    char fgot[16] = {0};
    CHECK(drain(fp[1], fgot, sizeof fgot) == 7 && strcmp(fgot, "<23456>") == 0);
    CHECK(lp_future_ok(q[0]) && lp_future_ok(q[1]) && lp_future_ok(q[2]));
    CHECK(ob.pending == 0 && ob.file_pending == 0 && ob.head == NULL);
    CHECK(fcntl(rfd, F_GETFD) == -1 && errno == EBADF); // closed once sent
    for (int i = 0; i < 3; i++) lp_future_unref(q[i]);

    rfd = dup(ffd); // 5 bytes from offset 8: the file has 2 of them
    lp_bytes sh = {.file = true, .file_fd = rfd, .file_off = 8, .len = 5};
    lp_future *qs = lp_future_new(NULL);
    CHECK(lp_outbound_add(&ob, &sh, qs) == 0);
    lp_outbound_add_flush(&ob);
    CHECK(lp_outbound_write(&ob, fp[0], &wb) == 2);
    CHECK(lp_outbound_write(&ob, fp[0], &wb) == LP_EFILESHORT && ob.head && ob.head->bytes.len == 3);
    CHECK(ob.file_pending == 3);
    lp_error_named(&e, LP_EFILESHORT, "short");
    lp_outbound_fail(&ob, &e, false, false);
    CHECK(qs->state == LP_FUTURE_FAILED && strcmp(qs->cause->kind, "FileTooShort") == 0);
    CHECK(fcntl(rfd, F_GETFD) == -1 && errno == EBADF && ob.pending == 0 && ob.file_pending == 0);
    lp_future_unref(qs);
    close(ffd);
    close(fp[0]);
    close(fp[1]);
  }

  // A write error comes back as -errno.
  close(sv[1]);
  lp_bytes d = {.buf = lp_buf_from(pool, "zz", 2)};
  lp_outbound_add(&ob, &d, NULL);
  lp_outbound_add_flush(&ob);
  CHECK(lp_outbound_write(&ob, sv[0], &wb) == -EPIPE);
  lp_outbound_fail(&ob, &e, false, true);

  lp_future_unref(f1), lp_future_unref(f2), lp_future_unref(f3);
  lp_future_unref(g1), lp_future_unref(g2), lp_future_unref(g3);
  close(sv[0]);
  CHECK(cache.n > 0); // entries were reused through the cache
  lp_out_cache_drain(&cache);
  lp_pool_free(pool);
  return check_report();
}
