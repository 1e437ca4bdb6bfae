/* The estimator (DESIGN.md §5): telemetry in, per-device SoC and power
 * estimates that age between samples, availability from staleness, and a
 * reliability score from acks and tracking with a two-sided CUSUM on the
 * normalised tracking residual. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch_int.h"
#include "vpp/error.h"

static int in_unit(double x)
{
	return isfinite(x) && x >= 0 && x <= 1;
}

double vpp__max_rating(const vpp_device_ratings *r)
{
	return fmax(r->rated_charge_kw, r->rated_discharge_kw);
}

/* The expected fraction of a command the device delivers, from how its
 * measured power tracked its commands and whether it accepts them (the
 * setpoints it refused; accepted acks bring that back).
 * Late acks do not enter it: a late ack says little about delivery, and
 * when a stall delays every ack at once, counting them would have every
 * device expected to give half and be commanded twice as much; they move
 * shares between devices instead (w_ack). */
double vpp__delivery_fraction(const vpp_fleet *f, uint32_t s)
{
	double tr = f->track_ratio[s];

	tr = (tr > 1 ? 1 : tr) * f->accept_score[s];
	return tr < f->prm.min_reliability ? f->prm.min_reliability : tr;
}

/* The score reported as the device's reliability: acks on time and
 * tracking together. */
double vpp__reliability(const vpp_fleet *f, uint32_t s)
{
	double tr = f->track_ratio[s], r;

	tr = tr < 0 ? 0 : (tr > 1 ? 1 : tr);
	r = f->ack_score[s] * tr;
	return r < f->prm.min_reliability ? f->prm.min_reliability : r;
}

int vpp__event(vpp_fleet *f, vpp_event_type type, uint32_t slot, int64_t at, double value)
{
	vpp_device_event *e;

	if (f->n_ev_pending == f->cap_ev_pending) {
		size_t ncap = f->cap_ev_pending ? 2 * f->cap_ev_pending : 16;
		void *np = realloc(f->ev_pending, ncap * sizeof(*f->ev_pending));

		if (np == NULL)
			return VPP_ENOMEM;
		f->ev_pending = np;
		f->cap_ev_pending = ncap;
	}
	e = &f->ev_pending[f->n_ev_pending++];
	e->type = type;
	e->slot = slot;
	/* ids are at most VPP_DEVICE_ID_MAX bytes: checked on add. */
	strcpy(e->id, f->id[slot]);
	e->at_ms = at;
	e->value = value;
	return 0;
}

