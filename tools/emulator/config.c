/* vpp-emulator's settings: one declarative table. Precedence, low to high:
 * the table's defaults, the --profile INI file (same keys as the flags,
 * optionally in sections: `[faults] flaky = 0.1` or `flaky = 0.1`),
 * VPP_* environment variables, flags. */
#include "emul_int.h"
#include "vpp/error.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <netdb.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define O(n, t, f, lo, hi, d, h)                                                                   \
	{                                                                                          \
		n, t, offsetof(vpp__emul_config, f), lo, hi, d, h, false                           \
	}
#define S VPP_CFG_STRING
#define I VPP_CFG_INT
#define D VPP_CFG_DOUBLE

const vpp_config_opt vpp__emul_opts[] = {
    /* Not VPP_SERVER: that is vppctl's operator API. */
    {"server", S, offsetof(vpp__emul_config, server), 0, 0, NULL,
     "vppd device endpoint HOST:PORT (required; a flag or profile key)", true},
    O("devices", I, devices, 1, 1000000, "10", "number of batteries to emulate"),
    O("certs", S, certs, 0, 0, NULL,
      "certificate dir from deploy/local/certs.sh: ca.pem, devices/<id>.pem/.key (required)"),
    O("profile", S, profile, 0, 0, NULL, "INI file with any of these settings (flags win)"),
    O("duration", D, duration, 0, 1e9, "0", "stop after this many seconds (0: at SIGINT/SIGTERM)"),
    O("report", S, report, 0, 0, NULL, "write the ground-truth JSON report here at the end"),
    O("threads", I, threads, 1, 64, "2", "threads, each a libuv loop with its share of devices"),
    O("first-index", I, first_index, 0, 99999999, "0",
      "index of the first device (ids PREFIX + 5-digit index), to split a fleet over processes"),
    O("device-prefix", S, device_prefix, 0, 0, "dev-", "device id prefix, as in certs.sh"),
    O("server-name", S, server_name, 0, 0, "localhost", "TLS server name and :authority"),
    O("seed", I, seed, 0, 9007199254740991.0, "1",
      "seed of every random choice (fleet, faults, noise)"),
    O("connect-rate", I, connect_rate, 0, 10000000, "2000",
      "first connections per second over all threads (0: all at once)"),
    O("per-address", I, per_address, 0, 60000, "20000",
      "devices per source address: above this, spread sources over 127.0.x.y (0: never)"),
    O("preload-tls", VPP_CFG_BOOL, preload_tls, 0, 0, "true",
      "load every device's certificate and key before connecting"),
    O("telemetry-jitter", D, telemetry_jitter, 0, 0.9, "0.1",
      "telemetry interval jitter: each interval is uniform in (1 +/- F) x the interval"),
    O("telemetry-interval-ms", I, telemetry_interval_ms, 10, 3600000, "1000",
      "telemetry interval when the server's Welcome gives none"),
    O("physics-ms", I, physics_ms, 10, 1000, "100", "physics tick of every battery"),
    O("progress-s", I, progress_s, 0, 3600, "5",
      "progress line to stderr every S seconds (0: off)"),
    O("backoff-base-ms", I, backoff_base_ms, 1, 600000, "200", "reconnect backoff base"),
    O("backoff-cap-ms", I, backoff_cap_ms, 1, 3600000, "10000", "reconnect backoff cap"),
    O("server-silence-s", D, server_silence_s, 0, 86400, "45",
      "drop a session and reconnect when the server sent nothing (no Welcome, ping or "
      "setpoint) for this long: a hung server (0: never; keep it above vppd's "
      "--device-ping-interval-ms)"),
    O("log-level", S, log_level, 0, 0, "warn", "debug, info, warn, error or off"),
    O("firmware", S, firmware, 0, 0, "vpp-emulator/0.1", "firmware string sent in Hello"),
    /* faults */
    O("offline", D, offline, 0, 1, "0", "fraction of devices that never connect"),
    O("flaky", D, flaky, 0, 1, "0",
      "fraction that drop their connection now and then and reconnect with backoff"),
    O("flaky-period-s", D, flaky_period_s, 0.1, 86400, "30",
      "mean time between drops of a flaky device"),
    O("ignore", D, ignore, 0, 1, "0", "fraction that ack setpoints but hold 0 kW"),
    O("partial", D, partial, 0, 1, "0", "fraction that deliver only partial-factor x the setpoint"),
    O("partial-factor", D, partial_factor, 0, 1, "0.5", "what a partial device delivers"),
    O("late-ack", D, late_ack, 0, 1, "0", "fraction that ack late"),
    O("late-ack-ms", I, late_ack_ms, 0, 600000, "2000", "how late a late-ack device acks"),
    O("malformed", D, malformed, 0, 1, "0",
      "fraction that now and then send a malformed message (garbage, NaN, SoC 1.7)"),
    O("malformed-period-s", D, malformed_period_s, 0.1, 86400, "20",
      "mean time between malformed messages of such a device"),
    /* physics */
    O("rated-charge-kw", D, rated_charge_kw, 0.001, 1e6, "5", "mean rated charge power"),
    O("rated-discharge-kw", D, rated_discharge_kw, 0.001, 1e6, "5", "mean rated discharge power"),
    O("capacity-kwh", D, capacity_kwh, 0.001, 1e6, "13.5", "mean capacity"),
    O("rating-spread", D, rating_spread, 0, 0.9, "0.2",
      "ratings and capacity vary uniformly by +/- this fraction per device"),
    O("min-soc", D, min_soc, 0, 1, "0.1", "lowest SoC a battery discharges to"),
    O("max-soc", D, max_soc, 0, 1, "0.95", "highest SoC a battery charges to"),
    O("initial-soc-min", D, initial_soc_min, 0, 1, "0.3", "initial SoC: uniform from this"),
    O("initial-soc-max", D, initial_soc_max, 0, 1, "0.8", "initial SoC: uniform up to this"),
    O("ramp-kw-per-s", D, ramp_kw_per_s, 0.001, 1e6, "10", "ramp limit"),
    O("charge-efficiency", D, charge_efficiency, 0.01, 1, "0.95",
      "fraction of charge energy stored"),
    O("discharge-efficiency", D, discharge_efficiency, 0.01, 1, "0.95",
      "fraction of cell energy delivered when discharging"),
    O("lag-tau-s", D, lag_tau_s, 0, 600, "0.3", "first-order response time constant"),
    O("delay-ms", I, delay_ms, 0, 600000, "100", "dead time before each setpoint takes effect (in order)"),
    O("noise-kw", D, noise_kw, 0, 1e6, "0.05", "power measurement noise sigma (reported honestly)"),
    O("soc-sigma", D, soc_sigma, 0, 1, "0.005", "SoC measurement noise sigma (reported honestly)"),
    O("clock-offset-ms", I, clock_offset_ms, 0, 86400000, "500",
      "device clocks are off by uniform +/- this many ms"),
};
const size_t vpp__emul_nopts = sizeof(vpp__emul_opts) / sizeof(vpp__emul_opts[0]);

