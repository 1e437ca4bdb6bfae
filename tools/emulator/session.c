/* One emulated battery's session: a TLS connection with its own client
 * certificate, one DeviceLink/Connect stream on it. Hello first; after the
 * Welcome, telemetry every interval (with jitter), acks for setpoints,
 * pongs for pings. When the stream or connection ends, it reconnects after
 * a jittered exponential backoff (or the server's Backoff.retry_after_ms).
 * The flaky and malformed faults act here. All on the worker's loop. */
#include "emul_int.h"
#include "vpp/error.h"
#include "vpp/log.h"
#include "vpp/v1/device.pb-c.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CONNECT_PATH "/vpp.v1.DeviceLink/Connect"

int64_t vpp__emul_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

double vpp__emul_true_s(const vpp__emul_worker *w, int64_t us)
{
	return (double)(us - w->start_us) / 1e6;
}

/* The device's own clock: true time plus its offset. */
static int64_t device_ms(const vpp__emul_dev *d, int64_t now_us)
{
	return now_us / 1000 + d->clock_offset_ms;
}

void vpp__emul_dev_init(vpp__emul_dev *d, vpp__emul_worker *w, uint32_t index, uint8_t fault)
{
	const vpp__emul_config *cfg = w->cfg;
	memset(d, 0, sizeof(*d));
	d->w = w;
	d->index = index;
	d->fault = fault;
	d->state = S_IDLE;
	uint64_t global = (uint64_t)cfg->first_index + index;
	snprintf(d->id, sizeof(d->id), "%s%05llu", cfg->device_prefix, (unsigned long long)global);
	/* Seeded by the global index: a device is the same battery whichever
	 * process or thread runs it. */
	vpp__emul_rng_seed(&d->rng, (uint64_t)cfg->seed, global + 1);
	double s = cfg->rating_spread;
	vpp__emul_params p = {
	    .rated_charge_kw = cfg->rated_charge_kw * vpp__emul_rng_range(&d->rng, 1 - s, 1 + s),
	    .rated_discharge_kw =
	        cfg->rated_discharge_kw * vpp__emul_rng_range(&d->rng, 1 - s, 1 + s),
	    .capacity_kwh = cfg->capacity_kwh * vpp__emul_rng_range(&d->rng, 1 - s, 1 + s),
	    .min_soc = cfg->min_soc,
	    .max_soc = cfg->max_soc,
	    .ramp_kw_per_s = cfg->ramp_kw_per_s * vpp__emul_rng_range(&d->rng, 1 - s, 1 + s),
	    .charge_eff = cfg->charge_efficiency,
	    .discharge_eff = cfg->discharge_efficiency,
	    .tau_s = cfg->lag_tau_s,
	    .delay_s = (double)cfg->delay_ms / 1000.0,
	    .noise_kw = cfg->noise_kw,
	    .soc_sigma = cfg->soc_sigma,
	    .partial_factor = fault == VPP__EMUL_F_PARTIAL ? cfg->partial_factor : 1.0,
	    .ignore = fault == VPP__EMUL_F_IGNORE,
	};
	double soc = vpp__emul_rng_range(&d->rng, cfg->initial_soc_min, cfg->initial_soc_max);
	if (cfg->initial_soc_max <= cfg->initial_soc_min)
		soc = cfg->initial_soc_min;
	d->clock_offset_ms = (int64_t)llround(vpp__emul_rng_range(
	    &d->rng, -(double)cfg->clock_offset_ms, (double)cfg->clock_offset_ms));
	vpp__emul_battery_init(&d->bat, &p, soc, 0.0);
}

/* Returns whether the message was queued on the stream: the counters of
 * what was sent count only those. */
static bool send_msg(vpp__emul_dev *d, const Vpp__V1__DeviceMessage *m)
{
	uint8_t buf[512];
	size_t len = vpp__v1__device_message__get_packed_size(m);
	if (!d->call || len > sizeof(buf)) {
		vpp__emul_count(d->w, C_SEND_FAILED, 1);
		return false;
	}
	vpp__v1__device_message__pack(m, buf);
	if (vpp_grpc_call_send(d->call, buf, len) != 0) {
		/* EFULL: the server is not reading; a meter does not queue. */
		vpp__emul_count(d->w, C_SEND_FAILED, 1);
		return false;
	}
	vpp__emul_count(d->w, C_MSGS_SENT, 1);
	return true;
}

