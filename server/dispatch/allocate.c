/* The allocator of DESIGN.md §6: an exact solution of the separable,
 * box-constrained quadratic program by breakpoint search.
 *
 * For a multiplier mu the setpoints are p_i(mu) = clamp(mu w_i, lo_i, hi_i)
 * with w_i = a_i^2 e_i, and the expected delivery D(mu) = sum a_i p_i(mu) is
 * continuous, non-decreasing and piecewise linear with breakpoints lo_i/w_i
 * and hi_i/w_i. We keep an interval (L, U) known to contain the solution and
 * the devices whose regime (at lo, free, at hi) is still undecided inside it.
 * Each round evaluates D in one pass at a few pivots (quantiles of a sample of
 * the breakpoints inside the interval, plus a regula falsi guess), narrows the
 * interval to the bracketing pair, and retires the devices that no longer
 * have a breakpoint inside, folding them into the running sums C (fixed
 * part) and W (slope). When no breakpoint is left, D is linear on (L, U) and
 * mu = (target - C) / W exactly. Each round cuts the breakpoints by about the
 * number of pivots, so the work is O(n) plus a few passes; round 0 reads the
 * caller's arrays directly so that only undecided devices are ever copied. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "vpp/allocate.h"
#include "vpp/error.h"

/* A device still undecided inside (L, U); contiguous so rounds stream. */
typedef struct active {
	double a, w, lo, hi, tl, th;
} active;

struct vpp_allocator {
	active *act;
	double *bp;
	size_t cap; /* devices; bp holds 2 * cap */
};

int vpp_allocator_new(vpp_allocator **ret)
{
	vpp_allocator *al = calloc(1, sizeof(*al));

	if (al == NULL)
		return VPP_ENOMEM;
	*ret = al;
	return 0;
}

void vpp_allocator_free(vpp_allocator *al)
{
	if (al == NULL)
		return;
	free(al->act);
	free(al->bp);
	free(al);
}

static int reserve(vpp_allocator *al, size_t n)
{
	active *act;
	double *bp;

	if (n <= al->cap)
		return 0;
	if (n > SIZE_MAX / (2 * sizeof(active)))
		return VPP_ENOMEM;
	act = malloc(n * sizeof(*act));
	bp = malloc(2 * n * sizeof(*bp));
	if (act == NULL || bp == NULL) {
		free(act);
		free(bp);
		return VPP_ENOMEM;
	}
	free(al->act);
	free(al->bp);
	al->act = act;
	al->bp = bp;
	al->cap = n;
	return 0;
}

static inline double clampd(double x, double lo, double hi)
{
	return x < lo ? lo : (x > hi ? hi : x);
}

int vpp_device_ratings_check(const vpp_device_ratings *r)
{
	if (!isfinite(r->rated_charge_kw) || !isfinite(r->rated_discharge_kw) ||
	    !isfinite(r->capacity_kwh) || !isfinite(r->min_soc) || !isfinite(r->max_soc) ||
	    !isfinite(r->ramp_kw_per_s))
		return VPP_EINVAL;
	if (r->rated_charge_kw < 0 || r->rated_discharge_kw < 0 || r->capacity_kwh < 0 ||
	    r->ramp_kw_per_s < 0)
		return VPP_EINVAL;
	if (r->min_soc < 0 || r->max_soc > 1 || r->min_soc > r->max_soc)
		return VPP_EINVAL;
	return 0;
}

int vpp_device_limits_compute(const vpp_device_ratings *r, double soc, double power_kw,
			      double horizon_s, double eps_kwh, vpp_device_limits *out)
{
	double h, e_dis, e_chg, lo, hi;

	if (!isfinite(soc) || !isfinite(power_kw) || !isfinite(horizon_s) || !(horizon_s > 0) ||
	    !isfinite(eps_kwh) || !(eps_kwh > 0))
		return VPP_EINVAL;
	soc = clampd(soc, 0, 1);
	h = horizon_s / 3600.0;
	e_dis = fmax((soc - r->min_soc) * r->capacity_kwh, 0);
	e_chg = fmax((r->max_soc - soc) * r->capacity_kwh, 0);
	hi = fmin(r->rated_discharge_kw, e_dis / h);
	lo = -fmin(r->rated_charge_kw, e_chg / h);
	if (r->ramp_kw_per_s > 0) {
		double rlo = power_kw - r->ramp_kw_per_s * horizon_s;
		double rhi = power_kw + r->ramp_kw_per_s * horizon_s;

		if (rhi < lo) {
			hi = lo; /* must come up to the charge limit */
		} else if (rlo > hi) {
			lo = hi; /* must come down to the discharge limit */
		} else {
			lo = fmax(lo, rlo);
			hi = fmin(hi, rhi);
		}
	}
	out->lo_kw = lo;
	out->hi_kw = hi;
	out->e_dis_kwh = fmax(e_dis, eps_kwh);
	out->e_chg_kwh = fmax(e_chg, eps_kwh);
	return 0;
}

