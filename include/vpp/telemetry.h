/* Rows the store persists, and the validation telemetry passes before it may
 * reach the database. Pure: no I/O. Units as everywhere in vpp: kW, kWh, SoC
 * as a fraction 0..1, times in Unix ms; positive power = discharge. */
#ifndef VPP_TELEMETRY_H
#define VPP_TELEMETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Device ids, node ids and short texts are stored inline; ids are 1..63
 * bytes. */
#define VPP_ID_CAP 64
#define VPP_TEXT_CAP 256

typedef struct {
	char device_id[VPP_ID_CAP];
	int64_t seq;
	int64_t measured_at_ms; /* device time, corrected by the session's clock offset */
	int64_t received_at_ms;
	double power_kw;
	/* Sigmas: the standard deviation the device reported, finite and >= 0;
	 * or NaN when the device gave none (it sent <= 0), stored as SQL NULL and
	 * read back as NaN. Never 0 for "not given": a stored 0 claims an exact
	 * measurement. Infinities and negative values are invalid. */
	double power_sigma_kw;
	double soc;
	double soc_sigma; /* as power_sigma_kw: NaN = not given */
	uint32_t quality; /* flags from the device */
} vpp_telemetry_row;

/* Why a telemetry row was rejected: the label of
 * vpp_store_rejected_total{reason="..."}. */
typedef enum {
	VPP_REJECT_NONE = 0,
	VPP_REJECT_BAD_ID,         /* device_id empty, too long or not printable */
	VPP_REJECT_BAD_SEQ,        /* seq < 0 */
	VPP_REJECT_NOT_FINITE,     /* NaN or infinity in a value, infinity in a sigma */
	VPP_REJECT_SOC_RANGE,      /* soc outside 0..1 */
	VPP_REJECT_BAD_SIGMA,      /* negative sigma */
	VPP_REJECT_FUTURE,         /* measured_at too far ahead of now */
	VPP_REJECT_PAST,           /* measured_at too far behind now */
	VPP_REJECT_UNKNOWN_DEVICE, /* never registered */
	VPP_REJECT_DB,             /* refused by the database (row isolated from its batch) */
	VPP_REJECT__COUNT,
} vpp_reject_reason;

/* Static name of |r| ("not_finite", ...). */
const char *vpp_reject_reason_name(vpp_reject_reason r);

/* Checks |r| against everything that can be decided without the device
 * registry: id, seq, finite values, SoC range, sigmas, and measured_at within
 * [now_ms - max_past_ms, now_ms + max_future_ms]. Returns VPP_REJECT_NONE or
 * the first reason found. */
vpp_reject_reason vpp_telemetry_validate(const vpp_telemetry_row *r, int64_t now_ms,
                                         int64_t max_past_ms, int64_t max_future_ms);

/* True when |id| is a valid device/node id: 1..63 printable ASCII bytes. */
bool vpp_id_valid(const char *id);

typedef struct {
	char device_id[VPP_ID_CAP];
	char firmware[VPP_ID_CAP];
	double rated_charge_kw;
	double rated_discharge_kw;
	double capacity_kwh;
	double min_soc;
	double max_soc;
	double ramp_kw_per_s;
	int64_t last_seen_ms;
} vpp_store_device;

typedef enum {
	VPP_STORE_DEVICE_ONLINE = 0,
	VPP_STORE_DEVICE_STALE,
	VPP_STORE_DEVICE_DEGRADED,
	VPP_STORE_DEVICE_OFFLINE,
} vpp_store_device_status;

typedef struct {
	char device_id[VPP_ID_CAP];
	int64_t as_of_ms;
	vpp_store_device_status status;
	double power_kw;
	double power_sigma_kw;
	double soc;
	double soc_sigma;
	double setpoint_kw;
	double availability;
	double reliability;
} vpp_store_device_state;

/* A device as the operator API lists it: registry row, node and, when
 * has_state, its latest state. */
typedef struct {
	vpp_store_device info;
	char node_id[VPP_ID_CAP];
	int64_t first_seen_ms;
	bool has_state;
	vpp_store_device_state state;
} vpp_store_device_record;

typedef struct {
	double value, sigma, lower, upper; /* lower/upper: the 90% interval */
} vpp_estimate_value;

typedef struct {
	int64_t tick_ms;
	double target_kw;
	double adjusted_target_kw;
	double commanded_kw;
	vpp_estimate_value measured_kw;
	vpp_estimate_value discharge_headroom_kw;
	vpp_estimate_value charge_headroom_kw;
	vpp_estimate_value energy_kwh;
	vpp_estimate_value expected_kw;
	int32_t online, stale, degraded, offline;
} vpp_store_tick_row;

typedef enum {
	VPP_STORE_EVENT_CONNECT = 0,
	VPP_STORE_EVENT_DISCONNECT,
	VPP_STORE_EVENT_REPLACED,
	VPP_STORE_EVENT_DEGRADED,
	VPP_STORE_EVENT_RECOVERED,
} vpp_store_event_kind;

typedef struct {
	int64_t setpoint_id; /* assigned by the database */
	char request_id[VPP_ID_CAP * 2];
	double target_kw;
	double valid_for_s;
	double ramp_kw_per_s;
	char reason[VPP_TEXT_CAP];
	char principal[VPP_ID_CAP * 2];
	char node_id[VPP_ID_CAP];
	int64_t created_at_ms; /* assigned by the database */
	/* Read back: the newest setpoint_id in the database at the time. */
	int64_t newest_setpoint_id;
} vpp_setpoint;

typedef struct {
	int64_t at_ms;
	char principal[VPP_ID_CAP * 2];
	char action[VPP_ID_CAP * 2];
	char request_id[VPP_ID_CAP * 2];
	char detail[VPP_TEXT_CAP];
	char result[VPP_ID_CAP];
} vpp_audit_entry;

#endif
