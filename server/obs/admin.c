/* Admin HTTP endpoint: one thread, one libuv loop, one request at a time per
 * connection. See include/vpp/admin.h for what it serves and its limits. */
#include "vpp/admin.h"
#include "admin_int.h"
#include "vpp/error.h"
#include "vpp/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* After a response that ends the connection, unread input is drained for
 * this long so the close does not turn into a reset that eats the response. */
#define LINGER_MS 1000

enum { PATH_METRICS, PATH_HEALTHZ, PATH_READYZ, PATH_OTHER, NPATHS };
static const char *const path_names[NPATHS] = {"/metrics", "/healthz", "/readyz", "other"};
static const int codes[] = {200, 400, 404, 405, 408, 503};
#define NCODES (sizeof(codes) / sizeof(codes[0]))

typedef struct conn conn;

struct vpp_admin {
	uv_loop_t loop;
	uv_tcp_t listener;
	uv_async_t stop;
	uv_thread_t thread;
	int port;
	vpp_admin_ready_fn ready;
	void *ud;
	conn *conns; /* open connections, for shutdown */
	int nconns;
	/* Looked up on first use, from the admin thread only. */
	vpp_counter *requests[NPATHS][NCODES];
	vpp_gauge *connections;
	vpp_counter *rejected;
};

enum conn_state {
	CONN_READING,  /* waiting for (the rest of) a request */
	CONN_WRITING,  /* a response is being written; reading is paused */
	CONN_LINGERING /* response sent, write side shut: discarding input */
};

struct conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_write_t wreq;
	uv_shutdown_t sreq;
	vpp_admin *admin;
	conn *prev, *next;
	enum conn_state state;
	int closing;
	int handles_open; /* freed when both tcp and timer are closed */
	int close_after;  /* close once the response is written */
	char head[256];
	char *body; /* malloc'd, or NULL when |static_body| is used */
	const char *static_body;
	size_t len;
	char buf[VPP_ADMIN_MAX_REQUEST];
};

static void count_request(vpp_admin *a, int path, int code)
{
	size_t ci;
	for (ci = 0; ci < NCODES; ci++)
		if (codes[ci] == code)
			break;
	if (ci == NCODES)
		return;
	vpp_counter **slot = &a->requests[path][ci];
	if (!*slot) {
		char labels[64];
		snprintf(labels, sizeof(labels), "path=\"%s\",code=\"%d\"", path_names[path], code);
		*slot = vpp_counter_get("vpp_admin_requests_total", labels,
					"Admin HTTP requests by path and status code");
	}
	if (*slot)
		vpp_counter_inc(*slot);
}

static void on_handle_closed(uv_handle_t *h)
{
	conn *c = h->data;
	if (--c->handles_open == 0) {
		free(c->body);
		free(c);
	}
}

static void conn_close(conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	vpp_admin *a = c->admin;
	if (c->prev)
		c->prev->next = c->next;
	else
		a->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	a->nconns--;
	if (a->connections)
		vpp_gauge_add(a->connections, -1);
	uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_timeout(uv_timer_t *t);
static void process(conn *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_shutdown(uv_shutdown_t *req, int status)
{
	conn *c = req->data;
	if (c->closing)
		return;
	if (status != 0) {
		conn_close(c);
		return;
	}
	c->state = CONN_LINGERING;
	c->len = 0;
	uv_timer_start(&c->timer, on_timeout, LINGER_MS, 0);
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
		conn_close(c);
}

static void on_write(uv_write_t *req, int status)
{
	conn *c = req->data;
	free(c->body);
	c->body = NULL;
	if (c->closing)
		return;
	if (status != 0) {
		conn_close(c);
		return;
	}
	if (c->close_after) {
		c->sreq.data = c;
		if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
			conn_close(c);
		return;
	}
	/* The next request must arrive within the timeout of this response. */
	c->state = CONN_READING;
	uv_timer_start(&c->timer, on_timeout, VPP_ADMIN_TIMEOUT_MS, 0);
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
		conn_close(c);
		return;
	}
	process(c); /* a pipelined request may already be buffered */
}

static const char *reason_phrase(int code)
{
	switch (code) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 503:
		return "Service Unavailable";
	default:
		return "Internal Server Error";
	}
}

/* Sends one response. Takes ownership of |body| (malloc'd, may be NULL when
 * |static_body| is given), even on failure. */
