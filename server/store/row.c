/* Telemetry rows: validation before anything reaches the database, and the
 * fixed binary form rows take in the journal. */
#include "store_int.h"
#include "vpp/clock.h"
#include "vpp/error.h"

#include <math.h>
#include <string.h>
#include <time.h>

static const char *const reason_names[VPP_REJECT__COUNT] = {
    [VPP_REJECT_NONE] = "none",
    [VPP_REJECT_BAD_ID] = "bad_device_id",
    [VPP_REJECT_BAD_SEQ] = "bad_seq",
    [VPP_REJECT_NOT_FINITE] = "not_finite",
    [VPP_REJECT_SOC_RANGE] = "soc_out_of_range",
    [VPP_REJECT_BAD_SIGMA] = "negative_sigma",
    [VPP_REJECT_FUTURE] = "timestamp_future",
    [VPP_REJECT_PAST] = "timestamp_past",
    [VPP_REJECT_UNKNOWN_DEVICE] = "unknown_device",
    [VPP_REJECT_DB] = "database",
};

const char *vpp_reject_reason_name(vpp_reject_reason r)
{
	return (unsigned)r < VPP_REJECT__COUNT ? reason_names[r] : "unknown";
}

bool vpp_id_valid(const char *id)
{
	size_t n = 0;
	for (; id[n]; n++)
		if (n >= VPP_ID_CAP - 1 || (unsigned char)id[n] <= 0x20 ||
		    (unsigned char)id[n] >= 0x7f)
			return false;
	return n > 0;
}

vpp_reject_reason vpp_telemetry_validate(const vpp_telemetry_row *r, int64_t now_ms,
                                         int64_t max_past_ms, int64_t max_future_ms)
{
	if (!memchr(r->device_id, 0, sizeof(r->device_id)) || !vpp_id_valid(r->device_id))
		return VPP_REJECT_BAD_ID;
	if (r->seq < 0)
		return VPP_REJECT_BAD_SEQ;
	/* A NaN sigma is "not given" (stored as NULL); an infinite one is not. */
	if (!isfinite(r->power_kw) || isinf(r->power_sigma_kw) || !isfinite(r->soc) ||
	    isinf(r->soc_sigma))
		return VPP_REJECT_NOT_FINITE;
	if (r->soc < 0 || r->soc > 1)
		return VPP_REJECT_SOC_RANGE;
	if (r->power_sigma_kw < 0 || r->soc_sigma < 0) /* false for NaN */
		return VPP_REJECT_BAD_SIGMA;
	if (r->measured_at_ms > now_ms + max_future_ms)
		return VPP_REJECT_FUTURE;
	if (r->measured_at_ms < now_ms - max_past_ms)
		return VPP_REJECT_PAST;
	return VPP_REJECT_NONE;
}

int64_t vpp__store_now_ms(void)
{
	return vpp_wall_ms(); /* the clock devices' offsets are measured against */
}

static unsigned char *put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
	return p + 8;
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t dbits(double d)
{
	uint64_t u;
	memcpy(&u, &d, 8);
	return u;
}

static double bitsd(uint64_t u)
{
	double d;
	memcpy(&d, &u, 8);
	return d;
}

size_t vpp__row_encode(const vpp_telemetry_row *r, unsigned char *out)
{
	size_t idlen = strnlen(r->device_id, VPP_ID_CAP - 1);
	unsigned char *p = out;
	*p++ = (unsigned char)idlen;
	memcpy(p, r->device_id, idlen);
	p += idlen;
	p = put64(p, (uint64_t)r->seq);
	p = put64(p, (uint64_t)r->measured_at_ms);
	p = put64(p, (uint64_t)r->received_at_ms);
	p = put64(p, dbits(r->power_kw));
	p = put64(p, dbits(r->power_sigma_kw));
	p = put64(p, dbits(r->soc));
	p = put64(p, dbits(r->soc_sigma));
	for (int i = 0; i < 4; i++)
		*p++ = (unsigned char)(r->quality >> (8 * i));
	return (size_t)(p - out);
}

int vpp__row_decode(const void *buf, size_t len, vpp_telemetry_row *r)
{
	const unsigned char *p = buf;
	if (len < 1)
		return VPP_ECORRUPT;
	size_t idlen = p[0];
	if (idlen == 0 || idlen >= VPP_ID_CAP || len != 1 + idlen + 7 * 8 + 4)
		return VPP_ECORRUPT;
	memset(r, 0, sizeof(*r));
	memcpy(r->device_id, p + 1, idlen);
	p += 1 + idlen;
	r->seq = (int64_t)get64(p);
	r->measured_at_ms = (int64_t)get64(p + 8);
	r->received_at_ms = (int64_t)get64(p + 16);
	r->power_kw = bitsd(get64(p + 24));
	r->power_sigma_kw = bitsd(get64(p + 32));
	r->soc = bitsd(get64(p + 40));
	r->soc_sigma = bitsd(get64(p + 48));
	r->quality =
	    (uint32_t)p[56] | (uint32_t)p[57] << 8 | (uint32_t)p[58] << 16 | (uint32_t)p[59] << 24;
	return 0;
}
