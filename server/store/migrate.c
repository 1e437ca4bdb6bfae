/* The migration runner: applies the embedded sql/migrations in order, each
 * in its own transaction, recorded in schema_migrations. Blocking: it runs
 * before the store thread starts, or as `vppd migrate`. */
#include "store_int.h"
#include "vpp/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Serialises migrations of several nodes starting at once. */
#define MIGRATE_LOCK "7345000"

static void quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

static int exec_ok(PGconn *c, const char *sql, char *err, size_t errlen)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	int rv = 0;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "%s", PQresultErrorMessage(r));
		err[strcspn(err, "\n")] = 0;
		rv = VPP_EDB;
	}
	PQclear(r);
	return rv;
}

int vpp_store_schema_version(void)
{
	return (int)vpp__migrations_len;
}

int vpp_store_migrate(const char *conninfo, vpp_store_migrate_cb cb, void *user_data, int *version,
                      char *err, size_t errlen)
{
	int rv = VPP_EDB, current = 0;
	PGconn *c = vpp__pg_connect(conninfo);
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return VPP_ENOMEM;
	}
	if (PQstatus(c) != CONNECTION_OK) {
		snprintf(err, errlen, "cannot connect: %s", PQerrorMessage(c));
		err[strcspn(err, "\n")] = 0;
		goto out;
	}
	PQsetNoticeProcessor(c, quiet, NULL);
	if ((rv = exec_ok(c, "SELECT pg_advisory_lock(" MIGRATE_LOCK ")", err, errlen)) != 0)
		goto out;
	if ((rv = exec_ok(c,
	                  "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY "
	                  "KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
	                  err, errlen)) != 0)
		goto unlock;
	PGresult *r = PQexec(c, "SELECT coalesce(max(version), 0) FROM schema_migrations");
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "%s", PQresultErrorMessage(r));
		err[strcspn(err, "\n")] = 0;
		PQclear(r);
		rv = VPP_EDB;
		goto unlock;
	}
	current = atoi(PQgetvalue(r, 0, 0));
	PQclear(r);
	if (current > (int)vpp__migrations_len) {
		snprintf(err, errlen,
		         "database schema is at version %d, newer than this vppd knows (%d): "
		         "upgrade vppd before using this database",
		         current, (int)vpp__migrations_len);
		rv = VPP_ESCHEMA;
		goto unlock;
	}
	for (size_t i = 0; i < vpp__migrations_len; i++) {
		const vpp__migration *m = &vpp__migrations[i];
		if (m->version <= current)
			continue;
		if ((rv = exec_ok(c, "BEGIN", err, errlen)) != 0)
			goto unlock;
		if ((rv = exec_ok(c, m->sql, err, errlen)) != 0) {
			char msg[512];
			snprintf(msg, sizeof(msg), "migration %04d_%s: %s", m->version, m->name,
			         err);
			snprintf(err, errlen, "%s", msg);
			PQclear(PQexec(c, "ROLLBACK"));
			goto unlock;
		}
		char ver[16];
		const char *params[2] = {ver, m->name};
		snprintf(ver, sizeof(ver), "%d", m->version);
		r = PQexecParams(c, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
		                 2, NULL, params, NULL, NULL, 0);
		int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
		PQclear(r);
		if (!ok || (rv = exec_ok(c, "COMMIT", err, errlen)) != 0) {
			snprintf(err, errlen, "migration %04d_%s: cannot record it", m->version,
			         m->name);
			PQclear(PQexec(c, "ROLLBACK"));
			rv = VPP_EDB;
			goto unlock;
		}
		current = m->version;
		if (cb)
			cb(m->version, m->name, user_data);
	}
	rv = 0;
unlock:
	PQclear(PQexec(c, "SELECT pg_advisory_unlock(" MIGRATE_LOCK ")"));
out:
	PQfinish(c);
	if (rv == 0 && version)
		*version = current;
	return rv;
}
