/* vppd's serving side: the I/O threads, the operator API listener (TLS or
 * h2c) with the health service (and the echo test service when asked), the
 * device listener (mTLS) with DeviceLink, and the plant (dispatch thread). */
#include "vppd_int.h"
#include "vpp/cluster.h"
#include "vpp/device.h"
#include "vpp/echo.h"
#include "vpp/clock.h"
#include "vpp/error.h"
#include "vpp/health.h"
#include "vpp/log.h"
#include "vpp/operator.h"
#include "vpp/plant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct vppd_grpc {
	vpp_grpc_server *srv;
	vpp_health *health;
	vpp_grpc_tls *api_tls;
	vpp_grpc_tls *dev_tls;
	vpp_grpc_tls *peer_tls; /* client side, to the other nodes' API */
	vpp_plant *plant;
	vpp_devices *devices;
	vpp_operator *op;
	vpp_cluster *cluster;
	vpp_tokens *tokens;
	/* Sets replaced by a reload: calls may still read them until the
	 * server stops. */
	vpp_tokens **retired;
	size_t nretired;
	bool plant_started;
};

static const char *listen_error(int rv)
{
	if (rv == VPP_EINVAL)
		return "not a numeric IPv4 or IPv6 address (names are not looked up: e.g. 0.0.0.0, "
		       "127.0.0.1 or ::)";
	return rv == VPP_EEXIST ? "the port is in use (another vppd?)" : vpp_strerror(rv);
}

/* tls-ciphers and tls-min-version, checked at start already. */
static int tls_policy(const char *port, const vppd_config *cfg, vpp_grpc_tls *t)
{
	int rv = vpp_grpc_tls_set_policy(t, cfg->tls_ciphers, cfg->tls_min_version);
	if (rv != 0)
		vpp_log(VPP_LOG_ERROR, "vppd", "%s: TLS policy (tls-ciphers, tls-min-version): %s",
			port, vpp_grpc_tls_load_error());
	return rv;
}

static int api_listener(const vppd_config *cfg, vpp_store *store, vppd_grpc *g)
{
	int rv;
	char err[300];
	if (cfg->tokens_file) {
		if ((rv = vpp_tokens_load(cfg->tokens_file, &g->tokens, err, sizeof(err))) != 0) {
			vpp_log(VPP_LOG_ERROR, "vppd", "tokens-file: %s", err);
			return rv;
		}
		vpp_log(VPP_LOG_INFO, "vppd", "tokens-file: %zu tokens loaded",
			vpp_tokens_count(g->tokens));
	}
	if (!g->tokens && !cfg->operator_ca)
		vpp_log(VPP_LOG_WARN, "vppd", "api: neither --tokens-file nor --operator-ca is set: "
					      "every GridOperator call will be refused "
					      "(UNAUTHENTICATED)");
	if (!cfg->api_h2c) {
		if (!cfg->tls_cert || !cfg->tls_key) {
			vpp_log(VPP_LOG_ERROR, "vppd",
				"api: --tls-cert and --tls-key are required (or --api-h2c for "
				"cleartext local development)");
			return VPP_EINVAL;
		}
		rv = vpp_grpc_tls_server_new(cfg->tls_cert, cfg->tls_key, cfg->operator_ca, false,
					     &g->api_tls);
		if (rv != 0) {
			vpp_log(VPP_LOG_ERROR, "vppd",
				"api: cannot load TLS certificate %s / key %s%s%s: %s", cfg->tls_cert,
				cfg->tls_key, cfg->operator_ca ? " / operator CA " : "",
				cfg->operator_ca ? cfg->operator_ca : "",
				rv == VPP_ETLS ? vpp_grpc_tls_load_error() : vpp_strerror(rv));
			return rv;
		}
		if ((rv = tls_policy("api", cfg, g->api_tls)) != 0)
			return rv;
	} else {
		vpp_log(VPP_LOG_WARN, "vppd",
			"api: serving cleartext h2c (--api-h2c): local development only");
	}
	vpp_grpc_listener *l;
	rv = vpp_grpc_server_listen(g->srv, "api", cfg->api_addr, (int)cfg->api_port, g->api_tls,
				    &l);
	if (rv != 0) {
		vpp_log(VPP_LOG_ERROR, "vppd", "api: cannot listen on %s port %d: %s", cfg->api_addr,
			(int)cfg->api_port, listen_error(rv));
		return rv;
	}
	if ((rv = vpp_health_register(g->health, l)) != 0)
		return rv;
	if (cfg->enable_echo && (rv = vpp_echo_register(l)) != 0)
		return rv;
	if (g->cluster && !cfg->api_h2c &&
	    (rv = vpp_grpc_tls_client_new(cfg->cluster_peer_ca, NULL, NULL, &g->peer_tls)) != 0) {
		vpp_log(VPP_LOG_ERROR, "vppd", "cluster: cannot load the peer CA %s: %s",
			cfg->cluster_peer_ca ? cfg->cluster_peer_ca : "(system trust store)",
			rv == VPP_ETLS ? vpp_grpc_tls_load_error() : vpp_strerror(rv));
		return rv;
	}
	vpp_operator_opts oo = {
		.plant = g->plant,
		.store = store,
		.tokens = g->tokens,
		.cert_is_operator = cfg->operator_ca != NULL,
		.node_id = cfg->node_id,
		.max_target_kw = cfg->max_target_kw,
		.max_valid_for_s = (uint32_t)cfg->max_valid_for_s,
		.cluster = g->cluster,
		.peer_tls = g->peer_tls,
	};
	if ((rv = vpp_operator_new(&oo, g->srv, l, &g->op)) != 0)
		return rv;
	vpp_log(VPP_LOG_INFO, "vppd", "api: listening on %s port %d (%s)%s", cfg->api_addr,
		vpp_grpc_listener_port(l), cfg->api_h2c ? "h2c" : "TLS",
		cfg->enable_echo ? " with the Echo test service" : "");
	return 0;
}

