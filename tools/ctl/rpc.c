/* vppctl's connection: the project's gRPC client on a private libuv loop,
 * each call run to completion before the next (a CLI does one thing at a
 * time). Sends `authorization: Bearer TOKEN` on every call when a token is
 * set. */
#include "ctl_int.h"
#include "vpp/error.h"
#include "vpp/grpc.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <uv.h>

struct vpp__ctl_client {
	uv_loop_t loop;
	uv_timer_t tick; /* wakes the loop so run_until() sees its flag */
	vpp_grpc_tls *tls;
	vpp_grpc_conn *conn;
	const vpp__ctl_opts *o;
	bool closed; /* on_closed ran: |conn| is gone */
	int close_err;
	bool ready_seen;
	char auth[1100];
	vpp_grpc_md md[1];
	size_t nmd;
};

/* One call in flight. */
typedef struct {
	vpp__ctl_client *c;
	vpp__ctl_outcome *oc;
	bool done;
	bool ended_by_us;
	vpp_grpc_call *call;
	/* unary */
	uint8_t *resp;
	size_t resp_len;
	bool have_resp;
	/* streaming */
	int (*on_msg)(void *ud, const uint8_t *data, size_t len);
	void *ud;
} pending;

static volatile sig_atomic_t interrupted;

int64_t vpp__ctl_now_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void on_tick(uv_timer_t *t)
{
	vpp__ctl_client *c = t->data;
	if (!c->closed && c->conn && vpp_grpc_conn_is_ready(c->conn))
		c->ready_seen = true;
}

static void on_conn_closed(vpp_grpc_conn *conn, int err, void *ud)
{
	vpp__ctl_client *c = ud;
	c->closed = true;
	c->close_err = err;
	c->conn = NULL;
}

/* Runs the loop until |*flag| is set or |ms| pass (0: no limit). */
static void run_until(vpp__ctl_client *c, const bool *flag, uint64_t ms)
{
	uint64_t end = uv_now(&c->loop) + ms;
	while (!*flag && (ms == 0 || uv_now(&c->loop) < end)) {
		uv_run(&c->loop, UV_RUN_ONCE);
		on_tick(&c->tick);
	}
}

int vpp__ctl_client_new(const vpp__ctl_opts *o, vpp__ctl_client **ret)
{
	int rv;
	vpp__ctl_client *c = calloc(1, sizeof(*c));
	if (!c)
		return VPP_ENOMEM;
	c->o = o;
	if (uv_loop_init(&c->loop) != 0) {
		rv = VPP_EIO;
		goto fail_alloc;
	}
	uv_timer_init(&c->loop, &c->tick);
	c->tick.data = c;
	uv_timer_start(&c->tick, on_tick, 10, 10);
	if (!o->h2c && (rv = vpp_grpc_tls_client_new(o->ca, o->cert, o->key, &c->tls)) != 0)
		goto fail_loop;
	if (o->token) {
		snprintf(c->auth, sizeof(c->auth), "Bearer %s", o->token);
		c->md[0] = (vpp_grpc_md){"authorization", c->auth};
		c->nmd = 1;
	}
	vpp_grpc_client_opts co = {.host = o->host,
	                           .port = o->port,
	                           .authority = o->server_name,
	                           .tls = c->tls,
	                           .connect_timeout_ms = o->timeout_ms,
	                           .on_closed = on_conn_closed,
	                           .ud = c};
	if ((rv = vpp_grpc_conn_new(&c->loop, &co, &c->conn)) != 0)
		goto fail_tls;
	*ret = c;
	return 0;
fail_tls:
	vpp_grpc_tls_unref(c->tls);
fail_loop:
	uv_close((uv_handle_t *)&c->tick, NULL);
	uv_run(&c->loop, UV_RUN_DEFAULT);
	uv_loop_close(&c->loop);
fail_alloc:
	free(c);
	return rv;
}

void vpp__ctl_client_free(vpp__ctl_client *c)
{
	if (!c)
		return;
	if (!c->closed && c->conn) {
		vpp_grpc_conn_close(c->conn, false);
		run_until(c, &c->closed, 2000);
	}
	uv_close((uv_handle_t *)&c->tick, NULL);
	uv_run(&c->loop, UV_RUN_DEFAULT);
	uv_loop_close(&c->loop);
	vpp_grpc_tls_unref(c->tls);
	free(c);
}

static void on_headers(vpp_grpc_call *call)
{
	pending *p = vpp_grpc_call_data(call);
	p->c->ready_seen = true;
	p->oc->heard = true;
}

static void on_message(vpp_grpc_call *call, const uint8_t *data, size_t len)
{
	pending *p = vpp_grpc_call_data(call);
	p->c->ready_seen = true;
	if (p->on_msg) {
		if (!p->ended_by_us && p->on_msg(p->ud, data, len) != 0) {
			p->ended_by_us = true;
			vpp_grpc_call_cancel(call);
		}
		return;
	}
	if (p->have_resp)
		return; /* a unary call has one answer; ignore extras */
	p->resp = malloc(len ? len : 1);
	if (!p->resp)
		return;
	memcpy(p->resp, data, len);
	p->resp_len = len;
	p->have_resp = true;
}

