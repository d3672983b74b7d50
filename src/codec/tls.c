// tls.c: the TLS handler and its contexts (tls.h).
//
// Ownership: a context (lp_tls_context) owns its SSL_CTX and those of its SNI
// names; each handler holds a reference to it. A handler (tls_state, the
// context's ctx->state) owns its SSL (which owns both memory BIOs), the
// handshake future, the queue of writes waiting for the handshake (each entry
// a buffer reference and a promise reference) and its timer.
//
// Invariants:
// - Every byte OpenSSL puts into the write BIO is written on toward the head
//   before control returns to the pipeline (flush_out), so records leave in
//   the order they were made, and each plaintext write's promise rides on the
//   write of its own records.
// - A timer callback comes from libev, outside any propagation: it holds a
//   channel reference and brackets the pipeline (as idle.c does).
// - After a failure (st->failed) nothing more goes into or comes out of the
//   SSL object: the channel is closing.
#include "tls.h"

#include "channel.h"
#include "codec.h"
#include "host.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define READ_CHUNK 16384 // one record's plaintext at most

// ---- contexts ---------------------------------------------------------------------------------

typedef struct sni_entry {
  char *name;
  SSL_CTX *ctx;
} sni_entry;

struct lp_tls_context {
  uint32_t refs;
  bool server;
  bool check_hostname;
  int verify;
  double handshake_timeout;
  SSL_CTX *ctx;
  uint8_t *alpn; // wire format, owned
  size_t alpn_len;
  sni_entry sni[LP_TLS_MAX_SNI];
  int nsni;
  lp_tls_context *(*pick)(void *ud, const char *name); // the host's SNI callback, or NULL
  void *pick_ud;
  // Clients: the last session a server gave (a ticket), offered again to the
  // same server name; owned.
  SSL_SESSION *session;
  char *session_name;
  lp_tls_options opts; // for SNI contexts: the same settings (pointers valid only while building)
};

// OpenSSL's last error as one line ("error:0A000086:SSL routines::certificate verify failed" becomes
// its reason part), or fallback.
static void ssl_reason(char *out, size_t outlen, const char *fallback) {
  unsigned long e = ERR_peek_last_error();
  if (e == 0) {
    snprintf(out, outlen, "%s", fallback);
  } else {
    const char *r = ERR_reason_error_string(e);
    if (r) snprintf(out, outlen, "%s", r);
    else ERR_error_string_n(e, out, outlen);
  }
  ERR_clear_error();
}

static bool is_pem_text(const char *s) { return strncmp(s, "-----BEGIN", 10) == 0; }

// A file OpenSSL is about to read: say why it cannot, in the system's
// words (OpenSSL says only "system lib"). 0, or -1 with why.
static int check_file(const char *what, const char *path, char *why, size_t whylen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(why, whylen, "cannot load %s '%s': %s", what, path, strerror(errno));
    return -1;
  }
  fclose(f);
  return 0;
}

// Load a certificate chain and key into c; 0 or -1 with why.
static int load_cert_key(SSL_CTX *c, const char *cert, const char *key, char *why, size_t whylen) {
  char reason[160];
  if (is_pem_text(cert)) {
    BIO *b = BIO_new_mem_buf(cert, -1);
    X509 *x = b ? PEM_read_bio_X509_AUX(b, NULL, NULL, NULL) : NULL;
    int ok = x && SSL_CTX_use_certificate(c, x) == 1;
    X509_free(x);
    while (ok) { // the rest of the chain
      X509 *ca = PEM_read_bio_X509(b, NULL, NULL, NULL);
      if (!ca) break;
      if (SSL_CTX_add0_chain_cert(c, ca) != 1) {
        X509_free(ca);
        ok = 0;
      }
    }
    BIO_free(b);
    if (!ok) {
      ssl_reason(reason, sizeof reason, "no certificate");
      snprintf(why, whylen, "cannot load certificate (PEM text): %s", reason);
      return -1;
    }
    ERR_clear_error(); // the end of the chain
  } else if (check_file("certificate", cert, why, whylen) != 0) {
    return -1;
  } else if (SSL_CTX_use_certificate_chain_file(c, cert) != 1) {
    ssl_reason(reason, sizeof reason, "unreadable");
    snprintf(why, whylen, "cannot load certificate '%s': %s", cert, reason);
    return -1;
  }
  if (!key) {
    snprintf(why, whylen, "a certificate needs its key (option 'key')");
    return -1;
  }
  if (is_pem_text(key)) {
    BIO *b = BIO_new_mem_buf(key, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    int ok = k && SSL_CTX_use_PrivateKey(c, k) == 1;
    bool parsed = k != NULL;
    EVP_PKEY_free(k);
    BIO_free(b);
    if (!ok && parsed && ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) goto mismatch;
    if (!ok) {
      ssl_reason(reason, sizeof reason, "no key");
      snprintf(why, whylen, "cannot load key (PEM text): %s", reason);
      return -1;
    }
  } else if (check_file("key", key, why, whylen) != 0) {
    return -1;
  } else if (SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1) {
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) goto mismatch;
    ssl_reason(reason, sizeof reason, "unreadable");
    snprintf(why, whylen, "cannot load key '%s': %s", key, reason);
    return -1;
  }
  if (SSL_CTX_check_private_key(c) != 1) {
  mismatch:
    ERR_clear_error();
    snprintf(why, whylen, "key '%s' does not match certificate '%s'", is_pem_text(key) ? "(PEM text)" : key,
             is_pem_text(cert) ? "(PEM text)" : cert);
    return -1;
  }
  return 0;
}

