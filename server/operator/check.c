/* What the GridOperator methods accept: the checks service.c applies to an
 * unpacked request before it acts on it, pure (no call, no plant, no log)
 * so that tests/fuzz/fuzz_operator.c runs the very same code. */
#include "operator_int.h"
#include "vpp/text.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

bool vpp__op_printable(const char *s, size_t max)
{
	size_t n = 0;
	for (const char *p = s; *p; p++, n++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return n <= max && vpp_utf8_valid(s);
}

bool vpp__op_set_check(const Vpp__V1__SetFleetSetpointRequest *r, double max_target_kw,
                       uint32_t max_valid_for_s, char *why, size_t whylen)
{
	if (!isfinite(r->target_kw))
		snprintf(why, whylen, "target_kw must be a finite number");
	else if (fabs(r->target_kw) > max_target_kw)
		snprintf(why, whylen, "|target_kw| must be at most %.0f kW", max_target_kw);
	else if (r->valid_for_s < 1 || r->valid_for_s > max_valid_for_s)
		snprintf(why, whylen, "valid_for_s must be within 1..%u", max_valid_for_s);
	else if (!isfinite(r->ramp_kw_per_s) || r->ramp_kw_per_s < 0 ||
	         r->ramp_kw_per_s > max_target_kw)
		snprintf(why, whylen, "ramp_kw_per_s must be within 0..%.0f (0 = step)",
		         max_target_kw);
	else if (!r->request_id[0])
		snprintf(why, whylen, "request_id is required (it makes retries safe)");
	else if (!vpp__op_printable(r->request_id, VPP_ID_CAP * 2 - 1))
		snprintf(why, whylen, "request_id must be printable UTF-8, at most %d bytes",
		         VPP_ID_CAP * 2 - 1);
	else if (!vpp__op_printable(r->reason, VPP_TEXT_CAP - 1))
		snprintf(why, whylen, "reason must be printable UTF-8, at most %d bytes",
		         VPP_TEXT_CAP - 1);
	else
		return true;
	return false;
}

bool vpp__op_drain_check(const Vpp__V1__DrainNodeRequest *r, char *why, size_t whylen, char *reason,
                         size_t reasonlen)
{
	if (!vpp__op_node_id_ok(r->node_id)) {
		snprintf(why, whylen,
		         "node_id must be 1 to %d characters of A-Z a-z 0-9 . _ - (vppctl nodes "
		         "lists them)",
		         VPP_CLUSTER_ID_MAX);
		return false;
	}
	if (!vpp__op_printable(r->reason, VPP_TEXT_CAP - 1)) {
		snprintf(why, whylen, "reason must be printable UTF-8, at most %d bytes",
		         VPP_TEXT_CAP - 1);
		return false;
	}
	vpp_utf8_copy(reason, reasonlen, r->reason);
	return true;
}

bool vpp__op_preview_ok(double target_kw, double max_target_kw)
{
	return isfinite(target_kw) && fabs(target_kw) <= max_target_kw;
}

bool vpp__op_list_check(const Vpp__V1__ListDevicesRequest *r, uint32_t *page_size, int *state)
{
	uint32_t page = r->page_size ? r->page_size : 100;
	int st = (int)r->state;
	if (page > 1000 || strlen(r->page_token) >= VPP_ID_CAP * 2 || st < 0 || st > 4)
		return false;
	*page_size = page;
	*state = st;
	return true;
}

bool vpp__op_get_check(const Vpp__V1__GetDeviceRequest *r)
{
	return r->device_id[0] && strlen(r->device_id) < VPP_ID_CAP;
}
