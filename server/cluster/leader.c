/* Leadership: an advisory lock on the lock connection, an epoch from
 * PostgreSQL for each leadership, confirmed every tick; the leader splits
 * the fleet target over the alive nodes and publishes the shares. */
#include "cluster_int.h"
#include "vpp/clock.h"
#include "vpp/log.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void vpp__cl_resign(vpp_cluster *c, const char *why, bool clean)
{
	if (!c->leader)
		return;
	c->leader = false;
	if (clean && c->lock) {
		/* Nothing more of this epoch will be written (this thread was
		 * the one writing): the next leader may publish at once. */
		char epoch[24], err[200];
		snprintf(epoch, sizeof(epoch), "%" PRIu64, c->epoch);
		const char *p[1] = {epoch};
		PQclear(vpp__cl_exec(c->lock,
				     "UPDATE cluster_leaders SET released_at = now() WHERE epoch = $1",
				     1, p, vpp__cl_timeout(c), err, sizeof(err)));
	}
	vpp_gauge_set(c->met.leader, 0);
	vpp_counter_inc(c->met.lost);
	vpp_log(VPP_LOG_WARN, "cluster", "node=%s stops leading (epoch %" PRIu64 "): %s",
	        c->node_id, c->epoch, why);
	/* The lock goes with its session: a new connection starts without it,
	 * and PostgreSQL frees it when it notices this one is gone. */
	vpp__cl_drop(c, &c->lock);
}

/* On the leader: the lock connection answers within the deadline and no
 * newer epoch exists. Else it stops leading at once. */
static int confirm(vpp_cluster *c, char *err, size_t errlen)
{
	PGresult *r = vpp__cl_exec(c->lock, "SELECT max(epoch) FROM cluster_leaders", 0, NULL,
	                           vpp__cl_timeout(c), err, errlen);
	if (!r) {
		char why[300];
		snprintf(why, sizeof(why), "cannot confirm the leadership lock: %s", err);
		vpp__cl_resign(c, why, false);
		return VPP_EDB;
	}
	uint64_t newest = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	if (newest != c->epoch) {
		char why[120];
		snprintf(why, sizeof(why), "a newer epoch (%" PRIu64 ") exists", newest);
		vpp__cl_resign(c, why, false);
	}
	return 0;
}

/* The leadership lock is held, but its holder's node has not heartbeaten
 * for two ticks and a second: a leader cut off from the database by a
 * silent network (no reset) keeps its session, and so the lock, until
 * PostgreSQL notices, which can take hours. Its session is ended so that
 * the lock is free; the leader itself has stopped leading already (it
 * could not confirm within a tick). Returns 1 when it ended one. */
