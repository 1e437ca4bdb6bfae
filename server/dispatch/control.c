/* The controller (DESIGN.md §6): the target and its validity, the PI
 * correction on the measured tracking error, one allocation per tick and the
 * deadband / lease logic that decides which setpoints to send. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch_int.h"
#include "vpp/error.h"

int vpp_fleet_set_target(vpp_fleet *f, double target_kw, int64_t valid_until_ms,
			 double ramp_kw_per_s, int64_t now_ms)
{
	if (!isfinite(target_kw) || !isfinite(ramp_kw_per_s) || ramp_kw_per_s < 0)
		return VPP_EINVAL;
	if (valid_until_ms <= now_ms)
		target_kw = 0; /* already over */
	if (fabs(target_kw - f->target) > f->prm.settle_tol_frac * fabs(f->target) ||
	    (target_kw == 0) != (f->target == 0))
		f->target_changed_at = now_ms;
	f->target = target_kw;
	f->target_until = valid_until_ms;
	f->target_ramp = ramp_kw_per_s;
	return 0;
}

int vpp_fleet_set_lease_end(vpp_fleet *f, int64_t end_ms)
{
	if (end_ms < 0)
		return VPP_EINVAL;
	f->lease_end = end_ms;
	f->lease_end_set = 1;
	return 0;
}

double vpp_fleet_target_eff(const vpp_fleet *f)
{
	return f->target_eff;
}

/* What one pass over the fleet found, besides the per-slot scratch arrays. */
typedef struct pass {
	vpp__acc measured, dis, chg, energy;
	double shift; /* sum of the predicted moves towards newer setpoints */
	uint32_t n_devices, n_online, n_stale, n_offline, n_degraded, n_dispatched, n_fresh;
	double agg_edis, agg_echg;
	/* Expected energy the dispatchable devices can give (above min SoC)
	 * and take (below max SoC), kWh. */
	double e_give, e_take;
} pass;

/* Derives every device's estimate at |now| into the scratch arrays x_* and
 * sums the fleet aggregates. Changes no state. */
static void prepare(vpp_fleet *f, int64_t now, pass *ps)
{
	const vpp_dispatch_params *prm = &f->prm;
	const double horizon_s = (double)prm->tick_ms / 1000.0;
	uint32_t s;

	memset(ps, 0, sizeof(*ps));
	for (s = 0; s < f->hwm; s++) {
		uint32_t fl = f->flags[s];
		vpp_device_limits lim;
		vpp__derived d;

		f->x_a[s] = 0;
		if (!(fl & F_USED))
			continue;
		vpp__derive(f, s, now, &d);
		ps->n_devices++;
		if (d.state == VPP_DEVICE_ONLINE)
			ps->n_online++;
		else if (d.state == VPP_DEVICE_STALE)
			ps->n_stale++;
		else
			ps->n_offline++;
		if ((fl & F_CONNECTED) && (fl & F_DEGRADED))
			ps->n_degraded++;
		if (!(fl & F_CONNECTED) && (fl & F_HAS_SAMPLE) && now < f->gone_until[s]) {
			/* Session lost, lease still running: the battery is
			 * still at it, as far as anyone knows. */
			double sd = 0.1 * d.p;
			vpp__acc_add(&ps->measured, d.p, d.p_sigma * d.p_sigma + sd * sd, f->t_at[s]);
		}
		if (!(fl & F_CONNECTED) || !(fl & F_HAS_SAMPLE))
			continue;

		if (d.avail <= 0)
			continue;
		/* A stale device is there with probability avail: mean and
		 * Bernoulli variance of that mixture, for its power and for
		 * its stored energy alike; beyond the stale limit it counts
		 * for neither. */
		vpp__acc_add(&ps->measured, d.avail * d.p,
			     d.avail * d.p_sigma * d.p_sigma + d.avail * (1 - d.avail) * d.p * d.p,
			     f->t_at[s]);
		{
			const vpp_device_ratings *rt = &f->rt[s];
			double usable = fmax(d.soc - rt->min_soc, 0) * rt->capacity_kwh;
			double esig = d.soc_sigma * rt->capacity_kwh;

			vpp__acc_add(&ps->energy, d.avail * usable,
				     d.avail * esig * esig + d.avail * (1 - d.avail) * usable * usable,
				     f->t_at[s]);
		}
		ps->shift += d.avail * d.shift;
		if (d.state == VPP_DEVICE_ONLINE)
			ps->n_fresh++;
		if ((fl & F_LEAVING) || d.a <= 0 ||
		    vpp_device_limits_compute(&f->rt[s], d.soc, d.p, horizon_s,
							  prm->energy_eps_kwh, &lim) != 0)
			continue;
		f->x_a[s] = d.a;
		f->x_lo[s] = lim.lo_kw;
		f->x_hi[s] = lim.hi_kw;
		/* The allocator weighs a share by a^2 e: late acks scale e, so
		 * they move shares to others without changing what the fleet
		 * is expected to deliver. */
		f->x_edis[s] = lim.e_dis_kwh * d.w_ack * d.w_ack;
		f->x_echg[s] = lim.e_chg_kwh * d.w_ack * d.w_ack;
		ps->n_dispatched++;
		vpp__acc_add(&ps->dis, d.a * lim.hi_kw, d.a * (1 - d.a) * lim.hi_kw * lim.hi_kw,
			     f->t_at[s]);
		vpp__acc_add(&ps->chg, d.a * lim.lo_kw, d.a * (1 - d.a) * lim.lo_kw * lim.lo_kw,
			     f->t_at[s]);
		ps->e_give += d.a * lim.e_dis_kwh;
		ps->e_take += d.a * lim.e_chg_kwh;
		ps->agg_edis += d.a * d.a * f->x_edis[s];
		ps->agg_echg += d.a * d.a * f->x_echg[s];
	}
}