void vpp__derive(const vpp_fleet *f, uint32_t s, int64_t now, vpp__derived *d)
{
	const vpp_dispatch_params *prm = &f->prm;
	const vpp_device_ratings *rt = &f->rt[s];
	uint32_t fl = f->flags[s];
	double dt_s, dt_h, growth, psig2, socsig2, cap;
	int64_t age;

	if (!(fl & F_HAS_SAMPLE)) {
		/* Nothing known yet: a wide prior, not dispatched. */
		d->state = (fl & F_CONNECTED) ? VPP_DEVICE_STALE : VPP_DEVICE_OFFLINE;
		d->avail = 0;
		d->a = 0;
		d->soc = 0.5 * (rt->min_soc + rt->max_soc);
		d->soc_sigma = 0.5;
		d->p = 0;
		d->p_sigma = vpp__max_rating(rt);
		return;
	}

	d->shift = 0;
	dt_s = now > f->t_at[s] ? (double)(now - f->t_at[s]) / 1000.0 : 0;
	dt_h = dt_s / 3600.0;
	growth = prm->power_sigma_growth * vpp__max_rating(rt);
	d->p = f->t_p[s];
	psig2 = f->t_psig[s] * f->t_psig[s] + growth * growth * dt_s;
	/* A setpoint moves the device towards it with the response time
	 * constant; the part of that move the sample may not show yet (it
	 * was measured before, or soon after, the setpoint went out) is
	 * predicted from the sample's time to now. */
	if ((fl & F_HAS_CMD) && now > f->c_prev_at[s] &&
	    f->c_prev_at[s] > f->t_at[s] - 3 * (int64_t)prm->response_tau_ms) {
		double want = f->c_p[s] * fmin(f->track_ratio[s], 1);
		double seen = f->t_at[s] > f->c_prev_at[s]
				      ? 1 - exp(-(double)(f->t_at[s] - f->c_prev_at[s]) /
						prm->response_tau_ms)
				      : 0;
		double by_now = 1 - exp(-(double)(now - f->c_prev_at[s]) / prm->response_tau_ms);
		double frac = by_now > seen ? (by_now - seen) / (1 - seen) : 0;
		double shift = (want - d->p) * frac;

		d->p += shift;
		d->shift = shift;
		psig2 += 0.25 * shift * shift;
	}
	d->p_sigma = sqrt(psig2);

	cap = rt->capacity_kwh;
	d->soc = f->t_soc[s];
	socsig2 = f->t_socsig[s] * f->t_socsig[s] +
		  prm->soc_sigma_growth_per_h * prm->soc_sigma_growth_per_h * dt_h * dt_h;
	if (cap > 0) {
		d->soc -= d->p * dt_h / cap;
		socsig2 += (d->p_sigma * dt_h / cap) * (d->p_sigma * dt_h / cap);
	}
	d->soc = d->soc < 0 ? 0 : (d->soc > 1 ? 1 : d->soc);
	d->soc_sigma = sqrt(socsig2);

	if (!(fl & F_CONNECTED)) {
		d->state = VPP_DEVICE_OFFLINE;
		d->avail = 0;
		d->a = 0;
		return;
	}
	/* Freshness is of the power reading: samples that only report a
	 * sensor fault keep the session alive but say nothing of what the
	 * battery delivers, so they age it like silence. */
	age = now - f->t_precv[s];
	if (age <= prm->stale_after_ms) {
		d->state = VPP_DEVICE_ONLINE;
		d->avail = 1;
	} else {
		d->state = VPP_DEVICE_STALE;
		d->avail = age > prm->stale_limit_ms
				   ? 0
				   : exp(-(double)(age - prm->stale_after_ms) /
					 (double)prm->stale_decay_ms);
	}
	d->a = d->avail > 0 ? d->avail * vpp__delivery_fraction(f, s) : 0;
	d->w_ack = fmax(f->ack_score[s], prm->min_reliability);
}

/* Updates the tracking ratio and the CUSUM of slot |s| from a sample of
 * power |meas| (sigma |psig|) taken at server time |at|. */
static int track(vpp_fleet *f, uint32_t s, double meas, double psig, int64_t at)
{
	const vpp_dispatch_params *prm = &f->prm;
	double cmd = f->c_p[s], prev = f->c_prev[s], r, band, sig, z, ratio = NAN;
	int informative, rv;

	if (!(f->flags[s] & F_HAS_CMD) || at < f->c_prev_at[s])
		return 0; /* measured before the setpoint in effect reached it */
	if (isnan(prev)) {
		/* From an unknown start: judged once it has had the time to
		 * respond, from then on as settled. */
		if ((double)(at - f->c_prev_at[s]) < 3 * prm->response_tau_ms)
			return 0;
		prev = f->c_prev[s] = cmd;
	}
	/* While the device is still moving from the previous setpoint, a
	 * residual on that side is expected, up to the decaying step. */
	band = fabs(cmd - prev) * exp(-(double)(at - f->c_prev_at[s]) / prm->response_tau_ms);
	r = meas - cmd;
	if ((prev - cmd) * r > 0)
		r = r > 0 ? fmax(r - band, 0) : fmin(r + band, 0);
	informative = fabs(cmd) >= prm->track_min_frac * vpp__max_rating(&f->rt[s]) && cmd != 0;
	if (!informative) {
		/* Near 0 a battery's own draw (tens of watts of standby) is not
		 * a failure to follow: only what lies beyond the informative
		 * band counts, so an idle fleet is not flagged degraded one by
		 * one, while one stuck discharging at 0 kW still is. */
		double dead = prm->track_min_frac * vpp__max_rating(&f->rt[s]);
		r = r > 0 ? fmax(r - dead, 0) : fmin(r + dead, 0);
	}
	sig = sqrt(psig * psig + (prm->track_tol_frac * cmd) * (prm->track_tol_frac * cmd) +
		   prm->track_tol_kw * prm->track_tol_kw);
	z = r / sig;
	if (informative && band < sig) {
		ratio = meas / cmd;
		ratio = ratio < 0 ? 0 : (ratio > 1.5 ? 1.5 : ratio);
		f->track_ratio[s] += prm->track_alpha * (ratio - f->track_ratio[s]);
	}

	if (!(f->flags[s] & F_DEGRADED)) {
		f->cs_pos[s] = fmax(0, f->cs_pos[s] + z - prm->cusum_k);
		f->cs_neg[s] = fmax(0, f->cs_neg[s] - z - prm->cusum_k);
		if (f->cs_pos[s] > prm->cusum_h || f->cs_neg[s] > prm->cusum_h) {
			/* A change point: forget the history before it so the
			 * ratio (and so the reliability) reflects the new
			 * behaviour at once. */
			f->flags[s] |= F_DEGRADED;
			f->cs_pos[s] = f->cs_neg[s] = 0;
			f->good_streak[s] = 0;
			if (!isnan(ratio))
				f->track_ratio[s] = ratio;
			else if (cmd != 0)
				f->track_ratio[s] = fmin(f->track_ratio[s], 0.5);
			if ((rv = vpp__event(f, VPP_EVENT_DEGRADED, s, at, f->track_ratio[s])) != 0)
				return rv;
		}
		return 0;
	}
	if (informative && fabs(z) < 1)
		f->good_streak[s]++;
	else if (informative || fabs(z) >= 1)
		f->good_streak[s] = 0;
	if (f->good_streak[s] >= prm->recover_samples) {
		f->flags[s] &= ~(uint32_t)F_DEGRADED;
		f->good_streak[s] = 0;
		f->cs_pos[s] = f->cs_neg[s] = 0;
		if (!isnan(ratio))
			f->track_ratio[s] = ratio;
		if ((rv = vpp__event(f, VPP_EVENT_RECOVERED, s, at, f->track_ratio[s])) != 0)
			return rv;
	}
	return 0;
}

