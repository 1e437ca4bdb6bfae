#include "vpp/grpc_codec.h"
#include "vpp/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void vpp_grpc_decoder_init(vpp_grpc_decoder *d, size_t max_len)
{
	memset(d, 0, sizeof(*d));
	d->max_len = max_len;
}

void vpp_grpc_decoder_free(vpp_grpc_decoder *d)
{
	free(d->buf);
	d->buf = NULL;
	d->have = d->cap = 0;
}

bool vpp_grpc_decoder_partial(const vpp_grpc_decoder *d)
{
	return d->hdr_have > 0;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int vpp_grpc_decoder_feed(vpp_grpc_decoder *d, const uint8_t *data, size_t len,
			  vpp_grpc_msg_cb cb, void *ud)
{
	int rv;
	if (d->failed)
		return d->failed;
	while (len > 0) {
		if (d->hdr_have < VPP_GRPC_FRAME_HEADER) {
			/* Fast path: a whole frame in the input, nothing buffered. */
			if (d->hdr_have == 0 && len >= VPP_GRPC_FRAME_HEADER) {
				uint32_t n = be32(data + 1);
				if (data[0] > 1)
					return d->failed = VPP_EPROTO;
				if (n > d->max_len)
					return d->failed = VPP_ETOOBIG;
				if (len - VPP_GRPC_FRAME_HEADER >= n) {
					if ((rv = cb(ud, data[0] == 1, data + VPP_GRPC_FRAME_HEADER,
						     n)) != 0)
						return rv;
					data += VPP_GRPC_FRAME_HEADER + n;
					len -= VPP_GRPC_FRAME_HEADER + n;
					continue;
				}
			}
			size_t take = VPP_GRPC_FRAME_HEADER - d->hdr_have;
			if (take > len)
				take = len;
			memcpy(d->hdr + d->hdr_have, data, take);
			d->hdr_have += take;
			data += take;
			len -= take;
			if (d->hdr_have < VPP_GRPC_FRAME_HEADER)
				return 0;
			if (d->hdr[0] > 1)
				return d->failed = VPP_EPROTO;
			d->msg_len = be32(d->hdr + 1);
			if (d->msg_len > d->max_len)
				return d->failed = VPP_ETOOBIG;
			d->have = 0;
		}
		size_t take = d->msg_len - d->have;
		if (take > len)
			take = len;
		if (d->have + take > d->cap) {
			/* Doubling, up to the declared length: memory follows
			 * the bytes received, not what a prefix claims. */
			size_t ncap = d->cap ? d->cap * 2 : 4096;
			if (ncap < d->have + take)
				ncap = d->have + take;
			if (ncap > d->msg_len)
				ncap = d->msg_len;
			uint8_t *nb = realloc(d->buf, ncap);
			if (!nb)
				return d->failed = VPP_ENOMEM;
			d->buf = nb;
			d->cap = ncap;
		}
		if (take) {
			memcpy(d->buf + d->have, data, take);
			d->have += take;
			data += take;
			len -= take;
		}
		if (d->have < d->msg_len)
			return 0;
		d->hdr_have = 0;
		bool compressed = d->hdr[0] == 1;
		rv = cb(ud, compressed, d->buf ? d->buf : (const uint8_t *)"", d->msg_len);
		/* A partial buffer is released once delivered: long-lived
		 * streams keep no memory between messages. */
		free(d->buf);
		d->buf = NULL;
		d->have = d->cap = 0;
		if (rv)
			return rv;
	}
	return 0;
}

void vpp_grpc_frame_header(uint8_t out[VPP_GRPC_FRAME_HEADER], bool compressed, uint32_t len)
{
	out[0] = compressed ? 1 : 0;
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
}

int vpp_grpc_timeout_parse(const char *s, int64_t *ms)
{
	size_t n = strlen(s);
	if (n < 2 || n > 9)
		return VPP_EINVAL;
	int64_t v = 0;
	for (size_t i = 0; i + 1 < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return VPP_EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	int64_t out;
	switch (s[n - 1]) {
	case 'H': out = v * 3600000; break;
	case 'M': out = v * 60000; break;
	case 'S': out = v * 1000; break;
	case 'm': out = v; break;
	case 'u': out = (v + 999) / 1000; break;
	case 'n': out = (v + 999999) / 1000000; break;
	default: return VPP_EINVAL;
	}
	*ms = out;
	return 0;
}

void vpp_grpc_timeout_format(int64_t ms, char *out, size_t cap)
{
	if (ms < 0)
		ms = 0;
	if (ms <= 99999999)
		snprintf(out, cap, "%lldm", (long long)ms);
	else if (ms / 1000 <= 99999999)
		snprintf(out, cap, "%lldS", (long long)((ms + 999) / 1000));
	else
		snprintf(out, cap, "%lldH", (long long)((ms / 1000 + 3599) / 3600));
}

size_t vpp_grpc_percent_encode(const char *in, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t j = 0;
	if (cap == 0)
		return 0;
	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
			if (j + 1 >= cap)
				break;
			out[j++] = (char)*p;
		} else {
			if (j + 3 >= cap)
				break;
			out[j++] = '%';
			out[j++] = hex[*p >> 4];
			out[j++] = hex[*p & 15];
		}
	}
	out[j] = 0;
	return j;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

size_t vpp_grpc_percent_decode(const char *in, size_t len, char *out, size_t cap)
{
	size_t j = 0;
	if (cap == 0)
		return 0;
	for (size_t i = 0; i < len && j + 1 < cap; i++) {
		int hi, lo;
		if (in[i] == '%' && i + 2 < len &&
		    (hi = hexval(in[i + 1])) >= 0 && (lo = hexval(in[i + 2])) >= 0) {
			out[j++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out[j++] = in[i];
		}
	}
	out[j] = 0;
	return j;
}
