/* The declarative config table: defaults, INI file, environment and flags
 * in that precedence, and a clear error naming the setting. */
#include "vpp/config.h"
#include "vpp/error.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
	char *config;
	int64_t port;
	double ratio;
	char *name;
	bool flag;
} conf;

static const vpp_config_opt table[] = {
	{"config", VPP_CFG_STRING, offsetof(conf, config), 0, 0, NULL, "INI file", false},
	{"api-port", VPP_CFG_INT, offsetof(conf, port), 1, 65535, "7444", "port", false},
	{"ratio", VPP_CFG_DOUBLE, offsetof(conf, ratio), 0, 1, "0.5", "a fraction", false},
	{"node-name", VPP_CFG_STRING, offsetof(conf, name), 0, 0, "node", "name", false},
	{"flag", VPP_CFG_BOOL, offsetof(conf, flag), 0, 0, "false", "a switch", false},
};
#define N (sizeof(table) / sizeof(table[0]))

static int parse(conf *c, int argc, char **argv, char *err)
{
	int pos[4], npos;
	bool help;
	memset(c, 0, sizeof(*c));
	return vpp_config_parse(table, N, c, argc, argv, pos, 4, &npos, &help, err, 256);
}

static void clear_env(void)
{
	unsetenv("VPP_API_PORT");
	unsetenv("VPP_RATIO");
	unsetenv("VPP_CONFIG");
	unsetenv("VPP_FLAG");
}

START_TEST(defaults_apply)
{
	clear_env();
	conf c;
	char err[256];
	char *argv[] = {"x"};
	ck_assert_int_eq(parse(&c, 1, argv, err), 0);
	ck_assert_int_eq(c.port, 7444);
	ck_assert_double_eq(c.ratio, 0.5);
	ck_assert_str_eq(c.name, "node");
	ck_assert(!c.flag);
	vpp_config_free(table, N, &c);
}
END_TEST

START_TEST(precedence_file_env_flag)
{
	clear_env();
	char path[] = "/tmp/vpp-test-config-XXXXXX";
	int fd = mkstemp(path);
	const char *ini = "# comment\napi-port = 1000\nratio = 0.25\n[node]\nname = from-file\n";
	ck_assert_int_eq(write(fd, ini, strlen(ini)), (ssize_t)strlen(ini));
	close(fd);
	conf c;
	char err[256];
	char *argv1[] = {"x", "--config", path};
	ck_assert_int_eq(parse(&c, 3, argv1, err), 0);
	ck_assert_int_eq(c.port, 1000);
	ck_assert_double_eq(c.ratio, 0.25);
	ck_assert_str_eq(c.name, "from-file");
	vpp_config_free(table, N, &c);

	setenv("VPP_API_PORT", "2000", 1);
	char *argv2[] = {"x", "--config", path, "--ratio=0.75", "--flag"};
	ck_assert_int_eq(parse(&c, 5, argv2, err), 0);
	ck_assert_int_eq(c.port, 2000);
	ck_assert_double_eq(c.ratio, 0.75);
	ck_assert(c.flag);
	vpp_config_free(table, N, &c);

	char *argv3[] = {"x", "--config", path, "--api-port", "3000"};
	ck_assert_int_eq(parse(&c, 5, argv3, err), 0);
	ck_assert_int_eq(c.port, 3000);
	vpp_config_free(table, N, &c);
	clear_env();
	unlink(path);
}
END_TEST