static int end_silent_leader(vpp_cluster *c, char *err, size_t errlen)
{
	char limit[32];
	snprintf(limit, sizeof(limit), "%lld", (long long)(2 * c->o.tick_ms + 1000));
	const char *p[1] = {limit};
	PGresult *r = vpp__cl_exec(
	    c->lock,
	    "SELECT n.node_id, (extract(epoch from now() - n.heartbeat_at) * 1000)::bigint, "
	    "pg_terminate_backend(l.pid) FROM pg_locks l "
	    "JOIN cluster_leaders e ON e.epoch = (SELECT max(epoch) FROM cluster_leaders) "
	    "JOIN cluster_nodes n ON n.node_id = e.node_id "
	    "WHERE l.locktype = 'advisory' AND l.classid = " VPP__CL_LOCK_CLASS_LEAD " AND "
	    "l.objid = 0 AND l.objsubid = 2 AND l.granted AND l.pid <> pg_backend_pid() AND "
	    "n.heartbeat_at < now() - $1::bigint * interval '1 millisecond'",
	    1, p, vpp__cl_timeout(c), err, errlen);
	if (!r)
		return VPP_EDB;
	int ended = PQntuples(r) > 0 && PQgetvalue(r, 0, 2)[0] == 't';
	if (ended)
		vpp_log(VPP_LOG_WARN, "cluster",
		        "node=%s ended the database session of leader %s, silent for %s ms: it "
		        "held the leadership lock",
		        c->node_id, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
	PQclear(r);
	return ended;
}

/* Takes the leadership lock if it is free; then an epoch, and the time
 * from which it may publish: once every share of an older epoch has run
 * out (plus the clock bound), so that no two epochs are obeyed at once. A
 * share the previous leader was still writing as this one took over is
 * valid for a lease at most from now: when it published within the last
 * lease, this one waits a lease. */
static int elect(vpp_cluster *c, char *err, size_t errlen)
{
	const char *try = "SELECT pg_try_advisory_lock(" VPP__CL_LOCK_CLASS_LEAD ", 0)";
	PGresult *r = vpp__cl_exec(c->lock, try, 0, NULL, vpp__cl_timeout(c), err, errlen);
	if (!r)
		return VPP_EDB;
	bool got = PQgetvalue(r, 0, 0)[0] == 't';
	PQclear(r);
	if (!got) {
		int ended = end_silent_leader(c, err, errlen);
		if (ended <= 0)
			return ended;
		usleep(50 * 1000); /* the session ends asynchronously */
		if (!(r = vpp__cl_exec(c->lock, try, 0, NULL, vpp__cl_timeout(c), err, errlen)))
			return VPP_EDB;
		got = PQgetvalue(r, 0, 0)[0] == 't';
		PQclear(r);
		if (!got)
			return 0;
	}
	/* The fence moves to the new epoch once any publication in flight has
	 * committed; every share of an older epoch is then in the table. */
	const char *p[2] = {c->node_id, NULL};
	r = vpp__cl_exec(c->lock,
			 "WITH l AS (INSERT INTO cluster_leaders (node_id) VALUES ($1) RETURNING epoch), "
			 "f AS (UPDATE cluster_fence SET epoch = l.epoch FROM l WHERE id = 1 "
			 "RETURNING cluster_fence.epoch) SELECT epoch FROM f",
			 1, p, vpp__cl_timeout(c), err, errlen);
	if (!r)
		return VPP_EDB;
	c->epoch = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	char epoch[24], now_s[24];
	int64_t now = vpp_wall_ms();
	snprintf(epoch, sizeof(epoch), "%" PRIu64, c->epoch);
	snprintf(now_s, sizeof(now_s), "%lld", (long long)now);
	p[0] = epoch;
	p[1] = now_s;
	/* Shares of older epochs still running: waited out, unless their
	 * leader released its leadership on purpose after writing them. */
	r = vpp__cl_exec(c->lock,
			 "SELECT coalesce(max(s.valid_until_ms), 0), "
			 "coalesce(bool_and(l.released_at IS NOT NULL), true) FROM cluster_shares s "
			 "JOIN cluster_leaders l ON l.epoch = s.epoch WHERE s.epoch < $1::bigint AND "
			 "s.valid_until_ms > $2::bigint",
			 2, p, vpp__cl_timeout(c), err, errlen);
	if (!r) {
		/* Leading, but not knowing what runs: wait a whole lease. */
		c->publish_after_ms = now + c->o.share_lease_ms + c->o.max_clock_skew_ms;
	} else {
		int64_t old_until = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		bool released = PQgetvalue(r, 0, 1)[0] == 't';
		PQclear(r);
		c->publish_after_ms =
			old_until > now && !released ? old_until + c->o.max_clock_skew_ms : 0;
	}
	c->leader = true;
	c->eff_known = false;
	vpp_gauge_set(c->met.leader, 1);
	vpp_gauge_set(c->met.epoch, (double)c->epoch);
	vpp_counter_inc(c->met.elections);
	if (c->publish_after_ms)
		vpp_log(VPP_LOG_WARN, "cluster",
		        "node=%s leads with epoch %" PRIu64 "; shares of the previous leader may "
		        "run for %lld ms more, its first shares follow then",
		        c->node_id, c->epoch, (long long)(c->publish_after_ms - now));
	else
		vpp_log(VPP_LOG_WARN, "cluster", "node=%s leads with epoch %" PRIu64, c->node_id,
		        c->epoch);
	return 0;
}

int vpp__cl_lead(vpp_cluster *c, char *err, size_t errlen)
{
	if (c->leader) {
		if (!c->clock_ok)
			vpp__cl_resign(c, "its clock is off the database's", false);
		else if (atomic_load(&c->draining))
			vpp__cl_resign(c, "draining", true);
		else
			return confirm(c, err, errlen);
		return 0;
	}
	if (!c->clock_ok || atomic_load(&c->draining) || !c->lock)
		return 0;
	return elect(c, err, errlen);
}

/* The operator setpoint in force: the newest one, while it is valid. */
typedef struct {
	int64_t id;
	double target_kw, ramp_kw_per_s;
	int64_t valid_until_ms;
} fleet_setpoint;

static int read_setpoint(vpp_cluster *c, fleet_setpoint *sp, char *err, size_t errlen)
{
	PGresult *r = vpp__cl_exec(
	    c->main,
	    "SELECT setpoint_id, target_kw, ramp_kw_per_s, (extract(epoch from created_at) * "
	    "1000)::bigint + (valid_for_s * 1000)::bigint FROM setpoints ORDER BY setpoint_id "
	    "DESC LIMIT 1",
	    0, NULL, vpp__cl_timeout(c), err, errlen);
	if (!r)
		return VPP_EDB;
	memset(sp, 0, sizeof(*sp));
	if (PQntuples(r) == 1) {
		sp->id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		sp->target_kw = strtod(PQgetvalue(r, 0, 1), NULL);
		sp->ramp_kw_per_s = strtod(PQgetvalue(r, 0, 2), NULL);
		sp->valid_until_ms = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
		if (!isfinite(sp->target_kw) || !isfinite(sp->ramp_kw_per_s) ||
		    sp->ramp_kw_per_s < 0)
			memset(sp, 0, sizeof(*sp));
	}
	PQclear(r);
	return 0;
}

/* Moves the fleet's effective target towards the setpoint at its ramp.
 * A new leader starts from where the nodes are. */
static double effective(vpp_cluster *c, const fleet_setpoint *sp, const vpp_cluster_view *v,
                        int64_t now)
{
	double target = sp->valid_until_ms > now ? sp->target_kw : 0;
	if (!c->eff_known) {
		double sum = 0;
		for (size_t i = 0; i < v->n; i++)
			if (v->nodes[i].alive)
				sum += v->nodes[i].status.target_eff_kw;
		c->eff_kw = sum;
		c->eff_known = true;
		c->eff_at_ms = now;
	}
	if (target == 0 && sp->valid_until_ms <= now) {
		c->eff_kw = 0; /* over: back to 0 at once, as on one node */
	} else if (sp->ramp_kw_per_s > 0) {
		double step = sp->ramp_kw_per_s * (double)(now - c->eff_at_ms) / 1000.0;
		c->eff_kw = fmin(fmax(target, c->eff_kw - step), c->eff_kw + step);
	} else {
		c->eff_kw = target;
	}
	c->eff_at_ms = now;
	return c->eff_kw;
}

/* Appends |s| to the array literal in |buf|. */
static void append(char *buf, size_t cap, size_t *off, const char *s)
{
	int n = snprintf(buf + *off, cap - *off, "%s%s", *off > 1 ? "," : "", s);
	if (n > 0 && (size_t)n < cap - *off)
		*off += (size_t)n;
}

int vpp__cl_publish(vpp_cluster *c, char *err, size_t errlen)
{
	int64_t now = vpp_wall_ms();
	if (!c->leader || now < c->publish_after_ms)
		return 0;
	fleet_setpoint sp;
	int rv;
	if ((rv = read_setpoint(c, &sp, err, errlen)) != 0)
		return rv;
	vpp_cluster_view v;
	pthread_mutex_lock(&c->view_lock);
	v = c->view;
	pthread_mutex_unlock(&c->view_lock);
	double eff = effective(c, &sp, &v, now);

	/* The alive nodes, draining ones too: a draining node's aggregate
	 * shrinks as its devices move, and its share with it, while the
	 * devices it sent away (at 0) add to the others' range. Giving the
	 * others first what they can take would pin them at their limits,
	 * with no room left for their correction, and the devices they get
	 * arrive at 0 still ramping to what their node counts on. */
	vpp_cluster_agg agg[VPP_CLUSTER_NODES_MAX];
	double shares[VPP_CLUSTER_NODES_MAX];
	size_t n = 0;
	for (size_t i = 0; i < v.n; i++) {
		if (!v.nodes[i].alive)
			continue;
		agg[n] = v.nodes[i].agg;
		v.nodes[n++] = v.nodes[i]; /* compacted: index n of agg is node n */
	}
	vpp_alloc_result res;
	if ((rv = vpp_cluster_split(agg, n, eff, shares, &res)) != 0) {
		snprintf(err, errlen, "cannot split %.3f kW over %zu nodes: %s", eff, n,
		         vpp_strerror(rv));
		return rv;
	}
	int64_t until = now + c->o.share_lease_ms;
	if (sp.valid_until_ms > now && sp.valid_until_ms < until)
		until = sp.valid_until_ms;
	char ids[VPP_CLUSTER_NODES_MAX * (VPP_CLUSTER_ID_MAX + 3) + 4] = "{";
	char kws[VPP_CLUSTER_NODES_MAX * 28 + 4] = "{";
	size_t io = 1, ko = 1;
	for (size_t i = 0; i < n; i++) {
		char num[32];
		snprintf(num, sizeof(num), "%.17g", shares[i]);
		append(ids, sizeof(ids), &io, v.nodes[i].node_id);
		append(kws, sizeof(kws), &ko, num);
	}
	snprintf(ids + io, sizeof(ids) - io, "}");
	snprintf(kws + ko, sizeof(kws) - ko, "}");
	char epoch[24], until_s[24], spid[24], target[32], effs[32], sp_until[24];
	snprintf(epoch, sizeof(epoch), "%" PRIu64, c->epoch);
	snprintf(until_s, sizeof(until_s), "%lld", (long long)until);
	snprintf(spid, sizeof(spid), "%lld", (long long)(sp.valid_until_ms > now ? sp.id : 0));
	snprintf(target, sizeof(target), "%.17g", sp.valid_until_ms > now ? sp.target_kw : 0.0);
	snprintf(effs, sizeof(effs), "%.17g", eff);
	snprintf(sp_until, sizeof(sp_until), "%lld",
	         (long long)(sp.valid_until_ms > now ? sp.valid_until_ms : 0));
	const char *p[8] = {ids, kws, epoch, until_s, spid, target, effs, sp_until};
	/* Fenced twice: nothing is written unless this epoch is the newest,
	 * and a share is never replaced by an older epoch's. */
	PGresult *r = vpp__cl_exec(
	    c->main,
	    "WITH f AS (UPDATE cluster_fence SET epoch = epoch WHERE id = 1 AND epoch = $3::bigint "
	    "RETURNING 1), "
	    "up AS (INSERT INTO cluster_shares (node_id, epoch, share_kw, valid_until_ms, "
	    "setpoint_id, fleet_target_kw, fleet_eff_kw, setpoint_valid_until_ms, issued_at) "
	    "SELECT v.id, $3::bigint, v.kw, $4::bigint, $5::bigint, $6::float8, $7::float8, "
	    "$8::bigint, now() "
	    "FROM unnest($1::text[], $2::float8[]) AS v(id, kw) "
	    "WHERE EXISTS (SELECT 1 FROM f) "
	    "ON CONFLICT (node_id) DO UPDATE SET epoch = EXCLUDED.epoch, share_kw = "
	    "EXCLUDED.share_kw, valid_until_ms = EXCLUDED.valid_until_ms, setpoint_id = "
	    "EXCLUDED.setpoint_id, fleet_target_kw = EXCLUDED.fleet_target_kw, fleet_eff_kw = "
	    "EXCLUDED.fleet_eff_kw, setpoint_valid_until_ms = EXCLUDED.setpoint_valid_until_ms, "
	    "issued_at = now() WHERE cluster_shares.epoch <= "
	    "EXCLUDED.epoch RETURNING 1) "
	    "SELECT (SELECT count(*) FROM up), pg_notify('vpp_shares', $3::bigint::text)",
	    8, p, vpp__cl_timeout(c), err, errlen);
	if (!r)
		return VPP_EDB;
	long written = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	if (n > 0 && written == 0) {
		vpp__cl_resign(c, "its shares were refused: a newer epoch exists", false);
		return 0;
	}
	vpp_counter_inc(c->met.published);
	return 0;
}