/* Expected delivery of setpoints |p| under the scratch a_i: each device
 * delivers its share with probability a_i (Bernoulli variance) and within
 * the tracking tolerance. */
static void expected_delivery(const vpp_fleet *f, const double *p, vpp_estimate *out)
{
	const vpp_dispatch_params *prm = &f->prm;
	vpp__acc acc = {0, 0, 0};
	uint32_t s;

	for (s = 0; s < f->hwm; s++) {
		double a = f->x_a[s], tol;

		if (!(a > 0))
			continue;
		tol = prm->track_tol_frac * p[s];
		vpp__acc_add(&acc, a * p[s],
			     a * (1 - a) * p[s] * p[s] + a * a * (tol * tol + prm->track_tol_kw *
							       prm->track_tol_kw),
			     f->t_at[s]);
	}
	vpp__acc_estimate(&acc, out);
}

static int push_command(vpp_fleet *f, uint32_t s, double p, int64_t until)
{
	vpp_command *c;

	if (f->n_cmds == f->cap_cmds) {
		size_t ncap = f->cap_cmds ? 2 * f->cap_cmds : 64;
		void *np = realloc(f->cmds, ncap * sizeof(*f->cmds));

		if (np == NULL)
			return VPP_ENOMEM;
		f->cmds = np;
		f->cap_cmds = ncap;
	}
	c = &f->cmds[f->n_cmds++];
	c->slot = s;
	c->seq = f->next_seq[s]++;
	c->power_kw = p;
	c->valid_until_ms = until;
	return 0;
}

static double clampd(double x, double lo, double hi)
{
	return x < lo ? lo : (x > hi ? hi : x);
}

/* Moves the effective target towards the requested one and updates the PI
 * correction from |measured_kw| (valid when |fresh|). Returns P_adj. */
