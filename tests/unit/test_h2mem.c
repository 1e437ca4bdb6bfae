/* The nghttp2 allocator (server/grpc/h2mem.c): frame-buffer-sized blocks
 * come from page slots, everything else from malloc; contents survive
 * growth out of a slot; slots are reused after free. */
#include "../../server/grpc/grpc_int.h"

#include <check.h>
#include <stdint.h>
#include <string.h>

START_TEST(small_and_large_blocks_round_trip)
{
	nghttp2_mem *m = vpp__h2_mem();
	uint8_t *a = m->malloc(100, m->mem_user_data);
	uint8_t *b = m->calloc(1, 16394, m->mem_user_data); /* a frame buffer */
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_uint_eq((uintptr_t)a % 16, 0);
	ck_assert_uint_eq((uintptr_t)b % 16, 0);
	/* A frame buffer comes from a page slot: just after its header. */
	ck_assert_uint_eq(((uintptr_t)b - 16) % 4096, 0);
	for (int i = 0; i < 16394; i++)
		ck_assert_uint_eq(b[i], 0);
	memset(a, 'a', 100);
	memset(b, 'b', 16394);
	a = m->realloc(a, 5000, m->mem_user_data);
	ck_assert_uint_eq(a[99], 'a');
	m->free(a, m->mem_user_data);
	m->free(b, m->mem_user_data);
	m->free(NULL, m->mem_user_data);
}
END_TEST

START_TEST(a_slot_grows_out_into_malloc_with_its_contents)
{
	nghttp2_mem *m = vpp__h2_mem();
	uint8_t *b = m->realloc(NULL, 16394, m->mem_user_data); /* how nghttp2 asks */
	ck_assert_ptr_nonnull(b);
	memset(b, 'x', 16394);
	ck_assert_ptr_eq(m->realloc(b, 20000, m->mem_user_data), b); /* fits the slot */
	uint8_t *c = m->realloc(b, 64 * 1024, m->mem_user_data);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(c[0], 'x');
	ck_assert_uint_eq(c[16393], 'x');
	memset(c, 'y', 64 * 1024);
	m->free(c, m->mem_user_data);
}
END_TEST

START_TEST(freed_slots_are_reused_and_zeroed_by_calloc)
{
	nghttp2_mem *m = vpp__h2_mem();
	enum { N = 3000 }; /* more than one region of slots */
	static uint8_t *p[N];
	for (int i = 0; i < N; i++) {
		p[i] = m->malloc(16394, m->mem_user_data);
		ck_assert_ptr_nonnull(p[i]);
		memset(p[i], 0xab, 16394);
	}
	for (int i = 0; i < N; i++)
		m->free(p[i], m->mem_user_data);
	uint8_t *q = m->calloc(16394, 1, m->mem_user_data);
	ck_assert_ptr_nonnull(q);
	for (int i = 0; i < 16394; i++)
		ck_assert_uint_eq(q[i], 0);
	m->free(q, m->mem_user_data);
}
END_TEST

Suite *test_h2mem_suite(void);

Suite *test_h2mem_suite(void)
{
	Suite *s = suite_create("h2mem");
	TCase *tc = tcase_create("h2mem");
	tcase_add_test(tc, small_and_large_blocks_round_trip);
	tcase_add_test(tc, a_slot_grows_out_into_malloc_with_its_contents);
	tcase_add_test(tc, freed_slots_are_reused_and_zeroed_by_calloc);
	suite_add_tcase(s, tc);
	return s;
}
