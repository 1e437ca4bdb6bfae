/* The gRPC client: one HTTP/2 connection (TLS or h2c) on the caller's
 * loop, calls as streams on it. Calls started before the connection is
 * ready wait for it. */
#include "grpc_int.h"
#include "vpp/error.h"
#include "vpp/log.h"

#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static void on_connect(uv_connect_t *req, int status)
{
	vpp_grpc_conn *c = req->handle->data;
	if (c->closing)
		return;
	if (status != 0) {
		vpp_log(VPP_LOG_DEBUG, "grpc-client", "connect to %s failed: %s", c->peer_addr,
			uv_strerror(status));
		vpp__conn_close(c, VPP_EIO);
		return;
	}
	c->connected = true;
	c->opened_ms = uv_now(c->loop);
	uv_tcp_nodelay(&c->tcp, 1);
	vpp__conn_start_reading(c);
}

static int resolve(const char *host, int port, struct sockaddr_storage *ss)
{
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0 ||
	    uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
		return 0;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
	if (getaddrinfo(host, NULL, &hints, &res) != 0)
		return VPP_EINVAL;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
	freeaddrinfo(res);
	return 0;
}

int vpp_grpc_conn_new(uv_loop_t *loop, const vpp_grpc_client_opts *opts, vpp_grpc_conn **ret)
{
	struct sockaddr_storage ss, bs;
	int rv;
	if (!opts || !opts->host || opts->port <= 0 || opts->port > 65535)
		return VPP_EINVAL;
	if (resolve(opts->host, opts->port, &ss) != 0)
		return VPP_EINVAL;
	if (opts->bind_addr && uv_ip4_addr(opts->bind_addr, 0, (struct sockaddr_in *)&bs) != 0 &&
	    uv_ip6_addr(opts->bind_addr, 0, (struct sockaddr_in6 *)&bs) != 0)
		return VPP_EINVAL;
	vpp_grpc_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return VPP_ENOMEM;
	c->role = ROLE_CLIENT;
	c->copts = *opts;
	c->copts.host = NULL;
	c->copts.bind_addr = NULL;
	c->copts.identity = NULL; /* the SSL object keeps what it needs */
	c->authority = strdup(opts->authority ? opts->authority : opts->host);
	if (!c->authority) {
		free(c);
		return VPP_ENOMEM;
	}
	c->max_message_bytes = opts->max_message_bytes ? opts->max_message_bytes : 4 * 1024 * 1024;
	c->call_outbound_limit = opts->call_outbound_limit ? opts->call_outbound_limit
							   : 1024 * 1024;
	c->max_header_bytes = 64 * 1024;
	c->keepalive_ms = opts->keepalive_ms;
	c->handshake_timeout_ms = opts->connect_timeout_ms ? opts->connect_timeout_ms : 10000;
	snprintf(c->peer_addr, sizeof(c->peer_addr), "%s:%d", opts->host, opts->port);
	if ((rv = vpp__conn_init(c, loop)) != 0) {
		free(c->authority);
		free(c);
		return rv;
	}
	/* From here on, failures go through vpp__conn_close (handles exist). */
	if (opts->tls) {
		vpp_grpc_tls_ref(opts->tls);
		c->ctls = opts->tls;
		rv = vpp__tls_attach(c, opts->tls, false, c->authority, opts->identity);
		if (rv != 0)
			goto fail;
	}
	if (opts->bind_addr && (rv = uv_tcp_bind(&c->tcp, (struct sockaddr *)&bs, 0)) != 0) {
		rv = VPP_EIO;
		goto fail;
	}
	if (uv_tcp_connect(&c->connect_req, &c->tcp, (struct sockaddr *)&ss, on_connect) != 0) {
		rv = VPP_EIO;
		goto fail;
	}
	vpp__conn_arm_timer(c);
	*ret = c;
	return 0;
fail:
	c->copts.on_closed = NULL;
	vpp__conn_close(c, rv);
	return rv;
}

void vpp__client_conn_closed(vpp_grpc_conn *c)
{
	if (c->copts.on_closed)
		c->copts.on_closed(c, c->close_err, c->copts.ud);
	vpp_grpc_tls_unref(c->ctls);
	free(c->authority);
	free(c->peer_cn);
	free(c);
}

bool vpp_grpc_conn_is_ready(const vpp_grpc_conn *c)
{
	return !c->closing && c->h2_started && (c->ssl == NULL || c->tls_done);
}

void *vpp_grpc_conn_data(const vpp_grpc_conn *c)
{
	return c->copts.ud;
}