static double control(vpp_fleet *f, int64_t now, double measured_kw, int fresh, double *err_out)
{
	const vpp_dispatch_params *prm = &f->prm;
	double dt = f->has_ticked ? (double)(now - f->last_tick) / 1000.0
				  : (double)prm->tick_ms / 1000.0;
	double prev_eff = f->target_eff, err, bound;

	if (dt < 0)
		dt = 0;
	if ((f->target != 0 || f->target_eff != 0) && now >= f->target_until) {
		/* The operator's setpoint is over: the fleet returns to 0 now,
		 * not at its ramp rate (nothing was asked for beyond it), be
		 * it a setpoint of 0 whose ramp had not got there yet. */
		f->target = 0;
		f->target_eff = 0;
		f->target_changed_at = now;
	} else if (f->target_ramp > 0) {
		/* From the first tick too: a setpoint carried on across a
		 * restart ramps from 0, where the fleet is, not in one step. */
		double step = f->target_ramp * dt;

		f->target_eff = clampd(f->target, f->target_eff - step, f->target_eff + step);
	} else {
		f->target_eff = f->target;
	}
	if (fabs(f->target_eff - prev_eff) > prm->settle_tol_frac * fabs(prev_eff) ||
	    (f->target_eff == 0) != (prev_eff == 0))
		f->target_changed_at = now;

	/* The fleet was asked for prev_eff on the last tick; fresh telemetry
	 * shows what it delivers. */
	err = prev_eff - measured_kw;
	/* Reported as it is; only the correction needs fresh telemetry. */
	*err_out = err;
	bound = prm->max_correction_frac * fabs(f->target_eff);
	/* A bias learnt while discharging says nothing of charging (and the
	 * other way round): kept, it would push the new direction the wrong
	 * way until the fleet settled. */
	if (prev_eff * f->target_eff < 0)
		f->integ = 0;
	if (f->target_eff == 0) {
		f->integ = 0;
		f->correction = 0;
	} else if (fresh && f->has_ticked && now - f->target_changed_at >= prm->settle_ms) {
		/* Anti-windup: no integration towards a limit the fleet is
		 * already pinned at, and the integral never exceeds the bound. */
		if (!(f->sat_dir != 0 && err * f->sat_dir > 0))
			f->integ += prm->ki_per_s * err * dt;
		f->integ = clampd(f->integ, -bound, bound);
		f->correction = clampd(prm->kp * err + f->integ, -bound, bound);
	} else {
		/* Still settling after a change: the response lag would read as
		 * an error. Hold the learnt bias only. */
		f->integ = clampd(f->integ, -bound, bound);
		f->correction = f->integ;
	}
	return f->target_eff + f->correction;
}

int vpp_fleet_tick(vpp_fleet *f, int64_t now, vpp_tick_output *out)
{
	const vpp_dispatch_params *prm = &f->prm;
	vpp_fleet_status *st = &out->status;
	vpp_alloc_input in;
	vpp_alloc_result res;
	vpp_estimate measured;
	double p_adj, err, commanded = 0, bias;
	int64_t until, short_until, u, end;
	int in_force;
	uint32_t s;
	void *tmp;
	pass ps;
	int rv;

	/* Setpoints not acked in time: their share moves to others now. */
	for (s = 0; s < f->hwm; s++) {
		if ((f->flags[s] & (F_USED | F_PENDING)) != (F_USED | F_PENDING) ||
		    now - f->c_at[s] <= prm->ack_timeout_ms)
			continue;
		f->flags[s] &= ~(uint32_t)F_PENDING;
		f->ack_score[s] *= prm->ack_miss_factor;
		if ((rv = vpp__event(f, VPP_EVENT_ACK_MISSED, s, now, (double)f->c_seq[s])) != 0)
			return rv;
	}

	prepare(f, now, &ps);
	/* How fast devices answer a new setpoint is a model shared by the
	 * whole fleet, so its error does not average out over devices: the
	 * predicted move counts as one correlated term. */
	ps.measured.var += 0.25 * ps.shift * ps.shift;
	vpp__acc_estimate(&ps.measured, &measured);
	p_adj = control(f, now, measured.value, ps.n_fresh > 0, &err);

	in.n = f->hwm;
	in.a = f->x_a;
	in.e_dis = f->x_edis;
	in.e_chg = f->x_echg;
	in.lo = f->x_lo;
	in.hi = f->x_hi;
	if ((rv = vpp_allocate(f->al, &in, p_adj, f->x_p, &res)) != 0)
		return rv;
	f->sat_dir = res.feasible ? 0 : (res.shortfall_kw > 0 ? 1 : -1);

	/* No lease outlives the operator's setpoint: should vppd die, every
	 * battery stops when the operator asked, not up to lease_ms later.
	 * With no setpoint in force (it ended, or there never was one), a
	 * battery still commanded away from 0 (ramping down within its
	 * limits) holds that for one renewal window and a tick at most. */
	end = f->lease_end_set ? f->lease_end : f->target_until;
	in_force = end > now;
	until = now + prm->lease_ms;
	if (in_force && end < until)
		until = end;
	short_until = now + prm->renew_before_ms + prm->tick_ms;
	if (short_until > until)
		short_until = until;
	f->n_cmds = 0;
	for (s = 0; s < f->hwm; s++) {
		uint32_t fl = f->flags[s];
		double p, db;

		if ((fl & (F_USED | F_CONNECTED)) != (F_USED | F_CONNECTED))
			continue;
		p = f->x_a[s] > 0 ? f->x_p[s] : 0;
		commanded += p;
		db = fmax(prm->deadband_kw, prm->deadband_frac * vpp__max_rating(&f->rt[s]));
		/* Within the deadband of 0 a command is as good as 0: a long
		 * lease, not one re-sent every tick to every device. */
		u = !in_force && fabs(p) > db ? short_until : until;
		/* Within the deadband: sent again only when the lease outlives
		 * the operator's (new, earlier) end, or is about to end and a
		 * renewal would extend it. */
		if ((fl & F_HAS_CMD) && fabs(p - f->c_p[s]) <= db && f->c_until[s] <= u &&
		    (f->c_until[s] - now > prm->renew_before_ms || f->c_until[s] == u))
			continue;
		if ((rv = push_command(f, s, p, u)) != 0)
			return rv;
	}

	memset(st, 0, sizeof(*st));
	st->now_ms = now;
	st->target_kw = f->target;
	st->target_eff_kw = f->target_eff;
	st->adjusted_kw = p_adj;
	st->correction_kw = f->correction;
	st->commanded_kw = commanded;
	st->tracking_error_kw = err;
	/* What the fleet cannot give of the effective target: its limits,
	 * moved by the bias the integral has learnt (it delivers that much
	 * less than the model expects). Not P_adj's shortfall: at a limit the
	 * proportional term adds the shortfall to P_adj once more. */
	bias = ps.n_dispatched > 0 ? f->integ : 0; /* none to apply it to */
	st->shortfall_kw =
		f->target_eff - clampd(f->target_eff, res.min_kw - bias, res.max_kw - bias);
	st->measured_kw = measured;
	vpp__acc_estimate(&ps.dis, &st->discharge_headroom_kw);
	vpp__acc_estimate(&ps.chg, &st->charge_headroom_kw);
	vpp__acc_estimate(&ps.energy, &st->stored_energy_kwh);
	if (st->stored_energy_kwh.lower < 0)
		st->stored_energy_kwh.lower = 0;
	expected_delivery(f, f->x_p, &st->expected_kw);
	st->n_devices = ps.n_devices;
	st->n_online = ps.n_online;
	st->n_stale = ps.n_stale;
	st->n_offline = ps.n_offline;
	st->n_degraded = ps.n_degraded;
	st->n_dispatched = ps.n_dispatched;
	st->n_saturated = res.n_saturated;
	st->n_commands = (uint32_t)f->n_cmds;
	st->feasible = res.feasible;

	f->agg_a = ps.n_dispatched > 0 ? 1 : 0;
	f->agg_lo = res.min_kw;
	f->agg_hi = res.max_kw;
	f->agg_edis = ps.agg_edis;
	f->agg_echg = ps.agg_echg;

	/* Hand out the events gathered since the last tick. */
	tmp = f->ev_out;
	f->ev_out = f->ev_pending;
	f->ev_pending = tmp;
	f->n_ev_out = f->n_ev_pending;
	{
		size_t c = f->cap_ev_out;

		f->cap_ev_out = f->cap_ev_pending;
		f->cap_ev_pending = c;
	}
	f->n_ev_pending = 0;

	f->last_tick = now;
	f->has_ticked = 1;

	out->commands = f->cmds;
	out->n_commands = f->n_cmds;
	out->events = f->ev_out;
	out->n_events = f->n_ev_out;
	return 0;
}

