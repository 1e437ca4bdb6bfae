/* UTF-8 checks and truncation (server/obs/text.c): what reaches the
 * database must be valid UTF-8, also after vppd shortens it. */
#include "vpp/text.h"

#include <check.h>
#include <string.h>

START_TEST(sanitize_makes_any_bytes_printable)
{
	char out[16];
	vpp_text_sanitize(out, sizeof(out), "\xff\xfe" "abc");
	ck_assert_str_eq(out, "??abc");
	vpp_text_sanitize(out, sizeof(out), "a\nb\x7f\x01");
	ck_assert_str_eq(out, "a?b??");
	vpp_text_sanitize(out, sizeof(out), "\xc3\xbc ok");
	ck_assert_str_eq(out, "\xc3\xbc ok");
	/* Cut at a character boundary: 14 bytes, then a 2-byte character. */
	vpp_text_sanitize(out, sizeof(out), "aaaaaaaaaaaaaa\xc3\xbc");
	ck_assert_str_eq(out, "aaaaaaaaaaaaaa");
	ck_assert_uint_eq(vpp_utf8_char_len("\xe2\x82\xac", 3), 3);
	ck_assert_uint_eq(vpp_utf8_char_len("\xe2\x82", 2), 0);
	ck_assert_uint_eq(vpp_utf8_char_len("", 0), 0);
}
END_TEST

Suite *test_text_suite(void);

START_TEST(valid_and_invalid)
{
	ck_assert(vpp_utf8_valid(""));
	ck_assert(vpp_utf8_valid("fw-1.2 über 東京 \xf0\x9f\x94\x8b"));
	ck_assert(!vpp_utf8_valid("\xff"));
	ck_assert(!vpp_utf8_valid("ab\xc3"));		/* cut in the middle */
	ck_assert(!vpp_utf8_valid("\xc0\xaf"));		/* overlong '/' */
	ck_assert(!vpp_utf8_valid("\xe0\x80\xaf"));	/* overlong, 3 bytes */
	ck_assert(!vpp_utf8_valid("\xed\xa0\x80"));	/* a surrogate */
	ck_assert(!vpp_utf8_valid("\xf4\x90\x80\x80")); /* past U+10FFFF */
	ck_assert(!vpp_utf8_valid("\x80"));		/* a lone continuation */
}
END_TEST

START_TEST(copy_cuts_at_a_character)
{
	char out[8];
	vpp_utf8_copy(out, sizeof(out), "abcdef\xc3\xbc"); /* "abcdefü": 8 bytes */
	ck_assert_str_eq(out, "abcdef");
	ck_assert(vpp_utf8_valid(out));
	vpp_utf8_copy(out, sizeof(out), "abcde\xc3\xbc");
	ck_assert_str_eq(out, "abcde\xc3\xbc");
	vpp_utf8_copy(out, sizeof(out), "\xf0\x9f\x94\x8b\xf0\x9f\x94\x8b");
	ck_assert_str_eq(out, "\xf0\x9f\x94\x8b");
	vpp_utf8_copy(out, 1, "abc");
	ck_assert_str_eq(out, "");
	char fw[64];
	char in[80];
	memset(in, 'a', 62);
	strcpy(in + 62, "\xc3\xbc"); /* 64 bytes ending in "ü", as a firmware string */
	vpp_utf8_copy(fw, sizeof(fw), in);
	ck_assert_uint_eq(strlen(fw), 62);
	ck_assert(vpp_utf8_valid(fw));
}
END_TEST

Suite *test_text_suite(void)
{
	Suite *s = suite_create("text");
	TCase *tc = tcase_create("utf8");
	tcase_add_test(tc, valid_and_invalid);
	tcase_add_test(tc, copy_cuts_at_a_character);
	tcase_add_test(tc, sanitize_makes_any_bytes_printable);
	suite_add_tcase(s, tc);
	return s;
}
