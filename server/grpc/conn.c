/* One HTTP/2 connection on a libuv TCP handle, server or client side:
 * reading, the TLS pump (tls.c's BIOs), feeding nghttp2, the bounded write
 * path, timers (handshake, idle, keepalive) and closing. The role-specific
 * parts (nghttp2 callbacks, calls) are in server.c and client.c. */
#include "grpc_int.h"
#include "vpp/error.h"
#include "vpp/log.h"

#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

#define KEEPALIVE_ACK_TIMEOUT_MS 20000

static __thread uint8_t read_buf[VPP__READ_BUF];
static __thread uint8_t plain_buf[16 * 1024];
/* Plaintext gathered by vpp__conn_flush: one TLS record's worth. */
static __thread uint8_t stage_buf[16 * 1024];
static __thread bool stage_busy;
static __thread bool read_buf_busy;

uint64_t vpp__now_ms(uv_loop_t *loop)
{
	return uv_now(loop);
}

static void on_handle_closed(uv_handle_t *h)
{
	vpp_grpc_conn *c = h->data;
	if (--c->handles > 0)
		return;
	if (c->role == ROLE_CLIENT)
		vpp__client_conn_closed(c);
	else
		vpp__server_conn_closed(c);
}

static void on_timer(uv_timer_t *t);

int vpp__conn_init(vpp_grpc_conn *c, uv_loop_t *loop)
{
	int rv;
	c->loop = loop;
	if ((rv = uv_tcp_init(loop, &c->tcp)) != 0)
		return VPP_EIO;
	c->tcp.data = c;
	c->handles = 1;
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	c->handles = 2;
	c->opened_ms = c->last_rx_ms = c->idle_since_ms = uv_now(loop);
	return 0;
}

static void account_outbound(vpp_grpc_conn *c)
{
	if (!c->met)
		return;
	size_t now = c->wlen + c->plen + c->queued_bytes;
	if (now != c->outbound_accounted) {
		vpp_gauge_add(c->met->outbound, (double)now - (double)c->outbound_accounted);
		c->outbound_accounted = now;
	}
}

static int pbuf_reserve(vpp_grpc_conn *c, size_t extra)
{
	if (c->plen + extra <= c->pcap)
		return 0;
	/* Small first: most flushes are a few hundred bytes, and buffers of
	 * this size come from malloc's per-thread cache. */
	size_t ncap = c->pcap ? c->pcap : 1000;
	while (ncap < c->plen + extra)
		ncap *= 2;
	uint8_t *nb = realloc(c->pbuf, ncap);
	if (!nb)
		return VPP_ENOMEM;
	c->pbuf = nb;
	c->pcap = ncap;
	return 0;
}

int vpp__conn_out_append(vpp_grpc_conn *c, const uint8_t *data, size_t len)
{
	if (pbuf_reserve(c, len) != 0)
		return VPP_ENOMEM;
	memcpy(c->pbuf + c->plen, data, len);
	c->plen += len;
	return 0;
}

static void on_write(uv_write_t *req, int status);

static void start_write(vpp_grpc_conn *c)
{
	if (c->wbuf || c->plen == 0 || c->closing)
		return;
	c->wbuf = c->pbuf;
	c->wlen = c->plen;
	c->pbuf = NULL;
	c->plen = c->pcap = 0;
	uv_buf_t b = uv_buf_init((char *)c->wbuf, (unsigned)c->wlen);
	int rv = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
	if (rv != 0) {
		free(c->wbuf);
		c->wbuf = NULL;
		c->wlen = 0;
		vpp__conn_close(c, VPP_EIO);
	}
}

static void on_write(uv_write_t *req, int status)
{
	vpp_grpc_conn *c = req->handle->data;
	free(c->wbuf);
	c->wbuf = NULL;
	c->wlen = 0;
	if (c->closing) {
		account_outbound(c);
		return;
	}
	if (status != 0) {
		vpp__conn_close(c, VPP_EIO);
		return;
	}
	vpp__conn_flush(c);
}

