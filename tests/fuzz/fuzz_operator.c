/* libFuzzer target for the GridOperator requests: the first byte picks the
 * method, the rest is its request body, unpacked with protobuf-c and
 * checked as server/operator/service.c does (the same functions,
 * server/operator/check.c). What a check accepts must be what the handler
 * then relies on: bounded, printable strings, finite numbers, a page size
 * and state the listing can take. */
#include "../../server/operator/operator_int.h"
#include "vpp/text.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* vppd's defaults (--max-target-kw, --max-valid-for-s). */
#define MAX_TARGET_KW 1e6
#define MAX_VALID_FOR_S 86400u

static void set(const uint8_t *p, size_t n)
{
	Vpp__V1__SetFleetSetpointRequest *r =
	    vpp__v1__set_fleet_setpoint_request__unpack(NULL, n, p);
	if (!r)
		return;
	char why[200] = "";
	if (vpp__op_set_check(r, MAX_TARGET_KW, MAX_VALID_FOR_S, why, sizeof(why))) {
		/* service.c copies these into fixed fields of the setpoint row
		 * and of the idempotency table. */
		if (why[0] || !isfinite(r->target_kw) || fabs(r->target_kw) > MAX_TARGET_KW ||
		    !r->request_id[0] || strlen(r->request_id) >= VPP_ID_CAP * 2 ||
		    strlen(r->reason) >= VPP_TEXT_CAP || r->valid_for_s < 1 ||
		    r->valid_for_s > MAX_VALID_FOR_S || !vpp_utf8_valid(r->reason))
			abort();
	} else if (!why[0]) {
		abort(); /* a refusal always says why */
	}
	vpp__v1__set_fleet_setpoint_request__free_unpacked(r, NULL);
}

static void drain(const uint8_t *p, size_t n)
{
	Vpp__V1__DrainNodeRequest *r = vpp__v1__drain_node_request__unpack(NULL, n, p);
	if (!r)
		return;
	/* As on_drain: the id made printable for the audit, the reason cut. */
	char id[2 * VPP_CLUSTER_ID_MAX + 1], reason[101] = "-", detail[256], why[200] = "";
	vpp_text_sanitize(id, sizeof(id), r->node_id);
	bool ok = vpp__op_drain_check(r, why, sizeof(why), reason, sizeof(reason));
	snprintf(detail, sizeof(detail), "node_id=%s drain=%s reason=%s", id,
	         r->drain ? "true" : "false", reason);
	if (ok) {
		/* on_drain copies the id into a VPP_CLUSTER_ID_MAX + 1 field. */
		if (strlen(id) > VPP_CLUSTER_ID_MAX || strcmp(id, r->node_id) != 0 ||
		    !vpp_utf8_valid(reason) || strlen(reason) >= sizeof(reason))
			abort();
	} else if (!why[0]) {
		abort();
	}
	vpp__v1__drain_node_request__free_unpacked(r, NULL);
}

static void preview(const uint8_t *p, size_t n)
{
	Vpp__V1__PreviewDispatchRequest *r = vpp__v1__preview_dispatch_request__unpack(NULL, n, p);
	if (!r)
		return;
	if (vpp__op_preview_ok(r->target_kw, MAX_TARGET_KW) && !isfinite(r->target_kw))
		abort();
	vpp__v1__preview_dispatch_request__free_unpacked(r, NULL);
}

static void list(const uint8_t *p, size_t n)
{
	Vpp__V1__ListDevicesRequest *r = vpp__v1__list_devices_request__unpack(NULL, n, p);
	if (!r)
		return;
	uint32_t page = 0;
	int state = -1;
	if (vpp__op_list_check(r, &page, &state)) {
		/* list_run examines at most 1024 devices a pass; the token
		 * goes into an after[VPP_ID_CAP * 2] field. */
		if (page < 1 || page > 1000 || state < 0 || state > 4 ||
		    strlen(r->page_token) >= VPP_ID_CAP * 2)
			abort();
		char after[VPP_ID_CAP * 2];
		snprintf(after, sizeof(after), "%s", r->page_token);
	}
	vpp__v1__list_devices_request__free_unpacked(r, NULL);
}

static void get(const uint8_t *p, size_t n)
{
	Vpp__V1__GetDeviceRequest *r = vpp__v1__get_device_request__unpack(NULL, n, p);
	if (!r)
		return;
	if (vpp__op_get_check(r) && (!r->device_id[0] || strlen(r->device_id) >= VPP_ID_CAP))
		abort();
	vpp__v1__get_device_request__free_unpacked(r, NULL);
}

/* The requests without fields: only whether they parse. */
static void empty(int which, const uint8_t *p, size_t n)
{
	ProtobufCMessage *m = NULL;
	const ProtobufCMessageDescriptor *d =
	    which == 0   ? &vpp__v1__get_fleet_status_request__descriptor
	    : which == 1 ? &vpp__v1__watch_fleet_request__descriptor
	                 : &vpp__v1__list_nodes_request__descriptor;
	m = protobuf_c_message_unpack(d, NULL, n, p);
	if (m)
		protobuf_c_message_free_unpacked(m, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	switch (data[0] % 8) {
	case 0:
		set(p, n);
		break;
	case 1:
		drain(p, n);
		break;
	case 2:
		preview(p, n);
		break;
	case 3:
		list(p, n);
		break;
	case 4:
		get(p, n);
		break;
	default:
		empty(data[0] % 8 - 5, p, n);
		break;
	}
	return 0;
}
