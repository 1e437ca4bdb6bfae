/* vpp-emulator's battery physics and fault assignment (tools/emulator/
 * physics.c, faults.c, rng.c): the ground truth vpp is measured against
 * must itself be right. */
#include "emul_int.h"
#include "physics.h"
#include "vpp/error.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

Suite *test_emulator_suite(void);

static vpp__emul_params base(void)
{
	vpp__emul_params p = {
	    .rated_charge_kw = 5,
	    .rated_discharge_kw = 5,
	    .capacity_kwh = 10,
	    .min_soc = 0.1,
	    .max_soc = 0.9,
	    .ramp_kw_per_s = 1000, /* effectively unlimited unless a test sets it */
	    .charge_eff = 1,
	    .discharge_eff = 1,
	    .tau_s = 0,
	    .delay_s = 0,
	    .noise_kw = 0,
	    .soc_sigma = 0,
	    .partial_factor = 1,
	};
	return p;
}

/* Nearest rank: p90 of ten samples is the ninth, not the largest. */
START_TEST(percentiles_nearest_rank)
{
	vpp__emul_hist h;
	memset(&h, 0, sizeof(h));
	for (int i = 0; i < 9; i++)
		vpp__emul_hist_add(&h, 1000);
	vpp__emul_hist_add(&h, 100000);
	ck_assert_uint_lt(vpp__emul_hist_quantile(&h, 0.9), 2000);
	ck_assert_uint_eq(vpp__emul_hist_quantile(&h, 1.0), 100000);
	ck_assert_uint_lt(vpp__emul_hist_quantile(&h, 0.5), 2000);
	memset(&h, 0, sizeof(h));
	ck_assert_uint_eq(vpp__emul_hist_quantile(&h, 0.99), 0);
}
END_TEST

/* Setpoints of one tick share valid_until_ms and server_time_ms; near the
 * end of an operator's setpoint every tick shares valid_until_ms, so the
 * groups must tell ticks apart by server_time_ms. */
START_TEST(fanout_groups_tell_ticks_apart)
{
	vpp__emul_groups g = {0};
	ck_assert_int_eq(vpp__emul_groups_add(&g, 5000, 1000, 100, 1, 100), 0);
	ck_assert_int_eq(vpp__emul_groups_add(&g, 5000, 1000, 150, 1, 150), 0);
	ck_assert_int_eq(vpp__emul_groups_add(&g, 5000, 2000, 1100, 1, 1100), 0);
	ck_assert_uint_eq(g.n, 2);
	for (size_t i = 0; i < g.cap; i++)
		if (g.v[i].count)
			ck_assert_int_le(g.v[i].last_us - g.v[i].first_us, 50);
	vpp__emul_groups_free(&g);
}
END_TEST

START_TEST(soc_integrates_with_efficiency)
{
	vpp__emul_params p = base();
	p.discharge_eff = 0.9;
	p.charge_eff = 0.8;
	p.capacity_kwh = 20;
	vpp__emul_battery b;
	vpp__emul_battery_init(&b, &p, 0.5, 0);
	/* 4 kW for one hour delivers 4 kWh and draws 4 / 0.9 from the cell. */
	vpp__emul_battery_command(&b, 4, 7200, 0);
	vpp__emul_battery_advance(&b, 3600);
	ck_assert_double_eq_tol(b.power_kw, 4, 1e-9);
	ck_assert_double_eq_tol(b.delivered_kwh, 4, 1e-6);
	ck_assert_double_eq_tol(b.soc, 0.5 - 4 / 0.9 / 20, 1e-6);

	/* Charging at 2 kW for one hour takes 2 kWh and stores 2 × 0.8. */
	vpp__emul_battery_init(&b, &p, 0.5, 0);
	vpp__emul_battery_command(&b, -2, 7200, 0);
	vpp__emul_battery_advance(&b, 3600);
	ck_assert_double_eq_tol(b.power_kw, -2, 1e-9);
	ck_assert_double_eq_tol(b.soc, 0.5 + 2 * 0.8 / 20, 1e-6);
	ck_assert_double_eq_tol(b.delivered_kwh, -2, 1e-6);
}
END_TEST

