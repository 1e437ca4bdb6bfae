/* CPU of one device mTLS handshake, server side and client side apart, as
 * vppd configures its device port (P-256 certificates from
 * deploy/local/certs.sh, TLS 1.3, client certificate required), in three
 * variants: a full handshake without session tickets (what vppd does), a
 * full handshake issuing one ticket, and a resumption with that ticket.
 * It answers whether session resumption would shorten a reconnect storm.
 *
 * Both ends run in this one thread over a BIO pair, so no socket or
 * scheduler cost is counted: only OpenSSL's work, measured with the
 * thread's CPU clock around each side's calls.
 *
 *   tls_handshake_bench CERTS_DIR [HANDSHAKES]
 */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
	const char *name;
	int tickets; /* the server issues this many after a full handshake */
	int resume;  /* the client offers its last ticket */
} variant;

typedef struct {
	double server_s, client_s;
	int resumed;
} tally;

static SSL_SESSION *last_session;

static double thread_cpu_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int keep_session(SSL *ssl, SSL_SESSION *sess)
{
	(void)ssl;
	SSL_SESSION_free(last_session);
	last_session = sess;
	return 1; /* ours now */
}

static int load(SSL_CTX *ctx, const char *dir, const char *cert, const char *key)
{
	char c[4096], k[4096];
	snprintf(c, sizeof(c), "%s/%s", dir, cert);
	snprintf(k, sizeof(k), "%s/%s", dir, key);
	return SSL_CTX_use_certificate_chain_file(ctx, c) == 1 &&
	       SSL_CTX_use_PrivateKey_file(ctx, k, SSL_FILETYPE_PEM) == 1;
}

static SSL_CTX *server_ctx(const char *dir, int tickets)
{
	char ca[4096];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	snprintf(ca, sizeof(ca), "%s/device-ca.pem", dir);
	if (!ctx || !load(ctx, dir, "server.pem", "server.key") ||
	    SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
		return NULL;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_num_tickets(ctx, (size_t)tickets);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"vpp", 3);
	return ctx;
}

static SSL_CTX *client_ctx(const char *dir)
{
	char ca[4096];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	if (!ctx || !load(ctx, dir, "devices/dev-00000.pem", "devices/dev-00000.key") ||
	    SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
		return NULL;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_session_cache_mode(ctx,
	                               SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, keep_session);
	return ctx;
}

/* One handshake and one byte from the server (which carries its tickets
 * to the client). 0 on success. */
static int handshake(SSL_CTX *sctx, SSL_CTX *cctx, bool resume, tally *t)
{
	SSL *c = SSL_new(cctx), *s = SSL_new(sctx);
	BIO *cb, *sb;
	int rv = -1;
	if (!c || !s || BIO_new_bio_pair(&cb, 0, &sb, 0) != 1)
		goto out;
	SSL_set_bio(c, cb, cb);
	SSL_set_bio(s, sb, sb);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	if (resume && last_session)
		SSL_set_session(c, last_session);
	for (int round = 0; round < 8; round++) {
		double t0 = thread_cpu_s();
		int rc = SSL_do_handshake(c);
		double t1 = thread_cpu_s();
		int rs = SSL_do_handshake(s);
		double t2 = thread_cpu_s();
		t->client_s += t1 - t0;
		t->server_s += t2 - t1;
		if (rc == 1 && rs == 1) {
			char b;
			t0 = thread_cpu_s();
			int w = SSL_write(s, "x", 1);
			t1 = thread_cpu_s();
			int r = SSL_read(c, &b, 1);
			t2 = thread_cpu_s();
			t->server_s += t1 - t0;
			t->client_s += t2 - t1;
			if (w == 1 && r == 1) {
				t->resumed += SSL_session_reused(c);
				rv = 0;
			}
			break;
		}
	}
out:
	/* A clean end: an SSL freed mid-session marks its session (the
	 * ticket just kept) as not resumable. */
	if (c)
		SSL_set_shutdown(c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	SSL_free(c);
	SSL_free(s);
	return rv;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3 || strcmp(argv[1], "--help") == 0) {
		fprintf(stderr,
		        "usage: %s CERTS_DIR [HANDSHAKES]\n"
		        "CERTS_DIR as made by deploy/local/certs.sh (server.pem, "
		        "device-ca.pem, ca.pem, devices/dev-00000.pem)\n",
		        argv[0]);
		return 2;
	}
	int n = argc == 3 ? atoi(argv[2]) : 2000;
	if (n < 1) {
		fprintf(stderr, "HANDSHAKES must be a positive number\n");
		return 2;
	}
	const variant vs[] = {
	    {"full, no tickets (vppd)", 0, 0},
	    {"full, one ticket issued", 1, 0},
	    {"resumed with that ticket", 1, 1},
	};
	printf("%s, %d handshakes each\n", OpenSSL_version(OPENSSL_VERSION), n);
	printf("%-28s %12s %12s %9s\n", "variant", "server us", "client us", "resumed");
	for (size_t i = 0; i < sizeof(vs) / sizeof(vs[0]); i++) {
		SSL_CTX *sctx = server_ctx(argv[1], vs[i].tickets), *cctx = client_ctx(argv[1]);
		if (!sctx || !cctx) {
			fprintf(stderr, "cannot load the certificates in %s\n", argv[1]);
			ERR_print_errors_fp(stderr);
			return 1;
		}
		tally warm = {0}, t = {0};
		/* The first handshake pays for lazy loading, and gives the
		 * resumed variant its first ticket. */
		if (handshake(sctx, cctx, false, &warm) != 0) {
			fprintf(stderr, "handshake failed\n");
			ERR_print_errors_fp(stderr);
			return 1;
		}
		for (int k = 0; k < n; k++) {
			if (handshake(sctx, cctx, vs[i].resume, &t) != 0) {
				fprintf(stderr, "handshake %d failed\n", k);
				ERR_print_errors_fp(stderr);
				return 1;
			}
		}
		printf("%-28s %12.1f %12.1f %9d\n", vs[i].name, t.server_s / n * 1e6,
		       t.client_s / n * 1e6, t.resumed);
		SSL_CTX_free(sctx);
		SSL_CTX_free(cctx);
		SSL_SESSION_free(last_session);
		last_session = NULL;
	}
	return 0;
}
