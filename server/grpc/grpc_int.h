/* Internals of the gRPC transport shared by server.c, client.c, conn.c,
 * call.c and tls.c. */
#ifndef VPP_GRPC_INT_H
#define VPP_GRPC_INT_H

#include "vpp/grpc.h"
#include "vpp/grpc_codec.h"
#include "vpp/metrics.h"

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <uv.h>

#define VPP__MAX_LOOPS 64
#define VPP__MAX_LISTENERS 8
#define VPP__READ_BUF (64 * 1024)
/* Stop pulling frames out of nghttp2 while this much is waiting for the
 * socket: a slow reader holds data in call queues, never in the conn. */
#define VPP__OUT_HIGH_WATER (64 * 1024)
/* Descriptors kept free for the database, the admin endpoint and files,
 * over those in use when the server starts. */
#define VPP__FD_MARGIN 32

/* Reasons counted in vpp_grpc_rejected_total{reason=...}. */
typedef enum {
	R_TLS_HANDSHAKE,
	R_BAD_PREFACE,
	R_HTTP1,
	R_H2_PROTOCOL,
	R_BAD_CONTENT_TYPE,
	R_BAD_METHOD,
	R_UNKNOWN_METHOD,
	R_UNSUPPORTED_ENCODING,
	R_MESSAGE_TOO_LARGE,
	R_TRUNCATED_MESSAGE,
	R_BAD_MESSAGE,
	R_TOO_MANY_STREAMS,
	R_HEADER_TOO_LARGE,
	R_HANDSHAKE_TIMEOUT,
	R_IDLE_TIMEOUT,
	R_KEEPALIVE_TIMEOUT,
	R_DEADLINE_EXCEEDED,
	R_CANCELLED,
	R_SLOW_READER,
	R_ADMISSION,
	R_ACCEPT_FAILED,
	R_CLIENT_GONE,
	R_HEADER_TIMEOUT,
	R_FD_LIMIT,
	R__COUNT
} vpp__reason;

extern const char *const vpp__reason_names[R__COUNT];

struct vpp_grpc_tls {
	SSL_CTX *ctx;
	_Atomic int refs;
};

struct vpp_grpc_identity {
	X509 *cert;
	EVP_PKEY *key;
};

typedef struct {
	vpp_counter *rejected[R__COUNT];
	vpp_counter *conns_total;
	vpp_gauge *conns;
	vpp_gauge *outbound;
	vpp_counter *msgs_in, *msgs_out;
	vpp_histogram *call_seconds;
} vpp__listener_metrics;

typedef struct method_entry {
	vpp_grpc_method m; /* m.path is |path| */
	char *path;	   /* our copy */
	size_t path_len;
	vpp_counter *calls[17]; /* by status code */
} method_entry;

/* Calls freed on one I/O loop, kept for the next ones (server side): most
 * calls are short and a loop starts and ends dozens per read. */
#define VPP__CALL_POOL 64
typedef struct call_pool {
	struct vpp_grpc_call *items[VPP__CALL_POOL];
	int n;
} call_pool;

typedef struct io_loop io_loop;

/* Handshakes one loop runs at once on one listener (admission.c). */
#define VPP__HANDSHAKES_IN_FLIGHT 64
/* ... each holding its turn for at most this long. */
#define VPP__HANDSHAKE_SLOT_MS 500
/* A connection waits at most this long for its turn (clients time out;
 * one whose client has already given up is dropped at its turn). */
#define VPP__ADMISSION_MAX_WAIT_MS 8000

/* A connection's place in one admission queue. */
typedef struct {
	struct vpp_grpc_conn *prev, *next;
} vpp__conn_link;

typedef struct {
	struct vpp_grpc_conn *head, *tail;
	uint32_t n;
} vpp__conn_queue;

/* The connections waiting from one source address (admission.c). */
typedef struct vpp__adm_source vpp__adm_source;

