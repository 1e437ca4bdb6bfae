/* One device session (a DeviceLink/Connect stream): Hello, Welcome,
 * telemetry to the store and the plant, setpoint leases from the plant,
 * acks, pings, and every way a session can go wrong. */
#include "device_int.h"
#include "vpp/clock.h"
#include "vpp/error.h"
#include "vpp/log.h"
#include "vpp/pb_wire.h"
#include "vpp/store.h"
#include "vpp/text.h"
#include "vpp/v1/device.pb-c.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *reject_names[DR__COUNT] = {
	"no_identity", "id_mismatch", "bad_hello",  "second_hello", "before_hello", "malformed",
	"bad_telemetry", "unknown_ack", "flood",     "hello_timeout", "silent",	 "slow_reader",
	"store_full",	 "hello_rate",
};

const char *vpp__dev_reject_name(int r);
const char *vpp__dev_reject_name(int r)
{
	return r >= 0 && r < DR__COUNT ? reject_names[r] : "unknown";
}

static dev_loop *loop_of(vpp_grpc_call *call)
{
	vpp_devices *d = vpp_grpc_call_method_data(call);
	return &d->loops[vpp_grpc_call_loop_index(call)];
}

/* Ends the session with |status|: counted under |reason| (when >= 0),
 * logged, and the plant told |bye| when it is over. */
