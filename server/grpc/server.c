/* The gRPC server: I/O threads (one libuv loop each), listeners sharing
 * their port across the loops with SO_REUSEPORT, accepting connections,
 * the server side of nghttp2 (requests to calls, validation, dispatch to
 * method handlers) and graceful shutdown. */
#include "grpc_int.h"
#include "vpp/error.h"
#include "vpp/log.h"
#include "vpp/proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

const char *const vpp__reason_names[R__COUNT] = {
	"tls_handshake",    "bad_preface",	  "http1",
	"h2_protocol",	    "bad_content_type",	  "bad_method",
	"unknown_method",   "unsupported_encoding", "message_too_large",
	"truncated_message", "bad_message",	  "too_many_streams",
	"header_too_large", "handshake_timeout",  "idle_timeout",
	"keepalive_timeout", "deadline_exceeded", "cancelled",
	"slow_reader",	    "admission",	  "accept_failed",
	"client_gone",	    "header_timeout",	  "fd_limit",
};

typedef struct {
	uv_tcp_t h;
	vpp_grpc_listener *l;
	io_loop *io;
	vpp__admission adm;
	uint64_t accept_logged_ms; /* loop time of the last accept-failure log */
	uint64_t fd_logged_ms;	   /* ... of the last near-the-fd-limit log */
} listen_handle;

struct io_loop {
	vpp_grpc_server *srv;
	int index;
	uv_loop_t loop;
	uv_thread_t thread;
	uv_async_t wake;
	uv_timer_t grace;
	listen_handle lh[VPP__MAX_LISTENERS];
	int nlh;
	vpp_grpc_conn *conns;
	call_pool pool;
	bool shutting_down;
	bool thread_started;
};

const char *vpp_grpc_status_name(int status)
{
	static const char *names[] = {"OK",
				      "CANCELLED",
				      "UNKNOWN",
				      "INVALID_ARGUMENT",
				      "DEADLINE_EXCEEDED",
				      "NOT_FOUND",
				      "ALREADY_EXISTS",
				      "PERMISSION_DENIED",
				      "RESOURCE_EXHAUSTED",
				      "FAILED_PRECONDITION",
				      "ABORTED",
				      "OUT_OF_RANGE",
				      "UNIMPLEMENTED",
				      "INTERNAL",
				      "UNAVAILABLE",
				      "DATA_LOSS",
				      "UNAUTHENTICATED"};
	if (status < 0 || status > 16)
		return "UNKNOWN";
	return names[status];
}

int vpp_grpc_server_new(const vpp_grpc_server_opts *opts, vpp_grpc_server **ret)
{
	if (!opts || opts->io_threads < 1 || opts->io_threads > VPP__MAX_LOOPS)
		return VPP_EINVAL;
	vpp_grpc_server *s = calloc(1, sizeof(*s));
	if (!s)
		return VPP_ENOMEM;
	s->opts = *opts;
	if (!s->opts.max_message_bytes)
		s->opts.max_message_bytes = 4 * 1024 * 1024;
	if (!s->opts.max_concurrent_streams)
		s->opts.max_concurrent_streams = 256;
	if (!s->opts.max_header_bytes)
		s->opts.max_header_bytes = 16 * 1024;
	if (!s->opts.handshake_timeout_ms)
		s->opts.handshake_timeout_ms = 10000;
	if (!s->opts.call_outbound_limit)
		s->opts.call_outbound_limit = 1024 * 1024;
	for (int i = 0; i < opts->io_threads; i++) {
		io_loop *io = calloc(1, sizeof(*io));
		if (!io || uv_loop_init(&io->loop) != 0) {
			free(io);
			vpp_grpc_server_free(s);
			return VPP_ENOMEM;
		}
		io->srv = s;
		io->index = i;
		io->loop.data = io;
		s->loops[s->nloops++] = io;
	}
	*ret = s;
	return 0;
}

int vpp_grpc_server_loop_count(const vpp_grpc_server *s)
{
	return s->nloops;
}

uv_loop_t *vpp_grpc_server_loop(vpp_grpc_server *s, int i)
{
	return i >= 0 && i < s->nloops ? &s->loops[i]->loop : NULL;
}

int vpp_grpc_call_loop_index(const vpp_grpc_call *call)
{
	return call->conn->io ? call->conn->io->index : 0;
}

static int parse_addr(const char *addr, int port, struct sockaddr_storage *ss)
{
	if (strcmp(addr, "localhost") == 0)
		addr = "127.0.0.1";
	if (uv_ip4_addr(addr, port, (struct sockaddr_in *)ss) == 0)
		return 0;
	if (uv_ip6_addr(addr, port, (struct sockaddr_in6 *)ss) == 0)
		return 0;
	return VPP_EINVAL;
}

