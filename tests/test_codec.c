// test_codec.c: the frame decoders, the cumulation and the prepender as pure
// functions (every input decoded whole, byte by byte, split at every one and
// every two boundaries and at random ones, with identical frames and errors),
// Netty's documented length-field layouts, limits, and the decoder handler in
// a pipeline without Lua: hand-off on removal, autoRead holding, the last
// decode at channelInactive, re-entrant input.
#include "buffer.h"
#include "channel.h"
#include "check.h"
#include "codec.h"
#include "future.h"
#include "loop.h"
#include "pipeline.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static lp_pool *pool;

// ---- pure decoding ---------------------------------------------------------------------------

// Append a printable form of p[0..n) to out.
static void show(char *out, size_t outlen, const uint8_t *p, size_t n) {
  size_t o = strlen(out);
  for (size_t i = 0; i < n && o + 5 < outlen; i++) {
    uint8_t c = p[i];
    if (c >= 32 && c < 127 && c != '|' && c != '\\') out[o++] = (char)c;
    else o += (size_t)snprintf(out + o, outlen - o, "\\%02x", c);
  }
  out[o] = 0;
}

// Decode in[0..n) fed in chunks ending at cuts[0..ncuts) (then the rest):
// the trace lists frames "[bytes]" and errors "!Kind" ("!Kind=length" when
// lengths is set), and ends with "+N" for bytes left in the cumulation.
static void run(const lp_frame_config *cfg, const uint8_t *in, size_t n, const size_t *cuts, size_t ncuts, bool lengths,
                char *out, size_t outlen) {
  lp_frame_decoder d;
  lp_frame_decoder_init(&d, cfg);
  lp_buf *cum = NULL;
  out[0] = 0;
  size_t at = 0;
  for (size_t k = 0; k <= ncuts; k++) {
    size_t end = k < ncuts && cuts[k] < n ? cuts[k] : n;
    if (end < at) continue;
    lp_buf *chunk = lp_buf_from(pool, in + at, end - at);
    at = end;
    CHECK(lp_cumulate(pool, &cum, chunk) == 0);
    for (;;) {
      size_t before = lp_buf_readable(cum);
      lp_buf *frame;
      lp_error err;
      int rc = lp_frame_decode(&d, cum, &frame, &err);
      if (rc == LP_FRAME_OK) {
        strncat(out, "[", outlen - strlen(out) - 1);
        show(out, outlen, lp_buf_rptr(frame), lp_buf_readable(frame));
        strncat(out, "]", outlen - strlen(out) - 1);
        lp_buf_unref(frame);
      } else if (rc == LP_FRAME_ERROR) {
        size_t o = strlen(out);
        if (lengths) snprintf(out + o, outlen - o, "!%s=%lld", err.kind, err.length);
        else snprintf(out + o, outlen - o, "!%s", err.kind);
      }
      if (lp_buf_readable(cum) == before && rc != LP_FRAME_OK) break;
    }
  }
  size_t o = strlen(out);
  snprintf(out + o, outlen - o, "+%zu", lp_buf_readable(cum));
  lp_buf_unref(cum);
}

#define TRACE_MAX 4096

