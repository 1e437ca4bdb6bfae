/* vppctl set: commands the fleet. Every set carries a request id so that a
 * retry after a lost answer cannot command the fleet twice: the id is
 * random unless --request-id is given, and it is printed whatever happens
 * so the operator can retry with it. */
#include "cmd_int.h"
#include "vpp/grpc.h"

#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A random version-4 UUID in |buf| (37 bytes). */
static void make_request_id(char *buf, size_t len)
{
	uint8_t r[16];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, r, sizeof(r)) : -1;
	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)sizeof(r)) {
		/* No /dev/urandom: time and pid still differ between runs. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t x = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
		x ^= (uint64_t)getpid() << 32;
		for (size_t i = 0; i < sizeof(r); i++) {
			x = x * 6364136223846793005u + 1442695040888963407u;
			r[i] = (uint8_t)(x >> 56);
		}
	}
	r[6] = (uint8_t)((r[6] & 0x0f) | 0x40);
	r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
	snprintf(buf, len, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
	         r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
	         r[13], r[14], r[15]);
}

static void row(const char *label, const char *value)
{
	printf("  %-19s %s\n", label, value);
}

/* Whether the same request could succeed later: not when vppd judged the
 * request itself (invalid, replaced or expired, its id taken). */
static bool retry_may_help(int status)
{
	switch (status) {
	case VPP_GRPC_INVALID_ARGUMENT:
	case VPP_GRPC_FAILED_PRECONDITION:
	case VPP_GRPC_ALREADY_EXISTS:
	case VPP_GRPC_OUT_OF_RANGE:
	case VPP_GRPC_NOT_FOUND:
	case VPP_GRPC_UNIMPLEMENTED:
		return false;
	default:
		return true;
	}
}

int vpp__ctl_cmd_set(vpp__ctl_client *c, vpp__ctl_opts *o)
{
	char rid[40];
	if (!o->request_id) {
		make_request_id(rid, sizeof(rid));
		o->request_id = rid;
	}
	Vpp__V1__SetFleetSetpointRequest req = VPP__V1__SET_FLEET_SETPOINT_REQUEST__INIT;
	req.target_kw = o->kw;
	req.valid_for_s = o->valid_for_s;
	req.ramp_kw_per_s = o->ramp_kw_per_s;
	req.request_id = (char *)o->request_id;
	req.reason = (char *)(o->reason ? o->reason : "");
	ProtobufCMessage *m;
	vpp__ctl_outcome oc;
	int rc = vpp__ctl_call_outcome(c, o, VPP__CTL_SERVICE "SetFleetSetpoint", &req.base,
	                               &vpp__v1__set_fleet_setpoint_response__descriptor, &m, &oc);
	if (rc) {
		if (retry_may_help(oc.status))
			fprintf(stderr,
			        "vppctl: request id %s: to retry the same command, add "
			        "--request-id %s\n",
			        o->request_id, o->request_id);
		return rc;
	}
	const Vpp__V1__SetFleetSetpointResponse *r = (const Vpp__V1__SetFleetSetpointResponse *)m;
	int64_t now = vpp__ctl_now_ms();
	bool short_ = fabs(r->shortfall_kw) > 0.05;
	if (o->json) {
		vpp__ctl_json j;
		vpp__ctl_json_init(&j);
		vpp__ctl_json_begin(&j, NULL);
		vpp__ctl_json_str(&j, "setpoint_id", r->setpoint_id);
		vpp__ctl_json_str(&j, "request_id", o->request_id);
		vpp__ctl_json_num(&j, "target_kw", o->kw);
		vpp__ctl_json_int(&j, "valid_for_s", o->valid_for_s);
		vpp__ctl_json_num(&j, "ramp_kw_per_s", o->ramp_kw_per_s);
		vpp__ctl_json_int(&j, "valid_until_ms", r->valid_until_ms);
		vpp__ctl_json_pb_estimate(&j, "expected_delivery_kw", r->expected_delivery_kw);
		vpp__ctl_json_num(&j, "shortfall_kw", r->shortfall_kw);
		vpp__ctl_json_num(&j, "sustainable_for_s", r->sustainable_for_s);
		vpp__ctl_json_num(&j, "ramp_duration_s", r->ramp_duration_s);
		vpp__ctl_json_num(&j, "ramp_end_kw", r->ramp_end_kw);
		vpp__ctl_json_bool(&j, "can_deliver",
		                   !short_ &&
		                       !(r->sustainable_for_s > 0 &&
		                         r->sustainable_for_s < (double)o->valid_for_s) &&
		                       !(r->ramp_duration_s > (double)o->valid_for_s));
		vpp__ctl_json_end(&j);
		rc = vpp__ctl_json_emit(&j);
	} else {
		char a[200], b[64], t[64];
		printf("Setpoint accepted: %s kW\n", vpp__ctl_fmt_num(b, sizeof(b), o->kw, 1));
		row("setpoint id", r->setpoint_id);
		row("request id", o->request_id);
		snprintf(a, sizeof(a), "%s (in %s)",
		         vpp__ctl_fmt_local_time(t, sizeof(t), r->valid_until_ms),
		         vpp__ctl_fmt_age(b, sizeof(b), r->valid_until_ms - now));
		row("valid until", a);
		if (o->ramp_kw_per_s > 0) {
			int n = snprintf(a, sizeof(a), "%s kW/s",
			                 vpp__ctl_fmt_num(b, sizeof(b), o->ramp_kw_per_s, 1));
			if (r->ramp_duration_s > 0 && n > 0 && (size_t)n < sizeof(a))
				snprintf(a + n, sizeof(a) - (size_t)n, " (reaches the target in %s)",
				         vpp__ctl_fmt_age(b, sizeof(b),
				                          (int64_t)(fmin(r->ramp_duration_s, 1e10) * 1000)));
			row("ramp", a);
		} else {
			row("ramp", "step");
		}
		row("expected delivery",
		    vpp__ctl_fmt_pb_estimate(a, sizeof(a), r->expected_delivery_kw, "kW"));
		snprintf(a, sizeof(a), "%s kW", vpp__ctl_fmt_num(b, sizeof(b), r->shortfall_kw, 1));
		row("shortfall", a);
		if (short_) {
			char tk[64];
			printf(
			    "WARNING: the fleet cannot deliver %s kW: it is expected to deliver "
			    "%s kW, short by %s kW\n",
			    vpp__ctl_fmt_num(tk, sizeof(tk), o->kw, 1),
			    r->expected_delivery_kw
			        ? vpp__ctl_fmt_num(t, sizeof(t), r->expected_delivery_kw->value, 1)
			        : "n/a",
			    vpp__ctl_fmt_num(b, sizeof(b), r->shortfall_kw, 1));
		}
		if (r->ramp_duration_s > (double)o->valid_for_s) {
			char e[64];
			printf("WARNING: the ramp gets only to %s kW before the setpoint ends (it needs "
			       "%s)\n",
			       vpp__ctl_fmt_num(e, sizeof(e), r->ramp_end_kw, 1),
			       vpp__ctl_fmt_age(b, sizeof(b),
			                        (int64_t)(fmin(r->ramp_duration_s, 1e10) * 1000)));
		}
		vpp__ctl_print_sustain(r->sustainable_for_s,
		                       r->expected_delivery_kw ? r->expected_delivery_kw->value : 0,
		                       (double)o->valid_for_s);
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}