int vpp_fleet_preview(vpp_fleet *f, double target_kw, int64_t now_ms, vpp_preview *out)
{
	vpp_alloc_input in;
	vpp_alloc_result res;
	pass ps;
	int rv;

	if (!isfinite(target_kw))
		return VPP_EINVAL;
	prepare(f, now_ms, &ps);
	in.n = f->hwm;
	in.a = f->x_a;
	in.e_dis = f->x_edis;
	in.e_chg = f->x_echg;
	in.lo = f->x_lo;
	in.hi = f->x_hi;
	if ((rv = vpp_allocate(f->al, &in, target_kw, f->x_p2, &res)) != 0)
		return rv;
	memset(out, 0, sizeof(*out));
	expected_delivery(f, f->x_p2, &out->expected_kw);
	out->shortfall_kw = res.shortfall_kw;
	out->n_saturated = res.n_saturated;
	out->n_dispatched = ps.n_dispatched;
	out->min_kw = res.min_kw;
	out->max_kw = res.max_kw;
	/* The allocator gives fuller batteries more, so the fleet empties
	 * (or fills) about together: its energy over the power it gives. */
	double kw = out->expected_kw.value, kwh = kw > 0 ? ps.e_give : ps.e_take;
	out->sustain_s = fabs(kw) > 1e-9 ? kwh / fabs(kw) * 3600.0 : INFINITY;
	return 0;
}
