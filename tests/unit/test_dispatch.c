/* Unit and property tests of the dispatch core: the allocator (exactness,
 * bounds, KKT optimality, saturation, degenerate fleets), device limits, the
 * fleet table, the estimator and the controller's commands. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vpp/dispatch.h"
#include "vpp/error.h"

/* xorshift64*: deterministic random fleets. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static double urand(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (double)((rng_state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static double uniform(double lo, double hi)
{
	return lo + (hi - lo) * urand();
}

typedef struct prob {
	size_t n;
	double *a, *ed, *ec, *lo, *hi, *p;
} prob;

static void prob_alloc(prob *q, size_t n)
{
	q->n = n;
	q->a = calloc(n + 1, sizeof(double));
	q->ed = calloc(n + 1, sizeof(double));
	q->ec = calloc(n + 1, sizeof(double));
	q->lo = calloc(n + 1, sizeof(double));
	q->hi = calloc(n + 1, sizeof(double));
	q->p = calloc(n + 1, sizeof(double));
}

static void prob_free(prob *q)
{
	free(q->a);
	free(q->ed);
	free(q->ec);
	free(q->lo);
	free(q->hi);
	free(q->p);
}

/* A random fleet through the real limits computation: mixed ratings, SoC
 * at and beyond limits, ramp-limited devices away from 0, zero
 * availability. */
static void random_fleet(prob *q, size_t n)
{
	prob_alloc(q, n);
	for (size_t i = 0; i < n; i++) {
		vpp_device_ratings r;
		vpp_device_limits lim;
		double soc, power;

		r.rated_charge_kw = urand() < 0.05 ? 0 : uniform(1, 10);
		r.rated_discharge_kw = urand() < 0.05 ? 0 : uniform(1, 10);
		r.capacity_kwh = uniform(0.5, 20);
		r.min_soc = uniform(0, 0.3);
		r.max_soc = uniform(0.7, 1);
		r.ramp_kw_per_s = urand() < 0.5 ? 0 : uniform(0.1, 5);
		soc = urand() < 0.1 ? (urand() < 0.5 ? r.min_soc : r.max_soc) : urand();
		power = uniform(-10, 10);
		ck_assert_int_eq(vpp_device_limits_compute(&r, soc, power, uniform(0.2, 900),
							   1e-3, &lim),
				 0);
		q->a[i] = urand() < 0.1 ? 0 : uniform(0.01, 1);
		q->ed[i] = lim.e_dis_kwh;
		q->ec[i] = lim.e_chg_kwh;
		q->lo[i] = lim.lo_kw;
		q->hi[i] = lim.hi_kw;
	}
}

static int solve(vpp_allocator *al, prob *q, double target, vpp_alloc_result *res)
{
	vpp_alloc_input in = {q->n, q->a, q->ed, q->ec, q->lo, q->hi};

	return vpp_allocate(al, &in, target, q->p, res);
}

static double objective(const prob *q, const double *p)
{
	double f = 0;

	for (size_t i = 0; i < q->n; i++)
		if (q->a[i] > 0)
			f += p[i] * p[i] / (q->a[i] * (p[i] >= 0 ? q->ed[i] : q->ec[i]));
	return f;
}

/* Checks feasibility, exactness and the KKT conditions of a solution. */
static void check_solution(const prob *q, double target, const vpp_alloc_result *res)
{
	double sum = 0, scale = fabs(target), dmin = 0, dmax = 0;
	size_t i;

	for (i = 0; i < q->n; i++) {
		if (!(q->a[i] > 0)) {
			ck_assert(q->p[i] == 0);
			continue;
		}
		ck_assert_msg(q->p[i] >= q->lo[i] && q->p[i] <= q->hi[i],
			      "p[%zu]=%g outside [%g,%g]", i, q->p[i], q->lo[i], q->hi[i]);
		sum += q->a[i] * q->p[i];
		scale += q->a[i] * fmax(fabs(q->lo[i]), fabs(q->hi[i]));
		dmin += q->a[i] * q->lo[i];
		dmax += q->a[i] * q->hi[i];
	}
	ck_assert(fabs(sum - res->expected_kw) <= 1e-12 * (scale + 1));
	if (target >= dmin && target <= dmax && res->n_included > 0) {
		ck_assert_msg(res->feasible, "feasible target %g in [%g,%g] not met", target,
			      dmin, dmax);
		ck_assert_msg(fabs(sum - target) <= 1e-9 * fmax(fabs(target), 1e-3 * scale),
			      "sum %.17g target %.17g", sum, target);
		ck_assert(res->shortfall_kw == 0);
	} else if (res->n_included > 0) {
		ck_assert(!res->feasible);
		for (i = 0; i < q->n; i++)
			if (q->a[i] > 0)
				ck_assert(q->p[i] == (target > dmax ? q->hi[i] : q->lo[i]));
		ck_assert(fabs(res->shortfall_kw - (target - sum)) <= 1e-9 * (scale + 1));
		ck_assert(target > dmax ? res->shortfall_kw > 0 : res->shortfall_kw < 0);
		ck_assert_uint_eq(res->n_saturated, res->n_included);
		return;
	}
	if (res->n_included == 0 || !isfinite(res->mu))
		return;
	/* KKT: one multiplier mu; free devices sit at mu a^2 e, devices at hi
	 * want more, devices at lo want less. */
	for (i = 0; i < q->n; i++) {
		double a = q->a[i], w, x, tol;

		if (!(a > 0))
			continue;
		w = a * a * (res->mu >= 0 ? q->ed[i] : q->ec[i]);
		x = res->mu * w;
		tol = 1e-9 * (fabs(x) + fabs(q->lo[i]) + fabs(q->hi[i]) + 1);
		if (q->p[i] > q->lo[i] && q->p[i] < q->hi[i])
			ck_assert_msg(fabs(q->p[i] - x) <= tol, "free p %.17g vs mu w %.17g",
				      q->p[i], x);
		else if (q->p[i] == q->hi[i] && q->lo[i] < q->hi[i])
			ck_assert_msg(x >= q->hi[i] - tol, "at hi but mu w %.17g < %.17g", x,
				      q->hi[i]);
		else if (q->p[i] == q->lo[i] && q->lo[i] < q->hi[i])
			ck_assert_msg(x <= q->lo[i] + tol, "at lo but mu w %.17g > %.17g", x,
				      q->lo[i]);
	}
}

/* Moves delivery between two devices keeping sum a p: the objective must
 * not go down (global optimality of a convex problem, checked directly). */
static void check_exchange(const prob *q)
{
	double *p2 = malloc((q->n + 1) * sizeof(double));
	double f0 = objective(q, q->p);

	for (int k = 0; k < 8 && q->n >= 2; k++) {
		size_t i = (size_t)(urand() * (double)q->n), j = (size_t)(urand() * (double)q->n);
		double d, dj;

		if (i == j || !(q->a[i] > 0) || !(q->a[j] > 0))
			continue;
		d = uniform(-0.01, 0.01) * (q->hi[i] - q->lo[i] + 1e-9);
		dj = -d * q->a[i] / q->a[j];
		if (q->p[i] + d < q->lo[i] || q->p[i] + d > q->hi[i] || q->p[j] + dj < q->lo[j] ||
		    q->p[j] + dj > q->hi[j])
			continue;
		memcpy(p2, q->p, q->n * sizeof(double));
		p2[i] += d;
		p2[j] += dj;
		ck_assert_msg(objective(q, p2) >= f0 - 1e-9 * (fabs(f0) + 1),
			      "exchange improved objective");
	}
	free(p2);
}

START_TEST(alloc_random_fleets)
{
	vpp_allocator *al;
	int feasible_seen = 0, infeasible_seen = 0;

	ck_assert_int_eq(vpp_allocator_new(&al), 0);
	for (int t = 0; t < 4000; t++) {
		size_t n = (size_t)(urand() * (t % 10 == 0 ? 2000 : 120));
		vpp_alloc_result res;
		double dmin = 0, dmax = 0, target;
		prob q;

		random_fleet(&q, n);
		for (size_t i = 0; i < n; i++) {
			if (q.a[i] > 0) {
				dmin += q.a[i] * q.lo[i];
				dmax += q.a[i] * q.hi[i];
			}
		}
		/* Mostly feasible targets, some beyond either end. */
		target = uniform(dmin - 0.2 * (dmax - dmin) - 1, dmax + 0.2 * (dmax - dmin) + 1);
		ck_assert_int_eq(solve(al, &q, target, &res), 0);
		check_solution(&q, target, &res);
		check_exchange(&q);
		if (res.feasible)
			feasible_seen++;
		else
			infeasible_seen++;
		prob_free(&q);
	}
	ck_assert_int_gt(feasible_seen, 2500);
	ck_assert_int_gt(infeasible_seen, 200);
	vpp_allocator_free(al);
}
END_TEST

