/* Membership: a node registers in cluster_nodes under a lock on its id,
 * heartbeats its aggregate and status every tick, and reads the others. */
#include "cluster_int.h"
#include "vpp/clock.h"
#include "vpp/log.h"
#include "vpp/store.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DB_NOW_MS "(extract(epoch from clock_timestamp()) * 1000)::bigint"
#define MS(col) "(extract(epoch from " col ") * 1000)::bigint"

int vpp__cl_check_clock(vpp_cluster *c, PGconn *conn, bool at_start, char *err, size_t errlen)
{
	int64_t t0 = vpp_wall_ms();
	PGresult *r =
	    vpp__cl_exec(conn, "SELECT " DB_NOW_MS, 0, NULL, vpp__cl_timeout(c), err, errlen);
	int64_t t1 = vpp_wall_ms();
	if (!r)
		return VPP_EDB;
	int64_t db = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	/* The database read its clock somewhere in the round trip. */
	int64_t off = db - (t0 + t1) / 2, slack = (t1 - t0) / 2;
	int64_t bad = llabs(off) - slack;
	if (bad > c->o.max_clock_skew_ms) {
		snprintf(err, errlen,
		         "this node's clock is %+lld ms off the database's (more than "
		         "cluster-max-clock-skew-ms, %lld): shares and leases are in Unix ms, so "
		         "it cannot take part until its clock is synchronised (NTP)",
		         (long long)-off, (long long)c->o.max_clock_skew_ms);
		if (c->clock_ok || at_start)
			vpp_counter_inc(c->met.skew);
		c->clock_ok = false;
		return VPP_ERANGE;
	}
	if (!c->clock_ok && !at_start)
		vpp_log(VPP_LOG_INFO, "cluster",
		        "node=%s clock back within %lld ms of the database's", c->node_id,
		        (long long)c->o.max_clock_skew_ms);
	c->clock_ok = true;
	return 0;
}

/* Refuses to join when a live node of another protocol is in the cluster,
 * or the database's schema is not the one this binary knows. */
static int check_versions(vpp_cluster *c, char *err, size_t errlen)
{
	char timeout[32], proto[16];
	snprintf(timeout, sizeof(timeout), "%lld", (long long)c->o.node_timeout_ms);
	snprintf(proto, sizeof(proto), "%d", VPP_CLUSTER_PROTOCOL);
	const char *p[3] = {c->node_id, timeout, proto};
	PGresult *r = vpp__cl_exec(
	    c->main,
	    "SELECT node_id, protocol, version FROM cluster_nodes WHERE "
	    "node_id <> $1 AND protocol <> $3::int AND heartbeat_at > now() - "
	    "$2::bigint * interval '1 millisecond' AND left_at IS NULL ORDER BY node_id LIMIT 1",
	    3, p, vpp__cl_timeout(c), err, errlen);
	if (!r)
		return VPP_EDB;
	int rv = 0;
	if (PQntuples(r) == 1) {
		snprintf(err, errlen,
		         "live node %s (vppd %s) speaks cluster protocol %s, this vppd %d: "
		         "upgrade all nodes to one protocol (see README, rolling upgrade)",
		         PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 1),
		         VPP_CLUSTER_PROTOCOL);
		rv = VPP_ESCHEMA;
	}
	PQclear(r);
	if (rv)
		return rv;
	r = vpp__cl_exec(c->main, "SELECT coalesce(max(version), 0) FROM schema_migrations", 0,
	                 NULL, vpp__cl_timeout(c), err, errlen);
	if (!r)
		return VPP_EDB;
	int db = atoi(PQgetvalue(r, 0, 0)), mine = vpp_store_schema_version();
	PQclear(r);
	if (db != mine) {
		snprintf(err, errlen, "the database schema is at version %d, this vppd's is %d: %s",
		         db, mine, db > mine ? "upgrade this vppd" : "run `vppd migrate` first");
		return VPP_ESCHEMA;
	}
	return 0;
}

/* Takes the lock on this node's id on the lock connection: held for the
 * node's life, so a second live node with the same id cannot take it. */
