/* The cluster thread: one cycle per plant tick (heartbeat, leadership,
 * the view, the leader's split, this node's share), and between ticks the
 * NOTIFYs that make a new setpoint or share act at once. */
#include "cluster_int.h"
#include "vpp/clock.h"
#include "vpp/log.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

int vpp__cl_timeout(const vpp_cluster *c)
{
	/* A statement gets most of a tick, and at least 200 ms. */
	int64_t t = c->o.tick_ms * 3 / 4;
	return (int)(t < 200 ? 200 : t);
}

void vpp__cl_drop(vpp_cluster *c, PGconn **conn)
{
	(void)c;
	if (*conn) {
		PQfinish(*conn);
		*conn = NULL;
	}
}

/* Logs a database error once per distinct reason. */
static void db_error(vpp_cluster *c, const char *what, const char *err)
{
	vpp_counter_inc(c->met.db_errors);
	char line[640];
	snprintf(line, sizeof(line), "%s: %s", what, err);
	if (strcmp(line, c->last_err) == 0)
		return;
	snprintf(c->last_err, sizeof(c->last_err), "%s", line);
	vpp_log(VPP_LOG_WARN, "cluster", "node=%s %s (keeps its share until it ends)", c->node_id,
	        line);
}

static void metrics_init(vpp_cluster *c)
{
	c->met.cycles = vpp_counter_get("vpp_cluster_cycles_total", NULL,
	                                "Cluster cycles (heartbeat, leadership, shares)");
	c->met.db_errors = vpp_counter_get("vpp_cluster_db_errors_total", NULL,
	                                   "Cluster statements that failed or timed out");
	c->met.notifies = vpp_counter_get("vpp_cluster_notifies_total", NULL,
	                                  "NOTIFYs received (setpoints, shares)");
	c->met.elections =
	    vpp_counter_get("vpp_cluster_elections_total", NULL, "Leaderships this node took");
	c->met.lost = vpp_counter_get("vpp_cluster_leadership_lost_total", NULL,
	                              "Leaderships this node gave up or lost");
	c->met.published = vpp_counter_get("vpp_cluster_share_publications_total", NULL,
	                                   "Share sets published as leader");
	c->met.stale_shares =
	    vpp_counter_get("vpp_cluster_shares_rejected_total", "reason=\"old_epoch\"",
	                    "Shares this node did not obey");
	c->met.bad_shares =
	    vpp_counter_get("vpp_cluster_shares_rejected_total", "reason=\"invalid\"", NULL);
	c->met.bad_nodes = vpp_counter_get("vpp_cluster_node_rows_rejected_total", NULL,
	                                   "cluster_nodes rows ignored (bad id or status)");
	c->met.skew = vpp_counter_get("vpp_cluster_clock_skew_total", NULL,
	                              "Times this node's clock was found too far off the "
	                              "database's");
	c->met.leader = vpp_gauge_get("vpp_cluster_leader", NULL, "1 while this node leads");
	c->met.nodes_alive =
	    vpp_gauge_get("vpp_cluster_nodes_alive", NULL, "Nodes with a fresh heartbeat");
	c->met.epoch = vpp_gauge_get("vpp_cluster_epoch", NULL,
	                             "Epoch of this node's leadership, or of the share it obeys");
}

