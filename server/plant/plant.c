/* The plant's dispatch thread: drains what the I/O loops post (hellos,
 * telemetry, acks, queries), ticks the control loop, hands setpoints to the
 * loops that own the sessions, and publishes a snapshot of each tick. */
#include "plant_int.h"
#include "vpp/clock.h"
#include "vpp/error.h"
#include "vpp/log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *vpp_bye_reason_name(vpp_bye_reason r)
{
	static const char *names[] = {"closed",	  "error",    "timeout",   "replaced", "slow_reader",
				      "shutdown", "conn_lost", "throttled", "drained"};
	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "unknown";
}

static void metrics_init(vpp_plant *p)
{
	p->met.tick_seconds = vpp_histogram_get("vpp_dispatch_tick_seconds", NULL,
						"Duration of a control tick (estimate, allocate, "
						"fan out)",
						NULL, 0);
	p->met.commands = vpp_counter_get("vpp_dispatch_setpoints_total", NULL,
					  "Per-device setpoints handed to sessions");
	p->met.commands_shed = vpp_counter_get("vpp_dispatch_setpoints_shed_total", NULL,
					       "Setpoints not handed over (loop queue full); "
					       "proposed again next tick");
	p->met.telemetry = vpp_counter_get("vpp_dispatch_telemetry_total", NULL,
					   "Telemetry samples fed to the estimator");
	p->met.telemetry_rejected = vpp_counter_get("vpp_dispatch_telemetry_ignored_total", NULL,
						    "Samples the estimator ignored (duplicate, "
						    "reordered or stale session)");
	p->met.hellos = vpp_counter_get("vpp_device_events_total", "event=\"connect\"",
					"Device session events");
	p->met.replaced = vpp_counter_get("vpp_device_events_total", "event=\"replaced\"", NULL);
	p->met.byes = vpp_counter_get("vpp_device_events_total", "event=\"disconnect\"", NULL);
	p->met.throttled = vpp_counter_get(
		"vpp_device_hellos_throttled_total", NULL,
		"Hellos refused: the device opened sessions too often (over 5, then one per 2 s)");
	p->met.events_degraded = vpp_counter_get("vpp_device_events_total", "event=\"degraded\"",
						 NULL);
	p->met.events_recovered =
		vpp_counter_get("vpp_device_events_total", "event=\"recovered\"", NULL);
	p->met.events_ack_missed =
		vpp_counter_get("vpp_device_events_total", "event=\"ack_missed\"", NULL);
	p->met.acks = vpp_counter_get("vpp_dispatch_acks_total", NULL, "Setpoint acks received");
	p->met.queries = vpp_counter_get("vpp_dispatch_queries_total", NULL,
					 "Operator questions answered by the dispatch thread");
	p->met.target = vpp_gauge_get("vpp_fleet_target_kw", NULL, "Fleet target (this node)");
	p->met.adjusted = vpp_gauge_get("vpp_fleet_adjusted_target_kw", NULL,
					"Target plus the PI correction");
	p->met.commanded = vpp_gauge_get("vpp_fleet_commanded_kw", NULL,
					 "Sum of the per-device setpoints");
	p->met.measured = vpp_gauge_get("vpp_fleet_measured_kw", NULL,
					"Estimated fleet power (expected value)");
	p->met.measured_sigma = vpp_gauge_get("vpp_fleet_measured_sigma_kw", NULL,
					      "Standard deviation of the fleet power estimate");
	p->met.error = vpp_gauge_get("vpp_fleet_tracking_error_kw", NULL,
				     "Target minus measured fleet power");
	p->met.shortfall = vpp_gauge_get("vpp_fleet_shortfall_kw", NULL,
					 "What the fleet cannot deliver of the target");
	p->met.online = vpp_gauge_get("vpp_fleet_devices", "state=\"online\"", "Devices by state");
	p->met.stale = vpp_gauge_get("vpp_fleet_devices", "state=\"stale\"", NULL);
	p->met.offline = vpp_gauge_get("vpp_fleet_devices", "state=\"offline\"", NULL);
	p->met.degraded = vpp_gauge_get("vpp_fleet_devices", "state=\"degraded\"", NULL);
	p->met.shares = vpp_counter_get("vpp_cluster_shares_taken_total", NULL,
					"Cluster shares taken by this node's control loop");
	p->met.shares_old = vpp_counter_get("vpp_cluster_shares_stale_epoch_total", NULL,
					    "Cluster shares ignored: from an epoch older than "
					    "the newest taken");
	p->met.drained = vpp_counter_get("vpp_device_sessions_drained_total", NULL,
					 "Device sessions this node ended to move them to other "
					 "nodes (drain)");
	p->met.in_depth = vpp_gauge_get("vpp_dispatch_queue_depth", NULL,
					"Messages waiting for the dispatch thread");
}

