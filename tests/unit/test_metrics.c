/* The metrics registry renders valid Prometheus text and counts from many
 * threads without losing updates. */
#include "vpp/metrics.h"

#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

START_TEST(renders_prometheus_text)
{
	vpp_metrics_reset();
	vpp_counter *c = vpp_counter_get("t_requests_total", "code=\"200\"", "Requests");
	vpp_counter_add(c, 3);
	ck_assert_ptr_eq(vpp_counter_get("t_requests_total", "code=\"200\"", NULL), c);
	vpp_gauge_set(vpp_gauge_get("t_depth", NULL, "Depth"), 2.5);
	double b[] = {0.1, 1};
	vpp_histogram *h = vpp_histogram_get("t_seconds", NULL, "Latency", b, 2);
	vpp_histogram_observe(h, 0.05);
	vpp_histogram_observe(h, 0.5);
	vpp_histogram_observe(h, 5);
	char *out;
	size_t len;
	ck_assert_int_eq(vpp_metrics_render(&out, &len), 0);
	ck_assert_uint_eq(strlen(out), len);
	ck_assert_ptr_nonnull(strstr(out, "# TYPE t_requests_total counter\n"));
	ck_assert_ptr_nonnull(strstr(out, "t_requests_total{code=\"200\"} 3\n"));
	ck_assert_ptr_nonnull(strstr(out, "t_depth 2.5\n"));
	ck_assert_ptr_nonnull(strstr(out, "t_seconds_bucket{le=\"0.10000000000000001\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(out, "t_seconds_bucket{le=\"1\"} 2\n"));
	ck_assert_ptr_nonnull(strstr(out, "t_seconds_bucket{le=\"+Inf\"} 3\n"));
	ck_assert_ptr_nonnull(strstr(out, "t_seconds_count 3\n"));
	free(out);
	vpp_metrics_reset();
}
END_TEST

static void *bump(void *arg)
{
	vpp_counter *c = arg;
	for (int i = 0; i < 100000; i++)
		vpp_counter_inc(c);
	return NULL;
}

START_TEST(counts_from_many_threads)
{
	vpp_metrics_reset();
	vpp_counter *c = vpp_counter_get("t_total", NULL, "t");
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, bump, c);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	ck_assert_uint_eq(vpp_counter_value(c), 400000);
	vpp_metrics_reset();
}
END_TEST

Suite *test_metrics_suite(void);

Suite *test_metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("registry");
	tcase_add_test(tc, renders_prometheus_text);
	tcase_add_test(tc, counts_from_many_threads);
	suite_add_tcase(s, tc);
	return s;
}
