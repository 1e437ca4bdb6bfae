/* Protobuf wire-format checks (include/vpp/pb_wire.h): one walk over a
 * message that validates it as protobuf would and, when asked, copies what
 * protobuf-c can read. */
#include "vpp/pb_wire.h"
#include "vpp/error.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELD_NUMBER ((1u << 29) - 1)
/* Groups: not in protobuf-c's enum, which cannot read them. */
#define WIRE_START_GROUP 3
#define WIRE_END_GROUP 4

typedef struct {
	uint8_t *out; /* NULL: check only */
	size_t olen;
	bool dirty; /* something protobuf-c cannot read, to leave out */
} walk;

/* Reads a varint of at most |max| bytes. Returns its length, 0 if it does
 * not end within |n| bytes or |max|. */
static size_t varint(const uint8_t *p, size_t n, size_t max, uint64_t *v)
{
	uint64_t x = 0;
	if (n > max)
		n = max;
	for (size_t i = 0; i < n; i++) {
		x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			*v = x;
			return i + 1;
		}
	}
	return 0;
}

/* Reads a tag. Returns its length, 0 if malformed or the field number is
 * out of range. */
static size_t tag(const uint8_t *p, size_t n, uint32_t *field, unsigned *wire)
{
	uint64_t v;
	size_t k = varint(p, n, 5, &v);
	if (!k || v > UINT32_MAX || (v >> 3) == 0 || (v >> 3) > MAX_FIELD_NUMBER)
		return 0;
	*field = (uint32_t)(v >> 3);
	*wire = (unsigned)(v & 7);
	return k;
}

/* The length of the value of wire type |wire| at |p| (not groups), 0 if it
 * does not fit in |n| bytes. For wire type 2, |*hdr| is the length of the
 * length prefix. */
static size_t value_len(const uint8_t *p, size_t n, unsigned wire, size_t *hdr)
{
	uint64_t v;
	size_t k;
	*hdr = 0;
	switch (wire) {
	case PROTOBUF_C_WIRE_TYPE_VARINT:
		return varint(p, n, 10, &v);
	case PROTOBUF_C_WIRE_TYPE_64BIT:
		return n >= 8 ? 8 : 0;
	case PROTOBUF_C_WIRE_TYPE_32BIT:
		return n >= 4 ? 4 : 0;
	case PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED:
		if (!(k = varint(p, n, 10, &v)) || v > n - k)
			return 0;
		*hdr = k;
		return k + (size_t)v;
	default:
		return 0;
	}
}

/* Skips a group of field |field| whose start tag is just before |p|.
 * Returns the bytes up to and including its end tag, 0 if it does not
 * end (with its own number) within |n| bytes or nests too deep. */
static size_t skip_group(const uint8_t *p, size_t n, uint32_t field, int depth)
{
	if (depth > VPP_PB_MAX_DEPTH)
		return 0;
	size_t i = 0;
	while (i < n) {
		uint32_t f;
		unsigned wire;
		size_t k = tag(p + i, n - i, &f, &wire), hdr, v;
		if (!k)
			return 0;
		i += k;
		if (wire == WIRE_END_GROUP)
			return f == field ? i : 0;
		if (wire == WIRE_START_GROUP)
			v = skip_group(p + i, n - i, f, depth + 1);
		else
			v = value_len(p + i, n - i, wire, &hdr);
		if (!v)
			return 0;
		i += v;
	}
	return 0;
}

static unsigned wire_of(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
		return PROTOBUF_C_WIRE_TYPE_32BIT;
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return PROTOBUF_C_WIRE_TYPE_64BIT;
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_BYTES:
	case PROTOBUF_C_TYPE_MESSAGE:
		return PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
	default:
		return PROTOBUF_C_WIRE_TYPE_VARINT;
	}
}

/* The packed elements of a repeated scalar of type |t|: whole varints or
 * whole fixed-size values, exactly |n| bytes of them. */