int vpp__cl_read_share(vpp_cluster *c, char *err, size_t errlen)
{
	const char *p[1] = {c->node_id};
	PGresult *r = vpp__cl_exec(c->main,
	                           "SELECT s.epoch, share_kw, valid_until_ms, fleet_target_kw, "
	                           "fleet_eff_kw, setpoint_id, setpoint_valid_until_ms, "
	                           "l.released_at IS NOT NULL AND EXISTS (SELECT 1 FROM "
	                           "cluster_leaders n WHERE n.epoch > s.epoch) FROM cluster_shares s "
	                           "LEFT JOIN cluster_leaders l ON l.epoch = s.epoch WHERE s.node_id = $1",
	                           1, p, vpp__cl_timeout(c), err, errlen);
	if (!r)
		return VPP_EDB;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return 0;
	}
	uint64_t epoch = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	double kw = strtod(PQgetvalue(r, 0, 1), NULL);
	int64_t until = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
	double fleet_target = strtod(PQgetvalue(r, 0, 3), NULL);
	double fleet_eff = strtod(PQgetvalue(r, 0, 4), NULL);
	int64_t spid = strtoll(PQgetvalue(r, 0, 5), NULL, 10);
	int64_t sp_until = strtoll(PQgetvalue(r, 0, 6), NULL, 10);
	/* A share of a leadership released on purpose, with a newer one in
	 * place: superseded, whatever its validity (the new leader does not
	 * wait it out, so it must not be obeyed alongside the new shares). */
	bool superseded = PQgetvalue(r, 0, 7)[0] == 't';
	PQclear(r);
	if (superseded)
		return 0;
	if (epoch == c->share_seen_epoch && kw == c->share_seen_kw && until == c->share_seen_until)
		return 0; /* nothing new */
	c->share_seen_epoch = epoch;
	c->share_seen_kw = kw;
	c->share_seen_until = until;
	if (epoch < c->share_epoch) {
		vpp_counter_inc(c->met.stale_shares);
		vpp_log(VPP_LOG_WARN, "cluster",
		        "node=%s ignores a share of epoch %" PRIu64 ": it obeys epoch %" PRIu64,
		        c->node_id, epoch, c->share_epoch);
		return 0;
	}
	if (!c->clock_ok)
		return 0; /* its leases would be misjudged: the one in force runs out */
	int rv = vpp_plant_set_share(c->o.plant, epoch, kw, until, sp_until > 0 ? sp_until : 0);
	if (rv == VPP_EINVAL) {
		vpp_counter_inc(c->met.bad_shares);
		vpp_log(VPP_LOG_WARN, "cluster", "node=%s ignores a share that is not a number",
		        c->node_id);
		return 0;
	}
	if (rv == 0) {
		c->share_epoch = epoch;
		if (!c->leader)
			vpp_gauge_set(c->met.epoch, (double)epoch);
		pthread_mutex_lock(&c->view_lock);
		c->view.fleet_target_kw = fleet_target;
		c->view.fleet_eff_kw = fleet_eff;
		c->view.setpoint_id = spid;
		c->view.setpoint_valid_until_ms = sp_until;
		c->view.have_share = until > vpp_wall_ms();
		pthread_mutex_unlock(&c->view_lock);
	}
	return 0;
}

/* Connects what is missing, with a backoff after a failure. The main
 * connection registers again (the database may have restarted). */
static bool ensure_connected(vpp_cluster *c, int64_t now)
{
	if (c->main && c->lock)
		return true;
	if (now < c->retry_at_ms)
		return false;
	char err[300];
	int rv = 0;
	if (!c->main && !(c->main = vpp__cl_connect(c->conninfo, 2000, err, sizeof(err))))
		rv = VPP_EDB;
	if (rv == 0 && !c->lock &&
	    !(c->lock = vpp__cl_connect(c->conninfo, 2000, err, sizeof(err))))
		rv = VPP_EDB;
	if (rv == 0)
		rv = vpp__cl_register(c, err, sizeof(err));
	if (rv != 0) {
		db_error(c, "cannot reach the database", err);
		vpp__cl_drop(c, &c->main);
		if (rv != VPP_EEXIST) /* the id lock may be our old session's */
			vpp__cl_drop(c, &c->lock);
		c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : 250;
		if (c->backoff_ms > 5000)
			c->backoff_ms = 5000;
		c->retry_at_ms = now + c->backoff_ms;
		pthread_mutex_lock(&c->view_lock);
		c->view.db_up = false;
		c->view.leader = false;
		pthread_mutex_unlock(&c->view_lock);
		return false;
	}
	if (c->last_err[0])
		vpp_log(VPP_LOG_INFO, "cluster", "node=%s database reachable again", c->node_id);
	c->last_err[0] = 0;
	c->backoff_ms = 0;
	return true;
}

static void fail_main(vpp_cluster *c, const char *what, const char *err)
{
	db_error(c, what, err);
	vpp__cl_drop(c, &c->main);
	pthread_mutex_lock(&c->view_lock);
	c->view.db_up = false;
	pthread_mutex_unlock(&c->view_lock);
}

