/* What a device may send: the checks session.c applies to a decoded Hello,
 * Telemetry, Ack and Pong, kept apart from the session (no loop, no call,
 * no log) so that tests/fuzz/fuzz_device.c runs the very same code. */
#include "device_int.h"
#include "vpp/allocate.h"
#include "vpp/text.h"

#include <math.h>

static bool finite_all(const double *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isfinite(v[i]))
			return false;
	return true;
}

const char *vpp__dev_hello_check(const Vpp__V1__Hello *h, vpp_device_ratings *ratings)
{
	vpp_device_ratings r = {
	    .rated_charge_kw = h->rated_charge_kw,
	    .rated_discharge_kw = h->rated_discharge_kw,
	    .capacity_kwh = h->capacity_kwh,
	    .min_soc = h->min_soc,
	    .max_soc = h->max_soc,
	    .ramp_kw_per_s = h->ramp_kw_per_s,
	};
	double v[] = {r.rated_charge_kw, r.rated_discharge_kw, r.capacity_kwh, r.min_soc,
	              r.max_soc,         r.ramp_kw_per_s};
	if (!finite_all(v, 6))
		return "ratings must be finite numbers";
	if (r.rated_charge_kw <= 0 || r.rated_discharge_kw <= 0)
		return "rated_charge_kw and rated_discharge_kw must be > 0";
	if (r.capacity_kwh <= 0)
		return "capacity_kwh must be > 0";
	if (r.min_soc < 0 || r.max_soc > 1 || r.min_soc >= r.max_soc)
		return "need 0 <= min_soc < max_soc <= 1";
	if (r.ramp_kw_per_s <= 0)
		return "ramp_kw_per_s must be > 0";
	if (r.rated_charge_kw > 1e5 || r.rated_discharge_kw > 1e5 || r.capacity_kwh > 1e6)
		return "ratings out of range for a battery";
	if (vpp_device_ratings_check(&r) != 0)
		return "ratings out of range";
	if (h->firmware && !vpp_utf8_valid(h->firmware))
		return "firmware must be UTF-8 text";
	*ratings = r;
	return NULL;
}

const char *vpp__dev_telemetry_check(const Vpp__V1__Telemetry *t)
{
	if (!isfinite(t->power_kw) || !isfinite(t->power_sigma_kw) || !isfinite(t->soc) ||
	    !isfinite(t->soc_sigma))
		return "values must be finite";
	if (t->soc < 0 || t->soc > 1)
		return "soc must be within 0..1";
	if (t->power_sigma_kw < 0 || t->soc_sigma < 0)
		return "sigmas must be >= 0";
	if (fabs(t->power_kw) > 1e5)
		return "power_kw out of range";
	return NULL;
}

uint32_t vpp__dev_implausible(const Vpp__V1__Telemetry *t, float rated_charge_kw,
                              float rated_discharge_kw)
{
	const double slack = 1.5, abs_kw = 0.5;
	double most = fmax(rated_charge_kw, rated_discharge_kw);
	uint32_t bad = 0;
	if (t->power_kw > slack * rated_discharge_kw + abs_kw ||
	    t->power_kw < -(slack * rated_charge_kw + abs_kw) || t->power_sigma_kw > 2 * most)
		bad |= VPP_TELEMETRY_BAD_POWER;
	if (t->soc_sigma > 1)
		bad |= VPP_TELEMETRY_BAD_SOC;
	return bad;
}

int vpp__dev_ack_check(uint64_t setpoint_seq, uint64_t first_sp_seq, uint64_t last_sp_seq)
{
	if (setpoint_seq == 0 || setpoint_seq > last_sp_seq) {
		/* Nothing sent on this session yet: an ack of the previous
		 * session's last setpoint, late. */
		if (setpoint_seq != 0 && first_sp_seq == 0)
			return VPP__DEV_ACK_STALE;
		return VPP__DEV_ACK_UNKNOWN;
	}
	if (setpoint_seq < first_sp_seq)
		return VPP__DEV_ACK_STALE; /* sent on an earlier session */
	return VPP__DEV_ACK_OK;
}

bool vpp__dev_clock_plausible(int64_t device_time_ms, int64_t ping_sent_wall_ms)
{
	/* 0 is proto3's "not set": a device without a clock reading. Offsets
	 * past ten years are a broken clock, not one to correct by. */
	const int64_t max_offset_ms = 10LL * 366 * 24 * 3600 * 1000;
	return !(device_time_ms <= 0 || device_time_ms > ping_sent_wall_ms + max_offset_ms ||
	         device_time_ms < ping_sent_wall_ms - max_offset_ms);
}
