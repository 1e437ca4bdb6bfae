/* gRPC over HTTP/2 on libuv, nghttp2 and OpenSSL: a server and a client.
 *
 * Server: a vpp_grpc_server owns K I/O threads, each running its own libuv
 * loop. Every listener (one port, TLS or h2c, its own methods) has a socket
 * on each loop sharing the port through SO_REUSEPORT; a connection lives on
 * the loop that accepted it for its whole life. Handlers are callbacks that
 * run on that loop.
 *
 * Client: a vpp_grpc_conn is one HTTP/2 connection on a caller's loop;
 * calls on it are multiplexed streams. Thousands of connections can share
 * one loop and one vpp_grpc_tls (the SSL_CTX).
 *
 * A vpp_grpc_call is one stream, server or client side. Messages are opaque
 * serialized bytes (protobuf-c packs/unpacks them in the handlers). */
#ifndef VPP_GRPC_H
#define VPP_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* The standard gRPC status codes. */
typedef enum {
	VPP_GRPC_OK = 0,
	VPP_GRPC_CANCELLED = 1,
	VPP_GRPC_UNKNOWN = 2,
	VPP_GRPC_INVALID_ARGUMENT = 3,
	VPP_GRPC_DEADLINE_EXCEEDED = 4,
	VPP_GRPC_NOT_FOUND = 5,
	VPP_GRPC_ALREADY_EXISTS = 6,
	VPP_GRPC_PERMISSION_DENIED = 7,
	VPP_GRPC_RESOURCE_EXHAUSTED = 8,
	VPP_GRPC_FAILED_PRECONDITION = 9,
	VPP_GRPC_ABORTED = 10,
	VPP_GRPC_OUT_OF_RANGE = 11,
	VPP_GRPC_UNIMPLEMENTED = 12,
	VPP_GRPC_INTERNAL = 13,
	VPP_GRPC_UNAVAILABLE = 14,
	VPP_GRPC_DATA_LOSS = 15,
	VPP_GRPC_UNAUTHENTICATED = 16,
} vpp_grpc_status;

/* "OK", "CANCELLED", ...; "UNKNOWN" for codes out of range. */
const char *vpp_grpc_status_name(int status);

typedef struct vpp_grpc_server vpp_grpc_server;
typedef struct vpp_grpc_listener vpp_grpc_listener;
typedef struct vpp_grpc_conn vpp_grpc_conn;
typedef struct vpp_grpc_call vpp_grpc_call;
typedef struct vpp_grpc_tls vpp_grpc_tls;
typedef struct vpp_grpc_identity vpp_grpc_identity;

/* One metadata entry (header or trailer). */
typedef struct {
	const char *key;
	const char *value;
} vpp_grpc_md;

/* ---- TLS contexts ---------------------------------------------------- */

/* Server TLS: certificate chain and key (PEM). With |client_ca| the server
 * asks for a client certificate and verifies it against that CA; with
 * |require_client_cert| a client without one is refused. TLS 1.2 minimum
 * with VPP_GRPC_TLS12_CIPHERS in the server's order (see
 * vpp_grpc_tls_set_policy), ALPN "h2". Returns 0, VPP_EINVAL or VPP_ETLS
 * (bad or unreadable files). */
int vpp_grpc_tls_server_new(const char *cert_file, const char *key_file, const char *client_ca,
			    bool require_client_cert, vpp_grpc_tls **ret);

/* After vpp_grpc_tls_server_new failed with VPP_ETLS, or a policy call
 * below with VPP_EINVAL, on the same thread: which file or value and why
 * ("key /etc/vpp/tls/server.key: ...:Permission denied"). */
const char *vpp_grpc_tls_load_error(void);

/* The TLS 1.2 ciphers a server context offers unless told otherwise, in
 * the server's order of preference: ECDHE (forward secrecy) with an AEAD
 * cipher only, ECDSA and RSA certificates alike. TLS 1.3 keeps OpenSSL's
 * suites (all AEAD). */
#define VPP_GRPC_TLS12_CIPHERS                                                                  \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                              \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                              \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* Sets a server context's protocol policy: |ciphers| is an OpenSSL cipher
 * list for TLS 1.2 (NULL: VPP_GRPC_TLS12_CIPHERS) whose every name must be
 * known and whose ciphers must all be ECDHE with AEAD; |min_version| is
 * "1.2" or "1.3" (NULL: "1.2"). The server's order of preference wins over
 * the client's. Returns 0, or VPP_EINVAL with the reason in
 * vpp_grpc_tls_load_error(); |t| is unchanged on failure. Set before the
 * context serves a connection. */
