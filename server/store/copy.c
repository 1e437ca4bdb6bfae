/* COPY ... FROM STDIN (FORMAT binary) encoding of telemetry rows: network
 * byte order, each field as a 4-byte length and its bytes; length -1 and no
 * bytes is NULL. */
#include "store_int.h"
#include "vpp/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int vpp__buf_reserve(vpp__buf *b, size_t more)
{
	if (b->cap - b->len >= more)
		return 0;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap - b->len < more)
		cap *= 2;
	unsigned char *p = realloc(b->p, cap);
	if (!p)
		return VPP_ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

void vpp__buf_free(vpp__buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

static unsigned char *be16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
	return p + 2;
}

static unsigned char *be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
	return p + 4;
}

static unsigned char *be64(unsigned char *p, uint64_t v)
{
	p = be32(p, (uint32_t)(v >> 32));
	return be32(p, (uint32_t)v);
}

static unsigned char *f_text(unsigned char *p, const char *s, size_t n)
{
	p = be32(p, (uint32_t)n);
	memcpy(p, s, n);
	return p + n;
}

static unsigned char *f_i64(unsigned char *p, int64_t v)
{
	return be64(be32(p, 8), (uint64_t)v);
}

static unsigned char *f_f64(unsigned char *p, double d)
{
	uint64_t u;
	memcpy(&u, &d, 8);
	return be64(be32(p, 8), u);
}

/* A sigma: NaN means the device gave none, stored as NULL (never as 0,
 * which would claim an exact measurement, nor as a NaN float8). */
static unsigned char *f_sigma(unsigned char *p, double d)
{
	return isnan(d) ? be32(p, UINT32_MAX) : f_f64(p, d);
}

static unsigned char *f_ts(unsigned char *p, int64_t unix_ms)
{
	return f_i64(p, (unix_ms - VPP__PG_EPOCH_MS) * 1000);
}

int vpp__copy_header(vpp__buf *b)
{
	static const unsigned char sig[11] = {'P',  'G',  'C',  'O',  'P', 'Y',
	                                      '\n', 0xff, '\r', '\n', 0};
	if (vpp__buf_reserve(b, 19) != 0)
		return VPP_ENOMEM;
	unsigned char *p = b->p + b->len;
	memcpy(p, sig, 11);
	p = be32(p + 11, 0); /* flags: no OIDs */
	p = be32(p, 0);      /* header extension length */
	b->len = (size_t)(p - b->p);
	return 0;
}

int vpp__copy_row(vpp__buf *b, const vpp_telemetry_row *r, const char *node_id)
{
	size_t idlen = strnlen(r->device_id, VPP_ID_CAP - 1), nodelen = strlen(node_id);
	/* At most: a NULL sigma takes 8 bytes less. */
	size_t need = 2 + VPP__COPY_FIELDS * 4 + idlen + 8 * 8 + 4 + nodelen;
	if (vpp__buf_reserve(b, need) != 0)
		return VPP_ENOMEM;
	unsigned char *p = b->p + b->len;
	p = be16(p, VPP__COPY_FIELDS);
	p = f_text(p, r->device_id, idlen);
	p = f_i64(p, r->seq);
	p = f_ts(p, r->measured_at_ms);
	p = f_ts(p, r->received_at_ms);
	p = f_f64(p, r->power_kw);
	p = f_sigma(p, r->power_sigma_kw);
	p = f_f64(p, r->soc);
	p = f_sigma(p, r->soc_sigma);
	p = be32(be32(p, 4), r->quality);
	p = f_text(p, node_id, nodelen);
	b->len = (size_t)(p - b->p);
	return 0;
}

int vpp__copy_trailer(vpp__buf *b)
{
	if (vpp__buf_reserve(b, 2) != 0)
		return VPP_ENOMEM;
	be16(b->p + b->len, 0xffff);
	b->len += 2;
	return 0;
}
