/* vpp.v1.Echo test service (see proto/vpp/v1/echo.proto). */
#include "vpp/echo.h"
#include "vpp/error.h"
#include "vpp/v1/echo.pb-c.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
	uv_timer_t timer;
	bool timer_used;
	vpp_grpc_call *call; /* NULL once the call is over */
	Vpp__V1__EchoRequest *req;
	uint32_t index;
	/* ClientStream totals. */
	uint32_t count;
	uint64_t bytes;
	char *last_message;
	/* Bidi: responses waiting for room in the outbound queue, in order.
	 * Pausing stops the window, not what the client already sent within
	 * it, so more than one can wait. */
	struct held *held, *held_tail;
	bool finish_when_sent; /* half-closed while responses waited */
} echo_state;

typedef struct held {
	struct held *next;
	size_t len;
	uint8_t data[];
} held;

static echo_state *state_new(vpp_grpc_call *call)
{
	echo_state *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->call = call;
	vpp_grpc_call_set_data(call, s);
	return s;
}

static void on_state_closed(uv_handle_t *h)
{
	echo_state *s = h->data;
	free(s);
}

static void on_done(vpp_grpc_call *call, vpp_grpc_status st)
{
	echo_state *s = vpp_grpc_call_data(call);
	if (!s)
		return;
	s->call = NULL;
	if (s->req)
		vpp__v1__echo_request__free_unpacked(s->req, NULL);
	free(s->last_message);
	while (s->held) {
		held *h = s->held;
		s->held = h->next;
		free(h);
	}
	if (s->timer_used) {
		s->timer.data = s;
		uv_close((uv_handle_t *)&s->timer, on_state_closed);
	} else {
		free(s);
	}
}

