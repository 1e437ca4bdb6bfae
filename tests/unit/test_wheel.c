/* The emulator's timing wheel (tools/emulator/wheel.c) on a real libuv
 * loop: every armed node fires once, never before its deadline and not
 * long after; cancelled nodes never fire; deadlines past the wheel's span
 * wait their round; a callback can arm again, with a zero delay too. */
#include "emul_int.h"

#include <check.h>
#include <stddef.h>
#include <stdlib.h>

Suite *test_wheel_suite(void);

#define N 3000

typedef struct {
	vpp__emul_wnode node;
	uint64_t armed_at, delay, fired_at;
	int fired, rearm;
} item;

static vpp__emul_wheel wheel;
static uv_loop_t loop;
static item items[N];
static int pending;

static item *item_of(vpp__emul_wnode *n)
{
	return (item *)((char *)n - offsetof(item, node));
}

static void fire(vpp__emul_wnode *n)
{
	item *it = item_of(n);
	it->fired++;
	it->fired_at = uv_now(&loop);
	if (it->rearm > 0) {
		it->rearm--;
		it->armed_at = uv_now(&loop);
		it->delay = (uint64_t)(it - items) % 3; /* 0, 1 or 2 ms */
		vpp__emul_wheel_arm(&wheel, n, it->delay);
		return;
	}
	pending--;
}

static void arm(item *it, uint64_t delay)
{
	it->armed_at = uv_now(&loop);
	it->delay = delay;
	vpp__emul_wheel_arm(&wheel, &it->node, delay);
}

START_TEST(every_node_fires_once_on_time)
{
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	vpp__emul_wheel_init(&wheel, &loop, fire);
	srand(7);
	pending = 0;
	for (int i = 0; i < N; i++) {
		items[i] = (item){0};
		uint64_t delay = (uint64_t)(rand() % 400);
		if (i % 100 == 0)
			delay = VPP__EMUL_WHEEL_SLOTS + (uint64_t)(rand() % 50); /* a later round */
		if (i % 7 == 0)
			items[i].rearm = 5;
		arm(&items[i], delay);
		pending++;
	}
	/* Re-arming moves a node; cancelling removes it. */
	arm(&items[1], 10);
	for (int i = 2; i < N; i += 50) {
		vpp__emul_wheel_cancel(&wheel, &items[i].node);
		ck_assert(!vpp__emul_wheel_armed(&items[i].node));
		items[i].rearm = -1;
		pending--;
	}
	ck_assert_uint_eq(wheel.n, (size_t)pending);
	while (pending > 0 && uv_run(&loop, UV_RUN_ONCE))
		;
	ck_assert_int_eq(pending, 0);
	ck_assert_uint_eq(wheel.n, 0);
	for (int i = 0; i < N; i++) {
		item *it = &items[i];
		if (it->rearm < 0) {
			ck_assert_int_eq(it->fired, 0);
			continue;
		}
		ck_assert_int_eq(it->fired, i % 7 == 0 ? 6 : 1);
		/* Not early; late only by the loop's own scheduling. */
		ck_assert_uint_ge(it->fired_at, it->armed_at + it->delay);
		ck_assert_uint_le(it->fired_at, it->armed_at + it->delay + 50);
	}
	/* Empty: the libuv timer is stopped and the loop can end. */
	ck_assert(!uv_is_active((uv_handle_t *)&wheel.timer));
	uv_close((uv_handle_t *)&wheel.timer, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

Suite *test_wheel_suite(void)
{
	Suite *s = suite_create("wheel");
	TCase *tc = tcase_create("wheel");
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, every_node_fires_once_on_time);
	suite_add_tcase(s, tc);
	return s;
}
