/* The SPSC ring between threads: order, bounds, and no loss under a
 * concurrent producer and consumer. */
#include "vpp/error.h"
#include "vpp/ring.h"

#include <check.h>
#include <pthread.h>
#include <stdint.h>

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

Suite *test_plant_suite(void);

Suite *test_plant_suite(void)
{
	Suite *s = suite_create("plant");
	TCase *tc = tcase_create("ring");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, keeps_order_and_bounds);
	tcase_add_test(tc, loses_nothing_across_threads);
	suite_add_tcase(s, tc);
	return s;
}
