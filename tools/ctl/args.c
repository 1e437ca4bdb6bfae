/* vppctl's command line: one table of flags (name, value, environment
 * variable, the commands it applies to, help) that both the parser and
 * --help read. vpp_config_parse() is not used: it maps every option to a
 * VPP_<NAME> variable (VPP_FOR would silently change `set`), and treats
 * "-500" as an unknown flag where vppctl needs negative powers. */
#include "ctl_int.h"
#include "vpp/cluster.h"
#include "vpp/error.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ALL 0xffffffffu
#define CMD(c) (1u << (c))

typedef enum {
	F_SERVER,
	F_CA,
	F_CERT,
	F_KEY,
	F_SERVER_NAME,
	F_H2C,
	F_TOKEN,
	F_TIMEOUT,
	F_JSON,
	F_VERBOSE,
	F_FOR,
	F_RAMP,
	F_REASON,
	F_REQUEST_ID,
	F_STATE,
	F_LIMIT,
	F_ALL,
	F_COUNT,
} flag_id;

typedef struct {
	flag_id id;
	const char *name;
	const char *arg; /* NULL: a switch */
	const char *env;
	unsigned cmds;
	const char *help;
} flag;

static const flag flags[] = {
    {F_SERVER, "server", "HOST:PORT", "VPP_SERVER", ALL,
     "vppd API address (default 127.0.0.1:7444)"},
    {F_CA, "ca", "FILE", "VPP_CA", ALL,
     "CA that signed vppd's certificate (default: system roots)"},
    {F_CERT, "cert", "FILE", "VPP_CERT", ALL, "client certificate (operator identity), with --key"},
    {F_KEY, "key", "FILE", "VPP_KEY", ALL, "key of --cert"},
    {F_SERVER_NAME, "server-name", "NAME", NULL, ALL,
     "name to verify vppd's certificate against (default: the host)"},
    {F_H2C, "insecure-h2c", NULL, "VPP_H2C", ALL, "cleartext HTTP/2 to a development server"},
    {F_TOKEN, "token", "TOKEN", "VPP_TOKEN", ALL, "bearer token (sent as authorization metadata)"},
    {F_TIMEOUT, "timeout", "DURATION", NULL, ALL, "connect and call deadline (default 10s)"},
    {F_JSON, "json", NULL, NULL, ALL, "machine-readable JSON (one object; watch: one a line)"},
    {F_VERBOSE, "verbose", NULL, NULL, ALL, "log the client's transport events to stderr"},
    {F_FOR, "for", "DURATION", NULL, CMD(VPP__CTL_SET),
     "how long the setpoint holds: 90s, 15m, 1h (default 15m)"},
    {F_RAMP, "ramp", "KW_PER_S", NULL, CMD(VPP__CTL_SET), "ramp rate in kW/s (default 0: step)"},
    {F_REASON, "reason", "TEXT", NULL, CMD(VPP__CTL_SET) | CMD(VPP__CTL_DRAIN),
     "why (stored in the audit log)"},
    {F_REQUEST_ID, "request-id", "ID", NULL, CMD(VPP__CTL_SET),
     "idempotency key: retry a set with the id it printed (default: random)"},
    {F_STATE, "state", "STATE", NULL, CMD(VPP__CTL_DEVICES), "online, stale, degraded or offline"},
    {F_LIMIT, "limit", "N", NULL, CMD(VPP__CTL_DEVICES), "at most N devices (default 50)"},
    {F_ALL, "all", NULL, NULL, CMD(VPP__CTL_DEVICES), "every device (pages through the list)"},
    {F_COUNT, "count", "N", NULL, CMD(VPP__CTL_WATCH), "stop after N updates (default: Ctrl-C)"},
};
#define NFLAGS (sizeof(flags) / sizeof(flags[0]))

