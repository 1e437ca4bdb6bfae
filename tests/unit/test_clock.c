/* vpp's wall clock (server/obs/clock.c): follows the system clock and its
 * gradual corrections, slews through steps at a tenth of real time, never
 * goes backwards. */
#include "vpp/clock.h"

#include <check.h>
#include <stdint.h>
#include <time.h>

#define S 1000000LL /* one second in us */

START_TEST(follows_the_system_clock_and_its_slewing)
{
	vpp_wall_slew w = {0};
	int64_t mono = 5 * S, sys = 1796000000LL * S;
	ck_assert_int_eq(vpp_wall_slew_step(&w, mono, sys), sys);
	/* NTP slewing at its fastest, 500 ppm, for a minute. */
	for (int i = 0; i < 600; i++) {
		mono += S / 10;
		sys += S / 10 + 50;
		ck_assert_int_eq(vpp_wall_slew_step(&w, mono, sys), sys);
	}
}
END_TEST

START_TEST(a_backward_step_is_slewed_without_going_back)
{
	vpp_wall_slew w = {0};
	int64_t mono = 0, sys = 1796000000LL * S, prev;
	prev = vpp_wall_slew_step(&w, mono, sys);
	sys -= 60 * S; /* someone sets the clock back a minute */
	int64_t caught = -1;
	for (int i = 1; i <= 7000; i++) {
		mono += S / 10;
		sys += S / 10;
		int64_t now = vpp_wall_slew_step(&w, mono, sys);
		/* Still moving forward, at 0.9 of real time at least. */
		ck_assert_int_ge(now - prev, S / 10 - S / 100);
		ck_assert_int_ge(now, sys);
		if (caught < 0 && now == sys)
			caught = i;
		prev = now;
	}
	/* 60 s at a tenth of real time: caught up after 600 s. */
	ck_assert_int_ge(caught, 5990);
	ck_assert_int_le(caught, 6010);
}
END_TEST

/* Telemetry reads the clock every few microseconds: the slew must still
 * run at its full rate. */
START_TEST(frequent_calls_still_slew_at_full_rate)
{
	vpp_wall_slew w = {0};
	int64_t mono = 0, sys = 1796000000LL * S;
	vpp_wall_slew_step(&w, mono, sys);
	sys -= 10 * S;
	int64_t now = 0;
	for (int i = 0; i < 10000000; i++) { /* 10 s in steps of 1 us */
		mono += 1;
		sys += 1;
		now = vpp_wall_slew_step(&w, mono, sys);
	}
	/* 10 s passed, a tenth of it slewed: 1 s of the 10 s step. */
	ck_assert_int_le(now - sys, 9 * S + S / 100);
	ck_assert_int_ge(now - sys, 9 * S - S / 100);
}
END_TEST

START_TEST(a_forward_step_is_slewed_too)
{
	vpp_wall_slew w = {0};
	int64_t mono = 0, sys = 1796000000LL * S, prev;
	prev = vpp_wall_slew_step(&w, mono, sys);
	sys += 10 * S;
	mono += S;
	sys += S;
	int64_t now = vpp_wall_slew_step(&w, mono, sys);
	ck_assert_int_eq(now - prev, S + S / 10);
	for (int i = 0; i < 100; i++) {
		mono += S;
		sys += S;
		now = vpp_wall_slew_step(&w, mono, sys);
	}
	ck_assert_int_eq(now, sys);
}
END_TEST

START_TEST(the_process_clock_is_the_system_clock_when_nothing_stepped)
{
	struct timespec ts;
	int64_t a = vpp_wall_ms();
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t sys = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	int64_t b = vpp_wall_ms();
	ck_assert_int_ge(b, a);
	ck_assert_int_le(a, sys + 1);
	ck_assert_int_ge(b, sys - 1);
}
END_TEST

Suite *test_clock_suite(void);

Suite *test_clock_suite(void)
{
	Suite *s = suite_create("clock");
	TCase *tc = tcase_create("clock");
	tcase_add_test(tc, follows_the_system_clock_and_its_slewing);
	tcase_add_test(tc, a_backward_step_is_slewed_without_going_back);
	tcase_add_test(tc, a_forward_step_is_slewed_too);
	tcase_add_test(tc, frequent_calls_still_slew_at_full_rate);
	tcase_add_test(tc, the_process_clock_is_the_system_clock_when_nothing_stepped);
	suite_add_tcase(s, tc);
	return s;
}
