/* Admission control of new server connections, per listener and loop.
 *
 * A reconnect storm must neither starve the sessions already connected nor
 * slow every handshake down at once (all in progress together, all late,
 * all timing out and retrying). So new connections start their handshake
 * at most VPP__HANDSHAKES_IN_FLIGHT at a time per loop and, when a rate is
 * set, no faster than it. The others wait, accepted but unread (no TLS
 * work), up to two seconds' worth of the rate and at most
 * VPP__ADMISSION_MAX_WAIT_MS each; beyond that they are refused and the
 * devices back off. A waiting connection whose client gave up meanwhile
 * (closed it) is dropped when its turn comes, without TLS work: so waiting
 * can be long, and a client's patience is not spent on a refusal followed
 * by an ever longer backoff.
 *
 * Turns go round the source addresses (an IPv4 address, an IPv6 /64) with
 * connections waiting, in arrival order within each: a host that opens
 * connections as fast as it can gets its share of the turns, not all of
 * them, and a fleet reconnecting from one address (a NAT, the emulator)
 * still gets every turn while it is alone. When the wait is full, a
 * newcomer from a smaller source takes the place of the newest connection
 * of the largest one, so a flood cannot keep the others out either.
 *
 * A handshake stops counting as in flight when it completes, when its
 * connection closes, or after VPP__HANDSHAKE_SLOT_MS: a client that stalls
 * its handshake does not hold a turn for long. */
#include "grpc_int.h"
#include "vpp/error.h"
#include "vpp/log.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

enum { ADM_NONE, ADM_WAITING, ADM_HANDSHAKE };

struct vpp__adm_source {
	uint64_t key;
	vpp__conn_queue q;		    /* its waiting connections, oldest first */
	vpp__adm_source *hnext;		    /* hash chain */
	vpp__adm_source *ring_prev, *ring_next; /* sources taking turns */
};

static vpp__conn_link *link_of(vpp_grpc_conn *c, bool by_source)
{
	return by_source ? &c->src_link : &c->adm_link;
}

static void q_push(vpp__conn_queue *q, vpp_grpc_conn *c, bool by_source)
{
	vpp__conn_link *l = link_of(c, by_source);
	l->next = NULL;
	l->prev = q->tail;
	if (q->tail)
		link_of(q->tail, by_source)->next = c;
	else
		q->head = c;
	q->tail = c;
	q->n++;
}

static void q_remove(vpp__conn_queue *q, vpp_grpc_conn *c, bool by_source)
{
	vpp__conn_link *l = link_of(c, by_source);
	if (l->prev)
		link_of(l->prev, by_source)->next = l->next;
	else
		q->head = l->next;
	if (l->next)
		link_of(l->next, by_source)->prev = l->prev;
	else
		q->tail = l->prev;
	l->prev = l->next = NULL;
	q->n--;
}

uint64_t vpp__admission_source_key(const struct sockaddr *sa)
{
	uint64_t key = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		return 0xffff000000000000ull | ntohl(in->sin_addr.s_addr);
	}
	if (sa->sa_family != AF_INET6)
		return 0;
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
	const uint8_t *b = in6->sin6_addr.s6_addr;
	if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
		return 0xffff000000000000ull | (uint64_t)b[12] << 24 | (uint64_t)b[13] << 16 |
		       (uint64_t)b[14] << 8 | b[15];
	/* ffff:: is multicast: no /64 of a real source collides with the
	 * IPv4 keys above. */
	for (int i = 0; i < 8; i++)
		key = key << 8 | b[i];
	return key;
}

