/* A non-blocking libpq connection driven by the store's libuv loop: connects
 * with PQconnectStart/PQconnectPoll under a uv_poll on PQsocket, reconnects
 * with exponential backoff and jitter, and hands socket events to its owner
 * (copyjob.c or pipe.c) once connected. */
#include "store_int.h"
#include "vpp/error.h"

#include <stdlib.h>
#include <string.h>

static void on_poll_closed(uv_handle_t *h)
{
	free(h);
}

static void poll_close(vpp__pgc *c)
{
	if (c->poll) {
		uv_close((uv_handle_t *)c->poll, on_poll_closed);
		c->poll = NULL;
	}
	c->fd = -1;
	c->events = 0;
}

static void on_poll(uv_poll_t *h, int status, int events);

/* Watches |events| on the connection's current socket, re-creating the poll
 * handle when libpq switched sockets (another host, SSL fallback). */
static int poll_set(vpp__pgc *c, int events)
{
	int fd = PQsocket(c->conn);
	if (fd < 0)
		return VPP_EIO;
	if (c->poll && c->fd != fd)
		poll_close(c);
	if (!c->poll) {
		if (!(c->poll = malloc(sizeof(*c->poll))))
			return VPP_ENOMEM;
		if (uv_poll_init(&c->s->loop, c->poll, fd) != 0) {
			free(c->poll);
			c->poll = NULL;
			return VPP_EIO;
		}
		c->poll->data = c;
		c->fd = fd;
		c->events = 0;
	}
	if (events != c->events) {
		if (uv_poll_start(c->poll, events, on_poll) != 0)
			return VPP_EIO;
		c->events = events;
	}
	return 0;
}

static void on_retry(uv_timer_t *t)
{
	vpp__pgc_connect(t->data);
}

static void quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

void vpp__pgc_init(vpp_store *s, vpp__pgc *c, const char *name)
{
	memset(c, 0, sizeof(*c));
	c->s = s;
	c->name = name;
	c->fd = -1;
	c->backoff_ms = s->o.reconnect_min_ms;
	uv_timer_init(&s->loop, &c->retry);
	c->retry.data = c;
	snprintf(c->err, sizeof(c->err), "%s connection: not connected yet", name);
}

static void set_err(vpp__pgc *c, const char *why)
{
	snprintf(c->err, sizeof(c->err), "%s connection: %s", c->name, why);
	c->err[strcspn(c->err, "\n")] = 0;
}

static void drop(vpp__pgc *c)
{
	poll_close(c);
	if (c->conn) {
		PQfinish(c->conn);
		c->conn = NULL;
	}
	c->state = VPP__PGC_DOWN;
}

void vpp__pgc_fail(vpp__pgc *c, const char *why)
{
	vpp__pgc_state was = c->state;
	set_err(c, why && *why ? why : "connection lost");
	if (c->on_lost && was != VPP__PGC_DOWN)
		c->on_lost(c);
	drop(c);
	if (was != VPP__PGC_DOWN)
		vpp_counter_inc(vpp__sm.db_errors);
	vpp__store_update_ready(c->s);
	if (atomic_load(&c->s->stopping) && c->s->stop_started)
		return;
	/* Full jitter keeps a fleet of nodes from reconnecting in step. */
	uint64_t wait =
	    (uint64_t)c->backoff_ms / 2 + (uint64_t)rand() % ((uint64_t)c->backoff_ms / 2 + 1);
	uv_timer_start(&c->retry, on_retry, wait, 0);
	c->backoff_ms *= 2;
	if (c->backoff_ms > c->s->o.reconnect_max_ms)
		c->backoff_ms = c->s->o.reconnect_max_ms;
}

static void connect_step(vpp__pgc *c)
{
	switch (PQconnectPoll(c->conn)) {
	case PGRES_POLLING_READING:
		if (poll_set(c, UV_READABLE) != 0)
			vpp__pgc_fail(c, "cannot poll the socket");
		return;
	case PGRES_POLLING_WRITING:
		if (poll_set(c, UV_WRITABLE) != 0)
			vpp__pgc_fail(c, "cannot poll the socket");
		return;
	case PGRES_POLLING_OK:
		break;
	default:
		vpp__pgc_fail(c, PQerrorMessage(c->conn));
		return;
	}
	if (PQsetnonblocking(c->conn, 1) != 0 || poll_set(c, UV_READABLE) != 0) {
		vpp__pgc_fail(c, "cannot switch to non-blocking mode");
		return;
	}
	PQsetNoticeProcessor(c->conn, quiet, NULL);
	c->state = VPP__PGC_SETUP;
	c->on_connected(c);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	vpp__pgc *c = h->data;
	if (status < 0)
		events = UV_READABLE | UV_WRITABLE; /* let libpq find the error */
	if (c->state == VPP__PGC_CONNECTING)
		connect_step(c);
	else if (c->state == VPP__PGC_SETUP || c->state == VPP__PGC_READY)
		c->on_io(c, events);
	vpp__store_pump(c->s);
}

void vpp__pgc_connect(vpp__pgc *c)
{
	if (c->state != VPP__PGC_DOWN)
		return;
	c->conn = PQconnectStart(c->s->conninfo);
	if (!c->conn) {
		c->state = VPP__PGC_CONNECTING;
		vpp__pgc_fail(c, "out of memory");
		return;
	}
	c->state = VPP__PGC_CONNECTING;
	if (PQstatus(c->conn) == CONNECTION_BAD) {
		vpp__pgc_fail(c, PQerrorMessage(c->conn));
		return;
	}
	if (poll_set(c, UV_WRITABLE) != 0)
		vpp__pgc_fail(c, "cannot poll the socket");
}

int vpp__pgc_flush(vpp__pgc *c)
{
	int r = PQflush(c->conn);
	if (r < 0) {
		vpp__pgc_fail(c, PQerrorMessage(c->conn));
		return -1;
	}
	if (poll_set(c, r == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE) != 0) {
		vpp__pgc_fail(c, "cannot poll the socket");
		return -1;
	}
	return 0;
}

void vpp__pgc_close(vpp__pgc *c)
{
	drop(c);
	uv_timer_stop(&c->retry);
	uv_close((uv_handle_t *)&c->retry, NULL);
}
