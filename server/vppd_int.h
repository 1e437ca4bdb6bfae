/* vppd's configuration: one declarative table (server/vppd_config.c). */
#ifndef VPPD_INT_H
#define VPPD_INT_H

#include "vpp/config.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
	char *config;
	char *log_level;
	char *node_id;
	int64_t io_threads;

	/* Operator API (GridOperator, Health). */
	char *api_addr;
	int64_t api_port;
	bool api_h2c;
	char *tls_cert;
	char *tls_key;
	char *operator_ca;
	char *tls_ciphers;     /* TLS 1.2 cipher list of both ports */
	char *tls_min_version; /* "1.2" or "1.3", both ports */
	char *tokens_file;
	double max_target_kw;
	int64_t max_valid_for_s;

	/* Device API (DeviceLink), always mTLS. */
	char *device_addr;
	int64_t device_port;
	char *device_ca;

	/* Admin HTTP: /metrics, /healthz, /readyz. */
	char *admin_addr;
	int64_t admin_port;

	/* gRPC transport limits. */
	int64_t grpc_max_message_bytes;
	int64_t grpc_max_concurrent_streams;
	int64_t grpc_max_header_bytes;
	int64_t grpc_keepalive_ms;
	int64_t grpc_idle_timeout_ms;
	int64_t grpc_handshake_timeout_ms;
	int64_t shutdown_grace_ms;
	bool enable_echo;

	/* Devices and the control loop. */
	int64_t device_telemetry_interval_ms;
	int64_t device_handshakes_per_s;
	int64_t device_hello_timeout_ms;
	int64_t device_ping_interval_ms;
	int64_t device_outbound_limit_bytes;
	int64_t device_max_msgs_per_s;
	int64_t tick_ms;
	int64_t lease_ms;
	int64_t ack_timeout_ms;
	double deadband_kw;

	/* Persistence. */
	char *database_url;
	bool no_migrate;
	char *journal_dir;
	/* Store tuning (server/vppd_store.c). */
	int64_t store_queue_rows;
	int64_t store_batch_rows;
	int64_t store_flush_ms;
	int64_t store_stop_timeout_ms;
	char *journal_fsync;
	int64_t journal_fsync_interval_ms;
	int64_t journal_max_bytes;
	int64_t db_reconnect_min_ms;
	int64_t db_reconnect_max_ms;
	int64_t telemetry_partition_hours;
	int64_t telemetry_partitions_ahead;
	int64_t telemetry_retention_days;
	int64_t telemetry_max_past_s;
	int64_t telemetry_max_future_s;

	/* Cluster (server/cluster). */
	bool cluster;
	char *cluster_advertise_api;
	char *cluster_advertise_device;
	int64_t cluster_node_timeout_ms;
	int64_t cluster_share_lease_ms;
	int64_t cluster_max_clock_skew_ms;
	int64_t cluster_join_timeout_ms;
	char *cluster_peer_ca;
} vppd_config;

typedef struct vppd_grpc vppd_grpc;
struct vpp_health;
struct vpp_store;

/* Starts the I/O threads and the gRPC listeners (server/vppd_grpc.c).
 * Logs what went wrong; returns 0 or a VPP_E* code. */
int vppd_grpc_start(const vppd_config *cfg, struct vpp_store *store, vppd_grpc **ret);
/* Ends device sessions (telling them to back off) and stops the dispatch
 * thread; first step of a shutdown. */
void vppd_grpc_stop_dispatch(vppd_grpc *g);
/* Dispatch loop health for /readyz and the health service. */
bool vppd_grpc_ready(vppd_grpc *g, char *why, size_t whylen);
/* True while this node drains (a cluster node asked to by an operator). */
bool vppd_grpc_draining(vppd_grpc *g);
/* Graceful stop: GOAWAY, in-flight calls get |grace_ms|. Accepts NULL. */
void vppd_grpc_stop(vppd_grpc *g, uint32_t grace_ms);
struct vpp_health *vppd_grpc_health(vppd_grpc *g);
/* SIGHUP: reads tokens-file again and swaps the new set in whole; on an
 * error the tokens in force stay, and the log says why. */
void vppd_grpc_reload_tokens(vppd_grpc *g, const vppd_config *cfg);

/* store glue (server/vppd_store.c) */
#include "vpp/store.h"
/* Applies migrations unless no-migrate, then starts the store. With an
 * empty database-url sets |*ret| to NULL and returns 0 (no persistence). */
int vppd_store_start(const vppd_config *cfg, vpp_store **ret);
/* The store's settings that the table cannot check alone (journal-fsync,
 * the reconnect bounds), checked at start whether or not a database-url is
 * set: 0 or VPP_EINVAL, logged. */
int vppd_store_check_config(const vppd_config *cfg);
/* Flushes what it can; the rest stays in the journal. Accepts NULL. */
void vppd_store_stop(vpp_store *s);
struct vpp_plant;
struct vpp_operator;
/* Before the plant starts: carries on with the operator setpoint that was
 * in force when the previous vppd stopped (read from the database), and
 * says so in the log; says too when it could not be read. |op| may be
 * NULL (no operator API). */
void vppd_store_restore_setpoint(const vppd_config *cfg, struct vpp_plant *p,
				 struct vpp_operator *op);
/* Before the plant is freed: a setpoint read late is no longer offered. */
void vppd_store_forget_plant(void);
/* `vppd migrate`: returns the process exit code. */
/* Strict: 1 only when the database is reachable (or none is configured).
 * The gRPC health service uses it: operator commands need the database. */
int vppd_store_db_up(char *why, size_t whylen);
int vppd_migrate_main(const vppd_config *cfg);
/* For /readyz, thread-safe: 1 when the database is up, or unreachable but
 * the journal has room; else 0 with the reason. */
int vppd_store_ready(char *why, size_t whylen);

extern const vpp_config_opt vppd_config_table[];
extern const size_t vppd_config_table_len;

#endif
