/* vpp.v1.Echo: a test service with one method of each gRPC call kind, for
 * interop tests and benchmarks (see proto/vpp/v1/echo.proto for what each
 * method does). vppd serves it only with --enable-echo. */
#ifndef VPP_ECHO_H
#define VPP_ECHO_H

#include "vpp/grpc.h"

int vpp_echo_register(vpp_grpc_listener *l);

#endif