int vpp_grpc_tls_set_policy(vpp_grpc_tls *t, const char *ciphers, const char *min_version);

/* Checks a policy as vpp_grpc_tls_set_policy would, without a context (to
 * refuse a bad setting at start-up). Returns 0, VPP_EINVAL or VPP_ENOMEM. */
int vpp_grpc_tls_policy_check(const char *ciphers, const char *min_version);

/* Client TLS: verifies the server against |ca_file| (NULL: system roots);
 * presents |cert_file|/|key_file| when both are given. */
int vpp_grpc_tls_client_new(const char *ca_file, const char *cert_file, const char *key_file,
			    vpp_grpc_tls **ret);

/* Reference counted: every listener or connection using it holds one. */
void vpp_grpc_tls_ref(vpp_grpc_tls *t);
void vpp_grpc_tls_unref(vpp_grpc_tls *t);

/* A client certificate and key (PEM) presented by one connection, so that
 * many identities share one client context (CA, ALPN, settings): a fleet
 * of devices in one process costs a certificate each, not an SSL_CTX each.
 * When |same_key_as| is given and its key matches |cert_file|, that key is
 * shared and |key_file| is not read. Returns 0, VPP_ENOMEM or VPP_ETLS. */
int vpp_grpc_identity_load(const char *cert_file, const char *key_file,
			   const vpp_grpc_identity *same_key_as, vpp_grpc_identity **ret);
/* Connections keep what they need: an identity may be freed at any time. */
void vpp_grpc_identity_free(vpp_grpc_identity *id);

/* ---- Server -------------------------------------------------------------- */

/* Handler callbacks of one method; all run on the loop that owns the call.
 *
 * on_start: request headers arrived (metadata, deadline and peer readable).
 * on_message: one complete request message; |data| is valid during the
 *   call only.
 * on_half_close: the client will send no more messages.
 * on_writable: optional; the outbound queue, which was full, has drained.
 * on_done: always called exactly once, last: |status| is the status the call
 *   ended with (the handler's own, or CANCELLED when the client reset it or
 *   the connection died, DEADLINE_EXCEEDED when its deadline passed; the
 *   server then answers the client itself). After on_done returns the call
 *   is freed: the handler must drop every reference to it. */
typedef struct {
	const char *path; /* "/package.Service/Method" */
	void (*on_start)(vpp_grpc_call *call, void *method_ud);
	void (*on_message)(vpp_grpc_call *call, const uint8_t *data, size_t len);
	void (*on_half_close)(vpp_grpc_call *call);
	void (*on_writable)(vpp_grpc_call *call);
	void (*on_done)(vpp_grpc_call *call, vpp_grpc_status status);
	/* For methods whose client sends exactly one message (unary and
	 * server streaming): when set, on_message and on_half_close are not
	 * used; the transport waits for the one request and the half-close
	 * (refusing a second message or none with INVALID_ARGUMENT) and then
	 * calls on_request. |req| is valid during the callback only. */
	void (*on_request)(vpp_grpc_call *call, const uint8_t *req, size_t len);
	void *method_ud;
	/* Optional: the type of the request messages. Each message that does
	 * not parse as it (include/vpp/pb_wire.h: protobuf's rules, even for a
	 * message without fields) is refused with INVALID_ARGUMENT (reason
	 * "bad_message") before the handler sees it; the handler gets one that
	 * protobuf-c's unpack reads (unknown groups and fields on another wire
	 * type left out). */
	const struct ProtobufCMessageDescriptor *request;
} vpp_grpc_method;

typedef struct {
	int io_threads;			/* >= 1 */
	size_t max_message_bytes;	/* 0: 4 MiB */
	uint32_t max_concurrent_streams; /* 0: 256 */
	uint32_t max_header_bytes;	/* 0: 16 KiB */
	uint32_t keepalive_ms;		/* PING after this much silence; 0: off */
	uint32_t idle_timeout_ms;	/* close with no open stream; 0: never */
	uint32_t handshake_timeout_ms;	/* 0: 10 s */
	size_t call_outbound_limit;	/* per-call queued bytes before EFULL; 0: 1 MiB */
} vpp_grpc_server_opts;

int vpp_grpc_server_new(const vpp_grpc_server_opts *opts, vpp_grpc_server **ret);

/* Adds a listener on |addr|:|port| (bound on every I/O loop). |tls| NULL
 * means cleartext h2c with prior knowledge. |name| labels logs and metrics
 * ("api", "device"). Only before vpp_grpc_server_start(). Returns 0,
 * VPP_EINVAL, VPP_EEXIST (something listens on the port already, another
 * vppd perhaps) or VPP_EIO (the address cannot be bound). */