// The trace of the whole input equals want, and every split gives the same.
static void check_splits(const lp_frame_config *cfg, const char *input, size_t n, bool lengths, const char *want) {
  static char whole[TRACE_MAX], split[TRACE_MAX];
  const uint8_t *in = (const uint8_t *)input;
  run(cfg, in, n, NULL, 0, lengths, whole, sizeof whole);
  if (want && strcmp(whole, want) != 0) fprintf(stderr, "want %s\ngot  %s\n", want, whole);
  if (want) CHECK(strcmp(whole, want) == 0);
  size_t cuts[4096];
  bool same = true;
  // byte by byte
  for (size_t i = 0; i < n && i < LP_ARRAY_LEN(cuts); i++) cuts[i] = i + 1;
  run(cfg, in, n, cuts, n < LP_ARRAY_LEN(cuts) ? n : LP_ARRAY_LEN(cuts), lengths, split, sizeof split);
  if (strcmp(split, whole) != 0) fprintf(stderr, "1-byte reads: %s\n        whole: %s\n", split, whole), same = false;
  // every one and every two boundaries
  for (size_t i = 0; i <= n && same; i++) {
    cuts[0] = i;
    run(cfg, in, n, cuts, 1, lengths, split, sizeof split);
    if (strcmp(split, whole) != 0) fprintf(stderr, "split at %zu: %s\n     whole: %s\n", i, split, whole), same = false;
    for (size_t j = i; j <= n && same && n <= 200; j++) {
      cuts[1] = j;
      run(cfg, in, n, cuts, 2, lengths, split, sizeof split);
      if (strcmp(split, whole) != 0) fprintf(stderr, "split at %zu,%zu: %s\n     whole: %s\n", i, j, split, whole), same = false;
    }
  }
  // random splits
  for (int r = 0; r < 200 && same; r++) {
    size_t k = 0, at = 0;
    while (at < n && k < LP_ARRAY_LEN(cuts)) cuts[k++] = at += 1 + (size_t)rand() % 7;
    run(cfg, in, n, cuts, k, lengths, split, sizeof split);
    if (strcmp(split, whole) != 0) fprintf(stderr, "random split: %s\n       whole: %s\n", split, whole), same = false;
  }
  CHECK(same);
}

#define S(lit) lit, sizeof lit - 1

static lp_frame_config line(size_t max, bool strip, bool fail_fast) {
  lp_frame_config c = {.kind = LP_FRAME_LINE, .max = max, .strip_delimiter = strip, .fail_fast = fail_fast};
  return c;
}

static void test_line(void) {
  lp_frame_config c = line(8, true, false);
  CHECK(lp_frame_config_check(&c, NULL, 0) == 0);
  check_splits(&c, S("abc\r\ndef\n\nxyz\r\r\n"), true, "[abc][def][][xyz\\0d]+0");
  check_splits(&c, S("12345678\r\n"), true, "[12345678]+0"); // exactly maxLength, "\r" split from "\n"
  check_splits(&c, S("no end"), true, "+6");
  c = line(8, false, false);
  check_splits(&c, S("abc\r\ndef\n"), true, "[abc\\0d\\0a][def\\0a]+0");
  // Too long, not fail-fast: one error at the end of the line, with its length; the next line decodes.
  c = line(4, true, false);
  check_splits(&c, S("ok\n123456789\r\nnext\n"), true, "[ok]!TooLongFrame=9[next]+0");
  check_splits(&c, S("12345\n\r\n1234\r\n"), true, "!TooLongFrame=5[][1234]+0");
  // Fail-fast: the error comes as soon as the limit is passed (length: what was seen).
  c = line(4, true, true);
  check_splits(&c, S("ok\n123456789\r\nnext\n"), false, "[ok]!TooLongFrame[next]+0");
  check_splits(&c, S("1234\r\r\n"), false, "!TooLongFrame+0");
  // Bounded: a line that never ends keeps at most maxLength (+ a '\r') bytes.
  lp_frame_decoder d;
  lp_frame_decoder_init(&d, &c);
  lp_buf *cum = NULL;
  int errors = 0;
  for (int i = 0; i < 1000; i++) {
    lp_buf *chunk = lp_buf_from(pool, "xxxxxxxxxxxxxx\r", 15);
    CHECK(lp_cumulate(pool, &cum, chunk) == 0);
    lp_buf *f;
    lp_error e;
    while (lp_frame_decode(&d, cum, &f, &e) == LP_FRAME_ERROR) errors++;
    CHECK(lp_buf_readable(cum) <= 5);
  }
  CHECK(errors == 1);
  CHECK(d.too_long == 1000 * 15 - 1);
  lp_buf_unref(cum);
}

static lp_frame_config delim(size_t max, bool strip, bool fail_fast, const char *const *ds) {
  lp_frame_config c = {.kind = LP_FRAME_DELIMITER, .max = max, .strip_delimiter = strip, .fail_fast = fail_fast};
  for (; *ds; ds++, c.ndelims++) {
    c.delim_len[c.ndelims] = (uint8_t)strlen(*ds);
    memcpy(c.delims[c.ndelims], *ds, strlen(*ds));
  }
  return c;
}