/* Encrypts |len| bytes into TLS records, which OpenSSL's write BIO
 * appends to the pending buffer. Returns 0 or VPP_ETLS. */
static int tls_put(vpp_grpc_conn *c, const uint8_t *data, size_t len)
{
	/* The write BIO never blocks: one call encrypts it all (into as many
	 * records as needed). */
	if (SSL_write(c->ssl, data, (int)len) != (int)len)
		return VPP_ETLS;
	return 0;
}

/* Frames from nghttp2 come one at a time and are small (a unary call is
 * four or five of them): they are gathered in |st| and encrypted together,
 * so that a flush costs one TLS record, not one per frame. */
typedef struct {
	uint8_t *buf; /* NULL: the thread's buffer is taken, encrypt at once */
	size_t len;
} stage;

static int put_frame(vpp_grpc_conn *c, stage *st, const uint8_t *data, size_t len)
{
	int rv;
	if (!c->ssl)
		return vpp__conn_out_append(c, data, len);
	if (st->len && st->len + len > sizeof(stage_buf)) {
		if ((rv = tls_put(c, st->buf, st->len)) != 0)
			return rv;
		st->len = 0;
	}
	if (!st->buf || len > sizeof(stage_buf))
		return tls_put(c, data, len);
	memcpy(st->buf + st->len, data, len);
	st->len += len;
	return 0;
}

static void flush_failed(vpp_grpc_conn *c, int rv)
{
	if (rv == VPP_ETLS)
		vpp_log(VPP_LOG_WARN, "grpc", "peer=%s TLS write failed: %s", c->peer_addr,
			vpp__tls_last_error());
	c->in_h2 = false;
	vpp__conn_close(c, rv);
}

void vpp__conn_flush(vpp_grpc_conn *c)
{
	if (c->closing || c->in_h2 || c->close_deferred)
		return;
	c->in_h2 = true;
	if (c->h2 && (c->tls_done || c->ssl == NULL)) {
		/* A handler called from nghttp2 may flush another conn of
		 * this thread: only the outermost flush uses the buffer. */
		stage st = {stage_busy ? NULL : stage_buf, 0};
		int rv = 0;
		stage_busy = true;
		while (c->plen + c->wlen + st.len < VPP__OUT_HIGH_WATER &&
		       nghttp2_session_want_write(c->h2)) {
			const uint8_t *data;
			ssize_t n = nghttp2_session_mem_send(c->h2, &data);
			if (n < 0) {
				vpp_log(VPP_LOG_WARN, "grpc", "peer=%s http2 send failed: %s",
					c->peer_addr, nghttp2_strerror((int)n));
				rv = VPP_EPROTO;
				break;
			}
			if (n == 0 || (rv = put_frame(c, &st, data, (size_t)n)) != 0)
				break;
		}
		if (rv == 0 && st.len)
			rv = tls_put(c, st.buf, st.len);
		if (st.buf)
			stage_busy = false;
		if (rv != 0) {
			flush_failed(c, rv);
			return;
		}
	}
	c->in_h2 = false;
	start_write(c);
	account_outbound(c);
	if (c->any_want_writable)
		vpp__conn_notify_writable(c);
	if (c->closing)
		return;
	bool idle_out = c->wlen == 0 && c->plen == 0;
	if (idle_out && c->want_close) {
		vpp__conn_close(c, c->close_err);
		return;
	}
	if (idle_out && c->h2 && !nghttp2_session_want_read(c->h2) &&
	    !nghttp2_session_want_write(c->h2))
		vpp__conn_close(c, 0);
}

void vpp__conn_reject(vpp_grpc_conn *c, vpp__reason r, const char *why)
{
	if (c->met)
		vpp_counter_inc(c->met->rejected[r]);
	vpp_log(VPP_LOG_WARN, "grpc", "listener=%s peer=%s connection rejected (%s): %s",
		c->l ? c->l->name : "client", c->peer_addr, vpp__reason_names[r], why);
	if (c->h2 && r != R_HTTP1 && !c->goaway_sent) {
		nghttp2_session_terminate_session(c->h2, r == R_IDLE_TIMEOUT || r == R_HANDSHAKE_TIMEOUT
								 ? NGHTTP2_NO_ERROR
								 : NGHTTP2_PROTOCOL_ERROR);
		c->goaway_sent = true;
	}
	c->want_close = true;
	vpp__conn_flush(c);
}

