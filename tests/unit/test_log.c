/* The JSON log (server/obs/log.c): one line per event that stays valid
 * JSON and UTF-8 whatever bytes a message carries. */
#include "vpp/log.h"
#include "vpp/text.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Runs vpp_log with |msg| and returns the line it wrote to stderr. */
static char *logged(const char *msg)
{
	char path[] = "/tmp/vpp-test-log-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	fflush(stderr);
	int saved = dup(2);
	dup2(fd, 2);
	vpp_log(VPP_LOG_ERROR, "test", "value=%s end", msg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	static char line[4096];
	ssize_t n = pread(fd, line, sizeof(line) - 1, 0);
	close(fd);
	unlink(path);
	ck_assert_int_gt(n, 0);
	line[n] = 0;
	return line;
}

START_TEST(bytes_that_are_not_utf8_become_replacement_characters)
{
	char *l = logged("\xff\xfe"
	                 "abc \xc3\xbc \xe2\x82"
	                 "x\x7f");
	ck_assert(vpp_utf8_valid(l));
	ck_assert_ptr_nonnull(
	    strstr(l, "value=\\ufffd\\ufffdabc \xc3\xbc \\ufffd\\ufffdx\\u007f end"));
	ck_assert_int_eq(l[strlen(l) - 1], '\n');
	ck_assert_ptr_eq(strchr(l, '\n'), l + strlen(l) - 1); /* one line */
}
END_TEST

START_TEST(quotes_and_control_characters_are_escaped)
{
	char *l = logged("a\"b\\c\nd\te");
	ck_assert_ptr_nonnull(strstr(l, "value=a\\\"b\\\\c\\nd\\u0009e end"));
}
END_TEST

START_TEST(a_limit_lets_a_burst_through_and_counts_the_rest)
{
	vpp_log_limit l = {0};
	uint32_t more = 99;
	int64_t t = 1000000;
	for (int i = 0; i < 3; i++) {
		ck_assert(vpp_log_limit_take(&l, t + i, 3, 10000, &more));
		ck_assert_uint_eq(more, 0);
	}
	for (int i = 0; i < 4; i++)
		ck_assert(!vpp_log_limit_take(&l, t + 100 + i, 3, 10000, &more));
	/* The next window: the first line says how many were left out. */
	ck_assert(vpp_log_limit_take(&l, t + 10000, 3, 10000, &more));
	ck_assert_uint_eq(more, 4);
	ck_assert(vpp_log_limit_take(&l, t + 10001, 3, 10000, &more));
	ck_assert_uint_eq(more, 0);
}
END_TEST

Suite *test_log_suite(void);

Suite *test_log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("log");
	tcase_add_test(tc, bytes_that_are_not_utf8_become_replacement_characters);
	tcase_add_test(tc, quotes_and_control_characters_are_escaped);
	tcase_add_test(tc, a_limit_lets_a_burst_through_and_counts_the_rest);
	suite_add_tcase(s, tc);
	return s;
}