START_TEST(power_ratings_clamp)
{
	vpp__emul_params p = base();
	p.rated_discharge_kw = 3;
	p.rated_charge_kw = 2;
	vpp__emul_battery b;
	vpp__emul_battery_init(&b, &p, 0.5, 0);
	vpp__emul_battery_command(&b, 10, 100, 0);
	vpp__emul_battery_advance(&b, 10);
	ck_assert_double_eq_tol(b.power_kw, 3, 1e-9);
	vpp__emul_battery_command(&b, -10, 100, 10);
	vpp__emul_battery_advance(&b, 20);
	ck_assert_double_eq_tol(b.power_kw, -2, 1e-9);
}
END_TEST

START_TEST(soc_limits_stop_discharge_and_charge)
{
	vpp__emul_params p = base();
	vpp__emul_battery b;
	/* 5 kW from 0.2 with min 0.1 of 10 kWh: 1 kWh, i.e. 12 minutes. */
	vpp__emul_battery_init(&b, &p, 0.2, 0);
	vpp__emul_battery_command(&b, 5, 1e9, 0);
	vpp__emul_battery_advance(&b, 600);
	ck_assert_double_eq_tol(b.power_kw, 5, 1e-9);
	vpp__emul_battery_advance(&b, 3600);
	ck_assert_double_eq_tol(b.soc, 0.1, 1e-9);
	ck_assert_double_eq_tol(b.power_kw, 0, 1e-9);
	ck_assert_double_eq_tol(b.delivered_kwh, 1, 1e-6);
	ck_assert_double_eq_tol(vpp__emul_battery_target(&b), 0, 1e-12);

	vpp__emul_battery_init(&b, &p, 0.85, 0);
	vpp__emul_battery_command(&b, -5, 1e9, 0);
	vpp__emul_battery_advance(&b, 3600);
	ck_assert_double_eq_tol(b.soc, 0.9, 1e-9);
	ck_assert_double_eq_tol(b.power_kw, 0, 1e-9);
	/* At the top it may still discharge. */
	vpp__emul_battery_command(&b, 1, 1e9, 3600);
	vpp__emul_battery_advance(&b, 3700);
	ck_assert_double_eq_tol(b.power_kw, 1, 1e-9);
}
END_TEST

START_TEST(ramp_limits_the_rate_of_change)
{
	vpp__emul_params p = base();
	p.ramp_kw_per_s = 2;
	vpp__emul_battery b;
	vpp__emul_battery_init(&b, &p, 0.5, 0);
	vpp__emul_battery_command(&b, 5, 100, 0);
	vpp__emul_battery_advance(&b, 1.0);
	ck_assert_double_eq_tol(b.power_kw, 2, 1e-9);
	vpp__emul_battery_advance(&b, 2.0);
	ck_assert_double_eq_tol(b.power_kw, 4, 1e-9);
	vpp__emul_battery_advance(&b, 3.0);
	ck_assert_double_eq_tol(b.power_kw, 5, 1e-9);
}
END_TEST

START_TEST(first_order_lag_and_delay)
{
	vpp__emul_params p = base();
	p.tau_s = 1.0;
	p.delay_s = 0.5;
	vpp__emul_battery b;
	vpp__emul_battery_init(&b, &p, 0.5, 0);
	vpp__emul_battery_command(&b, 4, 100, 0);
	/* Nothing during the dead time. */
	vpp__emul_battery_advance(&b, 0.5);
	ck_assert_double_eq_tol(b.power_kw, 0, 1e-12);
	ck_assert_double_eq_tol(vpp__emul_battery_target(&b), 4, 1e-12);
	/* Then 1 - e^(-t/tau) of the step. */
	vpp__emul_battery_advance(&b, 1.5);
	ck_assert_double_eq_tol(b.power_kw, 4 * (1 - exp(-1.0)), 1e-9);
	vpp__emul_battery_advance(&b, 3.5);
	ck_assert_double_eq_tol(b.power_kw, 4 * (1 - exp(-3.0)), 1e-9);
}
END_TEST

