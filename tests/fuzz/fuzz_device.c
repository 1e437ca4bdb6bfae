/* libFuzzer target for what a device sends on its DeviceLink/Connect
 * stream, without sockets: the input is the stream's bytes (gRPC frames of
 * DeviceMessages), decoded by the gRPC codec and protobuf-c, then each
 * message checked as server/device/session.c does (the same functions,
 * server/device/check.c) on a model of one session: Hello first and once,
 * Telemetry into a store row (validated, through the journal's binary form
 * and back), Acks of the setpoints "sent" so far, Pongs of the last Ping.
 *
 * It aborts when an accepted message leads somewhere the server must not
 * go: ratings whose limits are not finite, a firmware cut into invalid
 * UTF-8, a row the journal does not give back bit for bit, a clock offset
 * that overflows. */
#include "../../server/device/device_int.h"
#include "../../server/store/store_int.h"
#include "vpp/allocate.h"
#include "vpp/grpc_codec.h"
#include "vpp/text.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DEVICE_ID "dev-00001"
/* A fixed wall clock (2026-12-07): runs are reproducible. */
#define NOW_MS 1796601600000LL

typedef struct {
	bool ended, hello;
	vpp_device_ratings r;
	float rated_charge_kw, rated_discharge_kw;
	uint64_t last_seq, first_sp_seq, last_sp_seq, ping_id;
	int64_t clock_offset_ms, ping_sent_wall;
	bool clock_known, ping_out;
} model;

static void hello(model *m, const Vpp__V1__Hello *h)
{
	if (m->hello || strcmp(h->device_id, DEVICE_ID) != 0) {
		m->ended = true;
		return;
	}
	vpp_device_ratings r;
	if (vpp__dev_hello_check(h, &r) != NULL) {
		m->ended = true;
		return;
	}
	char firmware[VPP_PLANT_FIRMWARE_CAP];
	vpp_utf8_copy(firmware, sizeof(firmware), h->firmware ? h->firmware : "");
	if (strlen(firmware) >= sizeof(firmware) || !vpp_utf8_valid(firmware))
		abort();
	/* The plant computes the device's limits from these every tick. */
	vpp_device_limits lim;
	if (vpp_device_ratings_check(&r) != 0 ||
	    vpp_device_limits_compute(&r, (r.min_soc + r.max_soc) / 2, 0, 1, 0.001, &lim) != 0 ||
	    !isfinite(lim.lo_kw) || !isfinite(lim.hi_kw) || lim.lo_kw > lim.hi_kw)
		abort();
	m->hello = true;
	m->r = r;
	m->rated_charge_kw = (float)r.rated_charge_kw;
	m->rated_discharge_kw = (float)r.rated_discharge_kw;
	/* The Ping right behind the Welcome. */
	m->ping_id++;
	m->ping_out = true;
	m->ping_sent_wall = NOW_MS;
}

static void telemetry(model *m, const Vpp__V1__Telemetry *t)
{
	if (!m->hello || vpp__dev_telemetry_check(t) != NULL) {
		m->ended = true;
		return;
	}
	if (t->seq <= m->last_seq || t->seq > INT64_MAX)
		return; /* a duplicate */
	int64_t measured_at;
	if (__builtin_add_overflow(t->measured_at_ms, m->clock_offset_ms, &measured_at)) {
		m->ended = true;
		return;
	}
	uint32_t bad = vpp__dev_implausible(t, m->rated_charge_kw, m->rated_discharge_kw);
	if (bad & ~(VPP_TELEMETRY_BAD_POWER | VPP_TELEMETRY_BAD_SOC))
		abort();
	/* The row as session.c makes it. */
	vpp_telemetry_row row, back;
	memset(&row, 0, sizeof(row));
	memcpy(row.device_id, DEVICE_ID, sizeof(DEVICE_ID));
	row.seq = (int64_t)t->seq;
	row.measured_at_ms = measured_at;
	row.received_at_ms = NOW_MS;
	row.power_kw = t->power_kw;
	row.power_sigma_kw = t->power_sigma_kw > 0 ? t->power_sigma_kw : NAN;
	row.soc = t->soc;
	row.soc_sigma = t->soc_sigma > 0 ? t->soc_sigma : NAN;
	row.quality = t->quality;
	if (bad)
		row.quality |= VPP__V1__QUALITY_FLAG__QUALITY_SENSOR_FAULT;
	if (!m->clock_known)
		row.quality |= VPP__V1__QUALITY_FLAG__QUALITY_CLOCK_UNSYNCED;
	/* What the store accepts of it; only the clock may refuse a row
	 * that passed the session's checks. */
	vpp_reject_reason why =
	    vpp_telemetry_validate(&row, NOW_MS, 7LL * 24 * 3600 * 1000, 5LL * 60 * 1000);
	if (why != VPP_REJECT_NONE && why != VPP_REJECT_FUTURE && why != VPP_REJECT_PAST)
		abort();
	unsigned char wire[VPP__ROW_WIRE_MAX];
	size_t n = vpp__row_encode(&row, wire);
	if (n > sizeof(wire) || vpp__row_decode(wire, n, &back) != 0 ||
	    memcmp(&row, &back, sizeof(row)) != 0)
		abort();
	m->last_seq = t->seq;
	/* The plant answers with a setpoint now and then. */
	if (t->seq % 2 == 0) {
		if (!m->first_sp_seq)
			m->first_sp_seq = m->last_sp_seq + 1;
		m->last_sp_seq++;
	}
}

