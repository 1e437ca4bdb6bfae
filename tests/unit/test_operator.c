/* Operator tokens: parsing with line-numbered errors, roles, and checking
 * bearer tokens against their stored hashes. The cluster's answers: what
 * the fleet would deliver when the leader splits a target over the nodes,
 * and each node's status as the API gives it. */
#include "../../server/operator/operator_int.h"
#include "vpp/auth.h"
#include "vpp/error.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* sha256("secret") and sha256("viewtok") */
#define H_SECRET "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
#define H_VIEW "9f0b7d2cbbe7d1a0d0c0b2f2f4a8a3a8a59e7f0c4f9d8c1b5e3a2d1c0b9a8f7e"

START_TEST(parses_and_checks_tokens)
{
	const char *text = "# comment line\n"
			   "alice operator sha256:" H_SECRET "  # trailing comment\n"
			   "\n"
			   "bob viewer sha256:" H_VIEW "\n";
	vpp_tokens *t;
	char err[200];
	ck_assert_int_eq(vpp_tokens_parse(text, &t, err, sizeof(err)), 0);
	ck_assert_uint_eq(vpp_tokens_count(t), 2);
	const char *name = NULL;
	ck_assert_int_eq(vpp_tokens_check(t, "Bearer secret", &name), VPP_ROLE_OPERATOR);
	ck_assert_str_eq(name, "alice");
	ck_assert_int_eq(vpp_tokens_check(t, "bearer   secret", &name), VPP_ROLE_OPERATOR);
	ck_assert_int_eq(vpp_tokens_check(t, "Bearer secreT", &name), VPP_ROLE_NONE);
	ck_assert_int_eq(vpp_tokens_check(t, "Basic secret", &name), VPP_ROLE_NONE);
	ck_assert_int_eq(vpp_tokens_check(t, "Bearer ", &name), VPP_ROLE_NONE);
	ck_assert_int_eq(vpp_tokens_check(t, NULL, &name), VPP_ROLE_NONE);
	/* The stored hash itself is not a token. */
	ck_assert_int_eq(vpp_tokens_check(t, "Bearer " H_SECRET, &name), VPP_ROLE_NONE);
	vpp_tokens_free(t);
}
END_TEST

