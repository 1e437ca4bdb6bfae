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

	/* Persistence. */
	char *database_url;
	bool no_migrate;
	char *journal_dir;
} vppd_config;

typedef struct vppd_grpc vppd_grpc;
struct vpp_health;

/* Starts the I/O threads and the gRPC listeners (server/vppd_grpc.c).
 * Logs what went wrong; returns 0 or a VPP_E* code. */
int vppd_grpc_start(const vppd_config *cfg, vppd_grpc **ret);
/* Graceful stop: GOAWAY, in-flight calls get |grace_ms|. Accepts NULL. */
void vppd_grpc_stop(vppd_grpc *g, uint32_t grace_ms);
struct vpp_health *vppd_grpc_health(vppd_grpc *g);

extern const vpp_config_opt vppd_config_table[];
extern const size_t vppd_config_table_len;

#endif
