// ws.h: the WebSocket frame codec (RFC 6455) as pure steps over buffers, like
// the frame decoders of codec.h: no pipeline, loop or host. It needs buffer.c
// and error.c only, so the C tests and fuzz/ drive it directly.
//
// Decoding: lp_ws_decode looks at the readable bytes of a cumulation and
// returns one event:
//   LP_WS_NEED     more bytes are needed (it may have consumed some: fragments
//                  of a message, which it keeps, or bytes after a close frame,
//                  which it drops)
//   LP_WS_MESSAGE  a whole message: d->opcode is LP_WS_TEXT or LP_WS_BINARY,
//                  d->payload its unmasked bytes (text validated as UTF-8)
//   LP_WS_FRAGMENT (with fragments set) a frame of a message sent in several:
//                  d->opcode the message's type, d->payload this frame's bytes
//                  (unmasked, inflated, UTF-8 checked so far), d->fin whether it
//                  is the last. A message in one frame is still LP_WS_MESSAGE.
//   LP_WS_CONTROL  a ping, pong or close frame: d->opcode, d->payload (for a
//                  close: the reason, after the code), d->close_code (a close:
//                  the code received, 1005 when the frame had none)
//   LP_WS_ERROR    the peer broke the protocol or a limit: d->error is the
//                  named error, d->close_code the code to close with (1002,
//                  1007, 1009; 1011 for ENOMEM). Every later call says ERROR.
// With permessage-deflate, a compressed message is inflated frame by frame
// as it comes, into at most maxMessageSize bytes (+1 to see it pass): a
// compressed bomb ends in 1009, never in memory growth.
// Call it until NEED, then again when bytes were appended. Events do not
// depend on how the input was split into reads. After a close frame every
// later byte is dropped (the peer may send nothing after it).
//
// Ownership: d->payload is a new buffer the caller owns (taken from the
// input's pool); the decoder owns the message it is reassembling (lp_ws_decoder_free).
//
// Bounds: a frame waits whole in the cumulation, but no frame of a data
// message is waited for when the message would pass maxMessageSize: the
// error comes from the frame's header (a 2^63-byte length fails at once). So
// the cumulation holds at most max(maxMessageSize, 125) + 14 bytes, and the
// message being reassembled at most maxMessageSize.
#ifndef LP_WS_H
#define LP_WS_H

#include "buffer.h"
#include "error.h"

// The error code of every WebSocket protocol error (kinds: WsProtocolError
// 1002, WsInvalidPayload 1007, WsMessageTooBig 1009).
#define LP_EWS (-10200)

#define LP_WS_DEFAULT_MAX_MESSAGE ((size_t)1 << 20) // maxMessageSize
#define LP_WS_MAX_MESSAGE_MAX ((size_t)1 << 30)     // its largest value (LP_BUF_MAX)
#define LP_WS_MAX_HEADER 14                         // 2 + 8 (length) + 4 (mask key)
#define LP_WS_MAX_CONTROL 125                       // payload of a control frame

enum { LP_WS_CONT = 0, LP_WS_TEXT = 1, LP_WS_BINARY = 2, LP_WS_CLOSE = 8, LP_WS_PING = 9, LP_WS_PONG = 10 };
enum { LP_WS_ERROR = -1, LP_WS_NEED = 0, LP_WS_MESSAGE, LP_WS_CONTROL, LP_WS_FRAGMENT };

// Close codes the codec itself uses.
enum {
  LP_WS_NORMAL = 1000, LP_WS_GOING_AWAY = 1001, LP_WS_PROTOCOL = 1002, LP_WS_NO_STATUS = 1005,
  LP_WS_INVALID_PAYLOAD = 1007, LP_WS_TOO_BIG = 1009, LP_WS_INTERNAL = 1011,
};

typedef struct lp_ws_config {
  bool server;        // frames come from a client: masked (an unmasked one is 1002)
  size_t max_message; // maxMessageSize: bytes of a message, all fragments together (1009 past it);
                      // for a compressed message, its inflated bytes
  // permessage-deflate (RFC 7692), as negotiated in the handshake: messages
  // with RSV1 on their first frame are compressed.
  bool deflate;
  bool peer_no_context; // the peer resets its compressor per message: so does the inflater
  bool fragments;       // deliver the frames of a fragmented message as they come (LP_WS_FRAGMENT)
} lp_ws_config;