static void test_delimiter(void) {
  static const char *const nul[] = {"\0", NULL}; // strlen: 0, fixed below
  lp_frame_config c = delim(16, true, true, nul);
  c.delim_len[0] = 1;
  check_splits(&c, "a\0bc\0\0d", 7, true, "[a][bc][]+1");
  static const char *const crlf[] = {"\r\n", "\n", NULL};
  c = delim(16, true, true, crlf);
  check_splits(&c, S("one\r\ntwo\nthree\r\n"), true, "[one][two][three]+0");
  c = delim(16, false, true, crlf);
  check_splits(&c, S("one\r\ntwo\n"), true, "[one\\0d\\0a][two\\0a]+0");
  // Overlapping delimiters: the earliest wins, a tie goes to the first listed,
  // and a longer one that could still complete first is waited for.
  static const char *const over[] = {"abc", "b", NULL};
  c = delim(16, true, true, over);
  check_splits(&c, S("xabcyb"), true, "[x][y]+0");
  check_splits(&c, S("xab"), true, "+3");
  static const char *const tie[] = {"abc", "ab", NULL};
  c = delim(16, true, true, tie);
  check_splits(&c, S("xabcd"), true, "[x]+1");
  check_splits(&c, S("xabyab"), true, "[x]+3");
  static const char *const tie2[] = {"ab", "abc", NULL};
  c = delim(16, true, true, tie2);
  check_splits(&c, S("xabcd"), true, "[x]+2");
  static const char *const multi[] = {"--", "==", NULL};
  c = delim(4, true, false, multi);
  check_splits(&c, S("ab--123456==cd==-"), true, "[ab]!TooLongFrame=6[cd]+1");
  c = delim(4, true, true, multi);
  check_splits(&c, S("ab--123456==cd==-"), false, "[ab]!TooLongFrame[cd]+1");
  check_splits(&c, S("1234-"), true, "+5"); // exactly maxFrameLength, then a partial delimiter
  check_splits(&c, S("1234-x"), false, "!TooLongFrame+0");
}

static lp_frame_config lenfield(size_t off, int size, int64_t adj, size_t strip) {
  lp_frame_config c = {.kind = LP_FRAME_LENGTH_FIELD, .max = 1 << 20, .fail_fast = true, .length_offset = off,
                       .length_size = size, .big_endian = true, .length_adjustment = adj, .initial_strip = strip};
  return c;
}

