/* The gRPC client (server/grpc/client.c, call.c) when the application's
 * on_status closes the connection, as vpp-emulator's does: the call that
 * reported is freed by that close, so nothing may touch it afterwards
 * (ASan, which runs the unit tests, reports a use after free or a double
 * free otherwise). The peer is a TCP listener that never answers: with
 * h2c the request goes on the wire; with TLS the connection never becomes
 * ready and the call never leaves the client. */
#include "vpp/grpc.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

Suite *test_client_suite(void);

static uv_loop_t loop;
static uv_tcp_t listener;
static uv_tcp_t accepted[4];
static int naccepted;
static vpp_grpc_conn *conn;
static int statuses, last_status;
static bool closed;

static void on_accept(uv_stream_t *server, int status)
{
	if (status != 0 || naccepted == 4)
		return;
	uv_tcp_init(&loop, &accepted[naccepted]);
	if (uv_accept(server, (uv_stream_t *)&accepted[naccepted]) == 0)
		naccepted++; /* held open, never read, never answered */
}

static int listen_silent(void)
{
	struct sockaddr_in a;
	uv_ip4_addr("127.0.0.1", 0, &a);
	uv_tcp_init(&loop, &listener);
	ck_assert_int_eq(uv_tcp_bind(&listener, (const struct sockaddr *)&a, 0), 0);
	ck_assert_int_eq(uv_listen((uv_stream_t *)&listener, 8, on_accept), 0);
	struct sockaddr_in got;
	int len = sizeof(got);
	uv_tcp_getsockname(&listener, (struct sockaddr *)&got, &len);
	return ntohs(got.sin_port);
}

static void on_status(vpp_grpc_call *call, vpp_grpc_status st, const char *msg)
{
	statuses++;
	last_status = (int)st;
	vpp_grpc_conn_close(conn, false);
}

static void on_closed(vpp_grpc_conn *c, int err, void *ud)
{
	closed = true;
}

static const vpp_grpc_client_cbs cbs = {NULL, NULL, NULL, on_status};

static void on_cancel_timer(uv_timer_t *t)
{
	vpp_grpc_call_cancel(t->data);
}

static void close_all(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Runs one call that ends by its deadline (|cancel| false) or by
 * vpp_grpc_call_cancel after 100 ms, over h2c or TLS. */
static void run(bool tls, bool cancel)
{
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	naccepted = statuses = 0;
	closed = false;
	int port = listen_silent();
	vpp_grpc_tls *t = NULL;
	if (tls)
		ck_assert_int_eq(vpp_grpc_tls_client_new(NULL, NULL, NULL, &t), 0);
	vpp_grpc_client_opts o = {.host = "127.0.0.1", .port = port, .tls = t,
				  .connect_timeout_ms = 5000, .on_closed = on_closed};
	ck_assert_int_eq(vpp_grpc_conn_new(&loop, &o, &conn), 0);
	vpp_grpc_call *call;
	ck_assert_int_eq(vpp_grpc_conn_call(conn, "/t.T/Silent", NULL, 0, cancel ? 0 : 100, &cbs,
					    NULL, &call),
			 0);
	uv_timer_t timer;
	uv_timer_init(&loop, &timer);
	timer.data = call;
	if (cancel)
		uv_timer_start(&timer, on_cancel_timer, 100, 0);
	uint64_t t0 = uv_now(&loop);
	while (!closed && uv_now(&loop) - t0 < 3000 && uv_run(&loop, UV_RUN_ONCE))
		;
	ck_assert(closed);
	ck_assert_int_eq(statuses, 1);
	ck_assert_int_eq(last_status, cancel ? VPP_GRPC_CANCELLED : VPP_GRPC_DEADLINE_EXCEEDED);
	uv_walk(&loop, close_all, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	vpp_grpc_tls_unref(t);
}

START_TEST(deadline_then_close_h2c)
{
	run(false, false);
}
END_TEST

START_TEST(cancel_then_close_h2c)
{
	run(false, true);
}
END_TEST

START_TEST(deadline_then_close_before_ready)
{
	run(true, false);
}
END_TEST

START_TEST(cancel_then_close_before_ready)
{
	run(true, true);
}
END_TEST

Suite *test_client_suite(void)
{
	Suite *s = suite_create("client");
	TCase *tc = tcase_create("close in on_status");
	tcase_add_test(tc, deadline_then_close_h2c);
	tcase_add_test(tc, cancel_then_close_h2c);
	tcase_add_test(tc, deadline_then_close_before_ready);
	tcase_add_test(tc, cancel_then_close_before_ready);
	suite_add_tcase(s, tc);
	return s;
}
