/* vppd's glue to the store: settings from the configuration table,
 * migrations at start-up, `vppd migrate`, and readiness for /readyz. */
#include "vppd_int.h"
#include "vpp/clock.h"
#include "vpp/error.h"
#include "vpp/log.h"
#include "vpp/operator.h"
#include "vpp/plant.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The running store, for the admin thread's /readyz. */
static _Atomic(vpp_store *) running;
static int64_t journal_limit;
/* Why the migrations failed at start-up ("" if they did not): reading the
 * setpoint in force would only wait for the same timeout again. */
static char failed_at_start[600];

static void on_applied(int version, const char *name, void *ud)
{
	(void)ud;
	vpp_log(VPP_LOG_INFO, "store", "applied migration %04d_%s", version, name);
}

static void on_applied_print(int version, const char *name, void *ud)
{
	(void)ud;
	printf("applied %04d_%s\n", version, name);
	fflush(stdout);
}

/* Migrations that failed at start-up are tried again in the background
 * until they apply: a database that comes up after vppd (at boot, or a
 * fresh one) gets its tables, and the journal then drains into them. */
static struct {
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop;
	char *url; /* its own copy: it may outlive the configuration */
	/* Under lock: where to offer the setpoint in force once the database
	 * answers (NULL once the plant is gone), and this node's id. */
	vpp_plant *plant;
	char node_id[64];
} retry = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/* Reads |node|'s newest setpoint: 0 with |*found|, and then its end in
 * |*until| and its id as text in |id|; or VPP_EDB with a message in |err|. */
static int read_newest(const char *url, const char *node, vpp_setpoint *sp, bool *found,
		       int64_t *until, char id[32], char *err, size_t errlen)
{
	int rv = vpp_store_newest_setpoint(url, node, sp, found, err, errlen);
	if (rv == 0 && *found) {
		*until = sp->created_at_ms + (int64_t)(sp->valid_for_s * 1000.0);
		snprintf(id, 32, "%lld", (long long)sp->setpoint_id);
	}
	return rv;
}

/* The setpoint in force could not be read at start-up: read it now and
 * offer it to the plant, which carries it on unless an operator has set a
 * target since. */
static void offer_setpoint(const char *url)
{
	pthread_mutex_lock(&retry.lock);
	bool wanted = retry.plant != NULL;
	char node[sizeof(retry.node_id)];
	memcpy(node, retry.node_id, sizeof(node));
	pthread_mutex_unlock(&retry.lock);
	if (!wanted)
		return;
	char err[512], id[32];
	vpp_setpoint sp;
	bool found = false;
	int64_t until = 0;
	if (read_newest(url, node, &sp, &found, &until, id, err, sizeof(err)) != 0) {
		vpp_log(VPP_LOG_WARN, "dispatch",
			"cannot read the operator setpoint that was in force (%s): the fleet holds "
			"its present target",
			err);
		return;
	}
	if (!found || until <= vpp_wall_ms())
		return;
	pthread_mutex_lock(&retry.lock);
	if (retry.plant)
		vpp_plant_restore_setpoint(retry.plant, id, sp.target_kw, until, sp.ramp_kw_per_s);
	pthread_mutex_unlock(&retry.lock);
}

static void *migrate_retry_main(void *arg)
{
	(void)arg;
	const char *url = retry.url;
	char err[512], said[512] = "";
	int64_t wait_ms = 1000;
	for (;;) {
		pthread_mutex_lock(&retry.lock);
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += wait_ms / 1000;
		while (!retry.stop &&
		       pthread_cond_timedwait(&retry.wake, &retry.lock, &until) != ETIMEDOUT)
			;
		bool stop = retry.stop;
		pthread_mutex_unlock(&retry.lock);
		if (stop)
			return NULL;
		int version = 0;
		int rv = vpp_store_migrate(url, on_applied, NULL, &version, err, sizeof(err));
		if (rv == 0) {
			vpp_log(VPP_LOG_INFO, "store",
				"schema at version %d: the migrations applied once the database "
				"answered",
				version);
			offer_setpoint(url);
			return NULL;
		}
		if (rv == VPP_ESCHEMA) {
			vpp_log(VPP_LOG_ERROR, "store", "%s; rows stay in the journal", err);
			return NULL;
		}
		if (strcmp(err, said) != 0) { /* a new reason: say it once */
			vpp_log(VPP_LOG_WARN, "store", "migrations still not applied: %s", err);
			snprintf(said, sizeof(said), "%s", err);
		}
		wait_ms = wait_ms * 2 > 30000 ? 30000 : wait_ms * 2;
	}
}