static const struct {
	const char *name;
	const char *sub; /* the second word of a two-word command ("node drain") */
	vpp__ctl_cmd cmd;
	int npos; /* positional arguments after the command's words */
	const char *synopsis;
} commands[] = {
    {"status", NULL, VPP__CTL_STATUS, 0,
     "status                 the fleet now: power, headroom, devices (per node in a cluster)"},
    {"watch", NULL, VPP__CTL_WATCH, 0,
     "watch [--count N]      one line per control tick until Ctrl-C"},
    {"set", NULL, VPP__CTL_SET, 1,
     "set <kW> [--for 15m] [--ramp X] [--reason TEXT] [--request-id ID]\n"
     "                         command the fleet (positive = discharge)"},
    {"preview", NULL, VPP__CTL_PREVIEW, 1,
     "preview <kW>           what the fleet would deliver, sending nothing"},
    {"devices", NULL, VPP__CTL_DEVICES, 0,
     "devices [--state S] [--limit N] [--all]\n"
     "                         table of devices"},
    {"device", NULL, VPP__CTL_DEVICE, 1, "device <id>            one device in detail"},
    {"nodes", NULL, VPP__CTL_NODES, 0,
     "nodes                  the cluster's vppd nodes: role, devices, share, heartbeat"},
    {"node", "drain", VPP__CTL_DRAIN, 1,
     "node drain <id> [--reason TEXT]\n"
     "                         take a cluster node out of service (a rolling upgrade):\n"
     "                         its devices move to the other nodes"},
    {"node", "undrain", VPP__CTL_UNDRAIN, 1,
     "node undrain <id>      put a drained node back in service"},
    {"health", NULL, VPP__CTL_HEALTH, 0,
     "health                 SERVING or NOT_SERVING (exit 0 only if SERVING)"},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char *state_names[] = {"all", "online", "stale", "degraded", "offline"};

int vpp__ctl_parse_state(const char *s, int *ret)
{
	for (int i = 1; i < 5; i++) {
		if (strcasecmp(s, state_names[i]) == 0) {
			*ret = i;
			return 0;
		}
	}
	return VPP_EINVAL;
}

const char *vpp__ctl_state_name(int state)
{
	return state >= 0 && state < 5 ? state_names[state] : "unknown";
}

/* strtod that accepts only plain decimal notation (no hex, "nan", "inf")
 * and leaves the rest in |*end|. */
static int parse_decimal(const char *s, double *ret, const char **end)
{
	const char *p = s;
	if (*p == '+' || *p == '-')
		p++;
	if (!isdigit((unsigned char)*p) && !(*p == '.' && isdigit((unsigned char)p[1])))
		return VPP_EINVAL;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
		return VPP_EINVAL;
	char *e;
	errno = 0;
	double v = strtod(s, &e);
	if (e == s || errno == ERANGE || !isfinite(v))
		return VPP_EINVAL;
	*ret = v;
	*end = e;
	return 0;
}

int vpp__ctl_parse_duration_ms(const char *s, uint64_t *ret)
{
	double v;
	const char *unit;
	if (!s || parse_decimal(s, &v, &unit) != 0 || v <= 0)
		return VPP_EINVAL;
	double mult;
	if (*unit == 0 || strcmp(unit, "s") == 0)
		mult = 1000;
	else if (strcmp(unit, "ms") == 0)
		mult = 1;
	else if (strcmp(unit, "m") == 0 || strcmp(unit, "min") == 0)
		mult = 60000;
	else if (strcmp(unit, "h") == 0)
		mult = 3600000;
	else
		return VPP_EINVAL;
	double ms = v * mult;
	if (ms < 1 || ms > 366.0 * 86400000.0)
		return VPP_EINVAL;
	*ret = (uint64_t)llround(ms);
	return 0;
}

int vpp__ctl_parse_kw(const char *s, double *ret)
{
	double v;
	const char *unit;
	if (!s || parse_decimal(s, &v, &unit) != 0)
		return VPP_EINVAL;
	if (*unit == 0 || strcasecmp(unit, "kw") == 0)
		;
	else if (strcasecmp(unit, "mw") == 0)
		v *= 1000;
	else if (strcasecmp(unit, "w") == 0)
		v /= 1000;
	else
		return VPP_EINVAL;
	if (!isfinite(v))
		return VPP_EINVAL;
	*ret = v;
	return 0;
}

static int parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *ret)
{
	if (!s || !isdigit((unsigned char)*s))
		return VPP_EINVAL;
	char *e;
	errno = 0;
	unsigned long long v = strtoull(s, &e, 10);
	if (errno || *e || v < lo || v > hi)
		return VPP_EINVAL;
	*ret = v;
	return 0;
}