static void listener_metrics(vpp_grpc_listener *l)
{
	char labels[160];
	for (int r = 0; r < R__COUNT; r++) {
		snprintf(labels, sizeof(labels), "listener=\"%s\",reason=\"%s\"", l->name,
			 vpp__reason_names[r]);
		l->met.rejected[r] = vpp_counter_get(
			"vpp_grpc_rejected_total", labels,
			"Connections and calls refused or ended early, by reason");
	}
	snprintf(labels, sizeof(labels), "listener=\"%s\"", l->name);
	l->met.conns_total = vpp_counter_get("vpp_grpc_connections_total", labels,
					     "Connections accepted");
	l->met.conns = vpp_gauge_get("vpp_grpc_connections", labels, "Connections open now");
	l->met.outbound = vpp_gauge_get("vpp_grpc_outbound_bytes", labels,
					"Bytes queued for sending, all connections");
	l->met.msgs_in = vpp_counter_get("vpp_grpc_messages_received_total", labels,
					 "gRPC messages received");
	l->met.msgs_out = vpp_counter_get("vpp_grpc_messages_sent_total", labels,
					  "gRPC messages queued for sending");
	l->met.call_seconds = vpp_histogram_get("vpp_grpc_call_duration_seconds", labels,
						"Duration of calls, start to end", NULL, 0);
}

/* True when another socket listens on |ss|'s port already. Our listeners
 * share their port with SO_REUSEPORT, which another process of the same
 * user could join without an error (a second vppd started by mistake),
 * and the kernel would split the connections between the two. A socket
 * without SO_REUSEPORT cannot bind beside a listener: the probe. */
static bool port_taken(const struct sockaddr_storage *ss)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false; /* the real bind will say */
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	socklen_t slen = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						   : sizeof(struct sockaddr_in);
	bool taken = bind(fd, (const struct sockaddr *)ss, slen) != 0 && errno == EADDRINUSE;
	close(fd);
	return taken;
}
int vpp_grpc_server_listen(vpp_grpc_server *s, const char *name, const char *addr, int port,
			   vpp_grpc_tls *tls, vpp_grpc_listener **ret)
{
	struct sockaddr_storage ss;
	if (s->started || s->nlisteners >= VPP__MAX_LISTENERS || port < 0 || port > 65535)
		return VPP_EINVAL;
	if (parse_addr(addr, port, &ss) != 0)
		return VPP_EINVAL;
	vpp_grpc_listener *l = calloc(1, sizeof(*l));
	if (!l)
		return VPP_ENOMEM;
	l->srv = s;
	l->name = strdup(name);
	l->addr = strdup(addr);
	for (int i = 0; i < VPP__MAX_LOOPS; i++)
		l->fds[i] = -1;
	if (!l->name || !l->addr)
		goto fail;
	if (port != 0 && port_taken(&ss)) {
		free(l->name);
		free(l->addr);
		free(l);
		return VPP_EEXIST;
	}
	for (int i = 0; i < s->nloops; i++) {
		int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			goto fail;
		l->fds[i] = fd;
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
			goto fail;
		if (ss.ss_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		socklen_t slen = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
							  : sizeof(struct sockaddr_in);
		if (bind(fd, (struct sockaddr *)&ss, slen) != 0 || listen(fd, 4096) != 0)
			goto fail;
		if (port == 0) {
			/* The other loops' sockets share the port the first got. */
			struct sockaddr_storage got;
			socklen_t glen = sizeof(got);
			getsockname(fd, (struct sockaddr *)&got, &glen);
			port = ntohs(ss.ss_family == AF_INET6
					     ? ((struct sockaddr_in6 *)&got)->sin6_port
					     : ((struct sockaddr_in *)&got)->sin_port);
			parse_addr(addr, port, &ss);
		}
	}
	l->port = port;
	if (tls) {
		vpp_grpc_tls_ref(tls);
		l->tls = tls;
	}
	listener_metrics(l);
	char labels[128];
	snprintf(labels, sizeof(labels), "listener=\"%s\"", l->name);
	l->unknown_calls = vpp_counter_get("vpp_grpc_unknown_method_calls_total", labels,
					   "Calls of methods this listener does not serve");
	s->listeners[s->nlisteners++] = l;
	*ret = l;
	return 0;
fail:
	for (int i = 0; i < VPP__MAX_LOOPS; i++)
		if (l->fds[i] >= 0)
			close(l->fds[i]);
	free(l->name);
	free(l->addr);
	free(l);
	return VPP_EIO;
}

void vpp_grpc_listener_set_admission(vpp_grpc_listener *l, uint32_t per_s)
{
	l->admission_per_s = per_s;
}

int vpp_grpc_listener_port(const vpp_grpc_listener *l)
{
	return l->port;
}

int vpp_grpc_listener_add_method(vpp_grpc_listener *l, const vpp_grpc_method *m)
{
	if (l->srv->started || !m->path || m->path[0] != '/')
		return VPP_EINVAL;
	for (size_t i = 0; i < l->nmethods; i++)
		if (strcmp(l->methods[i].m.path, m->path) == 0)
			return VPP_EEXIST;
	method_entry *nm = realloc(l->methods, (l->nmethods + 1) * sizeof(*nm));
	if (!nm)
		return VPP_ENOMEM;
	l->methods = nm;
	method_entry *e = &nm[l->nmethods];
	memset(e, 0, sizeof(*e));
	if (!(e->path = strdup(m->path)))
		return VPP_ENOMEM;
	e->path_len = strlen(e->path);
	e->m = *m;
	e->m.path = e->path;
	for (int code = 0; code <= 16; code++) {
		char labels[512];
		snprintf(labels, sizeof(labels), "listener=\"%s\",method=\"%s\",code=\"%d\"", l->name,
			 m->path, code);
		e->calls[code] = vpp_counter_get("vpp_grpc_calls_total", labels,
						 "Calls ended, by method and gRPC status code");
	}
	l->nmethods++;
	return 0;
}

/* ---- nghttp2 server callbacks ------------------------------------------ */

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
	vpp_grpc_conn *c = ud;
	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if ((uint32_t)c->nstreams >= c->l->srv->opts.max_concurrent_streams) {
		/* Counted when the RST_STREAM goes out (on_frame_send). */
		vpp_log(VPP_LOG_WARN, "grpc", "listener=%s peer=%s stream refused: over %u streams",
			c->l->name, c->peer_addr, c->l->srv->opts.max_concurrent_streams);
		nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
					  NGHTTP2_REFUSED_STREAM);
		return 0;
	}
	vpp_grpc_call *call = vpp__call_new(c, frame->hd.stream_id);
	if (!call)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	call->enc_ok = true;
	call->req_timeout_ms = -1;
	call->http_status = 200;
	c->nstreams++;
	/* Header blocks cannot interleave: at most one is open at a time. It
	 * must end within the handshake timeout (a slow-headers client). */
	c->headers_since_ms = uv_now(c->loop);
	c->headers_stream = frame->hd.stream_id;
	vpp__conn_arm_timer(c);
	nghttp2_session_set_stream_user_data(s, frame->hd.stream_id, call);
	return 0;
}