static void test_length_field(void) {
  // Netty's documented layouts (LengthFieldBasedFrameDecoder javadoc).
  char out[TRACE_MAX];
  const char content[] = "HELLO, WORLD";
  lp_frame_config c = lenfield(0, 2, 0, 0);
  check_splits(&c, S("\x00\x0cHELLO, WORLD"), true, "[\\00\\0cHELLO, WORLD]+0");
  c = lenfield(0, 2, 0, 2); // strip the header
  check_splits(&c, S("\x00\x0cHELLO, WORLD"), true, "[HELLO, WORLD]+0");
  c = lenfield(0, 2, -2, 0); // the length counts the whole message
  check_splits(&c, S("\x00\x0eHELLO, WORLD"), true, "[\\00\\0eHELLO, WORLD]+0");
  c = lenfield(2, 3, 0, 0); // 3-byte length at the end of a 5-byte header
  check_splits(&c, S("\xca\xfe\x00\x00\x0cHELLO, WORLD"), true, "[\\ca\\fe\\00\\00\\0cHELLO, WORLD]+0");
  c = lenfield(0, 3, 2, 0); // 3-byte length at the start of a 5-byte header
  check_splits(&c, S("\x00\x00\x0c\xca\xfeHELLO, WORLD"), true, "[\\00\\00\\0c\\ca\\feHELLO, WORLD]+0");
  c = lenfield(1, 2, 1, 3); // length in the middle of a 4-byte header, strip the first field and the length
  check_splits(&c, S("\xca\x00\x0c\xfeHELLO, WORLD"), true, "[\\feHELLO, WORLD]+0");
  c = lenfield(1, 2, -3, 3); // the same, the length counting the whole message
  check_splits(&c, S("\xca\x00\x10\xfeHELLO, WORLD"), true, "[\\feHELLO, WORLD]+0");
  (void)content;
  // Widths and byte order.
  c = lenfield(0, 1, 0, 1);
  check_splits(&c, S("\x03" "abc\x00\x01z"), true, "[abc][][z]+0");
  c = lenfield(0, 4, 0, 4);
  c.big_endian = false;
  check_splits(&c, S("\x02\x00\x00\x00hi\x01\x00\x00\x00!"), true, "[hi][!]+0");
  c = lenfield(0, 8, 0, 8);
  check_splits(&c, S("\x00\x00\x00\x00\x00\x00\x00\x02ok"), true, "[ok]+0");
  // Corrupted: negative (8 bytes), or shorter than its own header; the stream goes on after the header.
  c = lenfield(0, 8, 0, 8);
  run(&c, (const uint8_t *)"\xff\xff\xff\xff\xff\xff\xff\xfe", 8, NULL, 0, true, out, sizeof out);
  CHECK(strcmp(out, "!CorruptedFrame=-1+0") == 0);
  c = lenfield(0, 2, -3, 0);
  check_splits(&c, S("\x00\x01\x00\x05hello"), true, "!CorruptedFrame=-1[\\00\\05he]+3");
  c = lenfield(0, 1, 0, 5); // initialBytesToStrip beyond the frame
  check_splits(&c, S("\x02xy\x01z"), true, "!CorruptedFrame=-1!CorruptedFrame=-1+0");
  lp_error e;
  lp_frame_decoder d;
  lp_frame_decoder_init(&d, &c);
  lp_buf *b = lp_buf_from(pool, "\x02xy", 3), *f;
  CHECK(lp_frame_decode(&d, b, &f, &e) == LP_FRAME_ERROR);
  CHECK(strcmp(e.message, "CorruptedFrame: adjusted frame length 3 is less than initialBytesToStrip 5") == 0);
  lp_buf_unref(b);
  // Too long, fail-fast and not: the error once, the frame skipped, the next decodes.
  c = lenfield(0, 1, 0, 1);
  c.max = 5;
  check_splits(&c, S("\x02ok\x09" "123456789\x02hi"), true, "[ok]!TooLongFrame=10[hi]+0");
  c.fail_fast = false;
  check_splits(&c, S("\x02ok\x09" "123456789\x02hi"), true, "[ok]!TooLongFrame=10[hi]+0");
  lp_frame_decoder_init(&d, &c);
  b = lp_buf_from(pool, "\x09" "12", 3);
  CHECK(lp_frame_decode(&d, b, &f, &e) == LP_FRAME_NONE); // not fail-fast: said when skipped
  CHECK(lp_buf_readable(b) == 0 && d.discarding && d.to_discard == 7);
  lp_buf_unref(b);
  c.fail_fast = true;
  lp_frame_decoder_init(&d, &c);
  b = lp_buf_from(pool, "\x09" "12", 3);
  CHECK(lp_frame_decode(&d, b, &f, &e) == LP_FRAME_ERROR); // fail-fast: said at once
  CHECK(strcmp(e.message, "TooLongFrame: frame of 10 bytes exceeds maxFrameLength 5, discarding it") == 0);
  CHECK(e.limit == 5 && e.length == 10 && lp_buf_readable(b) == 0);
  lp_buf_unref(b);
  // Configuration checks.
  char why[200];
  c = lenfield(0, 5, 0, 0);
  CHECK(lp_frame_config_check(&c, why, sizeof why) == -EINVAL);
  CHECK(strcmp(why, "lengthFieldLength must be 1, 2, 3, 4 or 8") == 0);
  c = lenfield(10, 4, 0, 0);
  c.max = 12;
  CHECK(lp_frame_config_check(&c, why, sizeof why) == -EINVAL);
}

static void test_fixed(void) {
  lp_frame_config c = {.kind = LP_FRAME_FIXED, .max = 3};
  check_splits(&c, S("abcdefgh"), true, "[abc][def]+2");
}