typedef struct {
	vpp_config_opt *opts; /* copy whose defaults the profile replaces */
	vpp__emul_config *scratch;
	const char *path;
	char *err;
	size_t errlen;
	int rv;
} profile_ctx;

static int on_profile_entry(void *user, const char *section, const char *name, const char *value)
{
	profile_ctx *c = user;
	if (c->rv)
		return 0;
	char origin[600], full[256];
	snprintf(origin, sizeof(origin), "profile %s", c->path);
	snprintf(full, sizeof(full), "%s-%s", section, name);
	const char *key = name;
	if (section[0] && vpp_config_set(c->opts, vpp__emul_nopts, c->scratch, full, value, origin,
	                                 c->err, c->errlen) != VPP_ENOENT)
		key = full;
	/* Validate with the flag's rules, then make it the default. */
	int rv = vpp_config_set(c->opts, vpp__emul_nopts, c->scratch, key, value, origin, c->err,
	                        c->errlen);
	if (rv) {
		c->rv = VPP_EINVAL;
		return 0;
	}
	for (size_t i = 0; i < vpp__emul_nopts; i++) {
		if (c->opts[i].offset != vpp__emul_opts[i].offset)
			continue;
		if (vpp_config_set(&c->opts[i], 1, c->scratch, key, value, origin, c->err,
		                   c->errlen) == 0) {
			char *v = strdup(value);
			if (!v) {
				c->rv = VPP_ENOMEM;
				return 0;
			}
			if (c->opts[i].def != vpp__emul_opts[i].def)
				free((char *)c->opts[i].def);
			c->opts[i].def = v;
			break;
		}
	}
	return 1;
}