/* One tick's work. */
static void cycle(vpp_cluster *c)
{
	char err[300];
	int64_t now = vpp_wall_ms();
	c->last_cycle_ms = now;
	vpp_counter_inc(c->met.cycles);
	if (!ensure_connected(c, now)) {
		vpp__cl_resign(c, "the database is unreachable", false);
		return;
	}
	if (vpp__cl_check_clock(c, c->main, false, err, sizeof(err)) == VPP_ERANGE) {
		static int64_t logged;
		if (now - logged > 60000) {
			logged = now;
			vpp_log(VPP_LOG_ERROR, "cluster", "node=%s %s", c->node_id, err);
		}
	} else if (!c->clock_ok) {
		fail_main(c, "clock check failed", err);
		return;
	}
	vpp_plant_snapshot snap;
	vpp_plant_snapshot_get(c->o.plant, &snap);
	bool drain = atomic_load(&c->draining);
	if (vpp__cl_heartbeat(c, &snap, &drain, err, sizeof(err)) != 0) {
		fail_main(c, "heartbeat failed", err);
		vpp__cl_resign(c, "its heartbeat failed", false);
		return;
	}
	if (drain != atomic_load(&c->draining) && !atomic_load(&c->stopping)) {
		vpp_log(VPP_LOG_WARN, "cluster", "node=%s %s, as an operator asked", c->node_id,
		        drain ? "drains: its share goes to the others, its devices move away"
		              : "stops draining");
		vpp_cluster_set_draining(c, drain);
	}
	if (vpp__cl_lead(c, err, sizeof(err)) != 0)
		db_error(c, "leadership", err);
	if (!c->lock) {
		/* Lost with the leadership: reconnect and take the id lock again. */
		if ((c->lock = vpp__cl_connect(c->conninfo, 2000, err, sizeof(err))) == NULL ||
		    vpp__cl_register(c, err, sizeof(err)) != 0) {
			db_error(c, "lock connection", err);
			vpp__cl_drop(c, &c->lock);
		}
	}
	if (vpp__cl_read_view(c, err, sizeof(err)) != 0) {
		fail_main(c, "reading the cluster failed", err);
		return;
	}
	if (vpp__cl_publish(c, err, sizeof(err)) != 0)
		db_error(c, "publishing shares failed", err);
	c->want_publish = false;
	if (vpp__cl_read_share(c, err, sizeof(err)) != 0) {
		fail_main(c, "reading this node's share failed", err);
		return;
	}
	c->want_share = false;
}

/* Runs the drain requests queued by vpp_cluster_request_drain. */
static void run_requests(vpp_cluster *c)
{
	pthread_mutex_lock(&c->view_lock);
	size_t n = c->nreq;
	__typeof__(c->req[0]) req[16];
	memcpy(req, c->req, n * sizeof(req[0]));
	c->nreq = 0;
	pthread_mutex_unlock(&c->view_lock);
	for (size_t i = 0; i < n; i++) {
		int status = VPP_EDB;
		char err[300], timeout[32];
		snprintf(timeout, sizeof(timeout), "%lld", (long long)c->o.node_timeout_ms);
		const char *p[3] = {req[i].node_id, req[i].drain ? "t" : "f", timeout};
		PGresult *r =
		    c->main
		        ? vpp__cl_exec(
		              c->main,
		              "WITH u AS (UPDATE cluster_nodes SET "
		              "drain_requested = $2::bool WHERE node_id = $1 "
		              "AND heartbeat_at > now() - $3::bigint * "
		              "interval '1 millisecond' AND left_at IS NULL RETURNING 1) SELECT "
		              "(SELECT count(*) FROM u), pg_notify('vpp_drain', $1)",
		              3, p, vpp__cl_timeout(c), err, sizeof(err))
		        : NULL;
		if (r) {
			status = strcmp(PQgetvalue(r, 0, 0), "1") == 0 ? 0 : VPP_ENOENT;
			PQclear(r);
		} else if (c->main) {
			fail_main(c, "drain request failed", err);
		}
		req[i].cb(status, req[i].ud);
	}
}

int vpp_cluster_request_drain(vpp_cluster *c, const char *node_id, bool drain,
                              vpp_cluster_drain_cb cb, void *ud)
{
	if (!vpp__cl_node_id_ok(node_id))
		return VPP_EINVAL;
	int rv = 0;
	pthread_mutex_lock(&c->view_lock);
	if (c->nreq == sizeof(c->req) / sizeof(c->req[0])) {
		rv = VPP_EFULL;
	} else {
		snprintf(c->req[c->nreq].node_id, sizeof(c->req[0].node_id), "%s", node_id);
		c->req[c->nreq].drain = drain;
		c->req[c->nreq].cb = cb;
		c->req[c->nreq].ud = ud;
		c->nreq++;
	}
	pthread_mutex_unlock(&c->view_lock);
	if (rv == 0)
		vpp_cluster_kick(c);
	return rv;
}

/* Between cycles: a NOTIFY makes the leader split at once (a new
 * setpoint) and every node read its share (new shares). The payloads are
 * not trusted: they only say "look again". */
