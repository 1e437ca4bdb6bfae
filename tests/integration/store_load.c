/* store_load: drives the real store library for the integration tests and
 * the benchmark.
 *
 *   store_load load --db CONNINFO --journal DIR --rows N [--devices D]
 *              [--from K] [--rate R] [--base-ms T] [--poison P] [--wait-s S]
 *   store_load bad  --db CONNINFO --journal DIR
 *   store_load api  --db CONNINFO --journal DIR
 *   store_load dump --rows N [--devices D] [--base-ms T] > rows.copy
 *
 * load: registers D devices and submits rows K..N-1 (deterministic: row i
 * is device i % D, seq i / D; see row_make), at R rows/s (0 = as fast as
 * the queue takes them), printing "progress ..." lines every 100 ms; then
 * waits until every row is committed and the journal is empty, stops the
 * store and prints "done ...". It can be SIGKILLed at any point and started
 * again with the same journal and a lower --from: what was journaled is
 * replayed, what is sent twice is stored once. Every P-th row (P > 0) gets
 * power 666, which the test's CHECK constraint refuses.
 *
 * bad: submits invalid rows and prints "submit <case> <rv>", then the
 * store's rejected counters as "metric <line>".
 *
 * api: exercises every other write and the reads, printing one line per
 * result for the test to compare with the database.
 *
 * dump: writes rows 0..N-1 to stdout in the COPY BINARY format the store
 * sends (bench/store_bench.py feeds it to psql as the raw-COPY baseline). */
#include "../../server/store/store_int.h"
#include "vpp/error.h"
#include "vpp/metrics.h"
#include "vpp/store.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *db, *journal, *mode;
static long long nrows = 1000, ndev = 100, from, rate, poison, wait_s = 120, batch = 0, queue = 0,
                 flush_ms = 0;
static long long base_ms;

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* Row |i|: every value an exact binary fraction, so the test can compare
 * integers. The test (tests/integration/store_pg.py) mirrors this. */
static void row_make(long long i, vpp_telemetry_row *r)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->device_id, sizeof(r->device_id), "dev-%05lld", i % ndev);
	r->seq = i / ndev;
	r->measured_at_ms = base_ms + r->seq * 1000 + i % ndev;
	r->received_at_ms = now_ms();
	r->power_kw = (double)((i * 7919) % 20001 - 10000) / 4.0;
	if (poison > 0 && i % poison == poison - 1)
		r->power_kw = 666;
	r->power_sigma_kw = (double)(i % 13) / 8.0;
	r->soc = (double)(i % 1025) / 1024.0;
	r->soc_sigma = (double)(i % 7) / 64.0;
	r->quality = (uint32_t)(i % 65536) | (i % 3 == 0 ? 0x80000000u : 0);
}

static void device_make(long long d, vpp_store_device *info)
{
	memset(info, 0, sizeof(*info));
	snprintf(info->device_id, sizeof(info->device_id), "dev-%05lld", d);
	snprintf(info->firmware, sizeof(info->firmware), "fw-%lld", d % 4);
	info->rated_charge_kw = 5;
	info->rated_discharge_kw = 5;
	info->capacity_kwh = 13.5;
	info->min_soc = 0.1;
	info->max_soc = 0.95;
	info->ramp_kw_per_s = 2.5;
	info->last_seen_ms = now_ms();
}

static void options(vpp_store_options *o)
{
	vpp_store_options_init(o);
	o->conninfo = db;
	o->node_id = "node-test";
	o->journal_dir = journal;
	o->reconnect_min_ms = 50;
	o->reconnect_max_ms = 500;
	o->stop_timeout_ms = 10000;
	if (batch)
		o->batch_rows = (size_t)batch;
	if (queue)
		o->queue_rows = (size_t)queue;
	if (flush_ms)
		o->flush_ms = flush_ms;
}

static void print_stats(const char *tag, vpp_store *s, long long first)
{
	vpp_store_stats st;
	vpp_store_get_stats(s, &st);
	printf("%s submitted=%" PRIu64 " durable_upto=%llu committed=%" PRIu64 " journaled=%" PRIu64
	       " replayed=%" PRIu64 " already=%" PRIu64 " rejected=%" PRIu64 " queue=%" PRIu64 " journal_bytes=%" PRIu64
	       " db_up=%d spilling=%d lag_ms=%" PRId64 " max_lag_ms=%" PRId64 " rows_lost=%" PRIu64
	       " writes_lost=%" PRIu64 "\n",
	       tag, st.submitted, (unsigned long long)(first + (long long)st.durable), st.committed,
	       st.journaled, st.replayed, st.already_stored, st.rejected, st.queue_depth, st.journal_bytes, st.db_up,
	       st.spilling, st.last_lag_ms, st.max_lag_ms, st.rows_lost, st.writes_lost);
	fflush(stdout);
}

