/* vppctl: the operator CLI of vpp. Parses the command line (ctl/args.c),
 * connects to vppd's GridOperator API (ctl/rpc.c) and runs one command
 * (ctl/cmd_*.c). Output is for people, or JSON with --json; the exit code
 * says what happened (see --help). */
#include "ctl/ctl_int.h"
#include "vpp/error.h"
#include "vpp/log.h"

#include <signal.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	vpp__ctl_opts o;
	char err[512];
	if (vpp__ctl_parse(argc, argv, &o, err, sizeof(err)) != 0) {
		fprintf(stderr, "vppctl: %s\nRun 'vppctl --help' for usage.\n", err);
		return VPP__CTL_EXIT_USAGE;
	}
	if (o.help) {
		vpp__ctl_usage(stdout);
		return VPP__CTL_EXIT_OK;
	}
	/* The transport logs JSON events for servers; a CLI explains failures
	 * itself and shows them only when asked. */
	vpp_log_set_level(o.verbose ? VPP_LOG_DEBUG : VPP_LOG_OFF);
	/* A peer closing the socket must be an error code, not a signal that
	 * kills us silently; watch notices a closed stdout (| head) itself. */
	signal(SIGPIPE, SIG_IGN);

	vpp__ctl_client *c;
	int rv = vpp__ctl_client_new(&o, &c);
	if (rv == VPP_ETLS) {
		fprintf(stderr,
		        "vppctl: cannot load the TLS files (--ca %s, --cert %s, --key %s): "
		        "unreadable or not PEM\n",
		        o.ca ? o.ca : "(system roots)", o.cert ? o.cert : "-", o.key ? o.key : "-");
		return VPP__CTL_EXIT_USAGE;
	}
	if (rv != 0) {
		fprintf(stderr, "vppctl: cannot reach vppd at %s: %s\n", o.server,
		        rv == VPP_EINVAL ? "cannot resolve the host name" : vpp_strerror(rv));
		return VPP__CTL_EXIT_CONNECT;
	}
	int (*const run[])(vpp__ctl_client *, vpp__ctl_opts *) = {
	    [VPP__CTL_STATUS] = vpp__ctl_cmd_status,   [VPP__CTL_WATCH] = vpp__ctl_cmd_watch,
	    [VPP__CTL_SET] = vpp__ctl_cmd_set,         [VPP__CTL_PREVIEW] = vpp__ctl_cmd_preview,
	    [VPP__CTL_DEVICES] = vpp__ctl_cmd_devices, [VPP__CTL_DEVICE] = vpp__ctl_cmd_device,
	    [VPP__CTL_HEALTH] = vpp__ctl_cmd_health,   [VPP__CTL_NODES] = vpp__ctl_cmd_nodes,
	    [VPP__CTL_DRAIN] = vpp__ctl_cmd_drain,     [VPP__CTL_UNDRAIN] = vpp__ctl_cmd_drain,
	};
	int rc = run[o.cmd](c, &o);
	vpp__ctl_client_free(c);
	fflush(stdout);
	return rc;
}