static int lock_node_id(vpp_cluster *c, char *err, size_t errlen)
{
	const char *p[1] = {c->node_id};
	PGresult *r = vpp__cl_exec(
	    c->lock, "SELECT pg_try_advisory_lock(" VPP__CL_LOCK_CLASS_NODE ", hashtext($1))", 1, p,
	    vpp__cl_timeout(c), err, errlen);
	if (!r)
		return VPP_EDB;
	bool got = PQgetvalue(r, 0, 0)[0] == 't';
	PQclear(r);
	if (got)
		return 0;
	/* Held by a session whose node has been silent past the node timeout:
	 * this node's own previous life, cut off by a silent network, or a
	 * dead one PostgreSQL has not noticed. Its session is ended and the
	 * lock taken; a live node heartbeats and keeps it. */
	char timeout[32];
	snprintf(timeout, sizeof(timeout), "%lld", (long long)c->o.node_timeout_ms);
	const char *q[2] = {c->node_id, timeout};
	r = vpp__cl_exec(
	    c->lock,
	    "SELECT pg_terminate_backend(l.pid) FROM pg_locks l, cluster_nodes n "
	    "WHERE l.locktype = 'advisory' AND l.classid = " VPP__CL_LOCK_CLASS_NODE
	    " AND l.objid = hashtext($1)::oid AND l.objsubid = 2 AND l.granted AND "
	    "l.pid <> pg_backend_pid() AND n.node_id = $1 AND n.heartbeat_at < now() - "
	    "$2::bigint * interval '1 millisecond'",
	    2, q, vpp__cl_timeout(c), err, errlen);
	bool ended = r && PQntuples(r) > 0 && PQgetvalue(r, 0, 0)[0] == 't';
	PQclear(r);
	if (ended) {
		vpp_log(VPP_LOG_WARN, "cluster",
		        "node=%s ended a silent database session that held its id lock",
		        c->node_id);
		usleep(50 * 1000);
		if ((r = vpp__cl_exec(c->lock,
		                      "SELECT pg_try_advisory_lock(" VPP__CL_LOCK_CLASS_NODE
		                      ", hashtext($1))",
		                      1, p, vpp__cl_timeout(c), err, errlen)) == NULL)
			return VPP_EDB;
		got = PQgetvalue(r, 0, 0)[0] == 't';
		PQclear(r);
		if (got)
			return 0;
	}
	char why[200] = "";
	r = vpp__cl_exec(
	    c->main,
	    "SELECT version, " MS("now() - heartbeat_at") ", api_addr FROM cluster_nodes "
	                                                  "WHERE node_id = $1",
	    1, p, vpp__cl_timeout(c), why, sizeof(why));
	if (r && PQntuples(r) == 1)
		snprintf(why, sizeof(why), " (vppd %s at %s, heartbeat %s ms ago)",
		         PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 1));
	else
		why[0] = 0;
	PQclear(r);
	snprintf(err, errlen,
	         "another live node already has node id %s%s: give each node its own "
	         "--node-id (or stop the other one first)",
	         c->node_id, why);
	return VPP_EEXIST;
}

int vpp__cl_register(vpp_cluster *c, char *err, size_t errlen)
{
	int rv;
	if ((rv = lock_node_id(c, err, errlen)) != 0)
		return rv;
	if ((rv = check_versions(c, err, errlen)) != 0)
		return rv;
	char proto[16], schema[16];
	snprintf(proto, sizeof(proto), "%d", VPP_CLUSTER_PROTOCOL);
	snprintf(schema, sizeof(schema), "%d", vpp_store_schema_version());
	const char *p[7] = {c->node_id, c->version,  c->incarnation, proto,
	                    schema,     c->api_addr, c->device_addr};
	PGresult *r = vpp__cl_exec(
	    c->main,
	    "INSERT INTO cluster_nodes (node_id, version, started_at, heartbeat_at, incarnation, "
	    "protocol, schema_version, api_addr, device_addr) VALUES ($1, $2, now(), now(), $3, "
	    "$4::int, $5::int, $6, $7) ON CONFLICT (node_id) DO UPDATE SET version = $2, "
	    "started_at = CASE WHEN cluster_nodes.incarnation = $3 THEN cluster_nodes.started_at "
	    "ELSE now() END, heartbeat_at = now(), incarnation = $3, protocol = $4::int, "
	    "schema_version = $5::int, api_addr = $6, device_addr = $7, role = 'follower', "
	    "left_at = NULL, epoch = 0, share_kw = 0, "
	    /* The same life registering again (after a lost connection)
	     * keeps an operator's drain request. */
	    "draining = cluster_nodes.incarnation = $3 AND cluster_nodes.draining, "
	    "drain_requested = cluster_nodes.incarnation = $3 AND cluster_nodes.drain_requested",
	    7, p, vpp__cl_timeout(c), err, errlen);
	if (!r)
		return VPP_EDB;
	PQclear(r);
	r = vpp__cl_exec(c->main, "LISTEN vpp_setpoint", 0, NULL, vpp__cl_timeout(c), err, errlen);
	if (!r)
		return VPP_EDB;
	PQclear(r);
	r = vpp__cl_exec(c->main, "LISTEN vpp_shares", 0, NULL, vpp__cl_timeout(c), err, errlen);
	if (!r)
		return VPP_EDB;
	PQclear(r);
	r = vpp__cl_exec(c->main, "LISTEN vpp_drain", 0, NULL, vpp__cl_timeout(c), err, errlen);
	if (!r)
		return VPP_EDB;
	PQclear(r);
	return 0;
}

