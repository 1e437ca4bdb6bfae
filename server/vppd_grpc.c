/* vppd's gRPC side: the I/O threads, the operator API listener (TLS or
 * h2c) with the health service (and the echo test service when asked). */
#include "vppd_int.h"
#include "vpp/echo.h"
#include "vpp/error.h"
#include "vpp/health.h"
#include "vpp/log.h"

#include <stdlib.h>

struct vppd_grpc {
	vpp_grpc_server *srv;
	vpp_health *health;
	vpp_grpc_tls *api_tls;
};

int vppd_grpc_start(const vppd_config *cfg, vppd_grpc **ret)
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
	if (cfg->api_port != 0) {
		if (!cfg->api_h2c) {
			if (!cfg->tls_cert || !cfg->tls_key) {
				vpp_log(VPP_LOG_ERROR, "vppd",
					"api: --tls-cert and --tls-key are required (or --api-h2c "
					"for cleartext local development)");
				rv = VPP_EINVAL;
				goto fail;
			}
			rv = vpp_grpc_tls_server_new(cfg->tls_cert, cfg->tls_key, cfg->operator_ca,
						     false, &g->api_tls);
			if (rv != 0) {
				vpp_log(VPP_LOG_ERROR, "vppd",
					"api: cannot load TLS certificate %s / key %s%s%s: %s",
					cfg->tls_cert, cfg->tls_key,
					cfg->operator_ca ? " / operator CA " : "",
					cfg->operator_ca ? cfg->operator_ca : "", vpp_strerror(rv));
				goto fail;
			}
		} else {
			vpp_log(VPP_LOG_WARN, "vppd",
				"api: serving cleartext h2c (--api-h2c): local development only");
		}
		vpp_grpc_listener *l;
		rv = vpp_grpc_server_listen(g->srv, "api", cfg->api_addr, (int)cfg->api_port,
					    g->api_tls, &l);
		if (rv != 0) {
			vpp_log(VPP_LOG_ERROR, "vppd", "api: cannot listen on %s port %d: %s",
				cfg->api_addr, (int)cfg->api_port, vpp_strerror(rv));
			goto fail;
		}
		if ((rv = vpp_health_register(g->health, l)) != 0)
			goto fail;
		if (cfg->enable_echo && (rv = vpp_echo_register(l)) != 0)
			goto fail;
		vpp_log(VPP_LOG_INFO, "vppd", "api: listening on %s port %d (%s)%s", cfg->api_addr,
			vpp_grpc_listener_port(l), cfg->api_h2c ? "h2c" : "TLS",
			cfg->enable_echo ? " with the Echo test service" : "");
	}
	vpp_health_set(g->health, "", VPP_HEALTH_SERVING);
	if ((rv = vpp_grpc_server_start(g->srv)) != 0)
		goto fail;
	*ret = g;
	return 0;
fail:
	vppd_grpc_stop(g, 0);
	return rv;
}

vpp_health *vppd_grpc_health(vppd_grpc *g)
{
	return g->health;
}

void vppd_grpc_stop(vppd_grpc *g, uint32_t grace_ms)
{
	if (!g)
		return;
	if (g->health)
		vpp_health_set(g->health, "", VPP_HEALTH_NOT_SERVING);
	if (g->srv)
		vpp_grpc_server_shutdown(g->srv, grace_ms);
	vpp_grpc_server_free(g->srv);
	vpp_health_free(g->health);
	vpp_grpc_tls_unref(g->api_tls);
	free(g);
}
