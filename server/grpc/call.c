/* A gRPC call (one HTTP/2 stream), shared by server and client: metadata,
 * the inbound message decoder, the bounded outbound queue that feeds the
 * nghttp2 data provider, deadlines and the end-of-call notification. */
#include "grpc_int.h"
#include "vpp/error.h"
#include "vpp/log.h"
#include "vpp/pb_wire.h"

#include <sanitizer/asan_interface.h>
#include <stdlib.h>
#include <string.h>

/* Strings of request metadata a pooled call keeps for its next use. */
#define MD_KEEP_BYTES 1024

/* The conn folds its calls' queues into the outbound gauge when it
 * flushes: one update per flush, not two per message. */
static void queued_add(vpp_grpc_call *call, size_t n)
{
	call->out_bytes += n;
	call->conn->queued_bytes += n;
}

static void queued_sub(vpp_grpc_call *call, size_t n)
{
	call->out_bytes -= n;
	call->conn->queued_bytes -= n;
}

vpp_grpc_call *vpp__call_new(vpp_grpc_conn *c, int32_t stream_id)
{
	vpp_grpc_call *call;
	if (c->pool && c->pool->n) {
		call = c->pool->items[--c->pool->n];
		ASAN_UNPOISON_MEMORY_REGION(call, sizeof(*call));
		md_list md = call->md; /* emptied, with its buffers */
		memset(call, 0, sizeof(*call));
		call->md = md;
	} else if (!(call = calloc(1, sizeof(*call)))) {
		return NULL;
	}
	call->conn = c;
	call->stream_id = stream_id;
	call->status = -1;
	vpp_grpc_decoder_init(&call->dec, c->max_message_bytes);
	call->started_at_ns = uv_hrtime();
	call->next = c->calls;
	if (c->calls)
		c->calls->prev = call;
	c->calls = call;
	return call;
}

/* Makes room for |need| more bytes in |l->str|, moving the entries'
 * pointers along. */
static int md_reserve(md_list *l, size_t need)
{
	if (l->slen + need <= l->scap)
		return 0;
	size_t ncap = l->scap ? l->scap * 2 : 256;
	while (ncap < l->slen + need)
		ncap *= 2;
	char *ns = malloc(ncap);
	if (!ns)
		return VPP_ENOMEM;
	if (l->slen)
		memcpy(ns, l->str, l->slen);
	for (size_t i = 0; i < l->n; i++) {
		l->v[i].key = ns + (l->v[i].key - l->str);
		l->v[i].value = ns + (l->v[i].value - l->str);
	}
	free(l->str);
	l->str = ns;
	l->scap = ncap;
	return 0;
}

int vpp__md_add(md_list *l, const char *k, size_t klen, const char *v, size_t vlen)
{
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 4;
		vpp_grpc_md *nv = realloc(l->v, ncap * sizeof(*nv));
		if (!nv)
			return VPP_ENOMEM;
		l->v = nv;
		l->cap = ncap;
	}
	if (md_reserve(l, klen + vlen + 2) != 0)
		return VPP_ENOMEM;
	char *mem = l->str + l->slen;
	memcpy(mem, k, klen);
	mem[klen] = 0;
	memcpy(mem + klen + 1, v, vlen);
	mem[klen + 1 + vlen] = 0;
	l->slen += klen + vlen + 2;
	l->v[l->n].key = mem;
	l->v[l->n].value = mem + klen + 1;
	l->n++;
	l->bytes += klen + vlen + 32;
	return 0;
}

void vpp__md_free(md_list *l)
{
	free(l->v);
	free(l->str);
	memset(l, 0, sizeof(*l));
}

/* Empties |l| but keeps its buffers when they are small. */
static void md_clear(md_list *l)
{
	if (l->scap > MD_KEEP_BYTES) {
		vpp__md_free(l);
		return;
	}
	l->n = l->slen = l->bytes = 0;
}

void vpp__call_pool_drain(call_pool *p)
{
	while (p->n) {
		vpp_grpc_call *call = p->items[--p->n];
		ASAN_UNPOISON_MEMORY_REGION(call, sizeof(*call));
		vpp__md_free(&call->md);
		free(call);
	}
}

static void free_chunks(vpp_grpc_call *call)
{
	chunk *ch = call->out_head;
	while (ch) {
		chunk *n = ch->next;
		free(ch);
		ch = n;
	}
	call->out_head = call->out_tail = NULL;
	queued_sub(call, call->out_bytes);
}

