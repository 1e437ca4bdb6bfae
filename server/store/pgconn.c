/* A non-blocking libpq connection driven by the store's libuv loop: connects
 * with PQconnectStartParams/PQconnectPoll under a uv_poll on PQsocket,
 * reconnects with exponential backoff and jitter, and hands socket events to
 * its owner (copyjob.c or pipe.c) once connected. */
#include "store_int.h"
#include "vpp/error.h"

#include <stdlib.h>
#include <string.h>

/* Without these, a database host that vanishes (power loss, a partition)
 * leaves a connection waiting on the kernel's defaults: minutes to hours
 * for TCP, forever for a connect that gets no answer. The conninfo's own
 * values win: they come after these and override them. libpq does not
 * apply connect_timeout under PQconnectPoll: on_connect_deadline does. */
static const char *const default_keys[] = {"connect_timeout",  "keepalives",
                                           "keepalives_idle",  "keepalives_interval",
                                           "keepalives_count", "tcp_user_timeout"};
static const char *const default_values[] = {"10", "1", "30", "10", "3", "30000"};
#define NDEFAULTS (sizeof(default_keys) / sizeof(default_keys[0]))

/* Puts the defaults first in |keys| and |values|; returns how many. */
static size_t put_defaults(const char **keys, const char **values)
{
	size_t n = 0;
	for (size_t i = 0; i < NDEFAULTS; i++) {
		/* PGCONNECT_TIMEOUT is libpq's way to set it from outside. */
		if (i == 0 && getenv("PGCONNECT_TIMEOUT"))
			continue;
		keys[n] = default_keys[i];
		values[n++] = default_values[i];
	}
	return n;
}

/* Fills |keys| and |values| (room for NDEFAULTS + 2) for *ConnectParams
 * with expand_dbname: the defaults, then |conninfo| as an expanded dbname. */
static void conn_params(const char *conninfo, const char **keys, const char **values)
{
	size_t n = put_defaults(keys, values);
	keys[n] = "dbname";
	values[n++] = conninfo;
	keys[n] = values[n] = NULL;
}

/* Items in a libpq comma-separated list (host, hostaddr, port). */
static size_t list_len(const char *s)
{
	size_t n = 1;
	for (; *s; s++)
		n += *s == ',';
	return n;
}

/* |s|, a list of |n| items, rotated left by |k| items; malloc'd. */
static char *list_rotate(const char *s, size_t n, size_t k)
{
	size_t len = strlen(s);
	char *out = malloc(len + 2);
	if (!out)
		return NULL;
	const char *at = s;
	for (size_t i = 0; i < k % n; i++)
		at = strchr(at, ',') + 1;
	/* The tail from item k, a comma, then the head up to item k. */
	size_t tail = len - (size_t)(at - s);
	memcpy(out, at, tail);
	size_t m = tail;
	if (at != s) {
		out[m++] = ',';
		memcpy(out + m, s, (size_t)(at - s) - 1);
		m += (size_t)(at - s) - 1;
	}
	out[m] = 0;
	return out;
}

/* |conninfo| with its host list (and hostaddr and port lists, item by item)
 * rotated to start at the |first|-th host. libpq moves on to the next host
 * only when one fails; one that never answers holds every attempt until
 * the store's deadline, so each attempt after such a deadline starts at
 * the next host. Returns NULL (use |conninfo| as it is) when there is one
 * host, nothing to rotate, or the conninfo does not parse (libpq will say
 * why). */
