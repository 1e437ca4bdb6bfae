/* vppctl status, watch and preview: the fleet as one power plant. */
#include "cmd_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The newest input behind |fs|: its measured power's, else the tick's. */
static int64_t data_time(const Vpp__V1__FleetStatus *fs)
{
	if (fs->measured_kw && fs->measured_kw->as_of_ms > 0)
		return fs->measured_kw->as_of_ms;
	return fs->tick_at_ms;
}

static void status_json(vpp__ctl_json *j, const Vpp__V1__FleetStatus *fs, int64_t now)
{
	vpp__ctl_json_begin(j, NULL);
	vpp__ctl_json_int(j, "tick_at_ms", fs->tick_at_ms);
	vpp__ctl_json_num(j, "target_kw", fs->target_kw);
	vpp__ctl_json_num(j, "adjusted_target_kw", fs->adjusted_target_kw);
	vpp__ctl_json_num(j, "commanded_kw", fs->commanded_kw);
	vpp__ctl_json_pb_estimate(j, "measured_kw", fs->measured_kw);
	vpp__ctl_json_pb_estimate(j, "discharge_headroom_kw", fs->discharge_headroom_kw);
	vpp__ctl_json_pb_estimate(j, "charge_headroom_kw", fs->charge_headroom_kw);
	vpp__ctl_json_pb_estimate(j, "stored_energy_kwh", fs->stored_energy_kwh);
	vpp__ctl_json_pb_estimate(j, "expected_delivery_kw", fs->expected_delivery_kw);
	vpp__ctl_json_num(j, "tracking_error_kw", fs->tracking_error_kw);
	vpp__ctl_json_num(j, "shortfall_kw", fs->shortfall_kw);
	vpp__ctl_json_int(j, "devices_online", fs->devices_online);
	vpp__ctl_json_int(j, "devices_stale", fs->devices_stale);
	vpp__ctl_json_int(j, "devices_degraded", fs->devices_degraded);
	vpp__ctl_json_int(j, "devices_offline", fs->devices_offline);
	vpp__ctl_json_str(j, "active_setpoint_id",
	                  fs->active_setpoint_id[0] ? fs->active_setpoint_id : NULL);
	vpp__ctl_json_int(j, "active_valid_until_ms", fs->active_valid_until_ms);
	vpp__ctl_json_int(j, "data_age_ms", now - data_time(fs));
	vpp__ctl_json_nodes(j, fs->nodes, fs->n_nodes, fs->leader_node_id, fs->leader_epoch);
	vpp__ctl_json_end(j);
}

static void row(const char *label, const char *value)
{
	printf("  %-19s %s\n", label, value);
}

static void kw_row(const char *label, double v)
{
	char b[64], l[80];
	snprintf(l, sizeof(l), "%s kW", vpp__ctl_fmt_num(b, sizeof(b), v, 1));
	row(label, l);
}

/* Returns the exit code. */
static int status_text(const Vpp__V1__FleetStatus *fs, int64_t now)
{
	char a[160], b[160], c[64], d[64];
	printf("Fleet status, as of %s ago (tick %s)\n",
	       vpp__ctl_fmt_age(a, sizeof(a), now - data_time(fs)),
	       vpp__ctl_fmt_local_time(b, sizeof(b), fs->tick_at_ms));
	kw_row("target", fs->target_kw);
	kw_row("adjusted target", fs->adjusted_target_kw);
	kw_row("commanded", fs->commanded_kw);
	row("measured", vpp__ctl_fmt_pb_estimate(a, sizeof(a), fs->measured_kw, "kW"));
	kw_row("tracking error", fs->tracking_error_kw);
	kw_row("shortfall", fs->shortfall_kw);
	row("expected delivery",
	    vpp__ctl_fmt_pb_estimate(a, sizeof(a), fs->expected_delivery_kw, "kW"));
	row("discharge headroom",
	    vpp__ctl_fmt_pb_estimate(a, sizeof(a), fs->discharge_headroom_kw, "kW"));
	row("charge headroom",
	    vpp__ctl_fmt_pb_estimate(a, sizeof(a), fs->charge_headroom_kw, "kW"));
	row("stored energy", vpp__ctl_fmt_pb_estimate(a, sizeof(a), fs->stored_energy_kwh, "kWh"));
	snprintf(a, sizeof(a), "%u online, %u stale, %u degraded, %u offline", fs->devices_online,
	         fs->devices_stale, fs->devices_degraded, fs->devices_offline);
	row("devices", a);
	if (fs->active_setpoint_id[0]) {
		snprintf(a, sizeof(a), "%s, %s left (until %s)", fs->active_setpoint_id,
		         vpp__ctl_fmt_age(c, sizeof(c), fs->active_valid_until_ms - now),
		         vpp__ctl_fmt_local_time(b, sizeof(b), fs->active_valid_until_ms));
		row("active setpoint", a);
	} else if (fs->n_nodes > 0 && fabs(fs->target_kw) >= 0.05) {
		/* A node given no share does not hear which setpoint it is. */
		row("active setpoint", "not known to this node");
	} else {
		row("active setpoint", "none (the fleet holds 0 kW)");
	}
	if (fabs(fs->shortfall_kw) > 0.05)
		printf("WARNING: the fleet cannot deliver its target: short by %s kW\n",
		       vpp__ctl_fmt_num(d, sizeof(d), fs->shortfall_kw, 1));
	if (fs->n_nodes == 0)
		return 0; /* a single vppd */
	size_t alive = 0;
	for (size_t i = 0; i < fs->n_nodes; i++)
		alive += fs->nodes[i]->alive;
	printf("Nodes (%zu, %zu alive; ", fs->n_nodes, alive);
	if (fs->leader_node_id[0])
		printf("leader %s, epoch %llu):\n", fs->leader_node_id,
		       (unsigned long long)fs->leader_epoch);
	else
		printf("no leader):\n");
	return vpp__ctl_print_nodes(fs->nodes, fs->n_nodes, "  ");
}