START_TEST(alloc_degenerate)
{
	vpp_allocator *al;
	vpp_alloc_result res;
	prob q;

	ck_assert_int_eq(vpp_allocator_new(&al), 0);

	/* Empty fleet: 0 is met, anything else is all shortfall. */
	prob_alloc(&q, 0);
	ck_assert_int_eq(solve(al, &q, 0, &res), 0);
	ck_assert(res.feasible && res.expected_kw == 0 && res.shortfall_kw == 0);
	ck_assert_int_eq(solve(al, &q, 50, &res), 0);
	ck_assert(!res.feasible && res.shortfall_kw == 50 && res.n_saturated == 0);
	prob_free(&q);

	/* One device: delivers target / a, then saturates. */
	prob_alloc(&q, 1);
	q.a[0] = 0.5;
	q.ed[0] = 10;
	q.ec[0] = 2;
	q.lo[0] = -4;
	q.hi[0] = 6;
	ck_assert_int_eq(solve(al, &q, 2, &res), 0);
	ck_assert_double_eq_tol(q.p[0], 4, 1e-12);
	ck_assert(res.feasible);
	ck_assert_int_eq(solve(al, &q, -1.5, &res), 0);
	ck_assert_double_eq_tol(q.p[0], -3, 1e-12);
	ck_assert_int_eq(solve(al, &q, 10, &res), 0);
	ck_assert(q.p[0] == 6 && !res.feasible && res.shortfall_kw == 7 && res.n_saturated == 1);
	ck_assert_int_eq(solve(al, &q, 3, &res), 0); /* exactly the maximum */
	ck_assert(q.p[0] == 6 && res.feasible && res.shortfall_kw == 0);
	prob_free(&q);

	/* All devices at epsilon energy: still exact, proportional to a^2. */
	prob_alloc(&q, 3);
	for (int i = 0; i < 3; i++) {
		q.a[i] = (i + 1) / 3.0;
		q.ed[i] = q.ec[i] = 1e-3;
		q.lo[i] = -5;
		q.hi[i] = 5;
	}
	ck_assert_int_eq(solve(al, &q, 3, &res), 0);
	check_solution(&q, 3, &res);
	ck_assert_double_eq_tol(q.p[1] / q.p[0], 4, 1e-9);
	ck_assert_double_eq_tol(q.p[2] / q.p[0], 9, 1e-9);

	/* All zero availability: nothing dispatched. */
	for (int i = 0; i < 3; i++)
		q.a[i] = 0;
	ck_assert_int_eq(solve(al, &q, 3, &res), 0);
	ck_assert(q.p[0] == 0 && q.p[1] == 0 && q.p[2] == 0 && res.n_included == 0);
	ck_assert(res.shortfall_kw == 3);

	/* Ramp forces devices away from 0: lo > 0 and hi < 0 are honoured. */
	q.a[0] = q.a[1] = q.a[2] = 1;
	q.lo[0] = 2;
	q.hi[0] = 3;
	q.lo[1] = -3;
	q.hi[1] = -1;
	q.lo[2] = -5;
	q.hi[2] = 5;
	for (double t = -6; t <= 8; t += 0.25) {
		ck_assert_int_eq(solve(al, &q, t, &res), 0);
		check_solution(&q, t, &res);
	}
	/* The target at the zero-power delivery: nobody moves without need. */
	ck_assert_int_eq(solve(al, &q, 1, &res), 0);
	ck_assert(q.p[0] == 2 && q.p[1] == -1 && q.p[2] == 0);

	/* Bad input is rejected. */
	q.lo[2] = 6;
	ck_assert_int_eq(solve(al, &q, 1, &res), VPP_EINVAL);
	q.lo[2] = -5;
	ck_assert_int_eq(solve(al, &q, NAN, &res), VPP_EINVAL);
	q.ed[2] = 0;
	ck_assert_int_eq(solve(al, &q, 1, &res), VPP_EINVAL);
	prob_free(&q);
	vpp_allocator_free(al);
}
END_TEST

START_TEST(alloc_soc_balance)
{
	/* Fuller batteries give more, emptier ones take more. */
	vpp_device_ratings r = {5, 5, 10, 0.1, 0.9, 0};
	vpp_device_limits full, empty;
	vpp_allocator *al;
	vpp_alloc_result res;
	prob q;

	ck_assert_int_eq(vpp_device_limits_compute(&r, 0.8, 0, 1, 1e-3, &full), 0);
	ck_assert_int_eq(vpp_device_limits_compute(&r, 0.3, 0, 1, 1e-3, &empty), 0);
	ck_assert_int_eq(vpp_allocator_new(&al), 0);
	prob_alloc(&q, 2);
	q.a[0] = q.a[1] = 1;
	q.ed[0] = full.e_dis_kwh;
	q.ec[0] = full.e_chg_kwh;
	q.lo[0] = full.lo_kw;
	q.hi[0] = full.hi_kw;
	q.ed[1] = empty.e_dis_kwh;
	q.ec[1] = empty.e_chg_kwh;
	q.lo[1] = empty.lo_kw;
	q.hi[1] = empty.hi_kw;
	ck_assert_int_eq(solve(al, &q, 3, &res), 0);
	ck_assert(q.p[0] > q.p[1] && q.p[1] > 0);
	ck_assert_double_eq_tol(q.p[0] / q.p[1], 7.0 / 2.0, 1e-9);
	ck_assert_int_eq(solve(al, &q, -3, &res), 0);
	ck_assert(q.p[1] < q.p[0] && q.p[0] < 0);
	ck_assert_double_eq_tol(q.p[1] / q.p[0], 6.0 / 1.0, 1e-9);
	prob_free(&q);
	vpp_allocator_free(al);
}
END_TEST

START_TEST(limits_cases)
{
	vpp_device_ratings r = {4, 5, 10, 0.1, 0.9, 2};
	vpp_device_limits l;

	/* Ratings and ramp from the current power. */
	ck_assert_int_eq(vpp_device_limits_compute(&r, 0.5, 0, 1, 1e-3, &l), 0);
	ck_assert(l.lo_kw == -2 && l.hi_kw == 2);
	ck_assert_double_eq_tol(l.e_dis_kwh, 4, 1e-12);
	ck_assert_double_eq_tol(l.e_chg_kwh, 4, 1e-12);
	ck_assert_int_eq(vpp_device_limits_compute(&r, 0.5, 4, 1, 1e-3, &l), 0);
	ck_assert(l.lo_kw == 2 && l.hi_kw == 5);
	/* SoC limits over a long horizon: 0.5 kWh left over 1 h is 0.5 kW. */
	ck_assert_int_eq(vpp_device_limits_compute(&r, 0.15, 0, 3600, 1e-3, &l), 0);
	ck_assert_double_eq_tol(l.hi_kw, 0.5, 1e-12);
	ck_assert(l.lo_kw == -4);
	/* Below min SoC: no discharge, e at epsilon. */
	ck_assert_int_eq(vpp_device_limits_compute(&r, 0.05, 0, 1, 1e-3, &l), 0);
	ck_assert(l.hi_kw == 0 && l.e_dis_kwh == 1e-3);
	/* Discharging hard at min SoC with a slow ramp: must come down to the
	 * discharge limit (0), not stay where the ramp would keep it. */
	ck_assert_int_eq(vpp_device_limits_compute(&r, 0.1, 5, 1, 1e-3, &l), 0);
	ck_assert(l.lo_kw == 0 && l.hi_kw == 0);
	ck_assert_int_eq(vpp_device_limits_compute(&r, 0.9, -4, 1, 1e-3, &l), 0);
	ck_assert(l.lo_kw == 0 && l.hi_kw == 0);
	ck_assert_int_eq(vpp_device_limits_compute(&r, NAN, 0, 1, 1e-3, &l), VPP_EINVAL);
	ck_assert_int_eq(vpp_device_limits_compute(&r, 0.5, 0, 0, 1e-3, &l), VPP_EINVAL);
	r.min_soc = 0.95;
	ck_assert_int_eq(vpp_device_ratings_check(&r), VPP_EINVAL);
}
END_TEST

/* ---- fleet ------------------------------------------------------------- */

static const vpp_device_ratings std_rt = {5, 5, 13.5, 0.1, 0.95, 0};

static vpp_fleet *fleet_with(int n, int64_t now)
{
	vpp_fleet *f;

	ck_assert_int_eq(vpp_fleet_new(NULL, &f), 0);
	for (int i = 0; i < n; i++) {
		char id[32];
		uint32_t s;
		vpp_telemetry t = {0};

		snprintf(id, sizeof(id), "dev-%04d", i);
		ck_assert_int_eq(vpp_fleet_add(f, id, &std_rt, &s), 0);
		ck_assert_int_eq(vpp_fleet_connect(f, s, now), 0);
		t.seq = 1;
		t.measured_at_ms = now;
		t.received_at_ms = now;
		t.soc = 0.5;
		t.power_sigma_kw = 0.05;
		t.soc_sigma = 0.01;
		ck_assert_int_eq(vpp_fleet_telemetry(f, s, &t), 0);
	}
	return f;
}

/* Sends every command of |o| at |now|; each is acked 10 ms later. */
static void send_and_ack(vpp_fleet *f, const vpp_tick_output *o, int64_t now)
{
	for (size_t i = 0; i < o->n_commands; i++) {
		const vpp_command *c = &o->commands[i];

		vpp_fleet_command_sent(f, c->slot, c->seq, c->power_kw, c->valid_until_ms, now);
		vpp_fleet_ack(f, c->slot, c->seq, 1, now + 10);
	}
}

