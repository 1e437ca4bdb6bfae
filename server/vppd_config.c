#include "vppd_int.h"

#include <stddef.h>

#define OPT(name, type, field, min, max, def, help)                                                \
	{name, type, offsetof(vppd_config, field), min, max, def, help}

const vpp_config_opt vppd_config_table[] = {
	OPT("config", VPP_CFG_STRING, config, 0, 0, NULL, "INI file to read settings from"),
	OPT("log-level", VPP_CFG_STRING, log_level, 0, 0, "info", "debug, info, warn or error"),
	OPT("node-id", VPP_CFG_STRING, node_id, 0, 0, NULL,
	    "this node's id in the cluster (default: the host name)"),
	OPT("io-threads", VPP_CFG_INT, io_threads, 0, 256, "0",
	    "I/O threads, each a libuv loop sharing the ports (0 = number of cores)"),

	OPT("api-addr", VPP_CFG_STRING, api_addr, 0, 0, "127.0.0.1",
	    "address of the operator gRPC API (GridOperator, Health)"),
	OPT("api-port", VPP_CFG_INT, api_port, 0, 65535, "7444",
	    "port of the operator gRPC API (0 = disabled)"),
	OPT("api-h2c", VPP_CFG_BOOL, api_h2c, 0, 0, "false",
	    "serve the operator API over cleartext h2c instead of TLS (local development only)"),
	OPT("tls-cert", VPP_CFG_STRING, tls_cert, 0, 0, NULL, "server certificate chain (PEM)"),
	OPT("tls-key", VPP_CFG_STRING, tls_key, 0, 0, NULL, "server private key (PEM)"),
	OPT("operator-ca", VPP_CFG_STRING, operator_ca, 0, 0, NULL,
	    "CA (PEM) whose client certificates are accepted on the operator API"),

	OPT("device-addr", VPP_CFG_STRING, device_addr, 0, 0, "0.0.0.0",
	    "address of the device gRPC API (DeviceLink, mTLS)"),
	OPT("device-port", VPP_CFG_INT, device_port, 0, 65535, "7443",
	    "port of the device gRPC API (0 = disabled)"),
	OPT("device-ca", VPP_CFG_STRING, device_ca, 0, 0, NULL,
	    "CA (PEM) that signs device certificates; required for the device API"),

	OPT("admin-addr", VPP_CFG_STRING, admin_addr, 0, 0, "127.0.0.1",
	    "address of the admin HTTP endpoint (/metrics, /healthz, /readyz)"),
	OPT("admin-port", VPP_CFG_INT, admin_port, 0, 65535, "9464",
	    "port of the admin HTTP endpoint (0 = disabled)"),

	OPT("grpc-max-message-bytes", VPP_CFG_INT, grpc_max_message_bytes, 1024, 1 << 30,
	    "4194304", "largest gRPC message accepted (larger: RESOURCE_EXHAUSTED)"),
	OPT("grpc-max-concurrent-streams", VPP_CFG_INT, grpc_max_concurrent_streams, 1, 65536,
	    "256", "concurrent streams per HTTP/2 connection"),
	OPT("grpc-max-header-bytes", VPP_CFG_INT, grpc_max_header_bytes, 1024, 1 << 20, "16384",
	    "largest request header list accepted"),
	OPT("grpc-keepalive-ms", VPP_CFG_INT, grpc_keepalive_ms, 0, 86400000, "30000",
	    "send an HTTP/2 PING after this much silence; close if unanswered (0 = off)"),
	OPT("grpc-idle-timeout-ms", VPP_CFG_INT, grpc_idle_timeout_ms, 0, 86400000, "300000",
	    "close a connection with no open stream after this long (0 = never)"),
	OPT("grpc-handshake-timeout-ms", VPP_CFG_INT, grpc_handshake_timeout_ms, 100, 600000,
	    "10000", "time allowed for the TLS handshake and HTTP/2 preface"),
	OPT("shutdown-grace-ms", VPP_CFG_INT, shutdown_grace_ms, 0, 600000, "5000",
	    "on SIGTERM, time in-flight calls get to finish after GOAWAY"),
	OPT("enable-echo", VPP_CFG_BOOL, enable_echo, 0, 0, "false",
	    "serve the vpp.v1.Echo test service on the operator API (tests, benchmarks)"),

	OPT("database-url", VPP_CFG_STRING, database_url, 0, 0, "",
	    "libpq connection string or URI (empty: no persistence, for development)"),
	OPT("no-migrate", VPP_CFG_BOOL, no_migrate, 0, 0, "false",
	    "do not apply database migrations at start-up"),
	OPT("journal-dir", VPP_CFG_STRING, journal_dir, 0, 0, "./vpp-journal",
	    "folder of the local journal that holds rows while the database is unreachable"),
};

const size_t vppd_config_table_len = sizeof(vppd_config_table) / sizeof(vppd_config_table[0]);
