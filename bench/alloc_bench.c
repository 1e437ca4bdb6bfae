/* Allocation and control-tick time of the dispatch core.
 *
 *   alloc_bench [runs]    (release build; pin with taskset -c 1 for one core)
 *
 * For 1,000 / 10,000 / 100,000 / 1,000,000 random devices it times
 * vpp_allocate() on a fresh feasible target each run and prints the median
 * and p99; then a full vpp_fleet_tick() (estimator + controller + allocator
 * + commands) over 10,000 and 100,000 devices with telemetry fed between
 * ticks (not timed). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vpp/dispatch.h"

static uint64_t rng = 0x2545F4914F6CDD1DULL;

static double urand(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (double)((rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* CPU time of this thread: robust to other processes on a shared machine
 * (preemption), unlike wall time; both are reported. */
static double cpu_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmpd(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

static void report(const char *what, size_t n, double *t, double *c, int runs)
{
	qsort(t, (size_t)runs, sizeof(*t), cmpd);
	qsort(c, (size_t)runs, sizeof(*c), cmpd);
	printf("%-8s %8zu devices  runs %4d  wall median %8.3f ms p99 %8.3f ms  "
	       "cpu median %8.3f ms p99 %8.3f ms\n",
	       what, n, runs, t[runs / 2] / 1e3, t[(int)ceil(0.99 * runs) - 1] / 1e3,
	       c[runs / 2] / 1e3, c[(int)ceil(0.99 * runs) - 1] / 1e3);
}

static void random_ratings(vpp_device_ratings *r)
{
	r->rated_charge_kw = 3 + 7 * urand();
	r->rated_discharge_kw = 3 + 7 * urand();
	r->capacity_kwh = 5 + 15 * urand();
	r->min_soc = 0.05 + 0.1 * urand();
	r->max_soc = 0.9 + 0.1 * urand();
	r->ramp_kw_per_s = urand() < 0.5 ? 0 : 1 + 4 * urand();
}

static int bench_alloc(size_t n, int runs)
{
	double *a = malloc(n * sizeof(double)), *ed = malloc(n * sizeof(double));
	double *ec = malloc(n * sizeof(double)), *lo = malloc(n * sizeof(double));
	double *hi = malloc(n * sizeof(double)), *p = malloc(n * sizeof(double));
	double *t = malloc((size_t)runs * sizeof(double)), dmin = 0, dmax = 0;
	double *cu = malloc((size_t)runs * sizeof(double));
	vpp_allocator *al;
	vpp_alloc_input in = {n, a, ed, ec, lo, hi};
	vpp_alloc_result res;

	if (!a || !ed || !ec || !lo || !hi || !p || !t || !cu || vpp_allocator_new(&al) != 0)
		return 1;
	for (size_t i = 0; i < n; i++) {
		vpp_device_ratings r;
		vpp_device_limits lim;

		random_ratings(&r);
		vpp_device_limits_compute(&r, urand(), 10 * urand() - 5, 1, 1e-3, &lim);
		a[i] = urand() < 0.02 ? 0 : 0.2 + 0.8 * urand();
		ed[i] = lim.e_dis_kwh;
		ec[i] = lim.e_chg_kwh;
		lo[i] = lim.lo_kw;
		hi[i] = lim.hi_kw;
		if (a[i] > 0) {
			dmin += a[i] * lo[i];
			dmax += a[i] * hi[i];
		}
	}
	/* Warm-up sizes the allocator's scratch, as the first tick would. */
	vpp_allocate(al, &in, 0.5 * dmax, p, &res);
	for (int k = 0; k < runs; k++) {
		double target = dmin + (dmax - dmin) * (0.05 + 0.9 * urand()), t0, c0;

		t0 = now_us();
		c0 = cpu_us();
		if (vpp_allocate(al, &in, target, p, &res) != 0 || !res.feasible)
			return 1;
		cu[k] = cpu_us() - c0;
		t[k] = now_us() - t0;
	}
	report("allocate", n, t, cu, runs);
	vpp_allocator_free(al);
	free(a);
	free(ed);
	free(ec);
	free(lo);
	free(hi);
	free(p);
	free(t);
	free(cu);
	return 0;
}

static int bench_tick(size_t n, int runs)
{
	double *t = malloc((size_t)runs * sizeof(double));
	double *cu = malloc((size_t)runs * sizeof(double));
	int64_t now = 1700000000000;
	vpp_fleet *f;
	vpp_tick_output o;
	size_t sent = 0;

	if (t == NULL || cu == NULL || vpp_fleet_new(NULL, &f) != 0)
		return 1;
	for (size_t i = 0; i < n; i++) {
		vpp_device_ratings r;
		char id[32];
		uint32_t s;

		random_ratings(&r);
		snprintf(id, sizeof(id), "bench-%07zu", i);
		if (vpp_fleet_add(f, id, &r, &s) != 0 || vpp_fleet_connect(f, s, now) != 0)
			return 1;
	}
	vpp_fleet_set_target(f, 2.0 * (double)n, now + 3600000, 0, now);
	for (int k = -3; k < runs; k++) {
		double t0, c0;

		/* Every device reports once per tick, following its setpoint. */
		for (uint32_t s = 0; s < n; s++) {
			vpp_telemetry tm = {0};
			vpp_device_info di;

			vpp_fleet_device_info(f, s, now, &di);
			tm.seq = (uint64_t)(k + 10);
			tm.measured_at_ms = tm.received_at_ms = now - 50;
			tm.power_kw = di.setpoint_kw * (s % 20 == 0 ? 0.5 : 1.0);
			tm.power_sigma_kw = 0.05;
			tm.soc = 0.2 + 0.6 * (double)(s % 97) / 97.0;
			tm.soc_sigma = 0.01;
			vpp_fleet_telemetry(f, s, &tm);
		}
		t0 = now_us();
		c0 = cpu_us();
		if (vpp_fleet_tick(f, now, &o) != 0)
			return 1;
		if (k >= 0) {
			cu[k] = cpu_us() - c0;
			t[k] = now_us() - t0;
			sent += o.n_commands;
		}
		for (size_t i = 0; i < o.n_commands; i++) {
			const vpp_command *c = &o.commands[i];

			vpp_fleet_command_sent(f, c->slot, c->seq, c->power_kw, c->valid_until_ms,
					       now);
			vpp_fleet_ack(f, c->slot, c->seq, 1, now + 20);
		}
		now += 1000;
	}
	report("tick", n, t, cu, runs);
	printf("           (%.0f commands per tick on average)\n", (double)sent / runs);
	vpp_fleet_free(f);
	free(t);
	free(cu);
	return 0;
}

int main(int argc, char **argv)
{
	int runs = argc > 1 ? atoi(argv[1]) : 200;

	if (runs < 10)
		runs = 10;
	if (bench_alloc(1000, runs) || bench_alloc(10000, runs) || bench_alloc(100000, runs) ||
	    bench_alloc(1000000, runs / 4 > 10 ? runs / 4 : 10))
		return 1;
	if (bench_tick(10000, runs / 4 > 10 ? runs / 4 : 10) ||
	    bench_tick(100000, runs / 4 > 10 ? runs / 4 : 10))
		return 1;
	return 0;
}