int vpp_plant_new(const vpp_plant_opts *o, int nloops, vpp_plant **ret)
{
	int rv;
	if (nloops < 1)
		return VPP_EINVAL;
	vpp_plant *p = calloc(1, sizeof(*p));
	if (!p)
		return VPP_ENOMEM;
	p->o = *o;
	if (!p->o.ring_capacity)
		p->o.ring_capacity = 65536;
	if (!p->o.state_every_ms)
		p->o.state_every_ms = 10000;
	p->node_id = strdup(o->node_id ? o->node_id : "node");
	p->nloops = nloops;
	p->links = calloc((size_t)nloops, sizeof(loop_link));
	pthread_mutex_init(&p->snap_lock, NULL);
	if (!p->node_id || !p->links) {
		rv = VPP_ENOMEM;
		goto fail;
	}
	if ((rv = vpp_fleet_new(&o->params, &p->fleet)) != 0)
		goto fail;
	for (int i = 0; i < nloops; i++) {
		loop_link *l = &p->links[i];
		l->p = p;
		l->index = i;
		if ((rv = vpp_ring_new(p->o.ring_capacity, sizeof(vpp_plant_msg), &l->in)) != 0 ||
		    (rv = vpp_ring_new(p->o.ring_capacity, sizeof(vpp_plant_out), &l->out)) != 0)
			goto fail;
	}
	if (uv_loop_init(&p->loop) != 0) {
		rv = VPP_ENOMEM;
		goto fail;
	}
	metrics_init(p);
	*ret = p;
	return 0;
fail:
	vpp_plant_free(p);
	return rv;
}

/* ---- the loop side ------------------------------------------------------ */

static void on_link_closed(uv_handle_t *h)
{
}

static void on_link_wake(uv_async_t *a)
{
	loop_link *l = a->data;
	vpp_plant_out m;
	uint64_t tick_ns = 0;
	while (vpp_ring_pop(l->out, &m)) {
		if (m.type == VPP_PO__ANSWER) {
			m.u.q->done(m.u.q);
			continue;
		}
		if (m.type == VPP_PO_SETPOINT)
			tick_ns = m.u.sp.tick_ns;
		if (l->fn)
			l->fn(l->ud, &m);
	}
	/* One tick's setpoints arrive in one wake-up (the dispatch thread
	 * wakes the loop after pushing them all). */
	if (tick_ns && l->fn) {
		vpp_plant_out w = {.type = VPP_PO_WRITTEN, .u.tick_ns = tick_ns};
		l->fn(l->ud, &w);
	}
	if (atomic_load(&l->closing) && !uv_is_closing((uv_handle_t *)&l->async)) {
		uv_close((uv_handle_t *)&l->async, on_link_closed);
		uv_close((uv_handle_t *)&l->prepare, on_link_closed);
	}
}

/* Before the loop waits for I/O: one wake-up of the dispatch thread for
 * everything the sessions posted in this iteration, not one per message
 * (each is a syscall and a context switch). */
static void on_link_prepare(uv_prepare_t *h)
{
	loop_link *l = h->data;
	if (l->posted) {
		l->posted = false;
		uv_async_send(&l->p->wake);
	}
}

int vpp_plant_attach_loop(vpp_plant *p, int i, uv_loop_t *loop, vpp_plant_deliver_fn fn, void *ud)
{
	if (i < 0 || i >= p->nloops || p->links[i].attached)
		return VPP_EINVAL;
	loop_link *l = &p->links[i];
	l->loop = loop;
	l->fn = fn;
	l->ud = ud;
	if (uv_async_init(loop, &l->async, on_link_wake) != 0)
		return VPP_EIO;
	l->async.data = l;
	uv_prepare_init(loop, &l->prepare);
	l->prepare.data = l;
	uv_prepare_start(&l->prepare, on_link_prepare);
	uv_unref((uv_handle_t *)&l->prepare);
	l->attached = true;
	return 0;
}

int vpp_plant_post(vpp_plant *p, int i, const vpp_plant_msg *m)
{
	if (atomic_load_explicit(&p->stopping, memory_order_relaxed))
		return VPP_ECLOSED;
	loop_link *l = &p->links[i];
	int rv = vpp_ring_push(l->in, m);
	if (rv != 0)
		return rv;
	/* Telemetry and acks (stamped when received) wait for the next tick,
	 * which drains the ring before it estimates anything; the rest is
	 * answered at once. */
	bool urgent = (m->type != VPP_PM_TELEMETRY && m->type != VPP_PM_ACK) ||
		      vpp_ring_count(l->in) > vpp_ring_capacity(l->in) / 8;
	if (!urgent)
		return 0;
	if (l->attached)
		l->posted = true; /* on_link_prepare wakes the plant */
	else
		uv_async_send(&p->wake);
	return 0;
}

/* ---- the dispatch side -------------------------------------------------- */

