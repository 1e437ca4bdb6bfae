/* TLS for the gRPC transport: SSL_CTX set-up (TLS 1.2+, servers with ECDHE
 * and AEAD ciphers only in their own order, ALPN h2, optional client
 * certificates) and per-connection SSL objects on a BIO of our own, so that
 * libuv owns the socket and OpenSSL only transforms bytes. */
#include "grpc_int.h"
#include "vpp/error.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char alpn_h2[] = {2, 'h', '2'};

/* Why the last context of this thread could not be made. */
static _Thread_local char load_error[320];

/* Records which file failed and OpenSSL's reason for it (a missing file,
 * no permission, not PEM, a key that is not the certificate's), then
 * empties this thread's error queue. Returns false, for `goto fail`. */
static bool failed(const char *what, const char *path)
{
	char reason[200] = "unknown error";
	unsigned long e, sys = 0, last = 0;
	while ((e = ERR_get_error()) != 0) {
		last = e;
		if (ERR_GET_LIB(e) == ERR_LIB_SYS && !sys)
			sys = e;
	}
	/* A file that cannot be opened: the system's reason (errno). */
	if (sys)
		snprintf(reason, sizeof(reason), "%s", strerror(ERR_GET_REASON(sys)));
	else if (last)
		ERR_error_string_n(last, reason, sizeof(reason));
	snprintf(load_error, sizeof(load_error), "%s %s: %s", what, path ? path : "", reason);
	ERR_clear_error();
	return false;
}

const char *vpp_grpc_tls_load_error(void)
{
	return load_error[0] ? load_error : "no error recorded";
}

/* The connection's BIO: OpenSSL reads ciphertext straight from the buffer
 * libuv read into (c->tls_in) and writes records straight into the conn's
 * pending output. Memory BIOs would copy every record once more each way
 * and cost their own bookkeeping per record. */
static BIO_METHOD *conn_bio_method;
static pthread_once_t conn_bio_once = PTHREAD_ONCE_INIT;

static int conn_bio_write(BIO *b, const char *data, size_t len, size_t *written)
{
	vpp_grpc_conn *c = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	if (vpp__conn_out_append(c, (const uint8_t *)data, len) != 0)
		return 0;
	*written = len;
	return 1;
}

static int conn_bio_read(BIO *b, char *out, size_t len, size_t *readbytes)
{
	vpp_grpc_conn *c = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	if (c->tls_in_len == 0) {
		BIO_set_retry_read(b); /* until the next read from the socket */
		return 0;
	}
	size_t n = len < c->tls_in_len ? len : c->tls_in_len;
	memcpy(out, c->tls_in, n);
	c->tls_in += n;
	c->tls_in_len -= n;
	*readbytes = n;
	return 1;
}

static long conn_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)num;
	(void)ptr;
	vpp_grpc_conn *c = BIO_get_data(b);
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1; /* vpp__conn_flush writes the pending output */
	case BIO_CTRL_PENDING:
		return (long)c->tls_in_len;
	default:
		return 0;
	}
}

static int conn_bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void conn_bio_init_method(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "vpp conn");
	if (m && (BIO_meth_set_write_ex(m, conn_bio_write) != 1 ||
		  BIO_meth_set_read_ex(m, conn_bio_read) != 1 ||
		  BIO_meth_set_ctrl(m, conn_bio_ctrl) != 1 ||
		  BIO_meth_set_create(m, conn_bio_create) != 1)) {
		BIO_meth_free(m);
		m = NULL;
	}
	conn_bio_method = m;
}