/* The value of --profile in argv, or NULL. */
static const char *profile_flag(int argc, char **argv)
{
	const char *found = getenv("VPP_PROFILE");
	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--profile=", 10) == 0)
			found = argv[i] + 10;
		else if (strcmp(argv[i], "--profile") == 0 && i + 1 < argc)
			found = argv[i + 1];
	}
	return found;
}

/* Resolves |host| once, in place, to a numeric address: every connect
 * (and reconnect storm) then skips the resolver, and a name that does not
 * resolve is an error now. IPv4 first, as vppd's default listeners are. */
static int resolve_host(char *host, size_t cap, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
	int rv = getaddrinfo(host, NULL, &hints, &res);
	if (rv != 0) {
		snprintf(err, errlen, "--server: cannot resolve '%s': %s", host, gai_strerror(rv));
		return VPP_EINVAL;
	}
	ai = res;
	for (struct addrinfo *p = res; p; p = p->ai_next)
		if (p->ai_family == AF_INET) {
			ai = p;
			break;
		}
	const void *a = ai->ai_family == AF_INET
	                    ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
	                    : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
	char out[INET6_ADDRSTRLEN];
	rv = inet_ntop(ai->ai_family, a, out, sizeof(out)) && strlen(out) < cap ? 0 : VPP_EINVAL;
	freeaddrinfo(res);
	if (rv != 0) {
		snprintf(err, errlen, "--server: cannot use the address of '%s'", host);
		return rv;
	}
	strcpy(host, out);
	return 0;
}

static int validate(vpp__emul_config *c, char *err, size_t errlen)
{
	if (!c->server || !c->server[0]) {
		snprintf(err, errlen, "--server HOST:PORT is required");
		return VPP_EINVAL;
	}
	const char *colon = strrchr(c->server, ':');
	char *end;
	long port = colon ? strtol(colon + 1, &end, 10) : 0;
	if (!colon || colon == c->server || !colon[1] || *end || port < 1 || port > 65535 ||
	    (size_t)(colon - c->server) >= sizeof(c->host)) {
		snprintf(err, errlen, "--server '%s': expected HOST:PORT with a port in 1..65535",
		         c->server);
		return VPP_EINVAL;
	}
	const char *h = c->server;
	size_t hl = (size_t)(colon - c->server);
	if (h[0] == '[' && h[hl - 1] == ']') { /* [::1]:port */
		h++;
		hl -= 2;
	}
	memcpy(c->host, h, hl);
	c->host[hl] = 0;
	c->port = (int)port;
	if (resolve_host(c->host, sizeof(c->host), err, errlen) != 0)
		return VPP_EINVAL;
	if (!c->certs || !c->certs[0]) {
		snprintf(err, errlen, "--certs DIR is required (see deploy/local/certs.sh)");
		return VPP_EINVAL;
	}
	for (const char *p = c->device_prefix; *p; p++) {
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
		    !(*p >= '0' && *p <= '9') && *p != '.' && *p != '_' && *p != '-') {
			snprintf(err, errlen,
			         "--device-prefix '%s': only letters, digits, '.', '_', '-'",
			         c->device_prefix);
			return VPP_EINVAL;
		}
	}
	if (strlen(c->device_prefix) > 24) {
		snprintf(err, errlen, "--device-prefix: at most 24 characters");
		return VPP_EINVAL;
	}
	if (c->min_soc >= c->max_soc) {
		snprintf(err, errlen, "--min-soc (%g) must be below --max-soc (%g)", c->min_soc,
		         c->max_soc);
		return VPP_EINVAL;
	}
	if (c->initial_soc_min > c->initial_soc_max) {
		snprintf(err, errlen,
		         "--initial-soc-min (%g) must not exceed --initial-soc-max (%g)",
		         c->initial_soc_min, c->initial_soc_max);
		return VPP_EINVAL;
	}
	if (c->backoff_base_ms > c->backoff_cap_ms) {
		snprintf(err, errlen, "--backoff-base-ms must not exceed --backoff-cap-ms");
		return VPP_EINVAL;
	}
	double sum = c->offline + c->flaky + c->ignore + c->partial + c->late_ack + c->malformed;
	if (sum > 1 + 1e-9) {
		snprintf(err, errlen,
		         "fault fractions (offline %g + flaky %g + ignore %g + partial %g + "
		         "late-ack %g + malformed %g) sum to %g: each device has at most one "
		         "fault, so they must sum to at most 1",
		         c->offline, c->flaky, c->ignore, c->partial, c->late_ack, c->malformed,
		         sum);
		return VPP_EINVAL;
	}
	/* Missing certificates are a setup mistake: say so now, not as
	 * thousands of failed connections. */
	char path[4200];
	long long last = (long long)(c->first_index + c->devices - 1);
	for (int i = 0; i < 3; i++) {
		char rel[128];
		if (i == 0)
			snprintf(rel, sizeof(rel), "ca.pem");
		else
			snprintf(rel, sizeof(rel), "devices/%s%05lld.%s", c->device_prefix, last,
			         i == 1 ? "pem" : "key");
		snprintf(path, sizeof(path), "%s/%s", c->certs, rel);
		if (access(path, R_OK) != 0) {
			snprintf(
			    err, errlen,
			    "--certs %s: cannot read %s (create them with deploy/local/certs.sh "
			    "%s --devices %lld%s%s)",
			    c->certs, rel, c->certs, last + 1,
			    strcmp(c->device_prefix, "dev-") ? " --device-prefix " : "",
			    strcmp(c->device_prefix, "dev-") ? c->device_prefix : "");
			return VPP_EINVAL;
		}
	}
	/* A report that cannot be written is found now, not at the end of a
	 * long run. */
	if (c->report) {
		snprintf(path, sizeof(path), "%s.tmp", c->report);
		FILE *f = fopen(path, "w");
		if (!f) {
			snprintf(err, errlen, "--report %s: cannot write %s: %s", c->report, path,
			         strerror(errno));
			return VPP_EINVAL;
		}
		fclose(f);
		remove(path);
	}
	if (c->threads > c->devices)
		c->threads = c->devices;
	return 0;
}

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: vpp-emulator --server HOST:PORT --devices N --certs DIR [--profile FILE]\n"
	        "                    [--duration S] [--report FILE] [--threads T] [options]\n"
	        "\n"
	        "Runs N simulated home batteries, each with its own mTLS gRPC session\n"
	        "(/vpp.v1.DeviceLink/Connect) to vppd, with physics, faults and a ground-truth\n"
	        "report. Device i uses DIR/devices/<prefix><5-digit first-index+i>.pem/.key and\n"
	        "trusts DIR/ca.pem. Every setting below is a flag, a VPP_* environment variable\n"
	        "or a key of the --profile INI file. SIGINT/SIGTERM stop it and write the report.\n"
	        "\n");
	vpp_config_print_help(vpp__emul_opts, vpp__emul_nopts, out);
}