/* Hands |m| to loop |i|. Setpoints may be shed (they come again next
 * tick); anything else waits in the backlog rather than being lost. */
static int send_out(vpp_plant *p, int i, const vpp_plant_out *m, bool may_shed)
{
	loop_link *l = &p->links[i];
	if (!l->attached)
		return VPP_ECLOSED;
	l->touched = true;
	if (l->nbacklog == 0 && vpp_ring_push(l->out, m) == 0)
		return 0;
	if (may_shed)
		return VPP_EFULL;
	if (l->nbacklog == l->capbacklog) {
		size_t ncap = l->capbacklog ? l->capbacklog * 2 : 64;
		vpp_plant_out *nb = realloc(l->backlog, ncap * sizeof(*nb));
		if (!nb)
			return VPP_ENOMEM;
		l->backlog = nb;
		l->capbacklog = ncap;
	}
	l->backlog[l->nbacklog++] = *m;
	return 0;
}

static void flush_links(vpp_plant *p)
{
	for (int i = 0; i < p->nloops; i++) {
		loop_link *l = &p->links[i];
		size_t k = 0;
		while (k < l->nbacklog && vpp_ring_push(l->out, &l->backlog[k]) == 0)
			k++;
		if (k) {
			memmove(l->backlog, l->backlog + k, (l->nbacklog - k) * sizeof(*l->backlog));
			l->nbacklog -= k;
		}
		if (l->touched && l->attached) {
			uv_async_send(&l->async);
			l->touched = false;
		}
	}
}

static owner *owner_of(vpp_plant *p, uint32_t slot)
{
	if (slot >= p->nowners) {
		size_t n = p->nowners ? p->nowners : 1024;
		while (n <= slot)
			n *= 2;
		owner *no = realloc(p->owners, n * sizeof(*no));
		if (!no)
			return NULL;
		for (size_t i = p->nowners; i < n; i++)
			no[i] = (owner){.loop = -1};
		p->owners = no;
		p->nowners = n;
	}
	return &p->owners[slot];
}

static bool is_owner(vpp_plant *p, uint32_t slot, int loop, uint64_t session)
{
	return slot < p->nowners && p->owners[slot].loop == loop &&
	       p->owners[slot].session == session;
}

/* Takes a token from the device's Hello bucket; false when it is empty. */
static bool hello_allowed(owner *o, int64_t now)
{
	if (!o->hello_at_ms)
		o->hello_tokens = VPP__HELLO_BURST;
	else if (now > o->hello_at_ms)
		o->hello_tokens += (double)(now - o->hello_at_ms) / VPP__HELLO_REFILL_MS;
	if (o->hello_tokens > VPP__HELLO_BURST)
		o->hello_tokens = VPP__HELLO_BURST;
	o->hello_at_ms = now;
	if (o->hello_tokens < 1)
		return false;
	o->hello_tokens -= 1;
	return true;
}

static void on_hello(vpp_plant *p, int loop, const vpp_plant_msg *m, int64_t now)
{
	vpp_plant_hello *h = m->u.hello;
	uint32_t slot;
	int rv = vpp_fleet_lookup(p->fleet, h->id, &slot);
	owner *known = rv == 0 ? owner_of(p, slot) : NULL;
	if (known && !hello_allowed(known, now)) {
		/* Refused before it touches the fleet, the store or the
		 * session it would replace. */
		vpp_plant_out out = {.type = VPP_PO_CLOSE, .session = m->session,
				     .u.reason = VPP_BYE_THROTTLED};
		send_out(p, loop, &out, false);
		vpp_counter_inc(p->met.throttled);
		free(h);
		return;
	}
	if (rv == VPP_ENOENT)
		rv = vpp_fleet_add(p->fleet, h->id, &h->ratings, &slot);
	else if (rv == 0)
		rv = vpp_fleet_set_ratings(p->fleet, slot, &h->ratings);
	owner *o = rv == 0 ? owner_of(p, slot) : NULL;
	if (!o) {
		vpp_log(VPP_LOG_WARN, "dispatch", "device=%s refused: %s", h->id, vpp_strerror(rv));
		vpp_plant_out out = {.type = VPP_PO_CLOSE, .session = m->session,
				     .u.reason = VPP_BYE_ERROR};
		send_out(p, loop, &out, false);
		free(h);
		return;
	}
	if (o->loop >= 0 && !(o->loop == loop && o->session == m->session)) {
		vpp_plant_out out = {.type = VPP_PO_CLOSE, .session = o->session,
				     .u.reason = VPP_BYE_REPLACED};
		send_out(p, o->loop, &out, false);
		vpp_counter_inc(p->met.replaced);
		vpp_log(VPP_LOG_INFO, "dispatch", "device=%s session %s replaces the previous one",
			h->id, h->session_id);
		vpp__persist_event(p, h->id, now, PE_REPLACED, "a newer session took over");
	}
	o->loop = loop;
	o->session = m->session;
	if (o->leave_at) { /* a new session: the drain picks it again */
		o->leave_at = 0;
		p->n_leaving--;
	}
	memcpy(o->firmware, h->firmware, sizeof(o->firmware)); /* NUL-terminated */
	vpp_fleet_connect(p->fleet, slot, now);
	vpp_plant_out out = {.type = VPP_PO_REGISTERED, .session = m->session, .u.slot = slot};
	send_out(p, loop, &out, false);
	vpp_counter_inc(p->met.hellos);
	vpp__persist_device(p, h, now);
	vpp__persist_event(p, h->id, now, PE_CONNECT, h->session_id);
	free(h);
}

