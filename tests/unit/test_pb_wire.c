/* Protobuf wire-format checks (server/grpc/pb_wire.c): a request that does
 * not parse is refused even when its message has no fields, unknown fields
 * of every wire type are accepted as protobuf accepts them, and the clean
 * copy is what protobuf-c reads. */
#include "vpp/error.h"
#include "vpp/pb_wire.h"
#include "vpp/v1/device.pb-c.h"
#include "vpp/v1/grid.pb-c.h"

#include <check.h>
#include <string.h>

#define EMPTY (&vpp__v1__get_fleet_status_request__descriptor)
#define GETDEV (&vpp__v1__get_device_request__descriptor)
#define DEVMSG (&vpp__v1__device_message__descriptor)

static int check(const ProtobufCMessageDescriptor *d, const char *bytes, size_t n)
{
	return vpp_pb_check(d, (const uint8_t *)bytes, n);
}
#define CHECK(d, lit) check(d, lit, sizeof(lit) - 1)

START_TEST(undecodable_bodies_are_refused_for_an_empty_message)
{
	ck_assert_int_eq(CHECK(EMPTY, ""), VPP_PB_OK);
	ck_assert_int_eq(CHECK(EMPTY, "\x0f\xff\xff"), VPP_EINVAL); /* wire type 7 */
	ck_assert_int_eq(CHECK(EMPTY, "\x0e\x01"), VPP_EINVAL);     /* wire type 6 */
	ck_assert_int_eq(CHECK(EMPTY, "\x00\x01"), VPP_EINVAL);     /* field 0 */
	ck_assert_int_eq(CHECK(EMPTY, "\x48"), VPP_EINVAL);         /* no value */
	ck_assert_int_eq(CHECK(EMPTY, "\x48\x80"), VPP_EINVAL);     /* varint cut */
	ck_assert_int_eq(CHECK(EMPTY, "\x48\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),
	                 VPP_EINVAL);                               /* 11-byte varint */
	ck_assert_int_eq(CHECK(EMPTY, "\x4a\x05hi"), VPP_EINVAL);   /* length past the end */
	ck_assert_int_eq(CHECK(EMPTY, "\x49\x01\x02"), VPP_EINVAL); /* fixed64 cut */
	ck_assert_int_eq(CHECK(EMPTY, "\x4d\x01"), VPP_EINVAL);     /* fixed32 cut */
	ck_assert_int_eq(CHECK(EMPTY, "\x4c"), VPP_EINVAL);         /* end group alone */
	ck_assert_int_eq(CHECK(EMPTY, "\x4b\x08\x01"), VPP_EINVAL); /* group never ends */
	ck_assert_int_eq(CHECK(EMPTY, "\x4b\x54"), VPP_EINVAL);     /* ends as field 10 */
	/* Field number 2^29, one past the largest. */
	ck_assert_int_eq(CHECK(EMPTY, "\x80\x80\x80\x80\x10\x00"), VPP_EINVAL);
	ck_assert_int_eq(CHECK(EMPTY, "\xf8\xff\xff\xff\x0f\x00"), VPP_PB_OK);
	/* Every one of these protobuf-c refuses as well; the server now asks. */
	ck_assert_ptr_null(vpp_pb_unpack(EMPTY, NULL, 3, (const uint8_t *)"\x0f\xff\xff"));
}
END_TEST

START_TEST(unknown_fields_are_accepted)
{
	ck_assert_int_eq(CHECK(EMPTY, "\x48\x01"), VPP_PB_OK);
	ck_assert_int_eq(CHECK(EMPTY, "\x49\x01\x02\x03\x04\x05\x06\x07\x08"), VPP_PB_OK);
	ck_assert_int_eq(CHECK(EMPTY, "\x4a\x02hi"), VPP_PB_OK);
	ck_assert_int_eq(CHECK(EMPTY, "\x4d\x01\x02\x03\x04"), VPP_PB_OK);
	/* Groups (nested too) are unknown fields protobuf-c cannot read. */
	ck_assert_int_eq(CHECK(EMPTY, "\x4b\x08\x01\x53\x54\x4c"), VPP_PB_CLEAN);
	ProtobufCMessage *m =
	    vpp_pb_unpack(EMPTY, NULL, 6, (const uint8_t *)"\x4b\x08\x01\x53\x54\x4c");
	ck_assert_ptr_nonnull(m);
	protobuf_c_message_free_unpacked(m, NULL);
}
END_TEST

START_TEST(known_fields_follow_protobuf)
{
	/* device_id (string) as a varint: an unknown field to protobuf. */
	ck_assert_int_eq(CHECK(GETDEV, "\x08\x01\x0a\x01x"), VPP_PB_CLEAN);
	Vpp__V1__GetDeviceRequest *r = (Vpp__V1__GetDeviceRequest *)vpp_pb_unpack(
	    GETDEV, NULL, 5, (const uint8_t *)"\x08\x01\x0a\x01x");
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(r->device_id, "x");
	vpp__v1__get_device_request__free_unpacked(r, NULL);
	/* UTF-8 is the handlers' to check (they name the field). */
	ck_assert_int_eq(CHECK(GETDEV, "\x0a\x02\xff\xfe"), VPP_PB_OK);
}
END_TEST

START_TEST(nested_messages_are_checked_and_cleaned)
{
	/* DeviceMessage{hello(1){device_id(1)="ab", group 9, firmware(2)="f"}} */
	const uint8_t in[] = {0x0a, 0x0b, 0x0a, 0x02, 'a',  'b', 0x4b,
	                      0x08, 0x01, 0x4c, 0x12, 0x01, 'f'};
	ck_assert_int_eq(vpp_pb_check(DEVMSG, in, sizeof(in)), VPP_PB_CLEAN);
	uint8_t out[sizeof(in)];
	size_t n;
	ck_assert_int_eq(vpp_pb_clean(DEVMSG, in, sizeof(in), out, &n), 0);
	const uint8_t want[] = {0x0a, 0x07, 0x0a, 0x02, 'a', 'b', 0x12, 0x01, 'f'};
	ck_assert_uint_eq(n, sizeof(want));
	ck_assert_mem_eq(out, want, n);
	Vpp__V1__DeviceMessage *m =
	    (Vpp__V1__DeviceMessage *)vpp_pb_unpack(DEVMSG, NULL, sizeof(in), in);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->msg_case, VPP__V1__DEVICE_MESSAGE__MSG_HELLO);
	ck_assert_str_eq(m->hello->device_id, "ab");
	ck_assert_str_eq(m->hello->firmware, "f");
	vpp__v1__device_message__free_unpacked(m, NULL);
	/* A nested message that does not parse fails the whole. */
	const uint8_t bad[] = {0x0a, 0x03, 0x0f, 0xff, 0xff};
	ck_assert_int_eq(vpp_pb_check(DEVMSG, bad, sizeof(bad)), VPP_EINVAL);
	/* A real message round-trips untouched. */
	Vpp__V1__Telemetry t = VPP__V1__TELEMETRY__INIT;
	t.seq = 7;
	t.power_kw = -2.5;
	Vpp__V1__DeviceMessage dm = VPP__V1__DEVICE_MESSAGE__INIT;
	dm.msg_case = VPP__V1__DEVICE_MESSAGE__MSG_TELEMETRY;
	dm.telemetry = &t;
	uint8_t buf[64];
	size_t len = vpp__v1__device_message__pack(&dm, buf);
	ck_assert_int_eq(vpp_pb_check(DEVMSG, buf, len), VPP_PB_OK);
}
END_TEST

START_TEST(nesting_is_bounded)
{
	/* 200 nested groups: deeper than protobuf's limit of 100. */
	uint8_t deep[400];
	for (int i = 0; i < 200; i++) {
		deep[i] = 0x4b;
		deep[399 - i] = 0x4c;
	}
	ck_assert_int_eq(vpp_pb_check(EMPTY, deep, sizeof(deep)), VPP_EINVAL);
	ck_assert_int_eq(vpp_pb_check(EMPTY, deep + 150, 100), VPP_PB_CLEAN);
}
END_TEST

Suite *test_pb_wire_suite(void);

Suite *test_pb_wire_suite(void)
{
	Suite *s = suite_create("pb_wire");
	TCase *tc = tcase_create("pb_wire");
	tcase_add_test(tc, undecodable_bodies_are_refused_for_an_empty_message);
	tcase_add_test(tc, unknown_fields_are_accepted);
	tcase_add_test(tc, known_fields_follow_protobuf);
	tcase_add_test(tc, nested_messages_are_checked_and_cleaned);
	tcase_add_test(tc, nesting_is_bounded);
	suite_add_tcase(s, tc);
	return s;
}