static int device_listener(const vppd_config *cfg, vpp_store *store, vppd_grpc *g)
{
	int rv;
	if (!cfg->tls_cert || !cfg->tls_key || !cfg->device_ca) {
		vpp_log(VPP_LOG_ERROR, "vppd",
			"device: --tls-cert, --tls-key and --device-ca are required for the device "
			"API (or --device-port 0 to disable it)");
		return VPP_EINVAL;
	}
	rv = vpp_grpc_tls_server_new(cfg->tls_cert, cfg->tls_key, cfg->device_ca, true,
				     &g->dev_tls);
	if (rv != 0) {
		vpp_log(VPP_LOG_ERROR, "vppd", "device: cannot load TLS files (%s, %s, CA %s): %s",
			cfg->tls_cert, cfg->tls_key, cfg->device_ca,
			rv == VPP_ETLS ? vpp_grpc_tls_load_error() : vpp_strerror(rv));
		return rv;
	}
	if ((rv = tls_policy("device", cfg, g->dev_tls)) != 0)
		return rv;
	vpp_grpc_listener *l;
	rv = vpp_grpc_server_listen(g->srv, "device", cfg->device_addr, (int)cfg->device_port,
				    g->dev_tls, &l);
	if (rv != 0) {
		vpp_log(VPP_LOG_ERROR, "vppd", "device: cannot listen on %s port %d: %s",
			cfg->device_addr, (int)cfg->device_port, listen_error(rv));
		return rv;
	}
	vpp_grpc_listener_set_admission(l, (uint32_t)cfg->device_handshakes_per_s);
	vpp_devices_opts o = {
		.plant = g->plant,
		.store = store,
		.telemetry_interval_ms = (uint32_t)cfg->device_telemetry_interval_ms,
		.hello_timeout_ms = (uint32_t)cfg->device_hello_timeout_ms,
		.ping_interval_ms = (uint32_t)cfg->device_ping_interval_ms,
		.max_msgs_per_s = (double)cfg->device_max_msgs_per_s,
		.max_burst = 4.0 * (double)cfg->device_max_msgs_per_s,
		.outbound_limit = (size_t)cfg->device_outbound_limit_bytes,
	};
	if ((rv = vpp_devices_new(&o, g->srv, l, &g->devices)) != 0)
		return rv;
	vpp_log(VPP_LOG_INFO, "vppd", "device: listening on %s port %d (mTLS, CA %s)",
		cfg->device_addr, vpp_grpc_listener_port(l), cfg->device_ca);
	return 0;
}

static void on_plant_tick(void *ud)
{
	vpp_cluster_kick(ud);
}

/* "host:port" from an address and a port; a wildcard address is shown as
 * the host name (another node could not reach 0.0.0.0). */