static void test_cumulate_and_prepend(void) {
  lp_buf *cum = NULL, *a = lp_buf_from(pool, "ab", 2);
  CHECK(lp_cumulate(pool, &cum, a) == 0 && cum == a); // the first buffer is taken as it is
  lp_buf *s = lp_buf_slice(cum, 0, 1); // a frame shares its storage
  cum->rd = 1;
  CHECK(lp_cumulate(pool, &cum, lp_buf_from(pool, "cd", 2)) == 0);
  CHECK(lp_buf_readable(cum) == 3 && memcmp(lp_buf_rptr(cum), "bcd", 3) == 0);
  CHECK(lp_buf_readable(s) == 1 && lp_buf_rptr(s)[0] == 'a');
  lp_buf_unref(s);
  lp_buf_unref(cum);
  lp_prepender_config pc = {.length_size = 2, .big_endian = true};
  lp_buf *out;
  lp_error e;
  CHECK(lp_prepend_length(pool, &pc, lp_buf_from(pool, "hey", 3), &out, &e) == 0);
  CHECK(lp_buf_readable(out) == 5 && memcmp(lp_buf_rptr(out), "\x00\x03hey", 5) == 0);
  lp_buf_unref(out);
  pc = (lp_prepender_config){.length_size = 4, .big_endian = false, .adjustment = 1, .includes_length = true};
  CHECK(lp_prepend_length(pool, &pc, lp_buf_from(pool, "hey", 3), &out, &e) == 0);
  CHECK(memcmp(lp_buf_rptr(out), "\x08\x00\x00\x00hey", 7) == 0);
  lp_buf_unref(out);
  pc = (lp_prepender_config){.length_size = 1, .big_endian = true};
  lp_buf *big = lp_buf_new(pool, 300);
  big->wr = 300;
  CHECK(lp_prepend_length(pool, &pc, big, &out, &e) == -1);
  CHECK(strcmp(e.message, "TooLongFrame: frame length 300 does not fit a 1-byte length field (at most 255)") == 0);
  pc.adjustment = -4;
  CHECK(lp_prepend_length(pool, &pc, lp_buf_from(pool, "abc", 3), &out, &e) == -1 && e.code == LP_ECORRUPT);
}

// ---- the handler in a pipeline --------------------------------------------------------------

static char trace[8192];
static void note(const char *s) { strncat(trace, s, sizeof trace - strlen(trace) - 1); }

static void fake_write(lp_channel *ch, lp_msg *m, lp_future *f) {
  (void)ch;
  if (m->kind == LP_MSG_BUF) {
    note("W");
    show(trace, sizeof trace, lp_buf_rptr(m->u.buf), lp_buf_readable(m->u.buf));
    note(" ");
  }
  lp_msg_release(m);
  if (f) lp_future_succeed(f);
}
static void fake_flush(lp_channel *ch) { (void)ch; }
static int reads;
static void fake_read(lp_channel *ch) { (void)ch, reads++, note("R "); }
static void fake_close(lp_channel *ch, lp_future *f) {
  lp_channel_close_now(ch);
  if (f) lp_future_succeed(f);
}
// What reaches the tail: frames as "[bytes]", read complete as ".", errors as "!Kind".
static bool fake_tail(lp_channel *ch, int ev, lp_msg *m) {
  (void)ch;
  if (ev == LP_EV_READ && m->kind == LP_MSG_BUF) {
    note("[");
    show(trace, sizeof trace, lp_buf_rptr(m->u.buf), lp_buf_readable(m->u.buf));
    note("]");
  } else if (ev == LP_EV_READ_COMPLETE) {
    note(".");
  } else if (ev == LP_EV_EXCEPTION && m->kind == LP_MSG_ERROR) {
    note("!");
    note(m->u.err->kind);
  } else if (ev == LP_EV_INACTIVE) {
    note(" inactive");
  }
  if (m) lp_msg_release(m);
  return true;
}
static const lp_transport fake_transport = {"fake", fake_write, fake_flush, fake_read, fake_close, NULL, NULL, fake_tail};

static lp_channel *new_channel(lp_loop *loop) {
  lp_channel *ch = lp_channel_new(loop, &fake_transport, -1, NULL);
  ch->flags |= LP_CH_CONNECTED;
  lp_channel_register(ch);
  return ch;
}

static void feed(lp_channel *ch, const char *s) {
  lp_msg m = lp_msg_buf(lp_buf_from(ch->loop->pool, s, strlen(s)));
  lp_channel_fire(ch, LP_EV_READ, &m);
  lp_channel_fire(ch, LP_EV_READ_COMPLETE, NULL);
}