/* The status of a tick as a float8[] literal, in the order status_parse
 * reads it back. */
enum { NSTATUS = 31 };

static void status_fields(const vpp_fleet_status *s, double *v)
{
	const vpp_estimate *e[5] = {&s->measured_kw, &s->discharge_headroom_kw,
	                            &s->charge_headroom_kw, &s->stored_energy_kwh, &s->expected_kw};
	int k = 0;
	v[k++] = (double)s->now_ms;
	v[k++] = s->target_kw;
	v[k++] = s->target_eff_kw;
	v[k++] = s->adjusted_kw;
	v[k++] = s->correction_kw;
	v[k++] = s->commanded_kw;
	v[k++] = s->tracking_error_kw;
	v[k++] = s->shortfall_kw;
	for (int i = 0; i < 5; i++) {
		v[k++] = e[i]->value;
		v[k++] = e[i]->sigma;
		v[k++] = (double)e[i]->as_of_ms;
	}
	v[k++] = s->n_devices;
	v[k++] = s->n_online;
	v[k++] = s->n_stale;
	v[k++] = s->n_offline;
	v[k++] = s->n_degraded;
	v[k++] = s->n_dispatched;
	v[k++] = s->n_saturated;
	v[k++] = s->feasible;
}

static void estimate_from(double value, double sigma, double as_of, vpp_estimate *e)
{
	e->value = value;
	e->sigma = sigma;
	e->lower = value - 1.6448536269514722 * sigma;
	e->upper = value + 1.6448536269514722 * sigma;
	e->as_of_ms = (int64_t)as_of;
}

static uint32_t count_of(double x)
{
	return isfinite(x) && x >= 0 && x < 4e9 ? (uint32_t)x : 0;
}

/* Reads a float8[] literal written by status_fields; false when it does
 * not hold NSTATUS finite numbers (a node of another version, damage). */
static bool status_parse(const char *text, vpp_fleet_status *s)
{
	double v[NSTATUS];
	const char *p = text;
	if (*p++ != '{')
		return false;
	for (int k = 0; k < NSTATUS; k++) {
		char *end;
		v[k] = strtod(p, &end);
		if (end == p || !isfinite(v[k]))
			return false;
		p = end;
		if (*p != (k == NSTATUS - 1 ? '}' : ','))
			return false;
		p++;
	}
	memset(s, 0, sizeof(*s));
	int k = 0;
	s->now_ms = (int64_t)v[k++];
	s->target_kw = v[k++];
	s->target_eff_kw = v[k++];
	s->adjusted_kw = v[k++];
	s->correction_kw = v[k++];
	s->commanded_kw = v[k++];
	s->tracking_error_kw = v[k++];
	s->shortfall_kw = v[k++];
	vpp_estimate *e[5] = {&s->measured_kw, &s->discharge_headroom_kw, &s->charge_headroom_kw,
	                      &s->stored_energy_kwh, &s->expected_kw};
	for (int i = 0; i < 5; i++, k += 3)
		estimate_from(v[k], v[k + 1], v[k + 2], e[i]);
	s->n_devices = count_of(v[k++]);
	s->n_online = count_of(v[k++]);
	s->n_stale = count_of(v[k++]);
	s->n_offline = count_of(v[k++]);
	s->n_degraded = count_of(v[k++]);
	s->n_dispatched = count_of(v[k++]);
	s->n_saturated = count_of(v[k++]);
	s->feasible = v[k++] != 0;
	return true;
}