static void on_bye(vpp_plant *p, int loop, const vpp_plant_msg *m, int64_t now)
{
	if (!is_owner(p, m->slot, loop, m->session))
		return; /* never registered, or already replaced */
	p->owners[m->slot].loop = -1;
	vpp_fleet_disconnect(p->fleet, m->slot, now);
	vpp_counter_inc(p->met.byes);
	const char *id = vpp_fleet_id(p->fleet, m->slot);
	vpp__persist_event(p, id, now, PE_DISCONNECT, vpp_bye_reason_name(m->u.bye.reason));
}

static void handle(vpp_plant *p, int loop, const vpp_plant_msg *m, int64_t now)
{
	switch (m->type) {
	case VPP_PM_HELLO:
		on_hello(p, loop, m, now);
		break;
	case VPP_PM_BYE:
		on_bye(p, loop, m, now);
		break;
	case VPP_PM_TELEMETRY:
		if (is_owner(p, m->slot, loop, m->session) &&
		    vpp_fleet_telemetry(p->fleet, m->slot, &m->u.t) == 0)
			vpp_counter_inc(p->met.telemetry);
		else
			vpp_counter_inc(p->met.telemetry_rejected);
		break;
	case VPP_PM_ACK:
		if (is_owner(p, m->slot, loop, m->session)) {
			vpp_fleet_ack(p->fleet, m->slot, m->u.ack.seq, m->u.ack.accepted,
				      m->u.ack.at_ms);
			vpp_counter_inc(p->met.acks);
		}
		break;
	case VPP_PM_QUERY: {
		vpp_plant_query *q = m->u.q;
		q->run(q, p->fleet, now, p);
		vpp_plant_out out = {.type = VPP_PO__ANSWER, .u.q = q};
		send_out(p, q->loop, &out, false);
		vpp_counter_inc(p->met.queries);
		break;
	}
	default:
		break;
	}
}

static void drain(vpp_plant *p)
{
	int64_t now = vpp_wall_ms();
	vpp_plant_msg m;
	size_t depth = 0;
	for (int i = 0; i < p->nloops; i++) {
		depth += vpp_ring_count(p->links[i].in);
		/* Bounded per pass so that one busy loop cannot starve a tick. */
		for (int k = 0; k < 65536 && vpp_ring_pop(p->links[i].in, &m); k++)
			handle(p, i, &m, now);
	}
	vpp_gauge_set(p->met.in_depth, (double)depth);
	flush_links(p);
}

static bool take_share(vpp_plant *p, int64_t now);
static void on_tick(uv_timer_t *t);

static void on_wake(uv_async_t *a)
{
	vpp_plant *p = a->data;
	if (atomic_load(&p->stopping)) {
		uv_timer_stop(&p->tick);
		uv_close((uv_handle_t *)&p->tick, NULL);
		uv_close((uv_handle_t *)&p->wake, NULL);
		return;
	}
	drain(p);
	if (take_share(p, vpp_wall_ms()))
		p->tick_soon = true;
	if (p->tick_soon) {
		/* A new target: its commands leave now, not at the next tick.
		 * One millisecond later, all the same: the operator's answer,
		 * handed to its loop just now, is written before the loop is
		 * busy writing the fan-out (measured: 29 ms for the call with
		 * 1,000 devices at once, 4 ms this way). */
		p->tick_soon = false;
		uv_timer_start(&p->tick, on_tick, 1, (uint64_t)p->o.params.tick_ms);
	}
}

