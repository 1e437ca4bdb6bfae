/* The store's pure parts: telemetry validation, COPY BINARY encoding as
 * PostgreSQL reads it, the journal's row and statement forms, the row
 * queue, and the store itself with no database (everything is journaled,
 * and a restart finds it). */
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../server/store/store_int.h"
#include "vpp/error.h"
#include "vpp/metrics.h"

static vpp_telemetry_row good_row(int64_t now)
{
	vpp_telemetry_row r;
	memset(&r, 0, sizeof(r));
	snprintf(r.device_id, sizeof(r.device_id), "bat-0001");
	r.seq = 42;
	r.measured_at_ms = now - 500;
	r.received_at_ms = now;
	r.power_kw = -3.25;
	r.power_sigma_kw = 0.1;
	r.soc = 0.5;
	r.soc_sigma = 0.01;
	r.quality = 0x80000001u;
	return r;
}

#define PAST (3600 * 1000)
#define FUTURE (60 * 1000)

START_TEST(validate_reasons)
{
	int64_t now = 1800000000000LL;
	vpp_telemetry_row r = good_row(now);
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_NONE);

	r = good_row(now), r.power_kw = NAN;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_NOT_FINITE);
	r = good_row(now), r.soc_sigma = INFINITY;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_NOT_FINITE);
	r = good_row(now), r.power_sigma_kw = -INFINITY;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_NOT_FINITE);
	r = good_row(now), r.soc = 1.0000001;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_SOC_RANGE);
	r = good_row(now), r.soc = -0.0001;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_SOC_RANGE);
	r = good_row(now), r.soc = 0;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_NONE);
	r = good_row(now), r.soc = 1;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_NONE);
	r = good_row(now), r.power_sigma_kw = -0.1;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_BAD_SIGMA);
	r = good_row(now), r.measured_at_ms = now + FUTURE + 1;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_FUTURE);
	r = good_row(now), r.measured_at_ms = now + FUTURE;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_NONE);
	r = good_row(now), r.measured_at_ms = now - PAST - 1;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_PAST);
	r = good_row(now), r.seq = -1;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_BAD_SEQ);
	r = good_row(now), r.device_id[0] = 0;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_BAD_ID);
	r = good_row(now), snprintf(r.device_id, sizeof(r.device_id), "bad id");
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_BAD_ID);
	r = good_row(now), memset(r.device_id, 'x', sizeof(r.device_id)); /* no NUL */
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_BAD_ID);
	r = good_row(now), r.device_id[3] = (char)0xc3;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_BAD_ID);
}
END_TEST

/* A NaN sigma means "the device gave none" (stored as NULL): accepted. An
 * infinite or negative sigma is still refused, and NaN anywhere else too. */
START_TEST(validate_nan_sigma_is_not_given)
{
	int64_t now = 1800000000000LL;
	vpp_telemetry_row r = good_row(now);
	r.power_sigma_kw = NAN;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_NONE);
	r = good_row(now), r.soc_sigma = NAN;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_NONE);
	r = good_row(now), r.power_sigma_kw = NAN, r.soc_sigma = -NAN;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_NONE);
	r = good_row(now), r.power_sigma_kw = 0, r.soc_sigma = 0; /* exact, as given */
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_NONE);
	/* Other rules unchanged, NaN sigma or not. */
	r = good_row(now), r.power_sigma_kw = INFINITY, r.soc_sigma = NAN;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_NOT_FINITE);
	r = good_row(now), r.power_sigma_kw = NAN, r.soc_sigma = -INFINITY;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_NOT_FINITE);
	r = good_row(now), r.power_sigma_kw = NAN, r.soc_sigma = -0.01;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_BAD_SIGMA);
	r = good_row(now), r.power_sigma_kw = -1e-9, r.soc_sigma = NAN;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_BAD_SIGMA);
	r = good_row(now), r.power_sigma_kw = NAN, r.power_kw = NAN;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_NOT_FINITE);
	r = good_row(now), r.soc_sigma = NAN, r.soc = NAN;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_NOT_FINITE);
	r = good_row(now), r.power_sigma_kw = NAN, r.soc = 1.5;
	ck_assert_int_eq(vpp_telemetry_validate(&r, now, PAST, FUTURE), VPP_REJECT_SOC_RANGE);
}
END_TEST

START_TEST(reason_names_are_labels)
{
	ck_assert_str_eq(vpp_reject_reason_name(VPP_REJECT_NOT_FINITE), "not_finite");
	ck_assert_str_eq(vpp_reject_reason_name(VPP_REJECT_UNKNOWN_DEVICE), "unknown_device");
	for (int r = 1; r < VPP_REJECT__COUNT; r++) {
		const char *n = vpp_reject_reason_name(r);
		ck_assert_ptr_nonnull(n);
		for (const char *p = n; *p; p++)
			ck_assert((*p >= 'a' && *p <= 'z') || *p == '_');
	}
	ck_assert_str_eq(vpp_reject_reason_name(VPP_REJECT__COUNT), "unknown");
}
END_TEST

