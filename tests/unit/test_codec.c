/* gRPC framing codec: length-prefixed messages split at every byte,
 * limits, bad flags, grpc-timeout and grpc-message encoding. */
#include "vpp/error.h"
#include "vpp/grpc_codec.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	int n;
	size_t lens[16];
	uint8_t first[16];
	bool compressed[16];
} got;

static int collect(void *ud, bool compressed, const uint8_t *msg, size_t len)
{
	got *g = ud;
	if (g->n < 16) {
		g->lens[g->n] = len;
		g->first[g->n] = len ? msg[0] : 0;
		g->compressed[g->n] = compressed;
	}
	g->n++;
	return 0;
}

static size_t frame(uint8_t *out, uint8_t flag, const uint8_t *msg, uint32_t len)
{
	vpp_grpc_frame_header(out, flag == 1, len);
	out[0] = flag;
	memcpy(out + 5, msg, len);
	return 5 + len;
}

START_TEST(decodes_messages_split_anywhere)
{
	uint8_t a[300], b[1], buf[1024];
	memset(a, 'a', sizeof(a));
	b[0] = 'b';
	size_t n = frame(buf, 0, a, sizeof(a));
	n += frame(buf + n, 0, b, 0); /* empty message */
	n += frame(buf + n, 0, b, 1);
	/* Every split point, and byte-by-byte. */
	for (size_t cut = 0; cut <= n; cut++) {
		vpp_grpc_decoder d;
		got g = {0};
		vpp_grpc_decoder_init(&d, 1024);
		ck_assert_int_eq(vpp_grpc_decoder_feed(&d, buf, cut, collect, &g), 0);
		ck_assert_int_eq(vpp_grpc_decoder_feed(&d, buf + cut, n - cut, collect, &g), 0);
		ck_assert_int_eq(g.n, 3);
		ck_assert_uint_eq(g.lens[0], 300);
		ck_assert_uint_eq(g.first[0], 'a');
		ck_assert_uint_eq(g.lens[1], 0);
		ck_assert_uint_eq(g.lens[2], 1);
		ck_assert_uint_eq(g.first[2], 'b');
		ck_assert(!vpp_grpc_decoder_partial(&d));
		vpp_grpc_decoder_free(&d);
	}
	vpp_grpc_decoder d;
	got g = {0};
	vpp_grpc_decoder_init(&d, 1024);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(vpp_grpc_decoder_feed(&d, buf + i, 1, collect, &g), 0);
	ck_assert_int_eq(g.n, 3);
	vpp_grpc_decoder_free(&d);
}
END_TEST

START_TEST(reports_truncation_as_partial)
{
	uint8_t msg[100] = {0}, buf[200];
	size_t n = frame(buf, 0, msg, sizeof(msg));
	vpp_grpc_decoder d;
	got g = {0};
	vpp_grpc_decoder_init(&d, 1024);
	ck_assert_int_eq(vpp_grpc_decoder_feed(&d, buf, 3, collect, &g), 0);
	ck_assert(vpp_grpc_decoder_partial(&d));
	ck_assert_int_eq(vpp_grpc_decoder_feed(&d, buf + 3, n - 13, collect, &g), 0);
	ck_assert(vpp_grpc_decoder_partial(&d));
	ck_assert_int_eq(g.n, 0);
	vpp_grpc_decoder_free(&d);
}
END_TEST

START_TEST(refuses_oversized_and_bad_flags)
{
	uint8_t hdr[5];
	vpp_grpc_decoder d;
	got g = {0};
	vpp_grpc_decoder_init(&d, 1000);
	vpp_grpc_frame_header(hdr, false, 1001);
	/* Refused on the header alone: nothing is buffered for it. */
	ck_assert_int_eq(vpp_grpc_decoder_feed(&d, hdr, 5, collect, &g), VPP_ETOOBIG);
	ck_assert_int_eq(vpp_grpc_decoder_feed(&d, hdr, 1, collect, &g), VPP_ETOOBIG);
	vpp_grpc_decoder_free(&d);

	vpp_grpc_decoder_init(&d, 1000);
	uint8_t bad[6] = {2, 0, 0, 0, 1, 'x'};
	ck_assert_int_eq(vpp_grpc_decoder_feed(&d, bad, 6, collect, &g), VPP_EPROTO);
	vpp_grpc_decoder_free(&d);

	vpp_grpc_decoder_init(&d, 1000);
	uint8_t comp[6] = {1, 0, 0, 0, 1, 'x'};
	ck_assert_int_eq(vpp_grpc_decoder_feed(&d, comp, 6, collect, &g), 0);
	ck_assert_int_eq(g.n, 1);
	ck_assert(g.compressed[0]);
	vpp_grpc_decoder_free(&d);

	/* A 4 GiB declared length never allocates. */
	vpp_grpc_decoder_init(&d, 4 * 1024 * 1024);
	uint8_t huge[5] = {0, 0xff, 0xff, 0xff, 0xff};
	ck_assert_int_eq(vpp_grpc_decoder_feed(&d, huge, 5, collect, &g), VPP_ETOOBIG);
	vpp_grpc_decoder_free(&d);
}
END_TEST

static int stop_after_first(void *ud, bool compressed, const uint8_t *msg, size_t len)
{
	(*(int *)ud)++;
	return 7;
}

