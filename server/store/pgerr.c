/* Which libpq failures are the connection's fault (retry later, elsewhere)
 * and which are the data's (isolate the offending rows). */
#include "store_int.h"

#include <string.h>

static const char *sqlstate(const PGresult *res)
{
	const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	return st && strlen(st) == 5 ? st : NULL;
}

bool vpp__pg_transient(PGconn *conn, const PGresult *res)
{
	if (PQstatus(conn) != CONNECTION_OK)
		return true;
	const char *st = sqlstate(res);
	if (!st)
		return true; /* client-side failure: no verdict on the data */
	/* Only a data exception (22) or an integrity constraint (23) condemns
	 * the rows. Anything else (connection, shutdown, a read-only standby
	 * after failover, a missing table or privilege, lack of resources) is
	 * the database's state: retry later, keep the rows in the journal. */
	return strncmp(st, "22", 2) != 0 && strncmp(st, "23", 2) != 0;
}

bool vpp__pg_conn_broken(PGconn *conn, const PGresult *res)
{
	if (PQstatus(conn) != CONNECTION_OK)
		return true;
	const char *st = sqlstate(res);
	if (!st)
		return true; /* libpq's own failure: the protocol state is unknown */
	/* Connection exceptions, the server terminating the session
	 * (admin_shutdown, crash_shutdown, cannot_connect_now), and a session
	 * that is read-only (a standby after a failover, or
	 * default_transaction_read_only): only a new session can find the
	 * writable primary (target_session_attrs) or the new setting. */
	return strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 || strcmp(st, "57P02") == 0 ||
	       strcmp(st, "57P03") == 0 || strcmp(st, "25006") == 0;
}