static uint32_t bucket_of(const vpp__admission *a, uint64_t key)
{
	return (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & (a->nbuckets - 1);
}

static vpp__adm_source *source_find(const vpp__admission *a, uint64_t key)
{
	if (!a->nbuckets)
		return NULL;
	vpp__adm_source *s = a->buckets[bucket_of(a, key)];
	while (s && s->key != key)
		s = s->hnext;
	return s;
}

/* Doubles the table; without memory the chains only grow longer. */
static void grow(vpp__admission *a)
{
	uint32_t n = a->nbuckets ? a->nbuckets * 2 : 64;
	vpp__adm_source **b = calloc(n, sizeof(*b));
	if (!b)
		return;
	vpp__adm_source **old = a->buckets;
	uint32_t nold = a->nbuckets;
	a->buckets = b;
	a->nbuckets = n;
	for (uint32_t i = 0; i < nold; i++) {
		while (old[i]) {
			vpp__adm_source *s = old[i];
			old[i] = s->hnext;
			uint32_t h = bucket_of(a, s->key);
			s->hnext = b[h];
			b[h] = s;
		}
	}
	free(old);
}

/* The source |key|, added last to the ring of turns if new; NULL without
 * memory. */
static vpp__adm_source *source_get(vpp__admission *a, uint64_t key)
{
	vpp__adm_source *s = source_find(a, key);
	if (s)
		return s;
	if (a->nsources >= a->nbuckets)
		grow(a);
	if (!a->nbuckets || !(s = calloc(1, sizeof(*s))))
		return NULL;
	s->key = key;
	uint32_t h = bucket_of(a, key);
	s->hnext = a->buckets[h];
	a->buckets[h] = s;
	a->nsources++;
	if (a->turn) {
		s->ring_next = a->turn;
		s->ring_prev = a->turn->ring_prev;
		s->ring_prev->ring_next = s;
		a->turn->ring_prev = s;
	} else {
		s->ring_next = s->ring_prev = s;
		a->turn = s;
	}
	return s;
}

/* Frees a source that has no connection waiting any more. */
static void source_drop(vpp__admission *a, vpp__adm_source *s)
{
	vpp__adm_source **p = &a->buckets[bucket_of(a, s->key)];
	while (*p != s)
		p = &(*p)->hnext;
	*p = s->hnext;
	a->nsources--;
	if (s->ring_next == s) {
		a->turn = NULL;
	} else {
		s->ring_prev->ring_next = s->ring_next;
		s->ring_next->ring_prev = s->ring_prev;
		if (a->turn == s)
			a->turn = s->ring_next;
	}
	if (a->largest == s)
		a->largest = NULL;
	free(s);
}

static bool wait_add(vpp__admission *a, vpp_grpc_conn *c)
{
	vpp__adm_source *s = source_get(a, c->src_key);
	if (!s)
		return false;
	c->adm = a;
	c->adm_state = ADM_WAITING;
	c->adm_ms = uv_now(a->timer.loop);
	c->adm_src = s;
	q_push(&a->waiting, c, false);
	q_push(&s->q, c, true);
	if (!a->largest || s->q.n > a->largest->q.n)
		a->largest = s;
	return true;
}

static void wait_remove(vpp__admission *a, vpp_grpc_conn *c)
{
	vpp__adm_source *s = c->adm_src;
	q_remove(&a->waiting, c, false);
	q_remove(&s->q, c, true);
	c->adm_src = NULL;
	c->adm_state = ADM_NONE;
	c->adm = NULL;
	if (!s->q.n)
		source_drop(a, s);
}

/* Refuses |c|, which waited. */
static void refuse(vpp__admission *a, vpp_grpc_conn *c, vpp__reason r)
{
	wait_remove(a, c);
	vpp_counter_inc(c->met->rejected[r]);
	vpp__conn_close(c, r == R_CLIENT_GONE ? 0 : VPP_EAGAIN);
}

/* Makes room for one more from |key| by refusing the newest waiting
 * connection of the largest source, if that source has at least two more
 * waiting than |key| would. */
static bool make_room(vpp__admission *a, uint64_t key)
{
	if (!a->largest && a->turn) {
		/* The largest went; find the new one once (it is kept up as
		 * connections arrive). */
		vpp__adm_source *s = a->turn;
		do {
			if (!a->largest || s->q.n > a->largest->q.n)
				a->largest = s;
			s = s->ring_next;
		} while (s != a->turn);
	}
	vpp__adm_source *big = a->largest;
	vpp__adm_source *mine = source_find(a, key);
	uint32_t n = mine ? mine->q.n : 0;
	if (!big || big == mine || big->q.n <= n + 1)
		return false;
	vpp_grpc_conn *victim = big->q.tail;
	vpp_log(VPP_LOG_DEBUG, "grpc", "peer=%s refused: its address has the most new connections "
				       "waiting (%u) and another needs the place",
		victim->peer_addr, big->q.n);
	refuse(a, victim, R_ADMISSION);
	return true;
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
		q_push(&a->handshaking, c, false);
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
	while (a->waiting.head && a->waiting.head->adm_ms + VPP__ADMISSION_MAX_WAIT_MS <= now)
		refuse(a, a->waiting.head, R_ADMISSION);
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
	while (a->turn && !a->closed) {
		vpp_grpc_conn *c = a->turn->q.head;
		/* Before the token: a client that left does not spend one. */
		if (client_gone(c)) {
			a->turn = a->turn->ring_next;
			refuse(a, c, R_CLIENT_GONE);
			continue;
		}
		if (!may_start(a))
			break;
		a->turn = a->turn->ring_next;
		wait_remove(a, c);
		start(a, c);
	}
}

static void on_timer(uv_timer_t *t)
{
	vpp__admission *a = t->data;
	uint64_t now = uv_now(t->loop);
	while (a->handshaking.head && a->handshaking.head->adm_ms + VPP__HANDSHAKE_SLOT_MS <= now) {
		vpp_grpc_conn *c = a->handshaking.head;
		q_remove(&a->handshaking, c, false);
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
	if (a->waiting.n >= a->wait_limit && !make_room(a, c->src_key))
		return false;
	if (!wait_add(a, c))
		return false;
	arm(a);
	return true;
}

void vpp__admission_done(vpp_grpc_conn *c)
{
	vpp__admission *a = c->adm;
	if (!a)
		return;
	if (c->adm_state == ADM_WAITING) {
		wait_remove(a, c);
	} else {
		if (c->adm_state == ADM_HANDSHAKE)
			q_remove(&a->handshaking, c, false);
		c->adm_state = ADM_NONE;
		c->adm = NULL;
	}
	release_waiting(a);
}

void vpp__admission_close(vpp__admission *a)
{
	a->closed = true;
	uv_close((uv_handle_t *)&a->timer, NULL);
}

void vpp__admission_free(vpp__admission *a)
{
	for (uint32_t i = 0; i < a->nbuckets; i++) {
		while (a->buckets[i]) {
			vpp__adm_source *s = a->buckets[i];
			a->buckets[i] = s->hnext;
			free(s);
		}
	}
	free(a->buckets);
	a->buckets = NULL;
	a->nbuckets = a->nsources = 0;
	a->turn = a->largest = NULL;
}
