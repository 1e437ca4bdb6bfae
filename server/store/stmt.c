/* The statements the store sends on its pipeline connection, and their
 * flat form (id plus text parameters) that the journal holds. Every
 * journaled write is idempotent, so a replay of a write that had in fact
 * been committed changes nothing. */
#include "store_int.h"
#include "vpp/error.h"

#include <stdlib.h>
#include <string.h>

/* SQL reads best as SQL: keep clang-format away from the table. */
/* clang-format off */
#define TS(n) "to_timestamp($" #n "::float8 / 1000)"
#define MS(col) "(extract(epoch FROM " col ") * 1000)::int8"

#define DEVICE_SELECT \
	"SELECT d.device_id, d.firmware, d.rated_charge_kw, d.rated_discharge_kw, " \
	"d.capacity_kwh, d.min_soc, d.max_soc, d.ramp_kw_per_s, d.node_id, " \
	MS("d.first_seen") ", " MS("d.last_seen") ", s.device_id IS NOT NULL, " \
	MS("s.as_of") ", s.status, s.power_kw, s.power_sigma_kw, s.soc, s.soc_sigma, " \
	"s.setpoint_kw, s.availability, s.reliability " \
	"FROM devices d LEFT JOIN device_state s ON s.device_id = d.device_id "

#define SETPOINT_COLUMNS VPP__SETPOINT_COLUMNS
/* The newest setpoint_id in the table, this row's included (the statement's
 * own insert is not in its snapshot): a retried request is only applied
 * again while no later setpoint exists. */
#define NEWEST_SETPOINT \
	"GREATEST(setpoint_id, (SELECT coalesce(max(setpoint_id), 0) FROM setpoints))"

const vpp__stmt_def vpp__stmts[VPP__ST__COUNT] = {
	/* Newest registration wins: a late replay or redo (e.g. a node's journal
	 * after the device moved to another node) never rolls it back. */
	[VPP__ST_DEVICE_UPSERT] = {"vpp_device_upsert",
		"INSERT INTO devices (device_id, firmware, rated_charge_kw, rated_discharge_kw, "
		"capacity_kwh, min_soc, max_soc, ramp_kw_per_s, node_id, last_seen) "
		"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, " TS(10) ") "
		"ON CONFLICT (device_id) DO UPDATE SET firmware = EXCLUDED.firmware, "
		"rated_charge_kw = EXCLUDED.rated_charge_kw, "
		"rated_discharge_kw = EXCLUDED.rated_discharge_kw, "
		"capacity_kwh = EXCLUDED.capacity_kwh, min_soc = EXCLUDED.min_soc, "
		"max_soc = EXCLUDED.max_soc, ramp_kw_per_s = EXCLUDED.ramp_kw_per_s, "
		"node_id = EXCLUDED.node_id, last_seen = EXCLUDED.last_seen, updated_at = now() "
		"WHERE EXCLUDED.last_seen >= devices.last_seen",
		10, true},
	/* Newest wins: a replayed or late state never replaces a newer one. */
	[VPP__ST_DEVICE_STATE] = {"vpp_device_state",
		"INSERT INTO device_state (device_id, node_id, as_of, status, power_kw, "
		"power_sigma_kw, soc, soc_sigma, setpoint_kw, availability, reliability) "
		"VALUES ($1, $2, " TS(3) ", $4, $5, $6, $7, $8, $9, $10, $11) "
		"ON CONFLICT (device_id) DO UPDATE SET node_id = EXCLUDED.node_id, "
		"as_of = EXCLUDED.as_of, status = EXCLUDED.status, power_kw = EXCLUDED.power_kw, "
		"power_sigma_kw = EXCLUDED.power_sigma_kw, soc = EXCLUDED.soc, "
		"soc_sigma = EXCLUDED.soc_sigma, setpoint_kw = EXCLUDED.setpoint_kw, "
		"availability = EXCLUDED.availability, reliability = EXCLUDED.reliability, "
		"updated_at = now() WHERE device_state.as_of <= EXCLUDED.as_of",
		11, true},
	[VPP__ST_FLEET_TICK] = {"vpp_fleet_tick",
		"INSERT INTO fleet_ticks VALUES ($1, " TS(2) ", $3, $4, $5, $6, $7, $8, $9, $10, "
		"$11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, "
		"$27, $28, $29) ON CONFLICT DO NOTHING",
		29, true},
	[VPP__ST_DEVICE_EVENT] = {"vpp_device_event",
		"INSERT INTO device_events (uid, device_id, node_id, at, kind, reason) "
		"VALUES ($1, $2, $3, " TS(4) ", $5, $6) ON CONFLICT DO NOTHING",
		6, true},
	[VPP__ST_AUDIT] = {"vpp_audit",
		"INSERT INTO audit_log (uid, at, node_id, principal, action, request_id, detail, "
		"result) VALUES ($1, " TS(2) ", $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
		8, true},
	[VPP__ST_HEARTBEAT] = {"vpp_heartbeat",
		"INSERT INTO cluster_nodes (node_id, version, started_at, heartbeat_at) "
		"VALUES ($1, $2, " TS(3) ", now()) ON CONFLICT (node_id) DO UPDATE SET "
		"version = EXCLUDED.version, started_at = EXCLUDED.started_at, heartbeat_at = now()",
		3, false},
	[VPP__ST_MAINTAIN] = {"vpp_maintain",
		"SELECT vpp_telemetry_maintain($1::interval, $2::interval, $3::interval, "
		"$4::interval)",
		4, false},
	/* The stored row, created or not: a retried request_id gets the original. */
	[VPP__ST_SETPOINT] = {"vpp_setpoint",
		"WITH ins AS (INSERT INTO setpoints (request_id, target_kw, valid_for_s, "
		"ramp_kw_per_s, reason, principal, node_id, created_at) VALUES ($1, $2, $3, $4, "
		"$5, $6, $7, CASE WHEN $8::bigint > 0 THEN to_timestamp($8::bigint / 1000.0) "
		"ELSE now() END) "
		"ON CONFLICT (request_id) DO NOTHING RETURNING *) "
		"SELECT " SETPOINT_COLUMNS ", true, " NEWEST_SETPOINT " FROM ins UNION ALL "
		"SELECT " SETPOINT_COLUMNS ", false, " NEWEST_SETPOINT " FROM setpoints "
		"WHERE request_id = $1 AND NOT EXISTS (SELECT 1 FROM ins)",
		8, false},
	[VPP__ST_LIST_DEVICES] = {"vpp_list_devices",
		DEVICE_SELECT "WHERE d.device_id > $1 ORDER BY d.device_id LIMIT $2",
		2, false},
	[VPP__ST_GET_DEVICE] = {"vpp_get_device",
		DEVICE_SELECT "WHERE d.device_id = $1",
		1, false},
	[VPP__ST_DEVICE_TELEMETRY] = {"vpp_device_telemetry",
		"SELECT device_id, seq, " MS("measured_at") ", " MS("received_at") ", power_kw, "
		"power_sigma_kw, soc, soc_sigma, quality FROM telemetry "
		"WHERE device_id = $1 AND measured_at >= " TS(2) " "
		"ORDER BY measured_at DESC, seq DESC LIMIT $3",
		3, false},
	[VPP__ST_DEVICE_IDS] = {"vpp_device_ids", "SELECT device_id FROM devices", 0, false},
};
/* clang-format on */

