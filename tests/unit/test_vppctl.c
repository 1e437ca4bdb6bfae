/* vppctl's pure parts: what the operator types (powers, durations, flags,
 * environment) and what they read (numbers, intervals, ages, JSON, error
 * messages and exit codes). */
#include "ctl_int.h"
#include "vpp/error.h"
#include "vpp/grpc.h"

#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static char buf[256];

static void clear_env(void)
{
	const char *vars[] = {"VPP_SERVER", "VPP_CA",    "VPP_CERT",
	                      "VPP_KEY",    "VPP_TOKEN", "VPP_H2C"};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
}

/* Parses a NULL-terminated argument list (argv[0] added). */
static int parse(vpp__ctl_opts *o, char *err, const char *first, ...)
{
	char *argv[32] = {"vppctl"};
	int argc = 1;
	va_list ap;
	va_start(ap, first);
	for (const char *a = first; a && argc < 31; a = va_arg(ap, const char *))
		argv[argc++] = (char *)a;
	va_end(ap);
	return vpp__ctl_parse(argc, argv, o, err, 256);
}

START_TEST(numbers_have_separators_and_one_decimal)
{
	ck_assert_str_eq(vpp__ctl_fmt_num(buf, sizeof(buf), 1204.34, 1), "1,204.3");
	ck_assert_str_eq(vpp__ctl_fmt_num(buf, sizeof(buf), 0, 1), "0.0");
	ck_assert_str_eq(vpp__ctl_fmt_num(buf, sizeof(buf), 999.96, 1), "1,000.0");
	ck_assert_str_eq(vpp__ctl_fmt_num(buf, sizeof(buf), -1234567.891, 2), "-1,234,567.89");
	ck_assert_str_eq(vpp__ctl_fmt_num(buf, sizeof(buf), 123456, 0), "123,456");
	ck_assert_str_eq(vpp__ctl_fmt_num(buf, sizeof(buf), 12.5, 1), "12.5");
	ck_assert_str_eq(vpp__ctl_fmt_num(buf, sizeof(buf), -999.4, 0), "-999");
	/* Rounded to zero, a negative value must not read "-0.0". */
	ck_assert_str_eq(vpp__ctl_fmt_num(buf, sizeof(buf), -0.04, 1), "0.0");
	ck_assert_str_eq(vpp__ctl_fmt_num(buf, sizeof(buf), NAN, 1), "n/a");
	ck_assert_str_eq(vpp__ctl_fmt_num(buf, sizeof(buf), INFINITY, 1), "n/a");
	ck_assert_str_eq(vpp__ctl_fmt_num(buf, sizeof(buf), 1e15, 1), "1,000,000,000,000,000.0");
	char small[6];
	vpp__ctl_fmt_num(small, sizeof(small), 1234567, 1); /* truncates, terminated */
	ck_assert_uint_eq(strlen(small), 5);
}
END_TEST

START_TEST(estimate_reads_as_value_sigma_interval)
{
	vpp__ctl_fmt_estimate(buf, sizeof(buf), 1204.34, 12.06, 1184.2, 1224.44, "kW");
	ck_assert_str_eq(buf, "1,204.3 kW \u00b112.1 (90%: 1,184.2\u20131,224.4)");
	vpp__ctl_fmt_estimate(buf, sizeof(buf), -4100, 60, -4198.66, -4001.3, "kW");
	ck_assert_str_eq(buf, "-4,100.0 kW \u00b160.0 (90%: -4,198.7\u2013-4,001.3)");
}
END_TEST

