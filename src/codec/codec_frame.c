// codec_frame.c: frame decoders (line, delimiter, length field, fixed length),
// the cumulation step and the length-field prepender, as pure functions over
// buffers: no pipeline, loop or host, so the C tests and fuzz/ drive them
// directly.
//
// Rules every decoder keeps:
// - The frames do not depend on how the stream was split into reads: a
//   possible start of a delimiter at the end of the input is never taken for
//   frame bytes (nor discarded), and a shorter delimiter does not win over one
//   that could still complete at the same or an earlier position.
// - A frame over the limit is an error (TooLongFrame, with limit and length);
//   its bytes are skipped up to the next boundary, so what follows decodes. The
//   input kept never grows past the limit (plus a partial delimiter): bytes of
//   a frame already known to be too long are dropped as they come.
// - With failFast the error fires when the limit is first passed; without, when
//   the end of the bad frame is reached (then with its full length).
#include "codec.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static bool width_ok(int w) { return w == 1 || w == 2 || w == 3 || w == 4 || w == 8; }

static int why(char *out, size_t len, const char *fmt, ...) LP_PRINTF(3, 4);
static int why(char *out, size_t len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (out && len) vsnprintf(out, len, fmt, ap);
  va_end(ap);
  return -EINVAL;
}

int lp_frame_config_check(const lp_frame_config *c, char *w, size_t wl) {
  switch (c->kind) {
  case LP_FRAME_LINE:
    if (c->max < 1 || c->max > LP_FRAME_LIMIT_MAX) return why(w, wl, "maxLength must be from 1 to %zu", LP_FRAME_LIMIT_MAX);
    return 0;
  case LP_FRAME_DELIMITER:
    if (c->max < 1 || c->max > LP_FRAME_LIMIT_MAX)
      return why(w, wl, "maxFrameLength must be from 1 to %zu", LP_FRAME_LIMIT_MAX);
    if (c->ndelims < 1 || c->ndelims > LP_FRAME_MAX_DELIMITERS)
      return why(w, wl, "delimiters: give 1 to %d delimiters", LP_FRAME_MAX_DELIMITERS);
    for (int i = 0; i < c->ndelims; i++)
      if (c->delim_len[i] < 1 || c->delim_len[i] > LP_FRAME_MAX_DELIMITER_LEN)
        return why(w, wl, "delimiters: each must be 1 to %d bytes", LP_FRAME_MAX_DELIMITER_LEN);
    return 0;
  case LP_FRAME_LENGTH_FIELD:
    if (c->max < 1 || c->max > LP_FRAME_LIMIT_MAX)
      return why(w, wl, "maxFrameLength must be from 1 to %zu", LP_FRAME_LIMIT_MAX);
    if (!width_ok(c->length_size)) return why(w, wl, "lengthFieldLength must be 1, 2, 3, 4 or 8");
    if (c->max < (size_t)c->length_size || c->length_offset > c->max - (size_t)c->length_size)
      return why(w, wl, "maxFrameLength (%zu) must be at least lengthFieldOffset + lengthFieldLength (%zu)", c->max,
                 c->length_offset + (size_t)c->length_size);
    if (c->initial_strip > LP_FRAME_LIMIT_MAX) return why(w, wl, "initialBytesToStrip is too large");
    if (c->length_adjustment > (int64_t)LP_FRAME_LIMIT_MAX || c->length_adjustment < -(int64_t)LP_FRAME_LIMIT_MAX)
      return why(w, wl, "lengthAdjustment must be within +-%zu", LP_FRAME_LIMIT_MAX);
    return 0;
  case LP_FRAME_FIXED:
    if (c->max < 1 || c->max > LP_FRAME_LIMIT_MAX) return why(w, wl, "frameLength must be from 1 to %zu", LP_FRAME_LIMIT_MAX);
    return 0;
  default: return why(w, wl, "unknown frame decoder kind %d", c->kind);
  }
}

void lp_frame_decoder_init(lp_frame_decoder *d, const lp_frame_config *cfg) {
  memset(d, 0, sizeof *d);
  d->cfg = *cfg;
}

static int take(lp_buf *in, size_t len, size_t skip_after, lp_buf **frame, lp_error *err) {
  lp_buf *f = lp_buf_slice(in, in->rd, len);
  if (!f) {
    lp_error_sys(err, ENOMEM, "frame");
    return LP_FRAME_ERROR;
  }
  in->rd += len + skip_after;
  *frame = f;
  return LP_FRAME_OK;
}

static int too_long(lp_error *err, uint64_t length, size_t limit, const char *what) {
  lp_error_named(err, LP_ETOOLONG, "%s", what);
  err->limit = (long long)limit;
  err->length = length > (uint64_t)INT64_MAX ? INT64_MAX : (long long)length;
  return LP_FRAME_ERROR;
}

