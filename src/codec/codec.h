// codec.h: turning a byte stream into frames and back (Netty's codec layer).
//
// Two layers, so that the decoding itself is testable (and fuzzable) without
// a pipeline, a loop or Lua:
//  - frame decoders and the prepender (codec_frame.c): pure steps over a
//    cumulation buffer. They need buffer.c and error.c only.
//  - the cumulating decoder handler and the prepender handler (codec.c): native
//    pipeline handlers. The decoder keeps a per-context cumulation, calls its
//    decode step while it makes progress, fires what it decoded in order, holds
//    decoded messages while autoRead is off (one per read() demand), runs a
//    last decode when the input ends, and hands its cumulation to the next
//    handler when it is removed. The decode step is a frame decoder, or a host
//    (Lua) function whose results are host values kept on the host's side.
//
// Ownership: a frame is a slice of the cumulation (shared storage, its own
// reference), owned by whoever receives it. The cumulation is the decoder's.
#ifndef LP_CODEC_H
#define LP_CODEC_H

#include "buffer.h"
#include "error.h"
#include "loop.h"
#include "pipeline.h"

// ---- frame decoders (codec_frame.c) ------------------------------------------------------

enum { LP_FRAME_LINE, LP_FRAME_DELIMITER, LP_FRAME_LENGTH_FIELD, LP_FRAME_FIXED };

#define LP_FRAME_MAX_DELIMITERS 8      // delimiters one decoder accepts
#define LP_FRAME_MAX_DELIMITER_LEN 32  // bytes per delimiter
#define LP_FRAME_LIMIT_MAX ((size_t)1 << 30) // largest maxLength/maxFrameLength (LP_BUF_MAX)

typedef struct lp_frame_config {
  int kind;                 // LP_FRAME_*
  size_t max;               // line: maxLength; delimiter, length field: maxFrameLength; fixed: frameLength
  bool strip_delimiter;     // line, delimiter (default true)
  bool fail_fast;           // line (default false), delimiter, length field (default true)
  // delimiter
  int ndelims;
  uint8_t delim_len[LP_FRAME_MAX_DELIMITERS];
  uint8_t delims[LP_FRAME_MAX_DELIMITERS][LP_FRAME_MAX_DELIMITER_LEN];
  // length field
  size_t length_offset;     // lengthFieldOffset
  int length_size;          // lengthFieldLength: 1, 2, 3, 4 or 8
  bool big_endian;          // byteOrder (default big)
  int64_t length_adjustment;// lengthAdjustment
  size_t initial_strip;     // initialBytesToStrip
} lp_frame_config;

typedef struct lp_frame_decoder {
  lp_frame_config cfg;
  bool discarding;       // inside a frame over the limit: skipping to its end
  uint64_t too_long;     // line/delimiter: bytes of that frame skipped so far; length field: its length
  uint64_t to_discard;   // length field: bytes of that frame still to skip
  size_t scanned;        // line/delimiter: bytes after the reader index known to start no delimiter
} lp_frame_decoder;

// Check a configuration: 0, or -EINVAL with a one-line reason in why.
int lp_frame_config_check(const lp_frame_config *c, char *why, size_t whylen);
void lp_frame_decoder_init(lp_frame_decoder *d, const lp_frame_config *cfg);

enum { LP_FRAME_NONE = 0, LP_FRAME_OK = 1, LP_FRAME_ERROR = -1 };
// One step over the readable bytes of in. Returns LP_FRAME_OK with *frame set
// (a new reference the caller owns) and the frame's bytes consumed;
// LP_FRAME_NONE when it needs more bytes (it may have consumed some: bytes of
// a frame over the limit); LP_FRAME_ERROR with err set (TooLongFrame,
// CorruptedFrame, or ENOMEM): the bad bytes are skipped, so the next step
// goes on with the rest of the stream, except after ENOMEM.
int lp_frame_decode(lp_frame_decoder *d, lp_buf *in, lp_buf **frame, lp_error *err);

// Append in (its readable bytes; the reference moves in) to the cumulation
// *cum (NULL: none yet). The first buffer becomes the cumulation when nobody
// else holds it; later ones are copied in, into a new buffer when the
// cumulation has no room or shares its storage. 0, or -ENOMEM (in released,
// *cum unchanged).
int lp_cumulate(lp_pool *pool, lp_buf **cum, lp_buf *in);

// ---- length-field prepender --------------------------------------------------------------

typedef struct lp_prepender_config {
  int length_size;          // lengthFieldLength: 1, 2, 3, 4 or 8
  bool big_endian;
  int64_t adjustment;       // lengthAdjustment
  bool includes_length;     // lengthIncludesLengthFieldLength
} lp_prepender_config;