static int submit_request(vpp_grpc_call *call)
{
	vpp_grpc_conn *c = call->conn;
	nghttp2_nv nva[72];
	size_t n = 0;
	char timeout[24];
#define NV(k, v) (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), NGHTTP2_NV_FLAG_NONE}
	nva[n++] = NV(":method", "POST");
	nva[n++] = NV(":scheme", c->ssl ? "https" : "http");
	nva[n++] = NV(":path", call->path);
	nva[n++] = NV(":authority", c->authority);
	nva[n++] = NV("content-type", "application/grpc");
	nva[n++] = NV("te", "trailers");
	nva[n++] = NV("user-agent", "vpp-grpc-c/0.1");
	if (call->deadline_at) {
		uint64_t now = uv_now(c->loop);
		vpp_grpc_timeout_format(call->deadline_at > now ? (int64_t)(call->deadline_at - now) : 0,
					timeout, sizeof(timeout));
		nva[n++] = NV("grpc-timeout", timeout);
	}
	for (size_t i = 0; i < call->resp_hdr.n && n < 72; i++)
		nva[n++] = NV(call->resp_hdr.v[i].key, call->resp_hdr.v[i].value);
#undef NV
	nghttp2_data_provider prd = {.source.ptr = call, .read_callback = vpp__call_read_data};
	int32_t id = nghttp2_submit_request(c->h2, NULL, nva, n, &prd, call);
	if (id < 0)
		return VPP_EPROTO;
	call->stream_id = id;
	call->headers_sent = true;
	c->nstreams++;
	return 0;
}

void vpp__client_conn_ready(vpp_grpc_conn *c)
{
	while (c->waiting) {
		vpp_grpc_call *call = c->waiting;
		c->waiting = call->next_waiting;
		call->next_waiting = NULL;
		if (submit_request(call) != 0) {
			vpp__call_notify(call, VPP_GRPC_UNAVAILABLE, "cannot start a stream");
			if (c->closing)
				return; /* on_status closed the connection: every call is freed */
			vpp__call_free(call);
		}
	}
	vpp__conn_flush(c);
}

int vpp_grpc_conn_call(vpp_grpc_conn *c, const char *path, const vpp_grpc_md *md, size_t nmd,
		       uint32_t timeout_ms, const vpp_grpc_client_cbs *cbs, void *data,
		       vpp_grpc_call **ret)
{
	if (!path || path[0] != '/' || !cbs || !cbs->on_status)
		return VPP_EINVAL;
	if (c->closing || c->want_close || c->goaway_received || c->draining)
		return VPP_ECLOSED;
	vpp_grpc_call *call = vpp__call_new(c, 0);
	if (!call)
		return VPP_ENOMEM;
	call->cbs = cbs;
	call->data = data;
	call->path = call->path_own = strdup(path);
	if (!call->path)
		goto nomem;
	for (size_t i = 0; i < nmd; i++)
		if (vpp__md_add(&call->resp_hdr, md[i].key, strlen(md[i].key), md[i].value,
				strlen(md[i].value)) != 0)
			goto nomem;
	if (timeout_ms)
		vpp__call_set_deadline(call, timeout_ms);
	if (vpp_grpc_conn_is_ready(c)) {
		if (submit_request(call) != 0) {
			call->done = true; /* the caller never saw it: no on_status */
			vpp__call_free(call);
			return VPP_EPROTO;
		}
		vpp__conn_flush(c);
	} else {
		vpp_grpc_call **w = &c->waiting;
		while (*w)
			w = &(*w)->next_waiting;
		*w = call;
	}
	*ret = call;
	return 0;
nomem:
	call->done = true;
	vpp__call_free(call);
	return VPP_ENOMEM;
}

int vpp_grpc_call_close_send(vpp_grpc_call *call)
{
	if (call->conn->role != ROLE_CLIENT)
		return VPP_EINVAL;
	if (call->done || call->finishing)
		return VPP_ECLOSED;
	call->finishing = true;
	if (call->deferred && call->conn->h2 && call->stream_id > 0) {
		call->deferred = false;
		nghttp2_session_resume_data(call->conn->h2, call->stream_id);
	}
	vpp__conn_flush(call->conn);
	return 0;
}

void vpp_grpc_conn_close(vpp_grpc_conn *c, bool graceful)
{
	if (c->closing)
		return;
	if (graceful && c->nstreams > 0 && c->h2) {
		c->draining = true;
		return;
	}
	if (c->in_h2) {
		c->want_close = true;
		return;
	}
	vpp__conn_close(c, 0);
}