static bool packed_ok(ProtobufCType t, const uint8_t *p, size_t n)
{
	uint64_t v;
	switch (wire_of(t)) {
	case PROTOBUF_C_WIRE_TYPE_32BIT:
		return n % 4 == 0;
	case PROTOBUF_C_WIRE_TYPE_64BIT:
		return n % 8 == 0;
	default:
		for (size_t i = 0, k; i < n; i += k)
			if (!(k = varint(p + i, n - i, 10, &v)))
				return false;
		return true;
	}
}

static void emit(walk *w, const uint8_t *p, size_t n)
{
	if (w->out) {
		memcpy(w->out + w->olen, p, n);
		w->olen += n;
	}
}

static int walk_msg(walk *w, const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t n,
                    int depth)
{
	if (depth > VPP_PB_MAX_DEPTH)
		return VPP_EINVAL;
	size_t i = 0;
	while (i < n) {
		uint32_t num;
		unsigned wire;
		size_t start = i, hdr = 0, v;
		size_t k = tag(p + i, n - i, &num, &wire);
		if (!k)
			return VPP_EINVAL;
		i += k;
		if (wire == WIRE_START_GROUP) {
			/* An unknown field to protobuf (a known field is
			 * never a group in proto3); protobuf-c refuses it. */
			if (!(v = skip_group(p + i, n - i, num, depth + 1)))
				return VPP_EINVAL;
			i += v;
			w->dirty = true;
			continue;
		}
		if (!(v = value_len(p + i, n - i, wire, &hdr)))
			return VPP_EINVAL; /* end-group here, wire types 6 and 7, truncation */
		const uint8_t *val = p + i + hdr;
		size_t vlen = v - hdr;
		i += v;
		const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(d, num);
		if (!f) {
			emit(w, p + start, i - start); /* unknown: protobuf-c keeps it */
			continue;
		}
		bool packed = f->label == PROTOBUF_C_LABEL_REPEATED &&
		              wire == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED &&
		              wire_of(f->type) != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
		if (wire != wire_of(f->type) && !packed) {
			/* protobuf reads it as an unknown field, protobuf-c
			 * fails. */
			w->dirty = true;
			continue;
		}
		if (packed) {
			if (!packed_ok(f->type, val, vlen))
				return VPP_EINVAL;
		} else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
			/* The nested message is copied clean after a
			 * prefix as long as the original, which then
			 * shrinks to its new length. */
			emit(w, p + start, k);
			size_t at = w->olen;
			if (w->out)
				w->olen += hdr;
			int rv = walk_msg(w, f->descriptor, val, vlen, depth + 1);
			if (rv != 0)
				return rv;
			if (w->out) {
				size_t body = w->olen - at - hdr, m = 0;
				uint8_t pre[10];
				for (uint64_t x = body; m == 0 || x; x >>= 7)
					pre[m++] = (uint8_t)((x & 0x7f) | (x >> 7 ? 0x80 : 0));
				memmove(w->out + at + m, w->out + at + hdr, body);
				memcpy(w->out + at, pre, m);
				w->olen = at + m + body;
			}
			continue;
		}
		emit(w, p + start, i - start);
	}
	return 0;
}

int vpp_pb_check(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len)
{
	walk w = {0};
	int rv = walk_msg(&w, d, buf, len, 0);
	if (rv != 0)
		return rv;
	return w.dirty ? VPP_PB_CLEAN : VPP_PB_OK;
}

int vpp_pb_clean(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, uint8_t *out,
                 size_t *out_len)
{
	walk w = {.out = out};
	int rv = walk_msg(&w, d, buf, len, 0);
	if (rv != 0)
		return rv;
	*out_len = w.olen;
	return 0;
}

ProtobufCMessage *vpp_pb_unpack(const ProtobufCMessageDescriptor *d, ProtobufCAllocator *alloc,
                                size_t len, const uint8_t *buf)
{
	int rv = vpp_pb_check(d, buf, len);
	if (rv == VPP_PB_OK)
		return protobuf_c_message_unpack(d, alloc, len, buf);
	if (rv != VPP_PB_CLEAN)
		return NULL;
	uint8_t *clean = malloc(len);
	size_t n;
	ProtobufCMessage *m = NULL;
	if (clean && vpp_pb_clean(d, buf, len, clean, &n) == 0)
		m = protobuf_c_message_unpack(d, alloc, n, clean);
	free(clean);
	return m;
}