static bool drained(vpp_store *s)
{
	vpp_store_stats st;
	vpp_store_get_stats(s, &st);
	return st.db_up && !st.spilling && st.journal_bytes == 0 && st.queue_depth == 0 &&
	       st.durable == st.submitted;
}

static int wait_drained(vpp_store *s, long long first)
{
	double deadline = mono_s() + (double)wait_s, next = 0;
	while (!drained(s)) {
		if (mono_s() > deadline) {
			print_stats("timeout", s, first);
			return 1;
		}
		if (mono_s() >= next) {
			print_stats("progress", s, first);
			next = mono_s() + 0.1;
		}
		sleep_ms(10);
	}
	return 0;
}

static int run_load(void)
{
	vpp_store_options o;
	vpp_store *s;
	options(&o);
	int rv = vpp_store_start(&o, &s);
	if (rv != 0) {
		fprintf(stderr, "store_load: start: %s\n", vpp_strerror(rv));
		return 2;
	}
	for (long long d = 0; d < ndev; d++) {
		vpp_store_device info;
		device_make(d, &info);
		while ((rv = vpp_store_upsert_device(s, &info)) == VPP_EFULL)
			sleep_ms(1);
	}
	double t0 = mono_s(), next = 0;
	long long fulls = 0;
	for (long long i = from; i < nrows; i++) {
		vpp_telemetry_row r;
		row_make(i, &r);
		if (rate > 0) {
			double due = t0 + (double)(i - from) / (double)rate;
			double now = mono_s();
			if (due > now + 0.001)
				sleep_ms((long)((due - now) * 1000));
		}
		while ((rv = vpp_store_submit_telemetry(s, &r)) == VPP_EFULL) {
			fulls++;
			sleep_ms(1);
		}
		if (rv != 0) {
			fprintf(stderr, "store_load: row %lld: %s\n", i, vpp_strerror(rv));
			return 2;
		}
		if ((i & 1023) == 0 && mono_s() >= next) {
			print_stats("progress", s, from);
			next = mono_s() + 0.1;
		}
	}
	double t_sub = mono_s() - t0;
	rv = wait_drained(s, from);
	double t_all = mono_s() - t0;
	print_stats(rv == 0 ? "drained" : "undrained", s, from);
	vpp_store_stop(s);
	printf("done rows=%lld submit_s=%.3f total_s=%.3f rows_per_s=%.0f queue_full_waits=%lld\n",
	       nrows - from, t_sub, t_all, (double)(nrows - from) / t_all, fulls);
	return rv;
}

static void print_rejections(void)
{
	char *text;
	size_t len;
	if (vpp_metrics_render(&text, &len) != 0)
		return;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
		if (strncmp(line, "vpp_store_", 10) == 0)
			printf("metric %s\n", line);
	free(text);
}

static int run_bad(void)
{
	vpp_store_options o;
	vpp_store *s;
	options(&o);
	o.max_future_ms = 60000;
	o.max_past_ms = 3600000;
	if (vpp_store_start(&o, &s) != 0)
		return 2;
	vpp_store_device info;
	device_make(0, &info);
	vpp_store_upsert_device(s, &info);
	/* Let the registry load, so the unknown-device check is armed. */
	double deadline = mono_s() + 20;
	while (!vpp_store_ready(s, NULL, 0) && mono_s() < deadline)
		sleep_ms(10);
	sleep_ms(300);
	struct {
		const char *name;
		vpp_telemetry_row r;
	} cases[12];
	int n = 0;
	for (int k = 0; k < 12; k++)
		row_make(k, &cases[k].r), cases[k].r.seq = 1000 + k,
		                          snprintf(cases[k].r.device_id, VPP_ID_CAP, "dev-00000");
	cases[n].name = "nan_power", cases[n++].r.power_kw = NAN;
	cases[n].name = "inf_sigma", cases[n++].r.power_sigma_kw = INFINITY;
	cases[n].name = "soc_high", cases[n++].r.soc = 1.5;
	cases[n].name = "soc_low", cases[n++].r.soc = -0.01;
	cases[n].name = "future", cases[n++].r.measured_at_ms = now_ms() + 3600000;
	cases[n].name = "past", cases[n++].r.measured_at_ms = now_ms() - 86400000LL * 400;
	cases[n].name = "neg_sigma", cases[n++].r.soc_sigma = -1;
	cases[n].name = "empty_id", cases[n++].r.device_id[0] = 0;
	cases[n].name = "unknown_device";
	snprintf(cases[n++].r.device_id, VPP_ID_CAP, "no-such-device");
	cases[n].name = "good_1", n++;
	cases[n].name = "good_2", cases[n].r.seq = 2000, n++;
	for (int k = 0; k < n; k++) {
		cases[k].r.measured_at_ms =
		    strcmp(cases[k].name, "future") == 0 || strcmp(cases[k].name, "past") == 0
		        ? cases[k].r.measured_at_ms
		        : now_ms() - 1000;
		int rv = vpp_store_submit_telemetry(s, &cases[k].r);
		printf("submit %s %d\n", cases[k].name, rv);
	}
	/* A device whose registration trails its first row (it comes from
	 * another thread in vppd): the row waits for it. */
	vpp_telemetry_row late;
	row_make(0, &late);
	snprintf(late.device_id, VPP_ID_CAP, "dev-late");
	late.seq = 7;
	late.measured_at_ms = now_ms() - 1000;
	printf("submit late_device %d\n", vpp_store_submit_telemetry(s, &late));
	sleep_ms(500);
	snprintf(info.device_id, VPP_ID_CAP, "dev-late");
	vpp_store_upsert_device(s, &info);
	fflush(stdout);
	int rv = wait_drained(s, 0);
	print_stats("drained", s, 0);
	print_rejections();
	vpp_store_stop(s);
	return rv;
}

