/* Operator tokens: parsing with line-numbered errors, roles, and checking
 * bearer tokens against their stored hashes. */
#include "vpp/auth.h"
#include "vpp/error.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* sha256("secret") and sha256("viewtok") */
#define H_SECRET "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
#define H_VIEW "9f0b7d2cbbe7d1a0d0c0b2f2f4a8a3a8a59e7f0c4f9d8c1b5e3a2d1c0b9a8f7e"

START_TEST(parses_and_checks_tokens)
{
	const char *text = "# comment line\n"
			   "alice operator sha256:" H_SECRET "  # trailing comment\n"
			   "\n"
			   "bob viewer sha256:" H_VIEW "\n";
	vpp_tokens *t;
	char err[200];
	ck_assert_int_eq(vpp_tokens_parse(text, &t, err, sizeof(err)), 0);
	ck_assert_uint_eq(vpp_tokens_count(t), 2);
	const char *name = NULL;
	ck_assert_int_eq(vpp_tokens_check(t, "Bearer secret", &name), VPP_ROLE_OPERATOR);
	ck_assert_str_eq(name, "alice");
	ck_assert_int_eq(vpp_tokens_check(t, "bearer   secret", &name), VPP_ROLE_OPERATOR);
	ck_assert_int_eq(vpp_tokens_check(t, "Bearer secreT", &name), VPP_ROLE_NONE);
	ck_assert_int_eq(vpp_tokens_check(t, "Basic secret", &name), VPP_ROLE_NONE);
	ck_assert_int_eq(vpp_tokens_check(t, "Bearer ", &name), VPP_ROLE_NONE);
	ck_assert_int_eq(vpp_tokens_check(t, NULL, &name), VPP_ROLE_NONE);
	/* The stored hash itself is not a token. */
	ck_assert_int_eq(vpp_tokens_check(t, "Bearer " H_SECRET, &name), VPP_ROLE_NONE);
	vpp_tokens_free(t);
}
END_TEST

START_TEST(rejects_bad_lines_with_their_number)
{
	const char *cases[][2] = {
		{"alice operator\n", "line 1"},
		{"ok viewer sha256:" H_SECRET "\nbad admin sha256:" H_SECRET "\n", "line 2"},
		{"x viewer sha256:1234\n", "line 1"},
		{"x viewer " H_SECRET "\n", "line 1"},
		{"x viewer sha256:" H_SECRET " extra\n", "line 1"},
		{"x viewer sha256:zz" H_SECRET "\n", "line 1"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		vpp_tokens *t = NULL;
		char err[200] = "";
		ck_assert_int_eq(vpp_tokens_parse(cases[i][0], &t, err, sizeof(err)), VPP_EINVAL);
		ck_assert_msg(strstr(err, cases[i][1]) != NULL, "case %zu: %s", i, err);
	}
	char err[200];
	vpp_tokens *t;
	ck_assert_int_eq(vpp_tokens_load("/nonexistent/tokens", &t, err, sizeof(err)), VPP_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/tokens"));
}
END_TEST

/* Files that would leave every call refused without a word. */
START_TEST(refuses_files_that_hold_no_tokens)
{
	char dir[] = "/tmp/vpp-tokens-XXXXXX", path[64], err[300];
	vpp_tokens *t = NULL;
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(vpp_tokens_load(dir, &t, err, sizeof(err)), VPP_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
	snprintf(path, sizeof(path), "%s/tokens", dir);
	FILE *f = fopen(path, "w");
	fputs("# only comments\n\n", f);
	fclose(f);
	ck_assert_int_eq(vpp_tokens_load(path, &t, err, sizeof(err)), VPP_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "no tokens"));
	f = fopen(path, "w");
	fputs("ok viewer sha256:" H_SECRET "\n", f);
	fwrite("\0x viewer\n", 1, 10, f);
	fclose(f);
	ck_assert_int_eq(vpp_tokens_load(path, &t, err, sizeof(err)), VPP_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "NUL"));
	f = fopen(path, "w");
	fputs("ok viewer sha256:" H_SECRET "\n", f);
	fclose(f);
	ck_assert_int_eq(vpp_tokens_load(path, &t, err, sizeof(err)), 0);
	ck_assert_uint_eq(vpp_tokens_count(t), 1);
	vpp_tokens_free(t);
	unlink(path);
	rmdir(dir);
}
END_TEST

Suite *test_operator_suite(void);

Suite *test_operator_suite(void)
{
	Suite *s = suite_create("operator");
	TCase *tc = tcase_create("auth");
	tcase_add_test(tc, parses_and_checks_tokens);
	tcase_add_test(tc, rejects_bad_lines_with_their_number);
	tcase_add_test(tc, refuses_files_that_hold_no_tokens);
	suite_add_tcase(s, tc);
	return s;
}