const char *vpp__tls_last_error(void)
{
	static __thread char buf[256];
	unsigned long e = ERR_peek_last_error();
	if (!e)
		return "unknown TLS error";
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return buf;
}

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	unsigned char *sel;
	if (SSL_select_next_proto(&sel, outlen, alpn_h2, sizeof(alpn_h2), in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

static vpp_grpc_tls *tls_alloc(SSL_CTX *ctx)
{
	vpp_grpc_tls *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->ctx = ctx;
	atomic_init(&t->refs, 1);
	return t;
}

static void ctx_common(SSL_CTX *ctx)
{
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* Idle sessions hold no read/write buffers. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
}

/* ---- protocol policy (server side) ----------------------------------- */

/* Records why a policy is refused, for vpp_grpc_tls_load_error(). Returns
 * VPP_EINVAL. */
__attribute__((format(printf, 1, 2))) static int policy_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(load_error, sizeof(load_error), fmt, ap);
	va_end(ap);
	ERR_clear_error();
	return VPP_EINVAL;
}

static int parse_min_version(const char *v, int *ret)
{
	if (!v || strcmp(v, "1.2") == 0)
		*ret = TLS1_2_VERSION;
	else if (strcmp(v, "1.3") == 0)
		*ret = TLS1_3_VERSION;
	else
		return policy_error("'%s' is not a TLS version vppd accepts as the minimum: "
				    "expected 1.2 or 1.3",
				    v);
	return 0;
}

/* Checks the cipher list |list| on the scratch context |ctx|. OpenSSL
 * ignores names it does not know as long as one matches, so each name is
 * tried alone first (a typo would otherwise quietly drop a cipher); then
 * every TLS 1.2 cipher of the whole list must be ECDHE with AEAD, since a
 * list such as "HIGH" brings CBC and static RSA back. Names after '!', '-'
 * and '+' only remove or move ciphers and are not tried alone; '@' starts
 * a directive (@STRENGTH, @SECLEVEL=n). Returns 0 or VPP_EINVAL. */
static int check_ciphers(SSL_CTX *ctx, const char *list)
{
	char buf[1024], *save = NULL;
	if (!list[0])
		return policy_error("the cipher list is empty");
	if (strlen(list) >= sizeof(buf))
		return policy_error("the cipher list is longer than %zu bytes", sizeof(buf) - 1);
	snprintf(buf, sizeof(buf), "%s", list);
	for (char *name = strtok_r(buf, ":, ", &save); name; name = strtok_r(NULL, ":, ", &save)) {
		if (name[0] == '!' || name[0] == '-' || name[0] == '+' || name[0] == '@')
			continue;
		if (SSL_CTX_set_cipher_list(ctx, name) != 1)
			return policy_error("'%s' matches no TLS 1.2 cipher this OpenSSL knows "
					    "(`openssl ciphers -v` lists them)",
					    name);
	}
	if (SSL_CTX_set_cipher_list(ctx, list) != 1)
		return policy_error("'%s' leaves no TLS 1.2 cipher", list);
	STACK_OF(SSL_CIPHER) *sk = SSL_CTX_get_ciphers(ctx);
	for (int i = 0; i < sk_SSL_CIPHER_num(sk); i++) {
		const SSL_CIPHER *c = sk_SSL_CIPHER_value(sk, i);
		int kx = SSL_CIPHER_get_kx_nid(c);
		if (kx == NID_kx_any)
			continue; /* a TLS 1.3 suite: all are AEAD */
		if (kx != NID_kx_ecdhe || !SSL_CIPHER_is_aead(c) ||
		    SSL_CIPHER_get_auth_nid(c) == NID_auth_null)
			return policy_error("the list brings in %s, which is not ECDHE with an AEAD "
					    "cipher (AES-GCM, CHACHA20-POLY1305 or AES-CCM): leave it "
					    "out (e.g. with :!%s)",
					    SSL_CIPHER_get_name(c), SSL_CIPHER_get_name(c));
	}
	return 0;
}

/* Applies a policy known to be valid to |ctx|. */
static int apply_policy(SSL_CTX *ctx, const char *list, int min_version)
{
	if (SSL_CTX_set_cipher_list(ctx, list) != 1 ||
	    SSL_CTX_set_min_proto_version(ctx, min_version) != 1)
		return policy_error("cannot apply the TLS policy: %s", vpp__tls_last_error());
	/* Without it the client's order wins, and a client that lists a
	 * weaker cipher first gets it. */
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	return 0;
}

static int check_policy(const char *ciphers, const char *min_version, int *version)
{
	int rv;
	if ((rv = parse_min_version(min_version, version)) != 0)
		return rv;
	SSL_CTX *scratch = SSL_CTX_new(TLS_server_method());
	if (!scratch) {
		snprintf(load_error, sizeof(load_error), "out of memory");
		return VPP_ENOMEM;
	}
	rv = check_ciphers(scratch, ciphers ? ciphers : VPP_GRPC_TLS12_CIPHERS);
	SSL_CTX_free(scratch);
	return rv;
}

int vpp_grpc_tls_policy_check(const char *ciphers, const char *min_version)
{
	int version;
	return check_policy(ciphers, min_version, &version);
}

int vpp_grpc_tls_set_policy(vpp_grpc_tls *t, const char *ciphers, const char *min_version)
{
	int rv, version;
	if ((rv = check_policy(ciphers, min_version, &version)) != 0)
		return rv;
	return apply_policy(t->ctx, ciphers ? ciphers : VPP_GRPC_TLS12_CIPHERS, version);
}

int vpp_grpc_tls_server_new(const char *cert_file, const char *key_file, const char *client_ca,
			    bool require_client_cert, vpp_grpc_tls **ret)
{
	if (!cert_file || !key_file)
		return VPP_EINVAL;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx)
		return VPP_ENOMEM;
	ctx_common(ctx);
	load_error[0] = 0;
	if (apply_policy(ctx, VPP_GRPC_TLS12_CIPHERS, TLS1_2_VERSION) != 0)
		goto fail;
	if ((SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1 &&
	     !failed("certificate", cert_file)) ||
	    (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 &&
	     !failed("key", key_file)) ||
	    (SSL_CTX_check_private_key(ctx) != 1 && !failed("key (not the certificate's)", key_file)))
		goto fail;
	SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
	/* No session tickets and no session cache: the ticket keys live and
	 * die with the process, so after a restart (the reconnect storm)
	 * every client needs a full handshake anyway, and issuing two
	 * tickets per connection cost a third of the server's handshake CPU;
	 * a cache would hold every client's certificate in memory. */
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"vpp", 3);
	if (client_ca) {
		if (SSL_CTX_load_verify_locations(ctx, client_ca, NULL) != 1 &&
		    !failed("client CA", client_ca))
			goto fail;
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
		if (names)
			SSL_CTX_set_client_CA_list(ctx, names);
		int mode = SSL_VERIFY_PEER;
		if (require_client_cert)
			mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
		SSL_CTX_set_verify(ctx, mode, NULL);
	}
	vpp_grpc_tls *t = tls_alloc(ctx);
	if (!t) {
		SSL_CTX_free(ctx);
		return VPP_ENOMEM;
	}
	*ret = t;
	return 0;
