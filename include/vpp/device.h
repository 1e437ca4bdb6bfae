/* vpp.v1.DeviceLink/Connect: the persistent session of each battery.
 *
 * A session lives on the I/O loop that accepted its connection. The device
 * is identified by its client certificate (CN); its Hello must name the
 * same id. Telemetry goes to the store (with backpressure) and to the plant
 * (the dispatch thread); setpoints come back from the plant as leases. */
#ifndef VPP_DEVICE_H
#define VPP_DEVICE_H

#include "vpp/grpc.h"
#include "vpp/plant.h"

typedef struct vpp_devices vpp_devices;
struct vpp_store;

typedef struct {
	vpp_plant *plant;
	struct vpp_store *store;	/* NULL: telemetry is not persisted */
	uint32_t telemetry_interval_ms; /* told to devices; 0: 1000 */
	uint32_t hello_timeout_ms;	/* 0: 10000 */
	uint32_t ping_interval_ms;	/* 0: 15000 */
	uint32_t silence_timeout_ms;	/* no message for this long ends it; 0: 3 x the longer of
					   the ping and telemetry intervals, at least 60000 */
	double max_msgs_per_s;		/* per session, sustained; 0: 50 */
	double max_burst;		/* per session; 0: 200 */
	size_t outbound_limit;		/* queued bytes before a session is dropped; 0: 64 KiB */
} vpp_devices_opts;

/* Registers the DeviceLink service on |l| (a listener of |srv| that
 * requires device client certificates) and attaches every I/O loop of
 * |srv| to the plant. Before vpp_grpc_server_start(). */
int vpp_devices_new(const vpp_devices_opts *o, vpp_grpc_server *srv, vpp_grpc_listener *l,
		    vpp_devices **ret);

/* Frees the service once the server's loops have stopped. Accepts NULL. */
void vpp_devices_free(vpp_devices *d);

#endif
