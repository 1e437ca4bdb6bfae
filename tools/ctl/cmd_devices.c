/* vppctl devices (a table, paging through ListDevices) and device <id>
 * (one DeviceInfo in full). */
#include "cmd_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The server caps pages anyway; this keeps each answer small. */
#define PAGE_MAX 500

static const char *state_text(const Vpp__V1__DeviceInfo *d, char *buf, size_t len)
{
	const char *s = vpp__ctl_state_name((int)d->state);
	if (d->degraded && d->state != VPP__V1__DEVICE_STATE__DEVICE_STATE_DEGRADED)
		snprintf(buf, len, "%s,degraded", s);
	else
		snprintf(buf, len, "%s", s);
	return buf;
}

static void device_json(vpp__ctl_json *j, const Vpp__V1__DeviceInfo *d, int64_t now)
{
	vpp__ctl_json_begin(j, NULL);
	vpp__ctl_json_str(j, "device_id", d->device_id);
	vpp__ctl_json_str(j, "state", vpp__ctl_state_name((int)d->state));
	vpp__ctl_json_num(j, "rated_charge_kw", d->rated_charge_kw);
	vpp__ctl_json_num(j, "rated_discharge_kw", d->rated_discharge_kw);
	vpp__ctl_json_num(j, "capacity_kwh", d->capacity_kwh);
	vpp__ctl_json_num(j, "min_soc", d->min_soc);
	vpp__ctl_json_num(j, "max_soc", d->max_soc);
	vpp__ctl_json_pb_estimate(j, "soc", d->soc);
	vpp__ctl_json_pb_estimate(j, "power_kw", d->power_kw);
	vpp__ctl_json_int(j, "last_seen_ms", d->last_seen_ms);
	if (d->last_seen_ms > 0)
		vpp__ctl_json_int(j, "last_seen_age_ms", now - d->last_seen_ms);
	else
		vpp__ctl_json_str(j, "last_seen_age_ms", NULL);
	vpp__ctl_json_num(j, "reliability", d->reliability);
	vpp__ctl_json_bool(j, "degraded", d->degraded);
	vpp__ctl_json_num(j, "setpoint_kw", d->setpoint_kw);
	vpp__ctl_json_str(j, "node_id", d->node_id);
	vpp__ctl_json_str(j, "firmware", d->firmware[0] ? d->firmware : NULL);
	vpp__ctl_json_end(j);
}

enum { C_ID, C_STATE, C_SOC, C_POWER, C_SETPOINT, C_RELIAB, C_SEEN, C_NODE, NCOLS };

static const char *headers[NCOLS] = {"DEVICE",      "STATE",  "SOC %",     "POWER kW",
                                     "SETPOINT kW", "RELIAB", "LAST SEEN", "NODE"};
static const bool right[NCOLS] = {false, false, true, true, true, true, true, false};

/* The cells of one table row. */
static void cells(const Vpp__V1__DeviceInfo *d, int64_t now, char out[NCOLS][96])
{
	char a[48], b[48];
	snprintf(out[C_ID], 96, "%s", d->device_id);
	state_text(d, out[C_STATE], 96);
	if (d->soc)
		snprintf(out[C_SOC], 96, "%s \u00b1%s",
		         vpp__ctl_fmt_num(a, sizeof(a), d->soc->value * 100, 1),
		         vpp__ctl_fmt_num(b, sizeof(b), d->soc->sigma * 100, 1));
	else
		snprintf(out[C_SOC], 96, "n/a");
	if (d->power_kw)
		snprintf(out[C_POWER], 96, "%s \u00b1%s",
		         vpp__ctl_fmt_num(a, sizeof(a), d->power_kw->value, 1),
		         vpp__ctl_fmt_num(b, sizeof(b), d->power_kw->sigma, 1));
	else
		snprintf(out[C_POWER], 96, "n/a");
	vpp__ctl_fmt_num(out[C_SETPOINT], 96, d->setpoint_kw, 1);
	snprintf(out[C_RELIAB], 96, "%.2f", d->reliability);
	if (d->last_seen_ms > 0)
		snprintf(out[C_SEEN], 96, "%s ago",
		         vpp__ctl_fmt_age(a, sizeof(a), now - d->last_seen_ms));
	else
		snprintf(out[C_SEEN], 96, "never");
	snprintf(out[C_NODE], 96, "%s", d->node_id[0] ? d->node_id : "-");
}

/* One answer of ListDevices and how many of its devices are shown (a
 * server may send more than asked; --limit holds). */
typedef struct {
	Vpp__V1__ListDevicesResponse *r;
	size_t shown;
} page;