START_TEST(rejects_bad_lines_with_their_number)
{
	const char *cases[][2] = {
		{"alice operator\n", "line 1"},
		{"ok viewer sha256:" H_SECRET "\nbad admin sha256:" H_SECRET "\n", "line 2"},
		{"x viewer sha256:1234\n", "line 1"},
		{"x viewer " H_SECRET "\n", "line 1"},
		{"x viewer sha256:" H_SECRET " extra\n", "line 1"},
		{"x viewer sha256:zz" H_SECRET "\n", "line 1"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		vpp_tokens *t = NULL;
		char err[200] = "";
		ck_assert_int_eq(vpp_tokens_parse(cases[i][0], &t, err, sizeof(err)), VPP_EINVAL);
		ck_assert_msg(strstr(err, cases[i][1]) != NULL, "case %zu: %s", i, err);
	}
	char err[200];
	vpp_tokens *t;
	ck_assert_int_eq(vpp_tokens_load("/nonexistent/tokens", &t, err, sizeof(err)), VPP_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/tokens"));
}
END_TEST

/* Files that would leave every call refused without a word. */
START_TEST(refuses_files_that_hold_no_tokens)
{
	char dir[] = "/tmp/vpp-tokens-XXXXXX", path[64], err[300];
	vpp_tokens *t = NULL;
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(vpp_tokens_load(dir, &t, err, sizeof(err)), VPP_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
	snprintf(path, sizeof(path), "%s/tokens", dir);
	FILE *f = fopen(path, "w");
	fputs("# only comments\n\n", f);
	fclose(f);
	ck_assert_int_eq(vpp_tokens_load(path, &t, err, sizeof(err)), VPP_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "no tokens"));
	f = fopen(path, "w");
	fputs("ok viewer sha256:" H_SECRET "\n", f);
	fwrite("\0x viewer\n", 1, 10, f);
	fclose(f);
	ck_assert_int_eq(vpp_tokens_load(path, &t, err, sizeof(err)), VPP_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "NUL"));
	f = fopen(path, "w");
	fputs("ok viewer sha256:" H_SECRET "\n", f);
	fclose(f);
	ck_assert_int_eq(vpp_tokens_load(path, &t, err, sizeof(err)), 0);
	ck_assert_uint_eq(vpp_tokens_count(t), 1);
	vpp_tokens_free(t);
	unlink(path);
	rmdir(dir);
}
END_TEST

/* A node of |v|: alive, dispatchable, its range +-|kw|, |kwh| above min
 * SoC (its weight), |sigma| on its present expected delivery. */
static vpp_cluster_node *add_node(vpp_cluster_view *v, const char *id, double kw, double kwh,
				  double sigma, uint32_t devices)
{
	vpp_cluster_node *n = &v->nodes[v->n++];
	snprintf(n->node_id, sizeof(n->node_id), "%s", id);
	snprintf(n->version, sizeof(n->version), "0.1.0");
	n->alive = true;
	n->heartbeat_at_ms = 1000;
	n->agg = (vpp_cluster_agg){.a = 1, .e_dis_kwh = kwh, .e_chg_kwh = kwh, .lo_kw = -kw,
				   .hi_kw = kw};
	n->status.expected_kw.sigma = sigma;
	n->status.expected_kw.as_of_ms = 1000 + v->n;
	n->status.stored_energy_kwh.value = 2 * kwh;
	n->status.n_dispatched = devices;
	n->status.n_online = devices;
	return n;
}

/* Two live nodes share a target; a dead one gets none of it, and its
 * energy does not count. A draining node takes part as in the leader's
 * split (its share shrinks with its devices as they move). */
START_TEST(cluster_preview_splits_over_live_nodes)
{
	vpp_cluster_view *v = calloc(1, sizeof(*v));
	ck_assert_ptr_nonnull(v);
	v->as_of_ms = 2000;
	add_node(v, "node-a", 10, 10, 3, 4);
	add_node(v, "node-b", 5, 5, 4, 2);
	add_node(v, "node-c", 100, 100, 50, 40)->alive = false;
	vpp_preview pv;
	ck_assert_int_eq(vpp__op_cluster_preview(v, 12, &pv), 0);
	ck_assert_double_eq_tol(pv.expected_kw.value, 12, 1e-9);
	ck_assert_double_eq_tol(pv.shortfall_kw, 0, 1e-9);
	/* Independent nodes: variances add (3-4-5). */
	ck_assert_double_eq_tol(pv.expected_kw.sigma, 5, 1e-9);
	ck_assert_double_eq_tol(pv.expected_kw.lower, 12 - 1.6448536269514722 * 5, 1e-9);
	ck_assert_double_eq_tol(pv.expected_kw.upper, 12 + 1.6448536269514722 * 5, 1e-9);
	ck_assert_int_eq(pv.expected_kw.as_of_ms, 1002);
	/* 30 kWh above min SoC at 12 kW: 2.5 h. */
	ck_assert_double_eq_tol(pv.sustain_s, 9000, 1e-6);
	ck_assert_uint_eq(pv.n_dispatched, 6);
	ck_assert_uint_eq(pv.n_saturated, 0);
	ck_assert_double_eq_tol(pv.max_kw, 15, 1e-9);

	/* Beyond the live nodes: both at their limit, the rest is short. */
	ck_assert_int_eq(vpp__op_cluster_preview(v, 40, &pv), 0);
	ck_assert_double_eq_tol(pv.expected_kw.value, 15, 1e-9);
	ck_assert_double_eq_tol(pv.shortfall_kw, 25, 1e-9);
	ck_assert_uint_eq(pv.n_saturated, 6);
	ck_assert_double_eq_tol(pv.sustain_s, 7200, 1e-6);

	/* Charging: the room to charge is not published, so unknown (0). */
	ck_assert_int_eq(vpp__op_cluster_preview(v, -6, &pv), 0);
	ck_assert_double_eq_tol(pv.expected_kw.value, -6, 1e-9);
	ck_assert(pv.sustain_s == 0);
	ck_assert_int_eq(vpp__op_cluster_preview(v, 0, &pv), 0);
	ck_assert(isinf(pv.sustain_s));

	/* No live node: nothing delivered, all of it short. */
	v->nodes[0].alive = v->nodes[1].alive = false;
	ck_assert_int_eq(vpp__op_cluster_preview(v, 7, &pv), 0);
	ck_assert_double_eq_tol(pv.expected_kw.value, 0, 1e-12);
	ck_assert_double_eq_tol(pv.shortfall_kw, 7, 1e-9);
	ck_assert_uint_eq(pv.n_dispatched, 0);

	/* Draining, it still splits. */
	v->n = 0;
	add_node(v, "node-a", 10, 10, 3, 4);
	add_node(v, "node-d", 10, 10, 4, 2)->draining = true;
	ck_assert_int_eq(vpp__op_cluster_preview(v, 12, &pv), 0);
	ck_assert_double_eq_tol(pv.expected_kw.value, 12, 1e-9);
	ck_assert_double_eq_tol(pv.expected_kw.sigma, 5, 1e-9);
	ck_assert_double_eq_tol(pv.max_kw, 20, 1e-9);
	ck_assert_uint_eq(pv.n_dispatched, 6);
	free(v);
}
END_TEST

/* GetFleetStatus in a cluster: the whole fleet, the target the leader
 * splits and its setpoint on any node (one this node has just recorded, or
 * before any share, its own), and a line per node with its heartbeat's age
 * as of now. */
START_TEST(cluster_fleet_status_lists_nodes)
{
	op_nodes *s = calloc(1, sizeof(*s));
	ck_assert_ptr_nonnull(s);
	vpp_cluster_view *v = &s->view;
	v->as_of_ms = 50000;
	v->leader_epoch = 7;
	snprintf(v->leader_id, sizeof(v->leader_id), "node-a");
	vpp_cluster_node *a = add_node(v, "node-a", 10, 10, 3, 4);
	a->role = VPP_NODE_LEADER;
	a->heartbeat_age_ms = 200;
	a->share_kw = 8;
	a->epoch = 7;
	a->status.measured_kw = (vpp_estimate){.value = 7.5, .sigma = 0.3, .as_of_ms = 49900};
	vpp_cluster_node *b = add_node(v, "node-b", 5, 5, 4, 2);
	b->alive = false;
	b->draining = true;
	b->heartbeat_age_ms = 9000;
	vpp_plant_snapshot snap;
	memset(&snap, 0, sizeof(snap));
	snprintf(snap.setpoint_id, sizeof(snap.setpoint_id), "41");
	snap.target_kw = 12;
	snap.target_valid_until_ms = 90000;

	Vpp__V1__FleetStatus st;
	Vpp__V1__Estimate est[5];
	vpp__op_cluster_fleet_status(&st, est, s, &snap, 50500);
	ck_assert_double_eq(st.target_kw, 12);
	ck_assert_str_eq(st.active_setpoint_id, "41");
	ck_assert_int_eq(st.active_valid_until_ms, 90000);
	ck_assert_uint_eq(st.devices_online, 4); /* the dead node is not counted */
	ck_assert_double_eq_tol(st.measured_kw->value, 7.5, 1e-12);
	ck_assert_str_eq(st.leader_node_id, "node-a");
	ck_assert_uint_eq(st.leader_epoch, 7);
	ck_assert_uint_eq(st.n_nodes, 2);
	const Vpp__V1__NodeStatus *na = st.nodes[0], *nb = st.nodes[1];
	ck_assert_str_eq(na->node_id, "node-a");
	ck_assert_str_eq(na->role, "leader");
	ck_assert(na->alive && !na->draining);
	ck_assert_int_eq(na->heartbeat_age_ms, 700); /* 200 at the read, 500 ms ago */
	ck_assert_double_eq(na->share_kw, 8);
	ck_assert_uint_eq(na->epoch, 7);
	ck_assert_double_eq(na->measured_kw->sigma, 0.3);
	ck_assert_uint_eq(na->devices_online, 4);
	ck_assert_str_eq(na->version, "0.1.0");
	ck_assert_str_eq(nb->role, "follower");
	ck_assert(!nb->alive && nb->draining);
	ck_assert_int_eq(nb->heartbeat_age_ms, 9500);

	/* The leader splits a later setpoint, recorded on another node: its
	 * target and its id, on this node too. */
	v->have_share = true;
	v->fleet_target_kw = v->fleet_eff_kw = 30;
	v->setpoint_id = 42;
	v->setpoint_valid_until_ms = 95000;
	vpp__op_cluster_fleet_status(&st, est, s, &snap, 50500);
	ck_assert_double_eq(st.target_kw, 30);
	ck_assert_str_eq(st.active_setpoint_id, "42");
	ck_assert_int_eq(st.active_valid_until_ms, 95000);
	/* It splits this node's: the target after the leader's ramp. */
	v->setpoint_id = 41;
	v->setpoint_valid_until_ms = 90000;
	v->fleet_target_kw = 12;
	v->fleet_eff_kw = 10;
	vpp__op_cluster_fleet_status(&st, est, s, &snap, 50500);
	ck_assert_double_eq(st.target_kw, 10);
	ck_assert_str_eq(st.active_setpoint_id, "41");
	/* This node recorded one the leader has not split yet: that one. */
	v->setpoint_id = 40;
	v->fleet_target_kw = v->fleet_eff_kw = 5;
	vpp__op_cluster_fleet_status(&st, est, s, &snap, 50500);
	ck_assert_double_eq(st.target_kw, 12);
	ck_assert_str_eq(st.active_setpoint_id, "41");
	ck_assert_int_eq(st.active_valid_until_ms, 90000);
	/* No setpoint in force anywhere. */
	v->setpoint_id = 0;
	v->fleet_target_kw = v->fleet_eff_kw = 0;
	snap.setpoint_id[0] = 0;
	vpp__op_cluster_fleet_status(&st, est, s, &snap, 50500);
	ck_assert_double_eq(st.target_kw, 0);
	ck_assert_str_eq(st.active_setpoint_id, "");
	ck_assert_int_eq(st.active_valid_until_ms, 0);
	free(s);
}
END_TEST

/* ListNodes on a single vppd: itself, the leader, epoch 0. */
START_TEST(single_node_lists_itself)
{
	vpp_plant_snapshot snap;
	memset(&snap, 0, sizeof(snap));
	snap.last_tick_at_ms = 99000;
	snap.status.target_kw = 6;
	snap.status.n_online = 3;
	snap.status.shortfall_kw = 1.5;
	snap.status.measured_kw = (vpp_estimate){.value = 4.5, .sigma = 0.2};
	vpp_cluster_node n;
	vpp__op_local_node(&n, &snap, "grid-test", "0.1.0", 10000, 99250);
	Vpp__V1__NodeStatus ns;
	Vpp__V1__Estimate e;
	vpp__op_node_status(&ns, &e, &n, 0);
	ck_assert_str_eq(ns.node_id, "grid-test");
	ck_assert_str_eq(ns.role, "leader");
	ck_assert(ns.alive && !ns.draining);
	ck_assert_uint_eq(ns.epoch, 0);
	ck_assert_int_eq(ns.started_at_ms, 10000);
	ck_assert_int_eq(ns.heartbeat_at_ms, 99000);
	ck_assert_int_eq(ns.heartbeat_age_ms, 250);
	ck_assert_double_eq(ns.share_kw, 6);
	ck_assert_double_eq(ns.measured_kw->value, 4.5);
	ck_assert_uint_eq(ns.devices_online, 3);
	ck_assert_double_eq(ns.shortfall_kw, 1.5);
}
END_TEST

/* DrainNode: the ids a cluster accepts, and what each answer of the
 * cluster becomes for the caller and in the audit log. */
START_TEST(drain_ids_and_outcomes)
{
	char id40[41], id41[42];
	memset(id40, 'n', 40);
	id40[40] = 0;
	memset(id41, 'n', 41);
	id41[41] = 0;
	ck_assert(vpp__op_node_id_ok("node-2"));
	ck_assert(vpp__op_node_id_ok("a.B_9-z"));
	ck_assert(vpp__op_node_id_ok(id40));
	ck_assert(!vpp__op_node_id_ok(id41));
	ck_assert(!vpp__op_node_id_ok(""));
	ck_assert(!vpp__op_node_id_ok("node 2"));
	ck_assert(!vpp__op_node_id_ok("node/2"));
	ck_assert(!vpp__op_node_id_ok("n\xc3\xa9"));

	vpp_grpc_status code;
	char msg[200];
	ck_assert_str_eq(vpp__op_drain_outcome(0, "node-2", &code, msg, sizeof(msg)), "accepted");
	ck_assert_int_eq(code, VPP_GRPC_OK);
	ck_assert_str_eq(msg, "");
	ck_assert_str_eq(vpp__op_drain_outcome(VPP_ENOENT, "node-9", &code, msg, sizeof(msg)),
			 "no_such_node");
	ck_assert_int_eq(code, VPP_GRPC_NOT_FOUND);
	ck_assert_msg(strstr(msg, "no live node 'node-9'") != NULL, "%s", msg);
	ck_assert_str_eq(vpp__op_drain_outcome(VPP_EDB, "node-2", &code, msg, sizeof(msg)),
			 "db_unavailable");
	ck_assert_int_eq(code, VPP_GRPC_UNAVAILABLE);
	ck_assert_str_eq(msg, "the database is unreachable: retry");
	vpp__op_drain_outcome(VPP_ECLOSED, "node-2", &code, msg, sizeof(msg));
	ck_assert_int_eq(code, VPP_GRPC_UNAVAILABLE);
	vpp__op_drain_outcome(VPP_EFULL, "node-2", &code, msg, sizeof(msg));
	ck_assert_int_eq(code, VPP_GRPC_RESOURCE_EXHAUSTED);
	vpp__op_drain_outcome(VPP_EINVAL, "node-2", &code, msg, sizeof(msg));
	ck_assert_int_eq(code, VPP_GRPC_INVALID_ARGUMENT);
	vpp__op_drain_outcome(VPP_EIO, "node-2", &code, msg, sizeof(msg));
	ck_assert_int_eq(code, VPP_GRPC_INTERNAL);
}
END_TEST

Suite *test_operator_suite(void);

Suite *test_operator_suite(void)
{
	Suite *s = suite_create("operator");
	TCase *tc = tcase_create("auth");
	tcase_add_test(tc, parses_and_checks_tokens);
	tcase_add_test(tc, rejects_bad_lines_with_their_number);
	tcase_add_test(tc, refuses_files_that_hold_no_tokens);
	suite_add_tcase(s, tc);
	TCase *cl = tcase_create("cluster");
	tcase_add_test(cl, cluster_preview_splits_over_live_nodes);
	tcase_add_test(cl, cluster_fleet_status_lists_nodes);
	tcase_add_test(cl, single_node_lists_itself);
	tcase_add_test(cl, drain_ids_and_outcomes);
	suite_add_tcase(s, cl);
	return s;
}