static void end(session *s, int reason, int bye, vpp_grpc_status status, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void end(session *s, int reason, int bye, vpp_grpc_status status, const char *fmt, ...)
{
	if (s->ending)
		return;
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	s->ending = true;
	s->bye_reason = bye;
	if (reason >= 0) {
		vpp_counter_inc(s->dl->d->met.rejected[reason]);
		vpp_log(VPP_LOG_WARN, "device", "device=%s peer=%s session ended (%s): %s",
			s->id[0] ? s->id : "-", vpp_grpc_call_peer_addr(s->call),
			reject_names[reason], msg);
	}
	vpp_grpc_call_finish(s->call, status, msg);
}

/* Returns false when |s| is gone: a full outbound queue drops the session
 * at once (on_done frees it), so the caller must not touch |s| again. */
static bool send_server_msg(session *s, const Vpp__V1__ServerMessage *m)
{
	uint8_t buf[256];
	size_t len = vpp__v1__server_message__get_packed_size(m);
	if (len > sizeof(buf))
		return true;
	vpp__v1__server_message__pack(m, buf);
	int rv = vpp_grpc_call_send(s->call, buf, len);
	if (rv == VPP_EFULL) {
		/* A device that does not read its setpoints must not make us
		 * buffer for it: it is dropped and reconnects. */
		s->ending = true;
		s->bye_reason = VPP_BYE_SLOW;
		vpp_counter_inc(s->dl->d->met.rejected[DR_SLOW_READER]);
		vpp_log(VPP_LOG_WARN, "device", "device=%s outbound queue full: dropping the session",
			s->id);
		vpp_grpc_call_cancel(s->call);
		return false;
	}
	return true;
}

/* As send_server_msg: false when |s| is gone. */
static bool send_backoff(session *s, uint32_t base_ms)
{
	Vpp__V1__ServerMessage m = VPP__V1__SERVER_MESSAGE__INIT;
	Vpp__V1__Backoff b = VPP__V1__BACKOFF__INIT;
	b.retry_after_ms = base_ms + (uint32_t)(rand() % (int)(base_ms * 4 + 1));
	m.msg_case = VPP__V1__SERVER_MESSAGE__MSG_BACKOFF;
	m.backoff = &b;
	return send_server_msg(s, &m);
}

static void on_start(vpp_grpc_call *call, void *ud)
{
	dev_loop *dl = loop_of(call);
	vpp_devices *d = dl->d;
	session *s = calloc(1, sizeof(*s));
	if (!s) {
		vpp_grpc_call_finish(call, VPP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	s->dl = dl;
	s->call = call;
	s->slot = UINT32_MAX;
	s->started = s->last_rx = uv_now(dl->loop);
	s->tokens = d->o.max_burst;
	s->tokens_at = s->started;
	s->bye_reason = VPP_BYE_CONN_LOST;
	if (vpp__dev_table_add(dl, s) != 0) {
		free(s);
		vpp_grpc_call_finish(call, VPP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	vpp_grpc_call_set_data(call, s);
	vpp_grpc_call_set_outbound_limit(call, d->o.outbound_limit);
	vpp_gauge_add(d->met.sessions, 1);
	const char *cn = vpp_grpc_call_peer_identity(call);
	if (dl->shutdown) {
		s->ending = true;
		if (send_backoff(s, 1000))
			vpp_grpc_call_finish(call, VPP_GRPC_UNAVAILABLE, "server shutting down");
		return;
	}
	if (!cn || !cn[0]) {
		end(s, DR_NO_IDENTITY, VPP_BYE_ERROR, VPP_GRPC_UNAUTHENTICATED,
		    "a device client certificate is required");
		return;
	}
	if (strlen(cn) > VPP_PLANT_ID_MAX || !vpp_id_valid(cn)) {
		end(s, DR_NO_IDENTITY, VPP_BYE_ERROR, VPP_GRPC_PERMISSION_DENIED,
		    "certificate CN is not a valid device id (1..63 printable characters)");
		return;
	}
	snprintf(s->id, sizeof(s->id), "%s", cn);
	snprintf(s->session_id, sizeof(s->session_id), "%d-%llu", dl->index,
		 (unsigned long long)++dl->counter);
}

static bool send_ping(session *s, uint64_t now);

static void on_hello(session *s, const Vpp__V1__Hello *h)
{
	vpp_devices *d = s->dl->d;
	if (s->hello) {
		end(s, DR_SECOND_HELLO, VPP_BYE_ERROR, VPP_GRPC_INVALID_ARGUMENT,
		    "second Hello on one session");
		return;
	}
	if (strcmp(h->device_id, s->id) != 0) {
		end(s, DR_ID_MISMATCH, VPP_BYE_ERROR, VPP_GRPC_PERMISSION_DENIED,
		    "Hello claims device_id '%.64s' but the certificate is for '%s'",
		    h->device_id, s->id);
		return;
	}
	vpp_device_ratings r;
	const char *why = vpp__dev_hello_check(h, &r);
	if (why) {
		end(s, DR_BAD_HELLO, VPP_BYE_ERROR, VPP_GRPC_INVALID_ARGUMENT, "bad Hello: %s", why);
		return;
	}
	vpp_plant_hello *ph = calloc(1, sizeof(*ph));
	if (!ph) {
		end(s, -1, VPP_BYE_ERROR, VPP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	snprintf(ph->id, sizeof(ph->id), "%s", s->id);
	/* Shortened at a character boundary: the database takes only UTF-8. */
	vpp_utf8_copy(ph->firmware, sizeof(ph->firmware), h->firmware ? h->firmware : "");
	snprintf(ph->session_id, sizeof(ph->session_id), "%s", s->session_id);
	ph->ratings = r;
	vpp_plant_msg m = {.type = VPP_PM_HELLO, .session = s->handle, .u.hello = ph};
	if (vpp_plant_post(d->o.plant, s->dl->index, &m) != 0) {
		free(ph);
		s->ending = true;
		if (send_backoff(s, 1000))
			vpp_grpc_call_finish(s->call, VPP_GRPC_UNAVAILABLE, "server busy: retry later");
		return;
	}
	s->hello = true;
	s->rated_charge_kw = (float)r.rated_charge_kw;
	s->rated_discharge_kw = (float)r.rated_discharge_kw;
	vpp_counter_inc(d->met.hellos);
	/* Registration with the store comes from the plant (the device row
	 * before any of this session's telemetry reaches the database). */
	Vpp__V1__ServerMessage out = VPP__V1__SERVER_MESSAGE__INIT;
	Vpp__V1__Welcome w = VPP__V1__WELCOME__INIT;
	w.session_id = s->session_id;
	w.telemetry_interval_ms = d->o.telemetry_interval_ms;
	w.server_time_ms = vpp_wall_ms();
	out.msg_case = VPP__V1__SERVER_MESSAGE__MSG_WELCOME;
	out.welcome = &w;
	if (!send_server_msg(s, &out))
		return;
	/* The first ping right behind the Welcome: until its Pong gives the
	 * device's clock offset, rows are marked QUALITY_CLOCK_UNSYNCED. */
	send_ping(s, uv_now(s->dl->loop));
}

/* Hands a row to the store. When the store is full, or rows already wait
 * for it, the row joins the loop's backlog (so a device's rows keep their
 * order) and the session stops reading (HTTP/2 flow control pushes back on
 * the device) until the backlog drains. Returns VPP_EFULL when even the
 * backlog is full: the row is not accepted. */
static int persist(session *s, const vpp_telemetry_row *row)
{
	dev_loop *dl = s->dl;
	vpp_devices *d = dl->d;
	if (!d->o.store)
		return 0;
	if (dl->bl_n == 0) {
		int rv = vpp_store_submit_telemetry(d->o.store, row);
		if (rv == 0)
			return 0;
		if (rv != VPP_EFULL) {
			vpp_counter_inc(d->met.store_rejected);
			return 0;
		}
	}
	if (vpp__dev_backlog_push(dl, row) != 0)
		return VPP_EFULL;
	if (!s->blocked) {
		s->blocked = true;
		vpp_counter_inc(d->met.store_blocked);
		vpp_grpc_call_pause_recv(s->call, true);
	}
	if (!dl->shutdown && !uv_is_active((uv_handle_t *)&dl->retry))
		uv_timer_start(&dl->retry, vpp__dev_retry, 20, 20);
	return 0;
}

/* Readings no sensor of this battery can have given: power well beyond its
 * own ratings (a firmware reporting W as kW, say), or a sigma wider than
 * what it can do at all. Dispatching on them would command it to its limit
 * and count thousands of kW that are not there, so they are taken as a
 * sensor fault: VPP_TELEMETRY_BAD_POWER / _BAD_SOC, or 0. */
static uint32_t implausible(session *s, const Vpp__V1__Telemetry *t)
{
	static vpp_log_limit lines;
	uint32_t bad = vpp__dev_implausible(t, s->rated_charge_kw, s->rated_discharge_kw);
	if (!bad)
		return 0;
	vpp_counter_inc(s->dl->d->met.implausible);
	uint32_t more;
	if (vpp_log_limit_take(&lines, vpp_wall_ms(), 5, 10000, &more))
		vpp_log(VPP_LOG_WARN, "device",
			"device=%s telemetry seq %llu taken as a sensor fault: power_kw %g "
			"(sigma %g), soc_sigma %g, beyond its ratings (charge %g, discharge %g "
			"kW) (%u more not logged before it)",
			s->id, (unsigned long long)t->seq, t->power_kw, t->power_sigma_kw,
			t->soc_sigma, (double)s->rated_charge_kw, (double)s->rated_discharge_kw, more);
	return bad;
}

/* The estimator may miss a sample when the plant is swamped (the store
 * still has it): counted, never silent. */
static void post_telemetry(session *s, const vpp_plant_msg *m)
{
	if (vpp_plant_post(s->dl->d->o.plant, s->dl->index, m) != 0)
		vpp_counter_inc(s->dl->d->met.shed_dispatch);
}

static void on_telemetry(session *s, const Vpp__V1__Telemetry *t)
{
	vpp_devices *d = s->dl->d;
	if (!s->hello) {
		end(s, DR_BEFORE_HELLO, VPP_BYE_ERROR, VPP_GRPC_FAILED_PRECONDITION,
		    "Telemetry before Hello");
		return;
	}
	const char *why = vpp__dev_telemetry_check(t);
	if (why) {
		end(s, DR_BAD_TELEMETRY, VPP_BYE_ERROR, VPP_GRPC_INVALID_ARGUMENT,
		    "bad Telemetry seq %llu: %s", (unsigned long long)t->seq, why);
		return;
	}
	if (t->seq <= s->last_seq || t->seq > INT64_MAX) {
		vpp_counter_inc(d->met.duplicates);
		return;
	}
	int64_t measured_at;
	if (__builtin_add_overflow(t->measured_at_ms, s->clock_offset_ms, &measured_at)) {
		end(s, DR_BAD_TELEMETRY, VPP_BYE_ERROR, VPP_GRPC_INVALID_ARGUMENT,
		    "bad Telemetry seq %llu: measured_at_ms out of range",
		    (unsigned long long)t->seq);
		return;
	}
	int64_t now = vpp_wall_ms();
	uint32_t bad = implausible(s, t);
	vpp_telemetry_row row;
	memset(&row, 0, sizeof(row));
	_Static_assert(sizeof(row.device_id) >= sizeof(s->id), "device ids fit the row");
	memcpy(row.device_id, s->id, sizeof(s->id)); /* NUL-terminated, per message */
	row.seq = (int64_t)t->seq;
	row.measured_at_ms = measured_at;
	row.received_at_ms = now;
	row.power_kw = t->power_kw;
	/* 0 is proto3's "not set": no uncertainty given, stored as NULL (NaN
	 * here), never as an exact measurement. */
	row.power_sigma_kw = t->power_sigma_kw > 0 ? t->power_sigma_kw : NAN;
	row.soc = t->soc;
	row.soc_sigma = t->soc_sigma > 0 ? t->soc_sigma : NAN;
	row.quality = t->quality;
	if (bad) /* kept as the device said it, marked as not to be believed */
		row.quality |= VPP__V1__QUALITY_FLAG__QUALITY_SENSOR_FAULT;
	if (!s->clock_known) /* measured_at is the device's own clock still */
		row.quality |= VPP__V1__QUALITY_FLAG__QUALITY_CLOCK_UNSYNCED;
	if (persist(s, &row) != 0) {
		/* Not accepted: the device keeps it and sends it again later. */
		if (send_backoff(s, 5000))
			end(s, DR_STORE_FULL, VPP_BYE_ERROR, VPP_GRPC_UNAVAILABLE,
			    "the store is full: telemetry seq %llu not accepted, retry later",
			    (unsigned long long)t->seq);
		return;
	}
	s->last_seq = t->seq;
	vpp_counter_inc(d->met.telemetry);
	vpp_plant_msg m = {.type = VPP_PM_TELEMETRY, .session = s->handle, .slot = s->slot};
	m.u.t.seq = t->seq;
	/* A clock no Pong has placed yet (and never will, when it is years
	 * off) times nothing: the sample counts as of its arrival, not as
	 * decades old or in the future. */
	m.u.t.measured_at_ms = s->clock_known ? t->measured_at_ms : now;
	m.u.t.received_at_ms = now;
	m.u.t.clock_offset_ms = s->clock_known ? s->clock_offset_ms : 0;
	m.u.t.power_kw = t->power_kw;
	m.u.t.power_sigma_kw = t->power_sigma_kw;
	m.u.t.soc = t->soc;
	m.u.t.soc_sigma = t->soc_sigma;
	if (t->power_sigma_kw <= 0)
		m.u.t.quality |= VPP_TELEMETRY_NO_POWER_SIGMA;
	if (t->soc_sigma <= 0)
		m.u.t.quality |= VPP_TELEMETRY_NO_SOC_SIGMA;
	if (t->quality & VPP__V1__QUALITY_FLAG__QUALITY_SENSOR_FAULT)
		m.u.t.quality |= VPP_TELEMETRY_BAD_POWER | VPP_TELEMETRY_BAD_SOC;
	m.u.t.quality |= bad;
	if (!s->registered) {
		/* The plant has not answered the Hello yet: the newest sample
		 * waits for the slot (see on_out). */
		s->early = m.u.t;
		s->early_t = true;
		return;
	}
	post_telemetry(s, &m);
}

static void on_ack(session *s, const Vpp__V1__Ack *a)
{
	vpp_devices *d = s->dl->d;
	if (!s->hello) {
		end(s, DR_BEFORE_HELLO, VPP_BYE_ERROR, VPP_GRPC_FAILED_PRECONDITION,
		    "Ack before Hello");
		return;
	}
	switch (vpp__dev_ack_check(a->setpoint_seq, s->first_sp_seq, s->last_sp_seq)) {
	case VPP__DEV_ACK_STALE:
		vpp_counter_inc(d->met.stale_acks);
		return;
	case VPP__DEV_ACK_UNKNOWN:
		end(s, DR_UNKNOWN_ACK, VPP_BYE_ERROR, VPP_GRPC_INVALID_ARGUMENT,
		    "Ack for setpoint seq %llu, which was never sent",
		    (unsigned long long)a->setpoint_seq);
		return;
	default:
		break;
	}
	vpp_counter_inc(d->met.acks);
	if (a->setpoint_seq == s->last_sp_seq && s->last_sp_sent) {
		vpp_histogram_observe(d->met.ack_rtt,
				      (double)(uv_hrtime() - s->last_sp_sent) / 1e9);
		s->last_sp_sent = 0; /* a second ack of it is not a round trip */
	}
	static vpp_log_limit refusals; /* a device may refuse every tick */
	uint32_t more;
	if (!a->accepted && vpp_log_limit_take(&refusals, vpp_wall_ms(), 5, 10000, &more))
		vpp_log(VPP_LOG_INFO, "device",
			"device=%s refused setpoint %llu: %.100s (%u more not logged before it)", s->id,
			(unsigned long long)a->setpoint_seq, a->reason ? a->reason : "", more);
	if (!s->registered)
		return;
	vpp_plant_msg m = {.type = VPP_PM_ACK, .session = s->handle, .slot = s->slot};
	m.u.ack.seq = a->setpoint_seq;
	m.u.ack.accepted = a->accepted;
	m.u.ack.at_ms = vpp_wall_ms();
	if (vpp_plant_post(d->o.plant, s->dl->index, &m) != 0)
		vpp_counter_inc(d->met.shed_dispatch);
}

static void on_pong(session *s, const Vpp__V1__Pong *p)
{
	if (!s->ping_sent || p->ping_id != s->ping_id)
		return; /* late or unknown: ignored */
	uint64_t rtt = uv_now(s->dl->loop) - s->ping_sent;
	s->ping_sent = 0;
	vpp_histogram_observe(s->dl->d->met.ping_rtt, (double)rtt / 1000.0);
	if (!vpp__dev_clock_plausible(p->device_time_ms, s->ping_sent_wall))
		return;
	/* Offset = server time - device time at the moment the device
	 * answered, assumed halfway; the lowest-rtt sample is the best. */
	if (!s->min_rtt || rtt <= s->min_rtt * 2) {
		if (!s->min_rtt || rtt < s->min_rtt)
			s->min_rtt = rtt ? rtt : 1;
		s->clock_offset_ms = s->ping_sent_wall + (int64_t)rtt / 2 - p->device_time_ms;
		s->clock_known = true;
	}
}

static bool take_token(session *s)
{
	vpp_devices *d = s->dl->d;
	uint64_t now = uv_now(s->dl->loop);
	s->tokens += (double)(now - s->tokens_at) * d->o.max_msgs_per_s / 1000.0;
	s->tokens_at = now;
	if (s->tokens > d->o.max_burst)
		s->tokens = d->o.max_burst;
	if (s->tokens < 1)
		return false;
	s->tokens -= 1;
	return true;
}

static void on_message(vpp_grpc_call *call, const uint8_t *data, size_t len)
{
	session *s = vpp_grpc_call_data(call);
	if (!s || s->ending)
		return;
	s->last_rx = uv_now(s->dl->loop);
	if (!take_token(s)) {
		end(s, DR_FLOOD, VPP_BYE_ERROR, VPP_GRPC_RESOURCE_EXHAUSTED,
		    "more than %.0f messages/s", s->dl->d->o.max_msgs_per_s);
		return;
	}
	/* protobuf's rules (vpp_pb_unpack), not protobuf-c's alone: unknown
	 * groups are skipped, field numbers past 2^29-1 refused. */
	Vpp__V1__DeviceMessage *m = (Vpp__V1__DeviceMessage *)vpp_pb_unpack(
		&vpp__v1__device_message__descriptor, NULL, len, data);
	if (!m) {
		end(s, DR_MALFORMED, VPP_BYE_ERROR, VPP_GRPC_INVALID_ARGUMENT,
		    "DeviceMessage does not parse (%zu bytes)", len);
		return;
	}
	switch (m->msg_case) {
	case VPP__V1__DEVICE_MESSAGE__MSG_HELLO:
		on_hello(s, m->hello);
		break;
	case VPP__V1__DEVICE_MESSAGE__MSG_TELEMETRY:
		on_telemetry(s, m->telemetry);
		break;
	case VPP__V1__DEVICE_MESSAGE__MSG_ACK:
		on_ack(s, m->ack);
		break;
	case VPP__V1__DEVICE_MESSAGE__MSG_PONG:
		on_pong(s, m->pong);
		break;
	default:
		end(s, DR_MALFORMED, VPP_BYE_ERROR, VPP_GRPC_INVALID_ARGUMENT,
		    "empty or unknown DeviceMessage");
		break;
	}
	vpp__v1__device_message__free_unpacked(m, NULL);
}

static void on_half_close(vpp_grpc_call *call)
{
	session *s = vpp_grpc_call_data(call);
	if (!s || s->ending)
		return;
	s->ending = true;
	s->bye_reason = VPP_BYE_CLOSED;
	vpp_grpc_call_finish(call, VPP_GRPC_OK, NULL);
}

static void post_bye(dev_loop *dl, uint64_t handle, uint32_t slot, int reason)
{
	vpp_plant_msg m = {.type = VPP_PM_BYE, .session = handle, .slot = slot};
	m.u.bye.reason = reason;
	int rv = vpp_plant_post(dl->d->o.plant, dl->index, &m);
	if (rv != VPP_EFULL)
		return;
	/* A lost bye would leave the device counted as connected: retry. */
	if (dl->nbyes == dl->capbyes) {
		size_t ncap = dl->capbyes ? dl->capbyes * 2 : 64;
		pending_bye *nb = realloc(dl->byes, ncap * sizeof(*nb));
		if (!nb)
			return;
		dl->byes = nb;
		dl->capbyes = ncap;
	}
	dl->byes[dl->nbyes++] = (pending_bye){handle, slot, reason};
	if (!dl->shutdown && !uv_is_active((uv_handle_t *)&dl->retry))
		uv_timer_start(&dl->retry, vpp__dev_retry, 20, 20);
}

/* The plant has not answered this session's Hello yet: its bye goes out
 * when the slot is known (or is dropped if the plant refuses the Hello).
 * The list holds only Hellos in the plant's queue, which is bounded. */
static void remember_unregistered(dev_loop *dl, uint64_t handle, int reason)
{
	if (dl->nunreg == dl->capunreg) {
		size_t ncap = dl->capunreg ? dl->capunreg * 2 : 16;
		pending_bye *nb = realloc(dl->unreg, ncap * sizeof(*nb));
		if (!nb) {
			vpp_counter_inc(dl->d->met.stale_out); /* out of memory: lost */
			return;
		}
		dl->unreg = nb;
		dl->capunreg = ncap;
	}
	dl->unreg[dl->nunreg++] = (pending_bye){handle, UINT32_MAX, reason};
}

/* Takes the entry of |handle| off the list; false when there is none. */
static bool take_unregistered(dev_loop *dl, uint64_t handle, int *reason)
{
	for (size_t i = 0; i < dl->nunreg; i++) {
		if (dl->unreg[i].session != handle)
			continue;
		*reason = dl->unreg[i].reason;
		dl->unreg[i] = dl->unreg[--dl->nunreg];
		return true;
	}
	return false;
}

static void on_done(vpp_grpc_call *call, vpp_grpc_status status)
{
	session *s = vpp_grpc_call_data(call);
	if (!s)
		return;
	dev_loop *dl = s->dl;
	if (s->registered)
		post_bye(dl, s->handle, s->slot, s->bye_reason);
	else if (s->hello && !s->refused)
		remember_unregistered(dl, s->handle, s->bye_reason);
	vpp__dev_table_remove(dl, s);
	vpp_gauge_add(dl->d->met.sessions, -1);
	free(s);
}

const vpp_grpc_method vpp__dev_method = {
	.path = "/vpp.v1.DeviceLink/Connect",
	.on_start = on_start,
	.on_message = on_message,
	.on_half_close = on_half_close,
	.on_done = on_done,
};

/* ---- from the plant ---------------------------------------------------- */

static void shutdown_loop(dev_loop *dl)
{
	dl->shutdown = true;
	for (uint32_t i = 0; i < dl->used; i++) {
		session *s = dl->table[i];
		if (!s || s->ending)
			continue;
		s->ending = true;
		s->bye_reason = VPP_BYE_SHUTDOWN;
		if (send_backoff(s, 500))
			vpp_grpc_call_finish(s->call, VPP_GRPC_UNAVAILABLE, "server shutting down");
	}
	/* Rows still waiting for the store get one last try; what it cannot
	 * take is counted and said, never dropped silently. */
	if (dl->d->o.store && vpp__dev_backlog_drain(dl, dl->d->o.store) > 0) {
		vpp_counter_add(dl->d->met.lost_at_shutdown, dl->bl_n);
		vpp_gauge_add(dl->d->met.backlog, -(int64_t)dl->bl_n);
		vpp_log(VPP_LOG_ERROR, "device",
			"%zu accepted telemetry rows lost at shutdown: the store had no room "
			"(database and journal full)",
			dl->bl_n);
	}
	/* The loop is about to stop: its timers go now. */
	uv_close((uv_handle_t *)&dl->sweep, NULL);
	uv_close((uv_handle_t *)&dl->retry, NULL);
}

void vpp__dev_deliver(void *ud, const vpp_plant_out *m)
{
	dev_loop *dl = ud;
	if (m->type == VPP_PO_SHUTDOWN) {
		if (!dl->shutdown)
			shutdown_loop(dl);
		return;
	}
	if (m->type == VPP_PO_WRITTEN) {
		vpp_histogram_observe(dl->d->met.fanout,
				      (double)(uv_hrtime() - m->u.tick_ns) / 1e9);
		return;
	}
	session *s = vpp__dev_table_get(dl, m->session);
	int reason;
	if (m->type == VPP_PO_REGISTERED && s) {
		/* Even when ending: on_done then says bye with the slot. */
		s->registered = true;
		s->slot = m->u.slot;
		if (s->early_t && !s->ending) {
			vpp_plant_msg t = {.type = VPP_PM_TELEMETRY, .session = s->handle,
					   .slot = s->slot, .u.t = s->early};
			post_telemetry(s, &t);
		}
		s->early_t = false;
		return;
	}
	if (s && !s->registered && m->type == VPP_PO_CLOSE)
		s->refused = true; /* the answer to its Hello: no bye is owed */
	if (!s && (m->type == VPP_PO_REGISTERED || m->type == VPP_PO_CLOSE) &&
	    take_unregistered(dl, m->session, &reason)) {
		/* The session ended before the plant answered its Hello. */
		if (m->type == VPP_PO_REGISTERED)
			post_bye(dl, m->session, m->u.slot, reason);
		return;
	}
	if (!s || s->ending) {
		vpp_counter_inc(dl->d->met.stale_out);
		return;
	}
	switch (m->type) {
	case VPP_PO_SETPOINT: {
		Vpp__V1__ServerMessage out = VPP__V1__SERVER_MESSAGE__INIT;
		Vpp__V1__Setpoint sp = VPP__V1__SETPOINT__INIT;
		sp.seq = m->u.sp.seq;
		sp.power_kw = m->u.sp.power_kw;
		sp.valid_until_ms = m->u.sp.valid_until_ms;
		sp.server_time_ms = m->u.sp.issued_ms;
		out.msg_case = VPP__V1__SERVER_MESSAGE__MSG_SETPOINT;
		out.setpoint = &sp;
		if (!s->first_sp_seq)
			s->first_sp_seq = sp.seq;
		s->last_sp_seq = sp.seq;
		vpp_counter_inc(dl->d->met.setpoints);
		if (!send_server_msg(s, &out))
			break; /* dropped: |s| is gone */
		/* After the write: the fan-out before it is measured apart
		 * (vpp_device_fanout_seconds). */
		s->last_sp_sent = uv_hrtime();
		break;
	}
	case VPP_PO_CLOSE:
		if (m->u.reason == VPP_BYE_THROTTLED) {
			/* Counted, not logged: a device that churns would
			 * flood the log as it flooded the store. */
			vpp_counter_inc(dl->d->met.rejected[DR_HELLO_RATE]);
			vpp_log(VPP_LOG_DEBUG, "device", "device=%s Hello refused: too frequent",
				s->id);
			if (send_backoff(s, 2000))
				end(s, -1, VPP_BYE_THROTTLED, VPP_GRPC_UNAVAILABLE,
				    "this device opens sessions too often: retry later");
		} else if (m->u.reason == VPP_BYE_REPLACED) {
			s->ending = true;
			s->bye_reason = VPP_BYE_REPLACED;
			vpp_log(VPP_LOG_INFO, "device", "device=%s session %s replaced", s->id,
				s->session_id);
			vpp_grpc_call_finish(s->call, VPP_GRPC_ABORTED,
					     "replaced by a newer session of this device");
		} else if (m->u.reason == VPP_BYE_DRAINED) {
			/* Back soon, through the load balancer, which no
			 * longer sends new sessions here. */
			if (send_backoff(s, 200))
				end(s, -1, VPP_BYE_DRAINED, VPP_GRPC_UNAVAILABLE,
				    "this node is draining: reconnect to another node");
		} else {
			end(s, -1, m->u.reason, VPP_GRPC_INTERNAL, "refused by the dispatcher");
		}
		break;
	default:
		break;
	}
}

/* ---- timers ------------------------------------------------------------- */

/* Liveness and the device's clock offset. Returns false when |s| is gone
 * (see send_server_msg). */
static bool send_ping(session *s, uint64_t now)
{
	vpp_devices *d = s->dl->d;
	Vpp__V1__ServerMessage out = VPP__V1__SERVER_MESSAGE__INIT;
	Vpp__V1__Ping p = VPP__V1__PING__INIT;
	p.ping_id = ++s->ping_id;
	p.server_time_ms = vpp_wall_ms();
	out.msg_case = VPP__V1__SERVER_MESSAGE__MSG_PING;
	out.ping = &p;
	s->ping_sent = now;
	s->ping_sent_wall = p.server_time_ms;
	/* Spread pings so that they do not all go out together. */
	s->next_ping = now + d->o.ping_interval_ms / 2 +
		       (uint64_t)(rand() % (int)(d->o.ping_interval_ms / 2 + 1));
	vpp_counter_inc(d->met.pings);
	return send_server_msg(s, &out);
}

void vpp__dev_sweep(uv_timer_t *t)
{
	dev_loop *dl = t->data;
	vpp_devices *d = dl->d;
	uint64_t now = uv_now(dl->loop);
	for (uint32_t i = 0; i < dl->used; i++) {
		session *s = dl->table[i];
		if (!s || s->ending)
			continue;
		if (!s->hello && now - s->started > d->o.hello_timeout_ms) {
			end(s, DR_HELLO_TIMEOUT, VPP_BYE_TIMEOUT, VPP_GRPC_DEADLINE_EXCEEDED,
			    "no Hello within %u ms", d->o.hello_timeout_ms);
			continue;
		}
		/* Not while vppd itself stopped reading it (store full). */
		if (!s->blocked && now - s->last_rx > d->o.silence_timeout_ms) {
			end(s, DR_SILENT, VPP_BYE_TIMEOUT, VPP_GRPC_UNAVAILABLE,
			    "silent for %llu ms", (unsigned long long)(now - s->last_rx));
			continue;
		}
		if (s->hello && now >= s->next_ping && !s->blocked)
			send_ping(s, now);
	}
}

void vpp__dev_retry(uv_timer_t *t)
{
	dev_loop *dl = t->data;
	vpp_devices *d = dl->d;
	bool still = false;
	size_t k = 0;
	for (size_t i = 0; i < dl->nbyes; i++) {
		vpp_plant_msg m = {.type = VPP_PM_BYE, .session = dl->byes[i].session,
				   .slot = dl->byes[i].slot};
		m.u.bye.reason = dl->byes[i].reason;
		if (vpp_plant_post(d->o.plant, dl->index, &m) == VPP_EFULL)
			dl->byes[k++] = dl->byes[i];
	}
	dl->nbyes = k;
	still = k > 0;
	if (dl->bl_n > 0 && vpp__dev_backlog_drain(dl, d->o.store) > 0) {
		still = true;
	} else {
		/* The backlog is empty: the paused sessions read again. */
		for (uint32_t i = 0; i < dl->used; i++) {
			session *s = dl->table[i];
			if (!s || !s->blocked)
				continue;
			s->blocked = false;
			s->last_rx = uv_now(dl->loop); /* its silence was ours */
			vpp_grpc_call_pause_recv(s->call, false);
		}
	}
	if (!still)
		uv_timer_stop(t);
}
