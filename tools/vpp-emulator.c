/* vpp-emulator: a fleet of simulated home batteries, each with its own mTLS
 * gRPC session to vppd's DeviceLink service, on several threads. It knows
 * the truth (true power, latencies, fan-out, faults) and writes it as a JSON
 * report: the ground truth tests and benchmarks compare vpp against.
 *
 * This file is the program layer: configuration, the fleet, the threads,
 * signals, the duration, the progress line and the report. */
#include "emulator/emul_int.h"
#include "vpp/error.h"
#include "vpp/log.h"
#include "vpp/proc.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	vpp__emul_fleet fleet;
	uv_loop_t *loop;
	uv_signal_t sigint, sigterm;
	uv_timer_t duration, progress;
	uint64_t last_progress_ms, last_setpoints;
} app;

static void stop_main(app *a, const char *reason)
{
	if (a->fleet.stop_reason)
		return;
	a->fleet.stop_reason = reason;
	uv_stop(a->loop);
}

static void on_signal(uv_signal_t *s, int signum)
{
	stop_main(s->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void on_duration(uv_timer_t *t)
{
	stop_main(t->data, "duration");
}

static void on_progress(uv_timer_t *t)
{
	app *a = t->data;
	uint64_t now = uv_now(a->loop);
	vpp__emul_progress(&a->fleet, (double)(now - a->last_progress_ms) / 1000.0,
	                   &a->last_setpoints, stderr);
	a->last_progress_ms = now;
}

/* 100,000 sessions need as many descriptors: say so when the hard limit
 * is still not enough. */
static void raise_nofile(size_t need)
{
	unsigned long long soft = vpp_proc_raise_fd_limit(NULL);
	if (soft && soft < need)
		vpp_log(VPP_LOG_WARN, "emulator",
		        "open-file limit %llu is below the %zu this fleet needs (ulimit -n)", soft,
		        need);
}

int main(int argc, char **argv)
{
	vpp__emul_config cfg;
	char err[1024];
	vpp_proc_tune_malloc();
	int rv = vpp__emul_config_load(&cfg, argc, argv, err, sizeof(err));
	if (rv == 1) {
		vpp__emul_config_free(&cfg);
		return 0;
	}
	if (rv != 0) {
		fprintf(stderr, "vpp-emulator: %s\n", err);
		vpp__emul_config_free(&cfg);
		return 2;
	}
	vpp_log_level lvl;
	if (vpp_log_level_parse(cfg.log_level, &lvl) != 0) {
		fprintf(
		    stderr,
		    "vpp-emulator: --log-level '%s': expected debug, info, warn, error or off\n",
		    cfg.log_level);
		vpp__emul_config_free(&cfg);
		return 2;
	}
	vpp_log_set_level(lvl);
	signal(SIGPIPE, SIG_IGN);

	size_t n = (size_t)cfg.devices;
	int nthreads = (int)cfg.threads;
	raise_nofile(n + 64);
	app a = {0};
	int status = 1;
	uint8_t *faults = malloc(n);
	vpp__emul_dev *devs = calloc(n, sizeof(*devs));
	vpp__emul_worker *workers = calloc((size_t)nthreads, sizeof(*workers));
	if (!faults || !devs || !workers) {
		fprintf(stderr, "vpp-emulator: out of memory for %zu devices\n", n);
		goto out_free;
	}
	double frac[VPP__EMUL_F__COUNT] = {0};
	frac[VPP__EMUL_F_OFFLINE] = cfg.offline;
	frac[VPP__EMUL_F_FLAKY] = cfg.flaky;
	frac[VPP__EMUL_F_IGNORE] = cfg.ignore;
	frac[VPP__EMUL_F_PARTIAL] = cfg.partial;
	frac[VPP__EMUL_F_LATE_ACK] = cfg.late_ack;
	frac[VPP__EMUL_F_MALFORMED] = cfg.malformed;
	if (vpp__emul_faults_assign(frac, n, (uint64_t)cfg.seed, faults) != 0) {
		fprintf(stderr, "vpp-emulator: cannot assign faults\n");
		goto out_free;
	}

	int64_t start_us = vpp__emul_now_us();
	int started = 0, running = 0;
	for (int t = 0; t < nthreads; t++) {
		size_t lo = n * (size_t)t / (size_t)nthreads,
		       hi = n * (size_t)(t + 1) / (size_t)nthreads;
		if (vpp__emul_worker_init(&workers[t], t, &cfg, devs + lo, hi - lo, start_us) !=
		    0) {
			fprintf(stderr, "vpp-emulator: cannot create loop %d\n", t);
			goto out_workers;
		}
		for (size_t i = lo; i < hi; i++)
			vpp__emul_dev_init(&devs[i], &workers[t], (uint32_t)i, faults[i]);
		started = t + 1;
	}
	a.fleet = (vpp__emul_fleet){.cfg = &cfg,
	                            .workers = workers,
	                            .nworkers = nthreads,
	                            .devs = devs,
	                            .ndevs = n,
	                            .start_us = start_us};
	a.loop = uv_default_loop();
	uv_signal_init(a.loop, &a.sigint);
	uv_signal_init(a.loop, &a.sigterm);
	a.sigint.data = a.sigterm.data = &a;
	uv_signal_start(&a.sigint, on_signal, SIGINT);
	uv_signal_start(&a.sigterm, on_signal, SIGTERM);
	uv_timer_init(a.loop, &a.duration);
	uv_timer_init(a.loop, &a.progress);
	a.duration.data = a.progress.data = &a;
	if (cfg.duration > 0)
		uv_timer_start(&a.duration, on_duration, (uint64_t)(cfg.duration * 1000.0), 0);
	if (cfg.progress_s > 0)
		uv_timer_start(&a.progress, on_progress, (uint64_t)cfg.progress_s * 1000,
		               (uint64_t)cfg.progress_s * 1000);
	a.last_progress_ms = uv_now(a.loop);

	vpp_log(VPP_LOG_INFO, "emulator", "%zu devices (%s%05lld..) to %s on %d threads", n,
	        cfg.device_prefix, (long long)cfg.first_index, cfg.server, nthreads);
	for (int t = 0; t < nthreads; t++) {
		if (vpp__emul_worker_start(&workers[t]) != 0) {
			fprintf(stderr, "vpp-emulator: cannot start thread %d\n", t);
			a.fleet.stop_reason = "thread start failed";
			break;
		}
		running = t + 1;
	}
	if (!a.fleet.stop_reason)
		uv_run(a.loop, UV_RUN_DEFAULT);

	for (int t = 0; t < running; t++)
		vpp__emul_worker_stop(&workers[t]);
	a.fleet.end_us = vpp__emul_now_us();
	if (cfg.progress_s > 0)
		vpp__emul_progress(&a.fleet, (double)(uv_now(a.loop) - a.last_progress_ms) / 1000.0,
		                   &a.last_setpoints, stderr);
	status = running == nthreads ? 0 : 1;
	if (cfg.report) {
		if (vpp__emul_report_write(&a.fleet, cfg.report) != 0) {
			fprintf(stderr, "vpp-emulator: cannot write the report to %s\n",
			        cfg.report);
			status = 1;
		}
	}
	uv_close((uv_handle_t *)&a.sigint, NULL);
	uv_close((uv_handle_t *)&a.sigterm, NULL);
	uv_close((uv_handle_t *)&a.duration, NULL);
	uv_close((uv_handle_t *)&a.progress, NULL);
	uv_run(a.loop, UV_RUN_DEFAULT);
	uv_loop_close(a.loop);
out_workers:
	for (int t = 0; t < started; t++) {
		if (t >= running) {
			/* Never ran: close its handles on its loop here. */
			uv_close((uv_handle_t *)&workers[t].wheel.timer, NULL);
			uv_close((uv_handle_t *)&workers[t].tick, NULL);
			uv_close((uv_handle_t *)&workers[t].pace, NULL);
			uv_close((uv_handle_t *)&workers[t].late_timer, NULL);
			uv_close((uv_handle_t *)&workers[t].stop_async, NULL);
			uv_run(&workers[t].loop, UV_RUN_DEFAULT);
		}
		for (size_t i = 0; i < workers[t].ndevs; i++)
			vpp__emul_dev_release(&workers[t].devs[i]);
		vpp__emul_worker_free(&workers[t]);
	}
out_free:
	free(workers);
	free(devs);
	free(faults);
	vpp__emul_config_free(&cfg);
	return status;
}
