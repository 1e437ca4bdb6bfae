/* vppd: the vpp daemon. Reads the configuration table, starts the I/O
 * threads (gRPC device and operator APIs), the store thread, the dispatch
 * thread and the admin HTTP endpoint, and stops them in reverse order on
 * SIGINT/SIGTERM. `vppd migrate` applies database migrations and exits. */
#include "vppd_int.h"
#include "vpp/admin.h"
#include "vpp/error.h"
#include "vpp/grpc.h"
#include "vpp/health.h"
#include "vpp/log.h"
#include "vpp/proc.h"

#include <signal.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

static void usage(FILE *out)
{
	fprintf(out, "usage: vppd [migrate] [options]\n\n"
		     "vpp aggregation server: keeps sessions to home batteries, splits grid setpoints\n"
		     "across them and persists state and telemetry to PostgreSQL.\n\n"
		     "  vppd            run the server\n"
		     "  vppd migrate    apply database migrations and exit\n\n"
		     "Every option can also be set with the environment variable shown, or in the\n"
		     "INI file named by --config (key = option name, e.g. `api-port = 7444`); a\n"
		     "flag overrides the environment, which overrides the file. Boolean flags need\n"
		     "no value (--api-h2c is --api-h2c=true).\n\n"
		     "signals: SIGTERM/SIGINT stop gracefully (devices told to back off, the store\n"
		     "flushed); SIGHUP reads tokens-file again.\n\n"
		     "options:\n");
	vpp_config_print_help(vppd_config_table, vppd_config_table_len, out);
}

/* admin: /readyz, on the admin thread. Ready when the store can take rows
 * (database up, or the journal has room) and the control loop ticks. */
static int vppd_ready(void *ud, char *why, size_t whylen)
{
	vppd_grpc *g = atomic_load((_Atomic(vppd_grpc *) *)ud);
	if (!vppd_store_ready(why, whylen)) /* store */
		return 0;
	if (!g) {
		snprintf(why, whylen, "starting");
		return 0;
	}
	if (!vppd_grpc_ready(g, why, whylen))
		return 0;
	if (vppd_grpc_draining(g)) {
		snprintf(why, whylen, "this node is draining: its devices move to other nodes");
		return VPP_ADMIN_DRAINING;
	}
	return 1;
}

/* The health service says SERVING only while /readyz would say ready. */
static void on_health_timer(uv_timer_t *t)
{
	vppd_grpc *g = atomic_load((_Atomic(vppd_grpc *) *)t->data);
	char why[256];
	/* Stricter than /readyz: devices can go on while rows are journaled,
	 * but operator commands need the database. */
	if (g)
		vpp_health_set(vppd_grpc_health(g), "",
			       vppd_ready(t->data, why, sizeof(why)) == 1 &&
					       vppd_store_db_up(why, sizeof(why))
				       ? VPP_HEALTH_SERVING
				       : VPP_HEALTH_NOT_SERVING);
}

static void on_hup(uv_signal_t *h, int signum)
{
	(void)signum;
	vppd_grpc *g = atomic_load((_Atomic(vppd_grpc *) *)h->data);
	vppd_grpc_reload_tokens(g, h->loop->data);
}

static void on_signal(uv_signal_t *h, int signum)
{
	vpp_log(VPP_LOG_INFO, "vppd", "signal %d: shutting down", signum);
	uv_stop(h->loop);
}

/* A limit that caps the fleet is said at start-up. */
enum { VPPD_FD_LIMIT_WARN = 4096 };

static void raise_fd_limit(void)
{
	unsigned long long hard = 0, soft = vpp_proc_raise_fd_limit(&hard);
	if (soft == 0)
		return;
	if (soft < VPPD_FD_LIMIT_WARN)
		vpp_log(VPP_LOG_WARN, "vppd",
			"open-file limit %llu (hard %llu): at most about that many device sessions "
			"(raise it with ulimit -n or LimitNOFILE=)",
			soft, hard);
	else
		vpp_log(VPP_LOG_INFO, "vppd", "open-file limit %llu", soft);
}

/* A node id names this node in setpoint ids and rows: short and plain. */
#define NODE_ID_MAX 40

static bool node_id_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

