/* One emulator thread: its own libuv loop with a contiguous share of the
 * fleet. It paces first connections (--connect-rate), advances every
 * battery each physics tick (connected or not: a battery keeps obeying its
 * lease when the link is down), records the true power once a second, and
 * sends the acks of late-ack devices when they are due. */
#include "emul_int.h"
#include "vpp/error.h"
#include "vpp/log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Pacing granularity: small enough that a rate of a few thousand per
 * second arrives as a stream, not as bursts. */
#define PACE_MS 5

static void record_second(vpp__emul_worker *w, int64_t second)
{
	double sum = 0, cmd = 0;
	for (size_t i = 0; i < w->ndevs; i++) {
		sum += w->devs[i].bat.power_kw;
		cmd += vpp__emul_battery_commanded(&w->devs[i].bat);
	}
	vpp__emul_sample s = {
	    .t_ms = w->start_us / 1000 + second * 1000,
	    .true_kw = sum,
	    .commanded_kw = cmd,
	    .connected = (uint32_t)atomic_load_explicit(&w->connected, memory_order_relaxed),
	};
	pthread_mutex_lock(&w->mu);
	if (w->nsamples == w->samples_cap) {
		size_t cap = w->samples_cap ? w->samples_cap * 2 : 256;
		vpp__emul_sample *v = realloc(w->samples, cap * sizeof(*v));
		if (!v) {
			pthread_mutex_unlock(&w->mu);
			return;
		}
		w->samples = v;
		w->samples_cap = cap;
	}
	w->samples[w->nsamples++] = s;
	pthread_mutex_unlock(&w->mu);
}

void vpp__emul_worker_sync(vpp__emul_worker *w, int64_t now_us)
{
	/* Samples are taken at whole seconds of the common time line: every
	 * battery is advanced to the boundary and recorded before anything
	 * (a tick, a telemetry report, a setpoint) moves one past it. */
	int64_t second = (now_us - w->start_us) / 1000000;
	while (w->last_second < second) {
		w->last_second++;
		double at = (double)w->last_second;
		for (size_t i = 0; i < w->ndevs; i++)
			vpp__emul_battery_advance(&w->devs[i].bat, at);
		record_second(w, w->last_second);
	}
}

static void on_tick(uv_timer_t *t)
{
	vpp__emul_worker *w = t->data;
	int64_t now = vpp__emul_now_us();
	vpp__emul_worker_sync(w, now);
	double now_s = vpp__emul_true_s(w, now);
	for (size_t i = 0; i < w->ndevs; i++)
		vpp__emul_battery_advance(&w->devs[i].bat, now_s);
}

static void on_pace(uv_timer_t *t)
{
	vpp__emul_worker *w = t->data;
	const vpp__emul_config *cfg = w->cfg;
	uint64_t now = uv_now(&w->loop);
	double rate = (double)cfg->connect_rate / (double)cfg->threads;
	size_t budget = w->ndevs;
	if (cfg->connect_rate > 0) {
		w->connect_credit += rate * (double)(now - w->pace_last_ms) / 1000.0;
		if (w->connect_credit > rate * 0.05 + 1)
			w->connect_credit = rate * 0.05 + 1; /* no burst after a stall */
		budget = (size_t)w->connect_credit;
		w->connect_credit -= (double)budget;
	}
	w->pace_last_ms = now;
	while (budget > 0 && w->next_connect < w->ndevs) {
		vpp__emul_dev *d = &w->devs[w->next_connect++];
		if (d->fault == VPP__EMUL_F_OFFLINE)
			continue;
		vpp__emul_dev_connect(d);
		budget--;
	}
	if (w->next_connect >= w->ndevs)
		uv_timer_stop(&w->pace);
}

static void on_late(uv_timer_t *t);

static void arm_late(vpp__emul_worker *w)
{
	if (!w->late_n) {
		uv_timer_stop(&w->late_timer);
		return;
	}
	int64_t wait = w->late[w->late_head].due_us - vpp__emul_now_us();
	uv_timer_start(&w->late_timer, on_late, wait > 0 ? (uint64_t)(wait + 999) / 1000 : 0, 0);
}

static void on_late(uv_timer_t *t)
{
	vpp__emul_worker *w = t->data;
	int64_t now = vpp__emul_now_us();
	while (w->late_n && w->late[w->late_head].due_us <= now) {
		vpp__emul_late *l = &w->late[w->late_head];
		vpp__emul_dev *d = &w->devs[l->dev];
		if (vpp__emul_dev_send_ack(d, l->session_no, l->seq, l->recv_us))
			vpp__emul_count(w, C_LATE_ACKS, 1);
		w->late_head = (w->late_head + 1) % w->late_cap;
		w->late_n--;
	}
	arm_late(w);
}

