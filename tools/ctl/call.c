/* Commands' calls: protobuf-c messages over rpc.c, and the printing of the
 * API's Estimate type. */
#include "cmd_int.h"
#include "vpp/error.h"
#include "vpp/grpc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int vpp__ctl_pack(const ProtobufCMessage *req, uint8_t **buf, size_t *len)
{
	size_t n = protobuf_c_message_get_packed_size(req);
	uint8_t *b = malloc(n ? n : 1);
	if (!b)
		return VPP_ENOMEM;
	protobuf_c_message_pack(req, b);
	*buf = b;
	*len = n;
	return 0;
}

int vpp__ctl_call_outcome(vpp__ctl_client *c, const vpp__ctl_opts *o, const char *path,
                          const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
                          ProtobufCMessage **resp, vpp__ctl_outcome *oc)
{
	uint8_t *buf, *out = NULL;
	size_t len, out_len = 0;
	memset(oc, 0, sizeof(*oc));
	if (vpp__ctl_pack(req, &buf, &len) != 0) {
		fprintf(stderr, "vppctl: out of memory\n");
		oc->status = VPP_GRPC_RESOURCE_EXHAUSTED;
		return VPP__CTL_EXIT_ERROR;
	}
	int rv = vpp__ctl_unary(c, path, buf, len, &out, &out_len, oc);
	free(buf);
	if (rv != 0)
		return vpp__ctl_report_failure(oc, o);
	ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, out_len, out);
	free(out);
	if (!m) {
		oc->status = VPP_GRPC_INTERNAL;
		snprintf(oc->message, sizeof(oc->message),
		         "cannot decode the server's %s (a different API version?)", desc->name);
		return vpp__ctl_report_failure(oc, o);
	}
	*resp = m;
	return 0;
}

int vpp__ctl_call(vpp__ctl_client *c, const vpp__ctl_opts *o, const char *path,
                  const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
                  ProtobufCMessage **resp)
{
	vpp__ctl_outcome oc;
	return vpp__ctl_call_outcome(c, o, path, req, desc, resp, &oc);
}

void vpp__ctl_print_sustain(double sustain_s, double kw, double valid_for_s)
{
	if (!(sustain_s > 0) || fabs(kw) < 0.05)
		return;
	char a[64], b[64];
	double ms = sustain_s * 1000.0 < 1e13 ? sustain_s * 1000.0 : 1e13;
	vpp__ctl_fmt_age(a, sizeof(a), (int64_t)ms);
	printf("  %-19s about %s at most, %s\n", "energy lasts", a,
	       kw > 0 ? "until the batteries are empty" : "until the batteries are full");
	if (valid_for_s > 0 && sustain_s < valid_for_s) {
		vpp__ctl_fmt_age(b, sizeof(b), (int64_t)(valid_for_s * 1000.0));
		printf("WARNING: the fleet's %s after about %s, before the setpoint's %s are over: "
		       "expect delivery to fall off from then\n",
		       kw > 0 ? "stored energy runs out" : "room to charge fills up", a, b);
	}
}

char *vpp__ctl_fmt_pb_estimate(char *buf, size_t len, const Vpp__V1__Estimate *e, const char *unit)
{
	if (!e) {
		snprintf(buf, len, "n/a");
		return buf;
	}
	return vpp__ctl_fmt_estimate(buf, len, e->value, e->sigma, e->lower, e->upper, unit);
}

void vpp__ctl_json_pb_estimate(vpp__ctl_json *j, const char *key, const Vpp__V1__Estimate *e)
{
	if (!e) {
		vpp__ctl_json_str(j, key, NULL);
		return;
	}
	vpp__ctl_json_estimate(j, key, e->value, e->sigma, e->lower, e->upper, e->as_of_ms);
}

int vpp__ctl_json_emit(vpp__ctl_json *j)
{
	const char *t = vpp__ctl_json_text(j);
	int rc = VPP__CTL_EXIT_OK;
	if (t) {
		printf("%s\n", t);
		fflush(stdout);
	} else {
		fprintf(stderr, "vppctl: out of memory\n");
		rc = VPP__CTL_EXIT_ERROR;
	}
	vpp__ctl_json_free(j);
	return rc;
}