static int load_ca(SSL_CTX *c, const char *ca, char *why, size_t whylen) {
  char reason[160];
  if (!ca) {
    if (SSL_CTX_set_default_verify_paths(c) != 1) ERR_clear_error();
    return 0;
  }
  if (is_pem_text(ca)) {
    BIO *b = BIO_new_mem_buf(ca, -1);
    X509_STORE *st = SSL_CTX_get_cert_store(c);
    int n = 0;
    X509 *x;
    while (b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
      if (X509_STORE_add_cert(st, x) == 1) n++;
      X509_free(x);
    }
    BIO_free(b);
    ERR_clear_error();
    if (n == 0) {
      snprintf(why, whylen, "cannot load CA (PEM text): no certificate in it");
      return -1;
    }
    return 0;
  }
  if (check_file("CA", ca, why, whylen) != 0) return -1;
  if (SSL_CTX_load_verify_locations(c, ca, NULL) != 1) {
    ssl_reason(reason, sizeof reason, "unreadable");
    snprintf(why, whylen, "cannot load CA '%s': %s", ca, reason);
    return -1;
  }
  return 0;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
  LP_UNUSED(ssl);
  lp_tls_context *c = arg;
  // The server's order of preference wins.
  if (SSL_select_next_proto((unsigned char **)out, outlen, c->alpn, (unsigned)c->alpn_len, in, inlen) ==
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_OK;
  return SSL_TLSEXT_ERR_NOACK; // no protocol in common: go on without ALPN
}

static bool sni_match(const char *pattern, const char *name) {
  if (strncmp(pattern, "*.", 2) == 0) {
    const char *dot = strchr(name, '.');
    return dot && dot != name && strcasecmp(dot + 1, pattern + 2) == 0;
  }
  return strcasecmp(pattern, name) == 0;
}

static void use_picked(SSL *ssl, lp_tls_context *picked);

static int on_servername(SSL *ssl, int *alert, void *arg) {
  LP_UNUSED(alert);
  lp_tls_context *c = arg;
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!name) return SSL_TLSEXT_ERR_OK;
  for (int i = 0; i < c->nsni; i++) {
    if (sni_match(c->sni[i].name, name)) {
      SSL_set_SSL_CTX(ssl, c->sni[i].ctx);
      return SSL_TLSEXT_ERR_OK;
    }
  }
  if (c->pick) {
    lp_tls_context *picked = c->pick(c->pick_ud, name);
    if (picked && picked->server && picked != c) use_picked(ssl, picked);
  }
  return SSL_TLSEXT_ERR_OK; // no match: the default certificate
}

// Clients: keep the newest session (TLS 1.3 tickets come after the handshake).
static int on_new_session(SSL *ssl, SSL_SESSION *sess) {
  lp_tls_context *c = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!c || !name) return 0; // not kept: OpenSSL frees it
  char *n = strdup(name);
  if (!n) return 0;
  if (c->session) SSL_SESSION_free(c->session);
  free(c->session_name);
  c->session = sess;
  c->session_name = n;
  return 1; // the reference is ours now
}