static uint64_t be(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static double be_f64(const unsigned char *p)
{
	uint64_t u = be(p, 8);
	double d;
	memcpy(&d, &u, 8);
	return d;
}

START_TEST(copy_binary_layout)
{
	vpp__buf b = {0};
	int64_t now = 1800000000123LL;
	vpp_telemetry_row r = good_row(now);
	ck_assert_int_eq(vpp__copy_header(&b), 0);
	ck_assert_uint_eq(b.len, 19);
	ck_assert_int_eq(memcmp(b.p, "PGCOPY\n\377\r\n\0", 11), 0);
	ck_assert_uint_eq(be(b.p + 11, 4), 0); /* flags */
	ck_assert_uint_eq(be(b.p + 15, 4), 0); /* extension */
	ck_assert_int_eq(vpp__copy_row(&b, &r, "node-7"), 0);
	ck_assert_int_eq(vpp__copy_trailer(&b), 0);

	const unsigned char *p = b.p + 19;
	ck_assert_uint_eq(be(p, 2), VPP__COPY_FIELDS);
	p += 2;
	ck_assert_uint_eq(be(p, 4), 8); /* device_id text */
	ck_assert_int_eq(memcmp(p + 4, "bat-0001", 8), 0);
	p += 12;
	ck_assert_uint_eq(be(p, 4), 8); /* seq int8 */
	ck_assert_uint_eq(be(p + 4, 8), 42);
	p += 12;
	/* measured_at: µs since 2000-01-01 */
	ck_assert_uint_eq(be(p, 4), 8);
	ck_assert_int_eq((int64_t)be(p + 4, 8), (now - 500 - 946684800000LL) * 1000);
	p += 12;
	ck_assert_int_eq((int64_t)be(p + 4, 8), (now - 946684800000LL) * 1000);
	p += 12;
	ck_assert(be_f64(p + 4) == -3.25);
	p += 12;
	ck_assert(be_f64(p + 4) == 0.1);
	p += 12;
	ck_assert(be_f64(p + 4) == 0.5);
	p += 12;
	ck_assert(be_f64(p + 4) == 0.01);
	p += 12;
	ck_assert_uint_eq(be(p, 4), 4); /* quality int4, bit pattern kept */
	ck_assert_uint_eq(be(p + 4, 4), 0x80000001u);
	p += 8;
	ck_assert_uint_eq(be(p, 4), 6);
	ck_assert_int_eq(memcmp(p + 4, "node-7", 6), 0);
	p += 10;
	ck_assert_uint_eq(be(p, 2), 0xffff); /* trailer */
	ck_assert_uint_eq((size_t)(p + 2 - b.p), b.len);
	vpp__buf_free(&b);
}
END_TEST

/* A NaN sigma is a NULL field (length -1, no bytes), whatever the NaN's
 * sign or payload; a given sigma keeps its value. */
START_TEST(copy_binary_null_sigma)
{
	vpp__buf b = {0};
	int64_t now = 1800000000123LL;
	vpp_telemetry_row r = good_row(now);
	r.power_sigma_kw = NAN;
	r.soc_sigma = 0.05;
	ck_assert_int_eq(vpp__copy_row(&b, &r, "node-7"), 0);
	size_t one = b.len;
	const unsigned char *p = b.p;
	ck_assert_uint_eq(be(p, 2), VPP__COPY_FIELDS);
	p += 2 + 12 + 12 + 12 + 12; /* device_id (8 bytes), seq, measured_at, received_at */
	ck_assert_uint_eq(be(p, 4), 8);
	ck_assert(be_f64(p + 4) == -3.25);
	p += 12;
	ck_assert_uint_eq(be(p, 4), 0xffffffffu); /* power_sigma_kw NULL */
	p += 4;
	ck_assert_uint_eq(be(p, 4), 8);
	ck_assert(be_f64(p + 4) == 0.5);
	p += 12;
	ck_assert_uint_eq(be(p, 4), 8); /* soc_sigma given */
	ck_assert(be_f64(p + 4) == 0.05);
	p += 12;
	ck_assert_uint_eq(be(p, 4), 4);
	ck_assert_uint_eq(be(p + 4, 4), 0x80000001u);
	p += 8;
	ck_assert_uint_eq(be(p, 4), 6);
	ck_assert_int_eq(memcmp(p + 4, "node-7", 6), 0);
	p += 10;
	ck_assert_uint_eq((size_t)(p - b.p), one);

	/* Both missing, one as a negative NaN with a payload. */
	uint64_t bits = 0xfff8000000000123ull;
	double odd;
	memcpy(&odd, &bits, 8);
	r.power_sigma_kw = odd;
	r.soc_sigma = NAN;
	ck_assert_int_eq(vpp__copy_row(&b, &r, "node-7"), 0);
	ck_assert_uint_eq(b.len - one, one - 8);
	p = b.p + one + 2 + 4 * 12;
	ck_assert(be_f64(p + 4) == -3.25);
	p += 12;
	ck_assert_uint_eq(be(p, 4), 0xffffffffu);
	p += 4 + 12;
	ck_assert_uint_eq(be(p, 4), 0xffffffffu);
	p += 4;
	ck_assert_uint_eq(be(p, 4), 4);

	/* A sigma of 0 was given as 0: it stays a value. */
	b.len = 0;
	r = good_row(now), r.power_sigma_kw = 0, r.soc_sigma = -0.0;
	ck_assert_int_eq(vpp__copy_row(&b, &r, "node-7"), 0);
	ck_assert_uint_eq(b.len, one + 8);
	p = b.p + 2 + 5 * 12;
	ck_assert_uint_eq(be(p, 4), 8);
	ck_assert(be_f64(p + 4) == 0);
	vpp__buf_free(&b);
}
END_TEST

/* The read of a device's telemetry: a NULL sigma comes back as NaN, never
 * as 0 (an exact measurement); a stored one as itself. */
START_TEST(row_from_result_null_sigma)
{
	PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	ck_assert_ptr_nonnull(res);
	static const char *const names[9] = {"device_id",   "seq",       "measured_at",
	                                     "received_at", "power_kw",  "power_sigma_kw",
	                                     "soc",         "soc_sigma", "quality"};
	PGresAttDesc att[9];
	memset(att, 0, sizeof(att));
	for (int c = 0; c < 9; c++)
		att[c].name = (char *)names[c], att[c].typlen = -1;
	ck_assert_int_eq(PQsetResultAttrs(res, 9, att), 1);
	const char *rows[2][9] = {
	    {"bat-0001", "7", "1800000000000", "1800000000050", "-3.25", NULL, "0.5", NULL,
	     "-2147483647"},
	    {"bat-0001", "8", "1800000001000", "1800000001050", "1.5", "0.05", "0.25", "0", "3"},
	};
	for (int i = 0; i < 2; i++)
		for (int c = 0; c < 9; c++)
			ck_assert_int_eq(PQsetvalue(res, i, c, (char *)rows[i][c],
			                            rows[i][c] ? (int)strlen(rows[i][c]) : -1),
			                 1);
	vpp_telemetry_row t;
	vpp__row_from_result(res, 0, &t);
	ck_assert_str_eq(t.device_id, "bat-0001");
	ck_assert_int_eq(t.seq, 7);
	ck_assert_int_eq(t.measured_at_ms, 1800000000000LL);
	ck_assert(t.power_kw == -3.25);
	ck_assert(isnan(t.power_sigma_kw));
	ck_assert(t.soc == 0.5);
	ck_assert(isnan(t.soc_sigma));
	ck_assert_uint_eq(t.quality, 0x80000001u);
	vpp__row_from_result(res, 1, &t);
	ck_assert(t.power_sigma_kw == 0.05);
	ck_assert(t.soc_sigma == 0); /* a stored 0 is a 0 */
	PQclear(res);
}
END_TEST

START_TEST(row_wire_roundtrip)
{
	unsigned char buf[VPP__ROW_WIRE_MAX];
	vpp_telemetry_row r = good_row(1800000000000LL), back;
	size_t n = vpp__row_encode(&r, buf);
	ck_assert_uint_le(n, VPP__ROW_WIRE_MAX);
	ck_assert_int_eq(vpp__row_decode(buf, n, &back), 0);
	ck_assert_int_eq(memcmp(&r, &back, sizeof(r)), 0);
	/* Longest id. */
	memset(r.device_id, 'a', VPP_ID_CAP - 1);
	r.device_id[VPP_ID_CAP - 1] = 0;
	n = vpp__row_encode(&r, buf);
	ck_assert_uint_eq(n, VPP__ROW_WIRE_MAX);
	ck_assert_int_eq(vpp__row_decode(buf, n, &back), 0);
	ck_assert_str_eq(back.device_id, r.device_id);
	/* Wrong length or id length: corrupt, never a half row. */
	ck_assert_int_eq(vpp__row_decode(buf, n - 1, &back), VPP_ECORRUPT);
	ck_assert_int_eq(vpp__row_decode(buf, 0, &back), VPP_ECORRUPT);
	buf[0] = 0;
	ck_assert_int_eq(vpp__row_decode(buf, n, &back), VPP_ECORRUPT);
}
END_TEST

START_TEST(stmt_roundtrip)
{
	vpp__stmt st;
	const char *in[6] = {"123", "dev-1", NULL, "", "disconnect", "it's \"quoted\""};
	ck_assert_int_eq(vpp__stmt_build(&st, VPP__ST_DEVICE_EVENT, in, 6), 0);
	const char *out[32];
	vpp__stmt_id id;
	int n;
	ck_assert_int_eq(vpp__stmt_parse(st.blob, st.len, &id, out, &n), 0);
	ck_assert_int_eq(id, VPP__ST_DEVICE_EVENT);
	ck_assert_int_eq(n, 6);
	ck_assert_str_eq(out[0], "123");
	ck_assert_ptr_null(out[2]);
	ck_assert_str_eq(out[3], "");
	ck_assert_str_eq(out[5], in[5]);
	/* Truncated, or a count that does not match the statement. */
	ck_assert_int_eq(vpp__stmt_parse(st.blob, st.len - 1, &id, out, &n), VPP_ECORRUPT);
	st.blob[2] = 5;
	ck_assert_int_eq(vpp__stmt_parse(st.blob, st.len, &id, out, &n), VPP_ECORRUPT);
	free(st.blob);
	/* Every statement declares as many parameters as its SQL uses. */
	for (int i = 0; i < VPP__ST__COUNT; i++) {
		char want[16];
		snprintf(want, sizeof(want), "$%d", vpp__stmts[i].nparams);
		if (vpp__stmts[i].nparams)
			ck_assert_ptr_nonnull(strstr(vpp__stmts[i].sql, want));
		snprintf(want, sizeof(want), "$%d", vpp__stmts[i].nparams + 1);
		ck_assert_ptr_null(strstr(vpp__stmts[i].sql, want));
	}
}
END_TEST

START_TEST(strset_basic)
{
	vpp__strset s = {0};
	char k[32];
	for (int i = 0; i < 5000; i++) {
		snprintf(k, sizeof(k), "dev-%d", i);
		ck_assert_int_eq(vpp__strset_add(&s, k), 0);
	}
	ck_assert_int_eq(vpp__strset_add(&s, "dev-7"), 0);
	ck_assert_uint_eq(s.n, 5000);
	ck_assert(vpp__strset_has(&s, "dev-4999"));
	ck_assert(!vpp__strset_has(&s, "dev-5000"));
	vpp__strset_free(&s);
	ck_assert(!vpp__strset_has(&s, "dev-1"));

	/* With values: the largest one stays (coalescing keeps the newest). */
	int64_t v = 0;
	ck_assert_int_eq(vpp__strset_put_max(&s, "a", 10), 0);
	ck_assert_int_eq(vpp__strset_put_max(&s, "a", 5), 0);
	ck_assert(vpp__strset_get(&s, "a", &v));
	ck_assert_int_eq(v, 10);
	ck_assert_int_eq(vpp__strset_put_max(&s, "a", 12), 0);
	ck_assert(vpp__strset_get(&s, "a", &v));
	ck_assert_int_eq(v, 12);
	ck_assert(!vpp__strset_get(&s, "b", &v));
	for (int i = 0; i < 3000; i++) { /* values survive growth */
		snprintf(k, sizeof(k), "k%d", i);
		ck_assert_int_eq(vpp__strset_put_max(&s, k, i), 0);
	}
	ck_assert(vpp__strset_get(&s, "a", &v));
	ck_assert_int_eq(v, 12);
	ck_assert(vpp__strset_get(&s, "k2999", &v));
	ck_assert_int_eq(v, 2999);
	vpp__strset_free(&s);
}
END_TEST

START_TEST(rowq_bounded_fifo)
{
	vpp__rowq *q;
	ck_assert_int_eq(vpp__rowq_new(8, &q), 0);
	vpp_telemetry_row r = good_row(0), out;
	size_t depth;
	for (int i = 0; i < 8; i++) {
		r.seq = i;
		ck_assert_int_eq(vpp__rowq_push(q, &r, &depth), 0);
		ck_assert_uint_eq(depth, (size_t)i + 1);
	}
	ck_assert_int_eq(vpp__rowq_push(q, &r, &depth), VPP_EFULL);
	for (int i = 0; i < 8; i++) {
		ck_assert(vpp__rowq_pop(q, &out));
		ck_assert_int_eq(out.seq, i);
	}
	ck_assert(!vpp__rowq_pop(q, &out));
	ck_assert_uint_eq(vpp__rowq_depth(q), 0);
	vpp__rowq_free(q);
}
END_TEST

#define PRODUCERS 4
#define PER_PRODUCER 50000

typedef struct {
	vpp__rowq *q;
	int id;
} producer;

static void *produce(void *arg)
{
	producer *p = arg;
	vpp_telemetry_row r = good_row(0);
	size_t depth;
	for (int i = 0; i < PER_PRODUCER; i++) {
		r.seq = (int64_t)p->id * PER_PRODUCER + i;
		while (vpp__rowq_push(p->q, &r, &depth) == VPP_EFULL)
			sched_yield();
	}
	return NULL;
}

START_TEST(rowq_many_producers)
{
	vpp__rowq *q;
	ck_assert_int_eq(vpp__rowq_new(1024, &q), 0);
	pthread_t t[PRODUCERS];
	producer p[PRODUCERS];
	for (int i = 0; i < PRODUCERS; i++) {
		p[i] = (producer){q, i};
		pthread_create(&t[i], NULL, produce, &p[i]);
	}
	/* Each producer's rows arrive complete and in its order. */
	int64_t next[PRODUCERS] = {0};
	int got = 0;
	vpp_telemetry_row out;
	while (got < PRODUCERS * PER_PRODUCER) {
		if (!vpp__rowq_pop(q, &out)) {
			sched_yield();
			continue;
		}
		int id = (int)(out.seq / PER_PRODUCER);
		ck_assert_int_eq(out.seq % PER_PRODUCER, next[id]);
		ck_assert_str_eq(out.device_id, "bat-0001");
		next[id]++;
		got++;
	}
	for (int i = 0; i < PRODUCERS; i++)
		pthread_join(t[i], NULL);
	ck_assert(!vpp__rowq_pop(q, &out));
	vpp__rowq_free(q);
}
END_TEST

static char jdir[64];

static void rm_jdir(void)
{
	DIR *d = opendir(jdir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char p[512];
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", jdir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(jdir);
}

/* Waits up to 5 s for |n| rows to be durable; |st| holds the last stats. */
static void wait_durable(vpp_store *s, uint64_t n, vpp_store_stats *st)
{
	for (int k = 0; k < 500; k++) {
		vpp_store_get_stats(s, st);
		if (st->durable == n)
			return;
		usleep(10000);
	}
}

START_TEST(options_checked)
{
	vpp_store_options o;
	vpp_store *s = NULL;
	vpp_store_options_init(&o);
	o.node_id = "has space";
	ck_assert_int_eq(vpp_store_start(&o, &s), VPP_EINVAL);
	vpp_store_options_init(&o);
	o.batch_rows = 0;
	ck_assert_int_eq(vpp_store_start(&o, &s), VPP_EINVAL);
	vpp_store_options_init(&o);
	o.reconnect_max_ms = 1;
	o.reconnect_min_ms = 10;
	ck_assert_int_eq(vpp_store_start(&o, &s), VPP_EINVAL);
	ck_assert_ptr_null(s);
	vpp_store_stop(NULL);
}
END_TEST

/* No database at all: rows are accepted, journaled, counted durable; bad
 * rows are refused at once; a second store on the same folder is refused;
 * a restart finds every row in the journal. */
START_TEST(no_database_journals_everything)
{
	snprintf(jdir, sizeof(jdir), "/tmp/vpp-store-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(jdir));
	vpp_store_options o;
	vpp_store_options_init(&o);
	o.conninfo = "host=/nonexistent-vpp-socket-dir dbname=x connect_timeout=1";
	o.journal_dir = jdir;
	o.reconnect_min_ms = 20;
	o.reconnect_max_ms = 40;
	o.stop_timeout_ms = 100;
	vpp_store *s, *other = NULL;
	ck_assert_int_eq(vpp_store_start(&o, &s), 0);
	ck_assert_int_eq(vpp_store_start(&o, &other), VPP_EEXIST);
	int64_t now = vpp__store_now_ms();
	vpp_telemetry_row r = good_row(now);
	for (int i = 0; i < 1000; i++) {
		r.seq = i;
		ck_assert_int_eq(vpp_store_submit_telemetry(s, &r), 0);
	}
	r.soc = 2;
	ck_assert_int_eq(vpp_store_submit_telemetry(s, &r), VPP_EINVAL);
	vpp_store_device d;
	memset(&d, 0, sizeof(d));
	snprintf(d.device_id, sizeof(d.device_id), "bat-0001");
	ck_assert_int_eq(vpp_store_upsert_device(s, &d), 0);
	d.capacity_kwh = NAN;
	ck_assert_int_eq(vpp_store_upsert_device(s, &d), VPP_EINVAL);

	vpp_store_stats st;
	wait_durable(s, 1000, &st);
	ck_assert_uint_eq(st.submitted, 1000);
	ck_assert_uint_eq(st.durable, 1000);
	ck_assert_uint_eq(st.journaled, 1000);
	ck_assert_uint_eq(st.committed, 0);
	ck_assert(!st.db_up);
	ck_assert(st.spilling);
	char why[256] = "";
	ck_assert(!vpp_store_ready(s, why, sizeof(why)));
	ck_assert_uint_gt(strlen(why), 0);
	vpp_store_stop(s);

	/* The journal holds the 1000 rows and the device upsert. */
	vpp_journal *j;
	vpp_journal_options jo = {0, 0, 0};
	ck_assert_int_eq(vpp_journal_open(jdir, &jo, &j, NULL), 0);
	vpp_journal_pos pos = {0, 0};
	uint16_t type;
	const void *p;
	size_t len;
	int rows = 0, stmts = 0;
	while (vpp_journal_read(j, &pos, &type, &p, &len) == 0) {
		if (type == VPP__JREC_TELEMETRY) {
			vpp_telemetry_row back;
			ck_assert_int_eq(vpp__row_decode(p, len, &back), 0);
			ck_assert_int_eq(back.seq, rows);
			rows++;
		} else {
			stmts++;
		}
	}
	ck_assert_int_eq(rows, 1000);
	ck_assert_int_eq(stmts, 1);
	vpp_journal_close(j);

	/* Restarted, the store picks the journal up. */
	ck_assert_int_eq(vpp_store_start(&o, &s), 0);
	vpp_store_get_stats(s, &st);
	ck_assert_uint_gt(st.journal_bytes, 0);
	ck_assert(st.spilling);
	vpp_store_stop(s);
	rm_jdir();
}
END_TEST

/* Counts the journal's telemetry rows and statements (by statement id). */
static void journal_count(int *rows, int *stmts, vpp__stmt_id only)
{
	vpp_journal *j;
	vpp_journal_options jo = {0, 0, 0};
	ck_assert_int_eq(vpp_journal_open(jdir, &jo, &j, NULL), 0);
	vpp_journal_pos pos = {0, 0};
	uint16_t type;
	const void *p;
	size_t len;
	*rows = *stmts = 0;
	while (vpp_journal_read(j, &pos, &type, &p, &len) == 0) {
		if (type == VPP__JREC_TELEMETRY)
			(*rows)++;
		else if (((const unsigned char *)p)[0] == only)
			(*stmts)++;
	}
	vpp_journal_close(j);
}

static void no_db_options(vpp_store_options *o)
{
	snprintf(jdir, sizeof(jdir), "/tmp/vpp-store-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(jdir));
	vpp_store_options_init(o);
	o->conninfo = "host=/nonexistent-vpp-socket-dir dbname=x connect_timeout=1";
	o->journal_dir = jdir;
	o->fsync_policy = VPP_JOURNAL_FSYNC_NEVER;
	o->reconnect_min_ms = 20;
	o->reconnect_max_ms = 40;
	o->stop_timeout_ms = 100;
}

static uint64_t counter(const char *name)
{
	return vpp_counter_value(vpp_counter_get(name, NULL, NULL));
}

/* Rows without sigmas are accepted by the store (not counted as rejected)
 * and keep them missing (NaN) through the journal, next to rows that have
 * theirs. */
START_TEST(nan_sigma_rows_accepted_and_journaled)
{
	vpp_store_options o;
	no_db_options(&o);
	vpp_store *s;
	ck_assert_int_eq(vpp_store_start(&o, &s), 0);
	vpp_counter *nf =
	    vpp_counter_get("vpp_store_rejected_total", "reason=\"not_finite\"", NULL);
	vpp_counter *neg =
	    vpp_counter_get("vpp_store_rejected_total", "reason=\"negative_sigma\"", NULL);
	uint64_t nf0 = vpp_counter_value(nf), neg0 = vpp_counter_value(neg);
	vpp_telemetry_row r = good_row(vpp__store_now_ms());
	for (int i = 0; i < 4; i++) {
		r.seq = i;
		r.power_sigma_kw = i & 1 ? NAN : 0.05;
		r.soc_sigma = i & 2 ? NAN : 0.01;
		ck_assert_int_eq(vpp_store_submit_telemetry(s, &r), 0);
	}
	r.seq = 4, r.power_sigma_kw = INFINITY;
	ck_assert_int_eq(vpp_store_submit_telemetry(s, &r), VPP_EINVAL);
	vpp_store_stats st;
	wait_durable(s, 4, &st);
	ck_assert_uint_eq(st.submitted, 4);
	ck_assert_uint_eq(st.journaled, 4);
	ck_assert_uint_eq(vpp_counter_value(nf) - nf0, 1); /* the infinite one only */
	ck_assert_uint_eq(vpp_counter_value(neg) - neg0, 0);
	vpp_store_stop(s);

	vpp_journal *j;
	vpp_journal_options jo = {0, 0, 0};
	ck_assert_int_eq(vpp_journal_open(jdir, &jo, &j, NULL), 0);
	vpp_journal_pos pos = {0, 0};
	uint16_t type;
	const void *p;
	size_t len;
	int rows = 0;
	while (vpp_journal_read(j, &pos, &type, &p, &len) == 0) {
		if (type != VPP__JREC_TELEMETRY)
			continue;
		vpp_telemetry_row back;
		ck_assert_int_eq(vpp__row_decode(p, len, &back), 0);
		ck_assert_int_eq(back.seq, rows);
		if (rows & 1)
			ck_assert(isnan(back.power_sigma_kw));
		else
			ck_assert(back.power_sigma_kw == 0.05);
		if (rows & 2)
			ck_assert(isnan(back.soc_sigma));
		else
			ck_assert(back.soc_sigma == 0.01);
		rows++;
	}
	ck_assert_int_eq(rows, 4);
	vpp_journal_close(j);
	rm_jdir();
}
END_TEST

/* The database is down and the journal reached its limit: rows accepted
 * into the queue meanwhile are journaled at stop, not dropped. */
START_TEST(stop_keeps_rows_past_the_journal_limit)
{
	vpp_store_options o;
	no_db_options(&o);
	o.journal_max_bytes = 50000;
	o.queue_rows = 65536;
	vpp_store *s;
	ck_assert_int_eq(vpp_store_start(&o, &s), 0);
	vpp_telemetry_row r = good_row(vpp__store_now_ms());
	int accepted = 0;
	for (int i = 0; i < 20000; i++) {
		r.seq = i;
		if (vpp_store_submit_telemetry(s, &r) == 0)
			accepted++;
		if (i % 1000 == 0)
			usleep(10000);
	}
	usleep(200000);
	vpp_store_stats st;
	vpp_store_get_stats(s, &st);
	ck_assert_uint_gt(st.queue_depth, 0); /* the journal is full: rows wait */
	vpp_store_stop(s);
	int rows, stmts;
	journal_count(&rows, &stmts, VPP__ST_DEVICE_UPSERT);
	ck_assert_int_eq(rows, accepted);
	ck_assert_uint_eq(counter("vpp_store_rows_lost_total"), 0);
	rm_jdir();
}
END_TEST

/* A journal whose disk fails (here: writes past 1 MiB fail with EFBIG)
 * while the database is down: what cannot be written waits in memory only
 * up to VPP__JOURNAL_MAX_UNWRITTEN, then new telemetry is refused (the
 * devices keep it and back off) instead of memory growing to the journal's
 * disk budget. */
START_TEST(failing_journal_disk_bounds_memory)
{
	struct rlimit was, small;
	ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &was), 0);
	small = was;
	small.rlim_cur = 1 << 20; /* Check's own message file stays far below */
	signal(SIGXFSZ, SIG_IGN);
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
	vpp_store_options o;
	no_db_options(&o);
	o.queue_rows = 65536;
	vpp_store *s;
	ck_assert_int_eq(vpp_store_start(&o, &s), 0);
	vpp_telemetry_row r = good_row(vpp__store_now_ms());
	int refused = 0, other = 0, accepted = 0; /* no ck_assert per row: each writes to
						       * Check's file */
	for (int i = 0; i < 600000; i++) {
		r.seq = i;
		int rv = vpp_store_submit_telemetry(s, &r);
		refused += rv == VPP_EFULL;
		accepted += rv == 0;
		other += rv != 0 && rv != VPP_EFULL;
		if (i % 5000 == 0)
			usleep(5000);
	}
	ck_assert_int_eq(other, 0);
	usleep(200000);
	vpp_store_stats st;
	vpp_store_get_stats(s, &st);
	ck_assert_int_gt(refused, 0);
	ck_assert_uint_le(st.journal_bytes, (1u << 20) + VPP__JOURNAL_MAX_UNWRITTEN + 65536);
	/* Durable only what reached the file: 1 MiB of records of >= 64 bytes. */
	ck_assert_uint_le(st.durable, (1u << 20) / 64);
	vpp_store_stop(s);
	/* At stop the rest cannot be written either: counted lost, not kept
	 * in the counters' words only. */
	uint64_t lost = counter("vpp_store_rows_lost_total");
	ck_assert_uint_gt(lost, 0);
	ck_assert_uint_le(lost, (uint64_t)accepted);
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &was), 0);
	signal(SIGXFSZ, SIG_DFL);
	rm_jdir();
}
END_TEST