int lp_prepender_config_check(const lp_prepender_config *c, char *why, size_t whylen);
// payload (reference moved in) with its length in front: *out, a new buffer.
// 0, or -1 with err set (TooLongFrame: the length does not fit the field;
// CorruptedFrame: negative after adjustment; ENOMEM) and payload released.
int lp_prepend_length(lp_pool *pool, const lp_prepender_config *c, lp_buf *payload, lp_buf **out, lp_error *err);

// ---- the cumulating decoder handler (codec.c) --------------------------------------------

typedef struct lp_decoder lp_decoder;

// What decode returns.
enum {
  LP_DECODE_OK = 0,        // fine (frames added with lp_decoder_add, or none)
  LP_DECODE_ERROR = -1,    // *err says what; the handler fires it as exceptionCaught
  LP_DECODE_REPORTED = -2, // failed, and the step already fired its own exceptionCaught
};

typedef struct lp_decoder_ops {
  // Decode from in (the cumulation: its readable bytes), adding each message
  // with lp_decoder_add. last: the input ended (channelInactive or input
  // shutdown); called once, after the ordinary calls, and in may then be NULL
  // (no bytes left).
  int (*decode)(lp_decoder *d, lp_buf *in, bool last, lp_error *err);
  // Messages added as LP_MSG_HOST are tokens for values the host keeps in
  // order: fire_host fires the oldest from d->ctx, drop_host forgets it.
  void (*fire_host)(lp_decoder *d);
  void (*drop_host)(lp_decoder *d);
  void (*free)(lp_decoder *d); // release what the implementation added (d itself too)
  // Optional, for a codec that also encodes (WebSocket): the outbound
  // operations in op_mask (LP_MASK bits, read() excepted) go to outbound,
  // which passes them on with lp_ctx_op(d->ctx, ...) as it sees fit.
  void (*outbound)(lp_decoder *d, int op, lp_msg *m, lp_future *promise);
  uint32_t op_mask;
} lp_decoder_ops;

struct lp_decoder {
  const lp_decoder_ops *ops;
  lp_ctx *ctx;
  lp_buf *cum;            // the cumulation (NULL when empty)
  lp_buf *backlog;        // bytes that arrived while decode was running
  size_t max_cumulation;  // 0: no limit of the handler's own (frame decoders bound themselves)
  lp_msg *q;              // decoded, not yet fired (FIFO ring)
  uint32_t qhead, qlen, qcap;
  int decoding;           // nesting of decode loops on the stack
  bool handed_off;        // removed: the cumulation went to the next handler
  bool want_frame;        // autoRead off: bytes came for a read() and no message went out yet
  bool drop_cum;          // the step lost the cumulation (a Lua decoder released it)
  bool input_ended;       // the last decode ran (input shutdown, then channelInactive: once)
  uint32_t deliveries;    // read() demands to serve from held messages
  bool task_queued;
  lp_task task;           // serves deliveries later (never inside the read() call)
  bool paused;            // stopped decoding while the channel was unwritable (autoBackpressure)
  bool holds_input;       // counted in the channel's input_holds while paused with bytes left
  bool resume_queued;
  lp_task resume;         // decodes on once the channel is writable again
  int msg_flags;          // LP_MSGF_* for the buffers it adds (asString)
};

// Handler for d (the context takes d; ops->free runs when the context goes).
// NULL on ENOMEM (d is freed then too).
lp_ctx *lp_decoder_ctx_new(lp_pipeline *p, const char *name, lp_decoder *d);
// Queue a decoded message (for the step): 0, or -ENOMEM (m released; a host
// token dropped with drop_host). After lp_decoder_reserve(d, n) succeeded, the
// next n adds cannot fail (a host reserves before it takes values in).
int lp_decoder_add(lp_decoder *d, lp_msg *m);
int lp_decoder_reserve(lp_decoder *d, uint32_t n);

// The decoder of a cumulating decoder context, or NULL (ctx is another kind
// of handler): for a binding that finds its own decoder in a pipeline by
// comparing d->ops.
lp_decoder *lp_decoder_of(lp_ctx *ctx);

// The bytes decoder context ctx holds and has not decoded (its cumulation,
// then what arrived while it decoded), taken out of it: a new reference the
// caller owns, or NULL (none, or ctx is not a cumulating decoder). For a
// handler added in front of it mid-stream (STARTTLS): those bytes were sent
// after the last message it decoded, so they belong to the new handler.
lp_buf *lp_decoder_take_bytes(lp_ctx *ctx);

// A decoder whose step is a frame decoder. as_string: frames reach the host as strings.
lp_ctx *lp_frame_decoder_ctx_new(lp_pipeline *p, const char *name, const lp_frame_config *cfg, bool as_string);
// The length-field prepender as an outbound handler.
lp_ctx *lp_prepender_ctx_new(lp_pipeline *p, const char *name, const lp_prepender_config *cfg);

#endif