// A handler that removes the decoder named "dec" when it sees a frame "UPGRADE".
static void upgrader_inbound(lp_ctx *ctx, int ev, lp_msg *m) {
  if (ev == LP_EV_READ && m->kind == LP_MSG_BUF && lp_buf_readable(m->u.buf) == 7 &&
      memcmp(lp_buf_rptr(m->u.buf), "UPGRADE", 7) == 0) {
    note("<up>");
    lp_pipeline_remove(ctx->pipeline, lp_pipeline_get(ctx->pipeline, "dec"));
  }
  lp_ctx_fire(ctx, ev, m);
}
static const lp_handler_ops upgrader_ops = {"upgrader", LP_MASK(LP_EV_READ), NULL, NULL, upgrader_inbound, NULL, NULL};

// A handler that fires bytes into the pipeline again (from the head) on frame "AGAIN".
static void again_inbound(lp_ctx *ctx, int ev, lp_msg *m) {
  if (ev == LP_EV_READ && m->kind == LP_MSG_BUF && lp_buf_readable(m->u.buf) == 5 &&
      memcmp(lp_buf_rptr(m->u.buf), "AGAIN", 5) == 0) {
    lp_msg again = lp_msg_buf(lp_buf_from(ctx->pipeline->channel->loop->pool, "x\ny", 3));
    lp_pipeline_fire(ctx->pipeline, LP_EV_READ, &again);
  }
  lp_ctx_fire(ctx, ev, m);
}
static const lp_handler_ops again_ops = {"again", LP_MASK(LP_EV_READ), NULL, NULL, again_inbound, NULL, NULL};