int vpp__ctl_cmd_status(vpp__ctl_client *c, vpp__ctl_opts *o)
{
	Vpp__V1__GetFleetStatusRequest req = VPP__V1__GET_FLEET_STATUS_REQUEST__INIT;
	ProtobufCMessage *m;
	int rc = vpp__ctl_call(c, o, VPP__CTL_SERVICE "GetFleetStatus", &req.base,
	                       &vpp__v1__fleet_status__descriptor, &m);
	if (rc)
		return rc;
	const Vpp__V1__FleetStatus *fs = (const Vpp__V1__FleetStatus *)m;
	int64_t now = vpp__ctl_now_ms();
	if (o->json) {
		vpp__ctl_json j;
		vpp__ctl_json_init(&j);
		status_json(&j, fs, now);
		rc = vpp__ctl_json_emit(&j);
	} else {
		rc = status_text(fs, now);
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

typedef struct {
	const vpp__ctl_opts *o;
	uint64_t seen;
	bool header_done;
	bool bad_message;
} watch_ctx;

/* "14:03:07" of |unix_ms|, local time. */
static char *clock_time(char *buf, size_t len, int64_t unix_ms)
{
	time_t t = (time_t)(unix_ms / 1000);
	struct tm tm;
	if (unix_ms <= 0 || !localtime_r(&t, &tm) || strftime(buf, len, "%H:%M:%S", &tm) == 0)
		snprintf(buf, len, "--:--:--");
	return buf;
}

static int on_watch_msg(void *ud, const uint8_t *data, size_t len)
{
	watch_ctx *w = ud;
	Vpp__V1__FleetStatus *fs = vpp__v1__fleet_status__unpack(NULL, len, data);
	if (!fs) {
		w->bad_message = true;
		return 1;
	}
	int64_t now = vpp__ctl_now_ms();
	if (w->o->json) {
		vpp__ctl_json j;
		vpp__ctl_json_init(&j);
		status_json(&j, fs, now);
		vpp__ctl_json_emit(&j);
	} else {
		char t[32], tg[48], v[48], s[48], lo[48], hi[48], e[48];
		if (!w->header_done) {
			printf("%-8s  %12s  %-42s  %10s  %s\n", "TIME", "TARGET kW",
			       "MEASURED kW \u00b1 sigma [90%]", "ERROR kW", "ONLINE");
			w->header_done = true;
		}
		const Vpp__V1__Estimate *m = fs->measured_kw;
		char meas[200];
		if (m)
			snprintf(meas, sizeof(meas), "%s \u00b1%s [%s\u2013%s]",
			         vpp__ctl_fmt_num(v, sizeof(v), m->value, 1),
			         vpp__ctl_fmt_num(s, sizeof(s), m->sigma, 1),
			         vpp__ctl_fmt_num(lo, sizeof(lo), m->lower, 1),
			         vpp__ctl_fmt_num(hi, sizeof(hi), m->upper, 1));
		else
			snprintf(meas, sizeof(meas), "n/a");
		printf("%-8s  ", clock_time(t, sizeof(t), fs->tick_at_ms));
		vpp__ctl_pad(stdout, vpp__ctl_fmt_num(tg, sizeof(tg), fs->target_kw, 1), 12, true);
		printf("  ");
		vpp__ctl_pad(stdout, meas, 42, false);
		printf("  ");
		vpp__ctl_pad(stdout, vpp__ctl_fmt_num(e, sizeof(e), fs->tracking_error_kw, 1), 10,
		             true);
		printf("  %u%s\n", fs->devices_online,
		       fabs(fs->shortfall_kw) > 0.05 ? "  (short of target)" : "");
		fflush(stdout);
	}
	vpp__v1__fleet_status__free_unpacked(fs, NULL);
	w->seen++;
	/* stdout closed (vppctl watch | head -5): nobody is reading. */
	if (fflush(stdout) != 0 || ferror(stdout))
		return 1;
	return w->o->count && w->seen >= w->o->count;
}

int vpp__ctl_cmd_watch(vpp__ctl_client *c, vpp__ctl_opts *o)
{
	Vpp__V1__WatchFleetRequest req = VPP__V1__WATCH_FLEET_REQUEST__INIT;
	uint8_t *buf;
	size_t len;
	if (vpp__ctl_pack(&req.base, &buf, &len) != 0)
		return VPP__CTL_EXIT_ERROR;
	watch_ctx w = {.o = o};
	vpp__ctl_outcome oc;
	int rv = vpp__ctl_stream(c, VPP__CTL_SERVICE "WatchFleet", buf, len, on_watch_msg, &w, &oc);
	free(buf);
	if (w.bad_message) {
		fprintf(stderr, "vppctl: cannot decode the server's FleetStatus\n");
		return VPP__CTL_EXIT_ERROR;
	}
	if (rv != 0)
		return vpp__ctl_report_failure(&oc, o);
	return VPP__CTL_EXIT_OK;
}

int vpp__ctl_cmd_preview(vpp__ctl_client *c, vpp__ctl_opts *o)
{
	Vpp__V1__PreviewDispatchRequest req = VPP__V1__PREVIEW_DISPATCH_REQUEST__INIT;
	req.target_kw = o->kw;
	ProtobufCMessage *m;
	int rc = vpp__ctl_call(c, o, VPP__CTL_SERVICE "PreviewDispatch", &req.base,
	                       &vpp__v1__preview_dispatch_response__descriptor, &m);
	if (rc)
		return rc;
	const Vpp__V1__PreviewDispatchResponse *r = (const Vpp__V1__PreviewDispatchResponse *)m;
	if (o->json) {
		vpp__ctl_json j;
		vpp__ctl_json_init(&j);
		vpp__ctl_json_begin(&j, NULL);
		vpp__ctl_json_num(&j, "target_kw", o->kw);
		vpp__ctl_json_pb_estimate(&j, "expected_delivery_kw", r->expected_delivery_kw);
		vpp__ctl_json_num(&j, "shortfall_kw", r->shortfall_kw);
		vpp__ctl_json_int(&j, "devices_saturated", r->devices_saturated);
		vpp__ctl_json_int(&j, "devices_dispatched", r->devices_dispatched);
		vpp__ctl_json_num(&j, "sustainable_for_s", r->sustainable_for_s);
		vpp__ctl_json_end(&j);
		rc = vpp__ctl_json_emit(&j);
	} else {
		char a[160], b[64];
		printf("Preview of %s kW (nothing sent)\n",
		       vpp__ctl_fmt_num(b, sizeof(b), o->kw, 1));
		row("expected delivery",
		    vpp__ctl_fmt_pb_estimate(a, sizeof(a), r->expected_delivery_kw, "kW"));
		kw_row("shortfall", r->shortfall_kw);
		snprintf(a, sizeof(a), "%u", r->devices_dispatched);
		row("devices dispatched", a);
		snprintf(a, sizeof(a), "%u (at their limit)", r->devices_saturated);
		row("devices saturated", a);
		if (fabs(r->shortfall_kw) > 0.05)
			printf("WARNING: the fleet cannot deliver %s kW: short by %s kW\n",
			       vpp__ctl_fmt_num(b, sizeof(b), o->kw, 1),
			       vpp__ctl_fmt_num(a, sizeof(a), r->shortfall_kw, 1));
		vpp__ctl_print_sustain(r->sustainable_for_s,
		                       r->expected_delivery_kw ? r->expected_delivery_kw->value : 0, 0);
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}
