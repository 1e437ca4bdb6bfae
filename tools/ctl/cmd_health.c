/* vppctl health: the standard grpc.health.v1.Health/Check of the whole
 * server (service ""). Exit 0 only when SERVING, so scripts and probes can
 * use it directly. */
#include "cmd_int.h"
#include "grpc/health/v1/health.pb-c.h"

static const char *serving_name(int s)
{
	switch (s) {
	case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING:
		return "SERVING";
	case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING:
		return "NOT_SERVING";
	case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN:
		return "SERVICE_UNKNOWN";
	default:
		return "UNKNOWN";
	}
}

int vpp__ctl_cmd_health(vpp__ctl_client *c, vpp__ctl_opts *o)
{
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	ProtobufCMessage *m;
	int rc = vpp__ctl_call(c, o, "/grpc.health.v1.Health/Check", &req.base,
	                       &grpc__health__v1__health_check_response__descriptor, &m);
	if (rc)
		return rc;
	int st = ((Grpc__Health__V1__HealthCheckResponse *)m)->status;
	protobuf_c_message_free_unpacked(m, NULL);
	bool serving = st == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	if (o->json) {
		vpp__ctl_json j;
		vpp__ctl_json_init(&j);
		vpp__ctl_json_begin(&j, NULL);
		vpp__ctl_json_str(&j, "status", serving_name(st));
		vpp__ctl_json_bool(&j, "serving", serving);
		vpp__ctl_json_end(&j);
		rc = vpp__ctl_json_emit(&j);
		if (rc)
			return rc;
	} else {
		printf("%s\n", serving_name(st));
	}
	return serving ? VPP__CTL_EXIT_OK : VPP__CTL_EXIT_ERROR;
}
