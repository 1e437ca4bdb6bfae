/* Internals of the DeviceLink service. */
#ifndef VPP_DEVICE_INT_H
#define VPP_DEVICE_INT_H

#include "vpp/device.h"
#include "vpp/metrics.h"
#include "vpp/telemetry.h"
#include "vpp/v1/device.pb-c.h"

typedef struct dev_loop dev_loop;

typedef struct session {
	dev_loop *dl;
	vpp_grpc_call *call;
	uint64_t handle; /* generation << 32 | index in dl->table */
	uint32_t index;
	char id[VPP_PLANT_ID_MAX + 1];
	char session_id[48];
	uint32_t slot;
	bool hello;
	bool registered;
	bool ending; /* finish sent; waiting for on_done */
	bool refused; /* the plant refused the Hello: no bye is owed */
	/* The last sample accepted before the plant registered the Hello:
	 * handed to the estimator with the slot, so that a device reporting
	 * every 20 s is not stale for 20 s after it connects. */
	bool early_t;
	vpp_telemetry early;
	int bye_reason;
	uint64_t last_seq;
	uint64_t first_sp_seq, last_sp_seq; /* setpoints sent on this session */
	uint64_t last_sp_sent; /* uv_hrtime() just after it was written; 0: acked */
	int64_t clock_offset_ms;
	bool clock_known; /* a Pong gave clock_offset_ms */
	uint64_t ping_id;
	uint64_t ping_sent;    /* loop time, ms; 0: none outstanding */
	int64_t ping_sent_wall;
	uint64_t min_rtt;
	uint64_t started, last_rx, next_ping; /* loop time, ms */
	double tokens;
	uint64_t tokens_at;
	bool blocked; /* its reads are paused while the loop's backlog drains */
	float rated_charge_kw, rated_discharge_kw; /* from its Hello */
} session;

typedef struct {
	uint64_t session;
	uint32_t slot;
	int reason;
} pending_bye;

struct dev_loop {
	vpp_devices *d;
	int index;
	uv_loop_t *loop;
	uv_timer_t sweep;
	uv_timer_t retry; /* store backpressure and pending byes */
	session **table;
	uint32_t *gens;
	uint32_t cap, used;
	uint32_t *free_idx;
	uint32_t nfree;
	uint64_t counter;
	bool shutdown;
	pending_bye *byes;
	size_t nbyes, capbyes;
	/* Sessions that ended before the plant registered their Hello: their
	 * bye waits for the slot (VPP_PO_REGISTERED) or the refusal. */
	pending_bye *unreg;
	size_t nunreg, capunreg;
	/* Telemetry rows waiting for room in the store (backlog.c). */
	vpp_telemetry_row *backlog;
	size_t bl_head, bl_n, bl_cap;
};

/* Rows one loop holds for a full store; past this, telemetry is refused. */
#define VPP__DEV_BACKLOG_MAX 65536

struct vpp_devices {
	vpp_devices_opts o;
	dev_loop *loops;
	int nloops;
	struct {
		vpp_gauge *sessions, *backlog;
		vpp_counter *hellos, *telemetry, *setpoints, *acks, *pings;
		vpp_counter *rejected[14];
		vpp_counter *shed_dispatch, *store_blocked, *store_rejected, *stale_out;
		vpp_counter *duplicates, *stale_acks, *lost_at_shutdown, *implausible;
		vpp_histogram *ack_rtt, *ping_rtt, *fanout;
	} met;
};

/* Why a session was refused or ended early: vpp_device_rejected_total. */
enum {
	DR_NO_IDENTITY,
	DR_ID_MISMATCH,
	DR_BAD_HELLO,
	DR_SECOND_HELLO,
	DR_BEFORE_HELLO,
	DR_MALFORMED,
	DR_BAD_TELEMETRY,
	DR_UNKNOWN_ACK,
	DR_FLOOD,
	DR_HELLO_TIMEOUT,
	DR_SILENT,
	DR_SLOW_READER,
	DR_STORE_FULL,
	DR_HELLO_RATE,
	DR__COUNT
};

/* table.c */
int vpp__dev_table_add(dev_loop *dl, session *s);
void vpp__dev_table_remove(dev_loop *dl, session *s);
session *vpp__dev_table_get(dev_loop *dl, uint64_t handle);

/* backlog.c */
/* Appends |row|; VPP_EFULL past VPP__DEV_BACKLOG_MAX. */
int vpp__dev_backlog_push(dev_loop *dl, const vpp_telemetry_row *row);
/* Hands rows to the store until it is full; returns how many still wait. */
size_t vpp__dev_backlog_drain(dev_loop *dl, struct vpp_store *st);
void vpp__dev_backlog_free(dev_loop *dl);

/* check.c: what session.c accepts from a device, pure (no session, no
 * log) so that tests/fuzz/fuzz_device.c runs the same checks. */

/* Checks the ratings and firmware of Hello |h|. Returns NULL and sets
 * |*ratings|, or the reason it is refused (a static string). */
const char *vpp__dev_hello_check(const Vpp__V1__Hello *h, vpp_device_ratings *ratings);
/* Checks the values of Telemetry |t| (not its seq or timestamps). Returns
 * NULL, or the reason it is refused. */
const char *vpp__dev_telemetry_check(const Vpp__V1__Telemetry *t);
/* Readings no sensor of a battery rated |rated_charge_kw| and
 * |rated_discharge_kw| can have given: VPP_TELEMETRY_BAD_POWER and/or
 * _BAD_SOC, or 0. */
uint32_t vpp__dev_implausible(const Vpp__V1__Telemetry *t, float rated_charge_kw,
			      float rated_discharge_kw);
enum { VPP__DEV_ACK_OK, VPP__DEV_ACK_STALE, VPP__DEV_ACK_UNKNOWN };
/* Classifies an Ack of |setpoint_seq| on a session that sent setpoints
 * |first_sp_seq|..|last_sp_seq| (0, 0: none yet): VPP__DEV_ACK_OK, _STALE
 * (a late ack of an earlier session's setpoint: ignored) or _UNKNOWN (one
 * never sent: the session ends). */
int vpp__dev_ack_check(uint64_t setpoint_seq, uint64_t first_sp_seq, uint64_t last_sp_seq);
/* Whether a Pong's |device_time_ms| is a clock to correct by, for a Ping
 * sent at wall time |ping_sent_wall_ms|: set, and within ten years. */
bool vpp__dev_clock_plausible(int64_t device_time_ms, int64_t ping_sent_wall_ms);

/* session.c */
void vpp__dev_deliver(void *ud, const vpp_plant_out *m);
void vpp__dev_sweep(uv_timer_t *t);
void vpp__dev_retry(uv_timer_t *t);
extern const vpp_grpc_method vpp__dev_method;

#endif