// An SSL_CTX with the settings of o (cert and key as given).
static SSL_CTX *build(lp_tls_context *c, const lp_tls_options *o, const char *cert, const char *key, char *why,
                      size_t whylen) {
  SSL_CTX *x = SSL_CTX_new(o->server ? TLS_server_method() : TLS_client_method());
  if (!x) {
    snprintf(why, whylen, "out of memory");
    return NULL;
  }
  char reason[160];
  int minv = o->min_version ? o->min_version : TLS1_2_VERSION;
  int maxv = o->max_version ? o->max_version : TLS1_3_VERSION;
  SSL_CTX_set_min_proto_version(x, minv);
  SSL_CTX_set_max_proto_version(x, maxv);
  // No renegotiation (TLS 1.3 has none); no compression.
  SSL_CTX_set_options(x, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (!o->session_tickets && o->server) SSL_CTX_set_options(x, SSL_OP_NO_TICKET);
  SSL_CTX_set_mode(x, SSL_MODE_RELEASE_BUFFERS);
  const char *ciphers = o->ciphers ? o->ciphers : "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!RC4:!3DES";
  if (SSL_CTX_set_cipher_list(x, ciphers) != 1) {
    ssl_reason(reason, sizeof reason, "no cipher matched");
    snprintf(why, whylen, "option 'ciphers' ('%s'): %s", ciphers, reason);
    goto fail;
  }
  if (o->ciphersuites && SSL_CTX_set_ciphersuites(x, o->ciphersuites) != 1) {
    ssl_reason(reason, sizeof reason, "no suite matched");
    snprintf(why, whylen, "option 'ciphersuites' ('%s'): %s", o->ciphersuites, reason);
    goto fail;
  }
  const char *groups = o->groups ? o->groups : "X25519:P-256:P-384";
  if (SSL_CTX_set1_groups_list(x, groups) != 1) {
    ssl_reason(reason, sizeof reason, "unknown group");
    snprintf(why, whylen, "option 'groups' ('%s'): %s", groups, reason);
    goto fail;
  }
  if (cert && load_cert_key(x, cert, key, why, whylen) != 0) goto fail;
  if (!cert && key) {
    snprintf(why, whylen, "a key needs its certificate (option 'cert')");
    goto fail;
  }
  if (o->server && !cert) {
    snprintf(why, whylen, "a server needs a certificate and key (options 'cert' and 'key')");
    goto fail;
  }
  if (o->server) {
    if (o->verify != LP_TLS_VERIFY_NONE) {
      if (load_ca(x, o->ca, why, whylen) != 0) goto fail;
      if (o->ca && !is_pem_text(o->ca)) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca);
        if (names) SSL_CTX_set_client_CA_list(x, names);
        ERR_clear_error();
      }
      SSL_CTX_set_verify(x, SSL_VERIFY_PEER | (o->verify == LP_TLS_VERIFY_REQUIRE ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                         NULL);
    }
    if (c->alpn) SSL_CTX_set_alpn_select_cb(x, alpn_select, c);
    SSL_CTX_set_session_id_context(x, (const unsigned char *)"lupine", 6);
    // Tickets carry the session to the client: no server-side cache to fill
    // (and lock) per handshake. Without tickets, the cache resumes TLS 1.2
    // session ids.
    if (o->session_tickets) SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_OFF);
  } else {
    if (o->verify != LP_TLS_VERIFY_NONE) {
      if (load_ca(x, o->ca, why, whylen) != 0) goto fail;
      SSL_CTX_set_verify(x, SSL_VERIFY_PEER, NULL);
    }
    SSL_CTX_set_app_data(x, c);
    SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(x, on_new_session);
    if (c->alpn && SSL_CTX_set_alpn_protos(x, c->alpn, (unsigned)c->alpn_len) != 0) {
      snprintf(why, whylen, "option 'alpn': cannot set the protocols");
      goto fail;
    }
  }
  return x;
fail:
  SSL_CTX_free(x);
  return NULL;
}

int lp_tls_context_new(const lp_tls_options *o, lp_tls_context **out, char *why, size_t whylen) {
  lp_tls_context *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(why, whylen, "out of memory");
    return -1;
  }
  c->refs = 1;
  c->server = o->server;
  c->verify = o->verify;
  c->check_hostname = o->check_hostname;
  c->handshake_timeout = o->handshake_timeout;
  if (o->alpn_len) {
    c->alpn = malloc(o->alpn_len);
    if (!c->alpn) {
      free(c);
      snprintf(why, whylen, "out of memory");
      return -1;
    }
    memcpy(c->alpn, o->alpn, o->alpn_len);
    c->alpn_len = o->alpn_len;
  }
  c->opts = *o;
  c->ctx = build(c, o, o->cert, o->key, why, whylen);
  if (!c->ctx) {
    free(c->alpn);
    free(c);
    return -1;
  }
  if (o->server) SSL_CTX_set_tlsext_servername_callback(c->ctx, on_servername), SSL_CTX_set_tlsext_servername_arg(c->ctx, c);
  *out = c;
  return 0;
}

int lp_tls_context_add_sni(lp_tls_context *c, const char *name, const char *cert, const char *key, char *why,
                           size_t whylen) {
  if (!c->server) {
    snprintf(why, whylen, "only servers pick certificates by name");
    return -1;
  }
  if (c->nsni == LP_TLS_MAX_SNI) {
    snprintf(why, whylen, "more than %d names", LP_TLS_MAX_SNI);
    return -1;
  }
  // SNI contexts take the default one's settings; what comes from the CA is
  // loaded again (c->opts' strings are valid while the caller builds c).
  SSL_CTX *x = build(c, &c->opts, cert, key, why, whylen);
  if (!x) return -1;
  char *n = strdup(name);
  if (!n) {
    SSL_CTX_free(x);
    snprintf(why, whylen, "out of memory");
    return -1;
  }
  c->sni[c->nsni].name = n;
  c->sni[c->nsni].ctx = x;
  c->nsni++;
  return 0;
}

void lp_tls_context_set_pick(lp_tls_context *c, lp_tls_context *(*pick)(void *ud, const char *name), void *ud) {
  c->pick = pick;
  c->pick_ud = ud;
}

lp_tls_context *lp_tls_context_ref(lp_tls_context *c) {
  c->refs++;
  return c;
}