int vpp_grpc_server_listen(vpp_grpc_server *s, const char *name, const char *addr, int port,
			   vpp_grpc_tls *tls, vpp_grpc_listener **ret);

/* The port |l| is bound to (useful when asked for port 0). */
int vpp_grpc_listener_port(const vpp_grpc_listener *l);

/* Admission control: at most |per_s| new connections a second on |l|
 * (shared by the loops); over it a connection is closed as soon as it is
 * accepted, before any TLS work, and counted (reason "admission"). Clients
 * retry with backoff. 0: unlimited. Only before start. */
void vpp_grpc_listener_set_admission(vpp_grpc_listener *l, uint32_t per_s);

/* Registers |m| (copied) on |l|. Only before start. VPP_EEXIST if taken. */
int vpp_grpc_listener_add_method(vpp_grpc_listener *l, const vpp_grpc_method *m);

/* Starts the I/O threads. */
int vpp_grpc_server_start(vpp_grpc_server *s);

int vpp_grpc_server_loop_count(const vpp_grpc_server *s);
/* The loop of I/O thread |i|, for handles that other modules attach to it
 * (e.g. a uv_async to hand work to sessions). Valid from new to free. */
uv_loop_t *vpp_grpc_server_loop(vpp_grpc_server *s, int i);

/* Registers |fn| to run on each I/O loop when it has no connection left
 * during shutdown, just before the loop ends: the place to close handles a
 * module attached to the loop. At most 8. Only before start. */
int vpp_grpc_server_on_stop(vpp_grpc_server *s, void (*fn)(void *ud, int loop_index), void *ud);

/* Graceful shutdown: stops accepting, sends GOAWAY on every connection and
 * lets in-flight calls finish for up to |grace_ms|, then closes what is
 * left (handlers see on_done with CANCELLED) and joins the threads. */
void vpp_grpc_server_shutdown(vpp_grpc_server *s, uint32_t grace_ms);

/* Frees a server that is stopped or was never started. Accepts NULL. */
void vpp_grpc_server_free(vpp_grpc_server *s);

/* ---- Calls (both sides) -------------------------------------------------- */

/* Queues one message (copied). Returns 0; VPP_EFULL when the outbound queue
 * is over its limit (nothing queued: wait for on_writable); VPP_ETOOBIG over
 * the message size limit; VPP_ECLOSED after finish/close-send or when the
 * call is over. Never frees |c|: a connection that fails while writing
 * closes on the next loop turn (on_done follows then). */
int vpp_grpc_call_send(vpp_grpc_call *c, const uint8_t *data, size_t len);

/* Bytes queued on this call and not yet handed to HTTP/2. */
size_t vpp_grpc_call_outbound_bytes(const vpp_grpc_call *c);

/* Server: adds response metadata; before the first message or finish. */
int vpp_grpc_call_add_header(vpp_grpc_call *c, const char *key, const char *value);
/* Server: adds trailing metadata; before finish. */
int vpp_grpc_call_add_trailer(vpp_grpc_call *c, const char *key, const char *value);

/* Server: ends the call with |status| and |message| (UTF-8 or NULL; sent
 * percent-encoded) after every queued message. Returns VPP_ECLOSED when
 * already finished or over. */
int vpp_grpc_call_finish(vpp_grpc_call *c, vpp_grpc_status status, const char *message);

/* Server: like finish, and counts |reason| in vpp_grpc_rejected_total (for
 * bad input: "bad_message", ...) and logs it. */
int vpp_grpc_call_reject(vpp_grpc_call *c, vpp_grpc_status status, const char *reason,
			 const char *message);

/* Stops (|paused| true) or resumes giving the peer flow-control credit:
 * while paused, HTTP/2 flow control makes the peer wait. What the peer
 * already sent within its window (up to the stream window, 1 MiB) is
 * still delivered: a paused handler must take or refuse it. */
void vpp_grpc_call_pause_recv(vpp_grpc_call *c, bool paused);
/* Queued bytes past which vpp_grpc_call_send returns VPP_EFULL on this
 * call; 0: the connection's call_outbound_limit. */
void vpp_grpc_call_set_outbound_limit(vpp_grpc_call *call, size_t bytes);

/* Request metadata (server) or response headers and trailers (client).
 * Keys are lower case. NULL when absent. */