static void retry_stop(void)
{
	if (!retry.started)
		return;
	pthread_mutex_lock(&retry.lock);
	retry.stop = true;
	pthread_cond_signal(&retry.wake);
	pthread_mutex_unlock(&retry.lock);
	/* A migration can wait on a lock for long: give it a few seconds, then
	 * leave it behind (the process is ending) rather than hold up the
	 * store's flush and the shutdown. */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 3;
	if (pthread_timedjoin_np(retry.thread, NULL, &until) == 0) {
		free(retry.url);
	} else {
		vpp_log(VPP_LOG_WARN, "store",
			"the migration retry is still waiting on the database; not waiting for it");
		pthread_detach(retry.thread);
	}
	retry.url = NULL;
	retry.started = false;
}

static int fsync_policy(const char *s, vpp_journal_fsync *ret)
{
	if (strcmp(s, "always") == 0)
		*ret = VPP_JOURNAL_FSYNC_ALWAYS;
	else if (strcmp(s, "interval") == 0)
		*ret = VPP_JOURNAL_FSYNC_INTERVAL;
	else if (strcmp(s, "never") == 0)
		*ret = VPP_JOURNAL_FSYNC_NEVER;
	else
		return VPP_EINVAL;
	return 0;
}

int vppd_store_check_config(const vppd_config *cfg)
{
	vpp_journal_fsync policy;
	if (fsync_policy(cfg->journal_fsync, &policy) != 0) {
		vpp_log(VPP_LOG_ERROR, "store",
		        "invalid value '%s' for journal-fsync: expected always, interval or never",
		        cfg->journal_fsync);
		return VPP_EINVAL;
	}
	if (cfg->db_reconnect_max_ms < cfg->db_reconnect_min_ms) {
		vpp_log(VPP_LOG_ERROR, "store", "db-reconnect-max-ms is below db-reconnect-min-ms");
		return VPP_EINVAL;
	}
	return 0;
}

int vppd_store_start(const vppd_config *cfg, vpp_store **ret)
{
	char err[512];
	int rv, version = 0;
	if (!cfg->database_url || !cfg->database_url[0]) {
		vpp_log(VPP_LOG_WARN, "store", "database-url is empty: nothing is persisted");
		*ret = NULL;
		return 0;
	}
	vpp_store_options o;
	vpp_store_options_init(&o);
	o.conninfo = cfg->database_url;
	o.node_id = cfg->node_id;
	o.journal_dir = cfg->journal_dir;
	o.queue_rows = (size_t)cfg->store_queue_rows;
	o.batch_rows = (size_t)cfg->store_batch_rows;
	o.flush_ms = cfg->store_flush_ms;
	o.stop_timeout_ms = cfg->store_stop_timeout_ms;
	if (fsync_policy(cfg->journal_fsync, &o.fsync_policy) != 0)
		return VPP_EINVAL; /* vppd_store_check_config said why, at start */
	o.fsync_interval_ms = cfg->journal_fsync_interval_ms;
	o.journal_max_bytes = cfg->journal_max_bytes;
	o.reconnect_min_ms = cfg->db_reconnect_min_ms;
	o.reconnect_max_ms = cfg->db_reconnect_max_ms;
	o.partition_hours = cfg->telemetry_partition_hours;
	o.partitions_ahead = cfg->telemetry_partitions_ahead;
	o.retention_days = cfg->telemetry_retention_days;
	o.max_past_ms = cfg->telemetry_max_past_s * 1000;
	o.max_future_ms = cfg->telemetry_max_future_s * 1000;

	if (!cfg->no_migrate) {
		rv = vpp_store_migrate(cfg->database_url, on_applied, NULL, &version, err,
		                       sizeof(err));
		if (rv == VPP_ESCHEMA) {
			vpp_log(VPP_LOG_ERROR, "store", "%s", err);
			return rv;
		}
		if (rv != 0) {
			/* Keep running on the journal: the database may come back. */
			snprintf(failed_at_start, sizeof(failed_at_start),
				 "the migrations failed at start-up: %s", err);
			vpp_log(VPP_LOG_WARN, "store",
			        "migrations not applied (%s); rows are journaled, and the "
			        "migrations tried again, until the database answers",
			        err);
			retry.url = strdup(cfg->database_url);
			retry.stop = false;
			retry.started = retry.url && pthread_create(&retry.thread, NULL,
								    migrate_retry_main, NULL) == 0;
			if (!retry.started) {
				free(retry.url);
				retry.url = NULL;
			}
		} else {
			vpp_log(VPP_LOG_INFO, "store", "schema at version %d", version);
		}
	}
	vpp_store *s;
	if ((rv = vpp_store_start(&o, &s)) != 0) {
		vpp_log(VPP_LOG_ERROR, "store", "cannot start the store (journal %s): %s",
		        cfg->journal_dir, vpp_strerror(rv));
		retry_stop();
		return rv;
	}
	journal_limit = o.journal_max_bytes;
	atomic_store(&running, s);
	vpp_store_stats st;
	vpp_store_get_stats(s, &st);
	if (st.journal_bytes)
		vpp_log(VPP_LOG_INFO, "store", "journal holds %llu bytes to replay",
		        (unsigned long long)st.journal_bytes);
	*ret = s;
	return 0;
}