void lp_tls_context_unref(lp_tls_context *c) {
  if (!c || --c->refs) return;
  for (int i = 0; i < c->nsni; i++) {
    SSL_CTX_free(c->sni[i].ctx);
    free(c->sni[i].name);
  }
  SSL_CTX_free(c->ctx);
  if (c->session) SSL_SESSION_free(c->session);
  free(c->session_name);
  free(c->alpn);
  free(c);
}

bool lp_tls_context_is_server(const lp_tls_context *c) { return c->server; }

// ---- the handler --------------------------------------------------------------------------------

typedef struct pending_write {
  struct pending_write *next;
  lp_buf *buf;
  lp_future *promise; // a reference, or NULL
} pending_write;

typedef struct tls_state {
  lp_ctx *ctx;
  lp_tls_context *tc;
  lp_tls_context *picked; // the context an SNI callback chose (a reference), or NULL
  SSL *ssl;
  BIO *rbio, *wbio; // owned by ssl
  lp_future *handshake;
  char *server_name;
  pending_write *pend, **pend_tail;
  ev_timer timer;
  bool started, done, failed, flush_pending;
  bool closing;       // a close passed through this handler, or it closed the channel itself
  bool notify_sent, notify_received;
  bool produced;      // plaintext fired since the last channelReadComplete
  char error[LP_ERROR_MESSAGE_MAX];
} tls_state;

static const lp_handler_ops tls_ops;

// The SNI callback chose another context: its certificate, and its ALPN
// callback's argument, must live as long as this connection.
static void use_picked(SSL *ssl, lp_tls_context *picked) {
  tls_state *st = SSL_get_app_data(ssl);
  if (!st || st->picked) return;
  st->picked = lp_tls_context_ref(picked);
  SSL_set_SSL_CTX(ssl, picked->ctx);
}

static inline lp_channel *chan(const tls_state *st) { return lp_ctx_channel(st->ctx); }
static inline bool dead(const tls_state *st) {
  return st->failed || st->ctx->removed || (chan(st)->flags & LP_CH_CLOSED);
}

static void stop_timer(tls_state *st) { ev_timer_stop(chan(st)->loop->ev, &st->timer); }

// Write what OpenSSL produced toward the head, with promise (may be NULL);
// flush when asked. Returns 0, or -ENOMEM (promise failed).
static int flush_out(tls_state *st, lp_future *promise, bool flush) {
  size_t n = BIO_ctrl_pending(st->wbio);
  if (n == 0 && !promise) {
    if (flush) lp_ctx_op(st->ctx, LP_OP_FLUSH, NULL, NULL);
    return 0;
  }
  lp_buf *b = lp_buf_new(chan(st)->loop->pool, n ? n : 1);
  if (!b) {
    lp_error e;
    lp_error_sys(&e, ENOMEM, "tls: writing records");
    lp_channel_fail_promise(chan(st), promise, &e);
    return -ENOMEM;
  }
  if (n) {
    int got = BIO_read(st->wbio, lp_buf_wptr(b), (int)n);
    if (got > 0) b->wr += (size_t)got;
  }
  lp_msg m = lp_msg_buf(b);
  lp_ctx_op(st->ctx, LP_OP_WRITE, &m, promise);
  if (flush) lp_ctx_op(st->ctx, LP_OP_FLUSH, NULL, NULL);
  return 0;
}

static void fail_pending(tls_state *st, const lp_error *e) {
  pending_write *p = st->pend;
  st->pend = NULL;
  st->pend_tail = &st->pend;
  while (p) {
    pending_write *next = p->next;
    lp_buf_unref(p->buf);
    if (p->promise) {
      p->promise->quiet = true; // the failure itself is reported once, as exceptionCaught
      lp_future_fail(p->promise, e);
      lp_future_unref(p->promise);
    }
    free(p);
    p = next;
  }
}

static void encrypt(tls_state *st, lp_buf *b, lp_future *promise) {
  size_t len = lp_buf_readable(b);
  size_t written = 0;
  if (len > 0 && (SSL_write_ex(st->ssl, lp_buf_rptr(b), len, &written) != 1 || written != len)) {
    char reason[160];
    ssl_reason(reason, sizeof reason, "write failed");
    lp_error e;
    lp_error_named(&e, LP_ETLS, "%s", reason);
    lp_buf_unref(b);
    lp_channel_fail_promise(chan(st), promise, &e);
    return;
  }
  lp_buf_unref(b);
  flush_out(st, promise, false);
}

static void fire_handshake_event(tls_state *st, bool ok) {
  lp_tls_info info;
  lp_tls_get_info(st->ctx, &info);
  lp_event_field f[] = {
      {"success", NULL, ok, false, 0},
      {"protocol", info.protocol, -1, false, 0},
      {"cipher", info.cipher, -1, false, 0},
      {"alpn", info.alpn[0] ? info.alpn : NULL, -1, false, 0},
      {"serverName", info.server_name[0] ? info.server_name : NULL, -1, false, 0},
      {"error", st->error[0] ? st->error : NULL, -1, false, 0},
  };
  lp_event_info ev = {"tlsHandshake", NULL, -1, f, (int)LP_ARRAY_LEN(f)};
  lp_msg m = lp_msg_event(&ev);
  lp_ctx_fire(st->ctx, LP_EV_USER_EVENT, &m);
}