/* After the TLS handshake (or at once for h2c): starts the HTTP/2 session. */
static int start_h2(vpp_grpc_conn *c)
{
	int rv = c->role == ROLE_SERVER ? vpp__server_session_new(c) : vpp__client_session_new(c);
	if (rv != 0)
		return rv;
	c->h2_started = true;
	c->idle_since_ms = uv_now(c->loop);
	return 0;
}

static bool looks_like_http1(const uint8_t *d, size_t n)
{
	static const char *methods[] = {"GET ", "POST ", "HEAD ", "PUT ", "DELETE ", "OPTIONS ",
					"PATCH ", "CONNECT "};
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		size_t m = strlen(methods[i]);
		if (n >= m && memcmp(d, methods[i], m) == 0)
			return true;
	}
	return false;
}

static void feed_h2(vpp_grpc_conn *c, const uint8_t *data, size_t len)
{
	if (!c->h2 || c->closing || c->want_close)
		return;
	c->in_h2 = true;
	ssize_t rv = nghttp2_session_mem_recv(c->h2, data, len);
	c->in_h2 = false;
	if (rv >= 0)
		return;
	if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
		if (looks_like_http1(data, len)) {
			static const char resp[] =
				"HTTP/1.1 505 HTTP Version Not Supported\r\n"
				"Content-Type: text/plain\r\nConnection: close\r\n"
				"Content-Length: 34\r\n\r\nthis is a gRPC server: use HTTP/2\n";
			if (c->ssl)
				SSL_write(c->ssl, resp, sizeof(resp) - 1);
			else
				vpp__conn_out_append(c, (const uint8_t *)resp, sizeof(resp) - 1);
			nghttp2_session_del(c->h2);
			c->h2 = NULL;
			vpp__conn_reject(c, R_HTTP1, "HTTP/1.x request");
		} else {
			vpp__conn_reject(c, R_BAD_PREFACE, "bad HTTP/2 connection preface");
		}
		return;
	}
	char why[128];
	snprintf(why, sizeof(why), "http2: %s", nghttp2_strerror((int)rv));
	vpp__conn_reject(c, R_H2_PROTOCOL, why);
}

