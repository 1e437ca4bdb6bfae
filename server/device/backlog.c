/* Telemetry rows that met a full store: they wait here, per I/O loop, in
 * arrival order, and the retry timer hands them on as room appears. A row
 * accepted from a device is never dropped for want of room: while rows
 * wait, the sessions that sent them stop reading (HTTP/2 flow control
 * pushes back on the devices), and past VPP__DEV_BACKLOG_MAX a message is
 * refused, not accepted. */
#include "device_int.h"
#include "vpp/error.h"
#include "vpp/store.h"

#include <stdlib.h>
#include <string.h>

int vpp__dev_backlog_push(dev_loop *dl, const vpp_telemetry_row *row)
{
	if (dl->bl_n == VPP__DEV_BACKLOG_MAX)
		return VPP_EFULL;
	if (dl->bl_head + dl->bl_n == dl->bl_cap) {
		if (dl->bl_head > 0) {
			memmove(dl->backlog, dl->backlog + dl->bl_head,
				dl->bl_n * sizeof(*dl->backlog));
			dl->bl_head = 0;
		}
		if (dl->bl_n == dl->bl_cap) {
			size_t cap = dl->bl_cap ? dl->bl_cap * 2 : 256;
			vpp_telemetry_row *v = realloc(dl->backlog, cap * sizeof(*v));
			if (!v)
				return VPP_ENOMEM;
			dl->backlog = v;
			dl->bl_cap = cap;
		}
	}
	dl->backlog[dl->bl_head + dl->bl_n++] = *row;
	vpp_gauge_add(dl->d->met.backlog, 1);
	return 0;
}

size_t vpp__dev_backlog_drain(dev_loop *dl, struct vpp_store *st)
{
	size_t before = dl->bl_n;
	while (dl->bl_n > 0) {
		int rv = vpp_store_submit_telemetry(st, &dl->backlog[dl->bl_head]);
		if (rv == VPP_EFULL)
			break;
		if (rv != 0)
			vpp_counter_inc(dl->d->met.store_rejected);
		dl->bl_head++;
		dl->bl_n--;
	}
	if (dl->bl_n == 0)
		dl->bl_head = 0;
	vpp_gauge_add(dl->d->met.backlog, -(int64_t)(before - dl->bl_n));
	return dl->bl_n;
}

void vpp__dev_backlog_free(dev_loop *dl)
{
	free(dl->backlog);
	dl->backlog = NULL;
	dl->bl_head = dl->bl_n = dl->bl_cap = 0;
}
