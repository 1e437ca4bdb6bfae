// Reference peer for bench/grpc_health.sh: Google's gRPC C++ server serving
// grpc.health.v1.Health/Check -> SERVING over TLS. It uses the asynchronous
// completion-queue API with one queue and one polling thread per requested
// thread, the shape of gRPC's own QPS benchmark server, so it shows what the
// library does at its best on this machine.
//
//   health_server PORT CERT KEY [THREADS]
#include <grpcpp/grpcpp.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "health.grpc.pb.h"

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

namespace {

std::string ReadFile(const char *path)
{
	std::ifstream f(path);
	if (!f) {
		std::fprintf(stderr, "health_server: cannot read %s\n", path);
		std::exit(2);
	}
	std::stringstream ss;
	ss << f.rdbuf();
	return ss.str();
}

// One outstanding Check call: requested, then answered, then freed.
class Call {
public:
	Call(Health::AsyncService *svc, grpc::ServerCompletionQueue *cq)
	    : svc_(svc), cq_(cq), writer_(&ctx_)
	{
		svc_->RequestCheck(&ctx_, &req_, &writer_, cq_, cq_, this);
	}

	void Proceed(bool ok)
	{
		if (done_ || !ok) {
			delete this;
			return;
		}
		new Call(svc_, cq_); // keep one request posted per queue
		HealthCheckResponse resp;
		resp.set_status(HealthCheckResponse::SERVING);
		done_ = true;
		writer_.Finish(resp, grpc::Status::OK, this);
	}

private:
	Health::AsyncService *svc_;
	grpc::ServerCompletionQueue *cq_;
	grpc::ServerContext ctx_;
	HealthCheckRequest req_;
	grpc::ServerAsyncResponseWriter<HealthCheckResponse> writer_;
	bool done_ = false;
};

std::unique_ptr<grpc::Server> g_server;

void Poll(Health::AsyncService *svc, grpc::ServerCompletionQueue *cq)
{
	// Several calls posted at once so bursts of new streams need no wait.
	for (int i = 0; i < 64; i++)
		new Call(svc, cq);
	void *tag;
	bool ok;
	while (cq->Next(&tag, &ok))
		static_cast<Call *>(tag)->Proceed(ok);
}

} // namespace

int main(int argc, char **argv)
{
	if (argc < 4) {
		std::fprintf(stderr, "usage: %s PORT CERT KEY [THREADS]\n", argv[0]);
		return 2;
	}
	int threads = argc > 4 ? std::atoi(argv[4]) : 2;
	if (threads < 1)
		threads = 1;
	grpc::SslServerCredentialsOptions ssl;
	ssl.pem_key_cert_pairs.push_back({ReadFile(argv[3]), ReadFile(argv[2])});
	std::string addr = std::string("127.0.0.1:") + argv[1];

	Health::AsyncService svc;
	grpc::ServerBuilder b;
	b.AddListeningPort(addr, grpc::SslServerCredentials(ssl));
	b.RegisterService(&svc);
	b.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 256);
	std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> cqs;
	for (int i = 0; i < threads; i++)
		cqs.push_back(b.AddCompletionQueue());
	g_server = b.BuildAndStart();
	if (!g_server) {
		std::fprintf(stderr, "health_server: cannot listen on %s\n", addr.c_str());
		return 1;
	}
	std::fprintf(stderr, "health_server: listening on %s, %d threads\n", addr.c_str(), threads);

	// Shut down cleanly on SIGTERM/SIGINT: a watcher thread waits for them.
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, nullptr);
	std::thread watcher([&set] {
		int sig;
		sigwait(&set, &sig);
		g_server->Shutdown();
	});

	std::vector<std::thread> pollers;
	for (auto &cq : cqs)
		pollers.emplace_back(Poll, &svc, cq.get());
	g_server->Wait();
	for (auto &cq : cqs)
		cq->Shutdown();
	for (auto &t : pollers)
		t.join();
	watcher.join();
	return 0;
}