START_TEST(ages_pick_a_readable_unit)
{
	ck_assert_str_eq(vpp__ctl_fmt_age(buf, sizeof(buf), 400), "0.4 s");
	ck_assert_str_eq(vpp__ctl_fmt_age(buf, sizeof(buf), 9940), "9.9 s");
	ck_assert_str_eq(vpp__ctl_fmt_age(buf, sizeof(buf), 12000), "12 s");
	ck_assert_str_eq(vpp__ctl_fmt_age(buf, sizeof(buf), 59400), "59 s");
	ck_assert_str_eq(vpp__ctl_fmt_age(buf, sizeof(buf), 180000), "3 min");
	ck_assert_str_eq(vpp__ctl_fmt_age(buf, sizeof(buf), 15 * 60000), "15 min");
	ck_assert_str_eq(vpp__ctl_fmt_age(buf, sizeof(buf), 90 * 60000), "90 min");
	ck_assert_str_eq(vpp__ctl_fmt_age(buf, sizeof(buf), 2 * 3600000), "2 h");
	ck_assert_str_eq(vpp__ctl_fmt_age(buf, sizeof(buf), 30 * 3600000LL), "30 h");
	ck_assert_str_eq(vpp__ctl_fmt_age(buf, sizeof(buf), 3 * 86400000LL), "3 d");
	/* A server clock slightly ahead: no negative ages. */
	ck_assert_str_eq(vpp__ctl_fmt_age(buf, sizeof(buf), -250), "0.0 s");
}
END_TEST

START_TEST(local_time_follows_tz)
{
	setenv("TZ", "UTC", 1);
	tzset();
	ck_assert_str_eq(vpp__ctl_fmt_local_time(buf, sizeof(buf), 1700000000123LL),
	                 "2023-11-14 22:13:20 UTC");
	ck_assert_str_eq(vpp__ctl_fmt_local_time(buf, sizeof(buf), 0), "-");
}
END_TEST

START_TEST(width_counts_code_points)
{
	ck_assert_uint_eq(vpp__ctl_width("12.1 \u00b10.5"), 9);
	ck_assert_uint_eq(vpp__ctl_width("a\u2013b"), 3);
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	vpp__ctl_pad(f, "\u00b11", 4, true);
	vpp__ctl_pad(f, "x", 3, false);
	fputs("|", f);
	fclose(f);
	ck_assert_str_eq(out, "  \u00b11x  |");
	free(out);
}
END_TEST

/* Tables line up on code points (the ± of an Estimate is two bytes). */
START_TEST(tables_align_columns)
{
	const char *headers[] = {"NODE", "ONLINE", "MEASURED kW \u00b1 sigma", "DRAINING"};
	const bool right[] = {false, true, true, false};
	const char *cells[] = {"node-a",  "400", "598.2 \u00b16.1",     "no",
	                       "node-bb", "12",  "-1,204.3 \u00b112.0", "yes"};
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	vpp__ctl_table(f, "  ", 4, headers, right, cells, 2);
	fclose(f);
	ck_assert_str_eq(out, "  NODE     ONLINE  MEASURED kW \u00b1 sigma  DRAINING\n"
	                      "  node-a      400           598.2 \u00b16.1  no\n"
	                      "  node-bb      12       -1,204.3 \u00b112.0  yes\n");
	free(out);
	/* No rows: the header alone. */
	f = open_memstream(&out, &len);
	vpp__ctl_table(f, "", 2, headers, right, NULL, 0);
	fclose(f);
	ck_assert_str_eq(out, "NODE  ONLINE\n");
	free(out);
}
END_TEST

START_TEST(durations)
{
	uint64_t ms;
	ck_assert_int_eq(vpp__ctl_parse_duration_ms("90s", &ms), 0);
	ck_assert_uint_eq(ms, 90000);
	ck_assert_int_eq(vpp__ctl_parse_duration_ms("15m", &ms), 0);
	ck_assert_uint_eq(ms, 900000);
	ck_assert_int_eq(vpp__ctl_parse_duration_ms("1h", &ms), 0);
	ck_assert_uint_eq(ms, 3600000);
	ck_assert_int_eq(vpp__ctl_parse_duration_ms("500ms", &ms), 0);
	ck_assert_uint_eq(ms, 500);
	ck_assert_int_eq(vpp__ctl_parse_duration_ms("2.5s", &ms), 0);
	ck_assert_uint_eq(ms, 2500);
	ck_assert_int_eq(vpp__ctl_parse_duration_ms("45", &ms), 0);
	ck_assert_uint_eq(ms, 45000);
	const char *bad[] = {"",    "-5m", "0",     "0s",   "5x",   "m",
	                     "nan", "inf", "1e400", "0x10", "15 m", "400d"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ms = 777;
		ck_assert_msg(vpp__ctl_parse_duration_ms(bad[i], &ms) == VPP_EINVAL, "'%s'",
		              bad[i]);
		ck_assert_uint_eq(ms, 777); /* untouched on failure */
	}
}
END_TEST