/* Setpoints every 0.5 s into a 1.2 s delay: each takes effect 1.2 s after
 * it was heard, in order. A newer one replacing the one still waiting would
 * leave the battery at 0 for ever. */
START_TEST(delay_line_keeps_every_setpoint)
{
	vpp__emul_params p = base();
	p.delay_s = 1.2;
	vpp__emul_battery b;
	vpp__emul_battery_init(&b, &p, 0.5, 0);
	const double kw[] = {1, 2, 3, 4, -1, -2};
	/* Every 0.25 s: a setpoint on the half seconds, and the power is that
	 * of the last setpoint heard at least 1.2 s before. */
	for (int k = 0; k <= 20; k++) {
		double t = 0.25 * k;
		vpp__emul_battery_advance(&b, t);
		int heard = (int)floor((t - 1.2) / 0.5 + 1e-9); /* its index */
		double want = heard < 0 ? 0 : kw[heard < 5 ? heard : 5];
		ck_assert_double_eq_tol(b.power_kw, want, 1e-9);
		if (k % 2 == 0 && k / 2 < 6)
			vpp__emul_battery_command(&b, kw[k / 2], 100, t);
	}
	ck_assert_uint_eq(b.npending, 0);
}
END_TEST

/* More setpoints within one delay than the line holds, one every tick for
 * good (a delay of 10 s, a tick of 1 s): the first ones take effect in
 * turn, each 10 s after it was heard, so the battery moves. */
START_TEST(delay_line_full_still_moves)
{
	vpp__emul_params p = base();
	p.delay_s = 10;
	vpp__emul_battery b;
	vpp__emul_battery_init(&b, &p, 0.5, 0);
	for (int k = 0; k <= 30; k++) {
		vpp__emul_battery_advance(&b, k + 0.25);
		if (k >= 11 && k < 11 + VPP__EMUL_MAX_PENDING - 1)
			/* the setpoint heard at k - 10.5, the (k-10)th */
			ck_assert_double_eq_tol(b.power_kw, 0.1 * (k - 10), 1e-9);
		vpp__emul_battery_command(&b, 0.1 * (k + 1), 1000, k + 0.5);
		ck_assert_uint_le(b.npending, VPP__EMUL_MAX_PENDING);
	}
	ck_assert(b.power_kw > 0);
}
END_TEST

START_TEST(lease_expiry_returns_to_zero)
{
	vpp__emul_params p = base();
	p.tau_s = 0.2;
	vpp__emul_battery b;
	vpp__emul_battery_init(&b, &p, 0.5, 0);
	vpp__emul_battery_command(&b, 3, 2.0, 0);
	vpp__emul_battery_advance(&b, 1.99);
	ck_assert_double_eq_tol(b.power_kw, 3, 0.01);
	ck_assert_double_eq_tol(vpp__emul_battery_commanded(&b), 3, 1e-12);
	/* At the lease end the battery steers to 0 by itself. */
	vpp__emul_battery_advance(&b, 2.0);
	ck_assert_double_eq_tol(vpp__emul_battery_commanded(&b), 0, 1e-12);
	ck_assert_double_eq_tol(vpp__emul_battery_target(&b), 0, 1e-12);
	vpp__emul_battery_advance(&b, 4.0);
	ck_assert_double_eq_tol(b.power_kw, 0, 1e-3);
	/* A renewed lease keeps it going: a new setpoint before the end. */
	vpp__emul_battery_command(&b, 2, 6.0, 4.0);
	vpp__emul_battery_command(&b, 2, 8.0, 5.5);
	vpp__emul_battery_advance(&b, 7.5);
	ck_assert_double_eq_tol(b.power_kw, 2, 1e-6);
	/* A lease already over when heard commands nothing. */
	vpp__emul_battery_command(&b, 5, 7.0, 9.0);
	vpp__emul_battery_advance(&b, 12.0);
	ck_assert_double_eq_tol(b.power_kw, 0, 1e-3);
}
END_TEST