// ---- line ----------------------------------------------------------------------------

static int line_decode(lp_frame_decoder *d, lp_buf *in, lp_buf **frame, lp_error *err) {
  const lp_frame_config *c = &d->cfg;
  const uint8_t *p = lp_buf_rptr(in);
  size_t n = lp_buf_readable(in);
  const uint8_t *nl = n > d->scanned ? memchr(p + d->scanned, '\n', n - d->scanned) : NULL;
  char text[LP_ERROR_MESSAGE_MAX];
  if (nl) {
    size_t eol = (size_t)(nl - p), dl = 1;
    if (eol > 0 && p[eol - 1] == '\r') eol--, dl = 2;
    d->scanned = 0;
    if (d->discarding) { // the end of a line over the limit
      uint64_t len = d->too_long + eol;
      in->rd += eol + dl;
      d->discarding = false;
      d->too_long = 0;
      if (c->fail_fast) return LP_FRAME_NONE; // reported when it began
      snprintf(text, sizeof text, "line of %" PRIu64 " bytes exceeds maxLength %zu", len, c->max);
      return too_long(err, len, c->max, text);
    }
    if (eol > c->max) {
      in->rd += eol + dl;
      snprintf(text, sizeof text, "line of %zu bytes exceeds maxLength %zu", eol, c->max);
      return too_long(err, eol, c->max, text);
    }
    return take(in, c->strip_delimiter ? eol : eol + dl, c->strip_delimiter ? dl : 0, frame, err);
  }
  // No end of line yet. A '\r' at the end may begin "\r\n": not line bytes yet.
  size_t keep = n > 0 && p[n - 1] == '\r';
  size_t sure = n - keep;
  d->scanned = n;
  if (d->discarding) {
    d->too_long += sure;
    in->rd += sure;
    d->scanned = keep;
    return LP_FRAME_NONE;
  }
  if (sure > c->max) {
    d->discarding = true;
    d->too_long = sure;
    in->rd += sure;
    d->scanned = keep;
    if (!c->fail_fast) return LP_FRAME_NONE;
    snprintf(text, sizeof text, "line exceeds maxLength %zu (%zu bytes so far), discarding to the next end of line",
             c->max, sure);
    return too_long(err, sure, c->max, text);
  }
  return LP_FRAME_NONE;
}

// ---- delimiters --------------------------------------------------------------------------

// Whether delimiter i could begin at offset q of p[0..n) and run past n.
static bool partial_at(const lp_frame_config *c, int i, const uint8_t *p, size_t n, size_t q) {
  size_t rest = n - q;
  return rest < c->delim_len[i] && memcmp(p + q, c->delims[i], rest) == 0;
}

static int delimiter_decode(lp_frame_decoder *d, lp_buf *in, lp_buf **frame, lp_error *err) {
  const lp_frame_config *c = &d->cfg;
  const uint8_t *p = lp_buf_rptr(in);
  size_t n = lp_buf_readable(in);
  size_t maxd = 0;
  for (int i = 0; i < c->ndelims; i++)
    if (c->delim_len[i] > maxd) maxd = c->delim_len[i];
  // The earliest complete delimiter; on a tie the first in the list (Netty's rule).
  size_t pos = SIZE_MAX;
  int best = -1;
  size_t from = d->scanned < n ? d->scanned : n;
  for (int i = 0; i < c->ndelims; i++) {
    size_t end = pos == SIZE_MAX ? n : pos + c->delim_len[i]; // no later match can win
    if (end > n) end = n;
    if (end <= from || end - from < c->delim_len[i]) continue;
    const uint8_t *m = memmem(p + from, end - from, c->delims[i], c->delim_len[i]);
    if (m && (size_t)(m - p) < pos) {
      pos = (size_t)(m - p);
      best = i;
    }
  }
  // Where a delimiter could still begin, completed by bytes not here yet:
  // before (or at, for one ahead in the list) the match, that one may win.
  size_t tail = n >= maxd ? n - maxd + 1 : 0;
  if (tail < from) tail = from;
  size_t limit = pos == SIZE_MAX ? n : pos;
  size_t partial = SIZE_MAX;
  for (size_t q = tail; q <= limit && q < n && partial == SIZE_MAX; q++)
    for (int i = 0; i < c->ndelims; i++)
      if (partial_at(c, i, p, n, q) && (q < pos || i < best)) {
        partial = q;
        break;
      }
  char text[LP_ERROR_MESSAGE_MAX];
  if (best >= 0 && partial == SIZE_MAX) {
    size_t dl = c->delim_len[best];
    d->scanned = 0;
    if (d->discarding) {
      uint64_t len = d->too_long + pos;
      in->rd += pos + dl;
      d->discarding = false;
      d->too_long = 0;
      if (c->fail_fast) return LP_FRAME_NONE;
      snprintf(text, sizeof text, "frame of %" PRIu64 " bytes exceeds maxFrameLength %zu", len, c->max);
      return too_long(err, len, c->max, text);
    }
    if (pos > c->max) {
      in->rd += pos + dl;
      snprintf(text, sizeof text, "frame of %zu bytes exceeds maxFrameLength %zu", pos, c->max);
      return too_long(err, pos, c->max, text);
    }
    return take(in, c->strip_delimiter ? pos : pos + dl, c->strip_delimiter ? dl : 0, frame, err);
  }
  // No frame yet: the bytes before the first place where a delimiter could
  // still begin surely belong to it.
  size_t sure = partial != SIZE_MAX ? partial : n;
  d->scanned = sure; // a complete delimiter starts nowhere before here
  if (d->discarding) {
    d->too_long += sure;
    in->rd += sure;
    d->scanned = 0;
    return LP_FRAME_NONE;
  }
  if (sure > c->max) {
    d->discarding = true;
    d->too_long = sure;
    in->rd += sure;
    d->scanned = 0;
    if (!c->fail_fast) return LP_FRAME_NONE;
    snprintf(text, sizeof text, "frame exceeds maxFrameLength %zu (%zu bytes so far), discarding to the next delimiter",
             c->max, sure);
    return too_long(err, sure, c->max, text);
  }
  return LP_FRAME_NONE;
}

