/* Internals of the DeviceLink service. */
#ifndef VPP_DEVICE_INT_H
#define VPP_DEVICE_INT_H

#include "vpp/device.h"
#include "vpp/metrics.h"
#include "vpp/telemetry.h"

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
	int bye_reason;
	uint64_t last_seq;
	uint64_t last_sp_seq;
	uint64_t last_sp_sent; /* uv_hrtime() just after it was written */
	int64_t clock_offset_ms;
	uint64_t ping_id;
	uint64_t ping_sent;    /* loop time, ms; 0: none outstanding */
	int64_t ping_sent_wall;
	uint64_t min_rtt;
	uint64_t started, last_rx, next_ping; /* loop time, ms */
	double tokens;
	uint64_t tokens_at;
	bool blocked; /* a telemetry row waits for room in the store */
	vpp_telemetry_row pending;
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
};

struct vpp_devices {
	vpp_devices_opts o;
	dev_loop *loops;
	int nloops;
	struct {
		vpp_gauge *sessions;
		vpp_counter *hellos, *telemetry, *setpoints, *acks, *pings;
		vpp_counter *rejected[12];
		vpp_counter *shed_dispatch, *store_blocked, *store_rejected, *stale_out;
		vpp_counter *duplicates;
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
	DR__COUNT
};

/* table.c */
int vpp__dev_table_add(dev_loop *dl, session *s);
void vpp__dev_table_remove(dev_loop *dl, session *s);
session *vpp__dev_table_get(dev_loop *dl, uint64_t handle);

/* session.c */
void vpp__dev_deliver(void *ud, const vpp_plant_out *m);
void vpp__dev_sweep(uv_timer_t *t);
void vpp__dev_retry(uv_timer_t *t);
extern const vpp_grpc_method vpp__dev_method;

#endif