typedef struct vpp__admission {
	double rate; /* new connections per second on this loop; 0: no limit */
	bool tls;    /* count handshakes in flight */
	bool closed;
	double tokens;
	uint64_t tokens_at;
	uint32_t wait_limit;
	vpp__conn_queue waiting;     /* in arrival order, every source */
	vpp__conn_queue handshaking; /* in the order they started */
	vpp__adm_source **buckets;   /* sources with connections waiting */
	uint32_t nbuckets, nsources;
	vpp__adm_source *turn;	     /* next to start one, on a ring */
	vpp__adm_source *largest;    /* about the most waiting; NULL: unknown */
	uv_timer_t timer;
	void (*start)(struct vpp_grpc_conn *c);
} vpp__admission;

struct vpp_grpc_listener {
	vpp_grpc_server *srv;
	char *name;
	char *addr;
	int port;
	vpp_grpc_tls *tls;
	method_entry *methods;
	size_t nmethods;
	vpp_counter *unknown_calls;
	vpp__listener_metrics met;
	int fds[VPP__MAX_LOOPS];
	uint32_t admission_per_s; /* new connections per second; 0: unlimited */
};

struct vpp_grpc_server {
	vpp_grpc_server_opts opts;
	vpp_grpc_listener *listeners[VPP__MAX_LISTENERS];
	int nlisteners;
	io_loop *loops[VPP__MAX_LOOPS];
	int nloops;
	bool started;
	uint32_t grace_ms;
	uint64_t fd_limit;	  /* RLIMIT_NOFILE when started */
	uint64_t fd_reserve;	  /* descriptors that are not connections */
	atomic_long open_conns; /* over every loop */
	struct {
		void (*fn)(void *ud, int loop_index);
		void *ud;
	} stop_hooks[8];
	int nstop_hooks;
};

typedef struct chunk {
	struct chunk *next;
	size_t len, off;
	uint8_t data[];
} chunk;

/* Metadata: entries point into |str|, where keys and values are packed,
 * NUL-terminated: two allocations for any number of entries. */
typedef struct md_list {
	vpp_grpc_md *v;
	size_t n, cap;
	char *str;
	size_t slen, scap;
	size_t bytes;
} md_list;

enum { ROLE_SERVER, ROLE_CLIENT };

struct vpp_grpc_conn {
	int role;
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_loop_t *loop;
	io_loop *io;		/* server only */
	vpp_grpc_listener *l;	/* server only */
	vpp__listener_metrics *met; /* server only */
	call_pool *pool;	    /* server only: the loop's */
	SSL *ssl;
	const uint8_t *tls_in; /* ciphertext not yet read by OpenSSL */
	size_t tls_in_len;
	nghttp2_session *h2;
	struct vpp_grpc_conn *prev, *next; /* in io->conns (server) */

	bool tls_done;
	bool h2_started;
	bool peer_settings; /* server: the client's preface and SETTINGS arrived */
	uint64_t headers_since_ms; /* server: a header block is open since; 0: none */
	int32_t headers_stream;    /* ... on this stream */
	size_t partial_bytes; /* buffers of messages not yet complete, all calls */
	bool closing;	    /* handles are being closed */
	bool goaway_sent;
	bool draining;	    /* graceful shutdown: close when the last stream ends */
	bool want_close;    /* close once the output is flushed */
	bool ping_outstanding;
	bool reading;
	bool in_h2;	    /* inside nghttp2 mem_recv/mem_send: no re-entry */
	/* Inside a handler's own API call (vpp_grpc_call_send, ..._pause_recv):
	 * a close it causes waits for the next loop turn (close_deferred), so
	 * the handler's call and state outlive the API call. */
	uint8_t in_api;
	bool close_deferred;
	bool any_want_writable;
	/* Server admission (admission.c): waiting for a turn, or handshaking. */
	struct vpp__admission *adm;
	uint8_t adm_state;
	vpp__conn_link adm_link; /* in waiting or handshaking */
	vpp__conn_link src_link; /* among its source's waiting ones */
	struct vpp__adm_source *adm_src;
	uint64_t src_key; /* its source address (vpp__admission_source_key) */
	uint64_t adm_ms;
	int handles;	    /* open libuv handles; freed at 0 */
	int close_err;

