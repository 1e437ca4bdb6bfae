/* vpp.v1.GridOperator: how grid operators drive the fleet (DESIGN.md §4).
 * Reads come from the plant's snapshot or, for devices and previews, from a
 * query run on the dispatch thread; SetFleetSetpoint is made idempotent by
 * request_id (in PostgreSQL when a store is given, else in memory), written
 * to the setpoints table and the audit log, then applied to the plant. */
#ifndef VPP_OPERATOR_H
#define VPP_OPERATOR_H

#include "vpp/auth.h"
#include "vpp/grpc.h"
#include "vpp/plant.h"

typedef struct vpp_operator vpp_operator;
struct vpp_store;

typedef struct {
	vpp_plant *plant;
	struct vpp_store *store;  /* NULL: setpoints and audit in memory/log only */
	const vpp_tokens *tokens; /* NULL: no bearer tokens accepted */
	bool cert_is_operator;	  /* a verified client certificate has the operator role */
	const char *node_id;
	double max_target_kw;	  /* |target_kw| above this is refused; 0: 1e6 */
	uint32_t max_valid_for_s; /* 0: 86400 */
	uint32_t watch_poll_ms;	  /* 0: 100 */
	/* In a cluster: status sums every node, ListNodes answers, and a
	 * setpoint is recorded for the leader to split (the plant is
	 * clustered). NULL: a single node. */
	struct vpp_cluster *cluster;
	/* In a cluster: TLS (client side) for the device queries forwarded
	 * to the other nodes' operator API; NULL: they serve h2c. */
	struct vpp_grpc_tls *peer_tls;
} vpp_operator_opts;

/* Registers the service on |l| and its per-loop state on |srv|'s loops.
 * Before vpp_grpc_server_start(). */
int vpp_operator_new(const vpp_operator_opts *o, vpp_grpc_server *srv, vpp_grpc_listener *l,
		     vpp_operator **ret);
/* After the server stopped. Accepts NULL. */
void vpp_operator_free(vpp_operator *op);

/* Any thread: the bearer tokens accepted from now on (NULL: none). Returns
 * the set in force before, which calls may still be reading: free it only
 * once the server has stopped. */
const vpp_tokens *vpp_operator_swap_tokens(vpp_operator *op, const vpp_tokens *t);

/* Before the server starts: the setpoint with this setpoint_id is in force
 * (carried on across a restart), so a retry of its request_id changes
 * nothing and an older one is not applied again. */
void vpp_operator_restored(vpp_operator *op, int64_t setpoint_id);

#endif