// The handshake or the connection failed: the peer gets OpenSSL's alert, the
// handshake future and queued writes fail, exceptionCaught, then close.
static void fail(tls_state *st, int code, const char *fmt, const char *reason) {
  if (st->failed) return;
  bool handshaking = !st->done;
  lp_error e;
  lp_error_named(&e, code, fmt, reason);
  snprintf(st->error, sizeof st->error, "%s", e.message);
  stop_timer(st);
  if (!(chan(st)->flags & LP_CH_CLOSED)) flush_out(st, NULL, true); // the alert
  st->failed = true;
  if (handshaking && !lp_future_done(st->handshake)) lp_future_fail(st->handshake, &e);
  fail_pending(st, &e);
  if (handshaking) fire_handshake_event(st, false);
  if (!st->ctx->removed) {
    lp_msg m = lp_msg_err(&e);
    lp_ctx_fire(st->ctx, LP_EV_EXCEPTION, &m);
  }
  st->closing = true;
  if (!st->ctx->removed && !(chan(st)->flags & LP_CH_CLOSED)) lp_ctx_op(st->ctx, LP_OP_CLOSE, NULL, NULL);
}

static void handshake_done(tls_state *st) {
  st->done = true;
  stop_timer(st);
  lp_future_succeed(st->handshake);
  // Queued writes go first, in order; then the flush they were waiting for.
  while (st->pend && !dead(st)) {
    pending_write *p = st->pend;
    st->pend = p->next;
    if (!st->pend) st->pend_tail = &st->pend;
    lp_future *promise = p->promise;
    lp_buf *b = p->buf;
    free(p);
    encrypt(st, b, promise);
    if (promise) lp_future_unref(promise);
  }
  if (!dead(st) && st->flush_pending) {
    st->flush_pending = false;
    lp_ctx_op(st->ctx, LP_OP_FLUSH, NULL, NULL);
  }
  if (!dead(st)) fire_handshake_event(st, true);
}

// Once per connection, after a successful handshake, while the channel is open.
static void send_close_notify(tls_state *st) {
  if (!st->done || st->failed || st->notify_sent || (chan(st)->flags & LP_CH_CLOSED)) return;
  st->notify_sent = true;
  ERR_clear_error();
  SSL_shutdown(st->ssl);
  ERR_clear_error();
  flush_out(st, NULL, true);
}

void lp_tls_notify_close(lp_channel *ch) {
  lp_ctx *ctx = lp_tls_find(&ch->pipeline);
  if (ctx) send_close_notify(ctx->state);
}

static void got_close_notify(tls_state *st) {
  st->notify_received = true;
  lp_event_info ev = {"tlsClosed", NULL, -1, NULL, 0};
  lp_msg m = lp_msg_event(&ev);
  lp_ctx_fire(st->ctx, LP_EV_USER_EVENT, &m);
  if (dead(st)) return;
  // Answer it and close (Netty's default): the connection is over.
  if (!st->notify_sent) {
    st->notify_sent = true;
    SSL_shutdown(st->ssl);
    ERR_clear_error();
    flush_out(st, NULL, true);
  }
  st->closing = true;
  if (!dead(st)) lp_ctx_op(st->ctx, LP_OP_CLOSE, NULL, NULL);
}

// Run the handshake on, then read what plaintext there is and fire it.
static void drive(tls_state *st) {
  if (dead(st)) return;
  if (!st->done) {
    ERR_clear_error();
    int rc = SSL_do_handshake(st->ssl);
    if (rc != 1) {
      int err = SSL_get_error(st->ssl, rc);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        flush_out(st, NULL, true);
        return;
      }
      char reason[160];
      long vr = SSL_get_verify_result(st->ssl);
      if (vr != X509_V_OK && err == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        snprintf(reason, sizeof reason, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
        ERR_clear_error();
      } else {
        ssl_reason(reason, sizeof reason, err == SSL_ERROR_ZERO_RETURN ? "the peer closed the connection" : "handshake failed");
      }
      fail(st, LP_ETLSHANDSHAKE, "%s", reason);
      return;
    }
    flush_out(st, NULL, true); // the last flight (a server's tickets, a client's Finished)
    handshake_done(st);
    if (dead(st)) return;
  }
  for (bool first = true;; first = false) {
    // Read on while records or plaintext are left; size the buffer to what
    // can come out (plaintext is never longer than the ciphertext it came in).
    size_t avail = BIO_ctrl_pending(st->rbio) + (size_t)SSL_pending(st->ssl);
    if (!first && avail == 0 && !SSL_has_pending(st->ssl)) break;
    size_t cap = avail < 256 ? 256 : avail > READ_CHUNK ? READ_CHUNK : avail;
    lp_buf *b = lp_buf_new(chan(st)->loop->pool, cap);
    if (!b) {
      fail(st, LP_ETLS, "%s", "out of memory reading records");
      return;
    }
    size_t n = 0;
    ERR_clear_error();
    int rc = SSL_read_ex(st->ssl, lp_buf_wptr(b), lp_buf_writable(b), &n);
    if (rc == 1) {
      b->wr += n;
      st->produced = true;
      lp_msg m = lp_msg_buf(b);
      lp_ctx_fire(st->ctx, LP_EV_READ, &m);
      if (dead(st)) return;
      continue;
    }
    lp_buf_unref(b);
    int err = SSL_get_error(st->ssl, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) break;
    if (err == SSL_ERROR_ZERO_RETURN) {
      flush_out(st, NULL, true);
      got_close_notify(st);
      return;
    }
    char reason[160];
    ssl_reason(reason, sizeof reason, "bad record");
    fail(st, LP_ETLS, "%s", reason);
    return;
  }
  // Post-handshake messages (key updates, tickets) may need an answer.
  if (BIO_ctrl_pending(st->wbio)) flush_out(st, NULL, true);
}

