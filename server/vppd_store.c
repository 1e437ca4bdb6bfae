/* vppd's glue to the store: settings from the configuration table,
 * migrations at start-up, `vppd migrate`, and readiness for /readyz. */
#include "vppd_int.h"
#include "vpp/error.h"
#include "vpp/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The running store, for the admin thread's /readyz. */
static _Atomic(vpp_store *) running;
static int64_t journal_limit;

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
	if (fsync_policy(cfg->journal_fsync, &o.fsync_policy) != 0) {
		vpp_log(VPP_LOG_ERROR, "store",
		        "invalid value '%s' for journal-fsync: expected always, interval or never",
		        cfg->journal_fsync);
		return VPP_EINVAL;
	}
	o.fsync_interval_ms = cfg->journal_fsync_interval_ms;
	o.journal_max_bytes = cfg->journal_max_bytes;
	o.reconnect_min_ms = cfg->db_reconnect_min_ms;
	o.reconnect_max_ms = cfg->db_reconnect_max_ms;
	o.partition_hours = cfg->telemetry_partition_hours;
	o.partitions_ahead = cfg->telemetry_partitions_ahead;
	o.retention_days = cfg->telemetry_retention_days;
	o.max_past_ms = cfg->telemetry_max_past_s * 1000;
	o.max_future_ms = cfg->telemetry_max_future_s * 1000;
	if (o.reconnect_max_ms < o.reconnect_min_ms) {
		vpp_log(VPP_LOG_ERROR, "store", "db-reconnect-max-ms is below db-reconnect-min-ms");
		return VPP_EINVAL;
	}

	if (!cfg->no_migrate) {
		rv = vpp_store_migrate(cfg->database_url, on_applied, NULL, &version, err,
		                       sizeof(err));
		if (rv == VPP_ESCHEMA) {
			vpp_log(VPP_LOG_ERROR, "store", "%s", err);
			return rv;
		}
		if (rv != 0) {
			/* Keep running on the journal: the database may come back. */
			vpp_log(VPP_LOG_WARN, "store",
			        "migrations not applied (%s); rows are journaled until the "
			        "database is reachable",
			        err);
		} else {
			vpp_log(VPP_LOG_INFO, "store", "schema at version %d", version);
		}
	}
	vpp_store *s;
	if ((rv = vpp_store_start(&o, &s)) != 0) {
		vpp_log(VPP_LOG_ERROR, "store", "cannot start the store (journal %s): %s",
		        cfg->journal_dir, vpp_strerror(rv));
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
	vpp_store_stop(s);
	vpp_log(VPP_LOG_INFO, "store", "stopped");
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
