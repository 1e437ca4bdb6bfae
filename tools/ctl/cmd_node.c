/* vppctl node drain / undrain: takes a cluster node out of service for a
 * rolling upgrade, or puts it back (DrainNode). The answer means the
 * request is recorded; the node moves its devices away over the next
 * seconds, which `vppctl nodes` shows. */
#include "cmd_int.h"

int vpp__ctl_cmd_drain(vpp__ctl_client *c, vpp__ctl_opts *o)
{
	Vpp__V1__DrainNodeRequest req = VPP__V1__DRAIN_NODE_REQUEST__INIT;
	req.node_id = (char *)o->node_id;
	req.drain = o->cmd == VPP__CTL_DRAIN;
	req.reason = (char *)(o->reason ? o->reason : "");
	ProtobufCMessage *m;
	int rc = vpp__ctl_call(c, o, VPP__CTL_SERVICE "DrainNode", &req.base,
	                       &vpp__v1__drain_node_response__descriptor, &m);
	if (rc)
		return rc;
	const Vpp__V1__DrainNodeResponse *r = (const Vpp__V1__DrainNodeResponse *)m;
	/* An older server may leave the id out: it is the one asked for. */
	const char *id = r->node_id[0] ? r->node_id : o->node_id;
	if (o->json) {
		vpp__ctl_json j;
		vpp__ctl_json_init(&j);
		vpp__ctl_json_begin(&j, NULL);
		vpp__ctl_json_str(&j, "node_id", id);
		vpp__ctl_json_bool(&j, "draining", r->draining);
		vpp__ctl_json_end(&j);
		rc = vpp__ctl_json_emit(&j);
	} else if (r->draining) {
		printf("%s: draining (its devices move to the other nodes; watch `vppctl nodes`)\n",
		       id);
	} else {
		printf("%s: no longer draining\n", id);
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}
