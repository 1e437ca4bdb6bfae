/* The plant: vppd's dispatch thread. It owns the fleet table (dispatch
 * core), runs the control loop every tick, and is the one place that knows
 * which session (on which I/O loop) speaks for which device.
 *
 * Sessions and operator handlers live on I/O loops; each loop talks to the
 * plant through two single-producer rings (loop -> plant, plant -> loop)
 * plus uv_async_send, so no lock is taken per message. Device state, events
 * and each tick's fleet aggregates go to the store when one is given. */
#ifndef VPP_PLANT_H
#define VPP_PLANT_H

#include "vpp/dispatch.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct vpp_plant vpp_plant;
struct vpp_store;

/* Longest device id a session may register (the store's limit). */
#define VPP_PLANT_ID_MAX 63
#define VPP_PLANT_FIRMWARE_CAP 64 /* bytes, with the NUL; longer is cut at a character */

typedef struct {
	const char *node_id;
	vpp_dispatch_params params; /* tick_ms, lease, deadband, ... */
	struct vpp_store *store;    /* NULL: nothing persisted */
	size_t ring_capacity;	    /* records per ring; 0: 65536 */
	int64_t state_every_ms;	    /* device_state upserts; 0: 10000 */
	/* In a cluster the node's target is the share the leader gives it
	 * (vpp_plant_set_share): operator setpoints are recorded, not applied
	 * to this node's fleet. */
	bool clustered;
} vpp_plant_opts;

/* ---- loop -> plant ------------------------------------------------------- */

typedef enum {
	VPP_PM_HELLO = 1, /* a session announced its device (u.hello, owned) */
	VPP_PM_BYE,	  /* the session ended (u.bye) */
	VPP_PM_TELEMETRY, /* u.t */
	VPP_PM_ACK,	  /* u.ack */
	VPP_PM_QUERY,	  /* an operator question (u.q) */
} vpp_plant_msg_type;

typedef struct {
	char id[VPP_PLANT_ID_MAX + 1];
	char firmware[VPP_PLANT_FIRMWARE_CAP];
	vpp_device_ratings ratings;
	char session_id[64];
} vpp_plant_hello;

typedef enum {
	VPP_BYE_CLOSED = 0,   /* the device ended the session */
	VPP_BYE_ERROR,	      /* protocol error or bad input */
	VPP_BYE_TIMEOUT,      /* silent too long */
	VPP_BYE_REPLACED,     /* a newer session took over */
	VPP_BYE_SLOW,	      /* its outbound queue overflowed */
	VPP_BYE_SHUTDOWN,     /* this node is stopping */
	VPP_BYE_CONN_LOST,    /* connection lost or reset */
	VPP_BYE_THROTTLED,    /* Hellos of this device too often (refused) */
	VPP_BYE_DRAINED,      /* this node drains: reconnect to another */
} vpp_bye_reason;

const char *vpp_bye_reason_name(vpp_bye_reason r);

typedef struct vpp_plant_query vpp_plant_query;

/* A question for the dispatch thread. Embed it in your own struct. |run|
 * runs on the dispatch thread with the fleet (it may read or change it);
 * then |done| runs back on the loop that posted it. */
struct vpp_plant_query {
	void (*run)(vpp_plant_query *q, vpp_fleet *f, int64_t now_ms, vpp_plant *p);
	void (*done)(vpp_plant_query *q);
	int loop;
};

typedef struct {
	int type;	  /* vpp_plant_msg_type */
	uint64_t session; /* the session's handle on its loop */
	uint32_t slot;	  /* from VPP_PO_REGISTERED (not for HELLO) */
	union {
		vpp_plant_hello *hello; /* malloc'd; the plant frees it */
		vpp_telemetry t;
		struct {
			uint64_t seq;
			int accepted;
			int64_t at_ms;
		} ack;
		struct {
			int reason; /* vpp_bye_reason */
		} bye;
		vpp_plant_query *q;
	} u;
} vpp_plant_msg;

/* ---- plant -> loop ------------------------------------------------------- */

typedef enum {
	VPP_PO_REGISTERED = 1, /* the hello was accepted: u.slot */
	VPP_PO_SETPOINT,       /* send this lease to the device: u.sp */
	VPP_PO_CLOSE,	       /* end the session: u.reason (vpp_bye_reason) */
	VPP_PO_SHUTDOWN,       /* the plant stops: end every session */
	VPP_PO_WRITTEN,	       /* every setpoint of tick u.tick_ns was handed
				* over: the loop has written them */
	VPP_PO__ANSWER = 100,  /* internal: a query's answer (u.q) */
} vpp_plant_out_type;

typedef struct {
	int type;
	uint64_t session;
	union {
		uint32_t slot;
		struct {
			uint64_t seq;
			double power_kw;
			int64_t valid_until_ms;
			int64_t issued_ms; /* the tick's time: valid_until_ms is from it */
			uint64_t tick_ns;  /* uv_hrtime() when the tick began */
		} sp;
		int reason;
		uint64_t tick_ns;
		vpp_plant_query *q;
	} u;
} vpp_plant_out;