static void print_table(const page *pages, size_t npages, int64_t now)
{
	size_t width[NCOLS];
	char c[NCOLS][96];
	for (int k = 0; k < NCOLS; k++)
		width[k] = vpp__ctl_width(headers[k]);
	for (size_t p = 0; p < npages; p++) {
		for (size_t i = 0; i < pages[p].shown; i++) {
			cells(pages[p].r->devices[i], now, c);
			for (int k = 0; k < NCOLS; k++)
				if (vpp__ctl_width(c[k]) > width[k])
					width[k] = vpp__ctl_width(c[k]);
		}
	}
	for (int k = 0; k < NCOLS; k++) {
		vpp__ctl_pad(stdout, headers[k], k == NCOLS - 1 ? 0 : width[k], right[k]);
		fputs(k == NCOLS - 1 ? "\n" : "  ", stdout);
	}
	for (size_t p = 0; p < npages; p++) {
		for (size_t i = 0; i < pages[p].shown; i++) {
			cells(pages[p].r->devices[i], now, c);
			for (int k = 0; k < NCOLS; k++) {
				vpp__ctl_pad(stdout, c[k], k == NCOLS - 1 ? 0 : width[k], right[k]);
				fputs(k == NCOLS - 1 ? "\n" : "  ", stdout);
			}
		}
	}
}

int vpp__ctl_cmd_devices(vpp__ctl_client *c, vpp__ctl_opts *o)
{
	page *pages = NULL;
	size_t npages = 0, total = 0;
	bool cut = false; /* --limit left devices of a page out */
	char *token = strdup("");
	int rc = 0;
	if (!token)
		return VPP__CTL_EXIT_ERROR;
	for (;;) {
		Vpp__V1__ListDevicesRequest req = VPP__V1__LIST_DEVICES_REQUEST__INIT;
		req.state = (Vpp__V1__DeviceState)o->state;
		uint64_t want = o->all ? PAGE_MAX : o->limit - total;
		req.page_size = (uint32_t)(want < PAGE_MAX ? want : PAGE_MAX);
		req.page_token = token;
		ProtobufCMessage *m;
		if ((rc = vpp__ctl_call(c, o, VPP__CTL_SERVICE "ListDevices", &req.base,
		                        &vpp__v1__list_devices_response__descriptor, &m)) != 0)
			goto done;
		Vpp__V1__ListDevicesResponse *r = (Vpp__V1__ListDevicesResponse *)m;
		void *np = realloc(pages, (npages + 1) * sizeof(*pages));
		if (!np) {
			protobuf_c_message_free_unpacked(m, NULL);
			rc = VPP__CTL_EXIT_ERROR;
			goto done;
		}
		pages = np;
		size_t shown = r->n_devices;
		if (!o->all && total + shown > o->limit) {
			shown = o->limit - total;
			cut = true;
		}
		pages[npages++] = (page){r, shown};
		total += shown;
		bool more = r->next_page_token[0] != 0;
		if (more && r->n_devices == 0 && strcmp(r->next_page_token, token) == 0) {
			fprintf(stderr, "vppctl: the server returned the same page token twice\n");
			rc = VPP__CTL_EXIT_ERROR;
			goto done;
		}
		free(token);
		token = strdup(r->next_page_token);
		if (!token) {
			rc = VPP__CTL_EXIT_ERROR;
			goto done;
		}
		if (!more || (!o->all && total >= o->limit))
			break;
	}
	/* In a cluster, nodes that did not answer: their devices are not in
	 * the list, and the list says so. */
	const char *missing[64];
	size_t nmissing = 0;
	for (size_t p = 0; p < npages; p++)
		for (size_t i = 0; i < pages[p].r->n_missing_nodes; i++) {
			const char *id = pages[p].r->missing_nodes[i];
			bool seen = false;
			for (size_t k = 0; k < nmissing && !seen; k++)
				seen = strcmp(missing[k], id) == 0;
			if (!seen && nmissing < sizeof(missing) / sizeof(missing[0]))
				missing[nmissing++] = id;
		}
	int64_t now = vpp__ctl_now_ms();
	if (o->json) {
		vpp__ctl_json j;
		vpp__ctl_json_init(&j);
		vpp__ctl_json_begin(&j, NULL);
		vpp__ctl_json_begin_array(&j, "missing_nodes");
		for (size_t k = 0; k < nmissing; k++)
			vpp__ctl_json_str(&j, NULL, missing[k]);
		vpp__ctl_json_end_array(&j);
		vpp__ctl_json_begin_array(&j, "devices");
		for (size_t p = 0; p < npages; p++)
			for (size_t i = 0; i < pages[p].shown; i++)
				device_json(&j, pages[p].r->devices[i], now);
		vpp__ctl_json_end_array(&j);
		vpp__ctl_json_int(&j, "count", (int64_t)total);
		vpp__ctl_json_str(&j, "next_page_token", token[0] ? token : NULL);
		vpp__ctl_json_bool(&j, "more", token[0] || cut);
		vpp__ctl_json_end(&j);
		rc = vpp__ctl_json_emit(&j);
	} else {
		print_table(pages, npages, now);
		printf("%zu device%s%s%s", total, total == 1 ? "" : "s", o->state ? " " : "",
		       o->state ? vpp__ctl_state_name(o->state) : "");
		if (token[0] || cut)
			printf("; more on the server: --all, or --limit N");
		printf("\n");
	}
	for (size_t k = 0; k < nmissing; k++)
		fprintf(stderr,
		        "vppctl: WARNING: node %s did not answer: its devices are not in this "
		        "list (see its log; retry)\n",
		        missing[k]);
done:
	for (size_t p = 0; p < npages; p++)
		protobuf_c_message_free_unpacked(&pages[p].r->base, NULL);
	free(pages);
	free(token);
	return rc;
}

