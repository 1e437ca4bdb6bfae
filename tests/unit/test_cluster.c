/* Unit tests of the cluster's pure parts: the split of the fleet target
 * across nodes (the exact allocator over node aggregates, checked against
 * the dispatch core of real fleets) and the whole fleet's status summed
 * from the nodes' (means and variances add; dead nodes do not count). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "vpp/cluster.h"
#include "vpp/error.h"

static vpp_cluster_agg node(double edis, double echg, double lo, double hi)
{
	vpp_cluster_agg g = {
	    .a = 1, .e_dis_kwh = edis, .e_chg_kwh = echg, .lo_kw = lo, .hi_kw = hi};
	return g;
}

START_TEST(split_sums_to_the_target_by_energy)
{
	/* Unsaturated: shares in proportion to the energy in the direction. */
	vpp_cluster_agg n[3] = {node(10, 30, -100, 100), node(20, 20, -100, 100),
	                        node(30, 10, -100, 100)};
	double s[3];
	vpp_alloc_result r;
	ck_assert_int_eq(vpp_cluster_split(n, 3, 60, s, &r), 0);
	ck_assert(r.feasible);
	ck_assert_double_eq_tol(s[0] + s[1] + s[2], 60, 1e-9);
	ck_assert_double_eq_tol(s[0], 10, 1e-9);
	ck_assert_double_eq_tol(s[1], 20, 1e-9);
	ck_assert_double_eq_tol(s[2], 30, 1e-9);
	/* Charging follows the room to charge. */
	ck_assert_int_eq(vpp_cluster_split(n, 3, -60, s, &r), 0);
	ck_assert_double_eq_tol(s[0], -30, 1e-9);
	ck_assert_double_eq_tol(s[2], -10, 1e-9);
}
END_TEST

START_TEST(split_saturates_and_reports_the_shortfall)
{
	/* Node 0 can give only 5: the rest moves to node 1, then both are
	 * at their limits and the shortfall is what is left. */
	vpp_cluster_agg n[2] = {node(100, 100, -5, 5), node(1, 1, -50, 50)};
	double s[2];
	vpp_alloc_result r;
	ck_assert_int_eq(vpp_cluster_split(n, 2, 30, s, &r), 0);
	ck_assert(r.feasible);
	ck_assert_double_eq_tol(s[0], 5, 1e-9);
	ck_assert_double_eq_tol(s[1], 25, 1e-9);
	ck_assert_int_eq(vpp_cluster_split(n, 2, 80, s, &r), 0);
	ck_assert(!r.feasible);
	ck_assert_double_eq_tol(s[0] + s[1], 55, 1e-9);
	ck_assert_double_eq_tol(r.shortfall_kw, 25, 1e-9);
}
END_TEST

START_TEST(split_skips_nodes_without_devices_and_refuses_nan)
{
	vpp_cluster_agg n[2] = {node(10, 10, -10, 10), node(0, 0, 0, 0)};
	n[1].a = 0;
	double s[2] = {7, 7};
	ck_assert_int_eq(vpp_cluster_split(n, 2, 4, s, NULL), 0);
	ck_assert_double_eq_tol(s[0], 4, 1e-9);
	ck_assert_double_eq(s[1], 0);
	n[1] = node(NAN, 1, -1, 1);
	ck_assert_int_eq(vpp_cluster_split(n, 2, 4, s, NULL), VPP_EINVAL);
	ck_assert_int_eq(vpp_cluster_split(n, 1, INFINITY, s, NULL), VPP_EINVAL);
	n[1] = node(1, 1, 2, 1); /* lo > hi */
	ck_assert_int_eq(vpp_cluster_split(n, 2, 4, s, NULL), VPP_EINVAL);
	/* No node: the whole target is short. */
	vpp_alloc_result r;
	ck_assert_int_eq(vpp_cluster_split(NULL, 0, 4, s, &r), 0);
	ck_assert_double_eq_tol(r.shortfall_kw, 4, 1e-9);
}
END_TEST

/* Two real fleets: their aggregates split a target, each fleet is given
 * its share, and after a tick the expected deliveries add up to it. */