/* Sends every command, acks it, and reports the device at its setpoint x
 * |gain| one tick later. */
static void follow(vpp_fleet *f, const vpp_tick_output *o, int64_t now, double gain,
		   int ack)
{
	uint32_t s;
	int rv;

	for (size_t i = 0; i < o->n_commands; i++) {
		const vpp_command *c = &o->commands[i];

		ck_assert_int_eq(vpp_fleet_command_sent(f, c->slot, c->seq, c->power_kw,
							c->valid_until_ms, now),
				 0);
		if (ack)
			ck_assert_int_eq(vpp_fleet_ack(f, c->slot, c->seq, 1, now + 20), 0);
	}
	for (rv = vpp_fleet_next(f, 0, &s); rv == 0; rv = vpp_fleet_next(f, s + 1, &s)) {
		vpp_device_info di;
		vpp_telemetry t = {0};

		ck_assert_int_eq(vpp_fleet_device_info(f, s, now, &di), 0);
		if (!di.connected)
			continue;
		t.seq = (uint64_t)(now / 100) + 2;
		t.measured_at_ms = now + 900;
		t.received_at_ms = now + 950;
		t.power_kw = di.setpoint_kw * gain;
		t.power_sigma_kw = 0.05;
		t.soc = di.soc.value;
		t.soc_sigma = 0.01;
		ck_assert_int_eq(vpp_fleet_telemetry(f, s, &t), 0);
	}
}

