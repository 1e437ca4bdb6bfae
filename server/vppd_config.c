#include "vppd_int.h"
#include "vpp/grpc.h"

#include <stddef.h>

#define OPT(name, type, field, min, max, def, help)                                                \
	{name, type, offsetof(vppd_config, field), min, max, def, help, false}

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
	OPT("tls-ciphers", VPP_CFG_STRING, tls_ciphers, 0, 0, VPP_GRPC_TLS12_CIPHERS,
	    "TLS 1.2 ciphers of both ports, in the server's order of preference (OpenSSL "
	    "cipher list; each must be ECDHE with AES-GCM, CHACHA20-POLY1305 or AES-CCM; "
	    "TLS 1.3 keeps OpenSSL's suites)"),
	OPT("tls-min-version", VPP_CFG_STRING, tls_min_version, 0, 0, "1.2",
	    "oldest TLS version both ports accept: 1.2 or 1.3"),

	OPT("tokens-file", VPP_CFG_STRING, tokens_file, 0, 0, NULL,
	    "operator bearer tokens: lines 'name role sha256:HEX' (role operator or viewer; "
	    "HEX = sha256 of the token)"),
	OPT("max-target-kw", VPP_CFG_DOUBLE, max_target_kw, 1, 1e9, "1000000",
	    "largest |target_kw| an operator may request"),
	OPT("max-valid-for-s", VPP_CFG_INT, max_valid_for_s, 1, 604800, "86400",
	    "longest validity of one fleet setpoint"),

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
	    "10000", "time allowed for the TLS handshake and HTTP/2 preface, and for each "
	    "request header block once begun"),
	OPT("shutdown-grace-ms", VPP_CFG_INT, shutdown_grace_ms, 0, 600000, "5000",
	    "on SIGTERM, time in-flight calls get to finish after GOAWAY"),
	OPT("enable-echo", VPP_CFG_BOOL, enable_echo, 0, 0, "false",
	    "serve the vpp.v1.Echo test service on the operator API (tests, benchmarks)"),

	OPT("device-telemetry-interval-ms", VPP_CFG_INT, device_telemetry_interval_ms, 100, 600000,
	    "1000", "telemetry interval devices are told to use; above 1 s, a device is "
	    "stale after 3 intervals without a report (3 s otherwise), out of the "
	    "estimate after 15; a session is dropped as silent after 3 of the longer of this "
	    "and the ping interval (at least 60 s)"),
	OPT("device-handshakes-per-s", VPP_CFG_INT, device_handshakes_per_s, 0, 1000000, "5000",
	    "new device TLS handshakes started per second (0 = no rate limit); "
	    "handshakes also run at most 64 at a time per I/O thread, in arrival "
	    "order; connections over either wait unread (up to 2 s of the rate, "
	    "8 s each; one whose device gave up is dropped without TLS work), beyond "
	    "that they are closed and the device backs off"),
	OPT("device-hello-timeout-ms", VPP_CFG_INT, device_hello_timeout_ms, 100, 600000, "10000",
	    "time a device has to send its Hello"),
	OPT("device-ping-interval-ms", VPP_CFG_INT, device_ping_interval_ms, 1000, 3600000,
	    "15000", "liveness and clock-offset pings to each device"),
	OPT("device-max-msgs-per-s", VPP_CFG_INT, device_max_msgs_per_s, 1, 100000, "50",
	    "messages per second one device may send (sustained; bursts of 4x)"),
	OPT("device-outbound-limit-bytes", VPP_CFG_INT, device_outbound_limit_bytes, 64,
	    16777216, "65536",
	    "bytes queued for one device that is not reading before its session is dropped "
	    "(counted as slow_reader; the device reconnects)"),
	OPT("tick-ms", VPP_CFG_INT, tick_ms, 100, 60000, "1000",
	    "control loop period (allocation horizon)"),
	OPT("lease-ms", VPP_CFG_INT, lease_ms, 1000, 3600000, "10000",
	    "validity of each per-device setpoint; a device that hears nothing new returns "
	    "to its local mode after it (more than twice tick-ms)"),
	OPT("ack-timeout-ms", VPP_CFG_INT, ack_timeout_ms, 10, 600000, "2000",
	    "a setpoint not acked within this counts against the device's reliability"),
	OPT("deadband-kw", VPP_CFG_DOUBLE, deadband_kw, 0, 1000, "0.05",
	    "a device is re-commanded only when its setpoint moved by more than this "
	    "(or 1% of its rating)"),

	OPT("database-url", VPP_CFG_STRING, database_url, 0, 0, "",
	    "libpq connection string or URI (empty: no persistence, for development)"),
	OPT("no-migrate", VPP_CFG_BOOL, no_migrate, 0, 0, "false",
	    "do not apply database migrations at start-up"),
	OPT("journal-dir", VPP_CFG_STRING, journal_dir, 0, 0, "./vpp-journal",
	    "folder of the local journal that holds rows while the database is unreachable"),
	OPT("store-queue-rows", VPP_CFG_INT, store_queue_rows, 1024, 1 << 26, "262144",
	    "telemetry rows the store's queue holds; when full, device sessions back off"),
	OPT("store-batch-rows", VPP_CFG_INT, store_batch_rows, 1, 1000000, "10000",
	    "telemetry rows per COPY batch"),
	OPT("store-flush-ms", VPP_CFG_INT, store_flush_ms, 1, 1000, "250",
	    "longest a telemetry row waits for its batch to fill"),
	OPT("store-stop-timeout-ms", VPP_CFG_INT, store_stop_timeout_ms, 0, 600000, "5000",
	    "on shutdown, time the database gets to take queued rows before they are journaled"),
	OPT("journal-fsync", VPP_CFG_STRING, journal_fsync, 0, 0, "always",
	    "journal durability: always (fdatasync each append group: survives power loss), "
	    "interval (every journal-fsync-interval-ms), never (survives a process crash only)"),
	OPT("journal-fsync-interval-ms", VPP_CFG_INT, journal_fsync_interval_ms, 1, 60000, "1000",
	    "fdatasync period of journal-fsync=interval"),
	OPT("journal-max-bytes", VPP_CFG_INT, journal_max_bytes, 1 << 20, 1e15, "8589934592",
	    "journal size limit; beyond it the queue fills and devices are backpressured"),
	OPT("db-reconnect-min-ms", VPP_CFG_INT, db_reconnect_min_ms, 1, 600000, "100",
	    "first delay before reconnecting to PostgreSQL (doubles, with jitter)"),
	OPT("db-reconnect-max-ms", VPP_CFG_INT, db_reconnect_max_ms, 1, 3600000, "10000",
	    "longest delay between reconnection attempts"),
	OPT("telemetry-partition-hours", VPP_CFG_INT, telemetry_partition_hours, 1, 8760, "24",
	    "width of a telemetry partition"),
	OPT("telemetry-partitions-ahead", VPP_CFG_INT, telemetry_partitions_ahead, 1, 1000, "2",
	    "telemetry partitions created ahead of time"),
	OPT("telemetry-retention-days", VPP_CFG_INT, telemetry_retention_days, 0, 36500, "30",
	    "telemetry partitions older than this are dropped (0 = keep forever)"),
	OPT("telemetry-max-past-s", VPP_CFG_INT, telemetry_max_past_s, 1, 31536000, "604800",
	    "telemetry measured longer ago than this is rejected"),
	OPT("telemetry-max-future-s", VPP_CFG_INT, telemetry_max_future_s, 0, 86400, "300",
	    "telemetry measured further ahead than this is rejected (clock skew bound)"),

	OPT("cluster", VPP_CFG_BOOL, cluster, 0, 0, "false",
	    "join the cluster of the nodes sharing database-url: one leader splits the "
	    "fleet target into per-node shares (needs database-url and a unique node-id)"),
	OPT("cluster-advertise-api", VPP_CFG_STRING, cluster_advertise_api, 0, 0, "",
	    "operator API address other nodes and vppctl are shown (default api-addr:api-port)"),
	OPT("cluster-advertise-device", VPP_CFG_STRING, cluster_advertise_device, 0, 0, "",
	    "device API address shown in the cluster (default device-addr:device-port)"),
	OPT("cluster-node-timeout-ms", VPP_CFG_INT, cluster_node_timeout_ms, 0, 600000, "0",
	    "a node silent this long is dead and its share goes to the others "
	    "(0: 3 ticks + 2 s)"),
	OPT("cluster-share-lease-ms", VPP_CFG_INT, cluster_share_lease_ms, 0, 600000, "0",
	    "validity of a node's share; with no new one by then its target returns to 0 "
	    "(0: 3 ticks, at least 3 s)"),
	OPT("cluster-max-clock-skew-ms", VPP_CFG_INT, cluster_max_clock_skew_ms, 10, 60000, "250",
	    "a node whose clock is further than this off the database's is refused; after a "
	    "leader's crash its successor waits this long past the old shares' end"),
	OPT("cluster-join-timeout-ms", VPP_CFG_INT, cluster_join_timeout_ms, 1000, 600000, "30000",
	    "how long start-up waits for the database to join the cluster"),
	OPT("cluster-peer-ca", VPP_CFG_STRING, cluster_peer_ca, 0, 0, NULL,
	    "CA (PEM) that signs the other nodes' operator API certificates, for the device "
	    "queries a node asks its peers (default: the system's trust store)"),
};

const size_t vppd_config_table_len = sizeof(vppd_config_table) / sizeof(vppd_config_table[0]);