static void on_status(vpp_grpc_call *call, vpp_grpc_status st, const char *msg)
{
	pending *p = vpp_grpc_call_data(call);
	vpp__ctl_client *c = p->c;
	if (!c->closed && c->conn && vpp_grpc_conn_is_ready(c->conn))
		c->ready_seen = true;
	p->oc->status = st;
	p->oc->answered = vpp_grpc_call_status_from_peer(call);
	snprintf(p->oc->message, sizeof(p->oc->message), "%s", msg ? msg : "");
	p->done = true;
	p->call = NULL;
}

static const vpp_grpc_client_cbs cbs = {on_headers, on_message, NULL, on_status};

/* Starts |path| with one request message and half-closes. */
static int start(vpp__ctl_client *c, pending *p, const char *path, const uint8_t *req, size_t len,
                 uint32_t timeout_ms)
{
	memset(p->oc, 0, sizeof(*p->oc));
	p->oc->tls = c->tls != NULL;
	if (c->closed || !c->conn) {
		p->oc->status = VPP_GRPC_UNAVAILABLE;
		p->oc->conn_err = c->close_err;
		p->oc->connected = c->ready_seen;
		return VPP_ECLOSED;
	}
	vpp_grpc_call *call;
	if (vpp_grpc_conn_call(c->conn, path, c->md, c->nmd, timeout_ms, &cbs, p, &call) != 0) {
		p->oc->status = VPP_GRPC_UNAVAILABLE;
		snprintf(p->oc->message, sizeof(p->oc->message), "cannot start a call");
		p->oc->connected = c->ready_seen;
		return VPP_ECLOSED;
	}
	p->call = call;
	if (vpp_grpc_call_send(call, req, len) != 0 || vpp_grpc_call_close_send(call) != 0)
		vpp_grpc_call_cancel(call);
	return 0;
}

/* Fills the connection part of the outcome once the call is over. */
static void finish(vpp__ctl_client *c, pending *p)
{
	vpp__ctl_outcome *oc = p->oc;
	if (oc->status != VPP_GRPC_OK && !c->ready_seen) {
		/* The connection closes right after failing its calls: wait a
		 * moment for the reason. */
		run_until(c, &c->closed, 200);
		oc->conn_err = c->close_err;
	}
	oc->connected = c->ready_seen;
}

int vpp__ctl_unary(vpp__ctl_client *c, const char *path, const uint8_t *req, size_t len,
                   uint8_t **resp, size_t *resp_len, vpp__ctl_outcome *oc)
{
	pending p = {.c = c, .oc = oc};
	if (start(c, &p, path, req, len, c->o->timeout_ms) != 0)
		return VPP_EIO;
	run_until(c, &p.done, 0);
	finish(c, &p);
	if (oc->status == VPP_GRPC_OK && !p.have_resp) {
		oc->status = VPP_GRPC_INTERNAL;
		snprintf(oc->message, sizeof(oc->message), "the server sent no response message");
	}
	if (oc->status != VPP_GRPC_OK) {
		free(p.resp);
		return VPP_EIO;
	}
	*resp = p.resp;
	*resp_len = p.resp_len;
	return 0;
}

static void on_signal(int sig)
{
	interrupted = 1;
}

int vpp__ctl_stream(vpp__ctl_client *c, const char *path, const uint8_t *req, size_t len,
                    int (*on_msg)(void *ud, const uint8_t *data, size_t len), void *ud,
                    vpp__ctl_outcome *oc)
{
	pending p = {.c = c, .oc = oc, .on_msg = on_msg, .ud = ud};
	/* A plain handler (not uv_signal): it only sets a flag that the 10 ms
	 * tick lets run_until's loop notice. */
	struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	interrupted = 0;
	int rv = start(c, &p, path, req, len, 0);
	if (rv == 0) {
		/* Connecting is bounded by --timeout even without a deadline. */
		uint64_t t0 = uv_now(&c->loop);
		while (!p.done) {
			uv_run(&c->loop, UV_RUN_ONCE);
			on_tick(&c->tick);
			if (interrupted && p.call && !p.ended_by_us) {
				p.ended_by_us = true;
				vpp_grpc_call_cancel(p.call);
			}
			if (!c->ready_seen && p.call && !p.ended_by_us &&
			    uv_now(&c->loop) - t0 > c->o->timeout_ms) {
				vpp_grpc_call_cancel(p.call);
				run_until(c, &p.done, 1000);
				oc->status = VPP_GRPC_DEADLINE_EXCEEDED;
				break;
			}
		}
		finish(c, &p);
	}
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	if (rv != 0)
		return VPP_EIO;
	if (p.ended_by_us && oc->status == VPP_GRPC_CANCELLED) {
		oc->status = VPP_GRPC_OK;
		oc->message[0] = 0;
	}
	return oc->status == VPP_GRPC_OK ? 0 : VPP_EIO;
}