/* Finds the method |path| names, comparing lengths first. */
static method_entry *find_method(vpp_grpc_listener *l, const char *path, size_t len)
{
	for (size_t i = 0; i < l->nmethods; i++) {
		method_entry *e = &l->methods[i];
		if (e->path_len == len && memcmp(e->path, path, len) == 0)
			return e;
	}
	return NULL;
}

/* Resolves :path as it arrives: a known method's path is not copied. */
static void set_path(vpp_grpc_call *call, const char *value, size_t len)
{
	free(call->path_own);
	call->path_own = NULL;
	call->route = memchr(value, 0, len) ? NULL : find_method(call->conn->l, value, len);
	if (call->route)
		call->path = call->route->path;
	else
		call->path = call->path_own = strndup(value, len);
}

static bool is_grpc_content_type(const uint8_t *v, size_t n)
{
	static const char ct[] = "application/grpc";
	size_t m = sizeof(ct) - 1;
	if (n < m || memcmp(v, ct, m) != 0)
		return false;
	return n == m || v[m] == '+' || v[m] == ';';
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
	vpp_grpc_conn *c = ud;
	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	vpp_grpc_call *call = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
	if (!call || call->header_overflow)
		return 0;
	call->md.bytes += namelen + valuelen + 32;
	if (call->md.bytes > c->max_header_bytes) {
		call->header_overflow = true;
		return 0;
	}
	if (namelen > 0 && name[0] == ':') {
		if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
			call->is_post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
		} else if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
			set_path(call, (const char *)value, valuelen);
		}
		return 0;
	}
	if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
		call->ct_ok = is_grpc_content_type(value, valuelen);
		return 0;
	}
	if (namelen == 12 && memcmp(name, "grpc-timeout", 12) == 0) {
		char buf[16];
		int64_t ms;
		if (valuelen < sizeof(buf)) {
			memcpy(buf, value, valuelen);
			buf[valuelen] = 0;
			if (vpp_grpc_timeout_parse(buf, &ms) == 0)
				call->req_timeout_ms = ms;
		}
		return 0;
	}
	if (namelen == 13 && memcmp(name, "grpc-encoding", 13) == 0) {
		call->enc_ok = valuelen == 8 && memcmp(value, "identity", 8) == 0;
		return 0;
	}
	if (namelen == 2 && memcmp(name, "te", 2) == 0)
		return 0;
	size_t before = call->md.bytes;
	if (vpp__md_add(&call->md, (const char *)name, namelen, (const char *)value, valuelen) != 0)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	call->md.bytes = before; /* md_add counts too; keep one accounting */
	return 0;
}