int vpp_fleet_telemetry(vpp_fleet *f, uint32_t slot, const vpp_telemetry *t)
{
	const vpp_dispatch_params *prm = &f->prm;
	int good_p = !(t->quality & VPP_TELEMETRY_BAD_POWER);
	int good_soc = !(t->quality & VPP_TELEMETRY_BAD_SOC);
	double psig, socsig;
	int64_t at;

	if (!vpp__slot_ok(f, slot))
		return VPP_ENOENT;
	if ((good_p && (!isfinite(t->power_kw) || isnan(t->power_sigma_kw))) ||
	    (good_soc && (!in_unit(t->soc) || isnan(t->soc_sigma))))
		return VPP_EINVAL;
	if ((f->flags[slot] & F_HAS_SAMPLE) && t->seq <= f->t_seq[slot])
		return VPP_EEXIST;

	at = t->measured_at_ms + t->clock_offset_ms;
	if (at > t->received_at_ms)
		at = t->received_at_ms;
	if ((f->flags[slot] & F_HAS_SAMPLE) && at < f->t_at[slot])
		at = f->t_at[slot];

	psig = (t->quality & VPP_TELEMETRY_NO_POWER_SIGMA) || !(t->power_sigma_kw > 0)
		       ? prm->default_power_sigma_kw
		       : t->power_sigma_kw;
	socsig = (t->quality & VPP_TELEMETRY_NO_SOC_SIGMA) || !(t->soc_sigma > 0)
			 ? prm->default_soc_sigma
			 : t->soc_sigma;

	if (!good_p || !good_soc) {
		/* Keep the liveness, carry the unusable reading over from the
		 * previous estimate aged to this sample. */
		vpp__derived d;

		vpp__derive(f, slot, at, &d);
		if (!good_p) {
			f->t_p[slot] = d.p;
			f->t_psig[slot] = d.p_sigma;
		}
		if (!good_soc) {
			f->t_soc[slot] = d.soc;
			f->t_socsig[slot] = d.soc_sigma;
		}
	}
	if (good_p) {
		f->t_p[slot] = t->power_kw;
		f->t_psig[slot] = psig;
		f->t_precv[slot] = t->received_at_ms;
	}
	if (good_soc) {
		f->t_soc[slot] = t->soc;
		f->t_socsig[slot] = socsig;
	}
	f->t_seq[slot] = t->seq;
	f->t_at[slot] = at;
	f->t_recv[slot] = t->received_at_ms;
	f->flags[slot] |= F_HAS_SAMPLE;
	if (good_p && (f->flags[slot] & F_CONNECTED))
		return track(f, slot, t->power_kw, psig, at);
	return 0;
}