static void fmt_double(char *buf, size_t len, double x)
{
	snprintf(buf, len, "%.17g", isfinite(x) ? x : 0.0);
}

int vpp__cl_heartbeat(vpp_cluster *c, const vpp_plant_snapshot *snap, bool *drain, char *err,
                      size_t errlen)
{
	double v[NSTATUS];
	status_fields(&snap->status, v);
	char status[NSTATUS * 26 + 4];
	size_t off = 0;
	status[off++] = '{';
	for (int k = 0; k < NSTATUS; k++)
		off += (size_t)snprintf(status + off, sizeof(status) - off, "%s%.17g", k ? "," : "",
		                        isfinite(v[k]) ? v[k] : 0.0);
	snprintf(status + off, sizeof(status) - off, "}");
	char num[7][32], epoch[24], tick_at[24];
	fmt_double(num[0], sizeof(num[0]), snap->share_epoch ? snap->share_kw : 0);
	fmt_double(num[1], sizeof(num[1]), snap->agg_a);
	fmt_double(num[2], sizeof(num[2]), snap->agg_e_dis_kwh);
	fmt_double(num[3], sizeof(num[3]), snap->agg_e_chg_kwh);
	fmt_double(num[4], sizeof(num[4]), snap->agg_lo_kw);
	fmt_double(num[5], sizeof(num[5]), snap->agg_hi_kw);
	snprintf(epoch, sizeof(epoch), "%" PRIu64, snap->share_epoch);
	snprintf(tick_at, sizeof(tick_at), "%lld", (long long)snap->last_tick_at_ms);
	const char *p[13] = {c->node_id,
	                     c->incarnation,
	                     c->leader ? "leader" : "follower",
	                     atomic_load(&c->draining) ? "t" : "f",
	                     epoch,
	                     num[0],
	                     num[1],
	                     num[2],
	                     num[3],
	                     num[4],
	                     num[5],
	                     tick_at,
	                     status};
	PGresult *r = vpp__cl_exec(
	    c->main,
	    "UPDATE cluster_nodes SET heartbeat_at = now(), role = $3, draining = $4::bool, "
	    "epoch = $5::bigint, share_kw = $6::float8, agg_a = $7::float8, "
	    "agg_e_dis_kwh = $8::float8, agg_e_chg_kwh = $9::float8, agg_lo_kw = $10::float8, "
	    "agg_hi_kw = $11::float8, tick_at_ms = $12::bigint, status = $13::float8[] "
	    "WHERE node_id = $1 AND incarnation = $2 RETURNING drain_requested",
	    13, p, vpp__cl_timeout(c), err, errlen);
	if (!r)
		return VPP_EDB;
	bool found = PQntuples(r) == 1;
	if (found)
		*drain = PQgetvalue(r, 0, 0)[0] == 't';
	PQclear(r);
	if (!found) {
		/* The row is gone (deleted by hand) or another incarnation
		 * wrote it: register again; the id lock is ours. */
		vpp_log(VPP_LOG_WARN, "cluster",
		        "node=%s row missing in cluster_nodes: registering again", c->node_id);
		return vpp__cl_register(c, err, errlen);
	}
	return 0;
}