static void on_deadline_closed(uv_handle_t *h)
{
	free(h);
}

void vpp__call_clear_deadline(vpp_grpc_call *call)
{
	if (call->deadline) {
		uv_close((uv_handle_t *)call->deadline, on_deadline_closed);
		call->deadline = NULL;
	}
}

static void on_deadline(uv_timer_t *t)
{
	vpp_grpc_call *call = t->data;
	vpp__call_clear_deadline(call);
	if (call->conn->role == ROLE_SERVER) {
		vpp__call_expire(call);
	} else {
		if (call->conn->h2 && call->stream_id > 0)
			nghttp2_submit_rst_stream(call->conn->h2, NGHTTP2_FLAG_NONE, call->stream_id,
						  NGHTTP2_CANCEL);
		vpp_grpc_conn *c = call->conn;
		vpp__call_notify(call, VPP_GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
		if (c->closing)
			return; /* on_status closed the connection: |call| is freed */
		if (call->stream_id <= 0) {
			vpp__call_free(call); /* never reached the wire */
			return;
		}
		vpp__conn_flush(c); /* may free |call| (stream closed) */
	}
}

void vpp__call_set_deadline(vpp_grpc_call *call, int64_t timeout_ms)
{
	uv_timer_t *t = malloc(sizeof(*t));
	if (!t)
		return;
	uv_timer_init(call->conn->loop, t);
	t->data = call;
	call->deadline = t;
	call->deadline_at = uv_now(call->conn->loop) + (uint64_t)timeout_ms;
	uv_timer_start(t, on_deadline, (uint64_t)timeout_ms, 0);
}

void vpp__call_notify(vpp_grpc_call *call, int status, const char *msg)
{
	if (call->done)
		return;
	call->done = true;
	vpp__call_clear_deadline(call);
	if (call->conn->role == ROLE_SERVER) {
		if (call->me && status >= 0 && status <= 16)
			vpp_counter_inc(call->me->calls[status]);
		if (call->conn->met)
			vpp_histogram_observe(call->conn->met->call_seconds,
					      (double)(uv_hrtime() - call->started_at_ns) / 1e9);
		if (call->started && call->me && call->me->m.on_done)
			call->me->m.on_done(call, (vpp_grpc_status)status);
	} else if (call->cbs && call->cbs->on_status) {
		call->cbs->on_status(call, (vpp_grpc_status)status, msg ? msg : "");
	}
}

void vpp__call_free(vpp_grpc_call *call)
{
	vpp_grpc_conn *c = call->conn;
	if (!call->done) {
		if (c->role == ROLE_SERVER)
			vpp__call_notify(call, VPP_GRPC_CANCELLED, "cancelled");
		else
			vpp__call_notify(call, VPP_GRPC_UNAVAILABLE, "connection closed");
	}
	if (c->h2 && call->stream_id > 0)
		nghttp2_session_set_stream_user_data(c->h2, call->stream_id, NULL);
	/* Bytes held back while paused still count against the connection
	 * window: give them back, or every paused call that ends shrinks it
	 * for good. */
	if (c->h2 && call->pending_consume) {
		nghttp2_session_consume_connection(c->h2, call->pending_consume);
		call->pending_consume = 0;
	}
	for (vpp_grpc_call **w = &c->waiting; *w; w = &(*w)->next_waiting) {
		if (*w == call) {
			*w = call->next_waiting;
			break;
		}
	}
	if (call->prev)
		call->prev->next = call->next;
	else if (c->calls == call)
		c->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	c->partial_bytes -= call->partial_counted;
	call->partial_counted = 0;
	vpp__call_clear_deadline(call);
	free_chunks(call);
	vpp__md_free(&call->resp_hdr);
	vpp__md_free(&call->trailers);
	vpp_grpc_decoder_free(&call->dec);
	free(call->path_own);
	free(call->status_msg);
	if (call->req != call->req_inl)
		free(call->req);
	if (c->pool && c->pool->n < VPP__CALL_POOL) {
		md_clear(&call->md);
		c->pool->items[c->pool->n++] = call;
		/* A use after free still trips the sanitizer build. */
		ASAN_POISON_MEMORY_REGION(call, sizeof(*call));
		return;
	}
	vpp__md_free(&call->md);
	free(call);
}

const char *vpp__status_text(int v, char *buf, size_t len)
{
	/* snprintf was a visible share of a unary call's CPU time. */
	static const char *const codes[] = {"0", "1",  "2",  "3",  "4",  "5",  "6",  "7", "8",
					    "9", "10", "11", "12", "13", "14", "15", "16"};
	if (v >= 0 && v <= 16)
		return codes[v];
	if (v == 200)
		return "200";
	snprintf(buf, len, "%d", v);
	return buf;
}

/* Builds the trailing header block: grpc-status, grpc-message, trailers. */
static int submit_trailers(vpp_grpc_call *call)
{
	vpp_grpc_conn *c = call->conn;
	nghttp2_nv nva[64];
	size_t n = 0;
	char buf[16], msg[1024];
	const char *status =
		vpp__status_text(call->status < 0 ? 0 : call->status, buf, sizeof(buf));
	nva[n++] = (nghttp2_nv){(uint8_t *)"grpc-status", (uint8_t *)status, 11, strlen(status),
				NGHTTP2_NV_FLAG_NONE};
	if (call->status_msg && call->status_msg[0]) {
		size_t len = vpp_grpc_percent_encode(call->status_msg, msg, sizeof(msg));
		nva[n++] = (nghttp2_nv){(uint8_t *)"grpc-message", (uint8_t *)msg, 12, len,
					NGHTTP2_NV_FLAG_NONE};
	}
	for (size_t i = 0; i < call->trailers.n && n < 64; i++)
		nva[n++] = (nghttp2_nv){(uint8_t *)call->trailers.v[i].key,
					(uint8_t *)call->trailers.v[i].value,
					strlen(call->trailers.v[i].key),
					strlen(call->trailers.v[i].value), NGHTTP2_NV_FLAG_NONE};
	call->trailers_sent = true;
	return nghttp2_submit_trailer(c->h2, call->stream_id, nva, n) == 0 ? 0 : VPP_EPROTO;
}

int vpp__call_submit_trailers(vpp_grpc_call *call)
{
	return submit_trailers(call);
}

ssize_t vpp__call_read_data(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
			    uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	vpp_grpc_call *call = nghttp2_session_get_stream_user_data(s, stream_id);
	if (!call)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	size_t n = 0;
	while (n < length && call->out_head) {
		chunk *ch = call->out_head;
		size_t take = ch->len - ch->off;
		if (take > length - n)
			take = length - n;
		memcpy(buf + n, ch->data + ch->off, take);
		n += take;
		ch->off += take;
		if (ch->off == ch->len) {
			call->out_head = ch->next;
			if (!call->out_head)
				call->out_tail = NULL;
			free(ch);
		}
	}
	queued_sub(call, n);
	if (call->want_writable)
		call->conn->any_want_writable = true;
	if (call->out_head)
		return (ssize_t)n;
	if (call->finishing) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (call->conn->role == ROLE_SERVER) {
			*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
			if (!call->trailers_sent && submit_trailers(call) != 0)
				return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		}
		return (ssize_t)n;
	}
	if (n)
		return (ssize_t)n;
	call->deferred = true;
	return NGHTTP2_ERR_DEFERRED;
}