static void on_notifies(vpp_cluster *c)
{
	if (!c->main)
		return;
	if (vpp__cl_pump(c->main) != 0) {
		fail_main(c, "connection lost", PQerrorMessage(c->main));
		return;
	}
	PGnotify *n;
	while ((n = PQnotifies(c->main)) != NULL) {
		vpp_counter_inc(c->met.notifies);
		if (strcmp(n->relname, "vpp_setpoint") == 0)
			c->want_publish = true;
		else if (strcmp(n->relname, "vpp_shares") == 0)
			c->want_share = true;
		else if (strcmp(n->relname, "vpp_drain") == 0 && strcmp(n->extra, c->node_id) == 0)
			c->want_cycle = true; /* its heartbeat reads the request */
		PQfreemem(n);
	}
	char err[300];
	if (c->want_publish && c->leader) {
		c->want_publish = false;
		if (vpp__cl_publish(c, err, sizeof(err)) != 0)
			db_error(c, "publishing shares failed", err);
		c->want_share = true; /* its own */
	}
	c->want_publish = false;
	if (c->want_share && c->main) {
		c->want_share = false;
		if (vpp__cl_read_share(c, err, sizeof(err)) != 0)
			fail_main(c, "reading this node's share failed", err);
	}
}

static void *thread_main(void *arg)
{
	vpp_cluster *c = arg;
	while (!atomic_load(&c->stopping)) {
		struct pollfd p[2] = {{.fd = c->efd, .events = POLLIN},
		                      {.fd = c->main ? PQsocket(c->main) : -1, .events = POLLIN}};
		/* Cycles follow the plant's ticks; without them (a stuck
		 * plant), every two ticks all the same. */
		int64_t wait = c->last_cycle_ms + 2 * c->o.tick_ms - vpp_wall_ms();
		int n = poll(p, 2, wait < 0 ? 0 : (int)wait);
		if (n < 0 && errno != EINTR)
			break;
		bool kicked = false;
		if (p[0].revents & POLLIN) {
			uint64_t v;
			kicked = read(c->efd, &v, sizeof(v)) == sizeof(v);
		}
		if (atomic_load(&c->stopping))
			break;
		if (p[1].revents)
			on_notifies(c);
		if (kicked)
			run_requests(c);
		if (kicked || c->want_cycle ||
		    vpp_wall_ms() - c->last_cycle_ms >= 2 * c->o.tick_ms) {
			c->want_cycle = false;
			cycle(c);
		}
	}
	/* Stopping: the requests still queued are answered. */
	pthread_mutex_lock(&c->view_lock);
	size_t n = c->nreq;
	c->nreq = 0;
	pthread_mutex_unlock(&c->view_lock);
	for (size_t i = 0; i < n; i++)
		c->req[i].cb(VPP_ECLOSED, c->req[i].ud);
	return NULL;
}

static void opts_defaults(vpp_cluster_opts *o)
{
	if (o->tick_ms <= 0)
		o->tick_ms = 1000;
	if (o->node_timeout_ms <= 0)
		o->node_timeout_ms = 3 * o->tick_ms + 2000;
	if (o->share_lease_ms <= 0)
		o->share_lease_ms = 3 * o->tick_ms < 3000 ? 3000 : 3 * o->tick_ms;
	if (o->max_clock_skew_ms <= 0)
		o->max_clock_skew_ms = 250;
	if (o->join_timeout_ms <= 0)
		o->join_timeout_ms = 30000;
}

static char *dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

static void cluster_free(vpp_cluster *c)
{
	vpp__cl_drop(c, &c->main);
	vpp__cl_drop(c, &c->lock);
	if (c->efd >= 0)
		close(c->efd);
	pthread_mutex_destroy(&c->view_lock);
	free(c->conninfo);
	free(c->node_id);
	free(c->version);
	free(c->api_addr);
	free(c->device_addr);
	free(c);
}

/* Joins: connects both connections, takes the id lock, checks versions and
 * the clock, registers; retries what the database did not answer. */
static int join(vpp_cluster *c, char *err, size_t errlen)
{
	int64_t deadline = vpp_wall_ms() + c->o.join_timeout_ms;
	for (int attempt = 0;; attempt++) {
		int rv = 0;
		if (!c->main && !(c->main = vpp__cl_connect(c->conninfo, 2000, err, errlen)))
			rv = VPP_EDB;
		if (rv == 0 && !c->lock &&
		    !(c->lock = vpp__cl_connect(c->conninfo, 2000, err, errlen)))
			rv = VPP_EDB;
		if (rv == 0)
			rv = vpp__cl_check_clock(c, c->main, true, err, errlen);
		if (rv == 0)
			rv = vpp__cl_register(c, err, errlen);
		if (rv == 0 || rv == VPP_EEXIST || rv == VPP_ESCHEMA || rv == VPP_ERANGE)
			return rv;
		vpp__cl_drop(c, &c->main);
		vpp__cl_drop(c, &c->lock);
		if (vpp_wall_ms() >= deadline) {
			char why[300];
			snprintf(why, sizeof(why), "%s", err);
			snprintf(err, errlen, "cannot join the cluster within %lld ms: %s",
			         (long long)c->o.join_timeout_ms, why);
			return VPP_EDB;
		}
		if (attempt == 0)
			vpp_log(VPP_LOG_WARN, "cluster", "node=%s waiting for the database: %s",
			        c->node_id, err);
		usleep(500 * 1000);
	}
}