static bool node_id_ok(const char *id)
{
	size_t n = 0;
	for (; id[n]; n++)
		if (n >= NODE_ID_MAX || !node_id_char(id[n]))
			return false;
	return n > 0;
}

/* The host name as a node id: other characters become '-'; a long one
 * keeps its start and a hash of the whole, so two hosts that differ only
 * at the end still differ. */
static char *node_id_from_host(void)
{
	char host[256];
	if (gethostname(host, sizeof(host)) != 0 || !host[0])
		snprintf(host, sizeof(host), "node");
	host[sizeof(host) - 1] = 0;
	for (char *c = host; *c; c++)
		if (!node_id_char(*c))
			*c = '-';
	if (strlen(host) > NODE_ID_MAX) {
		uint32_t h = 2166136261u; /* FNV-1a */
		for (const char *c = host; *c; c++)
			h = (h ^ (unsigned char)*c) * 16777619u;
		snprintf(host + NODE_ID_MAX - 9, 10, "-%08x", h);
	}
	return strdup(host);
}

static bool wildcard(const char *addr)
{
	return !addr || !addr[0] || strcmp(addr, "0.0.0.0") == 0 || strcmp(addr, "::") == 0;
}

/* Two listeners on one port: the kernel would split connections between
 * them (SO_REUSEPORT) or refuse the second. */
static bool ports_clash(const char *a_addr, int64_t a_port, const char *b_addr, int64_t b_port)
{
	return a_port != 0 && a_port == b_port &&
	       (wildcard(a_addr) || wildcard(b_addr) || strcmp(a_addr, b_addr) == 0);
}

static bool settings_ok(const vppd_config *cfg)
{
	if (!node_id_ok(cfg->node_id)) {
		fprintf(stderr, "vppd: invalid value for node-id: 1 to %d characters of A-Z, a-z, "
				"0-9, '.', '_' and '-'\n",
			NODE_ID_MAX);
		return false;
	}
	const struct {
		const char *name, *addr;
		int64_t port;
	} l[] = {{"api-port", cfg->api_addr, cfg->api_port},
		 {"device-port", cfg->device_addr, cfg->device_port},
		 {"admin-port", cfg->admin_addr, cfg->admin_port}};
	for (int i = 0; i < 3; i++) {
		for (int j = i + 1; j < 3; j++) {
			if (ports_clash(l[i].addr, l[i].port, l[j].addr, l[j].port)) {
				fprintf(stderr, "vppd: %s and %s are both %lld on overlapping "
						"addresses: give each listener its own port\n",
					l[i].name, l[j].name, (long long)l[i].port);
				return false;
			}
		}
	}
	/* Checked even when no port uses TLS yet: a bad value stays bad. */
	if (vpp_grpc_tls_policy_check(cfg->tls_ciphers, NULL) != 0) {
		fprintf(stderr, "vppd: invalid value for tls-ciphers: %s\n",
			vpp_grpc_tls_load_error());
		return false;
	}
	if (vpp_grpc_tls_policy_check(NULL, cfg->tls_min_version) != 0) {
		fprintf(stderr, "vppd: invalid value for tls-min-version: %s\n",
			vpp_grpc_tls_load_error());
		return false;
	}
	return true;
}