static void resume(vpp_grpc_call *call)
{
	if (call->deferred && call->conn->h2 && call->stream_id > 0) {
		call->deferred = false;
		nghttp2_session_resume_data(call->conn->h2, call->stream_id);
	}
}

static size_t out_limit(const vpp_grpc_call *call)
{
	return call->out_limit ? call->out_limit : call->conn->call_outbound_limit;
}

void vpp_grpc_call_set_outbound_limit(vpp_grpc_call *call, size_t bytes)
{
	call->out_limit = bytes;
}

void vpp__conn_notify_writable(vpp_grpc_conn *c)
{
	c->any_want_writable = false;
restart:
	for (vpp_grpc_call *call = c->calls; call; call = call->next) {
		if (!call->want_writable || call->done)
			continue;
		if (call->out_bytes > out_limit(call) / 2) {
			c->any_want_writable = true;
			continue;
		}
		call->want_writable = false;
		void (*cb)(vpp_grpc_call *) = c->role == ROLE_SERVER
						      ? (call->me ? call->me->m.on_writable : NULL)
						      : (call->cbs ? call->cbs->on_writable : NULL);
		if (cb) {
			cb(call);
			if (c->closing)
				return;
			/* The handler may have finished its call (or flushed
			 * others to their end): |call| may be freed. Each call
			 * is handled once: it is no longer below half its limit
			 * with want_writable set unless it sent nothing. */
			goto restart;
		}
	}
}