static void send_hello(vpp__emul_dev *d)
{
	const vpp__emul_params *p = &d->bat.p;
	Vpp__V1__DeviceMessage m = VPP__V1__DEVICE_MESSAGE__INIT;
	Vpp__V1__Hello h = VPP__V1__HELLO__INIT;
	m.msg_case = VPP__V1__DEVICE_MESSAGE__MSG_HELLO;
	m.hello = &h;
	h.device_id = d->id;
	h.firmware = d->w->cfg->firmware;
	h.rated_charge_kw = p->rated_charge_kw;
	h.rated_discharge_kw = p->rated_discharge_kw;
	h.capacity_kwh = p->capacity_kwh;
	h.min_soc = p->min_soc;
	h.max_soc = p->max_soc;
	h.ramp_kw_per_s = p->ramp_kw_per_s;
	send_msg(d, &m);
}

static void send_telemetry(vpp__emul_dev *d, int64_t now_us)
{
	vpp__emul_worker_sync(d->w, now_us);
	vpp__emul_battery_advance(&d->bat, vpp__emul_true_s(d->w, now_us));
	Vpp__V1__DeviceMessage m = VPP__V1__DEVICE_MESSAGE__INIT;
	Vpp__V1__Telemetry t = VPP__V1__TELEMETRY__INIT;
	m.msg_case = VPP__V1__DEVICE_MESSAGE__MSG_TELEMETRY;
	m.telemetry = &t;
	t.seq = ++d->seq;
	t.measured_at_ms = device_ms(d, now_us);
	vpp__emul_battery_measure(&d->bat, &d->rng, &t.power_kw, &t.soc);
	t.power_sigma_kw = d->bat.p.noise_kw;
	t.soc_sigma = d->bat.p.soc_sigma;
	t.quality = 0;
	if (send_msg(d, &m))
		vpp__emul_count(d->w, C_TELEMETRY_SENT, 1);
}

/* An Ack of |seq|: accepted, or refused for |why|. */
static bool send_ack_msg(vpp__emul_dev *d, uint64_t seq, const char *why)
{
	Vpp__V1__DeviceMessage m = VPP__V1__DEVICE_MESSAGE__INIT;
	Vpp__V1__Ack a = VPP__V1__ACK__INIT;
	m.msg_case = VPP__V1__DEVICE_MESSAGE__MSG_ACK;
	m.ack = &a;
	a.setpoint_seq = seq;
	a.accepted = why == NULL;
	if (why)
		a.reason = (char *)why;
	return send_msg(d, &m);
}

bool vpp__emul_dev_send_ack(vpp__emul_dev *d, uint32_t session_no, uint64_t seq, int64_t recv_us)
{
	if (d->state != S_UP || d->session_no != session_no || !d->call)
		return false;
	if (!send_ack_msg(d, seq, NULL))
		return false;
	vpp__emul_count(d->w, C_ACKS_SENT, 1);
	int64_t now = vpp__emul_now_us();
	vpp__emul_hist_add(&d->w->ack_hist, now > recv_us ? (uint64_t)(now - recv_us) : 0);
	return true;
}

static void on_setpoint(vpp__emul_dev *d, const Vpp__V1__Setpoint *sp, int64_t now_us)
{
	vpp__emul_worker *w = d->w;
	vpp__emul_count(w, C_SETPOINTS_RECV, 1);
	vpp__emul_worker_sync(w, now_us);
	vpp__emul_groups_add(&w->groups, sp->valid_until_ms, sp->server_time_ms, now_us, 1, now_us);
	/* The lease lasts valid_until - server_time from now, whatever either
	 * clock says. From a server that does not send its time, the end is
	 * mapped to the device clock with the skew learned from Welcome/Ping,
	 * then to true time. */
	/* In double and bounded to a day: hostile times neither overflow nor
	 * give a lease without an end. */
	double lease_ms = sp->server_time_ms > 0
	                      ? (double)sp->valid_until_ms - (double)sp->server_time_ms
	                      : (double)sp->valid_until_ms - (double)d->skew_ms -
	                            (double)d->clock_offset_ms - (double)now_us / 1000.0;
	lease_ms = lease_ms > 0 ? (lease_ms < 86400000.0 ? lease_ms : 86400000.0) : 0;
	int64_t until_us = now_us + (int64_t)(lease_ms * 1000.0);
	if (!isfinite(sp->power_kw)) {
		/* Refused, as a battery's controller would: the lease in force
		 * runs on, and the server hears why at once. */
		vpp__emul_count(w, C_SETPOINTS_REFUSED, 1);
		send_ack_msg(d, sp->seq, "power_kw is not a finite number");
		return;
	}
	vpp__emul_battery_command(&d->bat, sp->power_kw, vpp__emul_true_s(w, until_us),
	                          vpp__emul_true_s(w, now_us));
	if (d->fault == VPP__EMUL_F_LATE_ACK && w->cfg->late_ack_ms > 0)
		vpp__emul_worker_late_ack(w, d, sp->seq);
	else
		vpp__emul_dev_send_ack(d, d->session_no, sp->seq, now_us);
}

