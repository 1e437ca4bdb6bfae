/* The operator API's answers in a cluster, from this node's copy of the
 * cluster view: what each node says, and what the fleet would deliver when
 * the leader splits a target over the nodes. Pure: the callers copy the
 * view (vpp_cluster_view_get) and send the messages. */
#include "operator_int.h"
#include "vpp/error.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* A node takes part in a split when it heartbeats (draining or not: a
 * draining node's share shrinks with its devices), as in the leader's. */
static bool splits(const vpp_cluster_node *n)
{
	return n->alive;
}

/* Whether |share_kw| sits at a limit of node |g|: then every device of
 * that node is at its own limit (the node's range is the sum of theirs). */
static bool at_limit(const vpp_cluster_agg *g, double share_kw)
{
	double lo = g->a * g->lo_kw, hi = g->a * g->hi_kw;
	double tol = 1e-6 * fmax(1.0, fmax(fabs(lo), fabs(hi)));
	return g->a > 0 && hi - lo > tol && (share_kw >= hi - tol || share_kw <= lo + tol);
}

/*
 * The split is the leader's: vpp_cluster_split over the nodes' aggregates,
 * so expected_kw and shortfall_kw are exactly what the leader would hand
 * out. The rest is estimated from what the nodes published of their last
 * tick, because only a node can price its own devices at a new share:
 *  - sigma: the nodes' deliveries are independent (disjoint devices), so
 *    their variances add; each node's is that of its present allocation
 *    (status.expected_kw.sigma), which understates it for a larger share
 *    and overstates it for a smaller one. The interval is +-1.645 sigma.
 *  - sustain_s, discharging: the nodes' stored energy above min SoC over
 *    the expected delivery, an upper bound as on one node. Charging: the
 *    nodes do not publish their room to charge, so it is unknown and 0
 *    (what the API says for "unknown"). INFINITY for 0 kW, as on one node.
 *  - n_dispatched: the devices the included nodes dispatched at their last
 *    tick; n_saturated: those of the nodes whose share is at a limit of
 *    their range (all of them are then at theirs), a lower bound.
 */
int vpp__op_cluster_preview(const vpp_cluster_view *v, double target_kw, vpp_preview *out)
{
	vpp_cluster_agg agg[VPP_CLUSTER_NODES_MAX] = {0};
	double shares[VPP_CLUSTER_NODES_MAX] = {0};
	size_t idx[VPP_CLUSTER_NODES_MAX], n = 0;
	for (size_t i = 0; i < v->n && i < VPP_CLUSTER_NODES_MAX; i++) {
		if (!splits(&v->nodes[i]))
			continue;
		agg[n] = v->nodes[i].agg;
		idx[n++] = i;
	}
	vpp_alloc_result res;
	int rv = vpp_cluster_split(agg, n, target_kw, shares, &res);
	if (rv != 0)
		return rv;
	double var = 0, energy_kwh = 0;
	int64_t as_of = 0;
	uint32_t dispatched = 0, saturated = 0;
	for (size_t k = 0; k < n; k++) {
		const vpp_fleet_status *st = &v->nodes[idx[k]].status;
		var += st->expected_kw.sigma * st->expected_kw.sigma;
		energy_kwh += st->stored_energy_kwh.value;
		if (st->expected_kw.as_of_ms > as_of)
			as_of = st->expected_kw.as_of_ms;
		dispatched += st->n_dispatched;
		if (at_limit(&agg[k], shares[k]))
			saturated += st->n_dispatched;
	}
	double sd = sqrt(var), kw = res.expected_kw;
	memset(out, 0, sizeof(*out));
	out->expected_kw.value = kw;
	out->expected_kw.sigma = sd;
	out->expected_kw.lower = kw - 1.6448536269514722 * sd;
	out->expected_kw.upper = kw + 1.6448536269514722 * sd;
	out->expected_kw.as_of_ms = as_of;
	out->shortfall_kw = res.shortfall_kw;
	out->n_dispatched = dispatched;
	out->n_saturated = saturated;
	out->min_kw = res.min_kw;
	out->max_kw = res.max_kw;
	if (fabs(kw) <= 1e-9)
		out->sustain_s = INFINITY;
	else if (kw > 0)
		out->sustain_s = fmax(energy_kwh, 0) / kw * 3600.0;
	else
		out->sustain_s = 0;
	return 0;
}

