/* Which libpq failures are the connection's fault (retry later, elsewhere)
 * and which are the data's (isolate the offending rows). */
#include "store_int.h"

#include <string.h>

bool vpp__pg_transient(PGconn *conn, const PGresult *res)
{
	if (PQstatus(conn) != CONNECTION_OK)
		return true;
	const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (!st || strlen(st) != 5)
		return true; /* client-side failure: no verdict on the data */
	/* Only a data exception (22) or an integrity constraint (23) condemns
	 * the rows. Anything else (connection, shutdown, a read-only standby
	 * after failover, a missing table or privilege, lack of resources) is
	 * the database's state: retry later, keep the rows in the journal. */
	return strncmp(st, "22", 2) != 0 && strncmp(st, "23", 2) != 0;
}