/* A cluster node id, as vppd checks it: 1..40 of [A-Za-z0-9._-]. */
static bool node_id_ok(const char *s)
{
	size_t n = strlen(s);
	return n >= 1 && n <= VPP_CLUSTER_ID_MAX &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                 "0123456789._-") == n;
}

static bool truthy(const char *v)
{
	return strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0 ||
	       strcasecmp(v, "on") == 0;
}

/* Splits "host:port", "[::1]:port" into o->host and o->port. */
static int split_server(vpp__ctl_opts *o, char *err, size_t errlen)
{
	const char *s = o->server, *colon = strrchr(s, ':');
	char *end;
	long port = colon ? strtol(colon + 1, &end, 10) : 0;
	if (!colon || colon == s || !colon[1] || *end || port < 1 || port > 65535) {
		snprintf(err, errlen, "--server '%s': expected HOST:PORT with a port in 1..65535",
		         s);
		return VPP_EINVAL;
	}
	const char *h = s;
	size_t hl = (size_t)(colon - s);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(o->host)) {
		snprintf(err, errlen, "--server '%s': bad host", s);
		return VPP_EINVAL;
	}
	memcpy(o->host, h, hl);
	o->host[hl] = 0;
	o->port = (int)port;
	return 0;
}

static int apply(vpp__ctl_opts *o, const flag *f, const char *v, const char *origin, char *err,
                 size_t errlen)
{
	uint64_t u;
	switch (f->id) {
	case F_SERVER:
		o->server = v;
		return 0;
	case F_CA:
		o->ca = v;
		return 0;
	case F_CERT:
		o->cert = v;
		return 0;
	case F_KEY:
		o->key = v;
		return 0;
	case F_SERVER_NAME:
		o->server_name = v;
		return 0;
	case F_H2C:
		o->h2c = v ? truthy(v) : true;
		return 0;
	case F_TOKEN:
		/* A token from a file or a secret often ends in a newline:
		 * trimmed. Anything else below 0x21 cannot go in a header. */
		if (strlen(v) >= sizeof(o->token_buf)) {
			snprintf(err, errlen, "%s: the token is longer than %zu bytes", origin,
			         sizeof(o->token_buf) - 1);
			return VPP_EINVAL;
		}
		snprintf(o->token_buf, sizeof(o->token_buf), "%s", v);
		for (size_t n = strlen(o->token_buf);
		     n > 0 && (o->token_buf[n - 1] == '\n' || o->token_buf[n - 1] == '\r' ||
		               o->token_buf[n - 1] == ' ' || o->token_buf[n - 1] == '\t');
		     n--)
			o->token_buf[n - 1] = 0;
		for (const char *t = o->token_buf; *t; t++) {
			if ((unsigned char)*t < 0x21 || (unsigned char)*t == 0x7f) {
				snprintf(err, errlen,
				         "%s: the token has a space or control character inside it",
				         origin);
				return VPP_EINVAL;
			}
		}
		if (!o->token_buf[0]) {
			snprintf(err, errlen, "%s: the token is empty", origin);
			return VPP_EINVAL;
		}
		o->token = o->token_buf;
		return 0;
	case F_JSON:
		o->json = true;
		return 0;
	case F_VERBOSE:
		o->verbose = true;
		return 0;
	case F_ALL:
		o->all = true;
		return 0;
	case F_REASON:
		o->reason = v;
		return 0;
	case F_REQUEST_ID:
		if (!v[0] || strlen(v) > 127) {
			snprintf(err, errlen, "%s: the request id must be 1 to 127 bytes", origin);
			return VPP_EINVAL;
		}
		o->request_id = v;
		return 0;
	case F_TIMEOUT:
		if (vpp__ctl_parse_duration_ms(v, &u) != 0 || u > 24 * 3600 * 1000ull) {
			snprintf(err, errlen, "%s '%s': expected a duration such as 10s, 500ms, 2m",
			         origin, v);
			return VPP_EINVAL;
		}
		o->timeout_ms = (uint32_t)u;
		return 0;
	case F_FOR:
		if (vpp__ctl_parse_duration_ms(v, &u) != 0 || u % 1000 != 0 ||
		    u / 1000 > UINT32_MAX) {
			snprintf(err, errlen,
			         "%s '%s': expected a positive whole number of seconds, minutes or "
			         "hours such as 90s, 15m, 1h",
			         origin, v);
			return VPP_EINVAL;
		}
		o->valid_for_s = (uint32_t)(u / 1000);
		return 0;
	case F_RAMP: {
		double r;
		if (vpp__ctl_parse_kw(v, &r) != 0 || r < 0) {
			snprintf(err, errlen, "%s '%s': expected a ramp rate >= 0 in kW/s", origin,
			         v);
			return VPP_EINVAL;
		}
		o->ramp_kw_per_s = r;
		return 0;
	}
	case F_STATE:
		if (vpp__ctl_parse_state(v, &o->state) != 0) {
			snprintf(err, errlen,
			         "%s '%s': expected online, stale, degraded or offline", origin, v);
			return VPP_EINVAL;
		}
		return 0;
	case F_LIMIT:
		if (parse_uint(v, 1, 1000000, &u) != 0) {
			snprintf(err, errlen, "%s '%s': expected a whole number from 1 to 1000000",
			         origin, v);
			return VPP_EINVAL;
		}
		o->limit = (uint32_t)u;
		return 0;
	case F_COUNT:
		if (parse_uint(v, 1, UINT64_MAX, &u) != 0) {
			snprintf(err, errlen, "%s '%s': expected a whole number >= 1", origin, v);
			return VPP_EINVAL;
		}
		o->count = u;
		return 0;
	}
	return VPP_EINVAL;
}

