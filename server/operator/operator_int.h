/* Internals of the GridOperator service. */
#ifndef VPP_OPERATOR_INT_H
#define VPP_OPERATOR_INT_H

#include "vpp/cluster.h"
#include "vpp/metrics.h"
#include "vpp/operator.h"
#include "vpp/telemetry.h"
#include "vpp/v1/grid.pb-c.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct op_call op_call;

/* A cluster answer being built on one I/O loop: the view copied out of the
 * cluster (some 40 KB, so not on the stack, and not allocated per message)
 * and the NodeStatus messages that point into it. */
typedef struct {
	vpp_cluster_view view;
	Vpp__V1__NodeStatus nodes[VPP_CLUSTER_NODES_MAX];
	Vpp__V1__NodeStatus *ptrs[VPP_CLUSTER_NODES_MAX];
	Vpp__V1__Estimate est[VPP_CLUSTER_NODES_MAX];
	char setpoint_id[24]; /* the view's, as the API spells it */
} op_nodes;

/* Per I/O loop: completions from the store and cluster threads come back
 * through a locked list and an async (rare: one per SetFleetSetpoint or
 * DrainNode). */
typedef struct {
	struct vpp_operator *op;
	int index;
	uv_loop_t *loop;
	uv_async_t async;
	pthread_mutex_t lock;
	op_call *done;
	bool closed;
	op_nodes *scratch; /* in a cluster only; this loop's thread only */
	struct op_peers *peers; /* connections to the other nodes (peers.c) */
} op_loop;

typedef struct {
	char request_id[VPP_ID_CAP * 2];
	double target_kw;
	uint32_t valid_for_s;
	double ramp;
	char setpoint_id[64];
	int64_t valid_until_ms;
	uint64_t order;
} recent_setpoint;

struct vpp_operator {
	vpp_operator_opts o;
	/* The bearer tokens in force: swapped whole by a reload (any thread);
	 * o.tokens is the set it started with. */
	_Atomic(const vpp_tokens *) tokens;
	op_loop *loops;
	int nloops;
	pthread_mutex_t recent_lock; /* idempotency without a database */
	recent_setpoint *recent;
	size_t nrecent, caprecent;
	uint64_t next_local_id;
	/* The order of the last setpoint applied; read and written on the
	 * dispatch thread only (set_run). */
	uint64_t applied_order;
	int64_t started_at_ms; /* ListNodes on a single node */
	vpp_counter *auth_failed, *denied, *setpoints;
};

/* A device as returned by a query (strings copied off the fleet). */
typedef struct {
	char id[VPP_ID_CAP * 2];
	char firmware[VPP_PLANT_FIRMWARE_CAP];
	vpp_device_info di;
} op_device;

enum { OP_SET, OP_PREVIEW, OP_LIST, OP_GET, OP_DRAIN };

struct op_call {
	vpp_plant_query q;
	vpp_grpc_call *call; /* NULL once the call is over */
	int refs;
	op_loop *ol;
	int kind;
	char principal[128];
	/* SetFleetSetpoint */
	Vpp__V1__SetFleetSetpointRequest *set;
	int64_t created_at_ms;
	int64_t valid_until_ms;
	char setpoint_id[64];
	int store_status;
	bool created;
	bool conflict;
	/* Setpoints apply in this order: the database's setpoint_id, or this
	 * node's count without a database. */
	uint64_t order;
	bool newest;   /* no later setpoint existed when its request_id settled */
	int outcome;   /* SET_* (service.c), from set_run */
	char detail[256]; /* for the audit log */
	/* PreviewDispatch and the expected delivery of a setpoint */
	double preview_kw;
	vpp_preview preview;
	bool cluster_preview; /* |preview| and |ramp_from| are the cluster's */
	double ramp_from; /* SetFleetSetpoint: the effective target before it */
	int rv;
	/* ListDevices / GetDevice */
	char after[VPP_ID_CAP * 2];
	uint32_t page_size;
	int state_filter;
	op_device *devs;
	size_t ndevs;
	bool more;
	char next_token[VPP_ID_CAP * 2]; /* where the next page starts after */
	struct op_fan *fan; /* in a cluster: the other nodes asked too (peers.c) */
	/* DrainNode: the node asked, what for, and the cluster's answer */
	char node_id[VPP_CLUSTER_ID_MAX + 1];
	bool drain;
	int drain_status;
	/* WatchFleet */
	uv_timer_t *timer;
	uint64_t last_tick;
	op_call *next; /* on ol->done: a SetFleetSetpoint stored, a DrainNode answered */
};

/* service.c */
void vpp__op_send_msg(vpp_grpc_call *call, const ProtobufCMessage *m);
void vpp__op_unref(op_call *c);

/* peers.c: ListDevices and GetDevice for the whole cluster. */
/* Whether the caller asked for this node alone ("vpp-scope: node"). */
bool vpp__op_scope_node(vpp_grpc_call *call);
/* Before |c|'s local query goes to the plant: true when other live nodes
 * are to be asked too (c->fan set, a reference taken; c->state_filter may
 * be cleared, to filter after the merge). */