	uv_write_t wreq;
	uint8_t *wbuf; /* being written */
	size_t wlen;
	uint8_t *pbuf; /* waiting for the write in flight */
	size_t plen, pcap;
	size_t queued_bytes;	   /* in the outbound queues of its calls */
	size_t outbound_accounted; /* what this conn adds to met->outbound */

	struct vpp_grpc_call *calls; /* open calls, for cancellation on close */
	uint64_t last_rx_ms;	  /* loop time of the last inbound byte */
	uint64_t idle_since_ms;	  /* loop time the last stream closed */
	uint64_t ping_sent_ms;
	uint64_t opened_ms;
	int nstreams;
	char peer_addr[64];
	char *peer_cn;

	/* Limits. */
	size_t max_message_bytes;
	size_t call_outbound_limit;
	uint32_t max_header_bytes;
	uint32_t keepalive_ms, idle_timeout_ms, handshake_timeout_ms;

	/* Client only. */
	vpp_grpc_client_opts copts;
	char *authority;
	uv_connect_t connect_req;
	bool connected;
	bool goaway_received;
	struct vpp_grpc_call *waiting; /* calls started before the conn was ready */
	vpp_grpc_tls *ctls;
};

struct vpp_grpc_call {
	vpp_grpc_conn *conn;
	int32_t stream_id;
	method_entry *me;		 /* server */
	const vpp_grpc_client_cbs *cbs; /* client */
	struct vpp_grpc_call *next_waiting;
	struct vpp_grpc_call *prev, *next; /* in conn->calls */
	const char *path; /* server: route's path or path_own; client: path_own */
	char *path_own;
	method_entry *route; /* server: the method :path names; NULL: unknown */
	md_list md;	  /* request metadata (server) / response metadata (client) */
	md_list resp_hdr; /* server: extra response headers */
	md_list trailers; /* server: trailing metadata */
	vpp_grpc_decoder dec;

	chunk *out_head, *out_tail;
	size_t out_bytes;
	size_t out_limit; /* 0: the connection's call_outbound_limit */
	bool want_writable;
	bool deferred;	      /* nghttp2 data provider is waiting for data */
	bool headers_sent;    /* response (server) or request (client) submitted */
	bool finishing;	      /* finish requested / close-send requested */
	bool trailers_sent;
	bool remote_closed;   /* peer half-closed */
	bool done;	      /* on_done/on_status called */
	bool started;	      /* server: on_start called */
	bool paused;
	bool rejected;	      /* server: request refused before dispatch */
	bool header_overflow;
	bool is_post, ct_ok, te_ok, enc_ok;
	int status;
	char *status_msg;
	int http_status;   /* client: :status received; server: :status to send */
	int64_t req_timeout_ms; /* server: from grpc-timeout, -1 when absent */
	bool got_status;   /* client: grpc-status seen */
	size_t pending_consume;
	size_t partial_counted; /* its decoder's buffer, in c->partial_bytes */
	uint8_t *req;	      /* server, on_request methods: the one request */
	size_t req_len;
	uint8_t req_inl[32]; /* |req| when it is this small */
	bool have_req;
	uv_timer_t *deadline; /* allocated only when the call has a deadline */
	uint64_t deadline_at; /* loop time, ms; 0: none */
	uint64_t started_at_ns;
	void *data;
};

/* conn.c */
int vpp__conn_init(vpp_grpc_conn *c, uv_loop_t *loop);
void vpp__conn_start_reading(vpp_grpc_conn *c);
/* Pulls frames from nghttp2, encrypts and writes; closes the conn when
 * nghttp2 has nothing left to do. Safe to call often. */