/* server clock − device clock. Each sample is the true offset minus the
 * message's delivery delay, so the largest one of a session is the best:
 * a delayed Ping does not move the lease ends later. */
static void learn_skew(vpp__emul_dev *d, int64_t server_ms, int64_t now_us, bool first)
{
	if (first) {
		d->skew_ms = 0; /* unknown until a server time arrives */
		d->skew_known = false;
	}
	if (server_ms <= 0 || server_ms > INT64_MAX / 2)
		return; /* no time given, or none a clock can show */
	int64_t skew = server_ms - device_ms(d, now_us);
	if (!d->skew_known || skew > d->skew_ms)
		d->skew_ms = skew;
	d->skew_known = true;
}

static void on_ping(vpp__emul_dev *d, const Vpp__V1__Ping *p, int64_t now_us)
{
	vpp__emul_count(d->w, C_PINGS_RECV, 1);
	learn_skew(d, p->server_time_ms, now_us, false);
	Vpp__V1__DeviceMessage m = VPP__V1__DEVICE_MESSAGE__INIT;
	Vpp__V1__Pong pong = VPP__V1__PONG__INIT;
	m.msg_case = VPP__V1__DEVICE_MESSAGE__MSG_PONG;
	m.pong = &pong;
	pong.ping_id = p->ping_id;
	pong.device_time_ms = device_ms(d, now_us);
	send_msg(d, &m);
}

static int64_t jittered_us(vpp__emul_dev *d, double mean_s)
{
	return (int64_t)(mean_s * vpp__emul_rng_range(&d->rng, 0.5, 1.5) * 1e6);
}

/* When the server's silence ends the session (0: never). */
static int64_t silence_deadline_us(const vpp__emul_dev *d)
{
	double s = d->w->cfg->server_silence_s;
	return s > 0 ? d->last_recv_us + (int64_t)(s * 1e6) : 0;
}

static void arm(vpp__emul_dev *d, int64_t now_us)
{
	int64_t next = d->next_telemetry_us, silent = silence_deadline_us(d);
	if (silent && silent < next)
		next = silent;
	if (d->next_drop_us && d->next_drop_us < next)
		next = d->next_drop_us;
	if (d->next_malformed_us && d->next_malformed_us < next)
		next = d->next_malformed_us;
	int64_t ms = (next - now_us + 999) / 1000;
	vpp__emul_wheel_arm(&d->w->wheel, &d->timer, ms > 0 ? (uint64_t)ms : 0);
}

static void on_welcome(vpp__emul_dev *d, const Vpp__V1__Welcome *wm, int64_t now_us)
{
	vpp__emul_worker *w = d->w;
	if (d->state != S_CONNECTING)
		return; /* a second Welcome changes nothing */
	d->state = S_UP;
	d->attempt = 0;
	d->ever_connected = true;
	d->welcomes++;
	atomic_fetch_add_explicit(&w->connected, 1, memory_order_relaxed);
	vpp__emul_count(w, C_SESSIONS, 1);
	d->interval_ms = wm->telemetry_interval_ms ? wm->telemetry_interval_ms
	                                           : (uint32_t)w->cfg->telemetry_interval_ms;
	learn_skew(d, wm->server_time_ms, now_us, true);
	/* The first report at a random point of the interval: a fleet that
	 * connected together does not report in lockstep. */
	d->next_telemetry_us =
	    now_us + (int64_t)(vpp__emul_rng_uniform(&d->rng) * d->interval_ms * 1000.0);
	d->next_drop_us =
	    d->fault == VPP__EMUL_F_FLAKY ? now_us + jittered_us(d, w->cfg->flaky_period_s) : 0;
	d->next_malformed_us = d->fault == VPP__EMUL_F_MALFORMED
	                           ? now_us + jittered_us(d, w->cfg->malformed_period_s)
	                           : 0;
	arm(d, now_us);
}