static void publish(vpp_plant *p, const vpp_fleet_status *st, int64_t now, double took_ms)
{
	pthread_mutex_lock(&p->snap_lock);
	p->snap.status = *st;
	p->snap.tick++;
	p->snap.last_tick_at_ms = now;
	p->snap.last_tick_ms = took_ms;
	vpp_fleet_aggregate(p->fleet, &p->snap.agg_a, &p->snap.agg_e_dis_kwh,
			    &p->snap.agg_e_chg_kwh, &p->snap.agg_lo_kw, &p->snap.agg_hi_kw);
	if (p->snap.share_valid_until_ms && now >= p->snap.share_valid_until_ms) {
		if (p->snap.share_kw != 0)
			vpp_log(VPP_LOG_WARN, "dispatch",
				"the share of leadership epoch %llu (%g kW) ran out with no new "
				"one at %lld ms (Unix time): this node's target is 0",
				(unsigned long long)p->snap.share_epoch, p->snap.share_kw,
				(long long)p->snap.share_valid_until_ms);
		p->snap.share_kw = 0;
		p->snap.share_valid_until_ms = 0;
	}
	if (p->snap.target_valid_until_ms && now >= p->snap.target_valid_until_ms) {
		p->snap.target_kw = 0;
		p->snap.setpoint_id[0] = 0;
		p->snap.target_valid_until_ms = 0;
	}
	pthread_mutex_unlock(&p->snap_lock);
	atomic_store(&p->last_tick_wall_ms, now);
	vpp_gauge_set(p->met.target, st->target_kw);
	vpp_gauge_set(p->met.adjusted, st->adjusted_kw);
	vpp_gauge_set(p->met.commanded, st->commanded_kw);
	vpp_gauge_set(p->met.measured, st->measured_kw.value);
	vpp_gauge_set(p->met.measured_sigma, st->measured_kw.sigma);
	vpp_gauge_set(p->met.error, st->tracking_error_kw);
	vpp_gauge_set(p->met.shortfall, st->shortfall_kw);
	vpp_gauge_set(p->met.online, st->n_online);
	vpp_gauge_set(p->met.stale, st->n_stale);
	vpp_gauge_set(p->met.offline, st->n_offline);
	vpp_gauge_set(p->met.degraded, st->n_degraded);
}

static void on_events(vpp_plant *p, const vpp_tick_output *out)
{
	for (size_t i = 0; i < out->n_events; i++) {
		const vpp_device_event *e = &out->events[i];
		char why[96];
		switch (e->type) {
		case VPP_EVENT_DEGRADED:
			vpp_counter_inc(p->met.events_degraded);
			snprintf(why, sizeof(why), "tracking ratio %.2f", e->value);
			vpp_log(VPP_LOG_WARN, "dispatch", "device=%s degraded: %s", e->id, why);
			vpp__persist_event(p, e->id, e->at_ms, PE_DEGRADED, why);
			break;
		case VPP_EVENT_RECOVERED:
			vpp_counter_inc(p->met.events_recovered);
			snprintf(why, sizeof(why), "tracking ratio %.2f", e->value);
			vpp_log(VPP_LOG_INFO, "dispatch", "device=%s recovered: %s", e->id, why);
			vpp__persist_event(p, e->id, e->at_ms, PE_RECOVERED, why);
			break;
		case VPP_EVENT_ACK_MISSED:
			vpp_counter_inc(p->met.events_ack_missed);
			vpp_log(VPP_LOG_DEBUG, "dispatch", "device=%s missed the ack of seq %.0f",
				e->id, e->value);
			break;
		}
	}
}

static void take_restore(vpp_plant *p, int64_t now);

/* Draining moves a batch of devices a tick to other nodes, so that the
 * fleet stays on target: each is first taken out of the dispatch (its
 * share goes to the others, it is commanded to 0), and its session is
 * ended once it had the time to get there. A device sent away at its
 * setpoint would go on at it under its lease while this node made up for
 * its loss with the others, and the node it reaches counted it as well. */
static void drain_step(vpp_plant *p, uint32_t connected, int64_t now)
{
	atomic_store(&p->connected, connected);
	if (!atomic_load(&p->draining)) {
		p->drain_from = 0;
		for (uint32_t s = 0; p->n_leaving > 0 && s < p->nowners; s++)
			if (p->owners[s].leave_at) { /* undrained: it stays */
				p->owners[s].leave_at = 0;
				vpp_fleet_set_leaving(p->fleet, s, false);
				p->n_leaving--;
			}
		return;
	}
	if (!p->drain_from) {
		p->drain_from = connected ? connected : 1;
		vpp_log(VPP_LOG_WARN, "dispatch", "draining: moving %u devices to other nodes",
			connected);
	}
	/* Those at 0 by now go: a tick for the command, then 2 s to ramp. */
	int64_t hold = p->o.params.tick_ms + 2000;
	for (uint32_t s = 0; p->n_leaving > 0 && s < p->nowners; s++) {
		owner *o = &p->owners[s];
		if (!o->leave_at || (o->loop >= 0 && now - o->leave_at < hold))
			continue;
		if (o->loop >= 0) {
			vpp_plant_out out = {.type = VPP_PO_CLOSE, .session = o->session,
					     .u.reason = VPP_BYE_DRAINED};
			if (send_out(p, o->loop, &out, true) != 0)
				break; /* the loop is busy: the next tick */
			/* Its session's bye disconnects it in the fleet. */
			vpp_counter_inc(p->met.drained);
		}
		o->leave_at = 0;
		p->n_leaving--;
	}
	double per = atomic_load(&p->drain_per_tick) * p->drain_from;
	uint32_t n = per < 1 ? 1 : (uint32_t)per;
	for (uint32_t k = 0; k < p->nowners && n > 0; k++) {
		uint32_t s = (p->drain_cursor + k) % (uint32_t)p->nowners;
		owner *o = &p->owners[s];
		if (o->loop < 0 || o->leave_at)
			continue;
		vpp_fleet_set_leaving(p->fleet, s, true);
		o->leave_at = now;
		p->n_leaving++;
		p->drain_cursor = s + 1;
		n--;
	}
}