int vpp_cluster_start(const vpp_cluster_opts *o, vpp_cluster **ret, char *err, size_t errlen)
{
	if (!o->conninfo || !o->conninfo[0] || !o->plant || !o->node_id ||
	    !vpp__cl_node_id_ok(o->node_id)) {
		snprintf(err, errlen, "the cluster needs a database-url and a valid node id");
		return VPP_EINVAL;
	}
	vpp_cluster *c = calloc(1, sizeof(*c));
	if (!c)
		return VPP_ENOMEM;
	c->efd = -1;
	pthread_mutex_init(&c->view_lock, NULL);
	c->o = *o;
	opts_defaults(&c->o);
	c->conninfo = dup_or_empty(o->conninfo);
	c->node_id = dup_or_empty(o->node_id);
	c->version = dup_or_empty(o->version);
	c->api_addr = dup_or_empty(o->api_addr);
	c->device_addr = dup_or_empty(o->device_addr);
	c->clock_ok = true;
	snprintf(c->incarnation, sizeof(c->incarnation), "%d-%lld", (int)getpid(),
	         (long long)vpp_wall_ms());
	metrics_init(c);
	int rv = VPP_ENOMEM;
	if (!c->conninfo || !c->node_id || !c->version || !c->api_addr || !c->device_addr)
		goto fail;
	if ((c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		rv = VPP_EIO;
		goto fail;
	}
	if ((rv = join(c, err, errlen)) != 0)
		goto fail;
	char e2[300];
	if (vpp__cl_read_view(c, e2, sizeof(e2)) != 0)
		vpp_log(VPP_LOG_WARN, "cluster", "node=%s cannot read the cluster yet: %s",
		        c->node_id, e2);
	if (pthread_create(&c->thread, NULL, thread_main, c) != 0) {
		rv = VPP_EIO;
		goto fail;
	}
	c->thread_started = true;
	vpp_log(VPP_LOG_INFO, "cluster", "node=%s joined the cluster (%zu nodes known)", c->node_id,
	        c->view.n);
	*ret = c;
	return 0;
fail:
	cluster_free(c);
	return rv;
}

void vpp_cluster_kick(vpp_cluster *c)
{
	uint64_t one = 1;
	if (c && write(c->efd, &one, sizeof(one)) < 0) {
		/* full counter: a kick is pending anyway */
	}
}

void vpp_cluster_stop(vpp_cluster *c)
{
	if (!c)
		return;
	atomic_store(&c->stopping, true);
	vpp_cluster_kick(c);
	if (c->thread_started)
		pthread_join(c->thread, NULL);
	/* Others see at once that it left: no need to wait for the timeout
	 * before its share goes to the others. */
	if (c->main) {
		char err[200];
		const char *p[2] = {c->node_id, c->incarnation};
		PGresult *r = vpp__cl_exec(c->main,
		                           "UPDATE cluster_nodes SET left_at = now(), role = "
		                           "'follower' WHERE node_id = $1 AND incarnation = $2",
		                           2, p, 1000, err, sizeof(err));
		PQclear(r);
	}
	vpp__cl_resign(c, "shutting down", true);
	vpp_log(VPP_LOG_INFO, "cluster", "node=%s left the cluster", c->node_id);
	cluster_free(c);
}

void vpp_cluster_view_get(vpp_cluster *c, vpp_cluster_view *out)
{
	pthread_mutex_lock(&c->view_lock);
	*out = c->view;
	pthread_mutex_unlock(&c->view_lock);
}

int64_t vpp_cluster_view_as_of(vpp_cluster *c)
{
	pthread_mutex_lock(&c->view_lock);
	int64_t t = c->view.as_of_ms;
	pthread_mutex_unlock(&c->view_lock);
	return t;
}

void vpp_cluster_set_draining(vpp_cluster *c, bool draining)
{
	atomic_store(&c->draining, draining);
	/* 2% of its devices a tick: each carries this node's command until
	 * its new node commands it, so few at a time. */
	if (!atomic_load(&c->stopping))
		vpp_plant_drain(c->o.plant, draining, 0.02);
	vpp_cluster_kick(c);
}

bool vpp_cluster_draining(vpp_cluster *c)
{
	return c && atomic_load(&c->draining);
}