/* Refuses a request before any handler sees it. */
static void refuse(vpp_grpc_call *call, int http_status, vpp_grpc_status st, vpp__reason r,
		   const char *msg)
{
	vpp_grpc_conn *c = call->conn;
	vpp_counter_inc(c->met->rejected[r]);
	vpp_log(VPP_LOG_WARN, "grpc", "listener=%s peer=%s path=%s refused (%s): %s", c->l->name,
		c->peer_addr, call->path ? call->path : "-", vpp__reason_names[r], msg);
	call->rejected = true;
	call->http_status = http_status;
	call->finishing = true;
	call->status = (int)st;
	call->status_msg = strdup(msg);
	vpp__call_submit_response(call);
}

static void half_close(vpp_grpc_call *call)
{
	if (call->remote_closed)
		return;
	call->remote_closed = true;
	if (call->done || call->finishing || !call->started)
		return;
	if (vpp_grpc_decoder_partial(&call->dec)) {
		vpp_grpc_call_reject(call, VPP_GRPC_INTERNAL, "truncated_message",
				     "stream ended inside a message");
		return;
	}
	if (call->me->m.on_request) {
		if (!call->have_req) {
			vpp_grpc_call_reject(call, VPP_GRPC_INVALID_ARGUMENT, "bad_message",
					     "missing request message");
			return;
		}
		uint8_t *req = call->req;
		bool inl = req == call->req_inl;
		call->req = NULL;
		call->me->m.on_request(call, req, call->req_len);
		if (!inl)
			free(req);
		return;
	}
	if (call->me->m.on_half_close)
		call->me->m.on_half_close(call);
}

