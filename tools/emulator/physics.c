/* One battery's physics: a setpoint (a lease) takes effect after a delay;
 * the power follows it through a first-order lag and a ramp limit, within
 * the power ratings and the SoC window; SoC integrates the delivered power
 * with charge and discharge efficiency. */
#include "physics.h"

#include <math.h>
#include <string.h>

void vpp__emul_battery_init(vpp__emul_battery *b, const vpp__emul_params *p, double soc,
                            double now_s)
{
	memset(b, 0, sizeof(*b));
	b->p = *p;
	b->soc = soc;
	b->now_s = now_s;
	b->cmd_until_s = now_s; /* no lease: local mode, 0 kW */
}

double vpp__emul_battery_commanded(const vpp__emul_battery *b)
{
	return b->now_s < b->cmd_until_s ? b->cmd_kw : 0.0;
}

double vpp__emul_battery_target(const vpp__emul_battery *b)
{
	const vpp__emul_params *p = &b->p;
	double t = vpp__emul_battery_commanded(b);
	if (p->ignore)
		t = 0.0;
	t *= p->partial_factor;
	if (t > p->rated_discharge_kw)
		t = p->rated_discharge_kw;
	if (t < -p->rated_charge_kw)
		t = -p->rated_charge_kw;
	/* A BMS refuses to go past the SoC window. */
	if (t > 0 && b->soc <= p->min_soc)
		t = 0.0;
	if (t < 0 && b->soc >= p->max_soc)
		t = 0.0;
	return t;
}

/* One integration step of |dt| seconds from b->now_s, with the command of
 * the step's start. */
static void step(vpp__emul_battery *b, double dt)
{
	const vpp__emul_params *p = &b->p;
	double target = vpp__emul_battery_target(b);
	double next = target;
	if (p->tau_s > 0)
		next = target + (b->power_kw - target) * exp(-dt / p->tau_s);
	double d = next - b->power_kw, dmax = p->ramp_kw_per_s * dt;
	if (d > dmax)
		d = dmax;
	if (d < -dmax)
		d = -dmax;
	double pw = b->power_kw + d;
	double h = dt / 3600.0;
	/* Discharging draws more from the cell than reaches the grid, charging
	 * stores less than it takes; the cell cannot leave the SoC window. */
	if (pw > 0) {
		double avail = (b->soc - p->min_soc) * p->capacity_kwh;
		if (avail < 0)
			avail = 0;
		if (pw * h / p->discharge_eff > avail)
			pw = avail * p->discharge_eff / h;
		b->soc -= pw * h / p->discharge_eff / p->capacity_kwh;
	} else if (pw < 0) {
		double room = (p->max_soc - b->soc) * p->capacity_kwh;
		if (room < 0)
			room = 0;
		if (-pw * h * p->charge_eff > room)
			pw = -room / (h * p->charge_eff);
		b->soc += -pw * h * p->charge_eff / p->capacity_kwh;
	}
	b->power_kw = pw;
	b->delivered_kwh += pw * h;
	b->now_s += dt;
}

/* Drops the oldest setpoint of the delay line. */
static void pop_pending(vpp__emul_battery *b)
{
	b->npending--;
	memmove(&b->pending[0], &b->pending[1], b->npending * sizeof(b->pending[0]));
}

/* Puts into effect every waiting setpoint whose delay has passed. */
static void apply_pending(vpp__emul_battery *b)
{
	while (b->npending > 0 && b->pending[0].at_s <= b->now_s) {
		b->cmd_kw = b->pending[0].kw;
		b->cmd_until_s = b->pending[0].until_s;
		pop_pending(b);
	}
}

void vpp__emul_battery_advance(vpp__emul_battery *b, double now_s)
{
	apply_pending(b);
	while (b->now_s < now_s) {
		/* Steps end at the events inside the interval: a delayed
		 * setpoint taking effect, a lease running out. */
		double end = now_s;
		if (b->npending > 0 && b->pending[0].at_s < end)
			end = b->pending[0].at_s;
		if (b->cmd_until_s > b->now_s && b->cmd_until_s < end)
			end = b->cmd_until_s;
		if (end - b->now_s > VPP__EMUL_MAX_STEP_S)
			end = b->now_s + VPP__EMUL_MAX_STEP_S;
		double dt = end - b->now_s;
		if (dt <= 0) {
			b->now_s = end;
		} else {
			step(b, dt);
			b->now_s = end; /* exact, without rounding drift */
		}
		apply_pending(b);
	}
}

void vpp__emul_battery_command(vpp__emul_battery *b, double kw, double until_s, double now_s)
{
	vpp__emul_battery_advance(b, now_s);
	/* Full: the newest waiting setpoint is replaced (the oldest ones are
	 * about to take effect; dropping those, a steady stream of setpoints
	 * would never let any through). */
	if (b->npending == VPP__EMUL_MAX_PENDING)
		b->npending--;
	b->pending[b->npending++] =
	    (vpp__emul_pending){.kw = kw, .until_s = until_s, .at_s = b->now_s + b->p.delay_s};
	apply_pending(b);
}

void vpp__emul_battery_measure(const vpp__emul_battery *b, vpp__emul_rng *r, double *power_kw,
                               double *soc)
{
	*power_kw = b->power_kw + b->p.noise_kw * vpp__emul_rng_normal(r);
	double s = b->soc + b->p.soc_sigma * vpp__emul_rng_normal(r);
	*soc = s < 0 ? 0 : s > 1 ? 1 : s;
}