static void respond(conn *c, int path, int code, const char *ctype, char *body,
		    const char *static_body, size_t blen, int close_after)
{
	count_request(c->admin, path, code);
	c->close_after = close_after;
	int n = snprintf(c->head, sizeof(c->head),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Cache-Control: no-store\r\n%sConnection: %s\r\n\r\n",
			 code, reason_phrase(code), ctype, blen,
			 code == 405 ? "Allow: GET\r\n" : "", close_after ? "close" : "keep-alive");
	c->body = body;
	uv_buf_t bufs[2] = {
		uv_buf_init(c->head, (unsigned)n),
		uv_buf_init(body ? body : (char *)static_body, (unsigned)blen),
	};
	c->state = CONN_WRITING;
	uv_read_stop((uv_stream_t *)&c->tcp);
	/* A client that does not read its response gets the same deadline as
	 * one that does not send its request. */
	uv_timer_start(&c->timer, on_timeout, VPP_ADMIN_TIMEOUT_MS, 0);
	c->wreq.data = c;
	if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, blen ? 2 : 1, on_write) != 0) {
		free(c->body);
		c->body = NULL;
		conn_close(c);
	}
}

static void respond_text(conn *c, int path, int code, const char *text, int close_after)
{
	respond(c, path, code, "text/plain; charset=utf-8", NULL, text, strlen(text), close_after);
}

static int path_is(const vpp__http_req *r, const char *p)
{
	return r->path_len == strlen(p) && memcmp(r->path, p, r->path_len) == 0;
}

static void handle(conn *c, const vpp__http_req *r)
{
	vpp_admin *a = c->admin;
	/* A body is never expected; rather than parse it, end the connection. */
	int close_after = !r->keep_alive || r->has_body;
	int path = PATH_OTHER;
	if (path_is(r, "/metrics"))
		path = PATH_METRICS;
	else if (path_is(r, "/healthz"))
		path = PATH_HEALTHZ;
	else if (path_is(r, "/readyz"))
		path = PATH_READYZ;

	if (r->method_len != 3 || memcmp(r->method, "GET", 3) != 0) {
		respond_text(c, path, 405, "method not allowed\n", close_after);
		return;
	}
	switch (path) {
	case PATH_METRICS: {
		char *out;
		size_t len;
		vpp__process_metrics_update();
		if (vpp_metrics_render(&out, &len) != 0) {
			respond_text(c, path, 503, "out of memory\n", 1);
			return;
		}
		respond(c, path, 200, "text/plain; version=0.0.4; charset=utf-8", out, NULL, len,
			close_after);
		return;
	}
	case PATH_HEALTHZ:
		respond_text(c, path, 200, "ok\n", close_after);
		return;
	case PATH_READYZ: {
		char why[256] = "";
		int ready = a->ready ? a->ready(a->ud, why, sizeof(why) - 1) : 1;
		if (ready == 1) {
			respond_text(c, path, 200, "ready\n", close_after);
			return;
		}
		int code = ready == VPP_ADMIN_DRAINING ? 404 : 503;
		why[sizeof(why) - 1] = 0;
		size_t wl = strlen(why);
		char *body = malloc(wl + 16);
		if (!body) {
			respond_text(c, path, code, "not ready\n", close_after);
			return;
		}
		int n = snprintf(body, wl + 16, "%s: %s\n", code == 404 ? "draining" : "not ready",
				 wl ? why : "unknown");
		respond(c, path, code, "text/plain; charset=utf-8", body, NULL, (size_t)n,
			close_after);
		return;
	}
	default:
		respond_text(c, path, 404, "not found\n", close_after);
		return;
	}
}

/* Serves the request at the start of the buffer, if complete. */
static void process(conn *c)
{
	if (c->closing || c->state != CONN_READING || c->len == 0)
		return;
	vpp__http_req r;
	int rv = vpp__http_parse(c->buf, c->len, sizeof(c->buf), &r);
	if (rv == VPP_EAGAIN)
		return;
	if (rv != 0) {
		respond_text(c, PATH_OTHER, 400, "bad request\n", 1);
		return;
	}
	handle(c, &r);
	/* The parsed head is no longer referenced once handle() returns. */
	memmove(c->buf, c->buf + r.len, c->len - r.len);
	c->len -= r.len;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	conn *c = h->data;
	if (c->state == CONN_LINGERING)
		*buf = uv_buf_init(c->buf, sizeof(c->buf));
	else
		*buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	conn *c = s->data;
	if (c->closing)
		return;
	if (nread < 0) {
		conn_close(c);
		return;
	}
	if (c->state == CONN_LINGERING || nread == 0)
		return;
	c->len += (size_t)nread;
	process(c);
}

static void on_timeout(uv_timer_t *t)
{
	conn *c = t->data;
	if (c->state == CONN_READING && c->len > 0)
		respond_text(c, PATH_OTHER, 408, "request timeout\n", 1);
	else
		conn_close(c);
}

static void on_reject_closed(uv_handle_t *h)
{
	free(h);
}