START_TEST(powers)
{
	double kw;
	ck_assert_int_eq(vpp__ctl_parse_kw("1200", &kw), 0);
	ck_assert(kw == 1200);
	ck_assert_int_eq(vpp__ctl_parse_kw("-350.5", &kw), 0);
	ck_assert(kw == -350.5);
	ck_assert_int_eq(vpp__ctl_parse_kw("1.2MW", &kw), 0);
	ck_assert(fabs(kw - 1200) < 1e-9);
	ck_assert_int_eq(vpp__ctl_parse_kw("800kW", &kw), 0);
	ck_assert(kw == 800);
	ck_assert_int_eq(vpp__ctl_parse_kw("+5", &kw), 0);
	ck_assert(kw == 5);
	ck_assert_int_eq(vpp__ctl_parse_kw(".5", &kw), 0);
	ck_assert(kw == 0.5);
	const char *bad[] = {"",      "abc", "nan",  "NaN",   "inf", "-inf", "1e400",
	                     "12 kW", "5GW", "0x20", "1,200", "-",   "."};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(vpp__ctl_parse_kw(bad[i], &kw) == VPP_EINVAL, "'%s'", bad[i]);
}
END_TEST

START_TEST(set_command_line)
{
	clear_env();
	vpp__ctl_opts o;
	char err[256];
	ck_assert_int_eq(parse(&o, err, "set", "-500", "--for", "90m", "--ramp=12.5", "--reason",
	                       "peak shaving", "--request-id", "r-1", "--json", NULL),
	                 0);
	ck_assert_int_eq(o.cmd, VPP__CTL_SET);
	ck_assert(o.kw == -500);
	ck_assert_uint_eq(o.valid_for_s, 5400);
	ck_assert(o.ramp_kw_per_s == 12.5);
	ck_assert_str_eq(o.reason, "peak shaving");
	ck_assert_str_eq(o.request_id, "r-1");
	ck_assert(o.json);
	/* Defaults. */
	ck_assert_int_eq(parse(&o, err, "set", "100", NULL), 0);
	ck_assert_uint_eq(o.valid_for_s, 900);
	ck_assert(o.ramp_kw_per_s == 0);
	ck_assert_ptr_null(o.request_id);
	ck_assert_str_eq(o.host, "127.0.0.1");
	ck_assert_int_eq(o.port, 7444);
	ck_assert_uint_eq(o.timeout_ms, 10000);
	ck_assert(!o.h2c);
	/* Flags before the command work too. */
	ck_assert_int_eq(parse(&o, err, "--for", "1h", "set", "7", NULL), 0);
	ck_assert_uint_eq(o.valid_for_s, 3600);
}
END_TEST

START_TEST(connection_from_environment_and_flags)
{
	clear_env();
	setenv("VPP_SERVER", "vpp.example.org:9000", 1);
	setenv("VPP_TOKEN", "env-token\r\n", 1); /* as read from a file: trimmed */
	setenv("VPP_H2C", "1", 1);
	setenv("VPP_CA", "/etc/vpp/ca.pem", 1);
	vpp__ctl_opts o;
	char err[256];
	ck_assert_int_eq(parse(&o, err, "status", NULL), 0);
	ck_assert_str_eq(o.host, "vpp.example.org");
	ck_assert_int_eq(o.port, 9000);
	ck_assert_str_eq(o.token, "env-token");
	ck_assert_str_eq(o.ca, "/etc/vpp/ca.pem");
	ck_assert(o.h2c);
	/* Flags win. */
	ck_assert_int_eq(parse(&o, err, "status", "--server", "[::1]:7445", "--token", "flag-token",
	                       "--timeout", "500ms", "--server-name", "localhost", NULL),
	                 0);
	ck_assert_str_eq(o.host, "::1");
	ck_assert_int_eq(o.port, 7445);
	ck_assert_str_eq(o.token, "flag-token");
	ck_assert_uint_eq(o.timeout_ms, 500);
	ck_assert_str_eq(o.server_name, "localhost");
	setenv("VPP_H2C", "0", 1);
	ck_assert_int_eq(parse(&o, err, "health", NULL), 0);
	ck_assert(!o.h2c);
	clear_env();
}
END_TEST