/* ---- api ---- */

typedef struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done;
} waiter;

static waiter W = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

static void signal_done(void)
{
	pthread_mutex_lock(&W.lock);
	W.done++;
	pthread_cond_signal(&W.cond);
	pthread_mutex_unlock(&W.lock);
}

static void wait_done(int n)
{
	pthread_mutex_lock(&W.lock);
	while (W.done < n)
		pthread_cond_wait(&W.cond, &W.lock);
	pthread_mutex_unlock(&W.lock);
}

static void on_setpoint(int status, const vpp_setpoint *sp, bool created, void *ud)
{
	if (status == 0)
		printf("setpoint %s status=0 id=%" PRId64 " created=%d target=%g reason=%s\n",
		       (const char *)ud, sp->setpoint_id, created, sp->target_kw, sp->reason);
	else
		printf("setpoint %s status=%d\n", (const char *)ud, status);
	fflush(stdout);
	signal_done();
}

static void on_devices(int status, const vpp_store_device_record *d, size_t n, void *ud)
{
	printf("devices %s status=%d n=%zu", (const char *)ud, status, n);
	for (size_t i = 0; i < n; i++)
		printf(" %s:%s:%g:%d:%g", d[i].info.device_id, d[i].info.firmware,
		       d[i].info.capacity_kwh, d[i].has_state,
		       d[i].has_state ? d[i].state.soc : -1.0);
	printf("\n");
	fflush(stdout);
	signal_done();
}

static void on_telemetry(int status, const vpp_telemetry_row *r, size_t n, void *ud)
{
	printf("telemetry %s status=%d n=%zu", (const char *)ud, status, n);
	for (size_t i = 0; i < n; i++)
		printf(" %" PRId64 ":%g:%u", r[i].seq, r[i].power_kw, r[i].quality);
	printf("\n");
	fflush(stdout);
	signal_done();
}