fail:
	SSL_CTX_free(ctx);
	return VPP_ETLS;
}

int vpp_grpc_tls_client_new(const char *ca_file, const char *cert_file, const char *key_file,
			    vpp_grpc_tls **ret)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		return VPP_ENOMEM;
	ctx_common(ctx);
	if (SSL_CTX_set_alpn_protos(ctx, alpn_h2, sizeof(alpn_h2)) != 0)
		goto fail;
	if (ca_file) {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)
			goto fail;
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		goto fail;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (cert_file && key_file) {
		if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1 ||
		    SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(ctx) != 1)
			goto fail;
	}
	vpp_grpc_tls *t = tls_alloc(ctx);
	if (!t) {
		SSL_CTX_free(ctx);
		return VPP_ENOMEM;
	}
	*ret = t;
	return 0;
fail:
	SSL_CTX_free(ctx);
	return VPP_ETLS;
}

void vpp_grpc_tls_ref(vpp_grpc_tls *t)
{
	atomic_fetch_add(&t->refs, 1);
}

void vpp_grpc_tls_unref(vpp_grpc_tls *t)
{
	if (t && atomic_fetch_sub(&t->refs, 1) == 1) {
		SSL_CTX_free(t->ctx);
		free(t);
	}
}

static X509 *read_cert(const char *file)
{
	FILE *f = fopen(file, "r");
	if (!f)
		return NULL;
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	return x;
}

