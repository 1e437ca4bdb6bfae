/* What the dispatch thread writes to the store: the device registry on each
 * hello, device events, every tick's fleet aggregates and, periodically,
 * each device's latest state. All calls are non-blocking queue pushes; a
 * refused write is counted. */
#include "plant_int.h"
#include "vpp/error.h"
#include "vpp/log.h"
#include "vpp/store.h"

#include <stdlib.h>
#include <string.h>

static vpp_counter *write_refused(void)
{
	static vpp_counter *c;
	if (!c)
		c = vpp_counter_get("vpp_dispatch_store_refused_total", NULL,
				    "Writes the store refused (queue full or closed)");
	return c;
}

static void check(int rv)
{
	if (rv != 0)
		vpp_counter_inc(write_refused());
}

void vpp__persist_device(vpp_plant *p, const vpp_plant_hello *h, int64_t now_ms)
{
	if (!p->o.store)
		return;
	vpp_store_device d;
	memset(&d, 0, sizeof(d));
	snprintf(d.device_id, sizeof(d.device_id), "%s", h->id);
	snprintf(d.firmware, sizeof(d.firmware), "%s", h->firmware);
	d.rated_charge_kw = h->ratings.rated_charge_kw;
	d.rated_discharge_kw = h->ratings.rated_discharge_kw;
	d.capacity_kwh = h->ratings.capacity_kwh;
	d.min_soc = h->ratings.min_soc;
	d.max_soc = h->ratings.max_soc;
	d.ramp_kw_per_s = h->ratings.ramp_kw_per_s;
	d.last_seen_ms = now_ms;
	int rv = p->nunregistered ? VPP_EFULL : vpp_store_upsert_device(p->o.store, &d);
	if (rv != VPP_EFULL) {
		check(rv); /* done, or refused for good (invalid, closed): counted */
		return;
	}
	/* The queue is full (or others wait before it): kept for the next
	 * tick. The newest registration wins in the database, so order is
	 * safe. */
	vpp_counter_inc(write_refused());
	if (p->nunregistered == p->capunregistered) {
		size_t ncap = p->capunregistered ? p->capunregistered * 2 : 64;
		vpp_store_device *v = realloc(p->unregistered, ncap * sizeof(*v));
		if (!v)
			return;
		p->unregistered = v;
		p->capunregistered = ncap;
	}
	p->unregistered[p->nunregistered++] = d;
}

void vpp__persist_retry_devices(vpp_plant *p)
{
	size_t done = 0;
	while (done < p->nunregistered) {
		int rv = vpp_store_upsert_device(p->o.store, &p->unregistered[done]);
		if (rv == VPP_EFULL)
			break; /* still full: the rest waits for the next tick */
		check(rv);
		done++;
	}
	memmove(p->unregistered, p->unregistered + done,
		(p->nunregistered - done) * sizeof(*p->unregistered));
	p->nunregistered -= done;
}

void vpp__persist_event(vpp_plant *p, const char *id, int64_t at_ms, int kind, const char *reason)
{
	static const vpp_store_event_kind kinds[] = {
		[PE_CONNECT] = VPP_STORE_EVENT_CONNECT,	  [PE_DISCONNECT] = VPP_STORE_EVENT_DISCONNECT,
		[PE_REPLACED] = VPP_STORE_EVENT_REPLACED, [PE_DEGRADED] = VPP_STORE_EVENT_DEGRADED,
		[PE_RECOVERED] = VPP_STORE_EVENT_RECOVERED,
	};
	if (!p->o.store || !id)
		return;
	check(vpp_store_put_device_event(p->o.store, id, at_ms, kinds[kind], reason));
}

static void est(vpp_estimate_value *out, const vpp_estimate *in)
{
	out->value = in->value;
	out->sigma = in->sigma;
	out->lower = in->lower;
	out->upper = in->upper;
}

void vpp__persist_tick(vpp_plant *p, const vpp_fleet_status *st)
{
	if (!p->o.store)
		return;
	vpp_store_tick_row t;
	memset(&t, 0, sizeof(t));
	t.tick_ms = st->now_ms;
	t.target_kw = st->target_eff_kw;
	t.adjusted_target_kw = st->adjusted_kw;
	t.commanded_kw = st->commanded_kw;
	est(&t.measured_kw, &st->measured_kw);
	est(&t.discharge_headroom_kw, &st->discharge_headroom_kw);
	est(&t.charge_headroom_kw, &st->charge_headroom_kw);
	est(&t.energy_kwh, &st->stored_energy_kwh);
	est(&t.expected_kw, &st->expected_kw);
	t.online = (int32_t)st->n_online;
	t.stale = (int32_t)st->n_stale;
	t.degraded = (int32_t)st->n_degraded;
	t.offline = (int32_t)st->n_offline;
	check(vpp_store_put_fleet_tick(p->o.store, &t));
}

void vpp__persist_states(vpp_plant *p, int64_t now_ms)
{
	if (!p->o.store)
		return;
	enum { BATCH = 256 };
	vpp_store_device_state batch[BATCH];
	size_t n = 0;
	uint32_t s;
	for (int rv = vpp_fleet_next(p->fleet, 0, &s); rv == 0;
	     rv = vpp_fleet_next(p->fleet, s + 1, &s)) {
		vpp_device_info di;
		if (vpp_fleet_device_info(p->fleet, s, now_ms, &di) != 0 || !di.last_seen_ms)
			continue;
		vpp_store_device_state *o = &batch[n++];
		memset(o, 0, sizeof(*o));
		snprintf(o->device_id, sizeof(o->device_id), "%s", di.id);
		o->as_of_ms = now_ms;
		o->status = !di.connected		 ? VPP_STORE_DEVICE_OFFLINE
			    : di.degraded		 ? VPP_STORE_DEVICE_DEGRADED
			    : di.state == VPP_DEVICE_STALE ? VPP_STORE_DEVICE_STALE
							 : VPP_STORE_DEVICE_ONLINE;
		o->power_kw = di.power_kw.value;
		o->power_sigma_kw = di.power_kw.sigma;
		o->soc = di.soc.value;
		o->soc_sigma = di.soc.sigma;
		o->setpoint_kw = di.setpoint_kw;
		o->availability = di.availability;
		o->reliability = di.reliability;
		if (n == BATCH) {
			check(vpp_store_put_device_states(p->o.store, batch, n));
			n = 0;
		}
	}
	if (n)
		check(vpp_store_put_device_states(p->o.store, batch, n));
}