static void on_tls_data(vpp_grpc_conn *c)
{
	if (!c->tls_done) {
		int rv = SSL_do_handshake(c->ssl);
		if (rv != 1) {
			int e = SSL_get_error(c->ssl, rv);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				vpp__conn_flush(c);
				return;
			}
			char why[300];
			long vr = SSL_get_verify_result(c->ssl);
			if (vr != X509_V_OK)
				snprintf(why, sizeof(why), "TLS handshake failed: certificate %s",
					 X509_verify_cert_error_string(vr));
			else
				snprintf(why, sizeof(why), "TLS handshake failed: %s",
					 vpp__tls_last_error());
			ERR_clear_error();
			vpp__conn_reject(c, R_TLS_HANDSHAKE, why);
			return;
		}
		c->tls_done = true;
		if (c->adm)
			vpp__admission_done(c);
		vpp__tls_peer_identity(c);
		const unsigned char *proto = NULL;
		unsigned int plen = 0;
		SSL_get0_alpn_selected(c->ssl, &proto, &plen);
		if (!(plen == 2 && memcmp(proto, "h2", 2) == 0)) {
			/* gRPC over TLS is negotiated as h2: a peer that offers
			 * nothing (or something else) speaks another protocol. */
			vpp__conn_reject(c, R_TLS_HANDSHAKE,
					 plen ? "ALPN did not select h2" : "no ALPN: h2 is required");
			return;
		}
		if (start_h2(c) != 0) {
			vpp__conn_close(c, VPP_ENOMEM);
			return;
		}
		if (c->role == ROLE_CLIENT)
			vpp__client_conn_ready(c);
	}
	for (;;) {
		int n = SSL_read(c->ssl, plain_buf, sizeof(plain_buf));
		if (n > 0) {
			feed_h2(c, plain_buf, (size_t)n);
			if (c->closing || c->want_close)
				break;
			continue;
		}
		int e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			break;
		if (e == SSL_ERROR_ZERO_RETURN) {
			vpp__conn_close(c, 0);
			return;
		}
		vpp_log(VPP_LOG_INFO, "grpc", "peer=%s TLS read failed: %s", c->peer_addr,
			vpp__tls_last_error());
		vpp__conn_close(c, VPP_ETLS);
		return;
	}
	vpp__conn_flush(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	/* One buffer per thread: every read is consumed before returning. */
	if (read_buf_busy) {
		buf->base = NULL;
		buf->len = 0;
		return;
	}
	read_buf_busy = true;
	buf->base = (char *)read_buf;
	buf->len = sizeof(read_buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	vpp_grpc_conn *c = s->data;
	if (buf->base == (char *)read_buf)
		read_buf_busy = false;
	if (nread == 0)
		return;
	if (nread < 0) {
		if (nread == UV_ENOBUFS)
			return;
		vpp__conn_close(c, nread == UV_EOF ? 0 : VPP_EIO);
		return;
	}
	c->last_rx_ms = uv_now(c->loop);
	/* A connection that closes once its output is flushed reads no more:
	 * nothing it receives would be used, and with TLS, records cut off
	 * when it stopped reading could not be decrypted later anyway. */
	if (c->closing || c->want_close)
		return;
	if (c->ssl) {
		/* OpenSSL's read BIO takes records from this buffer; what a
		 * partial record needs stays in OpenSSL's own read buffer. */
		c->tls_in = (const uint8_t *)buf->base;
		c->tls_in_len = (size_t)nread;
		on_tls_data(c);
		/* All consumed, unless the connection stopped reading (above). */
		c->tls_in = NULL;
		c->tls_in_len = 0;
		return;
	}
	feed_h2(c, (const uint8_t *)buf->base, (size_t)nread);
	vpp__conn_flush(c);
}

void vpp__conn_start_reading(vpp_grpc_conn *c)
{
	int rv = 0;
	if (!c->ssl) {
		if ((rv = start_h2(c)) != 0) {
			vpp__conn_close(c, rv);
			return;
		}
		if (c->role == ROLE_CLIENT)
			vpp__client_conn_ready(c);
	}
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
		vpp__conn_close(c, VPP_EIO);
		return;
	}
	c->reading = true;
	if (c->ssl && c->role == ROLE_CLIENT)
		on_tls_data(c); /* sends the ClientHello */
	else
		vpp__conn_flush(c);
	vpp__conn_arm_timer(c);
}

/* TLS done and, on the server, the client's HTTP/2 preface received: the
 * handshake timeout stops applying. */
static bool conn_ready(const vpp_grpc_conn *c)
{
	return c->h2_started && (c->ssl == NULL || c->tls_done) &&
	       (c->role == ROLE_CLIENT || c->peer_settings);
}

void vpp__conn_arm_timer(vpp_grpc_conn *c)
{
	if (c->closing || c->close_deferred)
		return;
	uint64_t now = uv_now(c->loop), next = UINT64_MAX;
	bool ready = conn_ready(c);
	if (!ready && c->handshake_timeout_ms)
		next = c->opened_ms + c->handshake_timeout_ms;
	if (ready && c->idle_timeout_ms && c->nstreams == 0 && c->idle_since_ms + c->idle_timeout_ms < next)
		next = c->idle_since_ms + c->idle_timeout_ms;
	if (c->headers_since_ms && c->handshake_timeout_ms &&
	    c->headers_since_ms + c->handshake_timeout_ms < next)
		next = c->headers_since_ms + c->handshake_timeout_ms;
	if (ready && c->keepalive_ms) {
		uint64_t k = c->ping_outstanding ? c->ping_sent_ms + KEEPALIVE_ACK_TIMEOUT_MS
						 : c->last_rx_ms + c->keepalive_ms;
		if (k < next)
			next = k;
	}
	if (next == UINT64_MAX) {
		uv_timer_stop(&c->timer);
		return;
	}
	uv_timer_start(&c->timer, on_timer, next > now ? next - now : 1, 0);
}