static void dispatch(vpp_grpc_call *call)
{
	vpp_grpc_conn *c = call->conn;
	vpp_grpc_listener *l = c->l;
	char msg[300];
	if (call->header_overflow) {
		refuse(call, 200, VPP_GRPC_RESOURCE_EXHAUSTED, R_HEADER_TOO_LARGE,
		       "request headers too large");
		return;
	}
	if (!call->is_post) {
		refuse(call, 405, VPP_GRPC_UNIMPLEMENTED, R_BAD_METHOD, "gRPC requires POST");
		return;
	}
	if (!call->ct_ok) {
		refuse(call, 415, VPP_GRPC_INTERNAL, R_BAD_CONTENT_TYPE,
		       "content-type must be application/grpc");
		return;
	}
	if (!call->path) {
		refuse(call, 400, VPP_GRPC_INTERNAL, R_H2_PROTOCOL, "missing :path");
		return;
	}
	if (!call->enc_ok) {
		refuse(call, 200, VPP_GRPC_UNIMPLEMENTED, R_UNSUPPORTED_ENCODING,
		       "grpc-encoding not supported (identity only)");
		return;
	}
	method_entry *me = call->route;
	if (!me) {
		vpp_counter_inc(l->unknown_calls);
		snprintf(msg, sizeof(msg), "unknown method %.200s", call->path);
		refuse(call, 200, VPP_GRPC_UNIMPLEMENTED, R_UNKNOWN_METHOD, msg);
		return;
	}
	call->me = me;
	if (call->req_timeout_ms >= 0) {
		if (call->req_timeout_ms == 0) {
			call->started = false;
			refuse(call, 200, VPP_GRPC_DEADLINE_EXCEEDED, R_DEADLINE_EXCEEDED,
			       "deadline exceeded before the call started");
			return;
		}
		vpp__call_set_deadline(call, call->req_timeout_ms);
	}
	call->started = true;
	if (me->m.on_start)
		me->m.on_start(call, me->m.method_ud);
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
	vpp_grpc_conn *c = ud;
	vpp_grpc_call *call;
	switch (frame->hd.type) {
	case NGHTTP2_HEADERS:
		c->headers_since_ms = 0; /* the block is complete */
		call = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
		if (!call)
			return 0;
		if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
			dispatch(call);
		if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
			half_close(call);
		break;
	case NGHTTP2_DATA:
		if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
			break;
		call = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
		if (call)
			half_close(call);
		break;
	case NGHTTP2_PING:
		if (frame->hd.flags & NGHTTP2_FLAG_ACK)
			c->ping_outstanding = false;
		break;
	case NGHTTP2_SETTINGS:
		if (!c->peer_settings && !(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
			c->peer_settings = true; /* the preface is complete */
			c->idle_since_ms = uv_now(c->loop);
			vpp__conn_arm_timer(c);
		}
		break;
	default:
		break;
	}
	return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data,
			 size_t len, void *ud)
{
	vpp_grpc_call *call = nghttp2_session_get_stream_user_data(s, stream_id);
	if (!call) {
		nghttp2_session_consume_connection(s, len);
		return 0;
	}
	vpp__call_recv_data(call, data, len);
	return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *ud)
{
	vpp_grpc_conn *c = ud;
	/* A header block nghttp2 refused (a connection-specific header, say)
	 * ends with its stream, without on_frame_recv. */
	if (c->headers_since_ms && c->headers_stream == stream_id)
		c->headers_since_ms = 0;
	vpp_grpc_call *call = nghttp2_session_get_stream_user_data(s, stream_id);
	if (!call)
		return 0;
	if (!call->done) {
		if (call->trailers_sent) {
			vpp__call_notify(call, call->status < 0 ? 0 : call->status, NULL);
		} else {
			vpp_counter_inc(c->met->rejected[R_CANCELLED]);
			vpp_log(VPP_LOG_DEBUG, "grpc", "peer=%s path=%s cancelled by the client",
				c->peer_addr, call->path ? call->path : "-");
			vpp__call_notify(call, VPP_GRPC_CANCELLED, NULL);
		}
	}
	vpp__call_free(call);
	if (--c->nstreams == 0) {
		c->idle_since_ms = uv_now(c->loop);
		if (c->draining)
			c->want_close = true;
		vpp__conn_arm_timer(c);
	}
	return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
	vpp_grpc_conn *c = ud;
	if (frame->hd.type == NGHTTP2_HEADERS && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
		/* The response is complete; a client still sending is told to
		 * stop (as the gRPC spec asks). */
		vpp_grpc_call *call = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
		if (call && !call->remote_closed)
			nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
						  NGHTTP2_NO_ERROR);
	} else if (frame->hd.type == NGHTTP2_RST_STREAM &&
		   frame->rst_stream.error_code == NGHTTP2_REFUSED_STREAM) {
		/* Ours or nghttp2's own refusal of a stream over the limit. */
		vpp_counter_inc(c->met->rejected[R_TOO_MANY_STREAMS]);
	} else if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR &&
		   !c->goaway_sent) {
		/* nghttp2 puts its reason for a connection error in the GOAWAY's
		 * opaque data: logged, and used to classify. */
		const char *why = (const char *)frame->goaway.opaque_data;
		int wlen = (int)frame->goaway.opaque_data_len;
		vpp__reason r = why && memmem(why, (size_t)wlen, "max concurrent streams", 22)
					? R_TOO_MANY_STREAMS
					: R_H2_PROTOCOL;
		c->goaway_sent = true;
		vpp_counter_inc(c->met->rejected[r]);
		vpp_log(VPP_LOG_WARN, "grpc", "listener=%s peer=%s GOAWAY (http2 error %u, %s): %.*s",
			c->l->name, c->peer_addr, frame->goaway.error_code, vpp__reason_names[r],
			why ? wlen : 0, why ? why : "");
	}
	return 0;
}

static nghttp2_session_callbacks *server_callbacks_cbs;
static pthread_once_t server_callbacks_once = PTHREAD_ONCE_INIT;

static void server_callbacks_init(void)
{
	nghttp2_session_callbacks *cbs;
	if (nghttp2_session_callbacks_new(&cbs) != 0)
		return;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
	server_callbacks_cbs = cbs;
}

/* One callback table for every session, made once. */
static nghttp2_session_callbacks *server_callbacks(void)
{
	pthread_once(&server_callbacks_once, server_callbacks_init);
	return server_callbacks_cbs;
}

int vpp__server_session_new(vpp_grpc_conn *c)
{
	const vpp_grpc_server_opts *o = &c->l->srv->opts;
	nghttp2_session_callbacks *cbs = server_callbacks();
	nghttp2_option *opt;
	if (!cbs || nghttp2_option_new(&opt) != 0)
		return VPP_ENOMEM;
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
	int rv = nghttp2_session_server_new3(&c->h2, cbs, c, opt, vpp__h2_mem());
	nghttp2_option_del(opt);
	if (rv != 0)
		return VPP_ENOMEM;
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, o->max_concurrent_streams},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1024 * 1024},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, o->max_header_bytes},
		{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	};
	if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0)
		return VPP_ENOMEM;
	/* A larger connection window so that several streams can each use
	 * their 1 MiB stream window. */
	nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, 16 * 1024 * 1024);
	return 0;
}