START_TEST(partial_and_ignore_faults)
{
	vpp__emul_params p = base();
	p.partial_factor = 0.4;
	vpp__emul_battery b;
	vpp__emul_battery_init(&b, &p, 0.5, 0);
	vpp__emul_battery_command(&b, 5, 100, 0);
	vpp__emul_battery_advance(&b, 1);
	ck_assert_double_eq_tol(b.power_kw, 2, 1e-9);
	/* It still reports the setpoint as commanded: the fault is silent. */
	ck_assert_double_eq_tol(vpp__emul_battery_commanded(&b), 5, 1e-12);

	p = base();
	p.ignore = true;
	vpp__emul_battery_init(&b, &p, 0.5, 0);
	vpp__emul_battery_command(&b, -4, 100, 0);
	vpp__emul_battery_advance(&b, 10);
	ck_assert_double_eq_tol(b.power_kw, 0, 1e-12);
	ck_assert_double_eq_tol(b.soc, 0.5, 1e-12);
}
END_TEST

START_TEST(measurement_noise_is_honest)
{
	vpp__emul_params p = base();
	p.noise_kw = 0.2;
	p.soc_sigma = 0.01;
	vpp__emul_battery b;
	vpp__emul_battery_init(&b, &p, 0.5, 0);
	vpp__emul_battery_command(&b, 3, 100, 0);
	vpp__emul_battery_advance(&b, 1);
	vpp__emul_rng r;
	vpp__emul_rng_seed(&r, 42, 1);
	double sum = 0, sum2 = 0, ssum = 0;
	int n = 20000;
	for (int i = 0; i < n; i++) {
		double pw, soc;
		vpp__emul_battery_measure(&b, &r, &pw, &soc);
		sum += pw - 3;
		sum2 += (pw - 3) * (pw - 3);
		ssum += soc;
		ck_assert(soc >= 0 && soc <= 1);
	}
	double mean = sum / n, sd = sqrt(sum2 / n - mean * mean);
	ck_assert_double_eq_tol(mean, 0, 0.01);
	ck_assert_double_eq_tol(sd, 0.2, 0.01);
	ck_assert_double_eq_tol(ssum / n, b.soc, 0.001);
}
END_TEST

START_TEST(rng_is_deterministic_per_stream)
{
	vpp__emul_rng a, b, c;
	vpp__emul_rng_seed(&a, 7, 3);
	vpp__emul_rng_seed(&b, 7, 3);
	vpp__emul_rng_seed(&c, 7, 4);
	int same_c = 0;
	for (int i = 0; i < 100; i++) {
		uint64_t x = vpp__emul_rng_next(&a);
		ck_assert_uint_eq(x, vpp__emul_rng_next(&b));
		same_c += x == vpp__emul_rng_next(&c);
	}
	ck_assert_int_eq(same_c, 0);
	for (int i = 0; i < 1000; i++) {
		double u = vpp__emul_rng_uniform(&a);
		ck_assert(u >= 0 && u < 1);
	}
}
END_TEST