/* Called on the loop for every device message the plant sends it. */
typedef void (*vpp_plant_deliver_fn)(void *ud, const vpp_plant_out *m);

int vpp_plant_new(const vpp_plant_opts *o, int nloops, vpp_plant **ret);

/* Attaches I/O loop |i| (0 <= i < nloops) before it runs: the plant adds a
 * uv_async to it. |fn| receives the device messages for that loop. */
int vpp_plant_attach_loop(vpp_plant *p, int i, uv_loop_t *loop, vpp_plant_deliver_fn fn,
			  void *ud);

/* Starts the dispatch thread. */
int vpp_plant_start(vpp_plant *p);

/* Loop side, on loop |i|'s thread only: hands |m| to the plant. Returns 0,
 * VPP_EFULL (the ring is full: shed or retry, the caller decides) or
 * VPP_ECLOSED (the plant stopped). */
int vpp_plant_post(vpp_plant *p, int i, const vpp_plant_msg *m);

/* Stops the control loop and the thread, sends VPP_PO_SHUTDOWN to every
 * loop and closes the handles attached to them (the loops must still be
 * running). Blocks until the thread is joined. */
void vpp_plant_stop(vpp_plant *p);

/* Frees the plant once the loops no longer run. Accepts NULL. */
void vpp_plant_free(vpp_plant *p);

/* ---- read-out, any thread ------------------------------------------------ */

typedef struct {
	vpp_fleet_status status; /* of the newest tick */
	uint64_t tick;		 /* increments every tick */
	double target_kw;	 /* the operator's target now (0 when none) */
	int64_t target_valid_until_ms;
	double target_ramp_kw_per_s;
	char setpoint_id[64];	 /* of the active operator setpoint, "" if none */
	int64_t last_tick_at_ms; /* wall clock of the newest tick */
	double last_tick_ms;	 /* how long it took */
	/* The node as one device (vpp_fleet_aggregate), of the newest tick. */
	double agg_a, agg_e_dis_kwh, agg_e_chg_kwh, agg_lo_kw, agg_hi_kw;
	/* In a cluster: the share in force (its epoch, 0: none) and when it
	 * ends. */
	uint64_t share_epoch;
	double share_kw;
	int64_t share_valid_until_ms;
} vpp_plant_snapshot;

/* Copies the newest tick's status. Thread-safe. */
void vpp_plant_snapshot_get(vpp_plant *p, vpp_plant_snapshot *out);

/* Dispatch thread only (from a query's run): the firmware the device in
 * |slot| named in its last Hello to this node, "" if none. */
const char *vpp_plant_device_firmware(const vpp_plant *p, uint32_t slot);

/* The operator setpoint |id| that was in force when the previous vppd
 * stopped, carried on until |valid_until_ms|. Before vpp_plant_start it
 * applies at once (returns 0 or VPP_EINVAL, the fleet refused it); after,
 * from any thread, the next tick takes it unless an operator has set a
 * target since the start. */
int vpp_plant_restore_setpoint(vpp_plant *p, const char *id, double target_kw,
			       int64_t valid_until_ms, double ramp_kw_per_s);

/* Dispatch thread only (from a query's run): records the operator setpoint
 * |id| that is now active, for the snapshots. */
void vpp_plant_set_active_setpoint(vpp_plant *p, const char *id, double target_kw,
				   int64_t valid_until_ms, double ramp_kw_per_s);

/* In a cluster: the leader's share for this node, |share_kw| until
 * |valid_until_ms| (then 0), under leadership |epoch|, split from an
 * operator setpoint that ends at |setpoint_until_ms| (0: none in force),
 * which no battery lease outlives. Any thread; the dispatch thread takes
 * it at once and ticks (a new share is acted on without waiting for the
 * tick). A share of an epoch older than the newest one taken is ignored
 * (returns VPP_EPERM); VPP_EINVAL on non-finite or negative numbers. */
int vpp_plant_set_share(vpp_plant *p, uint64_t epoch, double share_kw, int64_t valid_until_ms,
			int64_t setpoint_until_ms);

/* Drains the node (|on|) or stops draining: every tick the dispatch
 * thread ends the sessions of |per_tick| of the devices connected when the
 * drain began (at least one), each told to back off briefly and come back
 * through the load balancer to another node. Any thread. */
void vpp_plant_drain(vpp_plant *p, bool on, double per_tick);
/* Devices with a session on this node now. Thread-safe. */
uint32_t vpp_plant_connected(vpp_plant *p);

/* Called on the dispatch thread after every tick (the snapshot is
 * published): the cluster heartbeats then. Set before vpp_plant_start. */
void vpp_plant_on_tick(vpp_plant *p, void (*fn)(void *ud), void *ud);

/* Dispatch thread only (from a query's run): ticks again as soon as the
 * current drain is over, so that a new target is acted on at once. */
void vpp_plant_tick_soon(vpp_plant *p);

/* True when the plant takes its target from cluster shares. */
bool vpp_plant_clustered(const vpp_plant *p);

/* True when the control loop ticked within 3 tick periods. Thread-safe. */
bool vpp_plant_healthy(vpp_plant *p, char *why, size_t whylen);

#endif