static void on_message(vpp_grpc_call *call, const uint8_t *data, size_t len)
{
	vpp__emul_dev *d = vpp_grpc_call_data(call);
	vpp__emul_count(d->w, C_MSGS_RECV, 1);
	int64_t now = vpp__emul_now_us();
	d->last_recv_us = now; /* the deadline moves when the timer next fires */
	Vpp__V1__ServerMessage *m = vpp__v1__server_message__unpack(NULL, len, data);
	if (!m) {
		vpp__emul_count(d->w, C_BAD_SERVER_MSG, 1);
		return;
	}
	switch (m->msg_case) {
	case VPP__V1__SERVER_MESSAGE__MSG_WELCOME:
		on_welcome(d, m->welcome, now);
		break;
	case VPP__V1__SERVER_MESSAGE__MSG_SETPOINT:
		on_setpoint(d, m->setpoint, now);
		break;
	case VPP__V1__SERVER_MESSAGE__MSG_PING:
		on_ping(d, m->ping, now);
		break;
	case VPP__V1__SERVER_MESSAGE__MSG_BACKOFF:
		vpp__emul_count(d->w, C_BACKOFFS_RECV, 1);
		d->retry_after_ms = m->backoff->retry_after_ms;
		break;
	default:
		vpp__emul_count(d->w, C_BAD_SERVER_MSG, 1);
		break;
	}
	vpp__v1__server_message__free_unpacked(m, NULL);
}

static void on_status(vpp_grpc_call *call, vpp_grpc_status st, const char *msg)
{
	vpp__emul_dev *d = vpp_grpc_call_data(call);
	vpp__emul_worker *w = d->w;
	d->call = NULL;
	vpp__emul_wheel_cancel(&w->wheel, &d->timer);
	if (d->state == S_UP) {
		atomic_fetch_sub_explicit(&w->connected, 1, memory_order_relaxed);
		vpp__emul_count(w, C_DISCONNECTS, 1);
	} else if (d->state == S_CONNECTING) {
		vpp__emul_count(w, C_CONNECT_FAILED, 1);
	}
	if (d->state != S_STOPPED && !d->dropping) {
		if ((unsigned)st < 17)
			atomic_fetch_add_explicit(&w->status[st], 1, memory_order_relaxed);
		if (st == VPP_GRPC_INVALID_ARGUMENT && d->malformed_sent) {
			vpp__emul_count(w, C_MALFORMED_REJECTED, 1);
		} else if (st == VPP_GRPC_PERMISSION_DENIED || st == VPP_GRPC_INVALID_ARGUMENT ||
		           st == VPP_GRPC_UNAUTHENTICATED) {
			/* The server refuses this device: worth a line, and
			 * the backoff keeps it from hammering. */
			vpp_log(VPP_LOG_WARN, "device", "device=%s session refused: %s: %s", d->id,
			        vpp_grpc_status_name(st), msg ? msg : "");
		} else {
			vpp_log(VPP_LOG_DEBUG, "device", "device=%s session ended: %s: %s", d->id,
			        vpp_grpc_status_name(st), msg ? msg : "");
		}
	}
	if (d->state != S_STOPPED)
		d->state = S_WAIT;
	/* One stream per connection: the connection goes with it; on_closed
	 * schedules the reconnect. */
	if (d->conn)
		vpp_grpc_conn_close(d->conn, false);
}

static void schedule_reconnect(vpp__emul_dev *d)
{
	const vpp__emul_config *cfg = d->w->cfg;
	double cap = (double)cfg->backoff_cap_ms, base = (double)cfg->backoff_base_ms;
	double ceiling = base * (double)(1ULL << (d->attempt < 30 ? d->attempt : 30));
	if (ceiling > cap)
		ceiling = cap;
	/* Full jitter: uniform in [0, min(cap, base·2^attempt)). */
	double ms = vpp__emul_rng_uniform(&d->rng) * ceiling;
	if (d->retry_after_ms) {
		/* The server said when: not before, spread over one base. */
		ms = (double)d->retry_after_ms + vpp__emul_rng_uniform(&d->rng) * base;
		d->retry_after_ms = 0;
	}
	d->attempt++;
	d->state = S_WAIT;
	vpp__emul_wheel_arm(&d->w->wheel, &d->timer, (uint64_t)ms);
}

