/* Pure gRPC-over-HTTP/2 codecs: message framing, grpc-timeout and
 * grpc-message encoding. No I/O: the transport, unit tests and fuzzers call
 * them on buffers. */
#ifndef VPP_GRPC_CODEC_H
#define VPP_GRPC_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VPP_GRPC_FRAME_HEADER 5

/* Called once per complete message. |compressed| is the frame's flag.
 * Returns 0 to go on, non-zero to stop feeding (returned by feed). */
typedef int (*vpp_grpc_msg_cb)(void *ud, bool compressed, const uint8_t *msg, size_t len);

/* Incremental decoder of length-prefixed messages (1 byte flag, 4 bytes
 * big-endian length, then the message). Buffers at most one partial
 * message, never more than |max_len| bytes, and grows its buffer with the
 * bytes that arrive: a length prefix alone allocates nothing. */
typedef struct {
	size_t max_len;
	uint8_t hdr[VPP_GRPC_FRAME_HEADER];
	size_t hdr_have;
	uint32_t msg_len;
	uint8_t *buf; /* partial message, grown as bytes arrive */
	size_t have, cap;
	int failed; /* sticky error */
} vpp_grpc_decoder;

void vpp_grpc_decoder_init(vpp_grpc_decoder *d, size_t max_len);
/* Frees the partial buffer. The decoder may be reused after init. */
void vpp_grpc_decoder_free(vpp_grpc_decoder *d);

/* Feeds |len| bytes. Returns 0; the callback's non-zero value; VPP_ETOOBIG
 * when a frame declares a length over max_len; VPP_EPROTO when the flag
 * byte is neither 0 nor 1; VPP_ENOMEM. After an error the decoder refuses
 * further input with the same error. */
int vpp_grpc_decoder_feed(vpp_grpc_decoder *d, const uint8_t *data, size_t len,
			  vpp_grpc_msg_cb cb, void *ud);

/* True when the bytes fed so far end inside a frame (a stream that ends
 * now was truncated). */
bool vpp_grpc_decoder_partial(const vpp_grpc_decoder *d);

/* Writes the 5-byte frame header for a message of |len| bytes. */
void vpp_grpc_frame_header(uint8_t out[VPP_GRPC_FRAME_HEADER], bool compressed, uint32_t len);

/* Parses a grpc-timeout value ("1S", "250m", 8 digits at most, units
 * H M S m u n) into milliseconds, rounding up. Returns 0 or VPP_EINVAL. */
int vpp_grpc_timeout_parse(const char *s, int64_t *ms);

/* Formats |ms| as a grpc-timeout value into |out| (at least 16 bytes). */
void vpp_grpc_timeout_format(int64_t ms, char *out, size_t cap);

/* Percent-encodes |in| for grpc-message (bytes outside 0x20..0x7e and '%'
 * become %XX). Returns the length written (|out| is NUL-terminated and
 * truncated to |cap| - 1 without splitting an escape). */
size_t vpp_grpc_percent_encode(const char *in, char *out, size_t cap);

/* Decodes %XX escapes of a grpc-message; malformed escapes are kept as is,
 * as the gRPC spec asks. Returns the length written. */
size_t vpp_grpc_percent_decode(const char *in, size_t len, char *out, size_t cap);

#endif
