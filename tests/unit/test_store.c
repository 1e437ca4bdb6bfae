/* The store's pure parts: telemetry validation, COPY BINARY encoding as
 * PostgreSQL reads it, the journal's row and statement forms, the row
 * queue, and the store itself with no database (everything is journaled,
 * and a restart finds it). */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../server/store/store_int.h"
#include "vpp/error.h"

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
	for (int k = 0; k < 500; k++) {
		vpp_store_get_stats(s, &st);
		if (st.durable == 1000)
			break;
		usleep(10000);
	}
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

Suite *test_store_suite(void);

Suite *test_store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("store");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, validate_reasons);
	tcase_add_test(tc, reason_names_are_labels);
	tcase_add_test(tc, copy_binary_layout);
	tcase_add_test(tc, row_wire_roundtrip);
	tcase_add_test(tc, stmt_roundtrip);
	tcase_add_test(tc, strset_basic);
	tcase_add_test(tc, rowq_bounded_fifo);
	tcase_add_test(tc, rowq_many_producers);
	tcase_add_test(tc, options_checked);
	tcase_add_test(tc, no_database_journals_everything);
	suite_add_tcase(s, tc);
	return s;
}