static void on_closed(vpp_grpc_conn *conn, int err, void *ud)
{
	vpp__emul_dev *d = ud;
	d->conn = NULL;
	if (d->state == S_STOPPED || d->w->stopping)
		return;
	if (d->state == S_UP) {
		/* Closed without a status on the stream (cannot happen: on_status
		 * comes first), but keep the count right. */
		atomic_fetch_sub_explicit(&d->w->connected, 1, memory_order_relaxed);
	}
	schedule_reconnect(d);
}

static const vpp_grpc_client_cbs client_cbs = {NULL, on_message, NULL, on_status};

/* Loads the device's certificate once; it is kept across reconnects so a
 * reconnect storm costs handshakes, not file reads. Devices of one worker
 * share its client context, and their key when it is the same one. */
int vpp__emul_dev_load_tls(vpp__emul_dev *d)
{
	if (d->ident)
		return 0;
	vpp__emul_worker *w = d->w;
	const vpp__emul_config *cfg = w->cfg;
	char cert[4096], key[4096];
	snprintf(cert, sizeof(cert), "%s/devices/%s.pem", cfg->certs, d->id);
	snprintf(key, sizeof(key), "%s/devices/%s.key", cfg->certs, d->id);
	int rv = vpp_grpc_identity_load(cert, key, w->last_ident, &d->ident);
	if (rv == 0)
		w->last_ident = d->ident;
	else if (d->attempt == 0)
		vpp_log(VPP_LOG_WARN, "device", "device=%s cannot load %s / %s: %s", d->id, cert, key,
		        vpp_strerror(rv));
	return rv;
}

void vpp__emul_dev_connect(vpp__emul_dev *d)
{
	vpp__emul_worker *w = d->w;
	const vpp__emul_config *cfg = w->cfg;
	if (w->stopping || d->state == S_STOPPED || d->conn)
		return;
	if (d->ever_connected || d->attempt > 0)
		vpp__emul_count(w, C_RECONNECTS, 1);
	vpp__emul_count(w, C_CONNECT_ATTEMPTS, 1);
	if (vpp__emul_dev_load_tls(d) != 0) {
		vpp__emul_count(w, C_CONNECT_FAILED, 1);
		schedule_reconnect(d);
		return;
	}
	char bind[32];
	const char *bind_addr = NULL;
	uint64_t global = (uint64_t)cfg->first_index + d->index;
	if (cfg->per_address > 0 && (uint64_t)(cfg->first_index + cfg->devices) > (uint64_t)cfg->per_address &&
	    strncmp(cfg->host, "127.", 4) == 0) {
		/* One source address never carries more than per-address
		 * devices. The address follows the global index, so processes
		 * that split a fleet (--first-index) never share one. */
		uint64_t a = global / (uint64_t)cfg->per_address;
		snprintf(bind, sizeof(bind), "127.0.%u.%u", (unsigned)(1 + a / 250 % 250),
		         (unsigned)(1 + a % 250));
		bind_addr = bind;
	}
	vpp_grpc_client_opts o = {
	    .host = cfg->host,
	    .port = cfg->port,
	    .authority = cfg->server_name,
	    .tls = w->tls,
	    .identity = d->ident,
	    .bind_addr = bind_addr,
	    .connect_timeout_ms = 10000,
	    .max_message_bytes = 64 * 1024,
	    .call_outbound_limit = 64 * 1024,
	    .on_closed = on_closed,
	    .ud = d,
	};
	d->dropping = false;
	d->malformed_sent = false;
	d->session_no++;
	int rv = vpp_grpc_conn_new(&w->loop, &o, &d->conn);
	if (rv != 0) {
		d->conn = NULL;
		vpp__emul_count(w, C_CONNECT_FAILED, 1);
		if (d->attempt == 0)
			vpp_log(VPP_LOG_WARN, "device", "device=%s cannot connect to %s: %s", d->id,
			        cfg->server, vpp_strerror(rv));
		schedule_reconnect(d);
		return;
	}
	d->state = S_CONNECTING;
	/* A server that accepts and never welcomes is as dead as one that
	 * refuses. */
	d->last_recv_us = vpp__emul_now_us();
	if (cfg->server_silence_s > 0)
		vpp__emul_wheel_arm(&w->wheel, &d->timer, (uint64_t)(cfg->server_silence_s * 1000.0));
	rv = vpp_grpc_conn_call(d->conn, CONNECT_PATH, NULL, 0, 0, &client_cbs, d, &d->call);
	if (rv != 0) {
		d->call = NULL;
		vpp__emul_count(w, C_CONNECT_FAILED, 1);
		d->state = S_WAIT;
		vpp_grpc_conn_close(d->conn, false); /* on_closed reschedules */
		return;
	}
	send_hello(d);
}

