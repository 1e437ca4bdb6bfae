/* The admin endpoint's HTTP request-head parser (server/obs/admin_http.c)
 * and the endpoint itself over a real socket. */
#include "../../server/obs/admin_int.h"
#include "vpp/admin.h"
#include "vpp/error.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int parse(const char *s, vpp__http_req *r)
{
	return vpp__http_parse(s, strlen(s), 8192, r);
}

START_TEST(test_simple_get)
{
	vpp__http_req r;
	const char *s = "GET /metrics?a=b HTTP/1.1\r\nHost: x\r\n\r\nGET /next";
	ck_assert_int_eq(parse(s, &r), 0);
	ck_assert_int_eq((int)r.method_len, 3);
	ck_assert(memcmp(r.method, "GET", 3) == 0);
	ck_assert_int_eq((int)r.path_len, 8);
	ck_assert(memcmp(r.path, "/metrics", 8) == 0);
	ck_assert_int_eq(r.minor, 1);
	ck_assert_int_eq(r.keep_alive, 1);
	ck_assert_int_eq(r.has_body, 0);
	/* The length covers this request only, not the pipelined one after. */
	ck_assert_int_eq((int)r.len, (int)(strstr(s, "GET /next") - s));
}
END_TEST

START_TEST(test_incomplete)
{
	vpp__http_req r;
	ck_assert_int_eq(parse("", &r), VPP_EAGAIN);
	ck_assert_int_eq(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n", &r), VPP_EAGAIN);
	ck_assert_int_eq(parse("GET /metrics HTTP/1.1\r\n\r", &r), VPP_EAGAIN);
	char big[100];
	memset(big, 'a', sizeof(big));
	ck_assert_int_eq(vpp__http_parse(big, sizeof(big), sizeof(big), &r), VPP_ETOOBIG);
	ck_assert_int_eq(vpp__http_parse(big, sizeof(big), sizeof(big) + 1, &r), VPP_EAGAIN);
}
END_TEST

START_TEST(test_connection_semantics)
{
	vpp__http_req r;
	ck_assert_int_eq(parse("GET / HTTP/1.0\r\n\r\n", &r), 0);
	ck_assert_int_eq(r.keep_alive, 0);
	ck_assert_int_eq(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &r), 0);
	ck_assert_int_eq(r.keep_alive, 1);
	ck_assert_int_eq(parse("GET / HTTP/1.1\r\nconnection: TE, close\r\n\r\n", &r), 0);
	ck_assert_int_eq(r.keep_alive, 0);
	ck_assert_int_eq(parse("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &r), 0);
	ck_assert_int_eq(r.has_body, 0);
	ck_assert_int_eq(parse("POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n", &r), 0);
	ck_assert_int_eq(r.has_body, 1);
	ck_assert_int_eq(parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &r), 0);
	ck_assert_int_eq(r.has_body, 1);
	/* Leading empty lines are tolerated (RFC 9112 2.2). */
	ck_assert_int_eq(parse("\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n", &r), 0);
	ck_assert_int_eq((int)r.path_len, 8);
}
END_TEST

START_TEST(test_malformed)
{
	static const char *const bad[] = {
		"GARBAGE\r\n\r\n",
		"GET /metrics\r\n\r\n",
		"GET  /metrics HTTP/1.1\r\n\r\n",
		"GET /metrics HTTP/2.0\r\n\r\n",
		"GET /metrics HTTP/1.1 \r\n\r\n",
		"GET /metrics HTTP/1.1\r\nNo colon\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nName : v\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nA: b\nC: d\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nA: b\x7f\r\n\r\n",
		"G\xc3T / HTTP/1.1\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		vpp__http_req r;
		ck_assert_msg(parse(bad[i], &r) == VPP_EPROTO, "accepted: %s", bad[i]);
	}
	/* Binary input is refused before a head could ever complete. */
	vpp__http_req r;
	ck_assert_int_eq(vpp__http_parse("\x16\x03\x01\x00", 4, 8192, &r), VPP_EPROTO);
}
END_TEST

/* Sends |req| to 127.0.0.1:|port| and reads the reply until close or |cap|. */
static size_t roundtrip(int port, const char *req, char *out, size_t cap)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq((int)write(fd, req, strlen(req)), (int)strlen(req));
	size_t n = 0;
	ssize_t k;
	while (n + 1 < cap && (k = read(fd, out + n, cap - 1 - n)) > 0)
		n += (size_t)k;
	out[n] = 0;
	close(fd);
	return n;
}

static int not_ready(void *ud, char *why, size_t whylen)
{
	snprintf(why, whylen, "%s", (const char *)ud);
	return 0;
}

START_TEST(test_endpoint)
{
	vpp_admin *a = NULL;
	ck_assert_int_eq(vpp_admin_start("127.0.0.1", 0, not_ready, "database down", &a), 0);
	int port = vpp_admin_port(a);
	ck_assert_int_gt(port, 0);
	char buf[4096];
	roundtrip(port, "GET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n", buf, sizeof(buf));
	ck_assert_msg(strncmp(buf, "HTTP/1.1 503 ", 13) == 0, "%s", buf);
	ck_assert_ptr_nonnull(strstr(buf, "\r\n\r\nnot ready: database down\n"));
	roundtrip(port, "GET /healthz HTTP/1.0\r\n\r\n", buf, sizeof(buf));
	ck_assert_msg(strncmp(buf, "HTTP/1.1 200 ", 13) == 0, "%s", buf);

	/* A second endpoint on the same port fails synchronously. */
	vpp_admin *b = NULL;
	ck_assert_int_eq(vpp_admin_start("127.0.0.1", port, NULL, NULL, &b), VPP_EIO);
	ck_assert_ptr_null(b);
	ck_assert_int_eq(vpp_admin_start("not an address", 0, NULL, NULL, &b), VPP_EINVAL);
	ck_assert_int_eq(vpp_admin_start("127.0.0.1", 70000, NULL, NULL, &b), VPP_EINVAL);

	/* Stopping with a connection still open must not hang or leak. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq((int)write(fd, "GET /he", 7), 7);
	vpp_admin_stop(a);
	/* EOF, or a reset when the bytes were still unread at close. */
	ck_assert_int_le((int)read(fd, buf, sizeof(buf)), 0);
	close(fd);
	vpp_admin_stop(NULL);
}
END_TEST

Suite *test_admin_suite(void);
Suite *test_admin_suite(void)
{
	Suite *s = suite_create("admin");
	TCase *tc = tcase_create("http");
	tcase_add_test(tc, test_simple_get);
	tcase_add_test(tc, test_incomplete);
	tcase_add_test(tc, test_connection_semantics);
	tcase_add_test(tc, test_malformed);
	tcase_add_test(tc, test_endpoint);
	suite_add_tcase(s, tc);
	return s;
}