static const flag *find_flag(const char *name, size_t len)
{
	for (size_t i = 0; i < NFLAGS; i++)
		if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0)
			return &flags[i];
	return NULL;
}

/* A negative number is a value ("set -500"), not a flag. */
static bool is_flag(const char *a)
{
	if (a[0] != '-' || a[1] == 0)
		return false;
	if (isdigit((unsigned char)a[1]) || (a[1] == '.' && isdigit((unsigned char)a[2])))
		return false;
	return true;
}

int vpp__ctl_parse(int argc, char **argv, vpp__ctl_opts *o, char *err, size_t errlen)
{
	memset(o, 0, sizeof(*o));
	o->server = "127.0.0.1:7444";
	o->timeout_ms = 10000;
	o->valid_for_s = 15 * 60;
	o->limit = 50;
	for (size_t i = 0; i < NFLAGS; i++) {
		const char *v = flags[i].env ? getenv(flags[i].env) : NULL;
		if (!v || !v[0])
			continue;
		char origin[64];
		snprintf(origin, sizeof(origin), "environment %s", flags[i].env);
		if (apply(o, &flags[i], v, origin, err, errlen) != 0)
			return VPP_EINVAL;
	}

	const char *pos[4];
	int npos = 0;
	const flag *seen[64];
	size_t nseen = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			o->help = true;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			for (i++; i < argc; i++) {
				if (npos == 4) {
					snprintf(err, errlen, "too many arguments at '%s'",
					         argv[i]);
					return VPP_EINVAL;
				}
				pos[npos++] = argv[i];
			}
			break;
		}
		if (!is_flag(a)) {
			if (npos == 4) {
				snprintf(err, errlen, "too many arguments at '%s'", a);
				return VPP_EINVAL;
			}
			pos[npos++] = a;
			continue;
		}
		if (a[1] != '-') {
			snprintf(err, errlen, "unknown flag '%s' (flags are long: --name)", a);
			return VPP_EINVAL;
		}
		const char *name = a + 2, *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		const flag *f = find_flag(name, nlen);
		if (!f) {
			snprintf(err, errlen, "unknown flag '--%.*s'", (int)nlen, name);
			return VPP_EINVAL;
		}
		const char *v = NULL;
		if (f->arg) {
			if (eq) {
				v = eq + 1;
			} else if (i + 1 < argc) {
				v = argv[++i];
			} else {
				snprintf(err, errlen, "--%s needs a value (%s)", f->name, f->arg);
				return VPP_EINVAL;
			}
		} else if (eq) {
			snprintf(err, errlen, "--%s takes no value", f->name);
			return VPP_EINVAL;
		}
		char origin[64];
		snprintf(origin, sizeof(origin), "--%s", f->name);
		if (apply(o, f, v, origin, err, errlen) != 0)
			return VPP_EINVAL;
		if (nseen < sizeof(seen) / sizeof(seen[0]))
			seen[nseen++] = f;
	}
	if (o->help)
		return 0;

	if (npos == 0) {
		snprintf(err, errlen, "no command given");
		return VPP_EINVAL;
	}
	size_t c;
	bool family = false; /* pos[0] is the first word of two-word commands */
	for (c = 0; c < NCOMMANDS; c++) {
		if (strcmp(pos[0], commands[c].name) != 0)
			continue;
		if (!commands[c].sub)
			break;
		family = true;
		if (npos > 1 && strcmp(pos[1], commands[c].sub) == 0)
			break;
	}
	if (c == NCOMMANDS && family) {
		int n = snprintf(err, errlen, "%s: expected", pos[0]);
		const char *sep = " ";
		for (size_t k = 0; k < NCOMMANDS && n > 0 && (size_t)n < errlen; k++) {
			if (commands[k].sub && strcmp(commands[k].name, pos[0]) == 0) {
				n += snprintf(err + n, errlen - (size_t)n, "%s'%s %s'", sep, pos[0],
				              commands[k].sub);
				sep = " or ";
			}
		}
		if (npos > 1 && n > 0 && (size_t)n < errlen)
			snprintf(err + n, errlen - (size_t)n, ", not '%s %s'", pos[0], pos[1]);
		return VPP_EINVAL;
	}
	if (c == NCOMMANDS) {
		snprintf(err, errlen, "unknown command '%s'", pos[0]);
		return VPP_EINVAL;
	}
	o->cmd = commands[c].cmd;
	int words = commands[c].sub ? 2 : 1;
	char name[64]; /* as typed: "set", "node drain" */
	snprintf(name, sizeof(name), "%s%s%s", pos[0], words == 2 ? " " : "",
	         words == 2 ? pos[1] : "");
	if (npos - words != commands[c].npos) {
		/* The synopsis up to its description. */
		const char *syn = commands[c].synopsis, *gap = strstr(syn, "  ");
		int synlen = (int)strcspn(syn, "\n");
		if (gap && gap - syn < synlen)
			synlen = (int)(gap - syn);
		if (npos - words < commands[c].npos)
			snprintf(err, errlen, "%s: missing argument (usage: vppctl %.*s)", name,
			         synlen, syn);
		else
			snprintf(err, errlen, "%s: unexpected argument '%s'", name,
			         pos[words + commands[c].npos]);
		return VPP_EINVAL;
	}
	for (size_t i = 0; i < nseen; i++) {
		if (!(seen[i]->cmds & CMD(o->cmd))) {
			snprintf(err, errlen, "--%s does not apply to '%s'", seen[i]->name, name);
			return VPP_EINVAL;
		}
	}
	switch (o->cmd) {
	case VPP__CTL_SET:
	case VPP__CTL_PREVIEW:
		if (vpp__ctl_parse_kw(pos[1], &o->kw) != 0) {
			snprintf(
			    err, errlen,
			    "%s '%s': expected a finite power in kW such as 1200, -350.5 or 1.2MW",
			    pos[0], pos[1]);
			return VPP_EINVAL;
		}
		break;
	case VPP__CTL_DEVICE:
		if (!pos[1][0]) {
			snprintf(err, errlen, "device: the device id is empty");
			return VPP_EINVAL;
		}
		o->device_id = pos[1];
		break;
	case VPP__CTL_DRAIN:
	case VPP__CTL_UNDRAIN:
		if (!node_id_ok(pos[2])) {
			snprintf(err, errlen,
			         "%s '%s': a node id is 1 to %d of A-Z a-z 0-9 . _ - (vppctl nodes "
			         "lists them)",
			         name, pos[2], VPP_CLUSTER_ID_MAX);
			return VPP_EINVAL;
		}
		o->node_id = pos[2];
		break;
	default:
		break;
	}
	if ((o->cert != NULL) != (o->key != NULL)) {
		snprintf(err, errlen, "--cert and --key go together");
		return VPP_EINVAL;
	}
	return split_server(o, err, errlen);
}