static void send_malformed(vpp__emul_dev *d, int64_t now_us)
{
	uint8_t buf[256];
	const char *kind;
	size_t len =
	    vpp__emul_malformed(&d->rng, d->seq + 1, device_ms(d, now_us), buf, sizeof(buf), &kind);
	if (strcmp(kind, "garbage") != 0)
		d->seq++; /* seqs stay strictly increasing whatever the server kept */
	if (d->call && vpp_grpc_call_send(d->call, buf, len) == 0) {
		d->malformed_sent = true;
		vpp__emul_count(d->w, C_MALFORMED_SENT, 1);
		vpp__emul_count(d->w, C_MSGS_SENT, 1);
		vpp_log(VPP_LOG_DEBUG, "device", "device=%s sent a malformed message (%s)", d->id,
		        kind);
	}
}

void vpp__emul_dev_on_timer(vpp__emul_wnode *n)
{
	vpp__emul_dev *d = (vpp__emul_dev *)((char *)n - offsetof(vpp__emul_dev, timer));
	vpp__emul_worker *w = d->w;
	if (w->stopping || d->state == S_STOPPED)
		return;
	if (d->state == S_WAIT || d->state == S_IDLE) {
		vpp__emul_dev_connect(d);
		return;
	}
	int64_t now = vpp__emul_now_us();
	int64_t silent = silence_deadline_us(d);
	if ((d->state == S_UP || d->state == S_CONNECTING) && silent && now >= silent) {
		d->dropping = true; /* ours: not an error status */
		vpp__emul_count(w, C_SERVER_SILENT, 1);
		vpp_log(VPP_LOG_DEBUG, "device", "device=%s server silent for %.0f s: reconnecting",
		        d->id, w->cfg->server_silence_s);
		if (d->conn)
			vpp_grpc_conn_close(d->conn, false); /* on_status, on_closed, backoff */
		return;
	}
	if (d->state != S_UP) {
		if (d->state == S_CONNECTING && silent)
			vpp__emul_wheel_arm(&w->wheel, &d->timer, (uint64_t)((silent - now + 999) / 1000));
		return;
	}
	if (d->next_drop_us && now >= d->next_drop_us) {
		d->dropping = true;
		vpp__emul_count(w, C_DROPS, 1);
		vpp_grpc_conn_close(d->conn, false); /* on_status, on_closed, backoff */
		return;
	}
	if (d->next_malformed_us && now >= d->next_malformed_us) {
		send_malformed(d, now);
		d->next_malformed_us = now + jittered_us(d, w->cfg->malformed_period_s);
	}
	if (now >= d->next_telemetry_us) {
		send_telemetry(d, now);
		double j = w->cfg->telemetry_jitter;
		d->next_telemetry_us +=
		    (int64_t)(d->interval_ms * 1000.0 * vpp__emul_rng_range(&d->rng, 1 - j, 1 + j));
		if (d->next_telemetry_us < now)
			d->next_telemetry_us = now; /* a stalled loop does not burst */
	}
	if (d->state == S_UP)
		arm(d, now);
}

/* The worker's connected count is left as it was: the report's
 * connected_at_end is taken after every worker stopped. */
void vpp__emul_dev_stop(vpp__emul_dev *d)
{
	d->state = S_STOPPED;
	if (d->conn)
		vpp_grpc_conn_close(d->conn, false);
	vpp__emul_wheel_cancel(&d->w->wheel, &d->timer);
}

void vpp__emul_dev_release(vpp__emul_dev *d)
{
	if (d->w->last_ident == d->ident)
		d->w->last_ident = NULL;
	vpp_grpc_identity_free(d->ident);
	d->ident = NULL;
}