static void on_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
  LP_UNUSED(ev), LP_UNUSED(revents);
  tls_state *st = lp_container_of(w, tls_state, timer);
  if (st->done || dead(st)) return;
  lp_channel *ch = lp_channel_ref(chan(st));
  lp_pipeline_enter(&ch->pipeline);
  char secs[32];
  snprintf(secs, sizeof secs, "%g", st->tc->handshake_timeout);
  fail(st, LP_ETLSTIMEOUT, "no handshake within %s s", secs);
  lp_pipeline_leave(&ch->pipeline);
  lp_channel_unref(ch);
}

// The connection is up (or the handler joined a live one): time the
// handshake; a client speaks first; bytes a decoder behind us still holds
// were sent after the last message it decoded, so they are ours (STARTTLS).
static void start(tls_state *st) {
  if (st->started || dead(st)) return;
  st->started = true;
  if (st->tc->handshake_timeout > 0) {
    ev_timer_set(&st->timer, st->tc->handshake_timeout, 0.);
    ev_timer_start(chan(st)->loop->ev, &st->timer);
  }
  lp_buf *held = NULL;
  for (lp_ctx *c = st->ctx->next; c && c != &st->ctx->pipeline->tail && !held; c = c->next)
    if (!c->removed) held = lp_decoder_take_bytes(c);
  if (held) {
    BIO_write(st->rbio, lp_buf_rptr(held), (int)lp_buf_readable(held));
    lp_buf_unref(held);
  }
  drive(st); // a client's ClientHello; a server's answer to bytes taken over
}

static void on_read(tls_state *st, lp_msg *m) {
  lp_loop *loop = chan(st)->loop;
  if (m->kind == LP_MSG_HOST) {
    lp_error e;
    if (!loop->host_ops || !loop->host_ops->to_buf || loop->host_ops->to_buf(chan(st), m, &e) != 0) {
      lp_ctx_fire(st->ctx, LP_EV_READ, m); // not bytes
      return;
    }
  }
  if (m->kind != LP_MSG_BUF) {
    lp_ctx_fire(st->ctx, LP_EV_READ, m);
    return;
  }
  lp_buf *b = m->u.buf;
  m->kind = LP_MSG_NONE;
  if (st->failed || st->notify_received) { // nothing more is read after the end
    lp_buf_unref(b);
    return;
  }
  size_t len = lp_buf_readable(b);
  if (len && BIO_write(st->rbio, lp_buf_rptr(b), (int)len) != (int)len) {
    lp_buf_unref(b);
    fail(st, LP_ETLS, "%s", "out of memory buffering records");
    return;
  }
  lp_buf_unref(b);
  if (!st->started) start(st); // data before channelActive reached us (embedded channels)
  else drive(st);
}

static void on_inactive(tls_state *st) {
  stop_timer(st);
  if (st->failed) return;
  lp_error e;
  if (!st->done) {
    lp_error_named(&e, LP_ETLSHANDSHAKE, "the connection closed during the handshake");
    snprintf(st->error, sizeof st->error, "%s", e.message);
    st->failed = true;
    lp_future_fail(st->handshake, &e);
    fail_pending(st, &e);
    if (st->started && !st->closing) {
      fire_handshake_event(st, false);
      lp_msg m = lp_msg_err(&e);
      lp_ctx_fire(st->ctx, LP_EV_EXCEPTION, &m);
    }
    return;
  }
  if (!st->notify_received && !st->closing) {
    lp_error_named(&e, LP_ETLSTRUNCATED, "the peer closed the connection without close_notify");
    lp_msg m = lp_msg_err(&e);
    lp_ctx_fire(st->ctx, LP_EV_EXCEPTION, &m);
  }
}