int vpp__emul_config_load(vpp__emul_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
	int rv, pos[1], npos;
	bool help;
	vpp_config_opt *opts = malloc(sizeof(vpp__emul_opts));
	vpp__emul_config scratch = {0};
	if (!opts) {
		snprintf(err, errlen, "out of memory");
		return VPP_ENOMEM;
	}
	memcpy(opts, vpp__emul_opts, sizeof(vpp__emul_opts));
	memset(cfg, 0, sizeof(*cfg));
	const char *profile = profile_flag(argc, argv);
	if (profile && profile[0]) {
		profile_ctx c = {opts, &scratch, profile, err, errlen, 0};
		int prv = ini_parse(profile, on_profile_entry, &c);
		vpp_config_free(vpp__emul_opts, vpp__emul_nopts, &scratch);
		if (c.rv) {
			rv = c.rv;
			goto out;
		}
		if (prv != 0) {
			if (prv < 0)
				snprintf(err, errlen, "profile %s: cannot open", profile);
			else
				snprintf(err, errlen, "profile %s: syntax error on line %d",
				         profile, prv);
			rv = VPP_EINVAL;
			goto out;
		}
	}
	rv = vpp_config_parse(opts, vpp__emul_nopts, cfg, argc, argv, pos, 1, &npos, &help, err,
	                      errlen);
	if (rv)
		goto out;
	if (help) {
		usage(stdout);
		rv = 1;
		goto out;
	}
	if (npos > 0) {
		snprintf(err, errlen, "unexpected argument '%s' (see --help)", argv[pos[0]]);
		rv = VPP_EINVAL;
		goto out;
	}
	rv = validate(cfg, err, errlen);
out:
	for (size_t i = 0; i < vpp__emul_nopts; i++)
		if (opts[i].def != vpp__emul_opts[i].def)
			free((char *)opts[i].def);
	free(opts);
	return rv;
}

void vpp__emul_config_free(vpp__emul_config *cfg)
{
	vpp_config_free(vpp__emul_opts, vpp__emul_nopts, cfg);
}
