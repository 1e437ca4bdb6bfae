/* Protobuf wire-format checks for requests, before protobuf-c reads them.
 *
 * protobuf-c and protobuf (the reference, which gRPC clients use) disagree
 * at the edges: protobuf-c refuses unknown groups and known fields sent with
 * another wire type, which protobuf keeps as unknown fields, and accepts
 * field numbers above 2^29-1. These functions decide as protobuf does, and
 * hand protobuf-c a copy it can read. Pure: buffers in, buffers out (tests
 * and fuzzers call them directly).
 *
 * Strings are not checked for UTF-8 here (protobuf refuses a proto3 string
 * that is not): the handlers check the strings they use and say which
 * field is wrong (server/operator, server/device), and audit the refusal
 * where they must. */
#ifndef VPP_PB_WIRE_H
#define VPP_PB_WIRE_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Nesting deeper than this (messages and groups) does not parse, as in
 * protobuf's default recursion limit. */
#define VPP_PB_MAX_DEPTH 100

enum {
	VPP_PB_OK = 0,    /* parses; protobuf-c reads it as it is */
	VPP_PB_CLEAN = 1, /* parses; protobuf-c needs vpp_pb_clean's copy */
};

/* Checks that the |len| bytes at |buf| parse as a message of type |d|:
 * well-formed tags (field numbers 1 to 2^29-1; wire types 0, 1, 2, 5, and
 * groups 3/4 that end with their own number), varints of at most 10 bytes,
 * lengths within the message, known fields' packed and nested contents.
 * Returns VPP_PB_OK, VPP_PB_CLEAN when the
 * message holds groups or known fields on another wire type (unknown fields
 * to protobuf, errors to protobuf-c), or VPP_EINVAL when it does not
 * parse. */
int vpp_pb_check(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len);

/* Writes to |out| (room for |len| bytes, not overlapping |buf|) the
 * message without its groups and known fields on another wire type (also
 * inside known message fields): what protobuf-c reads of a message that
 * vpp_pb_check found VPP_PB_CLEAN. Returns 0 and sets |*out_len| (at most
 * |len|), or VPP_EINVAL when |buf| does not parse. */
int vpp_pb_clean(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, uint8_t *out,
                 size_t *out_len);

/* vpp_pb_check, then protobuf-c's unpack of the message or of its clean
 * copy. Returns the message (free with protobuf_c_message_free_unpacked
 * and the same |alloc|, NULL for the default), or NULL when the bytes do
 * not parse or memory ran out. */
ProtobufCMessage *vpp_pb_unpack(const ProtobufCMessageDescriptor *d, ProtobufCAllocator *alloc,
                                size_t len, const uint8_t *buf);

#endif