bool vpp__op_fan_prepare(op_call *c, vpp_grpc_call *call);
/* Once the plant took the local query: asks the other nodes. */
void vpp__op_fan_send(op_call *c);
/* The plant did not take the local query: the fan goes. */
void vpp__op_fan_abort(op_call *c);
/* The local query is answered: true when the fan answers the caller (now,
 * or once the other nodes have). */
bool vpp__op_fan_local_done(op_call *c);
/* On the loop's thread as the server stops; then, after it, free. */
void vpp__op_peers_close(op_loop *ol);
void vpp__op_peers_free(op_loop *ol);

/* convert.c */
void vpp__op_estimate(Vpp__V1__Estimate *out, const vpp_estimate *in);
/* Fills |out| (its Estimates point into |est|, 5 of them). */
void vpp__op_fleet_status(Vpp__V1__FleetStatus *out, Vpp__V1__Estimate est[5],
			  const vpp_plant_snapshot *snap);
/* The whole fleet from s->view into |out| (Estimates into |est|, nodes
 * into |s|): the target the leader splits and its setpoint; a setpoint
 * |snap| (this node) recorded since, or before any share, instead. */
void vpp__op_cluster_fleet_status(Vpp__V1__FleetStatus *out, Vpp__V1__Estimate est[5],
				  op_nodes *s, const vpp_plant_snapshot *snap, int64_t now_ms);
/* Fills |out| from |n| (its strings and |est| stay referenced);
 * |since_read_ms| is added to its heartbeat age (the view's age). */
void vpp__op_node_status(Vpp__V1__NodeStatus *out, Vpp__V1__Estimate *est,
			 const vpp_cluster_node *n, int64_t since_read_ms);
int vpp__op_device_state(const vpp_device_info *di);
void vpp__op_device_info(Vpp__V1__DeviceInfo *out, Vpp__V1__Estimate est[2], const op_device *d,
			 const char *node_id);

/* cluster_status.c: the cluster's answers, from a view (pure). */

/* Whether |id| is a node id a cluster accepts: 1..VPP_CLUSTER_ID_MAX of
 * [A-Za-z0-9._-]. */
bool vpp__op_node_id_ok(const char *id);
/* What DrainNode answers for the cluster's |status| about node |node_id|
 * (vpp_cluster_request_drain, or its callback): the gRPC status into
 * |*code|, its message into |msg| ("" for OK); returns the audit log's
 * result ("accepted", "no_such_node", "db_unavailable", ...). */
const char *vpp__op_drain_outcome(int status, const char *node_id, vpp_grpc_status *code,
				  char *msg, size_t msglen);

/* What the fleet would deliver for |target_kw| when the leader splits it
 * over the alive, non-draining nodes of |v| (see the file for how sigma
 * and sustain_s are made). Returns 0, or the split's VPP_EINVAL / VPP_ENOMEM
 * (|out| untouched). */
int vpp__op_cluster_preview(const vpp_cluster_view *v, double target_kw, vpp_preview *out);
/* The fleet's effective target (after the leader's ramp) as |v| says. */
double vpp__op_cluster_target_eff(const vpp_cluster_view *v);
/* Fills s->nodes and s->ptrs from s->view, as of |now_ms|; returns the
 * count. */
size_t vpp__op_nodes(op_nodes *s, int64_t now_ms);
/* A single vppd as a cluster node (for ListNodes): the leader of itself,
 * epoch 0, its last tick as its heartbeat. */
void vpp__op_local_node(vpp_cluster_node *out, const vpp_plant_snapshot *snap,
			const char *node_id, const char *version, int64_t started_at_ms,
			int64_t now_ms);

/* check.c: what the methods accept, pure (tests/fuzz/fuzz_operator.c runs
 * it on every request type). */

/* No control characters, valid UTF-8 (the database's encoding), at most
 * |max| bytes. */
bool vpp__op_printable(const char *s, size_t max);
/* Whether SetFleetSetpoint may apply |r| under the bounds |max_target_kw|
 * and |max_valid_for_s|; when not, the reason is written into |why|. */
bool vpp__op_set_check(const Vpp__V1__SetFleetSetpointRequest *r, double max_target_kw,
		       uint32_t max_valid_for_s, char *why, size_t whylen);
/* Whether DrainNode may act on |r|: then its reason, cut at a whole
 * character, is copied into |reason|; when not, why into |why|. */
bool vpp__op_drain_check(const Vpp__V1__DrainNodeRequest *r, char *why, size_t whylen,
			 char *reason, size_t reasonlen);
/* Whether PreviewDispatch takes |target_kw|: finite, |target_kw| at most
 * |max_target_kw|. */
bool vpp__op_preview_ok(double target_kw, double max_target_kw);
/* Whether ListDevices takes |r|: then its page size (100 for 0) and state
 * filter are set. */
bool vpp__op_list_check(const Vpp__V1__ListDevicesRequest *r, uint32_t *page_size, int *state);
/* Whether GetDevice takes |r|: a device_id of 1..63 bytes. */
bool vpp__op_get_check(const Vpp__V1__GetDeviceRequest *r);

#endif