static Vpp__V1__EchoRequest *parse(vpp_grpc_call *call, const uint8_t *data, size_t len)
{
	Vpp__V1__EchoRequest *r = vpp__v1__echo_request__unpack(NULL, len, data);
	if (!r)
		vpp_grpc_call_reject(call, VPP_GRPC_INVALID_ARGUMENT, "bad_message",
				     "EchoRequest does not parse");
	return r;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Packs |resp| and sends it; returns vpp_grpc_call_send's result. With
 * |keep| (and |s|), a response that cannot go now (VPP_EFULL, or others
 * already wait) joins the ones waiting in |s|, in order. */
static int send_resp(vpp_grpc_call *call, Vpp__V1__EchoResponse *resp, echo_state *s, bool keep)
{
	size_t len = vpp__v1__echo_response__get_packed_size(resp);
	held *h = malloc(sizeof(*h) + (len ? len : 1));
	if (!h)
		return VPP_ENOMEM;
	vpp__v1__echo_response__pack(resp, h->data);
	h->len = len;
	h->next = NULL;
	int rv = keep && s && s->held ? VPP_EFULL : vpp_grpc_call_send(call, h->data, len);
	if (rv == VPP_EFULL && keep && s) {
		if (s->held_tail)
			s->held_tail->next = h;
		else
			s->held = h;
		s->held_tail = h;
		return rv;
	}
	free(h);
	return rv;
}

static void copy_trailer(vpp_grpc_call *call)
{
	const char *t = vpp_grpc_call_metadata(call, "x-echo-trailer");
	if (t)
		vpp_grpc_call_add_trailer(call, "x-echo-trailer", t);
}

static void start_headers(vpp_grpc_call *call)
{
	const char *v = vpp_grpc_call_metadata(call, "x-echo-initial");
	if (v)
		vpp_grpc_call_add_header(call, "x-echo-initial", v);
	copy_trailer(call);
}

static void finish_with(vpp_grpc_call *call, const Vpp__V1__EchoRequest *r)
{
	if (r && r->fail_with_code > 0 && r->fail_with_code <= 16)
		vpp_grpc_call_finish(call, (vpp_grpc_status)r->fail_with_code,
				     r->fail_with_message);
	else if (r && r->fail_with_code != 0)
		vpp_grpc_call_finish(call, VPP_GRPC_UNKNOWN, r->fail_with_message);
	else
		vpp_grpc_call_finish(call, VPP_GRPC_OK, NULL);
}

/* ---- Unary ---- */

static void unary_answer(echo_state *s)
{
	vpp_grpc_call *call = s->call;
	Vpp__V1__EchoRequest *r = s->req;
	if (r->fail_with_code != 0) {
		finish_with(call, r);
		return;
	}
	Vpp__V1__EchoResponse resp = VPP__V1__ECHO_RESPONSE__INIT;
	resp.message = r->message;
	resp.payload = r->payload;
	size_t n = vpp_grpc_call_metadata_count(call), k = 0;
	char **md = calloc(n ? n : 1, sizeof(char *));
	for (size_t i = 0; md && i < n; i++) {
		vpp_grpc_md e = vpp_grpc_call_metadata_at(call, i);
		if (strncmp(e.key, "x-", 2) != 0)
			continue;
		size_t l = strlen(e.key) + strlen(e.value) + 2;
		if ((md[k] = malloc(l)))
			snprintf(md[k++], l, "%s=%s", e.key, e.value);
	}
	if (md)
		qsort(md, k, sizeof(char *), cmp_str);
	resp.n_metadata = k;
	resp.metadata = md;
	const char *peer = vpp_grpc_call_peer_identity(call);
	resp.peer_identity = (char *)(peer ? peer : "");
	send_resp(call, &resp, NULL, false);
	for (size_t i = 0; i < k; i++)
		free(md[i]);
	free(md);
	vpp_grpc_call_finish(call, VPP_GRPC_OK, NULL);
}

static void on_unary_timer(uv_timer_t *t)
{
	echo_state *s = t->data;
	if (s->call)
		unary_answer(s);
}

static void on_unary(vpp_grpc_call *call, const uint8_t *data, size_t len)
{
	Vpp__V1__EchoRequest *r = parse(call, data, len);
	if (!r)
		return;
	echo_state *s = state_new(call);
	if (!s) {
		vpp__v1__echo_request__free_unpacked(r, NULL);
		vpp_grpc_call_finish(call, VPP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	s->req = r;
	start_headers(call);
	if (r->delay_ms) {
		uv_timer_init(vpp_grpc_call_loop(call), &s->timer);
		s->timer.data = s;
		s->timer_used = true;
		uv_timer_start(&s->timer, on_unary_timer, r->delay_ms, 0);
		return;
	}
	unary_answer(s);
}

/* ---- ServerStream ---- */

static void stream_next(echo_state *s);

static void on_stream_timer(uv_timer_t *t)
{
	echo_state *s = t->data;
	if (s->call)
		stream_next(s);
}

static void stream_send_one(echo_state *s)
{
	Vpp__V1__EchoRequest *r = s->req;
	Vpp__V1__EchoResponse resp = VPP__V1__ECHO_RESPONSE__INIT;
	resp.message = r->message;
	resp.index = s->index;
	uint8_t *payload = malloc(r->response_size ? r->response_size : 1);
	if (!payload) {
		vpp_grpc_call_finish(s->call, VPP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	for (uint32_t i = 0; i < r->response_size; i++)
		payload[i] = (uint8_t)(i & 0xff);
	resp.payload.data = payload;
	resp.payload.len = r->response_size;
	int rv = send_resp(s->call, &resp, NULL, false);
	free(payload);
	if (rv == 0)
		s->index++;
	else if (rv != VPP_EFULL)
		vpp_grpc_call_finish(s->call, VPP_GRPC_INTERNAL, "send failed");
	/* On VPP_EFULL on_writable calls stream_next again. */
}

static void stream_next(echo_state *s)
{
	while (s->call && s->index < s->req->count) {
		if (s->req->delay_ms && s->index > 0 && !s->timer_used) {
			uv_timer_init(vpp_grpc_call_loop(s->call), &s->timer);
			s->timer.data = s;
			s->timer_used = true;
		}
		size_t before = s->index;
		stream_send_one(s);
		if (s->index == before)
			return; /* full or failed */
		if (s->req->delay_ms && s->index < s->req->count) {
			if (!s->timer_used) {
				uv_timer_init(vpp_grpc_call_loop(s->call), &s->timer);
				s->timer.data = s;
				s->timer_used = true;
			}
			uv_timer_start(&s->timer, on_stream_timer, s->req->delay_ms, 0);
			return;
		}
	}
	if (s->call && s->index >= s->req->count)
		finish_with(s->call, s->req);
}

static void on_stream_writable(vpp_grpc_call *call)
{
	echo_state *s = vpp_grpc_call_data(call);
	if (s && s->req && !(s->timer_used && uv_is_active((uv_handle_t *)&s->timer)))
		stream_next(s);
}

static void on_server_stream(vpp_grpc_call *call, const uint8_t *data, size_t len)
{
	Vpp__V1__EchoRequest *r = parse(call, data, len);
	if (!r)
		return;
	echo_state *s = state_new(call);
	if (!s) {
		vpp__v1__echo_request__free_unpacked(r, NULL);
		vpp_grpc_call_finish(call, VPP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	s->req = r;
	start_headers(call);
	stream_next(s);
}

/* ---- ClientStream ---- */

static void on_cs_start(vpp_grpc_call *call, void *ud)
{
	if (!state_new(call))
		vpp_grpc_call_finish(call, VPP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	else
		start_headers(call);
}

static void on_cs_message(vpp_grpc_call *call, const uint8_t *data, size_t len)
{
	echo_state *s = vpp_grpc_call_data(call);
	Vpp__V1__EchoRequest *r = parse(call, data, len);
	if (!r || !s) {
		if (r)
			vpp__v1__echo_request__free_unpacked(r, NULL);
		return;
	}
	s->count++;
	s->bytes += r->payload.len;
	free(s->last_message);
	s->last_message = strdup(r->message);
	if (r->fail_with_code != 0)
		finish_with(call, r);
	vpp__v1__echo_request__free_unpacked(r, NULL);
}

static void on_cs_half_close(vpp_grpc_call *call)
{
	echo_state *s = vpp_grpc_call_data(call);
	if (!s)
		return;
	Vpp__V1__EchoResponse resp = VPP__V1__ECHO_RESPONSE__INIT;
	resp.received_count = s->count;
	resp.received_bytes = s->bytes;
	resp.message = s->last_message ? s->last_message : "";
	send_resp(call, &resp, NULL, false);
	vpp_grpc_call_finish(call, VPP_GRPC_OK, NULL);
}

/* ---- Bidi ---- */

static void on_bidi_message(vpp_grpc_call *call, const uint8_t *data, size_t len)
{
	echo_state *s = vpp_grpc_call_data(call);
	Vpp__V1__EchoRequest *r = parse(call, data, len);
	if (!r || !s) {
		if (r)
			vpp__v1__echo_request__free_unpacked(r, NULL);
		return;
	}
	if (r->fail_with_code != 0) {
		finish_with(call, r);
		vpp__v1__echo_request__free_unpacked(r, NULL);
		return;
	}
	Vpp__V1__EchoResponse resp = VPP__V1__ECHO_RESPONSE__INIT;
	resp.message = r->message;
	resp.payload = r->payload;
	resp.index = s->index++;
	/* A client that does not read: hold this one response and stop
	 * reading (HTTP/2 flow control pushes back) until there is room. */
	if (send_resp(call, &resp, s, true) == VPP_EFULL)
		vpp_grpc_call_pause_recv(call, true);
	vpp__v1__echo_request__free_unpacked(r, NULL);
}

static void on_bidi_writable(vpp_grpc_call *call)
{
	echo_state *s = vpp_grpc_call_data(call);
	if (!s)
		return;
	while (s->held) {
		held *h = s->held;
		if (vpp_grpc_call_send(call, h->data, h->len) == VPP_EFULL)
			return;
		s->held = h->next;
		if (!s->held)
			s->held_tail = NULL;
		free(h);
	}
	if (s->finish_when_sent)
		vpp_grpc_call_finish(call, VPP_GRPC_OK, NULL);
	else
		vpp_grpc_call_pause_recv(call, false);
}

static void on_bidi_half_close(vpp_grpc_call *call)
{
	echo_state *s = vpp_grpc_call_data(call);
	if (s && s->held) {
		s->finish_when_sent = true; /* after the responses still waiting */
		return;
	}
	vpp_grpc_call_finish(call, VPP_GRPC_OK, NULL);
}

int vpp_echo_register(vpp_grpc_listener *l)
{
	const vpp_grpc_method methods[] = {
		{.path = "/vpp.v1.Echo/Unary", .on_request = on_unary, .on_done = on_done},
		{.path = "/vpp.v1.Echo/ServerStream",
		 .on_request = on_server_stream,
		 .on_writable = on_stream_writable,
		 .on_done = on_done},
		{.path = "/vpp.v1.Echo/ClientStream",
		 .on_start = on_cs_start,
		 .on_message = on_cs_message,
		 .on_half_close = on_cs_half_close,
		 .on_done = on_done},
		{.path = "/vpp.v1.Echo/Bidi",
		 .on_start = on_cs_start,
		 .on_message = on_bidi_message,
		 .on_half_close = on_bidi_half_close,
		 .on_writable = on_bidi_writable,
		 .on_done = on_done},
	};
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		vpp_grpc_method m = methods[i];
		m.request = &vpp__v1__echo_request__descriptor;
		int rv = vpp_grpc_listener_add_method(l, &m);
		if (rv != 0)
			return rv;
	}
	return 0;
}
