/* The newest operator setpoint, read once at start-up with a blocking
 * connection: a vppd that restarts while a setpoint is in force carries on
 * with it instead of dropping the fleet to 0 for the rest of its validity. */
#include "store_int.h"
#include "vpp/error.h"

#include <stdio.h>
#include <string.h>

int vpp_store_newest_setpoint(const char *conninfo, const char *node_id, vpp_setpoint *out,
                              bool *found, char *err, size_t errlen)
{
	*found = false;
	PGconn *c = vpp__pg_connect(conninfo);
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return VPP_ENOMEM;
	}
	int rv = VPP_EDB;
	if (PQstatus(c) != CONNECTION_OK) {
		snprintf(err, errlen, "cannot connect: %s", PQerrorMessage(c));
		goto out;
	}
	const char *params[1] = {node_id};
	PGresult *r = PQexecParams(c,
	                           "SELECT " VPP__SETPOINT_COLUMNS " FROM setpoints WHERE node_id = $1 "
	                           "ORDER BY setpoint_id DESC LIMIT 1",
	                           1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQnfields(r) != 9) {
		snprintf(err, errlen, "%s", PQresultErrorMessage(r));
	} else {
		rv = 0;
		if (PQntuples(r) == 1) {
			vpp__setpoint_from_result(r, 0, out);
			*found = true;
		}
	}
	PQclear(r);
out:
	err[strcspn(err, "\n")] = 0;
	PQfinish(c);
	return rv;
}