static void tls_inbound(lp_ctx *ctx, int ev, lp_msg *m) {
  tls_state *st = ctx->state;
  switch (ev) {
  case LP_EV_READ: on_read(st, m); return;
  case LP_EV_ACTIVE:
    lp_ctx_fire(ctx, ev, m); // the handler sees the channel active, then the handshake starts
    start(st);
    return;
  case LP_EV_READ_COMPLETE: {
    bool produced = st->produced;
    st->produced = false;
    // A read() demand whose bytes made no plaintext (handshake records) would
    // never be served: read on for it.
    if (!produced && !chan(st)->config.auto_read && !dead(st)) lp_ctx_op(ctx, LP_OP_READ, NULL, NULL);
    break;
  }
  case LP_EV_INACTIVE: on_inactive(st); break;
  default: break;
  }
  lp_ctx_fire(ctx, ev, m);
}

static void tls_outbound(lp_ctx *ctx, int op, lp_msg *m, lp_future *promise) {
  tls_state *st = ctx->state;
  lp_channel *ch = chan(st);
  switch (op) {
  case LP_OP_WRITE: {
    lp_error e;
    if (m->kind == LP_MSG_HOST) {
      const lp_host_ops *h = ch->loop->host_ops;
      if (!h || !h->to_buf || h->to_buf(ch, m, &e) != 0) {
        lp_msg_release(m);
        lp_error_named(&e, LP_EUNSUPPORTED, "TLS encrypts bytes only: add an encoder after it");
        lp_channel_fail_promise(ch, promise, &e);
        return;
      }
    }
    if (m->kind != LP_MSG_BUF) {
      lp_msg_release(m);
      lp_error_named(&e, LP_EUNSUPPORTED, "TLS encrypts bytes only: add an encoder after it");
      lp_channel_fail_promise(ch, promise, &e);
      return;
    }
    lp_buf *b = m->u.buf;
    m->kind = LP_MSG_NONE;
    if (st->failed || st->notify_sent) {
      lp_buf_unref(b);
      if (st->failed) {
        lp_error_named(&e, st->done ? LP_ETLS : LP_ETLSHANDSHAKE, "failed");
        snprintf(e.message, sizeof e.message, "%s", st->error); // the failure's own text
      } else {
        lp_error_named(&e, LP_ECLOSED, "TLS output closed (close_notify sent)");
      }
      lp_channel_fail_promise(ch, promise, &e);
      return;
    }
    if (!st->done) {
      pending_write *p = malloc(sizeof *p);
      if (!p) {
        lp_buf_unref(b);
        lp_error_sys(&e, ENOMEM, "tls: queueing a write");
        lp_channel_fail_promise(ch, promise, &e);
        return;
      }
      p->next = NULL;
      p->buf = b;
      p->promise = promise ? lp_future_ref(promise) : NULL;
      *st->pend_tail = p;
      st->pend_tail = &p->next;
      return;
    }
    encrypt(st, b, promise);
    return;
  }
  case LP_OP_FLUSH:
    if (!st->done && !st->failed) {
      st->flush_pending = true;
      return;
    }
    break;
  case LP_OP_CLOSE:
    st->closing = true;
    stop_timer(st);
    // close_notify goes out ahead of the close; a record of 24 bytes is
    // written at once unless the socket is full, when the close drops it.
    send_close_notify(st);
    if (!st->done) {
      lp_error e;
      lp_error_named(&e, LP_ECLOSED, "channel #%llu closed before the TLS handshake completed",
                     (unsigned long long)ch->id);
      fail_pending(st, &e);
    }
    break;
  default: break;
  }
  lp_ctx_op(ctx, op, m, promise);
}

static void tls_added(lp_ctx *ctx) {
  tls_state *st = ctx->state;
  lp_channel *ch = chan(st);
  if ((ch->flags & LP_CH_REGISTERED) && lp_channel_is_active(ch)) start(st); // STARTTLS
}

static void tls_removed(lp_ctx *ctx) {
  tls_state *st = ctx->state;
  stop_timer(st);
  lp_error e;
  lp_error_named(&e, LP_ECLOSED, "the TLS handler was removed before the handshake completed");
  fail_pending(st, &e);
  if (!lp_future_done(st->handshake)) lp_future_fail(st->handshake, &e);
}

static void tls_free(lp_ctx *ctx) {
  tls_state *st = ctx->state;
  if (!st) return;
  if (st->ctx->pipeline->channel) stop_timer(st);
  lp_error e;
  lp_error_named(&e, LP_ECLOSED, "the TLS handler went away");
  fail_pending(st, &e);
  if (!lp_future_done(st->handshake)) lp_future_fail(st->handshake, &e);
  lp_future_unref(st->handshake);
  SSL_free(st->ssl);
  lp_tls_context_unref(st->tc);
  if (st->picked) lp_tls_context_unref(st->picked);
  free(st->server_name);
  free(st);
  ctx->state = NULL;
}