static void ack(model *m, const Vpp__V1__Ack *a)
{
	if (!m->hello) {
		m->ended = true;
		return;
	}
	int k = vpp__dev_ack_check(a->setpoint_seq, m->first_sp_seq, m->last_sp_seq);
	if (k == VPP__DEV_ACK_UNKNOWN)
		m->ended = true;
	else if (k == VPP__DEV_ACK_OK &&
	         (a->setpoint_seq < m->first_sp_seq || a->setpoint_seq > m->last_sp_seq))
		abort();
	if (a->reason) {
		char line[128];
		snprintf(line, sizeof(line), "%.100s", a->reason);
	}
}

static void pong(model *m, const Vpp__V1__Pong *p)
{
	if (!m->ping_out || p->ping_id != m->ping_id)
		return;
	m->ping_out = false;
	if (!vpp__dev_clock_plausible(p->device_time_ms, m->ping_sent_wall))
		return;
	int64_t rtt = 20, off;
	/* session.c: ping_sent_wall + rtt / 2 - device_time_ms, unchecked. */
	if (__builtin_add_overflow(m->ping_sent_wall, rtt / 2, &off) ||
	    __builtin_sub_overflow(off, p->device_time_ms, &off))
		abort();
	m->clock_offset_ms = off;
	m->clock_known = true;
	/* The next one. */
	m->ping_id++;
	m->ping_out = true;
}

static int on_msg(void *ud, bool compressed, const uint8_t *msg, size_t len)
{
	model *m = ud;
	if (compressed || m->ended)
		return 1; /* the server refuses compressed messages */
	Vpp__V1__DeviceMessage *dm = vpp__v1__device_message__unpack(NULL, len, msg);
	if (!dm) {
		m->ended = true;
		return 1;
	}
	switch (dm->msg_case) {
	case VPP__V1__DEVICE_MESSAGE__MSG_HELLO:
		hello(m, dm->hello);
		break;
	case VPP__V1__DEVICE_MESSAGE__MSG_TELEMETRY:
		telemetry(m, dm->telemetry);
		break;
	case VPP__V1__DEVICE_MESSAGE__MSG_ACK:
		ack(m, dm->ack);
		break;
	case VPP__V1__DEVICE_MESSAGE__MSG_PONG:
		pong(m, dm->pong);
		break;
	default:
		m->ended = true;
		break;
	}
	vpp__v1__device_message__free_unpacked(dm, NULL);
	return m->ended ? 1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	model m;
	memset(&m, 0, sizeof(m));
	vpp_grpc_decoder d;
	vpp_grpc_decoder_init(&d, 64 * 1024);
	vpp_grpc_decoder_feed(&d, data, size, on_msg, &m);
	vpp_grpc_decoder_free(&d);

	/* The whole input as one message too: a device may send anything. */
	Vpp__V1__DeviceMessage *dm = vpp__v1__device_message__unpack(NULL, size, data);
	if (dm) {
		model one;
		memset(&one, 0, sizeof(one));
		if (dm->msg_case == VPP__V1__DEVICE_MESSAGE__MSG_HELLO)
			hello(&one, dm->hello);
		else if (dm->msg_case == VPP__V1__DEVICE_MESSAGE__MSG_TELEMETRY)
			vpp__dev_telemetry_check(dm->telemetry);
		vpp__v1__device_message__free_unpacked(dm, NULL);
	}
	return 0;
}