static void fill(vpp_fleet *f, int n, double soc, int64_t now, const char *prefix)
{
	for (int i = 0; i < n; i++) {
		char id[32];
		uint32_t slot;
		snprintf(id, sizeof(id), "%s-%03d", prefix, i);
		vpp_device_ratings r = {5, 5, 13.5, 0.05, 0.95, 0};
		ck_assert_int_eq(vpp_fleet_add(f, id, &r, &slot), 0);
		ck_assert_int_eq(vpp_fleet_connect(f, slot, now), 0);
		vpp_telemetry t = {.seq = 1,
		                   .measured_at_ms = now,
		                   .received_at_ms = now,
		                   .power_kw = 0,
		                   .power_sigma_kw = 0.05,
		                   .soc = soc,
		                   .soc_sigma = 0.01};
		ck_assert_int_eq(vpp_fleet_telemetry(f, slot, &t), 0);
	}
}

START_TEST(shares_of_real_fleets_add_up)
{
	int64_t now = 1700000000000;
	vpp_fleet *f[2];
	vpp_tick_output out;
	vpp_cluster_agg agg[2];
	for (int k = 0; k < 2; k++) {
		ck_assert_int_eq(vpp_fleet_new(NULL, &f[k]), 0);
		fill(f[k], k ? 30 : 10, k ? 0.8 : 0.4, now, k ? "b" : "a");
		ck_assert_int_eq(vpp_fleet_tick(f[k], now, &out), 0);
		agg[k].a = 0;
		vpp_fleet_aggregate(f[k], &agg[k].a, &agg[k].e_dis_kwh, &agg[k].e_chg_kwh,
		                    &agg[k].lo_kw, &agg[k].hi_kw);
	}
	double s[2];
	vpp_alloc_result r;
	ck_assert_int_eq(vpp_cluster_split(agg, 2, 120, s, &r), 0);
	ck_assert(r.feasible);
	/* The fuller, larger node takes more. */
	ck_assert(s[1] > 3 * s[0]);
	double expected = 0;
	for (int k = 0; k < 2; k++) {
		ck_assert_int_eq(vpp_fleet_set_target(f[k], s[k], now + 60000, 0, now), 0);
		ck_assert_int_eq(vpp_fleet_tick(f[k], now + 1, &out), 0);
		expected += out.status.expected_kw.value;
		vpp_fleet_free(f[k]);
	}
	ck_assert_double_eq_tol(expected, 120, 1e-6);
}
END_TEST

static vpp_cluster_node live(const char *id, double measured, double sigma, double share)
{
	vpp_cluster_node n;
	memset(&n, 0, sizeof(n));
	snprintf(n.node_id, sizeof(n.node_id), "%s", id);
	n.alive = true;
	n.status.measured_kw = (vpp_estimate){measured, sigma, 0, 0, 1000};
	n.status.target_kw = n.status.target_eff_kw = share;
	n.status.n_online = 10;
	n.status.feasible = 1;
	return n;
}

START_TEST(fleet_status_adds_means_and_variances)
{
	vpp_cluster_view v;
	memset(&v, 0, sizeof(v));
	v.nodes[0] = live("a", 30, 3, 30);
	v.nodes[1] = live("b", 40, 4, 40);
	v.nodes[2] = live("dead", 1000, 1, 0);
	v.nodes[2].alive = false;
	v.n = 3;
	vpp_fleet_status st;
	vpp_cluster_fleet_status(&v, &st);
	ck_assert_double_eq_tol(st.measured_kw.value, 70, 1e-9);
	ck_assert_double_eq_tol(st.measured_kw.sigma, 5, 1e-9);
	ck_assert_double_eq_tol(st.measured_kw.upper - st.measured_kw.lower, 2 * 1.6448536 * 5,
	                        1e-5);
	ck_assert_uint_eq(st.n_online, 20);
	ck_assert_double_eq_tol(st.target_kw, 70, 1e-9);
	/* With the leader's fleet target known: the part it could not place
	 * is short too. */
	v.have_share = true;
	v.fleet_target_kw = 100;
	v.fleet_eff_kw = 90;
	vpp_cluster_fleet_status(&v, &st);
	ck_assert_double_eq_tol(st.target_kw, 100, 1e-9);
	ck_assert_double_eq_tol(st.shortfall_kw, 20, 1e-9);
}
END_TEST

Suite *test_cluster_suite(void);

Suite *test_cluster_suite(void)
{
	Suite *s = suite_create("cluster");
	TCase *tc = tcase_create("split");
	tcase_add_test(tc, split_sums_to_the_target_by_energy);
	tcase_add_test(tc, split_saturates_and_reports_the_shortfall);
	tcase_add_test(tc, split_skips_nodes_without_devices_and_refuses_nan);
	tcase_add_test(tc, shares_of_real_fleets_add_up);
	tcase_add_test(tc, fleet_status_adds_means_and_variances);
	suite_add_tcase(s, tc);
	return s;
}