static const lp_handler_ops tls_ops = {
    "tls",
    LP_MASK(LP_EV_READ) | LP_MASK(LP_EV_ACTIVE) | LP_MASK(LP_EV_READ_COMPLETE) | LP_MASK(LP_EV_INACTIVE) |
        LP_MASK(LP_OP_WRITE) | LP_MASK(LP_OP_FLUSH) | LP_MASK(LP_OP_CLOSE),
    tls_added,
    tls_removed,
    tls_inbound,
    tls_outbound,
    tls_free,
};

lp_ctx *lp_tls_handler_new(lp_pipeline *p, const char *name, lp_tls_context *c, const char *server_name) {
  tls_state *st = calloc(1, sizeof *st);
  if (!st) return NULL;
  lp_loop *loop = p->channel->loop;
  st->tc = lp_tls_context_ref(c);
  st->pend_tail = &st->pend;
  st->handshake = lp_future_new(loop);
  st->ssl = SSL_new(c->ctx);
  st->rbio = BIO_new(BIO_s_mem());
  st->wbio = BIO_new(BIO_s_mem());
  if (server_name && *server_name) st->server_name = strdup(server_name);
  if (!st->handshake || !st->ssl || !st->rbio || !st->wbio || (server_name && *server_name && !st->server_name))
    goto fail;
  BIO_set_mem_eof_return(st->rbio, -1); // an empty read BIO means "wait", not EOF
  SSL_set_app_data(st->ssl, st);
  SSL_set_bio(st->ssl, st->rbio, st->wbio); // the SSL owns both now
  BIO *r = st->rbio, *w = st->wbio;
  st->rbio = st->wbio = NULL;
  if (c->server) {
    SSL_set_accept_state(st->ssl);
  } else {
    SSL_set_connect_state(st->ssl);
    if (st->server_name) {
      // SNI is for names only, never an address (RFC 6066).
      bool numeric = strspn(st->server_name, "0123456789.") == strlen(st->server_name) || strchr(st->server_name, ':');
      if (!numeric) SSL_set_tlsext_host_name(st->ssl, st->server_name);
      // Resume the last session with this server when there is one (a ticket).
      if (!numeric && c->session && strcmp(c->session_name, st->server_name) == 0 &&
          SSL_SESSION_is_resumable(c->session))
        SSL_set_session(st->ssl, c->session);
      if (c->verify != LP_TLS_VERIFY_NONE && c->check_hostname) {
        if (numeric) X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(st->ssl), st->server_name);
        else SSL_set1_host(st->ssl, st->server_name);
        SSL_set_hostflags(st->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      }
    }
  }
  st->rbio = r;
  st->wbio = w;
  ev_timer_init(&st->timer, on_timeout, 0., 0.);
  lp_ctx *ctx = lp_ctx_new(p, &tls_ops, st, name);
  if (!ctx) {
    SSL_free(st->ssl); // and both BIOs with it
    st->ssl = NULL;
    st->rbio = st->wbio = NULL;
    goto fail;
  }
  st->ctx = ctx;
  return ctx;
fail:
  if (st->ssl) SSL_free(st->ssl);
  if (st->rbio) BIO_free(st->rbio);
  if (st->wbio) BIO_free(st->wbio);
  if (st->handshake) lp_future_unref(st->handshake);
  lp_tls_context_unref(st->tc);
  free(st->server_name);
  free(st);
  return NULL;
}

lp_ctx *lp_tls_find(lp_pipeline *p) {
  for (lp_ctx *c = p->head.next; c && c != &p->tail; c = c->next)
    if (c->ops == &tls_ops && !c->removed) return c;
  return NULL;
}

lp_future *lp_tls_handshake_future(lp_ctx *ctx) { return ((tls_state *)ctx->state)->handshake; }

void lp_tls_get_info(lp_ctx *ctx, lp_tls_info *info) {
  tls_state *st = ctx->state;
  memset(info, 0, sizeof *info);
  info->done = st->done || st->failed;
  info->success = st->done && !(st->failed && !st->done);
  snprintf(info->error, sizeof info->error, "%s", st->error);
  const char *sn = st->tc->server ? SSL_get_servername(st->ssl, TLSEXT_NAMETYPE_host_name) : st->server_name;
  if (sn) snprintf(info->server_name, sizeof info->server_name, "%s", sn);
  if (!st->done) return;
  info->protocol = SSL_get_version(st->ssl);
  info->cipher = SSL_get_cipher_name(st->ssl);
  info->resumed = SSL_session_reused(st->ssl);
  const unsigned char *a = NULL;
  unsigned alen = 0;
  SSL_get0_alpn_selected(st->ssl, &a, &alen);
  if (a && alen < sizeof info->alpn) {
    memcpy(info->alpn, a, alen);
    info->alpn[alen] = 0;
  }
  X509 *peer = SSL_get0_peer_certificate(st->ssl);
  if (peer) {
    X509_NAME_oneline(X509_get_subject_name(peer), info->peer_subject, sizeof info->peer_subject);
    X509_NAME_oneline(X509_get_issuer_name(peer), info->peer_issuer, sizeof info->peer_issuer);
    info->verified = SSL_get_verify_result(st->ssl) == X509_V_OK;
  }
}
