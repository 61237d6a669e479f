// Process group on LibTorch's c10d: TCPStore rendezvous, ProcessGroupGloo collectives, and a
// heartbeat per rank in the store so a failed collective can name the rank that was lost.
// Mirrors torch.distributed.init_process_group("gloo", init_method="env://").
#include <ATen/ATen.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <sstream>
#include <mutex>
#include <thread>

#include "peft/core/check.h"
#include "peft/distributed/collective.h"

#ifndef USE_C10D_GLOO
#error "LibTorch was built without c10d Gloo (USE_C10D_GLOO); configure with PEFT_WITH_GLOO=OFF"
#endif

namespace peft::distributed {

bool available() { return true; }

namespace {

using Ms = std::chrono::milliseconds;
constexpr auto kHeartbeat = std::chrono::seconds(1);

std::string seconds(double s) {
  std::ostringstream os;
  os << s << " s";
  return os.str();
}

std::string first_line(const std::string& s) {
  const auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

// The local address the kernel would use to reach `host` (a UDP connect sends nothing).
std::string route_to(const std::string& host, int port) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  PEFT_CHECK(rc == 0 && res != nullptr, ConfigError, "[distributed] MASTER_ADDR='", host,
             "' does not resolve: ", ::gai_strerror(rc));
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in local{};
  socklen_t len = sizeof(local);
  const bool ok = fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0;
  if (fd >= 0) ::close(fd);
  ::freeaddrinfo(res);
  PEFT_CHECK(ok, DistributedError, "[distributed] no route from this host to MASTER_ADDR='", host, "'");
  char buf[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &local.sin_addr, buf, sizeof(buf));
  return buf;
}

class GlooCollective final : public Collective {
 public:
  GlooCollective(const DistributedEnv& env, const ProcessGroupOptions& opts)
      : rank_(env.rank), world_(env.world_size), timeout_(static_cast<int64_t>(opts.timeout_seconds * 1000)),
        bucket_bytes_(opts.bucket_bytes) {
    PEFT_CHECK(opts.timeout_seconds > 0, ConfigError, "[distributed] timeout must be > 0 seconds, got ",
               opts.timeout_seconds);
    PEFT_CHECK(opts.bucket_bytes > 0, ConfigError, "[distributed] bucket_bytes must be > 0");
    const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
    try {
      c10d::TCPStoreOptions so;
      so.port = static_cast<uint16_t>(env.master_port);
      so.isServer = rank_ == 0;
      so.numWorkers = static_cast<std::size_t>(world_);
      so.waitWorkers = true;
      so.timeout = timeout_;
      store_ = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
      // A second connection for heartbeats and diagnosis, with a short timeout of its own.
      c10d::TCPStoreOptions ho;
      ho.port = so.port;
      ho.isServer = false;
      ho.waitWorkers = false;
      ho.timeout = std::min<Ms>(timeout_, Ms(10000));
      hb_store_ = c10::make_intrusive<c10d::TCPStore>(env.master_addr, ho);
    } catch (const std::exception& e) {
      throw DistributedError("[distributed] rank " + std::to_string(rank_) + ": rendezvous at " + where + " with " +
                             std::to_string(world_) + " ranks did not complete within " +
                             seconds(opts.timeout_seconds) + ": " + first_line(e.what()));
    }
    heartbeat_ = std::thread([this] { beat(); });
    try {
      auto o = c10d::ProcessGroupGloo::Options::create(timeout_);
      if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname != '\0')
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      else
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(
            opts.local_addr.empty() ? route_to(env.master_addr, env.master_port) : opts.local_addr));
      o->threads = 2;
      auto prefixed = c10::make_intrusive<c10d::PrefixStore>("peft/pg", store_);
      pg_ = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank_, world_, o);
    } catch (const std::exception& e) {
      stop_heartbeat();
      throw DistributedError("[distributed] rank " + std::to_string(rank_) + ": connecting the Gloo mesh of " +
                             std::to_string(world_) + " ranks via " + where + " failed within " +
                             seconds(opts.timeout_seconds) + " (did every rank start?): " + first_line(e.what()));
    }
  }

  ~GlooCollective() override {
    stop_heartbeat();
    pg_.reset();
    hb_store_.reset();
    store_.reset();
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }

  void all_reduce_sum(const std::vector<at::Tensor>& tensors) override {
    struct Bucket {
      std::vector<at::Tensor> members;
      std::vector<at::Tensor> io;  // the one flat tensor handed to Gloo
      int64_t bytes = 0;
      c10::intrusive_ptr<c10d::Work> work;
    };
    std::vector<Bucket> buckets;
    std::map<at::ScalarType, std::size_t> open;  // dtype -> bucket being filled
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const at::Tensor& t = tensors[i];
      PEFT_CHECK(t.defined(), std::invalid_argument, "[distributed] all_reduce_sum: tensor ", i, " is undefined");
      const auto bytes = static_cast<int64_t>(t.numel() * t.element_size());
      auto it = open.find(t.scalar_type());
      if (it == open.end() || buckets[it->second].bytes + bytes > bucket_bytes_) {
        buckets.emplace_back();
        it = open.insert_or_assign(t.scalar_type(), buckets.size() - 1).first;
      }
      buckets[it->second].members.push_back(t);
      buckets[it->second].bytes += bytes;
    }
    // Launch every bucket first: Gloo's worker threads then reduce them concurrently.
    for (auto& b : buckets) {
      if (b.members.size() == 1 && b.members[0].is_contiguous()) {
        b.io = {b.members[0]};
      } else {
        std::vector<at::Tensor> flat;
        for (const auto& t : b.members) flat.push_back(t.reshape({-1}));
        b.io = {at::cat(flat)};
      }
      guarded("all-reduce", [&] { b.work = pg_->allreduce(b.io); });
    }
    for (auto& b : buckets) {
      guarded("all-reduce", [&] { b.work->wait(); });
      if (b.io[0].is_same(b.members[0])) continue;
      int64_t off = 0;
      for (auto& t : b.members) {
        t.copy_(b.io[0].narrow(0, off, t.numel()).view(t.sizes()));
        off += t.numel();
      }
    }
  }

  void barrier() override {
    guarded("barrier", [&] { pg_->barrier()->wait(); });
  }

 private:
  template <typename F>
  void guarded(const char* op, F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      const std::string lost = lost_ranks();
      throw DistributedError("[distributed] rank " + std::to_string(rank_) + ": " + op + " failed: " +
                             (lost.empty() ? std::string("a peer stopped answering") : "lost " + lost) + " (" +
                             first_line(e.what()) + ")");
    }
  }

  // Ranks whose heartbeat counter stood still for three periods; "" when none could be singled out.
  std::string lost_ranks() {
    std::vector<int64_t> before(world_), after(world_);
    auto sample = [&](std::vector<int64_t>& v) {
      for (int r = 0; r < world_; ++r) v[r] = hb_store_->add(key(r), 0);
    };
    try {
      sample(before);
      std::this_thread::sleep_for(3 * kHeartbeat);
      sample(after);
    } catch (const std::exception&) {
      return rank_ == 0 ? std::string() : "rank 0 (it hosts the rendezvous store, which no longer answers)";
    }
    std::string out;
    for (int r = 0; r < world_; ++r)
      if (r != rank_ && before[r] == after[r]) out += (out.empty() ? "rank " : ", rank ") + std::to_string(r);
    return out.empty() ? out : out + " (no heartbeat for 3 s: it died or hangs)";
  }

  std::string key(int r) const { return "peft/hb/" + std::to_string(r); }

  void beat() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      lock.unlock();
      try {
        hb_store_->add(key(rank_), 1);
      } catch (const std::exception&) {
        // The store went away (rank 0 exited); a collective reports it if it matters.
      }
      lock.lock();
      cv_.wait_for(lock, kHeartbeat, [&] { return stop_; });
    }
  }

  void stop_heartbeat() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (heartbeat_.joinable()) heartbeat_.join();
  }

  int rank_, world_;
  Ms timeout_;
  int64_t bucket_bytes_;
  c10::intrusive_ptr<c10d::TCPStore> store_, hb_store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg_;
  std::thread heartbeat_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

}  // namespace

std::shared_ptr<Collective> init_process_group(const DistributedEnv& env, const ProcessGroupOptions& opts) {
  return std::make_shared<GlooCollective>(env, opts);
}

}  // namespace peft::distributed