START_TEST(fleet_registry)
{
	vpp_fleet *f;
	uint32_t s, s2, slots[16];
	char longid[VPP_DEVICE_ID_MAX + 2];
	size_t n;
	int count = 0, rv;

	ck_assert_int_eq(vpp_fleet_new(NULL, &f), 0);
	for (int i = 0; i < 10000; i++) {
		char id[32];

		snprintf(id, sizeof(id), "d%05d", (i * 7919) % 10000);
		ck_assert_int_eq(vpp_fleet_add(f, id, &std_rt, &s), 0);
	}
	ck_assert_uint_eq(vpp_fleet_size(f), 10000);
	ck_assert_int_eq(vpp_fleet_lookup(f, "d04242", &s), 0);
	ck_assert_str_eq(vpp_fleet_id(f, s), "d04242");
	ck_assert_int_eq(vpp_fleet_add(f, "d04242", &std_rt, &s2), VPP_EEXIST);
	/* Remove half, the rest stay findable, slots get reused. */
	for (int i = 0; i < 10000; i += 2) {
		char id[32];

		snprintf(id, sizeof(id), "d%05d", i);
		ck_assert_int_eq(vpp_fleet_lookup(f, id, &s), 0);
		ck_assert_int_eq(vpp_fleet_remove(f, s), 0);
	}
	ck_assert_int_eq(vpp_fleet_remove(f, s), VPP_ENOENT);
	ck_assert_int_eq(vpp_fleet_lookup(f, "d00002", &s), VPP_ENOENT);
	ck_assert_int_eq(vpp_fleet_lookup(f, "d00003", &s), 0);
	ck_assert_int_eq(vpp_fleet_add(f, "new", &std_rt, &s), 0);
	ck_assert_uint_lt(s, 10000);
	for (rv = vpp_fleet_next(f, 0, &s); rv == 0; rv = vpp_fleet_next(f, s + 1, &s))
		count++;
	ck_assert_int_eq(count, 5001);
	/* Paging in id order. */
	ck_assert_int_eq(vpp_fleet_page(f, NULL, slots, 3, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(vpp_fleet_id(f, slots[0]), "d00001");
	ck_assert_str_eq(vpp_fleet_id(f, slots[2]), "d00005");
	ck_assert_int_eq(vpp_fleet_page(f, "d09995", slots, 16, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(vpp_fleet_id(f, slots[0]), "d09997");
	ck_assert_str_eq(vpp_fleet_id(f, slots[1]), "d09999");
	ck_assert_str_eq(vpp_fleet_id(f, slots[2]), "new");
	/* Bad ids and ratings. */
	memset(longid, 'x', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	ck_assert_int_eq(vpp_fleet_add(f, longid, &std_rt, &s), VPP_EINVAL);
	ck_assert_int_eq(vpp_fleet_add(f, "", &std_rt, &s), VPP_EINVAL);
	{
		vpp_device_ratings bad = std_rt;

		bad.capacity_kwh = -1;
		ck_assert_int_eq(vpp_fleet_add(f, "bad", &bad, &s), VPP_EINVAL);
	}
	vpp_fleet_free(f);
	vpp_fleet_free(NULL);
}
END_TEST

START_TEST(fleet_params)
{
	vpp_dispatch_params p;
	vpp_fleet *f = NULL;

	vpp_dispatch_params_default(&p);
	ck_assert_int_eq(vpp_dispatch_params_check(&p), 0);
	p.renew_before_ms = p.lease_ms;
	ck_assert_int_eq(vpp_fleet_new(&p, &f), VPP_EINVAL);
	ck_assert_ptr_null(f);
	vpp_dispatch_params_default(&p);
	p.cusum_h = NAN;
	ck_assert_int_eq(vpp_dispatch_params_check(&p), VPP_EINVAL);
	/* Renewals come on ticks: a lease must be renewed two ticks ahead. */
	vpp_dispatch_params_default(&p);
	p.tick_ms = 2000;
	ck_assert_int_eq(vpp_dispatch_params_check(&p), VPP_EINVAL);
	p.renew_before_ms = 4000;
	ck_assert_int_eq(vpp_dispatch_params_check(&p), 0);
}
END_TEST

/* |n| ticks, one second apart from |now|, each followed (at |gain|, acked);
 * |o| is the last tick's output. Returns the time of the last tick. */
static int64_t follow_ticks(vpp_fleet *f, int64_t now, int n, double gain, vpp_tick_output *o)
{
	for (int k = 1; k <= n; k++) {
		now += 1000;
		ck_assert_int_eq(vpp_fleet_tick(f, now, o), 0);
		follow(f, o, now, gain, 1);
	}
	return now;
}

START_TEST(fleet_expiry_ends_a_ramp_at_once)
{
	int64_t now = 1000000;
	vpp_fleet *f = fleet_with(10, now);
	vpp_tick_output o;

	ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
	/* 30 kW at 10 kW/s, valid for 3 s: the ramp reaches 30 at 3 s. */
	ck_assert_int_eq(vpp_fleet_set_target(f, 30, now + 3000, 10, now), 0);
	now = follow_ticks(f, now, 2, 1.0, &o);
	ck_assert_double_eq_tol(o.status.target_eff_kw, 20, 1e-9);
	/* Its validity is over: 0 now, not down the ramp over 2 s. */
	now += 1000;
	ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
	ck_assert(o.status.target_kw == 0 && o.status.target_eff_kw == 0);
	ck_assert_double_eq_tol(o.status.expected_kw.value, 0, 1e-9);
	for (size_t i = 0; i < o.n_commands; i++)
		ck_assert(o.commands[i].power_kw == 0);
	ck_assert_uint_eq(o.n_commands, 10);
	vpp_fleet_free(f);
}
END_TEST

/* "Ramp down to 0 over the next minutes": when that setpoint ends before
 * the ramp does, the fleet goes to 0 at its end too, not on down the ramp
 * with no setpoint in force. */
START_TEST(fleet_expiry_ends_a_ramp_to_zero_at_once)
{
	int64_t now = 1000000;
	vpp_fleet *f = fleet_with(10, now);
	vpp_tick_output o;

	ck_assert_int_eq(vpp_fleet_set_target(f, 30, now + 3600000, 0, now), 0);
	now = follow_ticks(f, now, 2, 1.0, &o);
	ck_assert_double_eq_tol(o.status.target_eff_kw, 30, 1e-9);
	/* 0 at 1 kW/s, valid for 3 s: the ramp would take 30 s. */
	ck_assert_int_eq(vpp_fleet_set_target(f, 0, now + 3000, 1, now), 0);
	now = follow_ticks(f, now, 2, 1.0, &o);
	ck_assert_double_eq_tol(o.status.target_eff_kw, 28, 1e-9);
	now += 1000;
	ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
	ck_assert(o.status.target_kw == 0 && o.status.target_eff_kw == 0);
	ck_assert_double_eq_tol(o.status.expected_kw.value, 0, 1e-9);
	for (size_t i = 0; i < o.n_commands; i++)
		ck_assert(o.commands[i].power_kw == 0);
	ck_assert_uint_eq(o.n_commands, 10);
	vpp_fleet_free(f);
}
END_TEST

/* Asked for more than it has, the fleet's shortfall is what it cannot give
 * of the target, not that plus the proportional kick the shortfall itself
 * gives the PI correction (30% more at the default gain). */
START_TEST(fleet_shortfall_is_against_the_target)
{
	int64_t now = 1000000;
	vpp_fleet *f = fleet_with(10, now);
	vpp_tick_output o;

	ck_assert_int_eq(vpp_fleet_set_target(f, 90, now + 3600000, 0, now), 0);
	now = follow_ticks(f, now, 12, 1.0, &o);
	/* 10 x 5 kW: 50 kW at most, 40 short. */
	ck_assert_double_eq_tol(o.status.commanded_kw, 50, 1e-6);
	ck_assert_double_eq_tol(o.status.shortfall_kw, 40, 0.5);
	ck_assert(o.status.adjusted_kw > 90); /* the correction still pushes */
	vpp_fleet_free(f);
}
END_TEST

/* Every ack of a tick late (the network or vppd stalled for longer than the
 * ack timeout) while the batteries do follow: the fleet must not be
 * expected to deliver half and be commanded twice the target. */
START_TEST(fleet_late_acks_do_not_inflate_commands)
{
	int64_t now = 1000000;
	vpp_fleet *f = fleet_with(10, now);
	vpp_tick_output o;
	int missed = 0;

	ck_assert_int_eq(vpp_fleet_set_target(f, 30, now + 3600000, 0, now), 0);
	now = follow_ticks(f, now, 4, 1.0, &o);
	ck_assert_int_eq(vpp_fleet_set_target(f, 40, now + 3600000, 0, now), 0);
	for (int k = 1; k <= 6; k++) {
		now += 1000;
		ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
		for (size_t i = 0; i < o.n_events; i++)
			missed += o.events[i].type == VPP_EVENT_ACK_MISSED;
		ck_assert(o.status.commanded_kw <= 40 * 1.1);
		follow(f, &o, now, 1.0, k > 1); /* the first tick's acks never come */
	}
	ck_assert_int_eq(missed, 10);
	ck_assert_double_eq_tol(o.status.commanded_kw, 40, 1);
	vpp_fleet_free(f);
}
END_TEST

/* A device that refuses its setpoints will not deliver them: it stops
 * counting for delivery, and the others take its share; once it accepts
 * again, its share comes back. */
START_TEST(fleet_refusals_move_the_share)
{
	int64_t now = 1000000;
	vpp_fleet *f = fleet_with(10, now);
	vpp_tick_output o;
	uint32_t refuser;
	vpp_device_info di, other;

	ck_assert_int_eq(vpp_fleet_lookup(f, "dev-0000", &refuser), 0);
	ck_assert_int_eq(vpp_fleet_set_target(f, 30, now + 3600000, 0, now), 0);
	for (int k = 1; k <= 60; k++) {
		int refusing = k <= 8;
		now += 1000;
		ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
		for (size_t i = 0; i < o.n_commands; i++) {
			const vpp_command *c = &o.commands[i];
			ck_assert_int_eq(vpp_fleet_command_sent(f, c->slot, c->seq, c->power_kw,
								c->valid_until_ms, now),
					 0);
			ck_assert_int_eq(
			    vpp_fleet_ack(f, c->slot, c->seq, !refusing || c->slot != refuser, now + 20), 0);
		}
		/* Every device reports: the others deliver, the refuser holds 0. */
		for (uint32_t s = 0; s < 10; s++) {
			vpp_telemetry t = {0};
			ck_assert_int_eq(vpp_fleet_device_info(f, s, now, &di), 0);
			t.seq = (uint64_t)(now / 100) + 2;
			t.measured_at_ms = now + 900;
			t.received_at_ms = now + 950;
			t.power_kw = refusing && s == refuser ? 0 : di.setpoint_kw;
			t.power_sigma_kw = 0.05;
			t.soc = di.soc.value;
			t.soc_sigma = 0.01;
			ck_assert_int_eq(vpp_fleet_telemetry(f, s, &t), 0);
		}
		if (k == 8) {
			ck_assert_int_eq(vpp_fleet_device_info(f, refuser, now, &di), 0);
			ck_assert(di.setpoint_kw < 0.5);
			ck_assert_double_eq_tol(o.status.expected_kw.value, 30, 0.5);
		}
	}
	ck_assert_int_eq(vpp_fleet_device_info(f, refuser, now, &di), 0);
	ck_assert_int_eq(vpp_fleet_device_info(f, (refuser + 1) % 10, now, &other), 0);
	ck_assert_msg(di.setpoint_kw > 0.8 * other.setpoint_kw, "back to %g kW of %g", di.setpoint_kw,
		      other.setpoint_kw);
	vpp_fleet_free(f);
}
END_TEST

START_TEST(fleet_leaving_device_goes_to_zero_others_take_it)
{
	/* A drain sets a device leaving: it is commanded to 0 and the
	 * others carry the target; a new session brings it back. */
	int64_t now = 1000000;
	vpp_fleet *f = fleet_with(10, now);
	vpp_tick_output o;
	uint32_t leaver;
	vpp_device_info di;

	ck_assert_int_eq(vpp_fleet_lookup(f, "dev-0000", &leaver), 0);
	ck_assert_int_eq(vpp_fleet_set_target(f, 30, now + 3600000, 0, now), 0);
	ck_assert_int_eq(vpp_fleet_set_leaving(f, 99, 1), VPP_ENOENT);
	for (int k = 1; k <= 6; k++) {
		double sum = 0, to_leaver = NAN;
		if (k == 3)
			ck_assert_int_eq(vpp_fleet_set_leaving(f, leaver, 1), 0);
		now += 1000;
		ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
		for (size_t i = 0; i < o.n_commands; i++)
			if (o.commands[i].slot == leaver)
				to_leaver = o.commands[i].power_kw;
		follow(f, &o, now, 1.0, 1);
		for (uint32_t s = 0; s < 10; s++) {
			ck_assert_int_eq(vpp_fleet_device_info(f, s, now, &di), 0);
			sum += di.setpoint_kw;
		}
		ck_assert_int_eq(vpp_fleet_device_info(f, leaver, now, &di), 0);
		if (k == 2)
			ck_assert(di.setpoint_kw > 1);
		if (k == 3)
			ck_assert_double_eq_tol(to_leaver, 0, 1e-9);
		if (k >= 3)
			ck_assert_double_eq_tol(di.setpoint_kw, 0, 1e-9);
		ck_assert_double_eq_tol(sum, 30, 0.5);
	}
	/* A new session: dispatched again. */
	ck_assert_int_eq(vpp_fleet_disconnect(f, leaver, now), 0);
	ck_assert_int_eq(vpp_fleet_connect(f, leaver, now), 0);
	now = follow_ticks(f, now, 3, 1.0, &o);
	ck_assert_int_eq(vpp_fleet_device_info(f, leaver, now, &di), 0);
	ck_assert(di.setpoint_kw > 1);
	vpp_fleet_free(f);
}
END_TEST

START_TEST(fleet_share_renewals_do_not_resend_leases)
{
	/* A cluster node's share comes every tick with 3 s of validity: the
	 * batteries' leases follow the operator's setpoint end, not the
	 * share's, and are not re-sent every tick; they never outlive the
	 * operator's setpoint. */
	int64_t now = 1000000, sp_end = now + 600000;
	vpp_fleet *f = fleet_with(10, now);
	vpp_tick_output o;
	size_t sent = 0;

	ck_assert_int_eq(vpp_fleet_set_lease_end(f, -1), VPP_EINVAL);
	for (int k = 1; k <= 20; k++) {
		now += 1000;
		ck_assert_int_eq(vpp_fleet_set_target(f, 30, now + 3000, 0, now), 0);
		ck_assert_int_eq(vpp_fleet_set_lease_end(f, sp_end), 0);
		ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
		for (size_t i = 0; i < o.n_commands; i++)
			ck_assert_int_eq(o.commands[i].valid_until_ms, now + 10000);
		if (k > 1)
			sent += o.n_commands;
		follow(f, &o, now, 1.0, 1);
	}
	/* Renewals every 7 s or so, not every tick (19 ticks x 10 devices). */
	ck_assert_msg(sent <= 60, "%zu commands in 19 ticks", sent);
	/* Near the operator's end: capped there. */
	ck_assert_int_eq(vpp_fleet_set_lease_end(f, now + 4000), 0);
	ck_assert_int_eq(vpp_fleet_set_target(f, 30, now + 3000, 0, now), 0);
	now += 1000;
	ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
	ck_assert(o.n_commands > 0);
	for (size_t i = 0; i < o.n_commands; i++)
		ck_assert(o.commands[i].valid_until_ms <= now + 3000);
	vpp_fleet_free(f);
}
END_TEST

START_TEST(fleet_leases_end_with_the_operators_setpoint)
{
	int64_t now = 1000000, end = now + 4000;
	vpp_fleet *f = fleet_with(4, now);
	vpp_tick_output o;
	size_t sent = 0;

	/* Valid for 4 s with 10 s leases: no battery is told to go on past
	 * the operator's end, should vppd die meanwhile. */
	ck_assert_int_eq(vpp_fleet_set_target(f, 8, end, 0, now), 0);
	ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
	ck_assert_uint_eq(o.n_commands, 4);
	for (size_t i = 0; i < o.n_commands; i++)
		ck_assert_int_eq(o.commands[i].valid_until_ms, end);
	follow(f, &o, now, 1.0, 1);
	/* A lease that cannot be extended is not sent again every tick. */
	for (now += 1000; now < end; now += 1000) {
		ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
		sent += o.n_commands;
		follow(f, &o, now, 1.0, 1);
	}
	ck_assert_uint_eq(sent, 0);
	/* Over: 0 for everyone, on a full lease (0 is safe to hold). */
	ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
	ck_assert_uint_eq(o.n_commands, 4);
	for (size_t i = 0; i < o.n_commands; i++) {
		ck_assert(o.commands[i].power_kw == 0);
		ck_assert_int_eq(o.commands[i].valid_until_ms, now + 10000);
	}
	vpp_fleet_free(f);
}
END_TEST

START_TEST(fleet_no_long_lease_after_the_operators_setpoint)
{
	const vpp_device_ratings slow = {5, 5, 13.5, 0.1, 0.95, 0.5}; /* 0.5 kW/s */
	int64_t now = 1000000, end = now + 15000, short_lease = 3000 + 1000;
	vpp_fleet *f;
	vpp_tick_output o;
	size_t nonzero = 0;

	ck_assert_int_eq(vpp_fleet_new(NULL, &f), 0);
	for (int i = 0; i < 4; i++) {
		char id[32];
		uint32_t s;
		vpp_telemetry t = {.seq = 1, .measured_at_ms = now, .received_at_ms = now, .soc = 0.5};

		snprintf(id, sizeof(id), "slow-%d", i);
		ck_assert_int_eq(vpp_fleet_add(f, id, &slow, &s), 0);
		ck_assert_int_eq(vpp_fleet_connect(f, s, now), 0);
		ck_assert_int_eq(vpp_fleet_telemetry(f, s, &t), 0);
	}
	ck_assert_int_eq(vpp_fleet_set_target(f, 16, end, 0, now), 0);
	for (; now < end; now += 1000) {
		ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
		follow(f, &o, now, 1.0, 1);
	}
	/* The setpoint is over, but the batteries can only ramp down: they
	 * are still commanded away from 0 for a few ticks, each time on a
	 * short lease, not on lease_ms (10 s here, up to an hour in use). */
	for (int k = 0; k < 12; k++, now += 1000) {
		ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
		for (size_t i = 0; i < o.n_commands; i++) {
			if (o.commands[i].power_kw == 0)
				continue;
			nonzero++;
			ck_assert_int_le(o.commands[i].valid_until_ms, now + short_lease);
		}
		follow(f, &o, now, 1.0, 1);
	}
	ck_assert_uint_ge(nonzero, 4);
	ck_assert_double_eq_tol(o.status.commanded_kw, 0, 1e-9);
	vpp_fleet_free(f);
}
END_TEST

START_TEST(fleet_no_setpoint_storm_while_one_ramps_down)
{
	/* No operator setpoint; one slow battery still discharging 5 kW can
	 * only ramp down, and the allocator spreads a sliver of its balance
	 * over the 200 others. Within the deadband that sliver is no command:
	 * the others are not re-sent a short lease every tick. */
	const vpp_device_ratings slow = {5, 5, 13.5, 0.1, 0.95, 0.5};
	int64_t now = 1000000;
	vpp_fleet *f;
	vpp_tick_output o;
	size_t late = 0;

	ck_assert_int_eq(vpp_fleet_new(NULL, &f), 0);
	for (int i = 0; i <= 200; i++) {
		char id[32];
		uint32_t s;
		vpp_telemetry t = {.seq = 1, .measured_at_ms = now, .received_at_ms = now, .soc = 0.5,
				   .power_kw = i == 0 ? 5 : 0};

		snprintf(id, sizeof(id), "dev-%03d", i);
		ck_assert_int_eq(vpp_fleet_add(f, id, i == 0 ? &slow : &std_rt, &s), 0);
		ck_assert_int_eq(vpp_fleet_connect(f, s, now), 0);
		ck_assert_int_eq(vpp_fleet_telemetry(f, s, &t), 0);
	}
	for (int k = 0; k < 6; k++, now += 1000) {
		ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
		if (k >= 2)
			late += o.n_commands;
		send_and_ack(f, &o, now);
	}
	ck_assert_uint_le(late, 4 * 2); /* the slow one, on its way down */
	vpp_fleet_free(f);
}
END_TEST

START_TEST(fleet_seqs_start_above_the_base)
{
	vpp_dispatch_params prm;
	vpp_fleet *f;
	vpp_tick_output o;
	uint32_t s;

	vpp_dispatch_params_default(&prm);
	prm.seq_base = 1764547200000000ULL; /* a start time in us */
	ck_assert_int_eq(vpp_fleet_new(&prm, &f), 0);
	ck_assert_int_eq(vpp_fleet_add(f, "dev-0", &std_rt, &s), 0);
	ck_assert_int_eq(vpp_fleet_connect(f, s, 1000000), 0);
	ck_assert_int_eq(vpp_fleet_tick(f, 1000000, &o), 0);
	ck_assert_uint_eq(o.n_commands, 1);
	ck_assert_uint_eq(o.commands[0].seq, prm.seq_base + 1);
	vpp_fleet_free(f);
	prm.seq_base = UINT64_MAX - 5; /* no room to count up: refused */
	ck_assert_int_eq(vpp_fleet_new(&prm, &f), VPP_EINVAL);
}
END_TEST

START_TEST(fleet_leases_follow_an_earlier_end)
{
	int64_t now = 1000000;
	vpp_fleet *f = fleet_with(4, now);
	vpp_tick_output o;

	ck_assert_int_eq(vpp_fleet_set_target(f, 8, now + 100000, 0, now), 0);
	ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
	ck_assert_uint_eq(o.n_commands, 4);
	follow(f, &o, now, 1.0, 1);
	/* The same power, but the operator now wants it over in 4 s: the
	 * 10 s leases would outlive that, so they are sent again. */
	now += 1000;
	ck_assert_int_eq(vpp_fleet_set_target(f, 8, now + 4000, 0, now), 0);
	ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
	ck_assert_uint_eq(o.n_commands, 4);
	for (size_t i = 0; i < o.n_commands; i++)
		ck_assert_int_eq(o.commands[i].valid_until_ms, now + 4000);
	follow(f, &o, now, 1.0, 1);
	now += 1000;
	ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
	ck_assert_uint_eq(o.n_commands, 0);
	vpp_fleet_free(f);
}
END_TEST

START_TEST(fleet_tracking_error_without_fresh_telemetry)
{
	int64_t now = 1000000;
	vpp_fleet *f = fleet_with(2, now);
	vpp_tick_output o;

	ck_assert_int_eq(vpp_fleet_set_target(f, 4, now + 100000, 0, now), 0);
	for (int k = 0; k < 3; k++, now += 1000) {
		ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
		follow(f, &o, now, 1.0, 1);
	}
	ck_assert_double_eq_tol(o.status.tracking_error_kw, 0, 0.2);
	/* Both go silent until they are stale: what the fleet still delivers
	 * is uncertain, and the error says so rather than reading 0. */
	now += 60000;
	ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
	ck_assert_int_eq(o.status.n_online, 0);
	ck_assert(o.status.tracking_error_kw > 1);
	ck_assert_double_eq_tol(o.status.tracking_error_kw, 4 - o.status.measured_kw.value, 1e-9);
	vpp_fleet_free(f);
}
END_TEST

START_TEST(fleet_telemetry_times)
{
	vpp_fleet *f = fleet_with(1, 1000000);
	vpp_device_info di;
	vpp_telemetry t = {0};

	/* Device clock 5 s behind: offset +5000 brings the sample to server
	 * time; a sample can not be measured after it arrived. */
	t.seq = 2;
	t.measured_at_ms = 996000;
	t.received_at_ms = 1001100;
	t.clock_offset_ms = 5000;
	t.power_kw = 1;
	t.soc = 0.6;
	ck_assert_int_eq(vpp_fleet_telemetry(f, 0, &t), 0);
	ck_assert_int_eq(vpp_fleet_device_info(f, 0, 1001000, &di), 0);
	ck_assert_int_eq(di.power_kw.as_of_ms, 1001000);
	ck_assert_int_eq(di.last_seen_ms, 1001100);
	ck_assert_double_eq_tol(di.power_kw.sigma, 0.1, 1e-9); /* the default */
	t.seq = 3;
	t.measured_at_ms = 999000;
	t.received_at_ms = 1002000; /* +5000 would be in the future */
	ck_assert_int_eq(vpp_fleet_telemetry(f, 0, &t), 0);
	ck_assert_int_eq(vpp_fleet_device_info(f, 0, 1002000, &di), 0);
	ck_assert_int_eq(di.power_kw.as_of_ms, 1002000);
	/* Duplicates and reordered samples are ignored. */
	t.power_kw = 3;
	ck_assert_int_eq(vpp_fleet_telemetry(f, 0, &t), VPP_EEXIST);
	t.seq = 4;
	t.soc = 1.5;
	ck_assert_int_eq(vpp_fleet_telemetry(f, 0, &t), VPP_EINVAL);
	/* SoC is propagated from power and sigmas grow with age. */
	{
		vpp_device_info later;

		ck_assert_int_eq(vpp_fleet_device_info(f, 0, 1002000 + 3600000, &later), 0);
		ck_assert_double_eq_tol(later.soc.value, 0.6 - 1.0 / 13.5, 1e-9);
		ck_assert(later.soc.sigma > di.soc.sigma);
		ck_assert(later.power_kw.sigma > di.power_kw.sigma);
		ck_assert(later.soc.lower <= later.soc.value && later.soc.upper >= later.soc.value);
	}
	vpp_fleet_free(f);
}
END_TEST

START_TEST(fleet_staleness)
{
	int64_t now = 1000000;
	vpp_fleet *f = fleet_with(4, now);
	vpp_tick_output o;
	vpp_device_info di, di2;

	/* Device 3 stops talking; 0-2 keep reporting. */
	ck_assert_int_eq(vpp_fleet_set_target(f, 6, now + 100000, 0, now), 0);
	for (int k = 0; k < 20; k++, now += 1000) {
		uint32_t s;

		ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
		send_and_ack(f, &o, now);
		for (s = 0; s < 3; s++) {
			vpp_telemetry t = {0};

			ck_assert_int_eq(vpp_fleet_device_info(f, s, now, &di), 0);
			t.seq = (uint64_t)k + 2;
			t.measured_at_ms = t.received_at_ms = now + 900;
			t.power_kw = di.setpoint_kw;
			t.soc = 0.5;
			ck_assert_int_eq(vpp_fleet_telemetry(f, s, &t), 0);
		}
		if (k == 4) {
			ck_assert_int_eq(vpp_fleet_device_info(f, 3, now, &di), 0);
			ck_assert_int_eq(di.state, VPP_DEVICE_STALE);
			ck_assert(di.availability < 1 && di.availability > 0);
		}
		if (k == 6) {
			ck_assert_int_eq(vpp_fleet_device_info(f, 3, now, &di2), 0);
			ck_assert(di2.availability < di.availability);
		}
	}
	/* Beyond the stale limit: not dispatched, share on the others. */
	ck_assert_int_eq(vpp_fleet_device_info(f, 3, now, &di), 0);
	ck_assert(di.availability == 0);
	ck_assert_int_eq(o.status.n_stale, 1);
	ck_assert_int_eq(o.status.n_online, 3);
	ck_assert_int_eq(o.status.n_dispatched, 3);
	/* The three left deliver the target (within the deadband the PI works
	 * around). */
	ck_assert_double_eq_tol(o.status.measured_kw.value, 6, 0.15);
	ck_assert_double_eq_tol(o.status.expected_kw.value, 6, 0.3);
	/* Its stored energy is no more counted than its power: three
	 * batteries at SoC 0.5 above a minimum of 0.1, 13.5 kWh each. */
	ck_assert_double_eq_tol(o.status.stored_energy_kwh.value, 3 * 0.4 * 13.5, 0.1);
	/* Offline: availability 0, p = 0, no commands. */
	ck_assert_int_eq(vpp_fleet_disconnect(f, 3, now), 0);
	ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
	ck_assert_int_eq(o.status.n_offline, 1);
	for (size_t i = 0; i < o.n_commands; i++)
		ck_assert_uint_ne(o.commands[i].slot, 3);
	vpp_fleet_free(f);
}
END_TEST

START_TEST(fleet_sensor_fault_counts_as_silence)
{
	int64_t now = 1000000;
	vpp_fleet *f = fleet_with(4, now);
	vpp_tick_output o;
	vpp_device_info di;

	/* Device 3 keeps reporting, but only that its sensors are at fault:
	 * alive, yet nothing tells what it delivers. */
	ck_assert_int_eq(vpp_fleet_set_target(f, 6, now + 100000, 0, now), 0);
	for (int k = 0; k < 20; k++, now += 1000) {
		ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
		send_and_ack(f, &o, now);
		for (uint32_t s = 0; s < 4; s++) {
			vpp_telemetry t = {0};

			ck_assert_int_eq(vpp_fleet_device_info(f, s, now, &di), 0);
			t.seq = (uint64_t)k + 2;
			t.measured_at_ms = t.received_at_ms = now + 900;
			t.power_kw = di.setpoint_kw;
			t.soc = 0.5;
			if (s == 3 && k >= 1) {
				t.power_kw = t.soc = NAN;
				t.quality = VPP_TELEMETRY_BAD_POWER | VPP_TELEMETRY_BAD_SOC;
			}
			ck_assert_int_eq(vpp_fleet_telemetry(f, s, &t), 0);
		}
		if (k == 6) {
			ck_assert_int_eq(vpp_fleet_device_info(f, 3, now, &di), 0);
			ck_assert_int_eq(di.state, VPP_DEVICE_STALE);
			ck_assert(di.availability < 1 && di.availability > 0);
			ck_assert_int_eq(di.last_seen_ms, now + 900); /* still heard */
		}
	}
	/* Beyond the stale limit it is not dispatched: the others carry the
	 * target, and the fleet's power does not count on its guess. */
	ck_assert_int_eq(vpp_fleet_device_info(f, 3, now, &di), 0);
	ck_assert_int_eq(di.state, VPP_DEVICE_STALE);
	ck_assert(di.availability == 0);
	ck_assert_int_eq(o.status.n_stale, 1);
	ck_assert_int_eq(o.status.n_dispatched, 3);
	ck_assert_double_eq_tol(o.status.measured_kw.value, 6, 0.15);
	ck_assert_double_eq_tol(o.status.expected_kw.value, 6, 0.3);
	/* One good reading and it is back. */
	{
		vpp_telemetry t = {0};

		t.seq = 100;
		t.measured_at_ms = t.received_at_ms = now;
		t.soc = 0.5;
		ck_assert_int_eq(vpp_fleet_telemetry(f, 3, &t), 0);
		ck_assert_int_eq(vpp_fleet_device_info(f, 3, now, &di), 0);
		ck_assert_int_eq(di.state, VPP_DEVICE_ONLINE);
		ck_assert(di.availability > 0);
	}
	vpp_fleet_free(f);
}
END_TEST

START_TEST(fleet_deadband_lease_expiry)
{
	int64_t now = 1000000;
	vpp_fleet *f = fleet_with(10, now);
	vpp_tick_output o;
	double sum = 0;
	int64_t until;

	ck_assert_int_eq(vpp_fleet_set_target(f, 20, now + 30000, 0, now), 0);
	ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
	ck_assert_uint_eq(o.n_commands, 10);
	for (size_t i = 0; i < o.n_commands; i++) {
		sum += o.commands[i].power_kw;
		ck_assert_int_eq(o.commands[i].valid_until_ms, now + 10000);
	}
	ck_assert_double_eq_tol(sum, 20, 1e-9);
	ck_assert_double_eq_tol(o.status.expected_kw.value, 20, 1e-9);
	until = o.commands[0].valid_until_ms;
	follow(f, &o, now, 1.0, 1);
	/* Steady state: nothing moves beyond the deadband, nothing is sent
	 * until the leases are about to end. */
	for (now += 1000; now < until - 3000; now += 1000) {
		ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
		ck_assert_uint_eq(o.n_commands, 0);
		follow(f, &o, now, 1.0, 1);
	}
	ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
	ck_assert_uint_eq(o.n_commands, 10); /* renewals */
	ck_assert(o.commands[0].seq > 1);
	/* A command that was not reported sent is proposed again. */
	ck_assert_int_eq(vpp_fleet_tick(f, now + 1000, &o), 0);
	ck_assert_uint_eq(o.n_commands, 10);
	now += 1000;
	follow(f, &o, now, 1.0, 1);
	/* The operator's validity ends: target returns to 0, devices told. */
	for (now += 1000; now <= 1000000 + 31000; now += 1000) {
		ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
		follow(f, &o, now, 1.0, 1);
	}
	ck_assert(o.status.target_kw == 0 && o.status.target_eff_kw == 0);
	{
		vpp_device_info di;

		ck_assert_int_eq(vpp_fleet_device_info(f, 0, now, &di), 0);
		ck_assert(di.setpoint_kw == 0);
	}
	vpp_fleet_free(f);
}
END_TEST

START_TEST(fleet_target_ramp)
{
	int64_t now = 1000000;
	vpp_fleet *f = fleet_with(10, now);
	vpp_tick_output o;

	ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
	ck_assert_int_eq(vpp_fleet_set_target(f, 30, now + 60000, 10, now), 0);
	for (int k = 1; k <= 4; k++) {
		now += 1000;
		ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
		ck_assert_double_eq_tol(o.status.target_eff_kw, fmin(10.0 * k, 30), 1e-9);
		follow(f, &o, now, 1.0, 1);
	}
	ck_assert_int_eq(vpp_fleet_set_target(f, NAN, now, 0, now), VPP_EINVAL);
	ck_assert_int_eq(vpp_fleet_set_target(f, 1, now + 1, -1, now), VPP_EINVAL);
	vpp_fleet_free(f);
}
END_TEST

/* How long the fleet's energy lasts at a target: 10 batteries at SoC 0.5
 * hold 10 x (0.5 - 0.1) x 13.5 = 54 kWh above min SoC, and have room for
 * 10 x (0.95 - 0.5) x 13.5 = 60.75 kWh. */
START_TEST(preview_says_how_long_the_energy_lasts)
{
	int64_t now = 1000000;
	vpp_fleet *f = fleet_with(10, now);
	vpp_preview pv;

	ck_assert_int_eq(vpp_fleet_preview(f, 30, now, &pv), 0);
	ck_assert_double_eq_tol(pv.sustain_s, 54.0 / 30 * 3600, 1);
	ck_assert_int_eq(vpp_fleet_preview(f, -20, now, &pv), 0);
	ck_assert_double_eq_tol(pv.sustain_s, 60.75 / 20 * 3600, 1);
	ck_assert_int_eq(vpp_fleet_preview(f, 0, now, &pv), 0);
	ck_assert(isinf(pv.sustain_s));
	/* Beyond the fleet: what it can give, for as long as it lasts. */
	ck_assert_int_eq(vpp_fleet_preview(f, 90, now, &pv), 0);
	ck_assert_double_eq_tol(pv.sustain_s, 54.0 / 50 * 3600, 1);
	vpp_fleet_free(f);
}
END_TEST

/* A battery that comes from another node (its session there died) still
 * runs that node's lease when its first command here goes out, before this
 * node has any sample of it: where it comes from is unknown, so the first
 * seconds of its response are not taken for a failure to follow. */
START_TEST(fleet_moved_battery_is_not_degraded)
{
	int64_t now = 1000000;
	vpp_fleet *f;
	vpp_tick_output o;
	uint32_t s;
	int degraded = 0;

	ck_assert_int_eq(vpp_fleet_new(NULL, &f), 0);
	ck_assert_int_eq(vpp_fleet_add(f, "moved", &std_rt, &s), 0);
	ck_assert_int_eq(vpp_fleet_connect(f, s, now), 0);
	ck_assert_int_eq(vpp_fleet_set_target(f, 0, now + 3600000, 0, now), 0);
	for (int k = 1; k <= 20; k++) {
		now += 500;
		ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
		send_and_ack(f, &o, now);
		for (size_t i = 0; i < o.n_events; i++)
			degraded += o.events[i].type == VPP_EVENT_DEGRADED;
		vpp_telemetry t = {0};
		t.seq = (uint64_t)k;
		t.measured_at_ms = now + 100;
		t.received_at_ms = now + 150;
		/* The old lease's 3 kW for a second, then the new command. */
		t.power_kw = k <= 2 ? 3.0 : 0.0;
		t.power_sigma_kw = 0.02;
		t.soc = 0.5;
		t.soc_sigma = 0.01;
		ck_assert_int_eq(vpp_fleet_telemetry(f, s, &t), 0);
	}
	ck_assert_int_eq(degraded, 0);
	vpp_fleet_free(f);
}
END_TEST

/* Commanded 0, a battery drawing 80 W of standby is following; one stuck
 * discharging 3 kW is not. */
START_TEST(fleet_idle_draw_is_not_degraded)
{
	int64_t now = 1000000;
	vpp_fleet *f = fleet_with(2, now);
	vpp_tick_output o;
	int degraded[2] = {0, 0};

	ck_assert_int_eq(vpp_fleet_set_target(f, 0, now + 3600000, 0, now), 0);
	for (int k = 1; k <= 60; k++) {
		now += 1000;
		ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
		send_and_ack(f, &o, now);
		for (size_t i = 0; i < o.n_events; i++)
			if (o.events[i].type == VPP_EVENT_DEGRADED)
				degraded[o.events[i].slot]++;
		for (uint32_t s = 0; s < 2; s++) {
			vpp_device_info di;
			vpp_telemetry t = {0};
			ck_assert_int_eq(vpp_fleet_device_info(f, s, now, &di), 0);
			t.seq = (uint64_t)k + 1;
			t.measured_at_ms = now + 500;
			t.received_at_ms = now + 550;
			t.power_kw = s == 0 ? -0.08 : (k > 30 ? 3.0 : 0.0);
			t.power_sigma_kw = 0.02;
			t.soc = di.soc.value;
			t.soc_sigma = 0.01;
			ck_assert_int_eq(vpp_fleet_telemetry(f, s, &t), 0);
		}
	}
	ck_assert_int_eq(degraded[0], 0);
	ck_assert_int_eq(degraded[1], 1);
	vpp_fleet_free(f);
}
END_TEST

/* A fleet that delivers 120% (beyond what the delivery fraction models)
 * learns a bias while discharging; when the target turns to charging,
 * that bias is not applied the wrong way. */
START_TEST(fleet_bias_reset_when_the_direction_turns)
{
	int64_t now = 1000000;
	vpp_fleet *f = fleet_with(10, now);
	vpp_tick_output o;

	ck_assert_int_eq(vpp_fleet_set_target(f, 30, now + 3600000, 0, now), 0);
	now = follow_ticks(f, now, 15, 1.2, &o);
	ck_assert(o.status.correction_kw < -1); /* it learnt to ask for less */
	ck_assert_int_eq(vpp_fleet_set_target(f, -30, now + 3600000, 0, now), 0);
	now += 1000;
	ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
	ck_assert_double_eq_tol(o.status.correction_kw, 0, 1e-9);
	ck_assert_double_eq_tol(o.status.adjusted_kw, -30, 1e-9);
	vpp_fleet_free(f);
}
END_TEST

/* A target set before the first tick (carried on across a restart) with a
 * ramp ramps from 0, not in one step. */
START_TEST(fleet_ramp_from_the_first_tick)
{
	int64_t now = 1000000;
	vpp_fleet *f = fleet_with(10, now);
	vpp_tick_output o;

	ck_assert_int_eq(vpp_fleet_set_target(f, 30, now + 3600000, 5, now), 0);
	now += 1000;
	ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
	ck_assert_double_eq_tol(o.status.target_eff_kw, 5, 1e-9);
	vpp_fleet_free(f);
}
END_TEST

/* With no device left to apply it to, the learnt bias does not move the
 * shortfall: all of the target is short, no more, no less. */
START_TEST(fleet_shortfall_without_devices_is_the_target)
{
	int64_t now = 1000000;
	vpp_fleet *f = fleet_with(10, now);
	vpp_tick_output o;

	ck_assert_int_eq(vpp_fleet_set_target(f, 30, now + 3600000, 0, now), 0);
	now = follow_ticks(f, now, 15, 1.2, &o);
	ck_assert(o.status.correction_kw < -1);
	for (uint32_t s = 0; s < 10; s++)
		ck_assert_int_eq(vpp_fleet_disconnect(f, s, now), 0);
	now += 1000;
	ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
	ck_assert_double_eq_tol(o.status.shortfall_kw, 30, 1e-9);
	vpp_fleet_free(f);
}
END_TEST

START_TEST(fleet_ack_timeout_moves_share)
{
	int64_t now = 1000000;
	vpp_fleet *f = fleet_with(4, now);
	vpp_tick_output o;
	vpp_device_info before, after;
	int missed = 0;

	ck_assert_int_eq(vpp_fleet_set_target(f, 8, now + 100000, 0, now), 0);
	ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
	/* Everyone gets the command, device 0 never acks. */
	for (size_t i = 0; i < o.n_commands; i++) {
		const vpp_command *c = &o.commands[i];

		vpp_fleet_command_sent(f, c->slot, c->seq, c->power_kw, c->valid_until_ms, now);
		if (c->slot != 0)
			vpp_fleet_ack(f, c->slot, c->seq, 1, now + 30);
	}
	ck_assert_int_eq(vpp_fleet_device_info(f, 0, now, &before), 0);
	now += 3000;
	ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
	for (size_t i = 0; i < o.n_events; i++)
		if (o.events[i].type == VPP_EVENT_ACK_MISSED && o.events[i].slot == 0) {
			missed++;
			ck_assert_str_eq(o.events[i].id, "dev-0000");
		}
	ck_assert_int_eq(missed, 1);
	ck_assert_int_eq(vpp_fleet_device_info(f, 0, now, &after), 0);
	ck_assert(after.reliability < before.reliability);
	/* Its new share is smaller; the others took it. */
	for (size_t i = 0; i < o.n_commands; i++)
		if (o.commands[i].slot == 0)
			ck_assert(o.commands[i].power_kw < before.setpoint_kw);
	ck_assert(o.n_commands >= 1);
	/* A late ack does not count; a rejection is a miss too. */
	ck_assert_int_eq(vpp_fleet_ack(f, 0, before.setpoint_seq, 1, now), 0);
	vpp_fleet_free(f);
}
END_TEST

START_TEST(fleet_cusum_degraded_recovered)
{
	int64_t now = 1000000;
	vpp_fleet *f = fleet_with(10, now);
	vpp_tick_output o;
	vpp_device_info di;
	int degraded_at = -1, recovered_at = -1;

	ck_assert_int_eq(vpp_fleet_set_target(f, 25, now + 1000000, 0, now), 0);
	for (int k = 0; k < 60; k++, now += 1000) {
		ck_assert_int_eq(vpp_fleet_tick(f, now, &o), 0);
		for (size_t i = 0; i < o.n_events; i++) {
			if (o.events[i].type == VPP_EVENT_DEGRADED) {
				ck_assert_uint_eq(o.events[i].slot, 7);
				degraded_at = k;
			}
			if (o.events[i].type == VPP_EVENT_RECOVERED) {
				ck_assert_uint_eq(o.events[i].slot, 7);
				recovered_at = k;
			}
		}
		send_and_ack(f, &o, now);
		for (uint32_t s = 0; s < 10; s++) {
			vpp_telemetry t = {0};
			/* Device 7 delivers half between ticks 10 and 30. */
			double g = (s == 7 && k >= 10 && k < 30) ? 0.5 : 1.0;

			ck_assert_int_eq(vpp_fleet_device_info(f, s, now, &di), 0);
			t.seq = (uint64_t)k + 2;
			t.measured_at_ms = t.received_at_ms = now + 900;
			t.power_kw = di.setpoint_kw * g + 0.02 * (urand() - 0.5);
			t.power_sigma_kw = 0.05;
			t.soc = 0.5;
			ck_assert_int_eq(vpp_fleet_telemetry(f, s, &t), 0);
		}
		if (k == 20) {
			ck_assert_int_eq(vpp_fleet_device_info(f, 7, now, &di), 0);
			ck_assert(di.degraded);
			ck_assert(di.reliability < 0.7);
			ck_assert_int_eq(o.status.n_degraded, 1);
		}
	}
	ck_assert_int_ge(degraded_at, 10);
	ck_assert_int_le(degraded_at, 13);
	ck_assert_int_gt(recovered_at, 30);
	ck_assert_int_le(recovered_at, 45);
	ck_assert_int_eq(vpp_fleet_device_info(f, 7, now, &di), 0);
	ck_assert(!di.degraded);
	ck_assert_int_eq(o.status.n_degraded, 0);
	vpp_fleet_free(f);
}
END_TEST

START_TEST(fleet_preview_pure)
{
	int64_t now = 1000000;
	vpp_fleet *f1 = fleet_with(20, now), *f2 = fleet_with(20, now);
	vpp_tick_output o1, o2;
	vpp_preview pv;

	ck_assert_int_eq(vpp_fleet_set_target(f1, 30, now + 60000, 0, now), 0);
	ck_assert_int_eq(vpp_fleet_set_target(f2, 30, now + 60000, 0, now), 0);
	ck_assert_int_eq(vpp_fleet_preview(f1, 500, now, &pv), 0);
	ck_assert_double_eq_tol(pv.shortfall_kw, 400, 1e-6); /* 20 x 5 kW */
	ck_assert_uint_eq(pv.n_saturated, 20);
	ck_assert_int_eq(vpp_fleet_preview(f1, 40, now, &pv), 0);
	ck_assert_double_eq_tol(pv.expected_kw.value, 40, 1e-9);
	ck_assert(pv.shortfall_kw == 0);
	ck_assert_int_eq(vpp_fleet_tick(f1, now, &o1), 0);
	ck_assert_int_eq(vpp_fleet_tick(f2, now, &o2), 0);
	ck_assert_uint_eq(o1.n_commands, o2.n_commands);
	for (size_t i = 0; i < o1.n_commands; i++)
		ck_assert(o1.commands[i].power_kw == o2.commands[i].power_kw);
	ck_assert(o1.status.adjusted_kw == o2.status.adjusted_kw);
	vpp_fleet_free(f1);
	vpp_fleet_free(f2);
}
END_TEST

START_TEST(fleet_status_estimates)
{
	int64_t now = 1000000;
	vpp_fleet *f = fleet_with(100, now);
	vpp_tick_output o;

	ck_assert_int_eq(vpp_fleet_tick(f, now + 100, &o), 0);
	/* 100 devices at SoC 0.5 of 13.5 kWh with min 0.1: 540 kWh usable. */
	ck_assert_double_eq_tol(o.status.stored_energy_kwh.value, 540, 1e-6);
	ck_assert(o.status.stored_energy_kwh.sigma > 0);
	ck_assert_double_eq_tol(o.status.discharge_headroom_kw.value, 500, 1e-6);
	ck_assert_double_eq_tol(o.status.charge_headroom_kw.value, -500, 1e-6);
	ck_assert(o.status.measured_kw.lower < 0 && o.status.measured_kw.upper > 0);
	ck_assert_int_eq(o.status.measured_kw.as_of_ms, now);
	ck_assert_uint_eq(o.status.n_online, 100);
	{
		double a, ed, ec, lo, hi;

		ck_assert_int_eq(vpp_fleet_aggregate(f, &a, &ed, &ec, &lo, &hi), 0);
		ck_assert(a == 1 && lo == -500 && hi == 500 && ed > 0 && ec > 0);
	}
	vpp_fleet_free(f);
}
END_TEST

/* A device that loses its session keeps running at its lease: its power
 * still counts in the fleet's measured power until the lease ends, then
 * not at all. */
START_TEST(fleet_lease_tail_after_disconnect)
{
	int64_t now = 1000000;
	vpp_fleet *f = fleet_with(10, now);
	vpp_tick_output o;

	ck_assert_int_eq(vpp_fleet_set_target(f, 30, now + 600000, 0, now), 0);
	ck_assert_int_eq(vpp_fleet_tick(f, now + 100, &o), 0);
	follow(f, &o, now + 100, 1.0, 1);
	now += 1000;
	ck_assert_int_eq(vpp_fleet_tick(f, now + 100, &o), 0);
	double before = o.status.measured_kw.value;
	ck_assert_double_eq_tol(before, 30, 1.0);
	uint32_t s;
	ck_assert_int_eq(vpp_fleet_lookup(f, "dev-0003", &s), 0);
	vpp_device_info di;
	ck_assert_int_eq(vpp_fleet_device_info(f, s, now + 100, &di), 0);
	double lost = di.power_kw.value;
	int64_t until = di.setpoint_valid_until_ms;
	ck_assert(lost > 1 && until > now + 200);
	ck_assert_int_eq(vpp_fleet_disconnect(f, s, now + 200), 0);
	/* Still counted while its lease runs... */
	ck_assert_int_eq(vpp_fleet_tick(f, now + 300, &o), 0);
	ck_assert_double_eq_tol(o.status.measured_kw.value, before, 1.0);
	ck_assert_uint_eq(o.status.n_offline, 1);
	/* ...and gone once it has ended (the device returned to 0). */
	ck_assert_int_eq(vpp_fleet_tick(f, until + 1, &o), 0);
	ck_assert(o.status.measured_kw.value < before - lost / 2);
	vpp_fleet_free(f);
}
END_TEST

Suite *test_dispatch_suite(void);

Suite *test_dispatch_suite(void)
{
	Suite *s = suite_create("dispatch");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, alloc_random_fleets);
	tcase_add_test(tc, alloc_degenerate);
	tcase_add_test(tc, alloc_soc_balance);
	tcase_add_test(tc, limits_cases);
	tcase_add_test(tc, fleet_registry);
	tcase_add_test(tc, fleet_params);
	tcase_add_test(tc, fleet_telemetry_times);
	tcase_add_test(tc, fleet_staleness);
	tcase_add_test(tc, fleet_sensor_fault_counts_as_silence);
	tcase_add_test(tc, fleet_deadband_lease_expiry);
	tcase_add_test(tc, fleet_target_ramp);
	tcase_add_test(tc, fleet_expiry_ends_a_ramp_at_once);
	tcase_add_test(tc, fleet_expiry_ends_a_ramp_to_zero_at_once);
	tcase_add_test(tc, fleet_shortfall_is_against_the_target);
	tcase_add_test(tc, fleet_late_acks_do_not_inflate_commands);
	tcase_add_test(tc, preview_says_how_long_the_energy_lasts);
	tcase_add_test(tc, fleet_idle_draw_is_not_degraded);
	tcase_add_test(tc, fleet_moved_battery_is_not_degraded);
	tcase_add_test(tc, fleet_bias_reset_when_the_direction_turns);
	tcase_add_test(tc, fleet_ramp_from_the_first_tick);
	tcase_add_test(tc, fleet_shortfall_without_devices_is_the_target);
	tcase_add_test(tc, fleet_refusals_move_the_share);
	tcase_add_test(tc, fleet_leaving_device_goes_to_zero_others_take_it);
	tcase_add_test(tc, fleet_share_renewals_do_not_resend_leases);
	tcase_add_test(tc, fleet_leases_end_with_the_operators_setpoint);
	tcase_add_test(tc, fleet_leases_follow_an_earlier_end);
	tcase_add_test(tc, fleet_seqs_start_above_the_base);
	tcase_add_test(tc, fleet_no_setpoint_storm_while_one_ramps_down);
	tcase_add_test(tc, fleet_no_long_lease_after_the_operators_setpoint);
	tcase_add_test(tc, fleet_tracking_error_without_fresh_telemetry);
	tcase_add_test(tc, fleet_ack_timeout_moves_share);
	tcase_add_test(tc, fleet_cusum_degraded_recovered);
	tcase_add_test(tc, fleet_preview_pure);
	tcase_add_test(tc, fleet_status_estimates);
	tcase_add_test(tc, fleet_lease_tail_after_disconnect);
	suite_add_tcase(s, tc);
	return s;
}