START_TEST(faults_exact_disjoint_and_seeded)
{
	enum { N = 1000 };
	double frac[VPP__EMUL_F__COUNT] = {0};
	frac[VPP__EMUL_F_OFFLINE] = 0.05;
	frac[VPP__EMUL_F_FLAKY] = 0.1;
	frac[VPP__EMUL_F_IGNORE] = 0.02;
	frac[VPP__EMUL_F_PARTIAL] = 0.1;
	frac[VPP__EMUL_F_LATE_ACK] = 0.03;
	frac[VPP__EMUL_F_MALFORMED] = 0.01;
	uint8_t a[N], b[N], c[N];
	ck_assert_int_eq(vpp__emul_faults_assign(frac, N, 5, a), 0);
	ck_assert_int_eq(vpp__emul_faults_assign(frac, N, 5, b), 0);
	ck_assert_int_eq(vpp__emul_faults_assign(frac, N, 6, c), 0);
	int count[VPP__EMUL_F__COUNT] = {0}, differ = 0;
	for (int i = 0; i < N; i++) {
		count[a[i]]++;
		ck_assert_int_eq(a[i], b[i]);
		differ += a[i] != c[i];
	}
	ck_assert_int_eq(count[VPP__EMUL_F_OFFLINE], 50);
	ck_assert_int_eq(count[VPP__EMUL_F_FLAKY], 100);
	ck_assert_int_eq(count[VPP__EMUL_F_IGNORE], 20);
	ck_assert_int_eq(count[VPP__EMUL_F_PARTIAL], 100);
	ck_assert_int_eq(count[VPP__EMUL_F_LATE_ACK], 30);
	ck_assert_int_eq(count[VPP__EMUL_F_MALFORMED], 10);
	ck_assert_int_eq(count[VPP__EMUL_F_NONE], 690);
	ck_assert_int_gt(differ, 0);
	/* Not all at the front: a shuffle, not a prefix. */
	int front = 0;
	for (int i = 0; i < 310; i++)
		front += a[i] != VPP__EMUL_F_NONE;
	ck_assert_int_lt(front, 200);

	frac[VPP__EMUL_F_IGNORE] = 0.9;
	ck_assert_int_eq(vpp__emul_faults_assign(frac, N, 5, a), VPP_EINVAL);

	/* Ten devices, 15 % of each of the six kinds: every kind gets one or
	 * two, the last too, and nine in all (rounding each kind alone gave
	 * the first five two each and the last none). */
	double f15[VPP__EMUL_F__COUNT] = {0};
	for (int k = 1; k < VPP__EMUL_F__COUNT; k++)
		f15[k] = 0.15;
	uint8_t ten[10];
	ck_assert_int_eq(vpp__emul_faults_assign(f15, 10, 3, ten), 0);
	int per[VPP__EMUL_F__COUNT] = {0};
	for (int i = 0; i < 10; i++)
		per[ten[i]]++;
	for (int k = 1; k < VPP__EMUL_F__COUNT; k++)
		ck_assert(per[k] == 1 || per[k] == 2);
	ck_assert_int_eq(per[VPP__EMUL_F_NONE], 1);
	ck_assert_str_eq(vpp__emul_fault_name(VPP__EMUL_F_LATE_ACK), "late_ack");
}
END_TEST

Suite *test_emulator_suite(void)
{
	Suite *s = suite_create("emulator");
	TCase *tc = tcase_create("physics");
	tcase_add_test(tc, soc_integrates_with_efficiency);
	tcase_add_test(tc, power_ratings_clamp);
	tcase_add_test(tc, soc_limits_stop_discharge_and_charge);
	tcase_add_test(tc, ramp_limits_the_rate_of_change);
	tcase_add_test(tc, first_order_lag_and_delay);
	tcase_add_test(tc, delay_line_keeps_every_setpoint);
	tcase_add_test(tc, delay_line_full_still_moves);
	tcase_add_test(tc, lease_expiry_returns_to_zero);
	tcase_add_test(tc, partial_and_ignore_faults);
	tcase_add_test(tc, measurement_noise_is_honest);
	suite_add_tcase(s, tc);
	tc = tcase_create("fleet");
	tcase_add_test(tc, rng_is_deterministic_per_stream);
	tcase_add_test(tc, faults_exact_disjoint_and_seeded);
	tcase_add_test(tc, percentiles_nearest_rank);
	tcase_add_test(tc, fanout_groups_tell_ticks_apart);
	suite_add_tcase(s, tc);
	return s;
}