START_TEST(other_commands)
{
	clear_env();
	vpp__ctl_opts o;
	char err[256];
	ck_assert_int_eq(parse(&o, err, "devices", "--state", "degraded", "--limit", "7", NULL), 0);
	ck_assert_int_eq(o.cmd, VPP__CTL_DEVICES);
	ck_assert_int_eq(o.state, 3);
	ck_assert_uint_eq(o.limit, 7);
	ck_assert(!o.all);
	ck_assert_int_eq(parse(&o, err, "devices", "--all", NULL), 0);
	ck_assert(o.all);
	ck_assert_uint_eq(o.limit, 50);
	ck_assert_int_eq(o.state, 0);
	ck_assert_int_eq(parse(&o, err, "device", "dev-00042", NULL), 0);
	ck_assert_str_eq(o.device_id, "dev-00042");
	ck_assert_int_eq(parse(&o, err, "watch", "--count", "3", NULL), 0);
	ck_assert_uint_eq(o.count, 3);
	ck_assert_int_eq(parse(&o, err, "preview", "2.5MW", NULL), 0);
	ck_assert(o.kw == 2500);
	/* nodes takes the flags every command takes (it is the ninth
	 * command: past the first byte of the commands' mask). */
	ck_assert_int_eq(parse(&o, err, "nodes", "--json", "--timeout", "3s", NULL), 0);
	ck_assert_int_eq(o.cmd, VPP__CTL_NODES);
	ck_assert(o.json);
	ck_assert_uint_eq(o.timeout_ms, 3000);
	/* Two-word commands: node drain / undrain, flags anywhere. */
	ck_assert_int_eq(parse(&o, err, "node", "drain", "node-2", "--reason", "upgrade", NULL), 0);
	ck_assert_int_eq(o.cmd, VPP__CTL_DRAIN);
	ck_assert_str_eq(o.node_id, "node-2");
	ck_assert_str_eq(o.reason, "upgrade");
	ck_assert_int_eq(parse(&o, err, "--json", "node", "undrain", "a.B_9-z", NULL), 0);
	ck_assert_int_eq(o.cmd, VPP__CTL_UNDRAIN);
	ck_assert_str_eq(o.node_id, "a.B_9-z");
	ck_assert(o.json && !o.reason);
	ck_assert_int_eq(parse(&o, err, "--help", NULL), 0);
	ck_assert(o.help);
	ck_assert_int_eq(parse(&o, err, "set", "--help", NULL), 0);
	ck_assert(o.help);
	ck_assert_str_eq(vpp__ctl_state_name(4), "offline");
	ck_assert_str_eq(vpp__ctl_state_name(9), "unknown");
}
END_TEST