int vpp__call_submit_response(vpp_grpc_call *call)
{
	vpp_grpc_conn *c = call->conn;
	nghttp2_nv nva[72];
	size_t n = 0;
	char sbuf[16], gbuf[16], msg[1024];
	const char *status =
		vpp__status_text(call->http_status ? call->http_status : 200, sbuf, sizeof(sbuf));
#define NV(k, v, vl) (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), strlen(k), (vl), NGHTTP2_NV_FLAG_NONE}
	nva[n++] = NV(":status", status, strlen(status));
	nva[n++] = NV("content-type", "application/grpc", 16);
	for (size_t i = 0; i < call->resp_hdr.n && n < 60; i++)
		nva[n++] = NV(call->resp_hdr.v[i].key, call->resp_hdr.v[i].value,
			      strlen(call->resp_hdr.v[i].value));
	call->headers_sent = true;
	if (call->finishing && !call->out_head) {
		/* Trailers-only response. */
		const char *gstatus =
			vpp__status_text(call->status < 0 ? 0 : call->status, gbuf, sizeof(gbuf));
		nva[n++] = NV("grpc-status", gstatus, strlen(gstatus));
		if (call->status_msg && call->status_msg[0]) {
			size_t len = vpp_grpc_percent_encode(call->status_msg, msg, sizeof(msg));
			nva[n++] = NV("grpc-message", msg, len);
		}
		for (size_t i = 0; i < call->trailers.n && n < 72; i++)
			nva[n++] = NV(call->trailers.v[i].key, call->trailers.v[i].value,
				      strlen(call->trailers.v[i].value));
		call->trailers_sent = true;
		return nghttp2_submit_response(c->h2, call->stream_id, nva, n, NULL) == 0 ? 0
											 : VPP_EPROTO;
	}
#undef NV
	nghttp2_data_provider prd = {.source.ptr = call, .read_callback = vpp__call_read_data};
	return nghttp2_submit_response(c->h2, call->stream_id, nva, n, &prd) == 0 ? 0 : VPP_EPROTO;
}

/* ---- I/O threads ---------------------------------------------------------- */

static void start_conn(vpp_grpc_conn *c)
{
	/* The handshake timeout counts from here, not from the accept. */
	c->opened_ms = c->last_rx_ms = c->idle_since_ms = uv_now(c->loop);
	if (c->l->tls && vpp__tls_attach(c, c->l->tls, true, NULL, NULL) != 0) {
		vpp__conn_close(c, VPP_ENOMEM);
		return;
	}
	vpp__conn_start_reading(c);
}

/* True when |open| connections leave fewer descriptors than the reserve
 * (what vppd held at start, plus a margin: the database, the journal, the
 * admin endpoint need theirs): such a connection is refused at once, and
 * said (at most every 10 s). Past the real limit libuv closes connections
 * without a word to us, so this is also the only warning. */
static bool near_fd_limit(listen_handle *lh, long open)
{
	uint64_t limit = lh->io->srv->fd_limit;
	if (limit == 0 || (uint64_t)open + lh->io->srv->fd_reserve < limit)
		return false;
	uint64_t now = uv_now(&lh->io->loop);
	if (lh->fd_logged_ms && now - lh->fd_logged_ms < 10000)
		return true;
	lh->fd_logged_ms = now;
	vpp_log(VPP_LOG_WARN, "grpc",
		"listener=%s: %ld connections open, open-file limit %llu: connections past the "
		"limit are refused (raise ulimit -n or LimitNOFILE=)",
		lh->l->name, open, (unsigned long long)limit);
	return true;
}