START_TEST(invalid_values_name_the_setting)
{
	clear_env();
	conf c;
	char err[256];
	char *a1[] = {"x", "--api-port", "70000"};
	ck_assert_int_eq(parse(&c, 3, a1, err), VPP_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "api-port"));
	vpp_config_free(table, N, &c);

	char *a2[] = {"x", "--ratio", "nan"};
	ck_assert_int_eq(parse(&c, 3, a2, err), VPP_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "ratio"));
	vpp_config_free(table, N, &c);

	char *a3[] = {"x", "--api-port", "12abc"};
	ck_assert_int_eq(parse(&c, 3, a3, err), VPP_EINVAL);
	vpp_config_free(table, N, &c);

	setenv("VPP_FLAG", "maybe", 1);
	char *a4[] = {"x"};
	ck_assert_int_eq(parse(&c, 1, a4, err), VPP_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "VPP_FLAG"));
	vpp_config_free(table, N, &c);
	clear_env();

	char *a5[] = {"x", "--no-such-thing", "1"};
	ck_assert_int_eq(parse(&c, 3, a5, err), VPP_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "no-such-thing"));
	vpp_config_free(table, N, &c);

	char *a6[] = {"x", "--api-port"};
	ck_assert_int_eq(parse(&c, 2, a6, err), VPP_EINVAL);
	vpp_config_free(table, N, &c);

	char *a7[] = {"x", "--config", "/nonexistent/vpp.ini"};
	ck_assert_int_eq(parse(&c, 3, a7, err), VPP_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/vpp.ini"));
	vpp_config_free(table, N, &c);
}
END_TEST

START_TEST(bad_ini_line_is_reported)
{
	clear_env();
	char path[] = "/tmp/vpp-test-config-XXXXXX";
	int fd = mkstemp(path);
	const char *ini = "api-port = 10\nratio = 7\n";
	ck_assert_int_eq(write(fd, ini, strlen(ini)), (ssize_t)strlen(ini));
	close(fd);
	conf c;
	char err[256];
	char *argv[] = {"x", "--config", path};
	ck_assert_int_eq(parse(&c, 3, argv, err), VPP_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "ratio"));
	ck_assert_ptr_nonnull(strstr(err, path));
	vpp_config_free(table, N, &c);
	unlink(path);
}
END_TEST

/* What libinih would take silently: a directory (read as empty) and a line
 * it would cut in two. */
START_TEST(config_file_must_be_a_file_of_short_lines)
{
	clear_env();
	conf c;
	char err[256];
	char *a1[] = {"x", "--config", "/tmp"};
	ck_assert_int_eq(parse(&c, 3, a1, err), VPP_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
	vpp_config_free(table, N, &c);

	char path[] = "/tmp/vpp-test-config-XXXXXX";
	int fd = mkstemp(path);
	char ini[400];
	int n = snprintf(ini, sizeof(ini), "api-port = 10\n; %0250d\n", 0);
	ck_assert_int_eq(write(fd, ini, (size_t)n), n);
	close(fd);
	char *a2[] = {"x", "--config", path};
	ck_assert_int_eq(parse(&c, 3, a2, err), VPP_EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "line 2 is longer than"));
	vpp_config_free(table, N, &c);
	unlink(path);
}
END_TEST

START_TEST(positional_and_help)
{
	clear_env();
	conf c;
	char err[256];
	int pos[4], npos;
	bool help;
	char *argv[] = {"x", "migrate", "--help", "--api-port", "9"};
	memset(&c, 0, sizeof(c));
	ck_assert_int_eq(vpp_config_parse(table, N, &c, 5, argv, pos, 4, &npos, &help, err, 256), 0);
	ck_assert_int_eq(npos, 1);
	ck_assert_int_eq(pos[0], 1);
	ck_assert(help);
	ck_assert_int_eq(c.port, 9);
	vpp_config_free(table, N, &c);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	vpp_config_print_help(table, N, f);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(buf, "--api-port"));
	ck_assert_ptr_nonnull(strstr(buf, "VPP_API_PORT"));
	ck_assert_ptr_nonnull(strstr(buf, "default 7444"));
	free(buf);
}
END_TEST

Suite *test_config_suite(void);

Suite *test_config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("table");
	tcase_add_test(tc, defaults_apply);
	tcase_add_test(tc, precedence_file_env_flag);
	tcase_add_test(tc, invalid_values_name_the_setting);
	tcase_add_test(tc, bad_ini_line_is_reported);
	tcase_add_test(tc, config_file_must_be_a_file_of_short_lines);
	tcase_add_test(tc, positional_and_help);
	suite_add_tcase(s, tc);
	return s;
}