void vpp__emul_worker_late_ack(vpp__emul_worker *w, vpp__emul_dev *d, uint64_t seq)
{
	if (w->late_n == w->late_cap) {
		size_t cap = w->late_cap ? w->late_cap * 2 : 64;
		vpp__emul_late *v = malloc(cap * sizeof(*v));
		if (!v)
			return; /* the ack is lost, as on a real device out of memory */
		for (size_t i = 0; i < w->late_n; i++)
			v[i] = w->late[(w->late_head + i) % w->late_cap];
		free(w->late);
		w->late = v;
		w->late_cap = cap;
		w->late_head = 0;
	}
	int64_t now = vpp__emul_now_us();
	/* Every entry waits the same time, so the queue stays in due order. */
	w->late[(w->late_head + w->late_n) % w->late_cap] = (vpp__emul_late){
	    .dev = (uint32_t)(d - w->devs),
	    .session_no = d->session_no,
	    .seq = seq,
	    .recv_us = now,
	    .due_us = now + w->cfg->late_ack_ms * 1000,
	};
	if (w->late_n++ == 0)
		arm_late(w);
}

static void on_stop(uv_async_t *a)
{
	vpp__emul_worker *w = a->data;
	if (w->stopping)
		return;
	/* The last partial second is not a sample; the batteries are brought
	 * up to now for the final state in the report. */
	on_tick(&w->tick);
	w->stopping = true;
	uv_timer_stop(&w->tick);
	uv_timer_stop(&w->pace);
	uv_timer_stop(&w->late_timer);
	uv_close((uv_handle_t *)&w->tick, NULL);
	uv_close((uv_handle_t *)&w->pace, NULL);
	uv_close((uv_handle_t *)&w->late_timer, NULL);
	uv_close((uv_handle_t *)&w->stop_async, NULL);
	for (size_t i = 0; i < w->ndevs; i++)
		vpp__emul_dev_stop(&w->devs[i]);
	uv_timer_stop(&w->wheel.timer);
	uv_close((uv_handle_t *)&w->wheel.timer, NULL);
}

static void run(void *arg)
{
	vpp__emul_worker *w = arg;
	if (w->cfg->preload_tls) {
		/* Reading certificates costs CPU: done up front, the connect
		 * phase measures the server, not the emulator. */
		int64_t t0 = vpp__emul_now_us();
		size_t n = 0;
		for (size_t i = 0; i < w->ndevs && !atomic_load(&w->preload_abort); i++) {
			if (w->devs[i].fault == VPP__EMUL_F_OFFLINE)
				continue;
			if (vpp__emul_dev_load_tls(&w->devs[i]) == 0)
				n++;
		}
		vpp_log(VPP_LOG_INFO, "emulator", "thread %d: %zu device certificates loaded in %.1f s",
		        w->id, n, (double)(vpp__emul_now_us() - t0) / 1e6);
		uv_update_time(&w->loop);
		w->pace_last_ms = uv_now(&w->loop);
	}
	uv_run(&w->loop, UV_RUN_DEFAULT);
}

int vpp__emul_worker_init(vpp__emul_worker *w, int id, const vpp__emul_config *cfg,
                          vpp__emul_dev *devs, size_t ndevs, int64_t start_us)
{
	memset(w, 0, sizeof(*w));
	w->id = id;
	w->cfg = cfg;
	w->devs = devs;
	w->ndevs = ndevs;
	w->start_us = start_us;
	char ca[4096];
	snprintf(ca, sizeof(ca), "%s/ca.pem", cfg->certs);
	int rv = vpp_grpc_tls_client_new(ca, NULL, NULL, &w->tls);
	if (rv != 0) {
		vpp_log(VPP_LOG_ERROR, "emulator", "cannot load the server CA %s: %s", ca,
		        vpp_strerror(rv));
		return rv;
	}
	if (uv_loop_init(&w->loop) != 0) {
		vpp_grpc_tls_unref(w->tls);
		return VPP_EIO;
	}
	pthread_mutex_init(&w->mu, NULL);
	uv_async_init(&w->loop, &w->stop_async, on_stop);
	w->stop_async.data = w;
	uv_timer_init(&w->loop, &w->tick);
	uv_timer_init(&w->loop, &w->pace);
	uv_timer_init(&w->loop, &w->late_timer);
	w->tick.data = w->pace.data = w->late_timer.data = w;
	vpp__emul_wheel_init(&w->wheel, &w->loop, vpp__emul_dev_on_timer);
	return 0;
}

int vpp__emul_worker_start(vpp__emul_worker *w)
{
	uv_update_time(&w->loop);
	w->pace_last_ms = uv_now(&w->loop);
	uv_timer_start(&w->tick, on_tick, (uint64_t)w->cfg->physics_ms,
	               (uint64_t)w->cfg->physics_ms);
	uv_timer_start(&w->pace, on_pace, 0, PACE_MS);
	if (uv_thread_create(&w->thread, run, w) != 0)
		return VPP_EIO;
	return 0;
}

void vpp__emul_worker_stop(vpp__emul_worker *w)
{
	atomic_store(&w->preload_abort, true);
	uv_async_send(&w->stop_async);
	uv_thread_join(&w->thread);
}

void vpp__emul_worker_free(vpp__emul_worker *w)
{
	if (!w)
		return;
	uv_loop_close(&w->loop);
	vpp_grpc_tls_unref(w->tls);
	pthread_mutex_destroy(&w->mu);
	free(w->samples);
	free(w->late);
	vpp__emul_groups_free(&w->groups);
}
