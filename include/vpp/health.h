/* grpc.health.v1.Health (Check and Watch) on a gRPC listener. The status of
 * each service name ("" is the whole server) is set from any thread; Watch
 * streams see a change within a quarter of a second. */
#ifndef VPP_HEALTH_H
#define VPP_HEALTH_H

#include "vpp/grpc.h"

typedef struct vpp_health vpp_health;

typedef enum {
	VPP_HEALTH_UNKNOWN = 0,
	VPP_HEALTH_SERVING = 1,
	VPP_HEALTH_NOT_SERVING = 2,
} vpp_health_status;

int vpp_health_new(vpp_health **ret);
/* Frees |h|; only after the server using it has stopped. Accepts NULL. */
void vpp_health_free(vpp_health *h);

/* Sets the status of |service| (at most 16 services). Thread-safe. */
int vpp_health_set(vpp_health *h, const char *service, vpp_health_status st);

/* Registers Check and Watch on |l|. */
int vpp_health_register(vpp_health *h, vpp_grpc_listener *l);

#endif