START_TEST(callback_can_stop_feeding)
{
	uint8_t buf[64], m = 'x';
	size_t n = frame(buf, 0, &m, 1);
	n += frame(buf + n, 0, &m, 1);
	vpp_grpc_decoder d;
	int calls = 0;
	vpp_grpc_decoder_init(&d, 100);
	ck_assert_int_eq(vpp_grpc_decoder_feed(&d, buf, n, stop_after_first, &calls), 7);
	ck_assert_int_eq(calls, 1);
	vpp_grpc_decoder_free(&d);
}
END_TEST

static int count_msg(void *ud, bool compressed, const uint8_t *msg, size_t len)
{
	(*(size_t *)ud) += len;
	return 0;
}

START_TEST(memory_follows_the_bytes_received)
{
	/* A prefix that claims 4 MiB and 10 bytes of it: a few KiB held, not
	 * 4 MiB (a client could pin memory with prefixes alone). */
	vpp_grpc_decoder d;
	vpp_grpc_decoder_init(&d, 4 << 20);
	uint8_t hdr[VPP_GRPC_FRAME_HEADER];
	vpp_grpc_frame_header(hdr, false, 4 << 20);
	size_t bytes = 0;
	ck_assert_int_eq(vpp_grpc_decoder_feed(&d, hdr, sizeof(hdr), count_msg, &bytes), 0);
	ck_assert_uint_eq(d.cap, 0);
	uint8_t part[10] = {0};
	ck_assert_int_eq(vpp_grpc_decoder_feed(&d, part, sizeof(part), count_msg, &bytes), 0);
	ck_assert_uint_le(d.cap, 4096);
	/* The whole message still arrives, whatever the pieces. */
	static uint8_t chunk[100000];
	size_t left = (4 << 20) - sizeof(part);
	while (left > 0) {
		size_t n = left < sizeof(chunk) ? left : sizeof(chunk);
		ck_assert_int_eq(vpp_grpc_decoder_feed(&d, chunk, n, count_msg, &bytes), 0);
		ck_assert_uint_le(d.cap, 4 << 20);
		left -= n;
	}
	ck_assert_uint_eq(bytes, 4 << 20);
	ck_assert_uint_eq(d.cap, 0); /* released once delivered */
	vpp_grpc_decoder_free(&d);
}
END_TEST

START_TEST(parses_grpc_timeout)
{
	int64_t ms;
	ck_assert_int_eq(vpp_grpc_timeout_parse("1S", &ms), 0);
	ck_assert_int_eq(ms, 1000);
	ck_assert_int_eq(vpp_grpc_timeout_parse("250m", &ms), 0);
	ck_assert_int_eq(ms, 250);
	ck_assert_int_eq(vpp_grpc_timeout_parse("1500u", &ms), 0);
	ck_assert_int_eq(ms, 2); /* rounded up */
	ck_assert_int_eq(vpp_grpc_timeout_parse("1n", &ms), 0);
	ck_assert_int_eq(ms, 1);
	ck_assert_int_eq(vpp_grpc_timeout_parse("2H", &ms), 0);
	ck_assert_int_eq(ms, 7200000);
	ck_assert_int_eq(vpp_grpc_timeout_parse("3M", &ms), 0);
	ck_assert_int_eq(ms, 180000);
	ck_assert_int_eq(vpp_grpc_timeout_parse("99999999S", &ms), 0);
	const char *bad[] = {"", "S", "10", "1x", "-1S", "123456789S", "1.5S", " 1S"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_int_eq(vpp_grpc_timeout_parse(bad[i], &ms), VPP_EINVAL);
	char out[24];
	vpp_grpc_timeout_format(1500, out, sizeof(out));
	ck_assert_str_eq(out, "1500m");
	vpp_grpc_timeout_format(500000000, out, sizeof(out));
	ck_assert_int_eq(vpp_grpc_timeout_parse(out, &ms), 0);
	ck_assert(ms >= 500000000);
}
END_TEST

START_TEST(percent_encoding_round_trips)
{
	const char *in = "100% \xc3\xbc\n\"done\"";
	char enc[128], dec[128];
	vpp_grpc_percent_encode(in, enc, sizeof(enc));
	ck_assert_str_eq(enc, "100%25 %C3%BC%0A\"done\"");
	vpp_grpc_percent_decode(enc, strlen(enc), dec, sizeof(dec));
	ck_assert_str_eq(dec, in);
	/* Malformed escapes are kept as they are. */
	vpp_grpc_percent_decode("50%%zz%4", 8, dec, sizeof(dec));
	ck_assert_str_eq(dec, "50%%zz%4");
	/* Truncation never splits an escape. */
	size_t n = vpp_grpc_percent_encode("ab\n", enc, 5);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(enc, "ab");
}
END_TEST

Suite *test_codec_suite(void);

Suite *test_codec_suite(void)
{
	Suite *s = suite_create("codec");
	TCase *tc = tcase_create("grpc");
	tcase_add_test(tc, decodes_messages_split_anywhere);
	tcase_add_test(tc, reports_truncation_as_partial);
	tcase_add_test(tc, refuses_oversized_and_bad_flags);
	tcase_add_test(tc, callback_can_stop_feeding);
	tcase_add_test(tc, memory_follows_the_bytes_received);
	tcase_add_test(tc, parses_grpc_timeout);
	tcase_add_test(tc, percent_encoding_round_trips);
	suite_add_tcase(s, tc);
	return s;
}
