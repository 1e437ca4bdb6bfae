/* The DeviceLink service object: per-loop state and metrics. */
#include "device_int.h"
#include "vpp/error.h"

#include <stdlib.h>
#include <string.h>

const char *vpp__dev_reject_name(int r);

static void metrics_init(vpp_devices *d)
{
	d->met.sessions = vpp_gauge_get("vpp_device_sessions", NULL, "Device sessions open now");
	d->met.backlog = vpp_gauge_get("vpp_device_telemetry_backlog_rows", NULL,
				       "Accepted telemetry rows waiting for room in the store");
	d->met.hellos = vpp_counter_get("vpp_device_hellos_total", NULL, "Hellos accepted");
	d->met.telemetry = vpp_counter_get("vpp_device_telemetry_total", NULL,
					   "Telemetry messages accepted");
	d->met.setpoints = vpp_counter_get("vpp_device_setpoints_sent_total", NULL,
					   "Setpoints written to devices");
	d->met.acks = vpp_counter_get("vpp_device_acks_total", NULL, "Setpoint acks received");
	d->met.pings = vpp_counter_get("vpp_device_pings_total", NULL, "Pings sent");
	for (int r = 0; r < DR__COUNT; r++) {
		char labels[64];
		snprintf(labels, sizeof(labels), "reason=\"%s\"", vpp__dev_reject_name(r));
		d->met.rejected[r] = vpp_counter_get("vpp_device_rejected_total", labels,
						     "Device sessions refused or ended, by reason");
	}
	d->met.shed_dispatch = vpp_counter_get(
		"vpp_device_shed_total", "reason=\"dispatch_queue_full\"",
		"Messages the estimator did not get (the store still has the telemetry)");
	d->met.store_blocked = vpp_counter_get("vpp_device_store_backpressure_total", NULL,
					       "Times a session paused because the store was full");
	d->met.store_rejected = vpp_counter_get("vpp_device_telemetry_store_rejected_total", NULL,
						"Telemetry the store refused (see "
						"vpp_store_rejected_total)");
	d->met.stale_out = vpp_counter_get("vpp_device_stale_messages_total", NULL,
					   "Plant messages for sessions that had ended");
	d->met.duplicates = vpp_counter_get("vpp_device_telemetry_duplicates_total", NULL,
					    "Telemetry with a seq not newer than the last");
	d->met.implausible = vpp_counter_get(
		"vpp_device_telemetry_implausible_total", NULL,
		"Telemetry whose power is far beyond the device's own ratings, or whose "
		"sigma says nothing: taken as a sensor fault");
	d->met.stale_acks = vpp_counter_get(
		"vpp_device_stale_acks_total", NULL,
		"Acks for a setpoint of an earlier session, or acked twice (ignored)");
	d->met.lost_at_shutdown = vpp_counter_get(
		"vpp_device_telemetry_lost_total", NULL,
		"Accepted telemetry the store still had no room for when vppd stopped");
	double b[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
	/* Finer around the targets (fan-out <= 50 ms, ack p99 <= 100 ms). */
	double fine[] = {0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075,
			 0.1,	0.15,	0.2,   0.25, 0.5,  1,	 2.5,  5};
	size_t nfine = sizeof(fine) / sizeof(fine[0]);
	d->met.ack_rtt = vpp_histogram_get("vpp_device_setpoint_ack_seconds", NULL,
					   "Setpoint written to its ack received", fine, nfine);
	d->met.ping_rtt = vpp_histogram_get("vpp_device_ping_rtt_seconds", NULL,
					    "Ping round trip", b, 12);
	d->met.fanout = vpp_histogram_get(
		"vpp_device_fanout_seconds", NULL,
		"Control tick start to the last of its setpoints written to the sockets "
		"(one observation per I/O loop and tick)",
		fine, nfine);
}

int vpp_devices_new(const vpp_devices_opts *o, vpp_grpc_server *srv, vpp_grpc_listener *l,
		    vpp_devices **ret)
{
	int rv;
	if (!o->plant)
		return VPP_EINVAL;
	vpp_devices *d = calloc(1, sizeof(*d));
	if (!d)
		return VPP_ENOMEM;
	d->o = *o;
	if (!d->o.telemetry_interval_ms)
		d->o.telemetry_interval_ms = 1000;
	if (!d->o.hello_timeout_ms)
		d->o.hello_timeout_ms = 10000;
	if (!d->o.ping_interval_ms)
		d->o.ping_interval_ms = 15000;
	if (!d->o.silence_timeout_ms) {
		/* A live device answers every ping and reports every interval:
		 * three of the longer of the two, and never under a minute. */
		uint32_t every = d->o.ping_interval_ms > d->o.telemetry_interval_ms
				     ? d->o.ping_interval_ms
				     : d->o.telemetry_interval_ms;
		d->o.silence_timeout_ms = every > 20000 ? 3 * every : 60000;
	}
	if (d->o.max_msgs_per_s <= 0)
		d->o.max_msgs_per_s = 50;
	if (d->o.max_burst <= 0)
		d->o.max_burst = 200;
	if (!d->o.outbound_limit)
		d->o.outbound_limit = 64 * 1024;
	d->nloops = vpp_grpc_server_loop_count(srv);
	d->loops = calloc((size_t)d->nloops, sizeof(dev_loop));
	if (!d->loops) {
		free(d);
		return VPP_ENOMEM;
	}
	metrics_init(d);
	vpp_grpc_method m = vpp__dev_method;
	m.method_ud = d;
	if ((rv = vpp_grpc_listener_add_method(l, &m)) != 0)
		goto fail;
	for (int i = 0; i < d->nloops; i++) {
		dev_loop *dl = &d->loops[i];
		dl->d = d;
		dl->index = i;
		dl->loop = vpp_grpc_server_loop(srv, i);
		uv_timer_init(dl->loop, &dl->sweep);
		dl->sweep.data = dl;
		uv_timer_init(dl->loop, &dl->retry);
		dl->retry.data = dl;
		uv_timer_start(&dl->sweep, vpp__dev_sweep, 1000, 1000);
		/* The timers must not keep a stopping loop alive. */
		uv_unref((uv_handle_t *)&dl->sweep);
		uv_unref((uv_handle_t *)&dl->retry);
		if ((rv = vpp_plant_attach_loop(o->plant, i, dl->loop, vpp__dev_deliver, dl)) != 0)
			goto fail;
	}
	*ret = d;
	return 0;
fail:
	vpp_devices_free(d);
	return rv;
}

void vpp_devices_free(vpp_devices *d)
{
	if (!d)
		return;
	for (int i = 0; i < d->nloops; i++) {
		dev_loop *dl = &d->loops[i];
		free(dl->table);
		free(dl->gens);
		free(dl->free_idx);
		free(dl->byes);
		free(dl->unreg);
		vpp__dev_backlog_free(dl);
	}
	free(d->loops);
	free(d);
}