static EVP_PKEY *read_key(const char *file)
{
	FILE *f = fopen(file, "r");
	if (!f)
		return NULL;
	EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	return k;
}

int vpp_grpc_identity_load(const char *cert_file, const char *key_file,
			   const vpp_grpc_identity *same_key_as, vpp_grpc_identity **ret)
{
	if (!cert_file || !key_file)
		return VPP_EINVAL;
	vpp_grpc_identity *id = calloc(1, sizeof(*id));
	if (!id)
		return VPP_ENOMEM;
	if (!(id->cert = read_cert(cert_file)))
		goto fail;
	if (same_key_as && X509_check_private_key(id->cert, same_key_as->key) == 1) {
		EVP_PKEY_up_ref(same_key_as->key);
		id->key = same_key_as->key;
	} else {
		ERR_clear_error(); /* the mismatch is not an error */
		if (!(id->key = read_key(key_file)) || X509_check_private_key(id->cert, id->key) != 1)
			goto fail;
	}
	*ret = id;
	return 0;
fail:
	vpp_grpc_identity_free(id);
	return VPP_ETLS;
}

void vpp_grpc_identity_free(vpp_grpc_identity *id)
{
	if (!id)
		return;
	X509_free(id->cert);
	EVP_PKEY_free(id->key);
	free(id);
}

int vpp__tls_attach(vpp_grpc_conn *c, vpp_grpc_tls *t, bool server, const char *sni,
		    const vpp_grpc_identity *id)
{
	SSL *ssl = SSL_new(t->ctx);
	if (!ssl)
		return VPP_ENOMEM;
	if (id && (SSL_use_certificate(ssl, id->cert) != 1 ||
		   SSL_use_PrivateKey(ssl, id->key) != 1)) {
		SSL_free(ssl);
		return VPP_ETLS;
	}
	pthread_once(&conn_bio_once, conn_bio_init_method);
	BIO *bio = conn_bio_method ? BIO_new(conn_bio_method) : NULL;
	if (!bio) {
		SSL_free(ssl);
		return VPP_ENOMEM;
	}
	BIO_set_data(bio, c);
	SSL_set_bio(ssl, bio, bio); /* one reference, used both ways */
	if (server) {
		SSL_set_accept_state(ssl);
	} else {
		SSL_set_connect_state(ssl);
		if (sni) {
			SSL_set_tlsext_host_name(ssl, sni);
			X509_VERIFY_PARAM *p = SSL_get0_param(ssl);
			X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			/* An IP literal is checked against IP SANs, a name
			 * against DNS SANs. */
			if (X509_VERIFY_PARAM_set1_ip_asc(p, sni) != 1)
				X509_VERIFY_PARAM_set1_host(p, sni, 0);
		}
	}
	c->ssl = ssl;
	return 0;
}

void vpp__tls_peer_identity(vpp_grpc_conn *c)
{
	X509 *peer = SSL_get0_peer_certificate(c->ssl);
	if (!peer || SSL_get_verify_result(c->ssl) != X509_V_OK)
		return;
	X509_NAME *name = X509_get_subject_name(peer);
	/* Exactly one CN: with several, tools that read another one would see
	 * another identity. */
	int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	if (idx < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, idx) >= 0)
		return;
	char cn[256];
	const ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
	if (!v || ASN1_STRING_length(v) >= (int)sizeof(cn))
		return; /* longer than any identity: never cut one to fit */
	int n = X509_NAME_get_text_by_NID(name, NID_commonName, cn, sizeof(cn));
	if (n <= 0 || (size_t)n != strlen(cn))
		return; /* absent, or an embedded NUL: not an identity */
	c->peer_cn = strdup(cn);
}