static void test_handler(void) {
  lp_loop *loop = lp_loop_new(0);
  lp_frame_config lc = line(64, true, false);
  // Frames in order; a partial line waits; the rest of the input at channelInactive is dropped.
  lp_channel *ch = new_channel(loop);
  lp_pipeline_add(&ch->pipeline, LP_ADD_LAST, NULL, lp_frame_decoder_ctx_new(&ch->pipeline, "dec", &lc, false));
  trace[0] = 0;
  feed(ch, "a\nb");
  feed(ch, "c\nd");
  CHECK(strcmp(trace, "[a].[bc].") == 0);
  lp_channel_close_now(ch);
  lp_loop_run_tasks(loop);
  CHECK(strcmp(trace, "[a].[bc]. inactive") == 0);

  // Removed by the handler it fired to: the frames already decoded, then the
  // bytes after them, go to the next handler.
  ch = new_channel(loop);
  lp_pipeline_add(&ch->pipeline, LP_ADD_LAST, NULL, lp_frame_decoder_ctx_new(&ch->pipeline, "dec", &lc, false));
  lp_pipeline_add(&ch->pipeline, LP_ADD_LAST, NULL, lp_ctx_new(&ch->pipeline, &upgrader_ops, NULL, "up"));
  trace[0] = 0;
  feed(ch, "x\nUPGRADE\nraw\nbytes");
  CHECK(strcmp(trace, "[x]<up>[UPGRADE][raw\\0abytes]..") == 0);
  CHECK(ch->pipeline.count == 1);
  feed(ch, "more\n");
  CHECK(strcmp(trace, "[x]<up>[UPGRADE][raw\\0abytes]..[more\\0a].") == 0);
  lp_channel_close_now(ch);
  lp_loop_run_tasks(loop);

  // Replaced: the new decoder gets the old one's cumulation.
  ch = new_channel(loop);
  lp_frame_config fc = {.kind = LP_FRAME_FIXED, .max = 2};
  lp_pipeline_add(&ch->pipeline, LP_ADD_LAST, NULL, lp_frame_decoder_ctx_new(&ch->pipeline, "dec", &lc, false));
  trace[0] = 0;
  feed(ch, "line\nabcde");
  lp_pipeline_replace(&ch->pipeline, lp_pipeline_get(&ch->pipeline, "dec"),
                      lp_frame_decoder_ctx_new(&ch->pipeline, "fixed", &fc, false));
  CHECK(strcmp(trace, "[line].[ab][cd].") == 0);
  lp_channel_close_now(ch);
  lp_loop_run_tasks(loop);

  // Bytes fired into the pipeline by a handler the decoder fired to wait for the step to end.
  ch = new_channel(loop);
  lp_pipeline_add(&ch->pipeline, LP_ADD_LAST, NULL, lp_frame_decoder_ctx_new(&ch->pipeline, "dec", &lc, false));
  lp_pipeline_add(&ch->pipeline, LP_ADD_LAST, NULL, lp_ctx_new(&ch->pipeline, &again_ops, NULL, "again"));
  trace[0] = 0;
  feed(ch, "AGAIN\nz\n");
  CHECK(strcmp(trace, "[AGAIN][z][x].") == 0);
  feed(ch, "\n");
  CHECK(strcmp(trace, "[AGAIN][z][x].[y].") == 0);
  lp_channel_close_now(ch);
  lp_loop_run_tasks(loop);

  // autoRead off: one message per read() demand, the rest held until asked for.
  ch = new_channel(loop);
  ch->config.auto_read = false;
  lp_pipeline_add(&ch->pipeline, LP_ADD_LAST, NULL, lp_frame_decoder_ctx_new(&ch->pipeline, "dec", &lc, false));
  trace[0] = 0;
  reads = 0;
  feed(ch, "1\n2\n3\n");
  CHECK(strcmp(trace, "[1].") == 0);
  lp_channel_read(ch); // served from what is held, in a task, not from the socket
  lp_channel_read(ch);
  CHECK(strcmp(trace, "[1].") == 0 && reads == 0);
  lp_loop_run_tasks(loop);
  CHECK(strcmp(trace, "[1].[2][3].") == 0 && reads == 0);
  lp_channel_read(ch); // nothing held: the socket reads
  CHECK(reads == 1);
  feed(ch, "4"); // no whole frame for that read: read on
  CHECK(reads == 2 && strcmp(trace, "[1].[2][3].R R .") == 0);
  feed(ch, "\n5\n");
  CHECK(strcmp(trace, "[1].[2][3].R R .[4].") == 0);
  feed(ch, "6\n");
  CHECK(strcmp(trace, "[1].[2][3].R R .[4].[5].") == 0);
  lp_channel_set_auto_read(ch, true); // reading on again: everything held goes out
  lp_loop_run_tasks(loop);
  CHECK(strcmp(trace, "[1].[2][3].R R .[4].[5].R [6].") == 0);
  ch->config.auto_read = false;
  feed(ch, "7\n8\n");
  lp_channel_close_now(ch); // the input ended: what is held is delivered
  lp_loop_run_tasks(loop);
  CHECK(strcmp(trace, "[1].[2][3].R R .[4].[5].R [6].[7].[8]. inactive") == 0);

  // Errors go on as exceptionCaught, the stream after them decodes.
  ch = new_channel(loop);
  lc = line(3, true, true);
  lp_pipeline_add(&ch->pipeline, LP_ADD_LAST, NULL, lp_frame_decoder_ctx_new(&ch->pipeline, "dec", &lc, false));
  trace[0] = 0;
  feed(ch, "toolong");
  feed(ch, "still\nok\n");
  CHECK(strcmp(trace, "!TooLongFrame.[ok].") == 0);
  lp_channel_close_now(ch);
  lp_loop_run_tasks(loop);

  // The prepender.
  ch = new_channel(loop);
  lp_prepender_config pc = {.length_size = 1, .big_endian = true};
  lp_pipeline_add(&ch->pipeline, LP_ADD_LAST, NULL, lp_prepender_ctx_new(&ch->pipeline, "pre", &pc));
  trace[0] = 0;
  lp_msg m = lp_msg_buf(lp_buf_from(loop->pool, "hi", 2));
  lp_channel_write(ch, &m, NULL);
  CHECK(strcmp(trace, "W\\02hi ") == 0);
  lp_channel_close_now(ch);
  lp_loop_run_tasks(loop);

  lp_loop_free(loop);
}

int main(void) {
  srand(7);
  pool = lp_pool_new();
  test_line();
  test_delimiter();
  test_length_field();
  test_fixed();
  test_cumulate_and_prepend();
  test_handler();
  CHECK(lp_pool_live(pool) == 0); // every frame and cumulation released
  lp_pool_free(pool);
  return check_report();
}
