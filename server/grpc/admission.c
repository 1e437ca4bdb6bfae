/* Admission control of new server connections, per listener and loop.
 *
 * A reconnect storm must neither starve the sessions already connected nor
 * slow every handshake down at once (all in progress together, all late,
 * all timing out and retrying). So new connections start their handshake
 * in arrival order, at most VPP__HANDSHAKES_IN_FLIGHT at a time per loop
 * and, when a rate is set, no faster than it. The others wait, accepted but
 * unread (no TLS work), up to two seconds' worth of the rate and at most
 * VPP__ADMISSION_MAX_WAIT_MS each; beyond that they are refused and the
 * devices back off. A waiting connection whose client gave up meanwhile
 * (closed it) is dropped when its turn comes, without TLS work: so waiting
 * can be long, and a client's patience is not spent on a refusal followed
 * by an ever longer backoff.
 *
 * A handshake stops counting as in flight when it completes, when its
 * connection closes, or after VPP__HANDSHAKE_SLOT_MS: a client that stalls
 * its handshake does not hold a turn for long. */
#include "grpc_int.h"
#include "vpp/error.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

enum { ADM_NONE, ADM_WAITING, ADM_HANDSHAKE };

static void q_push(vpp__conn_queue *q, vpp_grpc_conn *c)
{
	c->adm_next = NULL;
	c->adm_prev = q->tail;
	if (q->tail)
		q->tail->adm_next = c;
	else
		q->head = c;
	q->tail = c;
	q->n++;
}

static void q_remove(vpp__conn_queue *q, vpp_grpc_conn *c)
{
	if (c->adm_prev)
		c->adm_prev->adm_next = c->adm_next;
	else
		q->head = c->adm_next;
	if (c->adm_next)
		c->adm_next->adm_prev = c->adm_prev;
	else
		q->tail = c->adm_prev;
	c->adm_prev = c->adm_next = NULL;
	q->n--;
}

/* Token bucket with a burst of a quarter second's worth. */
static bool take_token(vpp__admission *a)
{
	if (a->rate <= 0)
		return true;
	double burst = a->rate / 4 > 1 ? a->rate / 4 : 1;
	uint64_t now = uv_now(a->timer.loop);
	if (a->tokens_at == 0)
		a->tokens = burst;
	else
		a->tokens += (double)(now - a->tokens_at) * a->rate / 1000.0;
	a->tokens_at = now;
	if (a->tokens > burst)
		a->tokens = burst;
	if (a->tokens < 1)
		return false;
	a->tokens -= 1;
	return true;
}

static bool may_start(vpp__admission *a)
{
	return a->handshaking.n < VPP__HANDSHAKES_IN_FLIGHT && take_token(a);
}

static void start(vpp__admission *a, vpp_grpc_conn *c)
{
	if (a->tls) {
		c->adm = a;
		c->adm_state = ADM_HANDSHAKE;
		c->adm_ms = uv_now(a->timer.loop);
		q_push(&a->handshaking, c);
	} else {
		c->adm = NULL;
		c->adm_state = ADM_NONE;
	}
	a->start(c);
}

/* Refuses the connections that waited too long: their clients may have
 * given up, and a handshake for nobody costs as much as a real one. */
static void drop_stale(vpp__admission *a)
{
	uint64_t now = uv_now(a->timer.loop);
	while (a->waiting.head && a->waiting.head->adm_ms + VPP__ADMISSION_MAX_WAIT_MS <= now) {
		vpp_grpc_conn *c = a->waiting.head;
		q_remove(&a->waiting, c);
		c->adm_state = ADM_NONE;
		c->adm = NULL;
		vpp_counter_inc(c->met->rejected[R_ADMISSION]);
		vpp__conn_close(c, VPP_EAGAIN);
	}
}

/* True when the client has closed its end (its FIN or RST arrived). */
static bool client_gone(vpp_grpc_conn *c)
{
	uv_os_fd_t fd;
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0 ||
	    getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
		return false;
	return ti.tcpi_state == TCP_CLOSE_WAIT || ti.tcpi_state == TCP_CLOSE;
}

static void release_waiting(vpp__admission *a)
{
	drop_stale(a);
	while (a->waiting.head && !a->closed) {
		vpp_grpc_conn *c = a->waiting.head;
		/* Before the token: a client that left does not spend one. */
		if (client_gone(c)) {
			q_remove(&a->waiting, c);
			c->adm_state = ADM_NONE;
			c->adm = NULL;
			vpp_counter_inc(c->met->rejected[R_CLIENT_GONE]);
			vpp__conn_close(c, 0);
			continue;
		}
		if (!may_start(a))
			break;
		q_remove(&a->waiting, c);
		start(a, c);
	}
}

static void on_timer(uv_timer_t *t)
{
	vpp__admission *a = t->data;
	uint64_t now = uv_now(t->loop);
	while (a->handshaking.head && a->handshaking.head->adm_ms + VPP__HANDSHAKE_SLOT_MS <= now) {
		vpp_grpc_conn *c = a->handshaking.head;
		q_remove(&a->handshaking, c);
		c->adm_state = ADM_NONE;
	}
	release_waiting(a);
	if (!a->waiting.head && !a->handshaking.head)
		uv_timer_stop(t);
}

static void arm(vpp__admission *a)
{
	if (uv_is_active((uv_handle_t *)&a->timer) || a->closed)
		return;
	/* About one token per firing when rate-limited; otherwise often
	 * enough to expire stalled handshakes. */
	uint64_t every = a->rate > 0 ? (uint64_t)(1000.0 / a->rate) : 50;
	every = every < 2 ? 2 : every > 50 ? 50 : every;
	uv_timer_start(&a->timer, on_timer, every, every);
}

void vpp__admission_init(vpp__admission *a, uv_loop_t *loop, double rate_per_s, bool tls,
			 void (*start_fn)(vpp_grpc_conn *c))
{
	*a = (vpp__admission){.rate = rate_per_s, .tls = tls, .start = start_fn};
	uv_timer_init(loop, &a->timer);
	a->timer.data = a;
	/* Two seconds' worth of the rate may wait; without a rate, a fixed
	 * number. */
	double w = rate_per_s > 0 ? rate_per_s * 2 : 1024;
	a->wait_limit = w < 16 ? 16 : (uint32_t)w;
}

bool vpp__admission_offer(vpp__admission *a, vpp_grpc_conn *c)
{
	if (a->closed)
		return false;
	if (!a->waiting.head && may_start(a)) {
		start(a, c);
		arm(a);
		return true;
	}
	if (a->waiting.n >= a->wait_limit)
		return false;
	c->adm = a;
	c->adm_state = ADM_WAITING;
	c->adm_ms = uv_now(a->timer.loop);
	q_push(&a->waiting, c);
	arm(a);
	return true;
}

void vpp__admission_done(vpp_grpc_conn *c)
{
	vpp__admission *a = c->adm;
	if (!a)
		return;
	if (c->adm_state == ADM_WAITING)
		q_remove(&a->waiting, c);
	else if (c->adm_state == ADM_HANDSHAKE)
		q_remove(&a->handshaking, c);
	c->adm_state = ADM_NONE;
	c->adm = NULL;
	release_waiting(a);
}

void vpp__admission_close(vpp__admission *a)
{
	a->closed = true;
	uv_close((uv_handle_t *)&a->timer, NULL);
}