static int cmpd(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

enum { NPIV = 8 };

/* pick_pivots may return NPIV - 1 quantiles plus the interpolated guess. */

/* Picks up to NPIV - 1 pivots among the breakpoints |bp| (all strictly
 * inside the interval): evenly spaced quantiles of a sample, so that one
 * pass over the devices cuts the breakpoints left by about NPIV. Adds
 * |guess| (regula falsi from the last round) when it lies inside (L, U). Writes them ascending and
 * distinct to |piv|; returns how many (>= 1 when nb >= 1). */
static int pick_pivots(double *bp, size_t nb, double guess, double L, double U, double *piv)
{
	enum { SAMPLE = 255 };
	double smp[SAMPLE + 1];
	size_t ns, i;
	int np = 0, k;

	if (nb <= SAMPLE) {
		memcpy(smp, bp, nb * sizeof(double));
		ns = nb;
	} else {
		size_t stride = nb / SAMPLE;

		for (i = 0; i < SAMPLE; i++)
			smp[i] = bp[i * stride + stride / 2];
		ns = SAMPLE;
	}
	qsort(smp, ns, sizeof(double), cmpd);
	for (k = 1; k < NPIV && ns > 0; k++) {
		double v = smp[(ns * (size_t)k) / NPIV];

		if (np == 0 || v > piv[np - 1])
			piv[np++] = v;
	}
	if (guess > L && guess < U) {
		for (k = 0; k < np && piv[k] < guess; k++)
			;
		if (k == np || piv[k] != guess) {
			memmove(&piv[k + 1], &piv[k], (size_t)(np - k) * sizeof(double));
			piv[k] = guess;
			np++;
		}
	}
	return np;
}

/* Evaluation passes always work on NPIV pivots so that the compiler keeps
 * the accumulators in (vector) registers; |np| real ones are padded by
 * repeating the last, which changes nothing. */
static void pad_pivots(double *piv, int np)
{
	for (int k = np; k < NPIV; k++)
		piv[k] = piv[np - 1];
}

/* Retires from act[0..m) every device whose regime is fixed on (L, U),
 * folding it into |*C| / |*W|, and writes the breakpoints of the devices
 * that remain (those strictly inside the interval) to |bp|, their number to
 * |*nb|. Returns how many devices remain. Branch-free: which way a device
 * goes is unpredictable, and mispredictions would dominate the cost. */
static size_t retire(active *act, size_t m, double L, double U, double *C, double *W, double *bp,
		     size_t *nb)
{
	size_t j, k = 0, b = 0;
	double c = *C, w = *W;

	for (j = 0; j < m; j++) {
		const active d = act[j];
		int at_hi = d.th <= L, at_lo = d.tl >= U, free_ = (d.tl <= L) & (d.th >= U);
		int in_l = (d.tl > L) & (d.tl < U), in_h = (d.th > L) & (d.th < U);

		c += at_hi ? d.a * d.hi : 0.0;
		c += at_lo ? d.a * d.lo : 0.0;
		w += free_ ? d.a * d.w : 0.0;
		act[k] = d;
		k += !(at_hi | at_lo | free_);
		bp[b] = d.tl;
		b += (size_t)in_l;
		bp[b] = d.th;
		b += (size_t)in_h;
	}
	*C = c;
	*W = w;
	*nb = b;
	return k;
}

int vpp_allocate(vpp_allocator *al, const vpp_alloc_input *in, double target_kw, double *p,
		 vpp_alloc_result *res)
{
	const size_t n = in->n;
	double dmin = 0, dmax = 0, d0 = 0, mu, expected = 0;
	uint32_t n_inc = 0, n_sat = 0;
	int dir, rv;
	size_t i;

	if (!isfinite(target_kw))
		return VPP_EINVAL;
	for (i = 0; i < n; i++) {
		double a = in->a[i], lo = in->lo[i], hi = in->hi[i];

		if (isnan(a))
			return VPP_EINVAL;
		if (!(a > 0))
			continue;
		if (!isfinite(a) || !isfinite(lo) || !isfinite(hi) || lo > hi ||
		    !isfinite(in->e_dis[i]) || !isfinite(in->e_chg[i]) || !(in->e_dis[i] > 0) ||
		    !(in->e_chg[i] > 0))
			return VPP_EINVAL;
		dmin += a * lo;
		dmax += a * hi;
		d0 += a * clampd(0, lo, hi);
		n_inc++;
	}

	if (n_inc == 0 || target_kw == d0) {
		dir = 0;
		mu = 0;
	} else if (target_kw >= dmax) {
		dir = 1;
		mu = INFINITY;
	} else if (target_kw <= dmin) {
		dir = -1;
		mu = -INFINITY;
	} else {
		/* Search mu on the side of zero the target lies on: the weight
		 * uses the discharge energy for mu > 0 and the charge room for
		 * mu < 0, which is what makes the objective's gradient match the
		 * sign of each p_i. */
		double L, U, C = 0, W = 0, guess = NAN;
		size_t m = 0, nb = 0;
		int found = 0;

		dir = target_kw > d0 ? 1 : -1;
		L = dir > 0 ? 0 : -INFINITY;
		U = dir > 0 ? INFINITY : 0;
		if ((rv = reserve(al, n_inc)) != 0)
			return rv;
		/* Round 0 runs on the caller's arrays: pivots from a sample of
		 * the devices' breakpoints, one evaluation pass, and only the
		 * devices still undecided are copied. On a large fleet that is
		 * a small fraction, and memory traffic is what costs. */
		{
			double piv[NPIV + 1], D[NPIV + 1] = {0};
			size_t stride = n_inc > 255 ? n / 255 : 1, ns = 0;
			int np, k, below = -1;

			for (i = 0; i < n && ns < 2 * 255; i += stride) {
				double a = in->a[i], w, tl, th;

				if (!(a > 0))
					continue;
				w = a * a * (dir > 0 ? in->e_dis[i] : in->e_chg[i]);
				tl = in->lo[i] / w;
				th = in->hi[i] / w;
				al->bp[ns] = tl;
				ns += (size_t)((tl > L) & (tl < U));
				al->bp[ns] = th;
				ns += (size_t)((th > L) & (th < U));
			}
			np = ns > 0 ? pick_pivots(al->bp, ns, NAN, L, U, piv) : 0;
			for (k = 0; k < NPIV; k++)
				D[k] = 0;
			if (np > 0)
				pad_pivots(piv, np);
			for (i = 0; i < n && np > 0; i++) {
				double a = in->a[i], w, lo = in->lo[i], hi = in->hi[i];

				if (!(a > 0))
					continue;
				w = a * a * (dir > 0 ? in->e_dis[i] : in->e_chg[i]);
				for (k = 0; k < NPIV; k++) {
					double x = piv[k] * w, c = x < lo ? lo : x;

					c = c > hi ? hi : c;
					D[k] += a * c;
				}
			}
			for (k = 0; k < np; k++) {
				if (D[k] == target_kw) {
					mu = piv[k];
					found = 1;
					break;
				}
				if (D[k] < target_kw)
					below = k;
			}
			if (np > 0 && !found) {
				if (below >= 0)
					L = piv[below];
				if (below + 1 < np)
					U = piv[below + 1];
				/* Regula falsi between the bracketing pivots: exact
				 * when no breakpoint lies between them. */
				if (below >= 0 && below + 1 < np)
					guess = L + (target_kw - D[below]) * (U - L) /
							    (D[below + 1] - D[below]);
			}
			/* Keep the undecided devices; fold the rest. */
			for (i = 0; i < n && !found; i++) {
				double a = in->a[i];
				active *d;

				if (!(a > 0))
					continue;
				{
					/* Compare by multiplying: no division for the
					 * many devices that are decided already. */
					double w = a * a * (dir > 0 ? in->e_dis[i] : in->e_chg[i]);
					double lo = in->lo[i], hi = in->hi[i];
					double lw = L * w, uw = U * w;
					int at_hi = hi <= lw, at_lo = lo >= uw;
					int free_ = (lo <= lw) & (hi >= uw), keep;

					C += at_hi ? a * hi : 0.0;
					C += at_lo ? a * lo : 0.0;
					W += free_ ? a * w : 0.0;
					keep = !(at_hi | at_lo | free_);
					if (keep) {
						d = &al->act[m++];
						d->a = a;
						d->w = w;
						d->lo = lo;
						d->hi = hi;
						d->tl = lo / w;
						d->th = hi / w;
					}
				}
			}
		}
		if (!found)
			m = retire(al->act, m, L, U, &C, &W, al->bp, &nb);
		while (m > 0) {
			double piv[NPIV + 1], D[NPIV + 1] = {0};
			int np, k, below = -1;
			size_t j;

			np = pick_pivots(al->bp, nb, guess, L, U, piv);
			if (np == 0)
				break; /* cannot happen after retire(); be safe */
			pad_pivots(piv, np);
			for (k = 0; k < NPIV; k++)
				D[k] = 0;
			for (j = 0; j < m; j++) {
				const active *d = &al->act[j];

				for (k = 0; k < NPIV; k++) {
					double x = piv[k] * d->w, c = x < d->lo ? d->lo : x;

					c = c > d->hi ? d->hi : c;
					D[k] += d->a * c;
				}
			}
			for (k = 0; k < np; k++)
				D[k] += C + piv[k] * W;
			for (k = 0; k < np; k++) {
				if (D[k] == target_kw) {
					mu = piv[k];
					found = 1;
					break;
				}
				if (D[k] < target_kw)
					below = k;
			}
			if (found)
				break;
			/* D is non-decreasing: the solution lies between the last
			 * pivot below the target and the next one. */
			if (below >= 0)
				L = piv[below];
			if (below + 1 < np)
				U = piv[below + 1];
			/* Regula falsi between the bracketing pivots lands on the
			 * solution once no breakpoint is left between them. */
			guess = below >= 0 && below + 1 < np
					? L + (target_kw - D[below]) * (U - L) / (D[below + 1] - D[below])
					: NAN;
			m = retire(al->act, m, L, U, &C, &W, al->bp, &nb);
		}
		if (!found) {
			if (m > 0) { /* defensive: fold what is left at mid-interval */
				double x = isfinite(L) && isfinite(U) ? 0.5 * (L + U)
								      : (isfinite(L) ? L : U);
				for (size_t j = 0; j < m; j++) {
					const active *d = &al->act[j];

					if (x * d->w >= d->hi)
						C += d->a * d->hi;
					else if (x * d->w <= d->lo)
						C += d->a * d->lo;
					else
						W += d->a * d->w;
				}
			}
			mu = W > 0 ? (target_kw - C) / W : (isfinite(L) ? L : U);
			/* Rounding must not carry mu out of the bracket. */
			if (mu < L)
				mu = L;
			if (mu > U)
				mu = U;
		}
	}

	for (i = 0; i < n; i++) {
		double a = in->a[i], v;

		if (!(a > 0)) {
			p[i] = 0;
			continue;
		}
		if (mu == INFINITY)
			v = in->hi[i];
		else if (mu == -INFINITY)
			v = in->lo[i];
		else
			v = clampd(mu * a * a * (mu > 0 ? in->e_dis[i] : in->e_chg[i]), in->lo[i],
				   in->hi[i]);
		p[i] = v;
		expected += a * v;
		if ((dir > 0 && v == in->hi[i]) || (dir < 0 && v == in->lo[i]))
			n_sat++;
	}

	if (res != NULL) {
		int feasible = n_inc == 0 ? target_kw == 0 : (target_kw >= dmin && target_kw <= dmax);

		res->target_kw = target_kw;
		res->expected_kw = expected;
		res->shortfall_kw = feasible ? 0 : target_kw - expected;
		res->min_kw = dmin;
		res->max_kw = dmax;
		res->mu = mu;
		res->n_included = n_inc;
		res->n_saturated = n_sat;
		res->feasible = feasible;
	}
	return 0;
}
