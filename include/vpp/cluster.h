/* The cluster (DESIGN.md §8): several identical vppd nodes on one
 * PostgreSQL act as one plant.
 *
 * Each node runs a cluster thread with two connections of its own:
 *   - the lock connection holds this node's id lock (two live nodes with one
 *     id cannot both hold it) and, on the leader, the leadership lock; it is
 *     confirmed by a round trip every tick, and a leader that cannot confirm
 *     it within a tick stops leading at once;
 *   - the main connection heartbeats (the node's aggregate: the fleet as one
 *     device, plus its status), reads the other nodes, LISTENs for new
 *     setpoints and shares, and, on the leader, publishes the shares.
 * Every leadership has an epoch from PostgreSQL (a fencing token). A new
 * leader publishes only once every share of an older epoch has run out, so
 * no two epochs are ever obeyed at once; followers ignore shares older than
 * the newest epoch they have obeyed. A share is a lease: when it runs out
 * with no new one the node's target returns to 0.
 *
 * The split of the fleet target across nodes (vpp_cluster_split) is pure and
 * uses the dispatch allocator. */
#ifndef VPP_CLUSTER_H
#define VPP_CLUSTER_H

#include "vpp/allocate.h"
#include "vpp/dispatch.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Wire version of the cluster tables and messages: nodes of another
 * protocol version refuse to join (a rolling upgrade keeps it). */
#define VPP_CLUSTER_PROTOCOL 1

/* ---- the split (pure) ---------------------------------------------------- */

/* A node as one aggregate device (vpp_fleet_aggregate). */
typedef struct vpp_cluster_agg {
	double a;            /* 1 when it has dispatchable devices, else 0 */
	double e_dis_kwh;    /* sum a_i^2 e_dis_i */
	double e_chg_kwh;    /* sum a_i^2 e_chg_i */
	double lo_kw, hi_kw; /* feasible range of its expected delivery */
} vpp_cluster_agg;

/* Splits |target_kw| over the |n| nodes |nodes| with the exact allocator:
 * writes each node's share (its expected delivery, kW) to |shares| and the
 * summary to |res| (may be NULL). Nodes with a <= 0 get 0. Returns 0,
 * VPP_EINVAL (non-finite numbers, lo > hi) or VPP_ENOMEM. */
int vpp_cluster_split(const vpp_cluster_agg *nodes, size_t n, double target_kw, double *shares,
                      vpp_alloc_result *res);

/* ---- the view: what every node knows of the cluster --------------------- */

#define VPP_CLUSTER_ID_MAX 40 /* node ids: 1..40 of [A-Za-z0-9._-] */

typedef enum {
	VPP_NODE_FOLLOWER = 0,
	VPP_NODE_LEADER = 1,
} vpp_node_role;

typedef struct vpp_cluster_node {
	char node_id[VPP_CLUSTER_ID_MAX + 1];
	char version[32];
	char api_addr[64], device_addr[64];
	int role; /* vpp_node_role, as the node last said */
	bool draining;
	bool alive; /* heartbeat within the node timeout */
	int64_t started_at_ms, heartbeat_at_ms;
	int64_t heartbeat_age_ms; /* by the database's clock */
	uint64_t epoch;           /* of the share it obeys (0: none) */
	double share_kw;          /* the share it obeys (its target) */
	vpp_cluster_agg agg;
	vpp_fleet_status status; /* its last tick (counts, Estimates) */
} vpp_cluster_node;

#define VPP_CLUSTER_NODES_MAX 64

typedef struct vpp_cluster_view {
	int64_t as_of_ms;      /* when it was read (0: never) */
	bool db_up;            /* the last cycle reached PostgreSQL */
	bool leader;           /* this node leads now */
	uint64_t leader_epoch; /* newest epoch in the database */
	char leader_id[VPP_CLUSTER_ID_MAX + 1];
	/* From this node's share: the fleet target the leader split (the
	 * operator's, and after its ramp). */
	double fleet_target_kw, fleet_eff_kw;
	int64_t setpoint_id; /* the operator setpoint split, 0: none */
	int64_t setpoint_valid_until_ms;
	bool have_share;
	size_t n;
	vpp_cluster_node nodes[VPP_CLUSTER_NODES_MAX]; /* sorted by node_id */
} vpp_cluster_view;

/* The fleet of the whole cluster from the alive nodes of |v|: sums of the
 * expected values and of the variances, 90% intervals at 1.645 sigma, the
 * newest input's time; counts summed. With a share known, the target is
 * the fleet's, and the shortfall adds what the split could not place to
 * what the nodes are short of their shares. */
void vpp_cluster_fleet_status(const vpp_cluster_view *v, vpp_fleet_status *out);

/* ---- the cluster thread --------------------------------------------------- */

typedef struct vpp_cluster vpp_cluster;
struct vpp_plant;

typedef struct {
	const char *conninfo;
	const char *node_id;
	const char *version;
	const char *api_addr, *device_addr; /* advertised in cluster_nodes */
	struct vpp_plant *plant;
	int64_t tick_ms;
	int64_t node_timeout_ms;   /* a node silent this long is dead; 0: 3 ticks + 2 s */
	int64_t share_lease_ms;    /* a share's validity; 0: 3 ticks, at least 3 s */
	int64_t max_clock_skew_ms; /* refused beyond this offset to the database */
	int64_t join_timeout_ms;   /* how long start waits for the database */
} vpp_cluster_opts;

/* Registers the node (blocking, retrying until |join_timeout_ms|) and starts
 * the cluster thread. Refuses, with the reason in |err|: another live node
 * with this id (VPP_EEXIST), a database schema newer than this binary or
 * a live node of another protocol version (VPP_ESCHEMA), a clock more than
 * |max_clock_skew_ms| off the database's (VPP_ERANGE), no database within
 * the timeout (VPP_EDB). */
int vpp_cluster_start(const vpp_cluster_opts *o, vpp_cluster **ret, char *err, size_t errlen);

/* Leaves: stops leading, deletes nothing (the row ages out). Accepts NULL. */
void vpp_cluster_stop(vpp_cluster *c);

/* The plant ticked: the cluster thread heartbeats and, on the leader,
 * splits. Any thread; never blocks. */
void vpp_cluster_kick(vpp_cluster *c);

/* Copies the newest view. Thread-safe. */
void vpp_cluster_view_get(vpp_cluster *c, vpp_cluster_view *out);
/* When the newest view was read (its as_of_ms), without copying it. */
int64_t vpp_cluster_view_as_of(vpp_cluster *c);

/* This node drains (or not): it gives up leading, is given no share, says
 * so in its heartbeat and on /readyz, and moves its devices to other nodes
 * a few at a time (vpp_plant_drain). Any thread. */
void vpp_cluster_set_draining(vpp_cluster *c, bool draining);
bool vpp_cluster_draining(vpp_cluster *c);

/* Asks node |node_id| (this one or another) to drain or to stop draining,
 * through the database: it sees the request with its next heartbeat (at
 * once, by NOTIFY). |cb| runs on the cluster thread with 0, VPP_ENOENT (no
 * live node of that id), VPP_EDB or VPP_ECLOSED (stopping); marshal back
 * to your own loop. Returns 0 (|cb| will be called) or VPP_EFULL (too many
 * requests pending) / VPP_EINVAL (bad id). */
typedef void (*vpp_cluster_drain_cb)(int status, void *ud);
int vpp_cluster_request_drain(vpp_cluster *c, const char *node_id, bool drain,
                              vpp_cluster_drain_cb cb, void *ud);

#endif