static int run_api(void)
{
	vpp_store_options o;
	vpp_store *s;
	options(&o);
	if (vpp_store_start(&o, &s) != 0)
		return 2;
	double deadline = mono_s() + 20;
	while (!vpp_store_ready(s, NULL, 0) && mono_s() < deadline)
		sleep_ms(10);
	int64_t t = now_ms();
	for (long long d = 0; d < 5; d++) {
		vpp_store_device info;
		device_make(d, &info);
		vpp_store_upsert_device(s, &info);
	}
	/* Two state updates for dev-00001: only the newer may win. */
	vpp_store_device_state st[3];
	memset(st, 0, sizeof(st));
	for (int k = 0; k < 3; k++) {
		snprintf(st[k].device_id, VPP_ID_CAP, "dev-%05d", k == 2 ? 1 : k);
		st[k].as_of_ms = t + k;
		st[k].soc = 0.25 * (k + 1);
		st[k].availability = 1;
		st[k].reliability = 0.9;
		st[k].status = k == 2 ? VPP_STORE_DEVICE_DEGRADED : VPP_STORE_DEVICE_ONLINE;
	}
	vpp_store_put_device_states(s, st, 3);
	st[0].as_of_ms = t - 100000; /* older than what is stored: ignored */
	st[0].soc = 0.99;
	vpp_store_put_device_states(s, st, 1);
	vpp_store_tick_row tick;
	memset(&tick, 0, sizeof(tick));
	tick.tick_ms = t;
	tick.target_kw = 100;
	tick.adjusted_target_kw = 101.5;
	tick.commanded_kw = 99;
	tick.measured_kw = (vpp_estimate_value){98, 2, 94.7, 101.3};
	tick.online = 4;
	tick.offline = 1;
	vpp_store_put_fleet_tick(s, &tick);
	vpp_store_put_device_event(s, "dev-00002", t, VPP_STORE_EVENT_DISCONNECT,
	                           "keepalive timeout");
	vpp_audit_entry a;
	memset(&a, 0, sizeof(a));
	a.at_ms = t;
	snprintf(a.principal, sizeof(a.principal), "alice");
	snprintf(a.action, sizeof(a.action), "SetFleetSetpoint");
	snprintf(a.request_id, sizeof(a.request_id), "req-1");
	snprintf(a.result, sizeof(a.result), "ok");
	vpp_store_put_audit(s, &a);
	vpp_store_heartbeat(s, t, "0.1.0");
	for (long long i = 0; i < 10; i++) {
		vpp_telemetry_row r;
		row_make(i * ndev + 1, &r); /* dev-00001, seq i */
		r.measured_at_ms = t - 10000 + i * 1000;
		vpp_store_submit_telemetry(s, &r);
	}
	int waits = 0;
	vpp_setpoint sp;
	memset(&sp, 0, sizeof(sp));
	snprintf(sp.request_id, sizeof(sp.request_id), "req-1");
	sp.target_kw = 4200;
	sp.valid_for_s = 900;
	snprintf(sp.reason, sizeof(sp.reason), "first");
	vpp_store_insert_setpoint(s, &sp, on_setpoint, "first");
	wait_done(++waits);
	sp.target_kw = 1;
	snprintf(sp.reason, sizeof(sp.reason), "retry");
	vpp_store_insert_setpoint(s, &sp, on_setpoint, "retry");
	wait_done(++waits);
	if (wait_drained(s, 0) != 0)
		return 1;
	vpp_store_list_devices(s, NULL, 2, on_devices, "page1");
	wait_done(++waits);
	vpp_store_list_devices(s, "dev-00001", 2, on_devices, "page2");
	wait_done(++waits);
	vpp_store_get_device(s, "dev-00001", on_devices, "get");
	wait_done(++waits);
	vpp_store_get_device(s, "nope", on_devices, "missing");
	wait_done(++waits);
	vpp_store_device_telemetry(s, "dev-00001", t - 5500, 100, on_telemetry, "recent");
	wait_done(++waits);
	print_stats("drained", s, 0);
	vpp_store_stop(s);
	return 0;
}

static int run_dump(void)
{
	vpp__buf b = {0};
	if (vpp__copy_header(&b) != 0)
		return 2;
	for (long long i = 0; i < nrows; i++) {
		vpp_telemetry_row r;
		row_make(i, &r);
		if (vpp__copy_row(&b, &r, "node-test") != 0)
			return 2;
		if (b.len > (1u << 20) || i == nrows - 1) {
			if (i == nrows - 1 && vpp__copy_trailer(&b) != 0)
				return 2;
			if (fwrite(b.p, 1, b.len, stdout) != b.len)
				return 2;
			b.len = 0;
		}
	}
	vpp__buf_free(&b);
	return fflush(stdout) == 0 ? 0 : 2;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: store_load load|bad|api --db CONNINFO --journal DIR ...\n");
		return 2;
	}
	mode = argv[1];
	for (int i = 2; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];
		if (strcmp(k, "--db") == 0)
			db = v;
		else if (strcmp(k, "--journal") == 0)
			journal = v;
		else if (strcmp(k, "--rows") == 0)
			nrows = atoll(v);
		else if (strcmp(k, "--devices") == 0)
			ndev = atoll(v);
		else if (strcmp(k, "--from") == 0)
			from = atoll(v);
		else if (strcmp(k, "--rate") == 0)
			rate = atoll(v);
		else if (strcmp(k, "--base-ms") == 0)
			base_ms = atoll(v);
		else if (strcmp(k, "--poison") == 0)
			poison = atoll(v);
		else if (strcmp(k, "--wait-s") == 0)
			wait_s = atoll(v);
		else if (strcmp(k, "--batch") == 0)
			batch = atoll(v);
		else if (strcmp(k, "--queue") == 0)
			queue = atoll(v);
		else if (strcmp(k, "--flush-ms") == 0)
			flush_ms = atoll(v);
		else {
			fprintf(stderr, "store_load: unknown option %s\n", k);
			return 2;
		}
	}
	if (base_ms == 0) /* the newest row measured a minute ago */
		base_ms = now_ms() - (nrows / (ndev > 0 ? ndev : 1)) * 1000 - 60000;
	if (strcmp(mode, "dump") == 0 && ndev > 0)
		return run_dump();
	if (!db || !journal || ndev < 1) {
		fprintf(stderr, "store_load: --db and --journal are required\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(mode, "load") == 0)
		return run_load();
	if (strcmp(mode, "bad") == 0)
		return run_bad();
	if (strcmp(mode, "api") == 0)
		return run_api();
	fprintf(stderr, "store_load: unknown mode %s\n", mode);
	return 2;
}