static void on_tick(uv_timer_t *t)
{
	vpp_plant *p = t->data;
	uint64_t t0 = uv_hrtime();
	drain(p);
	p->tick_soon = false; /* this is the tick */
	int64_t now = vpp_wall_ms();
	take_restore(p, now);
	take_share(p, now);
	vpp_tick_output out;
	if (vpp_fleet_tick(p->fleet, now, &out) != 0) {
		vpp_log(VPP_LOG_ERROR, "dispatch", "tick failed: out of memory");
		return;
	}
	for (size_t i = 0; i < out.n_commands; i++) {
		const vpp_command *c = &out.commands[i];
		if (c->slot >= p->nowners || p->owners[c->slot].loop < 0)
			continue;
		owner *o = &p->owners[c->slot];
		vpp_plant_out m = {.type = VPP_PO_SETPOINT, .session = o->session};
		m.u.sp.seq = c->seq;
		m.u.sp.power_kw = c->power_kw;
		m.u.sp.valid_until_ms = c->valid_until_ms;
		m.u.sp.issued_ms = now;
		m.u.sp.tick_ns = t0;
		if (send_out(p, o->loop, &m, true) != 0) {
			vpp_counter_inc(p->met.commands_shed);
			continue;
		}
		vpp_fleet_command_sent(p->fleet, c->slot, c->seq, c->power_kw, c->valid_until_ms,
				       now);
		vpp_counter_inc(p->met.commands);
	}
	drain_step(p, out.status.n_online + out.status.n_stale, now);
	flush_links(p);
	on_events(p, &out);
	double took_ms = (double)(uv_hrtime() - t0) / 1e6;
	vpp_histogram_observe(p->met.tick_seconds, took_ms / 1000.0);
	publish(p, &out.status, now, took_ms);
	if (p->nunregistered)
		vpp__persist_retry_devices(p);
	vpp__persist_tick(p, &out.status);
	if (now - p->last_state_ms >= p->o.state_every_ms) {
		p->last_state_ms = now;
		vpp__persist_states(p, now);
	}
	if (p->on_tick)
		p->on_tick(p->on_tick_ud);
}

/* Gives back the memory of messages posted after the last drain. */
static void drop_posted(vpp_plant *p)
{
	vpp_plant_msg m;
	for (int i = 0; i < p->nloops; i++)
		while (p->links[i].in && vpp_ring_pop(p->links[i].in, &m))
			if (m.type == VPP_PM_HELLO)
				free(m.u.hello);
}

static void thread_main(void *arg)
{
	vpp_plant *p = arg;
	uv_run(&p->loop, UV_RUN_DEFAULT);
	drop_posted(p);
}

static size_t backlog_left(const vpp_plant *p)
{
	size_t n = 0;
	for (int i = 0; i < p->nloops; i++)
		n += p->links[i].attached ? p->links[i].nbacklog : 0;
	return n;
}

int vpp_plant_start(vpp_plant *p)
{
	uv_async_init(&p->loop, &p->wake, on_wake);
	p->wake.data = p;
	uv_timer_init(&p->loop, &p->tick);
	p->tick.data = p;
	uint64_t period = (uint64_t)p->o.params.tick_ms;
	uv_timer_start(&p->tick, on_tick, 0, period);
	if (uv_thread_create(&p->thread, thread_main, p) != 0)
		return VPP_EIO;
	p->thread_started = true;
	return 0;
}