// ---- length field ----------------------------------------------------------------------

static int corrupt(lp_buf *in, size_t skip, lp_error *err, const char *fmt, long long a, long long b) {
  size_t n = lp_buf_readable(in);
  in->rd += skip < n ? skip : n;
  lp_error_named(err, LP_ECORRUPT, fmt, a, b);
  return LP_FRAME_ERROR;
}

static int length_too_long(lp_frame_decoder *d, uint64_t len, bool discarding, lp_error *err) {
  char text[LP_ERROR_MESSAGE_MAX];
  snprintf(text, sizeof text, "frame of %" PRIu64 " bytes exceeds maxFrameLength %zu%s", len, d->cfg.max,
           discarding ? ", discarding it" : "");
  return too_long(err, len, d->cfg.max, text);
}

static int length_decode(lp_frame_decoder *d, lp_buf *in, lp_buf **frame, lp_error *err) {
  const lp_frame_config *c = &d->cfg;
  size_t n = lp_buf_readable(in);
  if (d->discarding) {
    size_t k = d->to_discard < n ? (size_t)d->to_discard : n;
    in->rd += k;
    d->to_discard -= k;
    if (d->to_discard) return LP_FRAME_NONE;
    d->discarding = false;
    uint64_t len = d->too_long;
    d->too_long = 0;
    if (c->fail_fast) return LP_FRAME_NONE; // reported when it began
    return length_too_long(d, len, false, err);
  }
  size_t end = c->length_offset + (size_t)c->length_size; // lengthFieldEndOffset
  if (n < end) return LP_FRAME_NONE;
  uint64_t raw = lp_load_uint(lp_buf_rptr(in) + c->length_offset, c->length_size, c->big_endian);
  if (raw > (uint64_t)INT64_MAX)
    return corrupt(in, end, err, "negative length field %lld (at lengthFieldOffset %lld)", (long long)(int64_t)raw,
                   (long long)c->length_offset);
  int64_t len;
  if (__builtin_add_overflow((int64_t)raw, c->length_adjustment, &len) || __builtin_add_overflow(len, (int64_t)end, &len))
    return corrupt(in, end, err, "length field %lld overflows with lengthAdjustment %lld", (long long)raw,
                   (long long)c->length_adjustment);
  if (len < (int64_t)end)
    return corrupt(in, end, err, "adjusted frame length %lld is less than lengthFieldOffset + lengthFieldLength (%lld)",
                   (long long)len, (long long)end);
  if ((uint64_t)len > c->max) {
    if ((uint64_t)len <= n) { // all of it is here: skip it
      in->rd += (size_t)len;
      return length_too_long(d, (uint64_t)len, false, err);
    }
    d->discarding = true;
    d->too_long = (uint64_t)len;
    d->to_discard = (uint64_t)len - n;
    in->rd += n;
    if (!c->fail_fast) return LP_FRAME_NONE;
    return length_too_long(d, (uint64_t)len, true, err);
  }
  size_t flen = (size_t)len;
  if (n < flen) return LP_FRAME_NONE;
  if (c->initial_strip > flen)
    return corrupt(in, flen, err, "adjusted frame length %lld is less than initialBytesToStrip %lld", (long long)flen,
                   (long long)c->initial_strip);
  in->rd += c->initial_strip;
  return take(in, flen - c->initial_strip, 0, frame, err);
}

