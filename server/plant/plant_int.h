/* Internals of the plant (the dispatch thread). */
#ifndef VPP_PLANT_INT_H
#define VPP_PLANT_INT_H

#include "vpp/metrics.h"
#include "vpp/plant.h"
#include "vpp/ring.h"
#include "vpp/telemetry.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct {
	vpp_plant *p;
	int index;
	uv_loop_t *loop;
	uv_async_t async;
	uv_prepare_t prepare; /* wakes the plant once per loop iteration */
	bool posted;	  /* loop side: pushed to |in| since the last wake */
	bool attached;
	_Atomic bool closing;
	vpp_ring *in;  /* loop -> plant */
	vpp_ring *out; /* plant -> loop */
	vpp_plant_deliver_fn fn;
	void *ud;
	/* Plant side: messages that must not be lost but did not fit |out|. */
	vpp_plant_out *backlog;
	size_t nbacklog, capbacklog;
	bool touched; /* something was pushed since the last wake-up */
} loop_link;

typedef struct {
	int loop; /* -1: no session */
	uint64_t session;
	/* Hellos of this device: a token bucket (VPP__HELLO_BURST, one more
	 * every VPP__HELLO_REFILL_MS), so a device that opens session after
	 * session cannot flood the store with events or evict itself. */
	double hello_tokens;
	int64_t hello_at_ms; /* 0: never: a full bucket */
	char firmware[VPP_PLANT_FIRMWARE_CAP]; /* from its last Hello */
	int64_t leave_at; /* draining: when it was set to leave at 0 (0: not) */
} owner;

#define VPP__HELLO_BURST 5
#define VPP__HELLO_REFILL_MS 2000

struct vpp_plant {
	vpp_plant_opts o;
	char *node_id;
	vpp_fleet *fleet;
	int nloops;
	loop_link *links;
	uv_loop_t loop;
	uv_thread_t thread;
	uv_async_t wake;
	uv_timer_t tick;
	bool thread_started;
	_Atomic bool stopping;
	_Atomic bool stopped;
	owner *owners;
	size_t nowners;
	int64_t last_state_ms;
	/* Device registrations the store refused (queue full): retried every
	 * tick, or the device's telemetry would be refused as unknown. */
	vpp_store_device *unregistered;
	size_t nunregistered, capunregistered;

	pthread_mutex_t snap_lock;
	vpp_plant_snapshot snap;
	/* Under snap_lock: a setpoint carried on across a restart, offered
	 * once the plant runs (the database answered late); the next tick
	 * takes it. */
	struct {
		bool pending;
		char id[64];
		double target_kw, ramp_kw_per_s;
		int64_t valid_until_ms;
	} restore;
	bool operator_set; /* dispatch thread: an operator setpoint applied */
	/* Under snap_lock: the newest cluster share offered, taken by the
	 * dispatch thread on its next wake-up. */
	struct {
		bool pending;
		uint64_t epoch;
		double kw;
		int64_t valid_until_ms;
		int64_t setpoint_until_ms; /* the operator's, 0: none */
	} share;
	uint64_t share_epoch; /* dispatch thread: epoch of the share in force */
	void (*on_tick)(void *ud);
	void *on_tick_ud;
	bool tick_soon; /* dispatch thread: tick again after this drain */
	_Atomic bool draining;
	_Atomic double drain_per_tick;
	uint32_t drain_from;	  /* dispatch thread: devices when the drain began */
	uint32_t drain_cursor;	  /* next owner slot to look at */
	uint32_t n_leaving;	  /* owners with leave_at set */
	_Atomic uint32_t connected;
	_Atomic int64_t last_tick_wall_ms;

	struct {
		vpp_histogram *tick_seconds;
		vpp_counter *commands, *commands_shed, *telemetry, *telemetry_rejected;
		vpp_counter *hellos, *replaced, *byes, *acks, *queries, *throttled;
		vpp_counter *events_degraded, *events_recovered, *events_ack_missed;
		vpp_gauge *target, *adjusted, *commanded, *measured, *measured_sigma;
		vpp_gauge *error, *shortfall, *online, *stale, *offline, *degraded;
		vpp_gauge *in_depth;
		vpp_counter *shares, *shares_old, *drained;
	} met;
};

/* persist.c: writes to the store (NULL store: no-ops). */
void vpp__persist_device(vpp_plant *p, const vpp_plant_hello *h, int64_t now_ms);
/* Retries the registrations the store refused, oldest first. */
void vpp__persist_retry_devices(vpp_plant *p);
void vpp__persist_event(vpp_plant *p, const char *id, int64_t at_ms, int kind,
			const char *reason);
void vpp__persist_tick(vpp_plant *p, const vpp_fleet_status *st);
void vpp__persist_states(vpp_plant *p, int64_t now_ms);

/* Device event kinds for vpp__persist_event. */
enum { PE_CONNECT, PE_DISCONNECT, PE_REPLACED, PE_DEGRADED, PE_RECOVERED };

#endif
