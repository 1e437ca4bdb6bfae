/* Internals of the cluster thread. */
#ifndef VPP_CLUSTER_INT_H
#define VPP_CLUSTER_INT_H

#include "vpp/cluster.h"
#include "vpp/error.h"
#include "vpp/metrics.h"
#include "vpp/plant.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>

/* Advisory lock keys (the two-int4 form, apart from the migrations'
 * one-bigint lock): the leadership, and one per node id. */
#define VPP__CL_LOCK_CLASS_LEAD "7761008"
#define VPP__CL_LOCK_CLASS_NODE "7761009"

#define VPP__STR_(x) #x
#define VPP__STR(x) VPP__STR_(x)

struct vpp_cluster {
	vpp_cluster_opts o;
	char *conninfo, *node_id, *version, *api_addr, *device_addr;
	char incarnation[40];
	pthread_t thread;
	bool thread_started;
	int efd; /* eventfd: kicks and the stop */
	_Atomic bool stopping;
	_Atomic bool draining;

	/* Cluster thread only. */
	PGconn *main; /* heartbeats, reads, LISTEN, shares */
	PGconn *lock; /* the node id lock and the leadership lock */
	int64_t retry_at_ms, backoff_ms;
	bool leader;
	uint64_t epoch;           /* of this node's leadership */
	int64_t publish_after_ms; /* a new leader waits out the older shares */
	bool clock_ok;
	double eff_kw; /* the fleet target after its ramp, as split */
	bool eff_known;
	int64_t eff_at_ms;
	uint64_t share_epoch; /* newest epoch obeyed */
	uint64_t share_seen_epoch;
	double share_seen_kw;
	int64_t share_seen_until;
	bool want_publish, want_share, want_cycle;
	int64_t last_cycle_ms;
	char last_err[640]; /* the last database error logged */

	pthread_mutex_t view_lock;
	vpp_cluster_view view;
	/* Under view_lock: drain requests for the cluster thread. */
	struct {
		char node_id[VPP_CLUSTER_ID_MAX + 1];
		bool drain;
		vpp_cluster_drain_cb cb;
		void *ud;
	} req[16];
	size_t nreq;

	struct {
		vpp_counter *cycles, *db_errors, *notifies, *elections, *lost, *published;
		vpp_counter *stale_shares, *bad_shares, *bad_nodes, *skew;
		vpp_gauge *leader, *nodes_alive, *epoch;
	} met;
};

/* pgx.c: blocking libpq with deadlines. vpp__cl_exec returns the result
 * (TUPLES_OK or COMMAND_OK; the caller clears it) or NULL with the reason
 * in |err|; after NULL the connection may be unusable: drop it. */
PGconn *vpp__cl_connect(const char *conninfo, int timeout_ms, char *err, size_t errlen);
PGresult *vpp__cl_exec(PGconn *c, const char *sql, int n, const char *const *params, int timeout_ms,
                       char *err, size_t errlen);
int vpp__cl_pump(PGconn *c);

/* member.c */
int vpp__cl_register(vpp_cluster *c, char *err, size_t errlen);
/* Sets |*drain| to the drain request an operator left in the row. */
int vpp__cl_heartbeat(vpp_cluster *c, const vpp_plant_snapshot *snap, bool *drain, char *err,
                      size_t errlen);
int vpp__cl_read_view(vpp_cluster *c, char *err, size_t errlen);
int vpp__cl_check_clock(vpp_cluster *c, PGconn *conn, bool at_start, char *err, size_t errlen);

/* leader.c */
int vpp__cl_lead(vpp_cluster *c, char *err, size_t errlen);
int vpp__cl_publish(vpp_cluster *c, char *err, size_t errlen);
/* Stops leading at once; |clean|: on purpose, after its last shares
 * (the next leader need not wait them out). */
void vpp__cl_resign(vpp_cluster *c, const char *why, bool clean);

/* cluster.c */
int vpp__cl_read_share(vpp_cluster *c, char *err, size_t errlen);
int vpp__cl_timeout(const vpp_cluster *c); /* a statement's deadline, ms */
void vpp__cl_drop(vpp_cluster *c, PGconn **conn);
bool vpp__cl_node_id_ok(const char *id);

#endif