static void on_timer(uv_timer_t *t)
{
	vpp_grpc_conn *c = t->data;
	uint64_t now = uv_now(c->loop);
	bool ready = conn_ready(c);
	if (c->close_deferred && !c->closing) {
		c->close_deferred = false;
		vpp__conn_close(c, c->close_err);
		return;
	}
	if (c->closing || c->want_close)
		return;
	if (!ready && c->handshake_timeout_ms && now >= c->opened_ms + c->handshake_timeout_ms) {
		vpp__conn_reject(c, R_HANDSHAKE_TIMEOUT, "no TLS handshake / HTTP/2 preface in time");
		if (!c->closing)
			vpp__conn_close(c, VPP_ETIMEDOUT);
		return;
	}
	if (c->headers_since_ms && c->handshake_timeout_ms &&
	    now >= c->headers_since_ms + c->handshake_timeout_ms) {
		vpp__conn_reject(c, R_HEADER_TIMEOUT, "an HTTP/2 header block not completed in time");
		if (!c->closing)
			vpp__conn_close(c, VPP_ETIMEDOUT);
		return;
	}
	if (ready && c->idle_timeout_ms && c->nstreams == 0 &&
	    now >= c->idle_since_ms + c->idle_timeout_ms) {
		if (c->met)
			vpp_counter_inc(c->met->rejected[R_IDLE_TIMEOUT]);
		vpp_log(VPP_LOG_INFO, "grpc", "peer=%s idle connection closed", c->peer_addr);
		if (!c->goaway_sent) {
			nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
					      nghttp2_session_get_last_proc_stream_id(c->h2),
					      NGHTTP2_NO_ERROR, (const uint8_t *)"idle", 4);
			c->goaway_sent = true;
		}
		c->want_close = true;
		vpp__conn_flush(c);
		return;
	}
	if (ready && c->keepalive_ms) {
		if (c->ping_outstanding && now >= c->ping_sent_ms + KEEPALIVE_ACK_TIMEOUT_MS) {
			if (c->met)
				vpp_counter_inc(c->met->rejected[R_KEEPALIVE_TIMEOUT]);
			vpp_log(VPP_LOG_WARN, "grpc", "peer=%s keepalive PING unanswered: closing",
				c->peer_addr);
			vpp__conn_close(c, VPP_ETIMEDOUT);
			return;
		}
		if (!c->ping_outstanding && now >= c->last_rx_ms + c->keepalive_ms) {
			nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, NULL);
			c->ping_outstanding = true;
			c->ping_sent_ms = now;
			vpp__conn_flush(c);
		}
	}
	vpp__conn_arm_timer(c);
}

void vpp__conn_close(vpp_grpc_conn *c, int err)
{
	if (c->closing)
		return;
	if (c->in_h2) {
		/* Inside an nghttp2 callback: the session cannot be freed now. */
		c->want_close = true;
		c->close_err = err;
		return;
	}
	if (c->in_api) {
		if (!c->close_deferred) {
			c->close_deferred = true;
			c->want_close = true;
			c->close_err = err;
			uv_timer_start(&c->timer, on_timer, 0, 0);
		}
		return;
	}
	c->closing = true;
	c->close_err = err;
	/* Every call still open ends now; handlers hear on_done/on_status. */
	while (c->calls) {
		vpp_grpc_call *call = c->calls;
		vpp__call_free(call);
	}
	if (c->h2) {
		nghttp2_session_del(c->h2);
		c->h2 = NULL;
	}
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	free(c->pbuf);
	c->pbuf = NULL;
	c->plen = c->pcap = 0;
	account_outbound(c);
	uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}