static PGconn *start_rotated(const char *conninfo, unsigned first)
{
	if (first == 0)
		return NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	if (!opts)
		return NULL;
	size_t nopts = 0, hosts = 1;
	for (PQconninfoOption *o = opts; o->keyword; o++, nopts++)
		if (o->val && (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0) &&
		    list_len(o->val) > hosts)
			hosts = list_len(o->val);
	PGconn *conn = NULL;
	const char **keys = calloc(NDEFAULTS + nopts + 1, sizeof(*keys));
	const char **values = calloc(NDEFAULTS + nopts + 1, sizeof(*values));
	char *rotated[3] = {NULL, NULL, NULL};
	size_t nrot = 0, n = 0;
	if (hosts < 2 || !keys || !values)
		goto out;
	n = put_defaults(keys, values);
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (!o->val)
			continue;
		const char *v = o->val;
		if ((strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0 ||
		     strcmp(o->keyword, "port") == 0) &&
		    list_len(v) == hosts) {
			if (!(rotated[nrot] = list_rotate(v, hosts, first)))
				goto out;
			v = rotated[nrot++];
		}
		keys[n] = o->keyword;
		values[n++] = v;
	}
	keys[n] = values[n] = NULL;
	conn = PQconnectStartParams(keys, values, 0);
out:
	for (size_t i = 0; i < nrot; i++)
		free(rotated[i]);
	free(keys);
	free(values);
	PQconninfoFree(opts);
	return conn;
}

/* Whether item |i| of the comma-separated list |list| is |want|. */
static bool list_item_is(const char *list, size_t i, const char *want)
{
	for (; i > 0 && list; i--)
		if ((list = strchr(list, ',')))
			list++;
	if (!list)
		return false;
	size_t len = strcspn(list, ",");
	return strlen(want) == len && strncmp(list, want, len) == 0;
}

/* Which of |conninfo|'s hosts |conn| is at (its host, or hostaddr, and its
 * port); 0 when it cannot tell. */
static unsigned host_index(const char *conninfo, PGconn *conn)
{
	const char *host = PQhost(conn), *port = PQport(conn);
	PQconninfoOption *opts = host ? PQconninfoParse(conninfo, NULL) : NULL;
	if (!opts)
		return 0;
	const char *hosts = NULL, *addrs = NULL, *ports = NULL;
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (strcmp(o->keyword, "host") == 0)
			hosts = o->val;
		else if (strcmp(o->keyword, "hostaddr") == 0)
			addrs = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			ports = o->val;
	}
	const char *names = hosts && *hosts ? hosts : addrs;
	unsigned found = 0;
	size_t n = names ? list_len(names) : 0;
	bool per_host_ports = ports && n > 1 && list_len(ports) == n;
	/* An empty port item is the default port, which PQport names. */
	for (size_t i = 0; i < n; i++)
		if (list_item_is(names, i, host) &&
		    (!per_host_ports || !port || list_item_is(ports, i, port) ||
		     list_item_is(ports, i, ""))) {
			found = (unsigned)i;
			break;
		}
	PQconninfoFree(opts);
	return found;
}

PGconn *vpp__pg_connect_start(const char *conninfo, unsigned first_host)
{
	PGconn *conn = start_rotated(conninfo, first_host);
	if (conn)
		return conn;
	const char *keys[NDEFAULTS + 2], *values[NDEFAULTS + 2];
	conn_params(conninfo, keys, values);
	return PQconnectStartParams(keys, values, 1);
}

PGconn *vpp__pg_connect(const char *conninfo)
{
	const char *keys[NDEFAULTS + 2], *values[NDEFAULTS + 2];
	conn_params(conninfo, keys, values);
	return PQconnectdbParams(keys, values, 1);
}

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

/* libpq leaves connect_timeout to the application with PQconnectPoll: a
 * server that accepts the connection and never finishes its start-up (a
 * stuck postmaster, a pooler, a stalled TLS handshake) would keep the
 * store connecting forever, its writes neither sent nor journaled. So the
 * connection must be READY within connect_timeout (the conninfo's, else
 * ours; at least 2 s, as libpq has it), set-up queries included. */