double vpp__op_cluster_target_eff(const vpp_cluster_view *v)
{
	vpp_fleet_status st;
	vpp_cluster_fleet_status(v, &st);
	return st.target_eff_kw;
}

size_t vpp__op_nodes(op_nodes *s, int64_t now_ms)
{
	size_t n = s->view.n < VPP_CLUSTER_NODES_MAX ? s->view.n : VPP_CLUSTER_NODES_MAX;
	/* The ages are the database's as of the read; the read is this old. */
	int64_t since = s->view.as_of_ms > 0 ? now_ms - s->view.as_of_ms : 0;
	for (size_t i = 0; i < n; i++) {
		vpp__op_node_status(&s->nodes[i], &s->est[i], &s->view.nodes[i], since);
		s->ptrs[i] = &s->nodes[i];
	}
	return n;
}

void vpp__op_local_node(vpp_cluster_node *out, const vpp_plant_snapshot *snap,
			const char *node_id, const char *version, int64_t started_at_ms,
			int64_t now_ms)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->node_id, sizeof(out->node_id), "%s", node_id ? node_id : "");
	snprintf(out->version, sizeof(out->version), "%s", version ? version : "");
	out->role = VPP_NODE_LEADER;
	out->alive = true;
	out->started_at_ms = started_at_ms;
	out->heartbeat_at_ms = snap->last_tick_at_ms;
	out->heartbeat_age_ms = snap->last_tick_at_ms > 0 ? now_ms - snap->last_tick_at_ms : 0;
	out->share_kw = snap->status.target_kw; /* one node: the whole target */
	out->agg = (vpp_cluster_agg){.a = snap->agg_a,
				     .e_dis_kwh = snap->agg_e_dis_kwh,
				     .e_chg_kwh = snap->agg_e_chg_kwh,
				     .lo_kw = snap->agg_lo_kw,
				     .hi_kw = snap->agg_hi_kw};
	out->status = snap->status;
}

bool vpp__op_node_id_ok(const char *id)
{
	size_t n = 0;
	for (const char *p = id; *p; p++, n++) {
		char ch = *p;
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
		if (!ok || n == VPP_CLUSTER_ID_MAX)
			return false;
	}
	return n > 0;
}

const char *vpp__op_drain_outcome(int status, const char *node_id, vpp_grpc_status *code,
				  char *msg, size_t msglen)
{
	msg[0] = 0;
	switch (status) {
	case 0:
		*code = VPP_GRPC_OK;
		return "accepted";
	case VPP_ENOENT:
		*code = VPP_GRPC_NOT_FOUND;
		snprintf(msg, msglen,
			 "no live node '%s' in this cluster (vppctl nodes lists them)",
			 node_id);
		return "no_such_node";
	case VPP_EDB:
		*code = VPP_GRPC_UNAVAILABLE;
		snprintf(msg, msglen, "the database is unreachable: retry");
		return "db_unavailable";
	case VPP_ECLOSED:
		*code = VPP_GRPC_UNAVAILABLE;
		snprintf(msg, msglen, "this vppd is stopping: retry, or ask another node");
		return "stopping";
	case VPP_EFULL:
		/* A handful of requests wait for the cluster thread's next
		 * round trip: this many means the database is slow. */
		*code = VPP_GRPC_RESOURCE_EXHAUSTED;
		snprintf(msg, msglen, "too many drain requests pending on this node: retry");
		return "busy";
	case VPP_EINVAL:
		*code = VPP_GRPC_INVALID_ARGUMENT;
		snprintf(msg, msglen, "node_id must be 1 to %d characters of A-Z a-z 0-9 . _ -",
			 VPP_CLUSTER_ID_MAX);
		return "invalid";
	default:
		*code = VPP_GRPC_INTERNAL;
		snprintf(msg, msglen, "the drain request failed (%d)", status);
		return "failed";
	}
}