/* ---- nghttp2 client callbacks ------------------------------------------ */

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	vpp_grpc_call *call = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
	if (!call)
		return 0;
	if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
		call->http_status = atoi((const char *)value);
	} else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
		char buf[12] = {0};
		memcpy(buf, value, valuelen < 11 ? valuelen : 11);
		call->status = atoi(buf);
		call->got_status = true;
	} else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
		free(call->status_msg);
		call->status_msg = malloc(valuelen + 1);
		if (call->status_msg)
			vpp_grpc_percent_decode((const char *)value, valuelen, call->status_msg,
						valuelen + 1);
	} else if (name[0] != ':') {
		if (vpp__md_add(&call->md, (const char *)name, namelen, (const char *)value,
				valuelen) != 0)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
	vpp_grpc_conn *c = ud;
	vpp_grpc_call *call;
	switch (frame->hd.type) {
	case NGHTTP2_HEADERS:
		call = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
		if (!call)
			break;
		if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE && !call->done &&
		    call->cbs->on_headers)
			call->cbs->on_headers(call);
		if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
			call->remote_closed = true;
		break;
	case NGHTTP2_DATA:
		call = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
		if (call && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
			call->remote_closed = true;
		break;
	case NGHTTP2_PING:
		if (frame->hd.flags & NGHTTP2_FLAG_ACK)
			c->ping_outstanding = false;
		break;
	case NGHTTP2_GOAWAY:
		c->goaway_received = true;
		c->draining = true;
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

static int http_to_grpc(int http)
{
	switch (http) {
	case 400: return VPP_GRPC_INTERNAL;
	case 401: return VPP_GRPC_UNAUTHENTICATED;
	case 403: return VPP_GRPC_PERMISSION_DENIED;
	case 404: return VPP_GRPC_UNIMPLEMENTED;
	case 429:
	case 502:
	case 503:
	case 504: return VPP_GRPC_UNAVAILABLE;
	default: return VPP_GRPC_UNKNOWN;
	}
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *ud)
{
	vpp_grpc_conn *c = ud;
	vpp_grpc_call *call = nghttp2_session_get_stream_user_data(s, stream_id);
	if (!call)
		goto out;
	if (!call->done) {
		char msg[128];
		if (call->got_status && call->http_status == 200) {
			if (call->status == 0 && vpp_grpc_decoder_partial(&call->dec))
				vpp__call_notify(call, VPP_GRPC_INTERNAL, "truncated message");
			else
				vpp__call_notify(call, call->status, call->status_msg);
		} else if (call->http_status && call->http_status != 200) {
			snprintf(msg, sizeof(msg), "HTTP status %d", call->http_status);
			vpp__call_notify(call,
					 call->got_status ? call->status
							  : http_to_grpc(call->http_status),
					 call->status_msg ? call->status_msg : msg);
		} else if (error_code == NGHTTP2_REFUSED_STREAM) {
			vpp__call_notify(call, VPP_GRPC_UNAVAILABLE, "stream refused");
		} else if (error_code == NGHTTP2_CANCEL) {
			vpp__call_notify(call, VPP_GRPC_CANCELLED, "stream cancelled by the server");
		} else if (error_code == NGHTTP2_ENHANCE_YOUR_CALM) {
			vpp__call_notify(call, VPP_GRPC_RESOURCE_EXHAUSTED, "enhance your calm");
		} else {
			snprintf(msg, sizeof(msg), "stream closed without status (http2 error %u)",
				 error_code);
			vpp__call_notify(call, VPP_GRPC_INTERNAL, msg);
		}
	}
	vpp__call_free(call);
	c->nstreams--;
out:
	if (c->nstreams == 0 && c->draining)
		c->want_close = true;
	return 0;
}

static nghttp2_session_callbacks *client_callbacks_cbs;
static pthread_once_t client_callbacks_once = PTHREAD_ONCE_INIT;

static void client_callbacks_init(void)
{
	nghttp2_session_callbacks *cbs;
	if (nghttp2_session_callbacks_new(&cbs) != 0)
		return;
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	client_callbacks_cbs = cbs;
}

/* One callback table for every session, made once. */
static nghttp2_session_callbacks *client_callbacks(void)
{
	pthread_once(&client_callbacks_once, client_callbacks_init);
	return client_callbacks_cbs;
}

int vpp__client_session_new(vpp_grpc_conn *c)
{
	nghttp2_session_callbacks *cbs = client_callbacks();
	nghttp2_option *opt;
	if (!cbs || nghttp2_option_new(&opt) != 0)
		return VPP_ENOMEM;
	nghttp2_option_set_no_auto_window_update(opt, 1);
	int rv = nghttp2_session_client_new3(&c->h2, cbs, c, opt, vpp__h2_mem());
	nghttp2_option_del(opt);
	if (rv != 0)
		return VPP_ENOMEM;
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1024 * 1024},
	};
	if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 2) != 0)
		return VPP_ENOMEM;
	nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, 16 * 1024 * 1024);
	return 0;
}