void vpp__ctl_usage(FILE *out)
{
	fprintf(out, "usage: vppctl [flags] COMMAND [arguments]\n\n"
	             "Drives a vpp virtual power plant (vppd) over its gRPC operator API.\n"
	             "Power: positive = discharge / export to the grid, negative = charge.\n\n"
	             "Commands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(out, "  %s\n", commands[i].synopsis);
	fprintf(out, "\nFlags (anywhere on the line; --name VALUE or --name=VALUE):\n");
	for (size_t i = 0; i < NFLAGS; i++) {
		const flag *f = &flags[i];
		char lhs[64];
		snprintf(lhs, sizeof(lhs), "--%s%s%s", f->name, f->arg ? " " : "",
		         f->arg ? f->arg : "");
		fprintf(out, "  %-24s %s", lhs, f->help);
		if (f->env)
			fprintf(out, " [env %s]", f->env);
		if (f->cmds != ALL) {
			for (size_t c = 0; c < NCOMMANDS; c++)
				if (f->cmds & CMD(commands[c].cmd))
					fprintf(out, " (%s%s%s)", commands[c].name,
					        commands[c].sub ? " " : "",
					        commands[c].sub ? commands[c].sub : "");
		}
		fprintf(out, "\n");
	}
	fprintf(out, "\nConnection: TLS by default; --insecure-h2c (or VPP_H2C=1) for a cleartext\n"
	             "development server. The token goes as `authorization: Bearer TOKEN`.\n\n"
	             "Exit status:\n"
	             "  0  ok (health: SERVING)\n"
	             "  1  the server refused or answered an error (health: not SERVING)\n"
	             "  2  usage: bad arguments or unreadable certificate files\n"
	             "  3  cannot connect to vppd, or lost the connection before its answer\n\n"
	             "Examples:\n"
	             "  vppctl --ca certs/ca.pem --token $T set 1200 --for 30m --ramp 50\n"
	             "  vppctl status --json\n"
	             "  vppctl nodes\n"
	             "  vppctl node drain node-2 --reason 'upgrade to 0.2'\n"
	             "  vppctl devices --state degraded --all\n");
}