static void host_port(char *buf, size_t len, const char *advertised, const char *addr,
		      int64_t port)
{
	char host[128];
	if (advertised && advertised[0]) {
		snprintf(buf, len, "%s", advertised);
		return;
	}
	if (!addr || !addr[0] || strcmp(addr, "0.0.0.0") == 0 || strcmp(addr, "::") == 0) {
		if (gethostname(host, sizeof(host)) != 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = 0;
		addr = host;
	}
	snprintf(buf, len, strchr(addr, ':') ? "[%s]:%lld" : "%s:%lld", addr, (long long)port);
}

/* Joins the cluster before any session or operator call can come in. */
static int join_cluster(const vppd_config *cfg, vppd_grpc *g)
{
	if (!cfg->database_url || !cfg->database_url[0]) {
		vpp_log(VPP_LOG_ERROR, "vppd", "cluster: needs database-url (the nodes meet in "
					       "PostgreSQL)");
		return VPP_EINVAL;
	}
	char api[200], dev[200], err[512];
	host_port(api, sizeof(api), cfg->cluster_advertise_api, cfg->api_addr, cfg->api_port);
	host_port(dev, sizeof(dev), cfg->cluster_advertise_device, cfg->device_addr,
		  cfg->device_port);
	vpp_cluster_opts co = {
		.conninfo = cfg->database_url,
		.node_id = cfg->node_id,
		.version = VPP_VERSION,
		.api_addr = api,
		.device_addr = dev,
		.plant = g->plant,
		.tick_ms = cfg->tick_ms,
		.node_timeout_ms = cfg->cluster_node_timeout_ms,
		.share_lease_ms = cfg->cluster_share_lease_ms,
		.max_clock_skew_ms = cfg->cluster_max_clock_skew_ms,
		.join_timeout_ms = cfg->cluster_join_timeout_ms,
	};
	int rv = vpp_cluster_start(&co, &g->cluster, err, sizeof(err));
	if (rv != 0) {
		vpp_log(VPP_LOG_ERROR, "vppd", "cluster: node %s refused: %s", cfg->node_id, err);
		return rv;
	}
	vpp_plant_on_tick(g->plant, on_plant_tick, g->cluster);
	return 0;
}

int vppd_grpc_start(const vppd_config *cfg, vpp_store *store, vppd_grpc **ret)
{
	int rv;
	vppd_grpc *g = calloc(1, sizeof(*g));
	if (!g)
		return VPP_ENOMEM;
	vpp_grpc_server_opts o = {
		.io_threads = (int)cfg->io_threads,
		.max_message_bytes = (size_t)cfg->grpc_max_message_bytes,
		.max_concurrent_streams = (uint32_t)cfg->grpc_max_concurrent_streams,
		.max_header_bytes = (uint32_t)cfg->grpc_max_header_bytes,
		.keepalive_ms = (uint32_t)cfg->grpc_keepalive_ms,
		.idle_timeout_ms = (uint32_t)cfg->grpc_idle_timeout_ms,
		.handshake_timeout_ms = (uint32_t)cfg->grpc_handshake_timeout_ms,
	};
	if ((rv = vpp_grpc_server_new(&o, &g->srv)) != 0)
		goto fail;
	if ((rv = vpp_health_new(&g->health)) != 0)
		goto fail;
	vpp_plant_opts po = {.node_id = cfg->node_id, .store = store, .clustered = cfg->cluster};
	vpp_dispatch_params_default(&po.params);
	if (cfg->cluster)
		po.params.settle_tol_frac = 0.02; /* shares move a little every tick */
	vpp_dispatch_params_for_interval(&po.params, cfg->device_telemetry_interval_ms);
	po.params.tick_ms = cfg->tick_ms;
	po.params.lease_ms = cfg->lease_ms;
	po.params.ack_timeout_ms = cfg->ack_timeout_ms;
	po.params.deadband_kw = cfg->deadband_kw;
	/* Setpoint seqs above any the previous vppd sent (at most one per
	 * device per tick, ticks >= 10 ms): a device's late ack of one of
	 * those, on its new session, is then recognisably old. */
	po.params.seq_base = (uint64_t)vpp_wall_ms() * 1000;
	/* Renew leases with a third of them left (3 s by default), and at
	 * least two ticks ahead of their end. */
	if (po.params.renew_before_ms >= po.params.lease_ms)
		po.params.renew_before_ms = po.params.lease_ms / 3;
	if (po.params.renew_before_ms < 2 * po.params.tick_ms)
		po.params.renew_before_ms = 2 * po.params.tick_ms;
	if (po.params.renew_before_ms >= po.params.lease_ms) {
		vpp_log(VPP_LOG_ERROR, "vppd",
			"lease-ms (%lld) must be more than twice tick-ms (%lld): leases are renewed "
			"on a tick, and one shorter than two ticks could end on the device before "
			"its renewal",
			(long long)po.params.lease_ms, (long long)po.params.tick_ms);
		rv = VPP_EINVAL;
		goto fail;
	}
	if ((rv = vpp_dispatch_params_check(&po.params)) != 0) {
		vpp_log(VPP_LOG_ERROR, "vppd", "dispatch: inconsistent settings (tick-ms, lease-ms, "
					       "ack-timeout-ms)");
		goto fail;
	}
	if ((rv = vpp_plant_new(&po, o.io_threads, &g->plant)) != 0)
		goto fail;
	if (cfg->cluster && (rv = join_cluster(cfg, g)) != 0)
		goto fail;
	if (cfg->api_port != 0 && (rv = api_listener(cfg, store, g)) != 0)
		goto fail;
	if (cfg->device_port != 0 && (rv = device_listener(cfg, store, g)) != 0)
		goto fail;
	/* Without the device API the loops still need the plant, for the
	 * operators' questions. */
	for (int i = 0; !g->devices && i < o.io_threads; i++)
		if ((rv = vpp_plant_attach_loop(g->plant, i, vpp_grpc_server_loop(g->srv, i), NULL,
						NULL)) != 0)
			goto fail;
	/* In a cluster the setpoint in force lives on in the database, and
	 * the leader splits it: nothing to carry on here. */
	if (store && !g->cluster)
		vppd_store_restore_setpoint(cfg, g->plant, g->op);
	if ((rv = vpp_plant_start(g->plant)) != 0)
		goto fail;
	g->plant_started = true;
	if ((rv = vpp_grpc_server_start(g->srv)) != 0)
		goto fail;
	*ret = g;
	return 0;
fail:
	vppd_grpc_stop(g, 0);
	return rv;
}

void vppd_grpc_reload_tokens(vppd_grpc *g, const vppd_config *cfg)
{
	char err[300];
	if (!g || !g->op || !cfg->tokens_file) {
		vpp_log(VPP_LOG_INFO, "vppd", "SIGHUP: no tokens-file to read again");
		return;
	}
	vpp_tokens *t = NULL;
	vpp_tokens **r = realloc(g->retired, (g->nretired + 1) * sizeof(*r));
	if (r)
		g->retired = r;
	if (!r || vpp_tokens_load(cfg->tokens_file, &t, err, sizeof(err)) != 0) {
		vpp_log(VPP_LOG_ERROR, "vppd", "tokens-file not reloaded, the %zu tokens in force stay: %s",
			vpp_tokens_count(g->tokens), r ? err : "out of memory");
		return;
	}
	vpp_operator_swap_tokens(g->op, t);
	g->retired[g->nretired++] = g->tokens;
	g->tokens = t;
	vpp_log(VPP_LOG_INFO, "vppd", "tokens-file: reloaded, %zu tokens in force",
		vpp_tokens_count(t));
}

vpp_health *vppd_grpc_health(vppd_grpc *g)
{
	return g->health;
}

bool vppd_grpc_draining(vppd_grpc *g)
{
	return g && vpp_cluster_draining(g->cluster);
}

bool vppd_grpc_ready(vppd_grpc *g, char *why, size_t whylen)
{
	return g && g->plant && vpp_plant_healthy(g->plant, why, whylen);
}

void vppd_grpc_stop_dispatch(vppd_grpc *g)
{
	if (!g)
		return;
	if (g->health)
		vpp_health_set(g->health, "", VPP_HEALTH_NOT_SERVING);
	if (g->plant_started) {
		vpp_plant_stop(g->plant);
		g->plant_started = false;
	}
}

void vppd_grpc_stop(vppd_grpc *g, uint32_t grace_ms)
{
	if (!g)
		return;
	vppd_store_forget_plant(); /* before the plant is freed */
	/* Its share goes to the others while its devices move away. */
	if (g->cluster)
		vpp_cluster_set_draining(g->cluster, true);
	vppd_grpc_stop_dispatch(g);
	if (g->srv)
		vpp_grpc_server_shutdown(g->srv, grace_ms);
	vpp_grpc_server_free(g->srv);
	vpp_cluster_stop(g->cluster); /* no call reads its view any more */
	vpp_devices_free(g->devices);
	vpp_operator_free(g->op);
	vpp_tokens_free(g->tokens);
	for (size_t i = 0; i < g->nretired; i++)
		vpp_tokens_free(g->retired[i]);
	free(g->retired);
	vpp_plant_free(g->plant);
	vpp_health_free(g->health);
	vpp_grpc_tls_unref(g->api_tls);
	vpp_grpc_tls_unref(g->dev_tls);
	vpp_grpc_tls_unref(g->peer_tls);
	free(g);
}