START_TEST(bad_command_lines)
{
	char long_id[129];
	memset(long_id, 'r', 128);
	long_id[128] = 0;
	clear_env();
	struct {
		const char *a[5];
		const char *says;
	} bad[] = {
	    {{NULL}, "no command"},
	    {{"frobnicate"}, "unknown command"},
	    {{"set"}, "missing argument"},
	    {{"set", "abc"}, "'abc'"},
	    {{"set", "nan"}, "'nan'"},
	    {{"set", "10", "--for", "-5m"}, "--for '-5m'"},
	    {{"set", "10", "--for", "1500ms"}, "--for"},
	    {{"set", "10", "--ramp", "-3"}, "--ramp"},
	    {{"set", "10", "20"}, "unexpected argument '20'"},
	    {{"status", "--for", "15m"}, "--for does not apply to 'status'"},
	    {{"status", "--bogus"}, "unknown flag '--bogus'"},
	    {{"status", "-x"}, "unknown flag '-x'"},
	    {{"status", "--json=yes"}, "takes no value"},
	    {{"status", "--server"}, "needs a value"},
	    {{"status", "--server", "nohost"}, "HOST:PORT"},
	    {{"status", "--server", "h:70000"}, "HOST:PORT"},
	    {{"status", "--cert", "c.pem"}, "--cert and --key"},
	    {{"devices", "--state", "asleep"}, "--state 'asleep'"},
	    {{"devices", "--limit", "0"}, "--limit"},
	    {{"watch", "--count", "-1"}, "--count"},
	    {{"device", ""}, "empty"},
	    {{"set", "10", "--request-id", ""}, "request id"},
	    {{"set", "10", "--request-id", long_id}, "1 to 127 bytes"},
	    {{"status", "--token", "two words"}, "space or control character"},
	    {{"status", "--token", " \n"}, "token is empty"},
	    {{"nodes", "node-a"}, "unexpected argument 'node-a'"},
	    {{"nodes", "--all"}, "--all does not apply to 'nodes'"},
	    {{"node"}, "expected 'node drain' or 'node undrain'"},
	    {{"node", "remove", "node-2"}, "not 'node remove'"},
	    {{"node", "drain"}, "node drain: missing argument (usage: vppctl node drain <id>"},
	    {{"node", "drain", "node 2"}, "a node id is 1 to 40"},
	    {{"node", "drain", "n/2"}, "'n/2'"},
	    {{"node", "drain", "n-2", "n-3"}, "unexpected argument 'n-3'"},
	    {{"node", "undrain", "n-2", "--reason=x"}, "--reason does not apply to 'node undrain'"},
	    {{"node", "drain", "n-2", "--all"}, "--all does not apply to 'node drain'"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		vpp__ctl_opts o;
		char err[256] = "";
		int rv =
		    parse(&o, err, bad[i].a[0], bad[i].a[1], bad[i].a[2], bad[i].a[3], bad[i].a[4]);
		ck_assert_msg(rv == VPP_EINVAL, "case %zu accepted", i);
		ck_assert_msg(strstr(err, bad[i].says) != NULL, "case %zu: '%s' lacks '%s'", i, err,
		              bad[i].says);
	}
	setenv("VPP_SERVER", "no-port", 1);
	vpp__ctl_opts o;
	char err[256];
	ck_assert_int_eq(parse(&o, err, "status", NULL), VPP_EINVAL);
	clear_env();
}
END_TEST

START_TEST(json_writer)
{
	vpp__ctl_json j;
	vpp__ctl_json_init(&j);
	vpp__ctl_json_begin(&j, NULL);
	vpp__ctl_json_str(&j, "s", "a \"quoted\" \\ line\nwith\ttab \x01 \u00b1");
	vpp__ctl_json_num(&j, "x", 0.1);
	vpp__ctl_json_num(&j, "big", 1204.34);
	vpp__ctl_json_num(&j, "nan", NAN);
	vpp__ctl_json_int(&j, "i", -1700000000123LL);
	vpp__ctl_json_bool(&j, "b", false);
	vpp__ctl_json_str(&j, "none", NULL);
	vpp__ctl_json_begin_array(&j, "a");
	vpp__ctl_json_int(&j, NULL, 1);
	vpp__ctl_json_estimate(&j, NULL, 1, 0.5, 0.2, 1.8, 42);
	vpp__ctl_json_end_array(&j);
	vpp__ctl_json_begin_array(&j, "empty");
	vpp__ctl_json_end_array(&j);
	vpp__ctl_json_end(&j);
	ck_assert_str_eq(vpp__ctl_json_text(&j),
	                 "{\"s\":\"a \\\"quoted\\\" \\\\ line\\nwith\\ttab \\u0001 \u00b1\","
	                 "\"x\":0.1,\"big\":1204.34,\"nan\":null,\"i\":-1700000000123,\"b\":false,"
	                 "\"none\":null,\"a\":[1,{\"value\":1,\"sigma\":0.5,\"lower\":0.2,"
	                 "\"upper\":1.8,\"as_of_ms\":42}],\"empty\":[]}");
	vpp__ctl_json_free(&j);
	/* Shortest text that reads back exactly. */
	vpp__ctl_json_init(&j);
	vpp__ctl_json_num(&j, NULL, 1.0 / 3.0);
	ck_assert(strtod(vpp__ctl_json_text(&j), NULL) == 1.0 / 3.0);
	vpp__ctl_json_free(&j);
	vpp__ctl_json_init(&j);
	ck_assert_str_eq(vpp__ctl_json_text(&j), "");
	vpp__ctl_json_free(&j);
}
END_TEST

static vpp__ctl_opts server_opts(void)
{
	vpp__ctl_opts o;
	memset(&o, 0, sizeof(o));
	o.server = "10.0.0.5:7444";
	o.timeout_ms = 2500;
	return o;
}

START_TEST(errors_explained)
{
	vpp__ctl_opts o = server_opts();
	vpp__ctl_outcome oc = {.status = VPP_GRPC_UNAUTHENTICATED, .connected = true};
	ck_assert_str_eq(vpp__ctl_explain(buf, sizeof(buf), &oc, &o),
	                 "no or invalid token (set --token or VPP_TOKEN)");
	ck_assert_int_eq(vpp__ctl_exit_code(&oc), VPP__CTL_EXIT_ERROR);
	snprintf(oc.message, sizeof(oc.message), "token expired");
	ck_assert_str_eq(vpp__ctl_explain(buf, sizeof(buf), &oc, &o),
	                 "no or invalid token (set --token or VPP_TOKEN) [server: token expired]");

	oc = (vpp__ctl_outcome){.status = VPP_GRPC_PERMISSION_DENIED, .connected = true};
	ck_assert_str_eq(vpp__ctl_explain(buf, sizeof(buf), &oc, &o),
	                 "your role cannot do this (set needs the operator role)");
	o.cmd = VPP__CTL_DRAIN;
	ck_assert_str_eq(vpp__ctl_explain(buf, sizeof(buf), &oc, &o),
	                 "your role cannot do this (node drain needs the operator role)");
	o.cmd = VPP__CTL_NONE;

	oc = (vpp__ctl_outcome){.status = VPP_GRPC_INVALID_ARGUMENT, .connected = true};
	snprintf(oc.message, sizeof(oc.message), "target_kw is NaN");
	ck_assert_str_eq(vpp__ctl_explain(buf, sizeof(buf), &oc, &o),
	                 "invalid request: target_kw is NaN");
	ck_assert_int_eq(vpp__ctl_exit_code(&oc), VPP__CTL_EXIT_ERROR);

	/* Never connected: the reason comes from the connection. */
	oc = (vpp__ctl_outcome){.status = VPP_GRPC_UNAVAILABLE, .conn_err = VPP_EIO};
	vpp__ctl_explain(buf, sizeof(buf), &oc, &o);
	ck_assert_msg(strncmp(buf, "cannot reach vppd at 10.0.0.5:7444: connection refused", 54) ==
	                  0,
	              "%s", buf);
	ck_assert_int_eq(vpp__ctl_exit_code(&oc), VPP__CTL_EXIT_CONNECT);
	oc = (vpp__ctl_outcome){.status = VPP_GRPC_UNAVAILABLE, .tls = true};
	vpp__ctl_explain(buf, sizeof(buf), &oc, &o);
	ck_assert_msg(strstr(buf, "TLS handshake failed") != NULL, "%s", buf);
	oc = (vpp__ctl_outcome){.status = VPP_GRPC_DEADLINE_EXCEEDED};
	ck_assert_str_eq(
	    vpp__ctl_explain(buf, sizeof(buf), &oc, &o),
	    "cannot reach vppd at 10.0.0.5:7444: no connection within 2.5 s (--timeout)");
	ck_assert_int_eq(vpp__ctl_exit_code(&oc), VPP__CTL_EXIT_CONNECT);
	/* Connected but slow: the server's fault, not the network's. */
	oc.connected = true;
	ck_assert_str_eq(vpp__ctl_explain(buf, sizeof(buf), &oc, &o),
	                 "vppd at 10.0.0.5:7444 did not answer within 2.5 s (--timeout)");
	ck_assert_int_eq(vpp__ctl_exit_code(&oc), VPP__CTL_EXIT_ERROR);
	/* The server itself says it is unavailable (database down): it was
	 * reached, so this is not exit 3. */
	oc = (vpp__ctl_outcome){.status = VPP_GRPC_UNAVAILABLE, .connected = true, .answered = true};
	snprintf(oc.message, sizeof(oc.message), "the setpoint could not be recorded");
	ck_assert_str_eq(vpp__ctl_explain(buf, sizeof(buf), &oc, &o),
	                 "vppd at 10.0.0.5:7444 is unavailable: the setpoint could not be recorded");
	ck_assert_int_eq(vpp__ctl_exit_code(&oc), VPP__CTL_EXIT_ERROR);
	/* The connection went away before vppd said anything (a TLS alert
	 * after the client's side of the handshake). */
	oc = (vpp__ctl_outcome){.status = VPP_GRPC_UNAVAILABLE, .connected = true};
	snprintf(oc.message, sizeof(oc.message), "connection closed");
	ck_assert_str_eq(vpp__ctl_explain(buf, sizeof(buf), &oc, &o),
	                 "cannot reach vppd at 10.0.0.5:7444: connection closed");
	ck_assert_int_eq(vpp__ctl_exit_code(&oc), VPP__CTL_EXIT_CONNECT);
	/* ... and after vppd's response headers, before its status. */
	oc.heard = true;
	ck_assert_str_eq(vpp__ctl_explain(buf, sizeof(buf), &oc, &o),
	                 "lost the connection to vppd at 10.0.0.5:7444 before its answer: "
	                 "connection closed");
	ck_assert_int_eq(vpp__ctl_exit_code(&oc), VPP__CTL_EXIT_CONNECT);

	oc = (vpp__ctl_outcome){.status = VPP_GRPC_INTERNAL, .connected = true};
	snprintf(oc.message, sizeof(oc.message), "boom");
	ck_assert_str_eq(vpp__ctl_explain(buf, sizeof(buf), &oc, &o),
	                 "server error INTERNAL: boom");
	oc = (vpp__ctl_outcome){.status = VPP_GRPC_OK};
	ck_assert_int_eq(vpp__ctl_exit_code(&oc), VPP__CTL_EXIT_OK);
}
END_TEST

Suite *test_vppctl_suite(void);

Suite *test_vppctl_suite(void)
{
	Suite *s = suite_create("vppctl");
	TCase *f = tcase_create("format");
	tcase_add_test(f, numbers_have_separators_and_one_decimal);
	tcase_add_test(f, estimate_reads_as_value_sigma_interval);
	tcase_add_test(f, ages_pick_a_readable_unit);
	tcase_add_test(f, local_time_follows_tz);
	tcase_add_test(f, width_counts_code_points);
	tcase_add_test(f, tables_align_columns);
	tcase_add_test(f, json_writer);
	suite_add_tcase(s, f);
	TCase *a = tcase_create("args");
	tcase_add_test(a, durations);
	tcase_add_test(a, powers);
	tcase_add_test(a, set_command_line);
	tcase_add_test(a, connection_from_environment_and_flags);
	tcase_add_test(a, other_commands);
	tcase_add_test(a, bad_command_lines);
	suite_add_tcase(s, a);
	TCase *e = tcase_create("errors");
	tcase_add_test(e, errors_explained);
	suite_add_tcase(s, e);
	return s;
}