void vpp_plant_stop(vpp_plant *p)
{
	if (!p || atomic_exchange(&p->stopped, true))
		return;
	atomic_store(&p->stopping, true);
	if (p->thread_started) {
		uv_async_send(&p->wake);
		uv_thread_join(&p->thread);
		p->thread_started = false;
	}
	/* The dispatch thread is gone, and the loops' byes are refused from
	 * now on: the devices still connected are disconnected by this
	 * shutdown, recorded here (the store stops after the plant). */
	int64_t now = vpp_wall_ms();
	size_t disconnected = 0;
	for (uint32_t slot = 0; slot < p->nowners; slot++) {
		if (p->owners[slot].loop < 0)
			continue;
		p->owners[slot].loop = -1;
		vpp_fleet_disconnect(p->fleet, slot, now);
		vpp__persist_event(p, vpp_fleet_id(p->fleet, slot), now, PE_DISCONNECT,
				   vpp_bye_reason_name(VPP_BYE_SHUTDOWN));
		vpp_counter_inc(p->met.byes);
		disconnected++;
	}
	if (disconnected)
		vpp__persist_states(p, now); /* the last state rows say so too */
	/* The dispatch thread is gone: this thread is now the rings' only
	 * producer. Tell each loop to end its sessions and drop its handle. */
	for (int i = 0; i < p->nloops; i++) {
		loop_link *l = &p->links[i];
		if (!l->attached)
			continue;
		vpp_plant_out m = {.type = VPP_PO_SHUTDOWN};
		send_out(p, i, &m, false);
	}
	/* A full ring leaves the rest, the shutdown last, in the backlog: the
	 * loops still run and empty their rings, so push until it is all in
	 * (a loop that never ends its sessions would keep vppd from exiting). */
	flush_links(p);
	for (int waited = 0; backlog_left(p) && waited < 5000; waited++) {
		uv_sleep(1);
		for (int i = 0; i < p->nloops; i++)
			p->links[i].touched = p->links[i].nbacklog > 0; /* wake it again */
		flush_links(p);
	}
	if (backlog_left(p))
		vpp_log(VPP_LOG_ERROR, "dispatch",
			"%zu messages for the I/O loops not delivered at shutdown: a loop is stuck",
			backlog_left(p));
	for (int i = 0; i < p->nloops; i++) {
		loop_link *l = &p->links[i];
		if (!l->attached)
			continue;
		atomic_store(&l->closing, true);
		uv_async_send(&l->async);
	}
}

void vpp_plant_free(vpp_plant *p)
{
	if (!p)
		return;
	if (p->thread_started)
		vpp_plant_stop(p);
	if (p->links) {
		drop_posted(p); /* posted after the dispatch thread ended */
		for (int i = 0; i < p->nloops; i++) {
			vpp_ring_free(p->links[i].in);
			vpp_ring_free(p->links[i].out);
			free(p->links[i].backlog);
		}
	}
	if (p->loop.data == NULL) {
		uv_run(&p->loop, UV_RUN_NOWAIT);
		uv_loop_close(&p->loop);
	}
	vpp_fleet_free(p->fleet);
	pthread_mutex_destroy(&p->snap_lock);
	free(p->owners);
	free(p->unregistered);
	free(p->links);
	free(p->node_id);
	free(p);
}

void vpp_plant_snapshot_get(vpp_plant *p, vpp_plant_snapshot *out)
{
	pthread_mutex_lock(&p->snap_lock);
	*out = p->snap;
	pthread_mutex_unlock(&p->snap_lock);
}

const char *vpp_plant_device_firmware(const vpp_plant *p, uint32_t slot)
{
	return slot < p->nowners ? p->owners[slot].firmware : "";
}

static void set_active(vpp_plant *p, const char *id, double target_kw, int64_t valid_until_ms,
		       double ramp_kw_per_s)
{
	pthread_mutex_lock(&p->snap_lock);
	snprintf(p->snap.setpoint_id, sizeof(p->snap.setpoint_id), "%s", id ? id : "");
	p->snap.target_kw = target_kw;
	p->snap.target_valid_until_ms = valid_until_ms;
	p->snap.target_ramp_kw_per_s = ramp_kw_per_s;
	pthread_mutex_unlock(&p->snap_lock);
}

void vpp_plant_set_active_setpoint(vpp_plant *p, const char *id, double target_kw,
				   int64_t valid_until_ms, double ramp_kw_per_s)
{
	p->operator_set = true;
	set_active(p, id, target_kw, valid_until_ms, ramp_kw_per_s);
}

int vpp_plant_restore_setpoint(vpp_plant *p, const char *id, double target_kw,
			       int64_t valid_until_ms, double ramp_kw_per_s)
{
	if (p->thread_started) {
		pthread_mutex_lock(&p->snap_lock);
		p->restore.pending = true;
		snprintf(p->restore.id, sizeof(p->restore.id), "%s", id);
		p->restore.target_kw = target_kw;
		p->restore.valid_until_ms = valid_until_ms;
		p->restore.ramp_kw_per_s = ramp_kw_per_s;
		pthread_mutex_unlock(&p->snap_lock);
		return 0;
	}
	int rv = vpp_fleet_set_target(p->fleet, target_kw, valid_until_ms, ramp_kw_per_s,
				      vpp_wall_ms());
	if (rv == 0)
		set_active(p, id, target_kw, valid_until_ms, ramp_kw_per_s);
	return rv;
}

/* Dispatch thread, before a tick: a setpoint offered late is carried on,
 * unless an operator has set one since vppd started (that one is newer). */