int vpp_grpc_call_send(vpp_grpc_call *call, const uint8_t *data, size_t len)
{
	vpp_grpc_conn *c = call->conn;
	if (call->done || call->finishing || c->closing || c->close_deferred)
		return VPP_ECLOSED;
	if (len > c->max_message_bytes || len > UINT32_MAX)
		return VPP_ETOOBIG;
	if (call->out_bytes >= out_limit(call)) {
		call->want_writable = true;
		c->any_want_writable = true;
		return VPP_EFULL;
	}
	chunk *ch = malloc(sizeof(*ch) + VPP_GRPC_FRAME_HEADER + len);
	if (!ch)
		return VPP_ENOMEM;
	ch->next = NULL;
	ch->off = 0;
	ch->len = VPP_GRPC_FRAME_HEADER + len;
	vpp_grpc_frame_header(ch->data, false, (uint32_t)len);
	if (len)
		memcpy(ch->data + VPP_GRPC_FRAME_HEADER, data, len);
	if (call->out_tail)
		call->out_tail->next = ch;
	else
		call->out_head = ch;
	call->out_tail = ch;
	queued_add(call, ch->len);
	if (c->met)
		vpp_counter_inc(c->met->msgs_out);
	if (c->role == ROLE_SERVER && !call->headers_sent) {
		if (vpp__call_submit_response(call) != 0)
			return VPP_EPROTO;
	} else {
		resume(call);
	}
	/* A write failing now closes the connection on the next loop turn:
	 * the caller may still use its call and its own state. */
	c->in_api++;
	vpp__conn_flush(c);
	c->in_api--;
	return 0;
}

size_t vpp_grpc_call_outbound_bytes(const vpp_grpc_call *call)
{
	return call->out_bytes;
}

int vpp_grpc_call_add_header(vpp_grpc_call *call, const char *key, const char *value)
{
	if (call->headers_sent || call->done)
		return VPP_ECLOSED;
	return vpp__md_add(&call->resp_hdr, key, strlen(key), value, strlen(value));
}

int vpp_grpc_call_add_trailer(vpp_grpc_call *call, const char *key, const char *value)
{
	if (call->finishing || call->done)
		return VPP_ECLOSED;
	return vpp__md_add(&call->trailers, key, strlen(key), value, strlen(value));
}

int vpp_grpc_call_finish(vpp_grpc_call *call, vpp_grpc_status status, const char *message)
{
	if (call->conn->role != ROLE_SERVER)
		return VPP_EINVAL;
	if (call->done || call->finishing)
		return VPP_ECLOSED;
	call->finishing = true;
	call->status = (int)status;
	if (message && message[0])
		call->status_msg = strdup(message);
	if (!call->headers_sent) {
		if (vpp__call_submit_response(call) != 0)
			return VPP_EPROTO;
	} else {
		resume(call);
	}
	vpp__conn_flush(call->conn);
	return 0;
}

int vpp_grpc_call_reject(vpp_grpc_call *call, vpp_grpc_status status, const char *reason,
			 const char *message)
{
	vpp_grpc_conn *c = call->conn;
	if (c->met) {
		for (int r = 0; r < R__COUNT; r++) {
			if (strcmp(vpp__reason_names[r], reason) == 0) {
				vpp_counter_inc(c->met->rejected[r]);
				break;
			}
		}
	}
	vpp_log(VPP_LOG_WARN, "grpc", "listener=%s peer=%s path=%s rejected (%s): %s",
		c->l ? c->l->name : "-", c->peer_addr, call->path ? call->path : "-", reason,
		message ? message : "");
	return vpp_grpc_call_finish(call, status, message);
}

void vpp__call_expire(vpp_grpc_call *call)
{
	vpp_grpc_conn *c = call->conn;
	if (call->done)
		return;
	if (c->met)
		vpp_counter_inc(c->met->rejected[R_DEADLINE_EXCEEDED]);
	free_chunks(call);
	bool was_finishing = call->finishing;
	vpp__call_notify(call, VPP_GRPC_DEADLINE_EXCEEDED, NULL);
	if (was_finishing && call->trailers_sent)
		return;
	call->finishing = true;
	call->status = VPP_GRPC_DEADLINE_EXCEEDED;
	free(call->status_msg);
	call->status_msg = strdup("deadline exceeded");
	if (!call->headers_sent)
		vpp__call_submit_response(call);
	else
		resume(call);
	vpp__conn_flush(c);
}