static void put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

int vpp__stmt_build(vpp__stmt *st, vpp__stmt_id id, const char *const *params, int n)
{
	size_t len = 4;
	for (int i = 0; i < n; i++)
		len += 4 + (params[i] ? strlen(params[i]) + 1 : 0);
	unsigned char *b = malloc(len), *p = b + 4;
	if (!b)
		return VPP_ENOMEM;
	put16(b, (uint16_t)id);
	put16(b + 2, (uint16_t)n);
	for (int i = 0; i < n; i++) {
		int32_t l = params[i] ? (int32_t)strlen(params[i]) : -1;
		memcpy(p, &l, 4);
		p += 4;
		if (l >= 0) {
			memcpy(p, params[i], (size_t)l + 1);
			p += l + 1;
		}
	}
	st->blob = b;
	st->len = len;
	return 0;
}

int vpp__stmt_parse(const unsigned char *blob, size_t len, vpp__stmt_id *id, const char **params,
                    int *n)
{
	if (len < 4)
		return VPP_ECORRUPT;
	unsigned sid = get16(blob), cnt = get16(blob + 2);
	if (sid >= VPP__ST__COUNT || cnt > 32 || (int)cnt != vpp__stmts[sid].nparams)
		return VPP_ECORRUPT;
	size_t off = 4;
	for (unsigned i = 0; i < cnt; i++) {
		int32_t l;
		if (len - off < 4)
			return VPP_ECORRUPT;
		memcpy(&l, blob + off, 4);
		off += 4;
		if (l < 0) {
			params[i] = NULL;
			continue;
		}
		if ((size_t)l >= len - off || blob[off + (size_t)l] != 0)
			return VPP_ECORRUPT;
		params[i] = (const char *)blob + off;
		off += (size_t)l + 1;
	}
	if (off != len)
		return VPP_ECORRUPT;
	*id = (vpp__stmt_id)sid;
	*n = (int)cnt;
	return 0;
}
