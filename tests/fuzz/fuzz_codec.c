/* libFuzzer target for the gRPC codecs: the first byte picks a split
 * point, the rest is fed to the message decoder in two pieces; the input
 * also goes through grpc-timeout parsing and grpc-message decoding. The
 * decoder must never read out of bounds, deliver more bytes than it was
 * fed, or buffer more than its limit. */
#include "vpp/grpc_codec.h"

#include <stdlib.h>
#include <string.h>

#define LIMIT 4096

static int on_msg(void *ud, bool compressed, const uint8_t *msg, size_t len)
{
	size_t *total = ud;
	if (len > LIMIT)
		abort();
	volatile uint8_t sink = 0;
	for (size_t i = 0; i < len; i++)
		sink ^= msg[i];
	(void)sink;
	*total += len + 5;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t cut = data[0] % size;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	if (cut > n)
		cut = n;
	vpp_grpc_decoder d;
	size_t total = 0;
	vpp_grpc_decoder_init(&d, LIMIT);
	if (vpp_grpc_decoder_feed(&d, p, cut, on_msg, &total) == 0)
		vpp_grpc_decoder_feed(&d, p + cut, n - cut, on_msg, &total);
	if (total > n)
		abort();
	vpp_grpc_decoder_free(&d);

	char s[32], out[256];
	size_t m = n < sizeof(s) - 1 ? n : sizeof(s) - 1;
	memcpy(s, p, m);
	s[m] = 0;
	int64_t ms;
	vpp_grpc_timeout_parse(s, &ms);
	vpp_grpc_percent_decode((const char *)p, n, out, sizeof(out));
	vpp_grpc_percent_encode(s, out, sizeof(out));
	return 0;
}