int main(int argc, char **argv)
{
	vppd_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	char err[512];
	int pos[4], npos = 0, rv, exit_code = EXIT_FAILURE;
	bool help = false;
	vpp_admin *admin = NULL; /* admin */
	static _Atomic(vppd_grpc *) grpc; /* read by the admin thread's /readyz */
	vpp_store *store = NULL; /* store */

	vpp_proc_tune_malloc();
	signal(SIGPIPE, SIG_IGN);
	if (vpp_config_parse(vppd_config_table, vppd_config_table_len, &cfg, argc, argv, pos, 4,
			     &npos, &help, err, sizeof(err)) != 0) {
		fprintf(stderr, "vppd: %s\n", err);
		goto out;
	}
	if (help) {
		usage(stdout);
		exit_code = EXIT_SUCCESS;
		goto out;
	}
	bool migrate = false;
	if (npos > 1 || (npos == 1 && strcmp(argv[pos[0]], "migrate") != 0)) {
		fprintf(stderr, "vppd: unknown command '%s' (see --help)\n", argv[pos[npos - 1]]);
		goto out;
	}
	migrate = npos == 1;
	vpp_log_level level;
	if (vpp_log_level_parse(cfg.log_level, &level) != 0) {
		fprintf(stderr, "vppd: invalid value '%s' for log-level: expected debug, info, "
				"warn or error\n",
			cfg.log_level);
		goto out;
	}
	vpp_log_set_level(level);
	if (vppd_store_check_config(&cfg) != 0)
		goto out;
	if (!cfg.node_id || !cfg.node_id[0]) {
		free(cfg.node_id);
		if (!(cfg.node_id = node_id_from_host()))
			goto out;
	}
	if (cfg.io_threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		cfg.io_threads = n > 0 ? n : 1;
	}

	/* store: migrate subcommand */
	if (migrate) {
		exit_code = vppd_migrate_main(&cfg);
		goto out;
	}

	if (!settings_ok(&cfg))
		goto out;
	raise_fd_limit();

	/* admin: start (before the other threads, so /healthz answers while
	 * they come up) */
	if (cfg.admin_port != 0) {
		if ((rv = vpp_admin_start(cfg.admin_addr, (int)cfg.admin_port, vppd_ready, &grpc,
					  &admin)) != 0) {
			vpp_log(VPP_LOG_ERROR, "vppd", "admin: cannot listen on %s port %d: %s",
				cfg.admin_addr, (int)cfg.admin_port, vpp_strerror(rv));
			goto out;
		}
		vpp_log(VPP_LOG_INFO, "vppd", "admin: listening on %s port %d", cfg.admin_addr,
			vpp_admin_port(admin));
	}

	uv_loop_t loop;
	if ((rv = uv_loop_init(&loop)) != 0) {
		fprintf(stderr, "vppd: cannot create event loop: %s\n", uv_strerror(rv));
		goto out;
	}
	uv_signal_t sigint, sigterm, sighup;
	uv_signal_init(&loop, &sigint);
	uv_signal_init(&loop, &sigterm);
	uv_signal_init(&loop, &sighup);
	uv_signal_start(&sigint, on_signal, SIGINT);
	uv_signal_start(&sigterm, on_signal, SIGTERM);
	/* SIGHUP reloads the operator tokens (and no longer ends vppd). */
	loop.data = &cfg;
	sighup.data = &grpc;
	uv_signal_start(&sighup, on_hup, SIGHUP);

	/* store: start */
	if ((rv = vppd_store_start(&cfg, &store)) != 0)
		goto out_loop;

	vppd_grpc *g;
	if ((rv = vppd_grpc_start(&cfg, store, &g)) != 0)
		goto out_loop;
	atomic_store(&grpc, g);
	uv_timer_t health_timer;
	uv_timer_init(&loop, &health_timer);
	health_timer.data = &grpc;
	uv_timer_start(&health_timer, on_health_timer, 0, 200);

	vpp_log(VPP_LOG_INFO, "vppd", "node=%s started", cfg.node_id);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&health_timer, NULL);

	/* admin: stop first, so /readyz never asks a component already stopped */
	vpp_admin_stop(admin);
	admin = NULL;

	/* Devices are told to back off and the dispatch thread stops; then
	 * GOAWAY lets operators' in-flight calls finish. */
	atomic_store(&grpc, NULL);
	vppd_grpc_stop(g, (uint32_t)cfg.shutdown_grace_ms);

	/* store: stop */
	vppd_store_stop(store);
	store = NULL;

	exit_code = EXIT_SUCCESS;
out_loop:
	vppd_store_stop(store); /* store: after a failed start */
	uv_close((uv_handle_t *)&sigint, NULL);
	uv_close((uv_handle_t *)&sigterm, NULL);
	uv_close((uv_handle_t *)&sighup, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	vpp_log(exit_code == EXIT_SUCCESS ? VPP_LOG_INFO : VPP_LOG_ERROR, "vppd",
		exit_code == EXIT_SUCCESS ? "stopped" : "start-up failed");
out:
	vpp_admin_stop(admin); /* admin */
	vpp_config_free(vppd_config_table, vppd_config_table_len, &cfg);
	return exit_code;
}