bool vpp__cl_node_id_ok(const char *id)
{
	size_t n = 0;
	for (; id[n]; n++) {
		char ch = id[n];
		if (n >= VPP_CLUSTER_ID_MAX ||
		    !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return n > 0;
}

static void copy_field(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src);
}

int vpp__cl_read_view(vpp_cluster *c, char *err, size_t errlen)
{
	char timeout[32];
	snprintf(timeout, sizeof(timeout), "%lld", (long long)c->o.node_timeout_ms);
	const char *p[1] = {timeout};
	PGresult *r =
	    vpp__cl_exec(c->main,
	                 "SELECT node_id, version, api_addr, device_addr, role, draining, epoch, "
	                 "share_kw, "
	                 "agg_a, agg_e_dis_kwh, agg_e_chg_kwh, agg_lo_kw, agg_hi_kw, "
	                 "status::text, " MS("started_at") ", " MS("heartbeat_at") ", " MS(
	                     "now() - heartbeat_at") ", "
	                                             "heartbeat_at > now() - $1::bigint * interval "
	                                             "'1 millisecond' AND left_at IS NULL, "
	                                             "(SELECT epoch || ' ' || node_id FROM "
	                                             "cluster_leaders ORDER BY epoch DESC LIMIT 1) "
	                                             "FROM cluster_nodes WHERE heartbeat_at > "
	                                             "now() - interval '1 day' "
	                                             "ORDER BY node_id LIMIT " VPP__STR(
	                                                 VPP_CLUSTER_NODES_MAX),
	                 1, p, vpp__cl_timeout(c), err, errlen);
	if (!r)
		return VPP_EDB;
	vpp_cluster_view v;
	memset(&v, 0, sizeof(v));
	int alive = 0;
	for (int i = 0; i < PQntuples(r); i++) {
		vpp_cluster_node *n = &v.nodes[v.n];
		const char *id = PQgetvalue(r, i, 0);
		if (!vpp__cl_node_id_ok(id) || !status_parse(PQgetvalue(r, i, 13), &n->status)) {
			/* A row vppd did not write (or of another version):
			 * never split onto it. */
			vpp_counter_inc(c->met.bad_nodes);
			continue;
		}
		copy_field(n->node_id, sizeof(n->node_id), id);
		copy_field(n->version, sizeof(n->version), PQgetvalue(r, i, 1));
		copy_field(n->api_addr, sizeof(n->api_addr), PQgetvalue(r, i, 2));
		copy_field(n->device_addr, sizeof(n->device_addr), PQgetvalue(r, i, 3));
		n->role = strcmp(PQgetvalue(r, i, 4), "leader") == 0 ? VPP_NODE_LEADER
		                                                     : VPP_NODE_FOLLOWER;
		n->draining = PQgetvalue(r, i, 5)[0] == 't';
		n->epoch = strtoull(PQgetvalue(r, i, 6), NULL, 10);
		n->share_kw = strtod(PQgetvalue(r, i, 7), NULL);
		n->agg.a = strtod(PQgetvalue(r, i, 8), NULL);
		n->agg.e_dis_kwh = strtod(PQgetvalue(r, i, 9), NULL);
		n->agg.e_chg_kwh = strtod(PQgetvalue(r, i, 10), NULL);
		n->agg.lo_kw = strtod(PQgetvalue(r, i, 11), NULL);
		n->agg.hi_kw = strtod(PQgetvalue(r, i, 12), NULL);
		n->started_at_ms = strtoll(PQgetvalue(r, i, 14), NULL, 10);
		n->heartbeat_at_ms = strtoll(PQgetvalue(r, i, 15), NULL, 10);
		n->heartbeat_age_ms = strtoll(PQgetvalue(r, i, 16), NULL, 10);
		n->alive = PQgetvalue(r, i, 17)[0] == 't';
		alive += n->alive;
		v.n++;
	}
	if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 18)) {
		const char *lead = PQgetvalue(r, 0, 18);
		char *sp;
		v.leader_epoch = strtoull(lead, &sp, 10);
		if (*sp == ' ')
			copy_field(v.leader_id, sizeof(v.leader_id), sp + 1);
	}
	PQclear(r);
	v.as_of_ms = vpp_wall_ms();
	v.db_up = true;
	v.leader = c->leader;
	vpp_gauge_set(c->met.nodes_alive, alive);
	pthread_mutex_lock(&c->view_lock);
	v.fleet_target_kw = c->view.fleet_target_kw;
	v.fleet_eff_kw = c->view.fleet_eff_kw;
	v.setpoint_id = c->view.setpoint_id;
	v.setpoint_valid_until_ms = c->view.setpoint_valid_until_ms;
	v.have_share = c->view.have_share;
	c->view = v;
	pthread_mutex_unlock(&c->view_lock);
	return 0;
}
