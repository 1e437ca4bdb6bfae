/* The whole fleet from the cluster view: every alive node's last tick,
 * summed. Nodes' estimates are independent (disjoint devices), so means
 * and variances add. */
#include "vpp/cluster.h"

#include <math.h>
#include <string.h>

typedef struct {
	double mean, var;
	int64_t as_of;
} sum;

static void add(sum *s, const vpp_estimate *e)
{
	s->mean += e->value;
	s->var += e->sigma * e->sigma;
	if (e->as_of_ms > s->as_of)
		s->as_of = e->as_of_ms;
}

static void put(const sum *s, vpp_estimate *out)
{
	double sd = sqrt(s->var);
	out->value = s->mean;
	out->sigma = sd;
	out->lower = s->mean - 1.6448536269514722 * sd;
	out->upper = s->mean + 1.6448536269514722 * sd;
	out->as_of_ms = s->as_of;
}

void vpp_cluster_fleet_status(const vpp_cluster_view *v, vpp_fleet_status *out)
{
	sum m = {0}, dis = {0}, chg = {0}, energy = {0}, expected = {0};
	memset(out, 0, sizeof(*out));
	out->feasible = 1;
	for (size_t i = 0; i < v->n; i++) {
		const vpp_cluster_node *n = &v->nodes[i];
		const vpp_fleet_status *s = &n->status;
		if (!n->alive)
			continue;
		if (s->now_ms > out->now_ms)
			out->now_ms = s->now_ms;
		out->target_kw += s->target_kw;
		out->target_eff_kw += s->target_eff_kw;
		out->adjusted_kw += s->adjusted_kw;
		out->correction_kw += s->correction_kw;
		out->commanded_kw += s->commanded_kw;
		out->tracking_error_kw += s->tracking_error_kw;
		out->shortfall_kw += s->shortfall_kw;
		add(&m, &s->measured_kw);
		add(&dis, &s->discharge_headroom_kw);
		add(&chg, &s->charge_headroom_kw);
		add(&energy, &s->stored_energy_kwh);
		add(&expected, &s->expected_kw);
		out->n_devices += s->n_devices;
		out->n_online += s->n_online;
		out->n_stale += s->n_stale;
		out->n_offline += s->n_offline;
		out->n_degraded += s->n_degraded;
		out->n_dispatched += s->n_dispatched;
		out->n_saturated += s->n_saturated;
		out->n_commands += s->n_commands;
		out->feasible = out->feasible && s->feasible;
	}
	if (v->have_share) {
		double placed = out->target_eff_kw;
		out->shortfall_kw += v->fleet_eff_kw - placed;
		out->target_kw = v->fleet_target_kw;
		out->target_eff_kw = v->fleet_eff_kw;
	}
	put(&m, &out->measured_kw);
	put(&dis, &out->discharge_headroom_kw);
	put(&chg, &out->charge_headroom_kw);
	put(&energy, &out->stored_energy_kwh);
	if (out->stored_energy_kwh.lower < 0)
		out->stored_energy_kwh.lower = 0;
	put(&expected, &out->expected_kw);
}