const char *vpp_grpc_call_metadata(const vpp_grpc_call *c, const char *key);
size_t vpp_grpc_call_metadata_count(const vpp_grpc_call *c);
vpp_grpc_md vpp_grpc_call_metadata_at(const vpp_grpc_call *c, size_t i);

const char *vpp_grpc_call_path(const vpp_grpc_call *c);
/* Server: subject CN of the verified client certificate, or NULL. */
const char *vpp_grpc_call_peer_identity(const vpp_grpc_call *c);
/* "ip:port" of the peer. */
const char *vpp_grpc_call_peer_addr(const vpp_grpc_call *c);
/* Client: true when the peer sent a grpc-status (its own answer), false
 * when the status was made up here (connection lost, stream reset, an
 * HTTP error from something in between). */
bool vpp_grpc_call_status_from_peer(const vpp_grpc_call *c);
/* Milliseconds left before the call's deadline; -1 when it has none. */
int64_t vpp_grpc_call_time_left_ms(const vpp_grpc_call *c);
uv_loop_t *vpp_grpc_call_loop(const vpp_grpc_call *c);
/* Index of the I/O thread that owns the call (server side), else 0. */
int vpp_grpc_call_loop_index(const vpp_grpc_call *c);

/* The method_ud of the call's method (server). */
void *vpp_grpc_call_method_data(const vpp_grpc_call *c);

void vpp_grpc_call_set_data(vpp_grpc_call *c, void *data);
void *vpp_grpc_call_data(const vpp_grpc_call *c);

/* ---- Client ------------------------------------------------------------ */

typedef struct {
	const char *host;	 /* IP address literal or name (resolved synchronously) */
	int port;
	const char *authority;	 /* :authority and TLS SNI/verify name; NULL: host */
	vpp_grpc_tls *tls;	 /* NULL: h2c with prior knowledge */
	const vpp_grpc_identity *identity; /* client certificate; NULL: tls's own */
	const char *bind_addr;	 /* optional source address (spread over 127.x.y.z) */
	uint32_t connect_timeout_ms; /* 0: 10 s */
	uint32_t keepalive_ms;	 /* 0: off */
	size_t max_message_bytes; /* 0: 4 MiB */
	size_t call_outbound_limit; /* 0: 1 MiB */
	/* Called once when the connection is closed for good (after every
	 * call's on_status). |err| is 0 for a local close, else VPP_E*. */
	void (*on_closed)(vpp_grpc_conn *conn, int err, void *ud);
	void *ud;
} vpp_grpc_client_opts;

/* Starts connecting on |loop|; calls may be started at once (they wait for
 * the connection). Returns 0, VPP_EINVAL, VPP_ENOMEM or VPP_EIO. */
int vpp_grpc_conn_new(uv_loop_t *loop, const vpp_grpc_client_opts *opts, vpp_grpc_conn **ret);

/* Closes the connection: pending calls end with UNAVAILABLE (graceful:
 * waits for in-flight calls when |graceful|). The conn is freed after
 * on_closed. */
void vpp_grpc_conn_close(vpp_grpc_conn *conn, bool graceful);

bool vpp_grpc_conn_is_ready(const vpp_grpc_conn *conn);
void *vpp_grpc_conn_data(const vpp_grpc_conn *conn);

/* Client call callbacks; all optional but on_status. on_status is called
 * exactly once, last; the call is freed after it returns. */
typedef struct {
	void (*on_headers)(vpp_grpc_call *call);
	void (*on_message)(vpp_grpc_call *call, const uint8_t *data, size_t len);
	void (*on_writable)(vpp_grpc_call *call);
	void (*on_status)(vpp_grpc_call *call, vpp_grpc_status status, const char *message);
} vpp_grpc_client_cbs;

/* Starts a call of |path| with request metadata |md| (|nmd| entries) and a
 * deadline |timeout_ms| from now (0: none). |cbs| must outlive the call.
 * Returns 0, VPP_EINVAL, VPP_ENOMEM or VPP_ECLOSED (connection closing). */
int vpp_grpc_conn_call(vpp_grpc_conn *conn, const char *path, const vpp_grpc_md *md, size_t nmd,
		       uint32_t timeout_ms, const vpp_grpc_client_cbs *cbs, void *data,
		       vpp_grpc_call **ret);

/* Client: no more messages will be sent (after those queued). */
int vpp_grpc_call_close_send(vpp_grpc_call *c);

/* Either side: cancels the call (RST_STREAM CANCEL); on_status/on_done
 * follow with CANCELLED. */
void vpp_grpc_call_cancel(vpp_grpc_call *c);

#endif