static uint64_t connect_deadline_ms(PGconn *conn)
{
	long secs = 10;
	PQconninfoOption *opts = PQconninfo(conn);
	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		if (strcmp(o->keyword, "connect_timeout") == 0 && o->val && atol(o->val) > 0)
			secs = atol(o->val);
	PQconninfoFree(opts);
	if (secs < 2)
		secs = 2;
	return (uint64_t)secs * 1000;
}

static void on_connect_deadline(uv_timer_t *t)
{
	vpp__pgc *c = t->data;
	char why[320];
	if (c->state != VPP__PGC_CONNECTING && c->state != VPP__PGC_SETUP)
		return;
	const char *host = PQhost(c->conn);
	snprintf(why, sizeof(why), "the database%s%s did not complete the connection within %.0f s",
		 host && *host ? " at " : "", host && *host ? host : "", (double)c->deadline_ms / 1000.0);
	/* libpq did not get to the hosts after this one: the next attempt
	 * starts at the next. */
	c->first_host = host_index(c->s->conninfo, c->conn) + 1;
	vpp__pgc_fail(c, why);
	vpp__store_pump(c->s);
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
	c->hold_ms = s->o.reconnect_min_ms;
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
	c->held_until = 0;
}

/* Full jitter keeps a fleet of nodes from retrying in step. Doubles
 * |*backoff| up to the maximum. */
static uint64_t next_wait(vpp__pgc *c, int64_t *backoff)
{
	uint64_t wait = (uint64_t)*backoff / 2 + (uint64_t)rand() % ((uint64_t)*backoff / 2 + 1);
	*backoff *= 2;
	if (*backoff > c->s->o.reconnect_max_ms)
		*backoff = c->s->o.reconnect_max_ms;
	return wait;
}

void vpp__pgc_fail(vpp__pgc *c, const char *why)
{
	vpp__pgc_state was = c->state;
	/* Only a connection that stayed up resets the backoff: one that the
	 * database drops as soon as it is used keeps backing off. */
	if (was == VPP__PGC_READY &&
	    uv_now(&c->s->loop) - c->up_since >= (uint64_t)c->s->o.reconnect_max_ms)
		c->backoff_ms = c->s->o.reconnect_min_ms;
	set_err(c, why && *why ? why : "connection lost");
	if (c->on_lost && was != VPP__PGC_DOWN)
		c->on_lost(c);
	drop(c);
	if (was != VPP__PGC_DOWN)
		vpp_counter_inc(vpp__sm.db_errors);
	vpp__store_update_ready(c->s);
	if (atomic_load(&c->s->stopping) && c->s->stop_started)
		return;
	uv_timer_start(&c->retry, on_retry, next_wait(c, &c->backoff_ms), 0);
}

void vpp__pgc_ready(vpp__pgc *c)
{
	uv_timer_stop(&c->retry); /* the connect deadline */
	c->state = VPP__PGC_READY;
	c->up_since = uv_now(&c->s->loop);
	vpp__store_update_ready(c->s);
}

static void on_hold_end(uv_timer_t *t)
{
	vpp__pgc *c = t->data;
	vpp__store_pump(c->s);
}

void vpp__pgc_hold(vpp__pgc *c, const char *why)
{
	set_err(c, why && *why ? why : "refused by the database");
	vpp_counter_inc(vpp__sm.db_errors);
	uint64_t wait = next_wait(c, &c->hold_ms);
	c->held_until = uv_now(&c->s->loop) + wait;
	uv_timer_start(&c->retry, on_hold_end, wait, 0);
}

void vpp__pgc_ok(vpp__pgc *c)
{
	c->hold_ms = c->s->o.reconnect_min_ms;
}

bool vpp__pgc_usable(const vpp__pgc *c)
{
	return c->state == VPP__PGC_READY && uv_now(&c->s->loop) >= c->held_until;
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
	c->conn = vpp__pg_connect_start(c->s->conninfo, c->first_host);
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
	c->deadline_ms = connect_deadline_ms(c->conn);
	uv_timer_start(&c->retry, on_connect_deadline, c->deadline_ms, 0);
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
