/* The SPSC ring between threads: order, bounds, and no loss under a
 * concurrent producer and consumer; the plant's delivery to an I/O loop
 * whose ring is full. */
#include "vpp/error.h"
#include "vpp/plant.h"
#include "vpp/ring.h"

#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

START_TEST(keeps_order_and_bounds)
{
	vpp_ring *r;
	ck_assert_int_eq(vpp_ring_new(5, sizeof(uint64_t), &r), 0);
	ck_assert_uint_eq(vpp_ring_capacity(r), 8);
	for (uint64_t i = 0; i < 8; i++)
		ck_assert_int_eq(vpp_ring_push(r, &i), 0);
	uint64_t x = 99;
	ck_assert_int_eq(vpp_ring_push(r, &x), VPP_EFULL);
	ck_assert_uint_eq(vpp_ring_count(r), 8);
	for (uint64_t i = 0; i < 8; i++) {
		ck_assert(vpp_ring_pop(r, &x));
		ck_assert_uint_eq(x, i);
	}
	ck_assert(!vpp_ring_pop(r, &x));
	vpp_ring_free(r);
	ck_assert_int_eq(vpp_ring_new(0, 8, &r), VPP_EINVAL);
	vpp_ring_free(NULL);
}
END_TEST

enum { N = 300000 };

static void *producer(void *arg)
{
	vpp_ring *r = arg;
	for (uint64_t i = 1; i <= N;) {
		if (vpp_ring_push(r, &i) == 0)
			i++;
	}
	return NULL;
}

START_TEST(loses_nothing_across_threads)
{
	vpp_ring *r;
	ck_assert_int_eq(vpp_ring_new(1024, sizeof(uint64_t), &r), 0);
	pthread_t t;
	pthread_create(&t, NULL, producer, r);
	uint64_t expect = 1, x;
	while (expect <= N) {
		if (vpp_ring_pop(r, &x)) {
			ck_assert_uint_eq(x, expect);
			expect++;
		}
	}
	pthread_join(t, NULL);
	ck_assert(!vpp_ring_pop(r, &x));
	vpp_ring_free(r);
}
END_TEST

/* What an I/O loop received from the plant, in order. */
typedef struct {
	int registered, shutdown, after_shutdown;
} received;

static void deliver(void *ud, const vpp_plant_out *m)
{
	received *r = ud;
	if (r->shutdown)
		r->after_shutdown++;
	if (m->type == VPP_PO_REGISTERED)
		r->registered++;
	else if (m->type == VPP_PO_SHUTDOWN)
		r->shutdown++;
}

static void *run_loop(void *arg)
{
	uv_run(arg, UV_RUN_DEFAULT);
	return NULL;
}

static vpp_plant_hello *hello(int i)
{
	vpp_plant_hello *h = calloc(1, sizeof(*h));
	snprintf(h->id, sizeof(h->id), "dev-%05d", i);
	snprintf(h->session_id, sizeof(h->session_id), "s-%d", i);
	h->ratings = (vpp_device_ratings){.rated_charge_kw = 5, .rated_discharge_kw = 5,
					  .capacity_kwh = 10, .min_soc = 0.1, .max_soc = 0.9,
					  .ramp_kw_per_s = 0};
	return h;
}

/* A loop that did not keep up has more answers waiting than its ring holds:
 * the rest wait in the plant's backlog. At shutdown every one of them
 * reaches the loop, and the shutdown itself comes last (a loop that never
 * hears it keeps its sessions and vppd from exiting). */
START_TEST(shutdown_delivers_the_backlog)
{
	enum { DEVICES = 40 };
	vpp_plant_opts o = {.node_id = "n1", .ring_capacity = 8};
	vpp_dispatch_params_default(&o.params);
	o.params.tick_ms = 20; /* a tick drains what the loop posted */
	vpp_plant *p;
	ck_assert_int_eq(vpp_plant_new(&o, 1, &p), 0);
	uv_loop_t loop;
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	received r = {0};
	ck_assert_int_eq(vpp_plant_attach_loop(p, 0, &loop, deliver, &r), 0);
	ck_assert_int_eq(vpp_plant_start(p), 0);
	/* The loop is not running: 40 registrations for a ring of 8. */
	for (int i = 0; i < DEVICES; i++) {
		vpp_plant_msg m = {.type = VPP_PM_HELLO, .session = (uint64_t)i + 1};
		m.u.hello = hello(i);
		while (vpp_plant_post(p, 0, &m) == VPP_EFULL)
			uv_sleep(1);
	}
	/* The plant answers them all (the newest tick counts them). */
	vpp_plant_snapshot snap = {0};
	for (int waited = 0; waited < 5000 && snap.status.n_devices < DEVICES; waited++) {
		uv_sleep(1);
		vpp_plant_snapshot_get(p, &snap);
	}
	ck_assert_uint_eq(snap.status.n_devices, DEVICES);
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, run_loop, &loop), 0);
	vpp_plant_stop(p);
	pthread_join(t, NULL); /* ends once the plant closed its handles */
	ck_assert_int_eq(r.registered, DEVICES);
	ck_assert_int_eq(r.shutdown, 1);
	ck_assert_int_eq(r.after_shutdown, 0);
	vpp_plant_free(p);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

Suite *test_plant_suite(void);

Suite *test_plant_suite(void)
{
	Suite *s = suite_create("plant");
	TCase *tc = tcase_create("ring");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, keeps_order_and_bounds);
	tcase_add_test(tc, loses_nothing_across_threads);
	tcase_add_test(tc, shutdown_delivers_the_backlog);
	suite_add_tcase(s, tc);
	return s;
}