typedef struct lp_ws_decoder {
  lp_ws_config cfg;
  int state;
  int msg_op;       // LP_WS_TEXT/BINARY: a fragmented message is in progress
  lp_buf *msg;      // its bytes so far (owned)
  uint32_t utf8;    // the UTF-8 validator's state inside that text message
  bool compressed;  // that message is compressed (RSV1 on its first frame)
  uint64_t msg_total; // fragments: bytes of that message already delivered
  void *inflater;   // z_stream (owned), made at the first compressed message
  // the event's results
  int opcode;
  bool fin;         // LP_WS_FRAGMENT: the message's last frame
  lp_buf *payload;  // a new reference the caller owns
  int close_code;
  lp_error error;
} lp_ws_decoder;

void lp_ws_config_default(lp_ws_config *c, bool server);
int lp_ws_config_check(const lp_ws_config *c, char *why, size_t whylen);
void lp_ws_decoder_init(lp_ws_decoder *d, const lp_ws_config *c);
void lp_ws_decoder_free(lp_ws_decoder *d); // the message in progress; d may be initialised again
int lp_ws_decode(lp_ws_decoder *d, lp_buf *in); // one step; see the top of this file

// ---- encoding -------------------------------------------------------------------------

// A frame header into out (LP_WS_MAX_HEADER bytes of room); returns its size.
// key: the 4-byte masking key, or NULL for an unmasked frame.
size_t lp_ws_header(uint8_t *out, int opcode, bool fin, uint64_t len, const uint8_t *key);
// XOR p[0..n) with key, the key's byte i % 4 over byte i: a word at a time.
// dst may be src (in place).
void lp_ws_mask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4]);
// One whole frame of payload p[0..n) in a new buffer from pool (masked with key
// unless key is NULL): 0, or -ENOMEM.
int lp_ws_encode(lp_pool *pool, int opcode, const void *p, size_t n, const uint8_t *key, lp_buf **out);
// A close frame's payload: code (big-endian) and reason into out (125 bytes
// of room); returns its size, or -EINVAL (why says why: a code an endpoint
// may not send, a reason over 123 bytes or not UTF-8). code 1005: no payload.
int lp_ws_close_payload(uint8_t *out, int code, const void *reason, size_t len, char *why, size_t whylen);
// Whether a close frame may carry code (1000-1003, 1007-1014, 3000-4999).
bool lp_ws_close_code_ok(int code);

// ---- permessage-deflate: the sending side ---------------------------------------------

typedef struct lp_ws_deflater {
  void *z;          // z_stream (owned), made at the first message
  int window_bits;  // 9..15 (zlib's raw deflate has no 8: 9 is used for 8)
  bool no_context;  // reset the compressor after each message (our *_no_context_takeover)
} lp_ws_deflater;

void lp_ws_deflater_init(lp_ws_deflater *df, int window_bits, bool no_context);
void lp_ws_deflater_free(lp_ws_deflater *df);
// One whole compressed frame (RSV1 set) of message p[0..n) in a new buffer
// from pool, masked with key unless NULL: 0, or -ENOMEM.
int lp_ws_encode_deflate(lp_ws_deflater *df, lp_pool *pool, int opcode, const void *p, size_t n, const uint8_t *key,
                         lp_buf **out);

// ---- UTF-8 ---------------------------------------------------------------------------

// Incremental validation: pass the state returned for the previous piece (0
// at the start); 0 after a piece means it ended between characters;
// LP_UTF8_BAD means the bytes are not UTF-8 (and stays so). ASCII runs go 8
// bytes at a time.
#define LP_UTF8_BAD 0xffffffffu
uint32_t lp_utf8_step(uint32_t state, const uint8_t *p, size_t n);
static inline bool lp_utf8_valid(const void *p, size_t n) { return lp_utf8_step(0, p, n) == 0; }

#endif