// ---- fixed length -------------------------------------------------------------------------

static int fixed_decode(lp_frame_decoder *d, lp_buf *in, lp_buf **frame, lp_error *err) {
  if (lp_buf_readable(in) < d->cfg.max) return LP_FRAME_NONE;
  return take(in, d->cfg.max, 0, frame, err);
}

int lp_frame_decode(lp_frame_decoder *d, lp_buf *in, lp_buf **frame, lp_error *err) {
  *frame = NULL;
  switch (d->cfg.kind) {
  case LP_FRAME_LINE: return line_decode(d, in, frame, err);
  case LP_FRAME_DELIMITER: return delimiter_decode(d, in, frame, err);
  case LP_FRAME_LENGTH_FIELD: return length_decode(d, in, frame, err);
  case LP_FRAME_FIXED: return fixed_decode(d, in, frame, err);
  default: return LP_FRAME_NONE;
  }
}

// ---- cumulation -------------------------------------------------------------------------

int lp_cumulate(lp_pool *pool, lp_buf **cum, lp_buf *in) {
  lp_buf *c = *cum;
  size_t n = lp_buf_readable(in);
  if (!c || lp_buf_readable(c) == 0) {
    if (in->refs == 1) { // ours alone: it becomes the cumulation
      if (c) lp_buf_unref(c);
      *cum = in;
      return 0;
    }
    lp_buf *copy = lp_buf_from(pool, lp_buf_rptr(in), n);
    lp_buf_unref(in);
    if (!copy) return -ENOMEM;
    if (c) lp_buf_unref(c);
    *cum = copy;
    return 0;
  }
  if (n == 0) {
    lp_buf_unref(in);
    return 0;
  }
  // Append in place only into a buffer nobody else sees: writing past the
  // writer index never touches bytes a frame (slice) refers to.
  if (c->refs == 1 && !(c->flags & LP_BUF_SLICE) && lp_buf_writable(c) >= n) {
    memcpy(lp_buf_wptr(c), lp_buf_rptr(in), n);
    c->wr += n;
    lp_buf_unref(in);
    return 0;
  }
  size_t have = lp_buf_readable(c);
  if (n > LP_BUF_MAX - have) {
    lp_buf_unref(in);
    return -ENOMEM;
  }
  lp_buf *nb = lp_buf_new(pool, have + n);
  if (!nb) {
    lp_buf_unref(in);
    return -ENOMEM;
  }
  memcpy(nb->data, lp_buf_rptr(c), have);
  memcpy(nb->data + have, lp_buf_rptr(in), n);
  nb->wr = have + n;
  lp_buf_unref(c);
  lp_buf_unref(in);
  *cum = nb;
  return 0;
}

// ---- length-field prepender ------------------------------------------------------------------

int lp_prepender_config_check(const lp_prepender_config *c, char *w, size_t wl) {
  if (!width_ok(c->length_size)) return why(w, wl, "lengthFieldLength must be 1, 2, 3, 4 or 8");
  return 0;
}

int lp_prepend_length(lp_pool *pool, const lp_prepender_config *c, lp_buf *payload, lp_buf **out, lp_error *err) {
  size_t n = lp_buf_readable(payload);
  size_t w = (size_t)c->length_size;
  int64_t len = (int64_t)n;
  if (__builtin_add_overflow(len, c->adjustment, &len) || (c->includes_length && __builtin_add_overflow(len, (int64_t)w, &len))) {
    lp_buf_unref(payload);
    lp_error_named(err, LP_ETOOLONG, "frame of %zu bytes: its length overflows", n);
    return -1;
  }
  if (len < 0) {
    lp_buf_unref(payload);
    lp_error_named(err, LP_ECORRUPT, "adjusted frame length %lld is negative", (long long)len);
    return -1;
  }
  uint64_t max = w == 8 ? (uint64_t)INT64_MAX : ((uint64_t)1 << (8 * w)) - 1;
  if ((uint64_t)len > max) {
    lp_buf_unref(payload);
    lp_error_named(err, LP_ETOOLONG, "frame length %lld does not fit a %zu-byte length field (at most %llu)",
                   (long long)len, w, (unsigned long long)max);
    err->limit = (long long)max;
    err->length = (long long)len;
    return -1;
  }
  // A copy: writing the length in front of the payload in place would need
  // to know that no slice refers to the bytes before its reader index.
  lp_buf *b = lp_buf_new(pool, w + n);
  if (!b) {
    lp_buf_unref(payload);
    lp_error_sys(err, ENOMEM, "prepending a length");
    return -1;
  }
  lp_store_uint(b->data, (int)w, c->big_endian, (uint64_t)len);
  memcpy(b->data + w, lp_buf_rptr(payload), n);
  b->wr = w + n;
  lp_buf_unref(payload);
  *out = b;
  return 0;
}
