/* The source addresses admission control takes turns between
 * (server/grpc/admission.c): one per IPv4 address, one per IPv6 /64, an
 * IPv4-mapped IPv6 address the same as its IPv4 address. */
#include "../../server/grpc/grpc_int.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

static uint64_t key4(const char *ip)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(1234)};
	ck_assert_int_eq(inet_pton(AF_INET, ip, &a.sin_addr), 1);
	return vpp__admission_source_key((struct sockaddr *)&a);
}

static uint64_t key6(const char *ip)
{
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(1234)};
	ck_assert_int_eq(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
	return vpp__admission_source_key((struct sockaddr *)&a);
}

START_TEST(ipv4_addresses_are_sources_of_their_own)
{
	ck_assert_uint_ne(key4("127.0.0.1"), key4("127.0.0.2"));
	ck_assert_uint_ne(key4("10.0.0.1"), key4("10.0.1.1"));
	ck_assert_uint_eq(key4("192.0.2.7"), key4("192.0.2.7"));
	ck_assert_uint_eq(key6("::ffff:192.0.2.7"), key4("192.0.2.7"));
}
END_TEST

START_TEST(an_ipv6_64_is_one_source)
{
	ck_assert_uint_eq(key6("2001:db8:1:2::1"), key6("2001:db8:1:2:ffff:ffff:ffff:ffff"));
	ck_assert_uint_ne(key6("2001:db8:1:2::1"), key6("2001:db8:1:3::1"));
	ck_assert_uint_ne(key6("::1"), key4("127.0.0.1"));
	/* No IPv6 /64 a packet can come from is any IPv4 address's key. */
	ck_assert_uint_ne(key6("ffff::1"), key6("2001:db8::1"));
	ck_assert_uint_ne(key6("2001:db8::1"), key4("0.0.0.0"));
}
END_TEST

START_TEST(other_families_share_one_source)
{
	struct sockaddr_un u = {.sun_family = AF_UNIX};
	ck_assert_uint_eq(vpp__admission_source_key((struct sockaddr *)&u), 0);
}
END_TEST

Suite *test_admission_suite(void);

Suite *test_admission_suite(void)
{
	Suite *s = suite_create("admission");
	TCase *tc = tcase_create("source");
	tcase_add_test(tc, ipv4_addresses_are_sources_of_their_own);
	tcase_add_test(tc, an_ipv6_64_is_one_source);
	tcase_add_test(tc, other_families_share_one_source);
	suite_add_tcase(s, tc);
	return s;
}