int vpp_fleet_command_sent(vpp_fleet *f, uint32_t slot, uint64_t seq, double power_kw,
			   int64_t valid_until_ms, int64_t now_ms)
{
	uint32_t fl;

	if (!vpp__slot_ok(f, slot))
		return VPP_ENOENT;
	if (!isfinite(power_kw))
		return VPP_EINVAL;
	fl = f->flags[slot];
	if (!(fl & F_HAS_CMD) || power_kw != f->c_p[slot]) {
		/* A change: remember where the device comes from and when. A
		 * renewal at the same power keeps the running transient. */
		/* With neither a command nor a sample on this session, where
		 * the device comes from is unknown (NaN): a battery that moved
		 * from another node still runs that node's lease. */
		f->c_prev[slot] = (fl & F_HAS_CMD) ? f->c_p[slot]
				  : (fl & F_HAS_SAMPLE) ? f->t_p[slot] : NAN;
		f->c_prev_at[slot] = now_ms;
	}
	f->c_p[slot] = power_kw;
	f->c_seq[slot] = seq;
	f->c_at[slot] = now_ms;
	f->c_until[slot] = valid_until_ms;
	f->flags[slot] = (fl & ~(uint32_t)F_ACKED) | F_HAS_CMD | F_PENDING;
	if (seq >= f->next_seq[slot])
		f->next_seq[slot] = seq + 1;
	return 0;
}

int vpp_fleet_ack(vpp_fleet *f, uint32_t slot, uint64_t seq, int accepted, int64_t now_ms)
{
	const vpp_dispatch_params *prm = &f->prm;

	if (!vpp__slot_ok(f, slot))
		return VPP_ENOENT;
	if (!(f->flags[slot] & F_PENDING) || seq != f->c_seq[slot])
		return 0;
	f->flags[slot] &= ~(uint32_t)F_PENDING;
	if (accepted)
		f->accept_score[slot] += prm->ack_alpha * (1 - f->accept_score[slot]);
	if (accepted && now_ms - f->c_at[slot] <= prm->ack_timeout_ms) {
		f->flags[slot] |= F_ACKED;
		f->ack_score[slot] += prm->ack_alpha * (1 - f->ack_score[slot]);
		return 0;
	}
	f->ack_score[slot] *= prm->ack_miss_factor;
	if (!accepted) {
		/* The device will not follow it: nothing is in effect, and the
		 * next tick proposes a setpoint again. A refusal is certain
		 * non-delivery: it counts against the delivery fraction too,
		 * until accepted acks bring it back. */
		f->flags[slot] &= ~(uint32_t)F_HAS_CMD;
		f->accept_score[slot] *= prm->ack_miss_factor;
	}
	return vpp__event(f, VPP_EVENT_ACK_MISSED, slot, now_ms, (double)seq);
}

int vpp_fleet_device_info(const vpp_fleet *f, uint32_t slot, int64_t now_ms,
			  vpp_device_info *out)
{
	vpp__derived d;
	uint32_t fl;

	if (!vpp__slot_ok(f, slot))
		return VPP_ENOENT;
	fl = f->flags[slot];
	vpp__derive(f, slot, now_ms, &d);
	memset(out, 0, sizeof(*out));
	out->id = f->id[slot];
	out->ratings = f->rt[slot];
	out->state = d.state;
	out->connected = !!(fl & F_CONNECTED);
	out->degraded = !!(fl & F_DEGRADED);
	vpp__estimate_single(d.soc, d.soc_sigma, f->t_at[slot], &out->soc);
	vpp__estimate_single(d.p, d.p_sigma, f->t_at[slot], &out->power_kw);
	if (out->soc.lower < 0)
		out->soc.lower = 0;
	if (out->soc.upper > 1)
		out->soc.upper = 1;
	out->last_seen_ms = (fl & F_HAS_SAMPLE) ? f->t_recv[slot] : 0;
	out->availability = d.avail;
	out->reliability = vpp__reliability(f, slot);
	out->ack_score = f->ack_score[slot];
	out->track_ratio = f->track_ratio[slot];
	if (fl & F_HAS_CMD) {
		out->setpoint_kw = f->c_p[slot];
		out->setpoint_seq = f->c_seq[slot];
		out->setpoint_valid_until_ms = f->c_until[slot];
		out->setpoint_acked = !!(fl & F_ACKED);
	}
	out->cusum_pos = f->cs_pos[slot];
	out->cusum_neg = f->cs_neg[slot];
	return 0;
}