static int server_message(vpp_grpc_call *call, const uint8_t *msg, size_t len);
static int client_message(vpp_grpc_call *call, const uint8_t *msg, size_t len);

/* A server call's request message as its method's handler may read it
 * (vpp_grpc_method.request): |msg| itself, or a clean copy in |*clean| (to
 * free) with |*len| updated. NULL when it does not parse (the call is
 * refused: INVALID_ARGUMENT) or no memory was left (RESOURCE_EXHAUSTED). */
static const uint8_t *checked_request(vpp_grpc_call *call, const uint8_t *msg, size_t *len,
				      uint8_t **clean)
{
	const ProtobufCMessageDescriptor *d = call->me->m.request;
	int rv = vpp_pb_check(d, msg, *len);
	if (rv == VPP_PB_OK)
		return msg;
	if (rv != VPP_PB_CLEAN) {
		char why[160];
		snprintf(why, sizeof(why), "the request does not parse as %s", d->name);
		vpp_grpc_call_reject(call, VPP_GRPC_INVALID_ARGUMENT, "bad_message", why);
		return NULL;
	}
	if (!(*clean = malloc(*len))) {
		vpp_grpc_call_finish(call, VPP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return NULL;
	}
	vpp_pb_clean(d, msg, *len, *clean, len);
	return *clean;
}

static int on_decoded(void *ud, bool compressed, const uint8_t *msg, size_t len)
{
	vpp_grpc_call *call = ud;
	vpp_grpc_conn *c = call->conn;
	if (compressed) {
		/* Compression is not supported: we never advertise an encoding. */
		if (c->role == ROLE_SERVER) {
			vpp_grpc_call_reject(call, VPP_GRPC_UNIMPLEMENTED, "unsupported_encoding",
					     "compressed messages are not supported");
		} else {
			vpp_grpc_call_cancel(call);
		}
		return 1;
	}
	if (c->met)
		vpp_counter_inc(c->met->msgs_in);
	if (c->role == ROLE_SERVER && call->me->m.request) {
		uint8_t *clean = NULL;
		const uint8_t *req = checked_request(call, msg, &len, &clean);
		int rv = req ? server_message(call, req, len) : 1;
		free(clean);
		return rv;
	}
	return c->role == ROLE_SERVER ? server_message(call, msg, len) : client_message(call, msg, len);
}

/* A request message for a server call's handler. Returns 1 when the call
 * is over (finished, cancelled). */
static int server_message(vpp_grpc_call *call, const uint8_t *msg, size_t len)
{
	if (call->me->m.on_request) {
		if (call->have_req) {
			vpp_grpc_call_reject(call, VPP_GRPC_INVALID_ARGUMENT, "bad_message",
					     "more than one request message for a "
					     "single-request method");
			return 1;
		}
		call->req = len <= sizeof(call->req_inl) ? call->req_inl : malloc(len);
		if (!call->req) {
			vpp_grpc_call_finish(call, VPP_GRPC_RESOURCE_EXHAUSTED,
					     "out of memory");
			return 1;
		}
		memcpy(call->req, msg, len);
		call->req_len = len;
		call->have_req = true;
	} else if (call->me->m.on_message) {
		call->me->m.on_message(call, msg, len);
	}
	/* The handler may have finished or cancelled the call. */
	return call->done || call->finishing ? 1 : 0;
}

static int client_message(vpp_grpc_call *call, const uint8_t *msg, size_t len)
{
	if (call->cbs->on_message)
		call->cbs->on_message(call, msg, len);
	return call->done ? 1 : 0;
}

void vpp__call_recv_data(vpp_grpc_call *call, const uint8_t *data, size_t len)
{
	vpp_grpc_conn *c = call->conn;
	bool ignore = call->done || (c->role == ROLE_SERVER && (call->finishing || !call->started));
	if (!ignore) {
		int rv = vpp_grpc_decoder_feed(&call->dec, data, len, on_decoded, call);
		c->partial_bytes += call->dec.cap - call->partial_counted;
		call->partial_counted = call->dec.cap;
		/* Bytes of messages not yet complete are held before any handler
		 * (or authorization) runs: a connection may hold four of the
		 * largest messages, not one per stream. */
		bool crowded = rv == 0 && c->partial_bytes > 4 * c->max_message_bytes;
		if (crowded)
			rv = VPP_ETOOBIG;
		if (rv == VPP_ETOOBIG || rv == VPP_EPROTO || rv == VPP_ENOMEM) {
			const char *msg = crowded ? "too many partial messages on this connection"
				       : rv == VPP_ETOOBIG ? "message larger than the limit"
				       : rv == VPP_EPROTO  ? "bad gRPC frame flag"
							   : "out of memory";
			if (c->role == ROLE_SERVER) {
				vpp_grpc_call_reject(call,
						     rv == VPP_EPROTO ? VPP_GRPC_INTERNAL
								      : VPP_GRPC_RESOURCE_EXHAUSTED,
						     rv == VPP_ETOOBIG ? "message_too_large"
								       : "h2_protocol",
						     msg);
			} else {
				if (c->h2)
					nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE,
								  call->stream_id, NGHTTP2_CANCEL);
				vpp__call_notify(call,
						 rv == VPP_ETOOBIG ? VPP_GRPC_RESOURCE_EXHAUSTED
								   : VPP_GRPC_INTERNAL,
						 msg);
			}
		}
	}
	/* Flow control: the window reopens once the handler has the data,
	 * unless it paused the call (backpressure). */
	if (c->h2) {
		if (call->paused && !call->done)
			call->pending_consume += len;
		else
			nghttp2_session_consume(c->h2, call->stream_id, len);
	}
}

