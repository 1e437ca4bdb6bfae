#include "vpp/error.h"

const char *vpp_strerror(int err)
{
	switch (err) {
	case VPP_OK: return "success";
	case VPP_EINVAL: return "invalid argument";
	case VPP_ENOMEM: return "out of memory";
	case VPP_EIO: return "I/O error";
	case VPP_ENOENT: return "not found";
	case VPP_EEXIST: return "already exists";
	case VPP_EAGAIN: return "try again";
	case VPP_EFULL: return "queue full";
	case VPP_ECLOSED: return "closed";
	case VPP_ETLS: return "TLS error";
	case VPP_EPROTO: return "protocol error";
	case VPP_ETIMEDOUT: return "timed out";
	case VPP_EDB: return "database error";
	case VPP_ECORRUPT: return "corrupt data";
	case VPP_ERANGE: return "out of range";
	case VPP_ETOOBIG: return "too big";
	case VPP_EPERM: return "not permitted";
	case VPP_ESCHEMA: return "database schema is newer than this binary";
	}
	return "unknown error";
}