static void on_connection(uv_stream_t *server, int status)
{
	vpp_admin *a = server->data;
	if (status != 0)
		return;
	if (a->nconns >= VPP_ADMIN_MAX_CONNS) {
		/* Accept and close at once: the client sees a closed connection
		 * instead of waiting in the backlog. */
		uv_tcp_t *t = malloc(sizeof(*t));
		if (!t)
			return;
		uv_tcp_init(&a->loop, t);
		uv_accept(server, (uv_stream_t *)t);
		uv_close((uv_handle_t *)t, on_reject_closed);
		if (!a->rejected)
			a->rejected = vpp_counter_get("vpp_admin_connections_rejected_total", NULL,
						      "Admin connections closed at once because "
						      "too many were open");
		if (a->rejected)
			vpp_counter_inc(a->rejected);
		return;
	}
	conn *c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->admin = a;
	uv_tcp_init(&a->loop, &c->tcp);
	uv_timer_init(&a->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->handles_open = 2;
	c->next = a->conns;
	if (a->conns)
		a->conns->prev = c;
	a->conns = c;
	a->nconns++;
	if (!a->connections)
		a->connections = vpp_gauge_get("vpp_admin_connections", NULL,
					       "Open admin HTTP connections");
	if (a->connections)
		vpp_gauge_add(a->connections, 1);
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	uv_timer_start(&c->timer, on_timeout, VPP_ADMIN_TIMEOUT_MS, 0);
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
		conn_close(c);
}

static void on_stop(uv_async_t *h)
{
	vpp_admin *a = h->data;
	while (a->conns)
		conn_close(a->conns);
	uv_close((uv_handle_t *)&a->listener, NULL);
	uv_close((uv_handle_t *)&a->stop, NULL);
}

static void run(void *arg)
{
	vpp_admin *a = arg;
	uv_run(&a->loop, UV_RUN_DEFAULT);
}

static int resolve(const char *addr, int port, struct sockaddr_storage *ss)
{
	if (strcmp(addr, "localhost") == 0)
		addr = "127.0.0.1";
	if (uv_ip4_addr(addr, port, (struct sockaddr_in *)ss) == 0)
		return 0;
	if (uv_ip6_addr(addr, port, (struct sockaddr_in6 *)ss) == 0)
		return 0;
	return VPP_EINVAL;
}

/* Closes the handles opened so far and runs the loop until they are gone, so
 * the loop can be closed on a failed start. */
static void unwind_loop(vpp_admin *a)
{
	uv_close((uv_handle_t *)&a->listener, NULL);
	uv_close((uv_handle_t *)&a->stop, NULL);
	uv_run(&a->loop, UV_RUN_DEFAULT);
	uv_loop_close(&a->loop);
}

int vpp_admin_start(const char *addr, int port, vpp_admin_ready_fn ready, void *ud,
		    vpp_admin **ret)
{
	struct sockaddr_storage ss;
	int rv;
	if (!addr || port < 0 || port > 65535 || resolve(addr, port, &ss) != 0)
		return VPP_EINVAL;
	vpp_admin *a = calloc(1, sizeof(*a));
	if (!a)
		return VPP_ENOMEM;
	a->ready = ready;
	a->ud = ud;
	if (uv_loop_init(&a->loop) != 0) {
		rv = VPP_EIO;
		goto fail_alloc;
	}
	/* The handles are set up here and only then handed to the thread: the
	 * caller learns about a port in use synchronously. */
	uv_tcp_init(&a->loop, &a->listener);
	a->listener.data = a;
	uv_async_init(&a->loop, &a->stop, on_stop);
	a->stop.data = a;
	if (uv_tcp_bind(&a->listener, (const struct sockaddr *)&ss, 0) != 0 ||
	    uv_listen((uv_stream_t *)&a->listener, 128, on_connection) != 0) {
		rv = VPP_EIO;
		goto fail_loop;
	}
	struct sockaddr_storage bound;
	int blen = sizeof(bound);
	if (uv_tcp_getsockname(&a->listener, (struct sockaddr *)&bound, &blen) != 0) {
		rv = VPP_EIO;
		goto fail_loop;
	}
	a->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
						    : ((struct sockaddr_in *)&bound)->sin_port);
	if (uv_thread_create(&a->thread, run, a) != 0) {
		rv = VPP_EIO;
		goto fail_loop;
	}
	*ret = a;
	return 0;

fail_loop:
	unwind_loop(a);
fail_alloc:
	free(a);
	return rv;
}

int vpp_admin_port(const vpp_admin *a)
{
	return a->port;
}

void vpp_admin_stop(vpp_admin *a)
{
	if (!a)
		return;
	uv_async_send(&a->stop);
	uv_thread_join(&a->thread);
	uv_loop_close(&a->loop);
	free(a);
}
