/* vpp-plan: what-if dispatch planning with the real allocator.
 *
 * Reads a fleet from CSV, splits a target over it exactly as vppd's dispatch
 * tick would (same limits, same allocator) and prints the per-device
 * allocation as CSV followed by a one-line JSON summary. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plan/plan_int.h"
#include "vpp/allocate.h"
#include "vpp/error.h"

static const char usage_text[] =
	"usage: vpp-plan --fleet FILE --target-kw KW [options]\n"
	"\n"
	"Splits a fleet power target over the devices in FILE with vpp's dispatch\n"
	"allocator (minimise sum p^2/(a e) subject to sum a p = target and each\n"
	"device's limits) and prints the allocation.\n"
	"\n"
	"options:\n"
	"  --fleet FILE       fleet CSV ('-' for stdin)\n"
	"  --target-kw KW     fleet target in kW (positive = discharge to grid)\n"
	"  --horizon-s S      planning horizon in seconds (default 1): SoC and ramp\n"
	"                     limits apply over it\n"
	"  --epsilon-kwh E    floor of a device's available energy (default 0.001)\n"
	"  --summary-only     print only the JSON summary\n"
	"  -h, --help         this text\n"
	"\n"
	"CSV input: a header line naming the columns (any order; extra columns are\n"
	"ignored; lines starting with '#' and empty lines are skipped), then one\n"
	"line per device:\n"
	"  id                  device id (non-empty, unique, no commas)\n"
	"  rated_charge_kw     largest charge power, >= 0\n"
	"  rated_discharge_kw  largest discharge power, >= 0\n"
	"  capacity_kwh        >= 0\n"
	"  soc                 state of charge, 0..1\n"
	"  min_soc, max_soc    0 <= min_soc <= max_soc <= 1\n"
	"  ramp_kw_per_s       >= 0 (0 = no ramp limit)\n"
	"  power_kw            current power (positive = discharge)\n"
	"  availability        expected fraction of a command delivered, 0..1\n"
	"                      (0 = not dispatched)\n"
	"\n"
	"output: CSV 'id,p_kw,lo_kw,hi_kw' (one line per device, input order),\n"
	"then a last line of JSON: target_kw, expected_kw, shortfall_kw (target -\n"
	"expected; 0 when feasible), feasible, min_kw, max_kw, devices, included,\n"
	"saturated, mu, alloc_ms, total_ms.\n"
	"\n"
	"exit status: 0 ok, 1 bad fleet file, 2 bad arguments.\n";

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void bad(const char *path, size_t line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prints "vpp-plan: FILE:LINE: reason". */
static void bad(const char *path, size_t line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "vpp-plan: %s:%zu: ", path, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int parse_arg(const char *name, const char *s, double *out)
{
	if (vpp__plan_parse_num(s, out) != 0) {
		fprintf(stderr, "vpp-plan: %s: '%s' is not a finite number\n", name, s);
		return -1;
	}
	return 0;
}

static void json_num(const char *key, double v, int comma)
{
	if (isfinite(v))
		printf("\"%s\":%.17g%s", key, v, comma ? "," : "");
	else
		printf("\"%s\":null%s", key, comma ? "," : "");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"fleet", required_argument, NULL, 'f'},
		{"target-kw", required_argument, NULL, 't'},
		{"horizon-s", required_argument, NULL, 'H'},
		{"epsilon-kwh", required_argument, NULL, 'e'},
		{"summary-only", no_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	double target = NAN, horizon = 1, eps = 0.001, t0, t1, t2;
	int c, summary_only = 0, have_target = 0, rv, status = 1;
	vpp_allocator *al = NULL;
	vpp_alloc_result res;
	vpp_alloc_input in;
	vpp__plan_fleet fl = {0};
	char err[4096];
	FILE *fin;
	size_t i;

	t0 = now_ms();
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			path = optarg;
			break;
		case 't':
			if (parse_arg("--target-kw", optarg, &target) != 0)
				return 2;
			have_target = 1;
			break;
		case 'H':
			if (parse_arg("--horizon-s", optarg, &horizon) != 0)
				return 2;
			if (!(horizon > 0)) {
				fprintf(stderr, "vpp-plan: --horizon-s must be > 0\n");
				return 2;
			}
			break;
		case 'e':
			if (parse_arg("--epsilon-kwh", optarg, &eps) != 0)
				return 2;
			if (!(eps > 0)) {
				fprintf(stderr, "vpp-plan: --epsilon-kwh must be > 0\n");
				return 2;
			}
			break;
		case 's':
			summary_only = 1;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		default:
			if (optopt != 0)
				fprintf(stderr, "vpp-plan: option '%s' needs a value or is unknown\n",
					argv[optind - 1]);
			else
				fprintf(stderr, "vpp-plan: unknown option '%s'\n", argv[optind - 1]);
			fprintf(stderr, "try 'vpp-plan --help'\n");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vpp-plan: unexpected argument '%s'\ntry 'vpp-plan --help'\n",
			argv[optind]);
		return 2;
	}
	if (path == NULL || !have_target) {
		fprintf(stderr, "vpp-plan: --fleet and --target-kw are required\n"
				"try 'vpp-plan --help'\n");
		return 2;
	}

	fin = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	if (fin == NULL) {
		fprintf(stderr, "vpp-plan: %s: %s\n", path, strerror(errno));
		goto out;
	}
	rv = vpp__plan_read_fleet(fin, path, &fl, err, sizeof(err));
	if (fin != stdin)
		fclose(fin);
	if (rv != 0) {
		fprintf(stderr, "vpp-plan: %s\n", err);
		goto out;
	}
	for (i = 0; i < fl.n; i++) {
		vpp_device_limits lim;

		if (vpp_device_limits_compute(&fl.rt[i], fl.soc[i], fl.power[i], horizon, eps,
					      &lim) != 0) {
			bad(path, fl.line[i], "%s", "limits could not be computed");
			goto out;
		}
		if (fl.a[i] > 0) {
			fl.lo[i] = lim.lo_kw;
			fl.hi[i] = lim.hi_kw;
		} else {
			fl.lo[i] = fl.hi[i] = 0; /* not dispatched */
		}
		fl.edis[i] = lim.e_dis_kwh;
		fl.echg[i] = lim.e_chg_kwh;
	}
	if ((rv = vpp_allocator_new(&al)) != 0) {
		fprintf(stderr, "vpp-plan: %s\n", rv == VPP_ENOMEM ? "out of memory" : "error");
		goto out;
	}
	in = (vpp_alloc_input){.n = fl.n, .a = fl.a, .e_dis = fl.edis, .e_chg = fl.echg,
			       .lo = fl.lo, .hi = fl.hi};
	t1 = now_ms();
	rv = vpp_allocate(al, &in, target, fl.p, &res);
	t2 = now_ms();
	if (rv != 0) {
		fprintf(stderr, "vpp-plan: allocation failed (%d)\n", rv);
		goto out;
	}

	if (!summary_only) {
		fputs("id,p_kw,lo_kw,hi_kw\n", stdout);
		for (i = 0; i < fl.n; i++)
			printf("%s,%.17g,%.17g,%.17g\n", fl.id[i], fl.p[i], fl.lo[i], fl.hi[i]);
	}
	putchar('{');
	json_num("target_kw", res.target_kw, 1);
	json_num("expected_kw", res.expected_kw, 1);
	json_num("shortfall_kw", res.shortfall_kw, 1);
	printf("\"feasible\":%s,", res.feasible ? "true" : "false");
	json_num("min_kw", res.min_kw, 1);
	json_num("max_kw", res.max_kw, 1);
	printf("\"devices\":%zu,\"included\":%u,\"saturated\":%u,", fl.n, res.n_included,
	       res.n_saturated);
	json_num("mu", res.mu, 1);
	json_num("alloc_ms", t2 - t1, 1);
	json_num("total_ms", now_ms() - t0, 0);
	puts("}");
	status = fflush(stdout) == 0 ? 0 : 1;
out:
	vpp_allocator_free(al);
	vpp__plan_fleet_free(&fl);
	return status;
}
