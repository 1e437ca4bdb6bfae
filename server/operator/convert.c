/* The dispatch core's structs as GridOperator messages. */
#include "operator_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void vpp__op_estimate(Vpp__V1__Estimate *out, const vpp_estimate *in)
{
	vpp__v1__estimate__init(out);
	out->value = in->value;
	out->sigma = in->sigma;
	out->lower = in->lower;
	out->upper = in->upper;
	out->as_of_ms = in->as_of_ms;
}

/* The numbers of |st| (target_kw is its effective target, after the ramp). */
static void fleet_numbers(Vpp__V1__FleetStatus *out, Vpp__V1__Estimate est[5],
			  const vpp_fleet_status *st)
{
	vpp__v1__fleet_status__init(out);
	out->tick_at_ms = st->now_ms;
	out->target_kw = st->target_eff_kw;
	out->adjusted_target_kw = st->adjusted_kw;
	out->commanded_kw = st->commanded_kw;
	vpp__op_estimate(&est[0], &st->measured_kw);
	vpp__op_estimate(&est[1], &st->discharge_headroom_kw);
	vpp__op_estimate(&est[2], &st->charge_headroom_kw);
	vpp__op_estimate(&est[3], &st->stored_energy_kwh);
	vpp__op_estimate(&est[4], &st->expected_kw);
	out->measured_kw = &est[0];
	out->discharge_headroom_kw = &est[1];
	out->charge_headroom_kw = &est[2];
	out->stored_energy_kwh = &est[3];
	out->expected_delivery_kw = &est[4];
	out->tracking_error_kw = st->tracking_error_kw;
	out->shortfall_kw = st->shortfall_kw;
	out->devices_online = st->n_online;
	out->devices_stale = st->n_stale;
	out->devices_degraded = st->n_degraded;
	out->devices_offline = st->n_offline;
}

void vpp__op_fleet_status(Vpp__V1__FleetStatus *out, Vpp__V1__Estimate est[5],
			  const vpp_plant_snapshot *snap)
{
	fleet_numbers(out, est, &snap->status);
	out->active_setpoint_id = (char *)snap->setpoint_id;
	out->active_valid_until_ms = snap->setpoint_id[0] ? snap->target_valid_until_ms : 0;
}

/* The database's id of the setpoint |snap| records (0: none). */
static int64_t recorded_id(const vpp_plant_snapshot *snap)
{
	char *end;
	long long id = snap->setpoint_id[0] ? strtoll(snap->setpoint_id, &end, 10) : 0;
	return id > 0 && *end == 0 ? (int64_t)id : 0;
}

void vpp__op_cluster_fleet_status(Vpp__V1__FleetStatus *out, Vpp__V1__Estimate est[5],
				  op_nodes *s, const vpp_plant_snapshot *snap, int64_t now_ms)
{
	const vpp_cluster_view *v = &s->view;
	vpp_fleet_status st;
	vpp_cluster_fleet_status(v, &st);
	fleet_numbers(out, est, &st);
	/* The target is the one the leader splits (after its ramp, as on one
	 * node), named by its setpoint whichever node recorded it. A setpoint
	 * this node recorded after it (the leader has not split it yet, for
	 * a moment), or with no share yet, is this node's to say. */
	int64_t mine = recorded_id(snap);
	if (v->have_share && mine <= v->setpoint_id) {
		snprintf(s->setpoint_id, sizeof(s->setpoint_id), "%lld",
			 (long long)v->setpoint_id);
		out->active_setpoint_id = v->setpoint_id > 0 ? s->setpoint_id : "";
		out->active_valid_until_ms = v->setpoint_id > 0 ? v->setpoint_valid_until_ms : 0;
	} else if (snap->setpoint_id[0]) {
		out->target_kw = snap->target_kw;
		out->active_setpoint_id = (char *)snap->setpoint_id;
		out->active_valid_until_ms = snap->target_valid_until_ms;
	} else {
		out->active_setpoint_id = "";
		out->active_valid_until_ms = 0;
	}
	out->n_nodes = vpp__op_nodes(s, now_ms);
	out->nodes = s->ptrs;
	out->leader_node_id = (char *)v->leader_id;
	out->leader_epoch = v->leader_epoch;
}

void vpp__op_node_status(Vpp__V1__NodeStatus *out, Vpp__V1__Estimate *est,
			 const vpp_cluster_node *n, int64_t since_read_ms)
{
	const vpp_fleet_status *st = &n->status;
	vpp__v1__node_status__init(out);
	out->node_id = (char *)n->node_id;
	out->role = n->role == VPP_NODE_LEADER ? "leader" : "follower";
	out->alive = n->alive;
	out->draining = n->draining;
	out->version = (char *)n->version;
	out->api_addr = (char *)n->api_addr;
	out->device_addr = (char *)n->device_addr;
	out->started_at_ms = n->started_at_ms;
	out->heartbeat_at_ms = n->heartbeat_at_ms;
	out->heartbeat_age_ms = n->heartbeat_age_ms + (since_read_ms > 0 ? since_read_ms : 0);
	out->epoch = n->epoch;
	out->share_kw = n->share_kw;
	vpp__op_estimate(est, &st->measured_kw);
	out->measured_kw = est;
	out->devices_online = st->n_online;
	out->devices_stale = st->n_stale;
	out->devices_degraded = st->n_degraded;
	out->devices_offline = st->n_offline;
	out->shortfall_kw = st->shortfall_kw;
}

int vpp__op_device_state(const vpp_device_info *di)
{
	if (!di->connected)
		return VPP__V1__DEVICE_STATE__DEVICE_STATE_OFFLINE;
	if (di->degraded)
		return VPP__V1__DEVICE_STATE__DEVICE_STATE_DEGRADED;
	if (di->state == VPP_DEVICE_STALE)
		return VPP__V1__DEVICE_STATE__DEVICE_STATE_STALE;
	return VPP__V1__DEVICE_STATE__DEVICE_STATE_ONLINE;
}

void vpp__op_device_info(Vpp__V1__DeviceInfo *out, Vpp__V1__Estimate est[2], const op_device *d,
			 const char *node_id)
{
	const vpp_device_info *di = &d->di;
	vpp__v1__device_info__init(out);
	out->device_id = (char *)d->id;
	out->firmware = (char *)d->firmware;
	out->state = (Vpp__V1__DeviceState)vpp__op_device_state(di);
	out->rated_charge_kw = di->ratings.rated_charge_kw;
	out->rated_discharge_kw = di->ratings.rated_discharge_kw;
	out->capacity_kwh = di->ratings.capacity_kwh;
	out->min_soc = di->ratings.min_soc;
	out->max_soc = di->ratings.max_soc;
	vpp__op_estimate(&est[0], &di->soc);
	vpp__op_estimate(&est[1], &di->power_kw);
	out->soc = &est[0];
	out->power_kw = &est[1];
	out->last_seen_ms = di->last_seen_ms;
	out->reliability = di->reliability;
	out->degraded = di->degraded != 0;
	out->setpoint_kw = di->setpoint_kw;
	out->node_id = (char *)(di->connected ? node_id : "");
}