void vpp__conn_flush(vpp_grpc_conn *c);
/* Appends bytes to be written (after the write in flight). 0 or VPP_ENOMEM. */
int vpp__conn_out_append(vpp_grpc_conn *c, const uint8_t *data, size_t len);
void vpp__conn_close(vpp_grpc_conn *c, int err);
void vpp__conn_reject(vpp_grpc_conn *c, vpp__reason r, const char *why);
void vpp__conn_arm_timer(vpp_grpc_conn *c);
/* Role hooks implemented by server.c / client.c. */
int vpp__server_session_new(vpp_grpc_conn *c);
int vpp__client_session_new(vpp_grpc_conn *c);
void vpp__server_conn_closed(vpp_grpc_conn *c);
void vpp__client_conn_closed(vpp_grpc_conn *c);
void vpp__client_conn_ready(vpp_grpc_conn *c);

/* h2mem.c: the allocator of nghttp2 sessions. */
nghttp2_mem *vpp__h2_mem(void);

/* admission.c */
void vpp__admission_init(vpp__admission *a, uv_loop_t *loop, double rate_per_s, bool tls,
			 void (*start_fn)(struct vpp_grpc_conn *c));
/* Starts |c| now or queues it: false means refuse it. */
bool vpp__admission_offer(vpp__admission *a, struct vpp_grpc_conn *c);
/* |c|'s handshake completed, or |c| closed: its turn goes to the next. */
void vpp__admission_done(struct vpp_grpc_conn *c);
void vpp__admission_close(vpp__admission *a);
/* Frees what the admission holds; its loop has ended. */
void vpp__admission_free(vpp__admission *a);
/* The source a connection is counted under for fair turns: an IPv4
 * address, or an IPv6 address's /64 (one host's or one site's). */
uint64_t vpp__admission_source_key(const struct sockaddr *sa);

/* tls.c */
/* Creates c->ssl from |t|, reading ciphertext from c->tls_in and writing
 * records to the conn's pending buffer (vpp__conn_out_append). */
int vpp__tls_attach(vpp_grpc_conn *c, vpp_grpc_tls *t, bool server, const char *sni,
		    const vpp_grpc_identity *id);
/* Reads the verified peer's CN into c->peer_cn. */
void vpp__tls_peer_identity(vpp_grpc_conn *c);
const char *vpp__tls_last_error(void);

/* call.c */
vpp_grpc_call *vpp__call_new(vpp_grpc_conn *c, int32_t stream_id);
void vpp__call_free(vpp_grpc_call *call);
int vpp__md_add(md_list *l, const char *k, size_t klen, const char *v, size_t vlen);
void vpp__md_free(md_list *l);
/* Frees the calls kept in |p|. */
void vpp__call_pool_drain(call_pool *p);
ssize_t vpp__call_read_data(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
			    uint32_t *flags, nghttp2_data_source *src, void *ud);
/* Feeds inbound DATA to the call's decoder; delivers messages. */
void vpp__call_recv_data(vpp_grpc_call *call, const uint8_t *data, size_t len);
void vpp__call_set_deadline(vpp_grpc_call *call, int64_t timeout_ms);
void vpp__call_clear_deadline(vpp_grpc_call *call);
/* Server: submits response headers (+ data provider) or trailers-only. */
int vpp__call_submit_response(vpp_grpc_call *call);
/* Server: called when finish was requested and the queue drained. */
int vpp__call_submit_trailers(vpp_grpc_call *call);
/* Marks the call over and tells the handler (on_done) or the client
 * (on_status). Idempotent. */
void vpp__call_notify(vpp_grpc_call *call, int status, const char *msg);
/* Server: ends the call because its deadline passed. */
void vpp__call_expire(vpp_grpc_call *call);
/* Calls on_writable of the calls that wait for it and have room again. */
void vpp__conn_notify_writable(vpp_grpc_conn *c);
uint64_t vpp__now_ms(uv_loop_t *loop);
/* The decimal text of a status code |v|: a constant for gRPC codes and
 * 200, else formatted into |buf| (|len| >= 12). */
const char *vpp__status_text(int v, char *buf, size_t len);

#endif