static void take_restore(vpp_plant *p, int64_t now)
{
	pthread_mutex_lock(&p->snap_lock);
	bool pending = p->restore.pending;
	p->restore.pending = false;
	pthread_mutex_unlock(&p->snap_lock);
	if (!pending)
		return;
	if (p->operator_set || p->restore.valid_until_ms <= now) {
		vpp_log(VPP_LOG_INFO, "dispatch",
			"operator setpoint %s not carried on: %s", p->restore.id,
			p->operator_set ? "an operator set a target since the start" : "it has ended");
		return;
	}
	if (vpp_fleet_set_target(p->fleet, p->restore.target_kw, p->restore.valid_until_ms,
				 p->restore.ramp_kw_per_s, now) != 0)
		return;
	set_active(p, p->restore.id, p->restore.target_kw, p->restore.valid_until_ms,
		   p->restore.ramp_kw_per_s);
	vpp_log(VPP_LOG_WARN, "dispatch",
		"carrying on with the operator setpoint in force before the restart: %s (%g kW), "
		"for %.0f s more (read once the database answered)",
		p->restore.id, p->restore.target_kw,
		(double)(p->restore.valid_until_ms - now) / 1000.0);
}

bool vpp_plant_healthy(vpp_plant *p, char *why, size_t whylen)
{
	if (atomic_load(&p->stopping)) {
		snprintf(why, whylen, "dispatch stopping");
		return false;
	}
	int64_t last = atomic_load(&p->last_tick_wall_ms);
	int64_t now = vpp_wall_ms(), limit = 3 * p->o.params.tick_ms + 1000;
	if (last == 0 || now - last > limit) {
		snprintf(why, whylen, last ? "dispatch loop has not ticked for %lld ms"
					   : "dispatch loop has not ticked yet",
			 (long long)(now - last));
		return false;
	}
	return true;
}

int vpp_plant_set_share(vpp_plant *p, uint64_t epoch, double share_kw, int64_t valid_until_ms,
			int64_t setpoint_until_ms)
{
	if (!isfinite(share_kw) || setpoint_until_ms < 0)
		return VPP_EINVAL;
	int rv = 0;
	pthread_mutex_lock(&p->snap_lock);
	if (epoch < p->snap.share_epoch || (p->share.pending && epoch < p->share.epoch)) {
		rv = VPP_EPERM;
	} else {
		p->share.pending = true;
		p->share.epoch = epoch;
		p->share.kw = share_kw;
		p->share.valid_until_ms = valid_until_ms;
		p->share.setpoint_until_ms = setpoint_until_ms;
	}
	pthread_mutex_unlock(&p->snap_lock);
	if (rv != 0) {
		vpp_counter_inc(p->met.shares_old);
		return rv;
	}
	if (p->thread_started)
		uv_async_send(&p->wake);
	return 0;
}

/* Dispatch thread: applies the share offered since the last look; true
 * when it moved the target. A share never goes back to an older epoch. */
static bool take_share(vpp_plant *p, int64_t now)
{
	pthread_mutex_lock(&p->snap_lock);
	bool pending = p->share.pending && p->share.epoch >= p->share_epoch;
	p->share.pending = false;
	double kw = p->share.kw;
	int64_t until = p->share.valid_until_ms;
	int64_t sp_until = p->share.setpoint_until_ms;
	uint64_t epoch = p->share.epoch;
	if (pending) {
		p->snap.share_epoch = epoch;
		p->snap.share_kw = until > now ? kw : 0;
		p->snap.share_valid_until_ms = until;
	}
	pthread_mutex_unlock(&p->snap_lock);
	if (!pending)
		return false;
	double before = vpp_fleet_target_eff(p->fleet);
	if (vpp_fleet_set_target(p->fleet, kw, until, 0, now) != 0 ||
	    vpp_fleet_set_lease_end(p->fleet, sp_until) != 0)
		return false;
	if (epoch != p->share_epoch)
		vpp_log(VPP_LOG_INFO, "dispatch", "obeying the shares of leadership epoch %llu",
			(unsigned long long)epoch);
	p->share_epoch = epoch;
	vpp_counter_inc(p->met.shares);
	/* Tick at once only for a real change: shares are renewed every tick. */
	double db = p->o.params.deadband_kw;
	return fabs((until > now ? kw : 0) - before) > db + 0.01 * fabs(before);
}

void vpp_plant_on_tick(vpp_plant *p, void (*fn)(void *ud), void *ud)
{
	p->on_tick = fn;
	p->on_tick_ud = ud;
}

void vpp_plant_tick_soon(vpp_plant *p)
{
	p->tick_soon = true;
}

bool vpp_plant_clustered(const vpp_plant *p)
{
	return p->o.clustered;
}

void vpp_plant_drain(vpp_plant *p, bool on, double per_tick)
{
	atomic_store(&p->drain_per_tick, per_tick > 0 && per_tick <= 1 ? per_tick : 0.05);
	atomic_store(&p->draining, on);
}

uint32_t vpp_plant_connected(vpp_plant *p)
{
	return atomic_load(&p->connected);
}
