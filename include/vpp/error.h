/* One error convention for all of vpp: functions return int, 0 on success or
 * a negative VPP_E* code. Errors of libuv, nghttp2, OpenSSL and libpq are
 * mapped to these once, at the boundary where they occur. */
#ifndef VPP_ERROR_H
#define VPP_ERROR_H

enum {
	VPP_OK = 0,
	VPP_EINVAL = -1,    /* invalid argument or input */
	VPP_ENOMEM = -2,    /* out of memory */
	VPP_EIO = -3,       /* I/O or system call failure */
	VPP_ENOENT = -4,    /* not found */
	VPP_EEXIST = -5,    /* already exists */
	VPP_EAGAIN = -6,    /* would block; try again later */
	VPP_EFULL = -7,     /* a bounded queue or buffer is full */
	VPP_ECLOSED = -8,   /* the object was closed or is shutting down */
	VPP_ETLS = -9,      /* TLS failure */
	VPP_EPROTO = -10,   /* protocol violation by the peer */
	VPP_ETIMEDOUT = -11,
	VPP_EDB = -12,      /* database error */
	VPP_ECORRUPT = -13, /* checksum mismatch or corrupt data */
	VPP_ERANGE = -14,   /* value out of range */
	VPP_ETOOBIG = -15,  /* message or frame over its size limit */
	VPP_EPERM = -16,    /* not permitted */
	VPP_ESCHEMA = -17,  /* database schema newer than this binary knows */
};

/* Returns a static, human-readable description of |err| (a VPP_E* code). */
const char *vpp_strerror(int err);

#endif