static void on_connection(uv_stream_t *server, int status)
{
	listen_handle *lh = server->data;
	io_loop *io = lh->io;
	if (status != 0) {
		/* Rare: out of descriptors, libuv closes the pending
		 * connections itself (with a spare descriptor it keeps) and
		 * does not call us; we get here for other accept errors, or
		 * when even that fails. near_fd_limit() is what warns. */
		vpp_counter_inc(lh->l->met.rejected[R_ACCEPT_FAILED]);
		uint64_t now = uv_now(&io->loop);
		if (lh->accept_logged_ms == 0 || now - lh->accept_logged_ms >= 1000) {
			lh->accept_logged_ms = now;
			struct rlimit rl = {0, 0};
			getrlimit(RLIMIT_NOFILE, &rl);
			vpp_log(VPP_LOG_WARN, "grpc",
				"listener=%s cannot accept a connection: %s (open-file limit %llu; "
				"counted in vpp_grpc_rejected_total{reason=\"accept_failed\"})",
				lh->l->name, uv_strerror(status), (unsigned long long)rl.rlim_cur);
		}
		return;
	}
	vpp_grpc_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return;
	if (vpp__conn_init(c, &io->loop) != 0) {
		free(c);
		return;
	}
	c->role = ROLE_SERVER;
	c->io = io;
	c->l = lh->l;
	c->met = &lh->l->met;
	c->pool = &io->pool;
	const vpp_grpc_server_opts *o = &io->srv->opts;
	c->max_message_bytes = o->max_message_bytes;
	c->call_outbound_limit = o->call_outbound_limit;
	c->max_header_bytes = o->max_header_bytes;
	c->keepalive_ms = o->keepalive_ms;
	c->idle_timeout_ms = o->idle_timeout_ms;
	c->handshake_timeout_ms = o->handshake_timeout_ms;
	c->next = io->conns;
	if (io->conns)
		io->conns->prev = c;
	io->conns = c;
	vpp_counter_inc(c->met->conns_total);
	vpp_gauge_add(c->met->conns, 1);
	bool full = near_fd_limit(lh, atomic_fetch_add(&io->srv->open_conns, 1) + 1);
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		vpp__conn_close(c, VPP_EIO);
		return;
	}
	if (full) {
		vpp_counter_inc(c->met->rejected[R_FD_LIMIT]);
		vpp__conn_close(c, VPP_EIO);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	struct sockaddr_storage ss;
	int slen = sizeof(ss);
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &slen) == 0) {
		c->src_key = vpp__admission_source_key((struct sockaddr *)&ss);
		char ip[INET6_ADDRSTRLEN] = "?";
		int port = 0;
		if (ss.ss_family == AF_INET6) {
			uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
			port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		} else {
			uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
			port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		}
		snprintf(c->peer_addr, sizeof(c->peer_addr), "%s:%d", ip, port);
	}
	if (io->shutting_down) {
		vpp__conn_close(c, VPP_ECLOSED);
		return;
	}
	if (!vpp__admission_offer(&lh->adm, c)) {
		/* Cheap refusal: no TLS work for a connection we cannot take. */
		vpp_counter_inc(c->met->rejected[R_ADMISSION]);
		vpp_log(VPP_LOG_DEBUG, "grpc", "listener=%s peer=%s refused: too many new "
					       "connections waiting",
			lh->l->name, c->peer_addr);
		vpp__conn_close(c, VPP_EAGAIN);
	}
}

static void maybe_stop(io_loop *io);

void vpp__server_conn_closed(vpp_grpc_conn *c)
{
	io_loop *io = c->io;
	vpp__admission_done(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		io->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	vpp_gauge_add(c->met->conns, -1);
	atomic_fetch_sub(&io->srv->open_conns, 1);
	free(c->peer_cn);
	free(c);
	if (io->shutting_down)
		maybe_stop(io);
}

static void on_grace(uv_timer_t *t)
{
	io_loop *io = t->data;
	vpp_grpc_conn *c = io->conns;
	while (c) {
		vpp_grpc_conn *n = c->next;
		if (c->calls)
			vpp_log(VPP_LOG_WARN, "grpc", "peer=%s calls still open after the grace "
						      "period: closing",
				c->peer_addr);
		vpp__conn_close(c, VPP_ECLOSED);
		c = n;
	}
}

int vpp_grpc_server_on_stop(vpp_grpc_server *s, void (*fn)(void *ud, int loop_index), void *ud)
{
	if (s->started || s->nstop_hooks == 8)
		return VPP_EINVAL;
	s->stop_hooks[s->nstop_hooks].fn = fn;
	s->stop_hooks[s->nstop_hooks].ud = ud;
	s->nstop_hooks++;
	return 0;
}

static void maybe_stop(io_loop *io)
{
	if (io->conns || uv_is_closing((uv_handle_t *)&io->wake))
		return;
	for (int i = 0; i < io->srv->nstop_hooks; i++)
		io->srv->stop_hooks[i].fn(io->srv->stop_hooks[i].ud, io->index);
	if (!uv_is_closing((uv_handle_t *)&io->grace))
		uv_close((uv_handle_t *)&io->grace, NULL);
	if (!uv_is_closing((uv_handle_t *)&io->wake))
		uv_close((uv_handle_t *)&io->wake, NULL);
}

static void on_wake(uv_async_t *a)
{
	io_loop *io = a->data;
	if (io->shutting_down)
		return;
	io->shutting_down = true;
	for (int i = 0; i < io->nlh; i++) {
		uv_close((uv_handle_t *)&io->lh[i].h, NULL);
		vpp__admission_close(&io->lh[i].adm);
	}
	for (vpp_grpc_conn *c = io->conns; c; c = c->next) {
		if (c->closing)
			continue;
		c->draining = true;
		if (c->h2 && !c->goaway_sent) {
			nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
					      nghttp2_session_get_last_proc_stream_id(c->h2),
					      NGHTTP2_NO_ERROR, (const uint8_t *)"shutdown", 8);
			c->goaway_sent = true;
		}
		if (c->nstreams == 0)
			c->want_close = true;
	}
	/* Flushing may close connections (and unlink them): walk safely. */
	vpp_grpc_conn *c = io->conns;
	while (c) {
		vpp_grpc_conn *n = c->next;
		vpp__conn_flush(c);
		c = n;
	}
	uv_timer_start(&io->grace, on_grace, io->srv->grace_ms ? io->srv->grace_ms : 1, 0);
	maybe_stop(io);
}