static void row(const char *label, const char *value)
{
	printf("  %-19s %s\n", label, value);
}

int vpp__ctl_cmd_device(vpp__ctl_client *c, vpp__ctl_opts *o)
{
	Vpp__V1__GetDeviceRequest req = VPP__V1__GET_DEVICE_REQUEST__INIT;
	req.device_id = (char *)o->device_id;
	ProtobufCMessage *m;
	int rc = vpp__ctl_call(c, o, VPP__CTL_SERVICE "GetDevice", &req.base,
	                       &vpp__v1__device_info__descriptor, &m);
	if (rc)
		return rc;
	const Vpp__V1__DeviceInfo *d = (const Vpp__V1__DeviceInfo *)m;
	int64_t now = vpp__ctl_now_ms();
	if (o->json) {
		vpp__ctl_json j;
		vpp__ctl_json_init(&j);
		device_json(&j, d, now);
		rc = vpp__ctl_json_emit(&j);
	} else {
		char a[200], b[64], e[64], t[64];
		printf("Device %s\n", d->device_id);
		row("state", state_text(d, a, sizeof(a)));
		row("degraded", d->degraded ? "yes (under-delivering: reliability lowered)" : "no");
		snprintf(a, sizeof(a), "%.2f", d->reliability);
		row("reliability", a);
		snprintf(a, sizeof(a), "%s kW", vpp__ctl_fmt_num(b, sizeof(b), d->setpoint_kw, 1));
		row("setpoint", a);
		row("power", vpp__ctl_fmt_pb_estimate(a, sizeof(a), d->power_kw, "kW"));
		if (d->soc)
			row("state of charge",
			    vpp__ctl_fmt_estimate(a, sizeof(a), d->soc->value * 100,
			                          d->soc->sigma * 100, d->soc->lower * 100,
			                          d->soc->upper * 100, "%"));
		else
			row("state of charge", "n/a");
		snprintf(a, sizeof(a), "%s%% .. %s%%",
		         vpp__ctl_fmt_num(b, sizeof(b), d->min_soc * 100, 1),
		         vpp__ctl_fmt_num(e, sizeof(e), d->max_soc * 100, 1));
		row("SoC limits", a);
		snprintf(a, sizeof(a), "%s kW charge, %s kW discharge",
		         vpp__ctl_fmt_num(b, sizeof(b), d->rated_charge_kw, 1),
		         vpp__ctl_fmt_num(e, sizeof(e), d->rated_discharge_kw, 1));
		row("ratings", a);
		snprintf(a, sizeof(a), "%s kWh",
		         vpp__ctl_fmt_num(b, sizeof(b), d->capacity_kwh, 1));
		row("capacity", a);
		if (d->last_seen_ms > 0)
			snprintf(a, sizeof(a), "%s ago (%s)",
			         vpp__ctl_fmt_age(b, sizeof(b), now - d->last_seen_ms),
			         vpp__ctl_fmt_local_time(t, sizeof(t), d->last_seen_ms));
		else
			snprintf(a, sizeof(a), "never");
		row("last seen", a);
		row("session node", d->node_id[0] ? d->node_id : "- (not connected)");
		if (d->firmware[0]) /* only when the server knows it */
			row("firmware", d->firmware);
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}