void vpp_grpc_call_pause_recv(vpp_grpc_call *call, bool paused)
{
	vpp_grpc_conn *c = call->conn;
	call->paused = paused;
	if (!paused && call->pending_consume && c->h2) {
		nghttp2_session_consume(c->h2, call->stream_id, call->pending_consume);
		call->pending_consume = 0;
		c->in_api++; /* as in vpp_grpc_call_send */
		vpp__conn_flush(c);
		c->in_api--;
	}
}

const char *vpp_grpc_call_metadata(const vpp_grpc_call *call, const char *key)
{
	for (size_t i = 0; i < call->md.n; i++)
		if (strcmp(call->md.v[i].key, key) == 0)
			return call->md.v[i].value;
	return NULL;
}

size_t vpp_grpc_call_metadata_count(const vpp_grpc_call *call)
{
	return call->md.n;
}

vpp_grpc_md vpp_grpc_call_metadata_at(const vpp_grpc_call *call, size_t i)
{
	if (i >= call->md.n)
		return (vpp_grpc_md){NULL, NULL};
	return call->md.v[i];
}

const char *vpp_grpc_call_path(const vpp_grpc_call *call)
{
	return call->path;
}

const char *vpp_grpc_call_peer_identity(const vpp_grpc_call *call)
{
	return call->conn->peer_cn;
}

bool vpp_grpc_call_status_from_peer(const vpp_grpc_call *call)
{
	return call->got_status;
}

const char *vpp_grpc_call_peer_addr(const vpp_grpc_call *call)
{
	return call->conn->peer_addr;
}

int64_t vpp_grpc_call_time_left_ms(const vpp_grpc_call *call)
{
	if (!call->deadline_at)
		return -1;
	uint64_t now = uv_now(call->conn->loop);
	return call->deadline_at > now ? (int64_t)(call->deadline_at - now) : 0;
}

uv_loop_t *vpp_grpc_call_loop(const vpp_grpc_call *call)
{
	return call->conn->loop;
}

void *vpp_grpc_call_method_data(const vpp_grpc_call *call)
{
	return call->me ? call->me->m.method_ud : NULL;
}

void vpp_grpc_call_set_data(vpp_grpc_call *call, void *data)
{
	call->data = data;
}

void *vpp_grpc_call_data(const vpp_grpc_call *call)
{
	return call->data;
}

void vpp_grpc_call_cancel(vpp_grpc_call *call)
{
	vpp_grpc_conn *c = call->conn;
	if (call->done)
		return;
	if (c->h2 && call->stream_id > 0)
		nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, call->stream_id, NGHTTP2_CANCEL);
	vpp__call_notify(call, VPP_GRPC_CANCELLED, "cancelled");
	if (c->closing)
		return; /* the handler closed the connection: |call| is freed */
	if (call->stream_id <= 0) {
		vpp__call_free(call);
		return;
	}
	vpp__conn_flush(c);
}