static void io_main(void *arg)
{
	io_loop *io = arg;
	uv_run(&io->loop, UV_RUN_DEFAULT);
}

int vpp_grpc_server_start(vpp_grpc_server *s)
{
	if (s->started)
		return VPP_EINVAL;
	s->started = true;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		s->fd_limit = rl.rlim_cur;
	/* What the process holds besides connections (loops, listeners,
	 * files; it grows with the I/O threads), and room for the database
	 * and the admin endpoint. */
	long in_use = vpp_proc_open_fds();
	s->fd_reserve = (uint64_t)(in_use > 0 ? in_use : 64) + VPP__FD_MARGIN;
	for (int i = 0; i < s->nloops; i++) {
		io_loop *io = s->loops[i];
		uv_async_init(&io->loop, &io->wake, on_wake);
		io->wake.data = io;
		uv_timer_init(&io->loop, &io->grace);
		io->grace.data = io;
		for (int j = 0; j < s->nlisteners; j++) {
			listen_handle *lh = &io->lh[io->nlh];
			lh->l = s->listeners[j];
			lh->io = io;
			uv_tcp_init(&io->loop, &lh->h);
			lh->h.data = lh;
			vpp__admission_init(&lh->adm, &io->loop,
					    (double)lh->l->admission_per_s / s->nloops,
					    lh->l->tls != NULL, start_conn);
			if (uv_tcp_open(&lh->h, s->listeners[j]->fds[i]) != 0 ||
			    uv_listen((uv_stream_t *)&lh->h, 4096, on_connection) != 0)
				return VPP_EIO;
			s->listeners[j]->fds[i] = -1; /* owned by the handle now */
			io->nlh++;
		}
	}
	for (int i = 0; i < s->nloops; i++) {
		if (uv_thread_create(&s->loops[i]->thread, io_main, s->loops[i]) != 0)
			return VPP_EIO;
		s->loops[i]->thread_started = true;
	}
	return 0;
}

void vpp_grpc_server_shutdown(vpp_grpc_server *s, uint32_t grace_ms)
{
	s->grace_ms = grace_ms;
	for (int i = 0; i < s->nloops; i++)
		if (s->loops[i]->thread_started)
			uv_async_send(&s->loops[i]->wake);
	for (int i = 0; i < s->nloops; i++) {
		if (s->loops[i]->thread_started) {
			uv_thread_join(&s->loops[i]->thread);
			s->loops[i]->thread_started = false;
		}
	}
}

void vpp_grpc_server_free(vpp_grpc_server *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->nloops; i++) {
		io_loop *io = s->loops[i];
		if (io->thread_started)
			vpp_grpc_server_shutdown(s, 0);
		/* Run the loop once more so closed handles are released. */
		uv_run(&io->loop, UV_RUN_NOWAIT);
		uv_loop_close(&io->loop);
		for (int j = 0; j < io->nlh; j++)
			vpp__admission_free(&io->lh[j].adm);
		vpp__call_pool_drain(&io->pool);
		free(io);
	}
	for (int j = 0; j < s->nlisteners; j++) {
		vpp_grpc_listener *l = s->listeners[j];
		for (int i = 0; i < VPP__MAX_LOOPS; i++)
			if (l->fds[i] >= 0)
				close(l->fds[i]);
		vpp_grpc_tls_unref(l->tls);
		for (size_t i = 0; i < l->nmethods; i++)
			free(l->methods[i].path);
		free(l->methods);
		free(l->name);
		free(l->addr);
		free(l);
	}
	free(s);
}
