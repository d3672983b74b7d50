// tls.h: TLS as a native pipeline handler over OpenSSL 3 memory BIOs (Netty's
// SslHandler).
//
// Two objects:
//  - lp_tls_context: an SSL_CTX with lupine's settings (certificate chain and
//    key, CA, versions, ciphers, groups, ALPN, SNI table, verification). Built
//    once per Lua state (one per worker) and shared by every connection of
//    that worker; reference counted, touched by one thread only.
//  - the handler (one per channel): ciphertext read from the head goes into
//    the SSL object's read BIO, plaintext comes out and is fired on as
//    buffers; plaintext writes go in through SSL_write and the records that
//    come out of the write BIO are written on toward the head, each carrying
//    the caller's promise (so a promise completes when its records are
//    written). Writes before the handshake completes are queued and go out,
//    in order, after it.
//
// Events: a user event { kind = "tlsHandshake", success, protocol, cipher,
// alpn, serverName, error } when the handshake ends either way; failures are
// exceptionCaught with a named error, then the channel closes:
//   TlsHandshakeFailed: <OpenSSL's reason>
//   TlsHandshakeTimeout: no handshake within 10 s
//   TlsError: <reason>          (a bad record after the handshake)
//   TlsTruncated: ...           (the peer closed without close_notify)
// A close sends close_notify first; a close_notify received fires { kind =
// "tlsClosed" }, answers it and closes. Renegotiation is refused.
#ifndef LP_TLS_H
#define LP_TLS_H

#include "future.h"
#include "pipeline.h"

typedef struct lp_tls_context lp_tls_context;

enum { LP_TLS_VERIFY_NONE, LP_TLS_VERIFY_OPTIONAL, LP_TLS_VERIFY_REQUIRE };

#define LP_TLS_MAX_SNI 64 // names one server context picks certificates for

typedef struct lp_tls_options {
  bool server;
  const char *cert, *key;   // a PEM file's path, or PEM text (starts with "-----BEGIN"); NULL: none
  const char *ca;           // CA certificates (path or PEM text); NULL: the system's (clients)
  int verify;               // LP_TLS_VERIFY_*; clients default REQUIRE, servers NONE
  bool check_hostname;      // clients: the certificate must name the server (default true)
  int min_version, max_version; // TLS1_2_VERSION, TLS1_3_VERSION; 0: default (min 1.2, max 1.3)
  const char *ciphers;      // TLS 1.2 cipher list; NULL: a safe default
  const char *ciphersuites; // TLS 1.3 suites; NULL: OpenSSL's default
  const char *groups;       // key exchange groups; NULL: X25519:P-256:P-384
  const uint8_t *alpn;      // protocols in wire format (length-prefixed); NULL: none
  size_t alpn_len;
  double handshake_timeout; // seconds; 0: none
  bool session_tickets;     // servers: issue tickets (default true)
} lp_tls_options;

// A context from o: 0 with *out (one reference), or -1 with a one-line
// reason in why naming the file ("cannot read certificate 'x.pem': ...").
int lp_tls_context_new(const lp_tls_options *o, lp_tls_context **out, char *why, size_t whylen);
// Servers: use cert/key for clients that ask for name (exact, or "*.example.com"
// for one label). 0, or -1 with why.
int lp_tls_context_add_sni(lp_tls_context *c, const char *name, const char *cert, const char *key, char *why,
                           size_t whylen);
// Servers: for a name no SNI entry matches, ask pick(ud, name) (the host's
// callback); it returns a server context to use (borrowed: the handler takes
// its own reference), or NULL for the default certificate.
void lp_tls_context_set_pick(lp_tls_context *c, lp_tls_context *(*pick)(void *ud, const char *name), void *ud);
lp_tls_context *lp_tls_context_ref(lp_tls_context *c);
void lp_tls_context_unref(lp_tls_context *c);
bool lp_tls_context_is_server(const lp_tls_context *c);

// A handler context using c (it takes its own reference). server_name:
// clients send it (SNI) and check the certificate against it; NULL for none.
// NULL on ENOMEM.
lp_ctx *lp_tls_handler_new(lp_pipeline *p, const char *name, lp_tls_context *c, const char *server_name);
// The first TLS handler in p, or NULL.
lp_ctx *lp_tls_find(lp_pipeline *p);
// Send close_notify now, ahead of a close that bypasses the pipeline (a
// lingering close: FIN after the output, then wait for the peer's); nothing
// without a TLS handler, before its handshake, or once sent.
void lp_tls_notify_close(lp_channel *ch);

typedef struct lp_tls_info {
  bool done, success, resumed, verified;
  const char *protocol, *cipher; // static strings from OpenSSL, or NULL
  char alpn[64];                 // "" when none
  char server_name[256];         // "" when none
  char peer_subject[256], peer_issuer[256]; // "" when no peer certificate
  char error[LP_ERROR_MESSAGE_MAX]; // the failure, "" when none
} lp_tls_info;
void lp_tls_get_info(lp_ctx *ctx, lp_tls_info *info);
// The handshake's future (borrowed; lives as long as the context).
lp_future *lp_tls_handshake_future(lp_ctx *ctx);

#endif
