/* The dispatch core's structs as GridOperator messages. */
#include "operator_int.h"

void vpp__op_estimate(Vpp__V1__Estimate *out, const vpp_estimate *in)
{
	vpp__v1__estimate__init(out);
	out->value = in->value;
	out->sigma = in->sigma;
	out->lower = in->lower;
	out->upper = in->upper;
	out->as_of_ms = in->as_of_ms;
}

void vpp__op_fleet_status(Vpp__V1__FleetStatus *out, Vpp__V1__Estimate est[5],
			  const vpp_plant_snapshot *snap)
{
	const vpp_fleet_status *st = &snap->status;
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
	out->active_setpoint_id = (char *)snap->setpoint_id;
	out->active_valid_until_ms = snap->setpoint_id[0] ? snap->target_valid_until_ms : 0;
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
