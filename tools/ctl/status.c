/* What a failed call means to the operator: one clear line per gRPC status
 * (or connection failure) and the exit code scripts can rely on. */
#include "ctl_int.h"
#include "vpp/error.h"
#include "vpp/grpc.h"

#include <string.h>

/* Why the connection never became usable, from the error it closed with. */
static const char *connect_reason(const vpp__ctl_outcome *oc)
{
	switch (oc->conn_err) {
	case VPP_EIO:
		return "connection refused or host unreachable (is vppd running? check --server)";
	case VPP_ETIMEDOUT:
		return "timed out while connecting";
	case VPP_ETLS:
		return "TLS handshake failed (check --ca and --server-name; --insecure-h2c for a "
		       "cleartext server)";
	default:
		break;
	}
	if (oc->tls)
		return "the connection closed during set-up: TLS handshake failed? (check --ca, "
		       "--server-name, --cert/--key; --insecure-h2c for a cleartext server)";
	return "the connection closed during set-up (a TLS server? drop --insecure-h2c)";
}

char *vpp__ctl_explain(char *buf, size_t len, const vpp__ctl_outcome *oc, const vpp__ctl_opts *o)
{
	const char *m = oc->message;
	const char *srv = o->server ? o->server : "?";
	switch (oc->status) {
	case VPP_GRPC_OK:
		snprintf(buf, len, "ok");
		break;
	case VPP_GRPC_UNAUTHENTICATED:
		snprintf(buf, len, "no or invalid token (set --token or VPP_TOKEN)%s%s%s",
		         m[0] ? " [server: " : "", m, m[0] ? "]" : "");
		break;
	case VPP_GRPC_PERMISSION_DENIED:
		snprintf(buf, len, "your role cannot do this (%s needs the operator role)%s%s%s",
		         o->cmd == VPP__CTL_DRAIN     ? "node drain"
		         : o->cmd == VPP__CTL_UNDRAIN ? "node undrain"
		                                      : "set",
		         m[0] ? " [server: " : "", m, m[0] ? "]" : "");
		break;
	case VPP_GRPC_UNAVAILABLE:
		if (!oc->connected)
			snprintf(buf, len, "cannot reach vppd at %s: %s", srv, connect_reason(oc));
		else if (oc->answered)
			snprintf(buf, len, "vppd at %s is unavailable: %s", srv,
			         m[0] ? m : "(no reason given)");
		else if (oc->heard) /* vppd began to answer, then the line went */
			snprintf(buf, len, "lost the connection to vppd at %s before its answer: %s",
			         srv, m[0] ? m : "unavailable");
		else
			snprintf(buf, len, "cannot reach vppd at %s: %s", srv,
			         m[0] ? m : "unavailable");
		break;
	case VPP_GRPC_DEADLINE_EXCEEDED:
		if (!oc->connected)
			snprintf(buf, len,
			         "cannot reach vppd at %s: no connection within %.1f s (--timeout)",
			         srv, o->timeout_ms / 1000.0);
		else
			snprintf(buf, len, "vppd at %s did not answer within %.1f s (--timeout)",
			         srv, o->timeout_ms / 1000.0);
		break;
	case VPP_GRPC_INVALID_ARGUMENT:
		snprintf(buf, len, "invalid request: %s", m[0] ? m : "(no reason given)");
		break;
	case VPP_GRPC_NOT_FOUND:
		snprintf(buf, len, "not found: %s", m[0] ? m : "(no detail)");
		break;
	case VPP_GRPC_ALREADY_EXISTS:
		snprintf(buf, len, "already exists: %s", m[0] ? m : "(no detail)");
		break;
	case VPP_GRPC_FAILED_PRECONDITION:
		snprintf(buf, len, "refused in the current state: %s", m[0] ? m : "(no detail)");
		break;
	case VPP_GRPC_OUT_OF_RANGE:
		snprintf(buf, len, "out of range: %s", m[0] ? m : "(no detail)");
		break;
	case VPP_GRPC_RESOURCE_EXHAUSTED:
		snprintf(buf, len, "vppd is overloaded, try again: %s", m[0] ? m : "(no detail)");
		break;
	case VPP_GRPC_UNIMPLEMENTED:
		snprintf(buf, len, "vppd at %s does not serve this call (an older version?)%s%s%s",
		         srv, m[0] ? " [server: " : "", m, m[0] ? "]" : "");
		break;
	case VPP_GRPC_CANCELLED:
		snprintf(buf, len, "the call was cancelled%s%s", m[0] ? ": " : "", m);
		break;
	case VPP_GRPC_ABORTED:
		snprintf(buf, len, "aborted (a conflicting change), try again: %s",
		         m[0] ? m : "(no detail)");
		break;
	default:
		snprintf(buf, len, "server error %s: %s", vpp_grpc_status_name(oc->status),
		         m[0] ? m : "(no detail)");
		break;
	}
	return buf;
}

int vpp__ctl_exit_code(const vpp__ctl_outcome *oc)
{
	if (oc->status == VPP_GRPC_OK)
		return VPP__CTL_EXIT_OK;
	/* vppd that answers "unavailable" (its database, its dispatch loop)
	 * was reached: that is an error of the call, not of the connection. */
	if ((oc->status == VPP_GRPC_UNAVAILABLE && !oc->answered) ||
	    (oc->status == VPP_GRPC_DEADLINE_EXCEEDED && !oc->connected))
		return VPP__CTL_EXIT_CONNECT;
	return VPP__CTL_EXIT_ERROR;
}

int vpp__ctl_report_failure(const vpp__ctl_outcome *oc, const vpp__ctl_opts *o)
{
	char why[1024];
	vpp__ctl_explain(why, sizeof(why), oc, o);
	fprintf(stderr, "vppctl: %s\n", why);
	int rc = vpp__ctl_exit_code(oc);
	if (o->json) {
		vpp__ctl_json j;
		vpp__ctl_json_init(&j);
		vpp__ctl_json_begin(&j, NULL);
		vpp__ctl_json_begin(&j, "error");
		vpp__ctl_json_str(&j, "code", vpp_grpc_status_name(oc->status));
		vpp__ctl_json_int(&j, "status", oc->status);
		vpp__ctl_json_str(&j, "server_message", oc->message);
		vpp__ctl_json_str(&j, "message", why);
		vpp__ctl_json_int(&j, "exit_code", rc);
		vpp__ctl_json_end(&j);
		vpp__ctl_json_end(&j);
		const char *t = vpp__ctl_json_text(&j);
		if (t)
			printf("%s\n", t);
		vpp__ctl_json_free(&j);
	}
	return rc;
}