void vppd_store_stop(vpp_store *s)
{
	if (!s)
		return;
	atomic_store(&running, NULL);
	retry_stop();
	vpp_store_stop(s);
	vpp_log(VPP_LOG_INFO, "store", "stopped");
}

void vppd_store_restore_setpoint(const vppd_config *cfg, vpp_plant *p, vpp_operator *op)
{
	if (!cfg->database_url || !cfg->database_url[0])
		return;
	char err[512], id[32];
	vpp_setpoint sp;
	bool found = false;
	int64_t until = 0;
	if (failed_at_start[0] && retry.started) {
		vpp_log(VPP_LOG_WARN, "dispatch",
			"cannot read the operator setpoint that was in force yet (%s): the fleet holds "
			"0 kW until an operator sets one, or the database answers",
			failed_at_start);
		pthread_mutex_lock(&retry.lock);
		retry.plant = p;
		snprintf(retry.node_id, sizeof(retry.node_id), "%s", cfg->node_id);
		pthread_mutex_unlock(&retry.lock);
		return;
	}
	if (failed_at_start[0] || read_newest(cfg->database_url, cfg->node_id, &sp, &found, &until,
					      id, err, sizeof(err)) != 0) {
		vpp_log(VPP_LOG_WARN, "dispatch",
			"cannot read the operator setpoint that was in force (%s): the fleet holds 0 kW "
			"until an operator sets one",
			failed_at_start[0] ? failed_at_start : err);
		return;
	}
	if (!found)
		return;
	int64_t now = vpp_wall_ms();
	if (until <= now) {
		vpp_log(VPP_LOG_INFO, "dispatch",
			"the newest operator setpoint (%s, request_id %s) ended %.0f s ago: the "
			"fleet holds 0 kW",
			id, sp.request_id, (double)(now - until) / 1000.0);
		return;
	}
	if (vpp_plant_restore_setpoint(p, id, sp.target_kw, until, sp.ramp_kw_per_s) != 0) {
		vpp_log(VPP_LOG_ERROR, "dispatch",
			"the operator setpoint in force (%s, request_id %s, %g kW) was refused by the "
			"dispatcher: the fleet holds 0 kW",
			id, sp.request_id, sp.target_kw);
		return;
	}
	vpp_operator_restored(op, sp.setpoint_id);
	char ramp[64] = "at once";
	if (sp.ramp_kw_per_s > 0)
		snprintf(ramp, sizeof(ramp), "ramping from 0 kW at %g kW/s", sp.ramp_kw_per_s);
	vpp_log(VPP_LOG_WARN, "dispatch",
		"carrying on with the operator setpoint in force before the restart: %s "
		"(request_id %s, %g kW %s, by %s), for %.0f s more",
		id, sp.request_id, sp.target_kw, ramp, sp.principal, (double)(until - now) / 1000.0);
}

void vppd_store_forget_plant(void)
{
	pthread_mutex_lock(&retry.lock);
	retry.plant = NULL;
	pthread_mutex_unlock(&retry.lock);
}

int vppd_store_ready(char *why, size_t whylen)
{
	vpp_store *s = atomic_load(&running);
	if (!s)
		return 1;
	char reason[256];
	if (vpp_store_ready(s, reason, sizeof(reason)))
		return 1;
	vpp_store_stats st;
	vpp_store_get_stats(s, &st);
	/* Rows are safe in the journal while it has room: still ready. */
	if ((int64_t)st.journal_bytes < journal_limit / 10 * 9)
		return 1;
	snprintf(why, whylen, "database down and journal nearly full: %s", reason);
	return 0;
}

int vppd_store_db_up(char *why, size_t whylen)
{
	vpp_store *s = atomic_load(&running);
	return !s || vpp_store_ready(s, why, whylen);
}

int vppd_migrate_main(const vppd_config *cfg)
{
	char err[512];
	int version = 0;
	if (!cfg->database_url || !cfg->database_url[0]) {
		fprintf(stderr, "vppd migrate: database-url (VPP_DATABASE_URL) is not set\n");
		return EXIT_FAILURE;
	}
	int rv = vpp_store_migrate(cfg->database_url, on_applied_print, NULL, &version, err,
	                           sizeof(err));
	if (rv != 0) {
		fprintf(stderr, "vppd migrate: %s\n", err);
		return EXIT_FAILURE;
	}
	printf("schema at version %d (this vppd knows %d)\n", version, vpp_store_schema_version());
	return EXIT_SUCCESS;
}