/* A listener that never answers: the store's connection hangs while
 * connecting, so rows pile up in the batch and the queue. */
static int hung_listener(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(fd, 16), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* More rows wait at stop than one round of the store's loop takes: all of
 * them reach the journal. */
START_TEST(stop_journals_a_full_queue)
{
	int port, lfd = hung_listener(&port);
	char conninfo[128];
	snprintf(conninfo, sizeof(conninfo),
	         "host=127.0.0.1 port=%d dbname=x user=x sslmode=disable connect_timeout=60", port);
	vpp_store_options o;
	no_db_options(&o);
	o.conninfo = conninfo;
	o.queue_rows = 262144;
	o.batch_rows = 100000;
	o.flush_ms = 100000;
	vpp_store *s;
	ck_assert_int_eq(vpp_store_start(&o, &s), 0);
	vpp_telemetry_row r = good_row(vpp__store_now_ms());
	for (int i = 0; i < 200000; i++) {
		r.seq = i;
		ck_assert_int_eq(vpp_store_submit_telemetry(s, &r), 0);
	}
	usleep(300000);
	vpp_store_stop(s);
	close(lfd);
	int rows, stmts;
	journal_count(&rows, &stmts, VPP__ST_DEVICE_UPSERT);
	ck_assert_int_eq(rows, 200000);
	ck_assert_uint_eq(counter("vpp_store_rows_lost_total"), 0);
	rm_jdir();
}
END_TEST

/* While the database is down, device states are coalesced (one per device
 * reaches the journal, at stop), and other writes stop at the journal's
 * limit, counted. */
START_TEST(journal_limit_holds_for_states_and_writes)
{
	vpp_store_options o;
	no_db_options(&o);
	o.journal_max_bytes = 20000;
	vpp_store *s;
	ck_assert_int_eq(vpp_store_start(&o, &s), 0);
	vpp_store_device_state st[256];
	for (int round = 0; round < 20; round++) {
		for (int k = 0; k < 256; k++) {
			memset(&st[k], 0, sizeof(st[k]));
			snprintf(st[k].device_id, sizeof(st[k].device_id), "dev-%05d", k);
			st[k].as_of_ms = 1800000000000LL + round;
			st[k].soc = 0.5;
		}
		ck_assert_int_eq(vpp_store_put_device_states(s, st, 256), 0);
		usleep(5000);
	}
	for (int i = 0; i < 1000; i++)
		ck_assert_int_eq(vpp_store_put_device_event(s, "dev-00001", 1800000000000LL + i,
		                                            VPP_STORE_EVENT_CONNECT, "test"),
		                 0);
	vpp_store_stats stats;
	for (int k = 0; k < 200; k++) {
		vpp_store_get_stats(s, &stats);
		if (stats.writes_lost > 0)
			break;
		usleep(10000);
	}
	usleep(100000);
	vpp_store_get_stats(s, &stats);
	ck_assert_uint_le(stats.journal_bytes, 20000 + 200);
	vpp_store_stop(s);

	int rows, states, events;
	journal_count(&rows, &states, VPP__ST_DEVICE_STATE);
	ck_assert_int_eq(states, 256);
	journal_count(&rows, &events, VPP__ST_DEVICE_EVENT);
	ck_assert_int_gt(events, 0);
	ck_assert_uint_eq((uint64_t)events + stats.writes_lost, 1000);
	ck_assert_uint_eq(counter("vpp_store_writes_lost_total"), stats.writes_lost);
	rm_jdir();
}
END_TEST

static const char *conn_opt(PGconn *c, const char *key)
{
	static char val[64];
	PQconninfoOption *o = PQconninfo(c);
	val[0] = 0;
	for (PQconninfoOption *p = o; p && p->keyword; p++)
		if (strcmp(p->keyword, key) == 0 && p->val)
			snprintf(val, sizeof(val), "%s", p->val);
	PQconninfoFree(o);
	return val;
}

/* Connections get timeouts and keepalives unless the URL sets its own. */
START_TEST(connection_defaults)
{
	unsetenv("PGCONNECT_TIMEOUT");
	PGconn *c = vpp__pg_connect_start("host=127.0.0.1 port=1 dbname=x sslmode=disable", 0);
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(conn_opt(c, "connect_timeout"), "10");
	ck_assert_str_eq(conn_opt(c, "keepalives"), "1");
	ck_assert_str_eq(conn_opt(c, "keepalives_idle"), "30");
	ck_assert_str_eq(conn_opt(c, "keepalives_interval"), "10");
	ck_assert_str_eq(conn_opt(c, "keepalives_count"), "3");
	ck_assert_str_eq(conn_opt(c, "tcp_user_timeout"), "30000");
	ck_assert_str_eq(conn_opt(c, "dbname"), "x");
	PQfinish(c);
	c = vpp__pg_connect_start(
	    "postgresql://127.0.0.1:1/y?connect_timeout=3&keepalives_idle=5&sslmode=disable", 0);
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(conn_opt(c, "connect_timeout"), "3");
	ck_assert_str_eq(conn_opt(c, "keepalives_idle"), "5");
	ck_assert_str_eq(conn_opt(c, "keepalives_count"), "3");
	ck_assert_str_eq(conn_opt(c, "dbname"), "y");
	PQfinish(c);
}
END_TEST

/* After a host that never answered, an attempt starts at the next one:
 * the host list, and the hostaddr and port lists with it, are rotated. */
START_TEST(connection_hosts_rotate)
{
	unsetenv("PGCONNECT_TIMEOUT");
	const char *kv = "host=a,b,c hostaddr=127.0.0.1,127.0.0.2,127.0.0.3 port=1,2,3 "
			 "dbname=x sslmode=disable connect_timeout=4";
	PGconn *c = vpp__pg_connect_start(kv, 0);
	ck_assert_str_eq(conn_opt(c, "host"), "a,b,c");
	PQfinish(c);
	c = vpp__pg_connect_start(kv, 1);
	ck_assert_str_eq(conn_opt(c, "host"), "b,c,a");
	ck_assert_str_eq(conn_opt(c, "hostaddr"), "127.0.0.2,127.0.0.3,127.0.0.1");
	ck_assert_str_eq(conn_opt(c, "port"), "2,3,1");
	ck_assert_str_eq(conn_opt(c, "dbname"), "x");
	ck_assert_str_eq(conn_opt(c, "connect_timeout"), "4"); /* the conninfo's wins */
	ck_assert_str_eq(conn_opt(c, "keepalives_idle"), "30"); /* our default */
	PQfinish(c);
	/* Modulo the number of hosts; in a URI each host has its port (here
	 * the default, the default, 7). */
	c = vpp__pg_connect_start("postgresql://h1,h2,h3:7/y?sslmode=disable", 5);
	ck_assert_str_eq(conn_opt(c, "host"), "h3,h1,h2");
	ck_assert_str_eq(conn_opt(c, "port"), "7,,");
	PQfinish(c);
	c = vpp__pg_connect_start("host=h1,h2 port=5433 dbname=y sslmode=disable", 1);
	ck_assert_str_eq(conn_opt(c, "host"), "h2,h1");
	ck_assert_str_eq(conn_opt(c, "port"), "5433"); /* one for all */
	PQfinish(c);
	c = vpp__pg_connect_start("host=only port=9 dbname=z sslmode=disable", 3);
	ck_assert_str_eq(conn_opt(c, "host"), "only");
	ck_assert_str_eq(conn_opt(c, "dbname"), "z");
	PQfinish(c);
}
END_TEST

Suite *test_store_suite(void);

Suite *test_store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("store");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, validate_reasons);
	tcase_add_test(tc, connection_hosts_rotate);
	tcase_add_test(tc, validate_nan_sigma_is_not_given);
	tcase_add_test(tc, reason_names_are_labels);
	tcase_add_test(tc, copy_binary_layout);
	tcase_add_test(tc, copy_binary_null_sigma);
	tcase_add_test(tc, row_from_result_null_sigma);
	tcase_add_test(tc, row_wire_roundtrip);
	tcase_add_test(tc, stmt_roundtrip);
	tcase_add_test(tc, strset_basic);
	tcase_add_test(tc, rowq_bounded_fifo);
	tcase_add_test(tc, rowq_many_producers);
	tcase_add_test(tc, options_checked);
	tcase_add_test(tc, no_database_journals_everything);
	tcase_add_test(tc, nan_sigma_rows_accepted_and_journaled);
	tcase_add_test(tc, stop_keeps_rows_past_the_journal_limit);
	tcase_add_test(tc, stop_journals_a_full_queue);
	tcase_add_test(tc, journal_limit_holds_for_states_and_writes);
	tcase_add_test(tc, connection_defaults);
	tcase_add_test(tc, failing_journal_disk_bounds_memory);
	suite_add_tcase(s, tc);
	return s;
}
