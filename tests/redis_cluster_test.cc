// redis+cluster:// against a real Redis Cluster of the test's own: three
// masters with a replica each (redis-server, or valkey-server with
// RATETRACK_REDIS_SERVER), on loopback ports, formed here with CLUSTER
// ADDSLOTSRANGE, MEET and REPLICATE. Models on every master, processes
// racing on one model, any node as the URL's, a slot resharded mid-run (ASK,
// then MOVED), masters failed over mid-run (killed, and CLUSTER FAILOVER):
// the calls recover by themselves and the over-admission is measured; the
// misconfigurations are RT_E_CONFIG whatever on_error says.
#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "ratetrack.h"
#include "redis/client.h"
#include "redis/url.h"
#include "redis_servers.h"

namespace {

using namespace ratetrack_test;  // NOLINT: the harness (redis_servers.h)

// A cluster of `masters` masters with `replicas` replicas each, formed and
// serving every slot when made: nodes 0 to masters - 1 are the masters,
// Replica(i, k) the k-th replica of master i.
class TestCluster {
 public:
  // `tls`: each node has a TLS port too, for clients, the cluster bus and
  // replication (tls-cluster yes); the test's own commands use the plain
  // port, and the cluster names the TLS ports to clients over TLS.
  explicit TestCluster(int masters = 3, int replicas = 1, const TestCertificates* tls = nullptr)
      : masters_(masters), replicas_(replicas), tls_(tls) {
    char dir[] = "/tmp/rt-cluster-XXXXXX";
    if (mkdtemp(dir) == nullptr) {
      ADD_FAILURE() << "mkdtemp";
      return;
    }
    dir_ = dir;
    for (int i = 0; i < masters * (1 + replicas); ++i) {
      std::vector<std::string> args = {"--cluster-enabled", "yes", "--cluster-node-timeout", "1000",
                                       "--repl-diskless-sync-delay", "0", "--dir", dir_};
      // Each its own nodes file: the port is only known once it started.
      args.push_back("--cluster-config-file");
      args.push_back(absl::StrCat("nodes-", i, ".conf"));
      args.push_back("--logfile");
      args.push_back(absl::StrCat(dir_, "/node-", i, ".log"));
      // The cluster bus's port, not the default port + 10000 (which may be
      // taken, or past 65535).
      bus_.push_back(FreePort());
      args.push_back("--cluster-port");
      args.push_back(std::to_string(bus_.back()));
      tls_port_.push_back(tls != nullptr ? FreePort() : 0);
      if (tls != nullptr) {
        for (const std::string& a :
             {std::string("--tls-port"), std::to_string(tls_port_.back()),
              std::string("--tls-cert-file"), (*tls)["server.pem"], std::string("--tls-key-file"),
              (*tls)["server.key"], std::string("--tls-ca-cert-file"), (*tls)["ca.pem"],
              std::string("--tls-auth-clients"), std::string("no"), std::string("--tls-cluster"),
              std::string("yes"), std::string("--tls-replication"), std::string("yes")}) {
          args.push_back(a);
        }
      }
      nodes_.push_back(std::make_unique<RedisServer>(args));
      if (!nodes_.back()->Running()) {
        ADD_FAILURE() << "a cluster node did not start";
        return;
      }
    }
    for (auto& n : nodes_) ids_.push_back(n->Command({"CLUSTER", "MYID"}, password_));
    const int per = 16384 / masters;
    for (int i = 0; i < masters; ++i) {
      const int lo = i * per, hi = i + 1 == masters ? 16383 : (i + 1) * per - 1;
      Node(i).Command({"CLUSTER", "SET-CONFIG-EPOCH", std::to_string(i + 1)});
      EXPECT_EQ(Node(i).Command({"CLUSTER", "ADDSLOTSRANGE", std::to_string(lo),
                                 std::to_string(hi)}),
                "OK");
    }
    for (size_t i = 1; i < nodes_.size(); ++i) {
      Node(0).Command({"CLUSTER", "MEET", "127.0.0.1",
                       std::to_string(tls != nullptr ? tls_port_[i] : nodes_[i]->port()),
                       std::to_string(bus_[i])});
    }
    // Every node knows every other one before the replicas choose masters.
    SecondsUntil([&] {
      for (auto& n : nodes_) {
        const std::string text = n->Command({"CLUSTER", "NODES"});
        if (std::count(text.begin(), text.end(), '\n') < static_cast<long>(nodes_.size()) ||
            text.find("handshake") != std::string::npos) {
          return false;
        }
      }
      return true;
    });
    for (int i = 0; i < masters; ++i) {
      for (int k = 0; k < replicas; ++k) {
        SecondsUntil([&] {
          return Node(Replica(i, k)).Command({"CLUSTER", "REPLICATE", ids_[i]}) == "OK" ||
                 (std::this_thread::sleep_for(std::chrono::milliseconds(100)), false);
        });
      }
    }
    WaitHealthy();
  }
  ~TestCluster() {
    nodes_.clear();
    if (!dir_.empty()) std::system(("rm -rf '" + dir_ + "'").c_str());
  }

  RedisServer& Node(int i) { return *nodes_[i]; }
  int Replica(int master, int k) const { return masters_ + master * replicas_ + k; }
  const std::string& Id(int i) const { return ids_[i]; }
  int size() const { return static_cast<int>(nodes_.size()); }
  // The node (index) that serves `slot` as its master, by CLUSTER NODES of
  // a running node (-1: none).
  int MasterOf(int slot) {
    for (auto& n : nodes_) {
      if (!n->Running()) continue;
      for (absl::string_view line : absl::StrSplit(n->Command({"CLUSTER", "NODES"}), '\n')) {
        std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
        if (f.size() < 9 || f[2].find("master") == absl::string_view::npos ||
            f[2].find("fail") != absl::string_view::npos) {
          continue;
        }
        for (size_t k = 8; k < f.size(); ++k) {
          std::pair<std::string, std::string> r = absl::StrSplit(f[k], absl::MaxSplits('-', 1));
          int lo = 0, hi = 0;
          if (!absl::SimpleAtoi(r.first, &lo)) continue;
          hi = r.second.empty() ? lo : std::atoi(r.second.c_str());
          if (slot < lo || slot > hi) continue;
          for (int i = 0; i < size(); ++i) {
            if (ids_[i] == f[0]) return i;
          }
        }
      }
      break;
    }
    return -1;
  }
  // Every running node says cluster_state:ok and every running replica is
  // in sync with its master.
  void WaitHealthy() {
    SecondsUntil([&] {
      for (auto& n : nodes_) {
        if (!n->Running()) continue;
        if (n->Command({"CLUSTER", "INFO"}).find("cluster_state:ok") == std::string::npos) {
          return false;
        }
        const std::string repl = n->Command({"INFO", "replication"});
        if (repl.find("role:slave") != std::string::npos &&
            repl.find("master_link_status:up") == std::string::npos) {
          return false;
        }
      }
      return true;
    });
  }
  std::string Url(const std::string& query, int node = 0) const {
    std::string q = query;
    if (q.find("timeout_ms=") == std::string::npos) {
      q += (q.empty() ? "?" : "&") + std::string("timeout_ms=5000");
    }
    if (tls_ != nullptr) {
      return absl::StrCat("rediss+cluster://127.0.0.1:", tls_port_[node], q, "&tls_ca_file=",
                          (*tls_)["ca.pem"]);
    }
    return absl::StrCat("redis+cluster://127.0.0.1:", nodes_[node]->port(), q);
  }

 private:
  std::string dir_;
  std::string password_;
  std::vector<std::unique_ptr<RedisServer>> nodes_;
  std::vector<std::string> ids_;
  std::vector<int> bus_, tls_port_;
  const int masters_, replicas_;
  const TestCertificates* tls_;
};

// The slot of a model's key, "{prefix:model}".
int SlotOf(const std::string& prefix, const std::string& model) {
  return ratetrack::KeySlot("{" + prefix + ":" + model + "}");
}

// A model name whose key lives in master `m`'s slots (of `masters`, split
// evenly as TestCluster does).
std::string ModelOnMaster(const std::string& prefix, int m, int masters, const std::string& stem) {
  const int per = 16384 / masters;
  for (int i = 0;; ++i) {
    const std::string name = absl::StrCat(stem, "-", i);
    const int slot = SlotOf(prefix, name);
    if (slot / per == m || (m == masters - 1 && slot >= m * per)) return name;
  }
}

// The limits of `models`, each `limit` requests an hour.
std::string LimitsOf(const std::vector<std::string>& models, long limit) {
  std::string out = "{";
  for (const auto& m : models) {
    absl::StrAppend(&out, out.size() > 1 ? "," : "", "\"", m,
                    R"(": {"windows": [{"unit": "requests", "limit": )", limit,
                    R"(, "seconds": 3600}]})");
  }
  return out + "}";
}

// A thread per tracker in `trackers`, each trying `rounds` times one
// request on every model in turn: what each model admitted, and in
// *failed how many calls were neither admitted nor refused.
std::vector<int> BookEveryModel(const std::vector<rt_tracker*>& trackers,
                                const std::vector<std::string>& models, int rounds,
                                std::atomic<int>* failed) {
  std::vector<std::atomic<int>> admitted(models.size());
  std::vector<std::thread> threads;
  for (rt_tracker* t : trackers) {
    threads.emplace_back([&, t] {
      for (int j = 0; j < rounds; ++j) {
        for (size_t m = 0; m < models.size(); ++m) {
          const int rc = rt_try_acquire(t, models[m].c_str(), 1, nullptr);
          if (rc == RT_OK) ++admitted[m];
          else if (rc != RT_LIMITED) ++*failed;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  return std::vector<int>(admitted.begin(), admitted.end());
}

// The one cluster most tests share (formed once: a few seconds); tests that
// break a cluster make their own.
class RedisClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { cluster_ = new TestCluster(); }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  static TestCluster* cluster_;
};
TestCluster* RedisClusterTest::cluster_ = nullptr;

TEST(RedisClusterKeys, SlotsAreRedisClusterSlots) {
  // The examples of the Redis Cluster specification, and hash tags.
  EXPECT_EQ(ratetrack::KeySlot("123456789"), 0x31C3 & 16383);
  EXPECT_EQ(ratetrack::KeySlot("foo"), 12182);
  EXPECT_EQ(ratetrack::KeySlot("{user1000}.following"), ratetrack::KeySlot("user1000"));
  EXPECT_EQ(ratetrack::KeySlot("foo{}{bar}"), ratetrack::KeySlot("foo{}{bar}"));
  EXPECT_NE(ratetrack::KeySlot("foo{}{bar}"), ratetrack::KeySlot("bar"));
  EXPECT_EQ(ratetrack::KeySlot("foo{{bar}}zap"), ratetrack::KeySlot("{bar"));
}

TEST(RedisClusterKeys, ClusterNodesAndRedirectionsAreParsed) {
  const std::string text =
      "07c3 127.0.0.1:30004@31004 slave e7d1 0 1426238317239 4 connected\n"
      "67ed 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922\n"
      "292f 127.0.0.1:30003@31003,host-c master - 0 1426238318243 3 connected 10923-16383\n"
      "6ec2 127.0.0.1:30005@31005 master,fail - 1426238316232 1426238316232 5 disconnected\n"
      "e7d1 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [5461->-67ed]\n";
  const ratetrack::Endpoint asked{"127.0.0.1", 30001, ""};
  absl::StatusOr<ratetrack::ClusterLayout> l = ratetrack::ParseClusterNodes(text, asked);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->covered, 16384);
  ASSERT_EQ(l->masters.size(), 3u);
  EXPECT_EQ(l->masters[0].at.Describe(), "127.0.0.1:30002");
  EXPECT_EQ(l->masters[1].at.Describe(), "127.0.0.1:30003");
  EXPECT_EQ(l->masters[2].slots, (std::vector<std::pair<int, int>>{{0, 5460}}));
  // A slot served twice, a bad range: errors, never a map.
  EXPECT_FALSE(ratetrack::ParseClusterNodes("a 1.2.3.4:1@2 master - 0 0 1 connected 0-10\n"
                                            "b 1.2.3.4:2@3 master - 0 0 1 connected 5\n",
                                            asked)
                   .ok());
  EXPECT_FALSE(
      ratetrack::ParseClusterNodes("a 1.2.3.4:1@2 master - 0 0 1 connected 9-3\n", asked).ok());
  EXPECT_FALSE(
      ratetrack::ParseClusterNodes("a 1.2.3.4:1@2 master - 0 0 1 connected 16384\n", asked).ok());
  EXPECT_FALSE(ratetrack::ParseClusterNodes("garbage\n", asked).ok());
  // A node alone, that never met another, has no IP in its own line: the
  // address it was asked at.
  absl::StatusOr<ratetrack::ClusterLayout> alone = ratetrack::ParseClusterNodes(
      "5f08 :41001@41003 myself,master - 0 0 0 connected 0-16383\n", asked);
  ASSERT_TRUE(alone.ok()) << alone.status();
  ASSERT_EQ(alone->masters.size(), 1u);
  EXPECT_EQ(alone->masters[0].at.Describe(), "127.0.0.1:41001");
  EXPECT_EQ(alone->covered, 16384);
  ratetrack::Redirect r;
  ASSERT_TRUE(ratetrack::ParseRedirect("MOVED 3999 127.0.0.1:6381", &r));
  EXPECT_FALSE(r.ask);
  EXPECT_EQ(r.slot, 3999);
  EXPECT_EQ(r.to.Describe(), "127.0.0.1:6381");
  ASSERT_TRUE(ratetrack::ParseRedirect("ASK 3999 ::1:6381", &r));
  EXPECT_TRUE(r.ask);
  EXPECT_EQ(r.to.host, "::1");
  ASSERT_TRUE(ratetrack::ParseRedirect("MOVED 1 :6380", &r));  // the host left out
  EXPECT_EQ(r.to.host, "");
  EXPECT_FALSE(ratetrack::ParseRedirect("MOVED 16384 127.0.0.1:6381", &r));
  EXPECT_FALSE(ratetrack::ParseRedirect("MOVED x 127.0.0.1:6381", &r));
  EXPECT_FALSE(ratetrack::ParseRedirect("ERR MOVED 1 127.0.0.1:6381", &r));
}

TEST(RedisClusterKeys, ClusterUrls) {
  auto u = ratetrack::ParseRedisUrl("redis+cluster://u:pw@10.0.0.1:7000,10.0.0.2:7001?prefix=p");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->cluster.size(), 2u);
  EXPECT_EQ(u->Redacted().find("pw"), std::string::npos);
  EXPECT_EQ(u->Redacted().rfind("redis+cluster://10.0.0.1:7000,10.0.0.2:7001?", 0), 0u)
      << u->Redacted();
  EXPECT_TRUE(ratetrack::ParseRedisUrl(u->Redacted()).ok());
  EXPECT_FALSE(ratetrack::ParseRedisUrl("redis+cluster://h:1?db=2").ok());
  EXPECT_FALSE(ratetrack::ParseRedisUrl("redis+cluster://h:1/3").ok());
  EXPECT_FALSE(ratetrack::ParseRedisUrl("redis+cluster://h:1,:2").ok());
  EXPECT_FALSE(ratetrack::ParseRedisUrl("redis+cluster://h:0").ok());
}

TEST_F(RedisClusterTest, ModelsOnEveryMasterAdmitExactlyTheirLimits) {
  ASSERT_NE(cluster_, nullptr);
  const std::string prefix = "every";
  std::vector<std::string> models;
  for (int m = 0; m < 3; ++m) models.push_back(ModelOnMaster(prefix, m, 3, "model"));
  const std::string cfg =
      Config(cluster_->Url("?prefix=" + prefix + "&on_error=closed"), LimitsOf(models, 60));
  // The client's map: three masters, each model's key on its own.
  auto url = ratetrack::ParseRedisUrl(cluster_->Url("?prefix=" + prefix));
  ASSERT_TRUE(url.ok());
  ratetrack::RedisClient client(*url);
  ASSERT_TRUE(client.Probe().ok());
  EXPECT_EQ(client.MastersForTest().size(), 3u);
  std::vector<std::string> where;
  for (const auto& m : models) where.push_back(client.NodeOfForTest(m));
  EXPECT_NE(where[0], where[1]);
  EXPECT_NE(where[1], where[2]);
  EXPECT_NE(where[0], where[2]);
  // Two trackers (two "hosts"), two threads each, on every model at once.
  rt_tracker* a = rt_open(cfg.c_str());
  rt_tracker* b = rt_open(cfg.c_str());
  ASSERT_NE(a, nullptr) << rt_last_error();
  ASSERT_NE(b, nullptr) << rt_last_error();
  std::atomic<int> failed{0};
  const std::vector<int> admitted = BookEveryModel({a, b, a, b}, models, 50, &failed);
  EXPECT_EQ(failed.load(), 0) << rt_last_error();
  for (int m = 0; m < 3; ++m) EXPECT_EQ(admitted[m], 60) << models[m];
  // The keys are where the map says, one per master.
  for (int m = 0; m < 3; ++m) {
    const int node = cluster_->MasterOf(SlotOf(prefix, models[m]));
    ASSERT_GE(node, 0);
    EXPECT_EQ(cluster_->Node(node).Command({"EXISTS", "{" + prefix + ":" + models[m] + "}"}), "1");
    EXPECT_EQ(absl::StrCat("127.0.0.1:", cluster_->Node(node).port()), where[m]);
  }
  EXPECT_EQ(Stats(a)["models"][models[0]]["requests_per_3600s"]["current"].get<int>(), 60);
  rt_close(a);
  rt_close(b);
}

TEST_F(RedisClusterTest, ProcessesRacingOnOneModelAdmitExactlyTheLimit) {
  ASSERT_NE(cluster_, nullptr);
  const std::string cfg = Config(cluster_->Url("?prefix=race&on_error=closed"),
      R"({"a/b": {"windows": [{"unit": "requests", "limit": 300, "seconds": 3600}]}})");
  EXPECT_EQ(RaceProcesses(cfg, 4, 200), 300);
}

TEST_F(RedisClusterTest, AnyNodeServesAsTheUrlsAndDeadOnesArePassedOver) {
  ASSERT_NE(cluster_, nullptr);
  const std::string limits =
      R"({"x": {"windows": [{"unit": "requests", "limit": 5, "seconds": 3600}]}})";
  // Every node, the replicas too, as the URL's only one: the map is asked
  // of it, and the calls go to the masters.
  for (int i = 0; i < cluster_->size(); ++i) {
    const std::string prefix = absl::StrCat("seed", i);
    rt_tracker* t = rt_open(Config(cluster_->Url("?prefix=" + prefix + "&on_error=closed", i),
                                   limits).c_str());
    ASSERT_NE(t, nullptr) << i << ": " << rt_last_error();
    int ok = 0;
    for (int j = 0; j < 8; ++j) ok += rt_try_acquire(t, "x", 1, nullptr) == RT_OK;
    EXPECT_EQ(ok, 5) << "seed node " << i;
    rt_close(t);
  }
  // A dead node first in the list: passed over.
  const int dead = FreePort();
  rt_tracker* t = rt_open(
      Config(absl::StrCat("redis+cluster://127.0.0.1:", dead, ",127.0.0.1:",
                          cluster_->Node(2).port(), "?prefix=deadseed&on_error=closed"),
             limits).c_str());
  ASSERT_NE(t, nullptr) << rt_last_error();
  EXPECT_EQ(rt_try_acquire(t, "x", 1, nullptr), RT_OK) << rt_last_error();
  rt_close(t);
  // Only dead nodes: an outage, decided by on_error (not a misconfiguration).
  rt_tracker* d = rt_open(Config(absl::StrCat("redis+cluster://127.0.0.1:", dead,
                                              "?prefix=d&timeout_ms=200&on_error=closed"),
                                 limits).c_str());
  ASSERT_NE(d, nullptr) << rt_last_error();
  EXPECT_EQ(rt_try_acquire(d, "x", 1, nullptr), RT_E_BACKEND);
  EXPECT_NE(std::string(rt_last_error()).find("no node gave the slot map"), std::string::npos)
      << rt_last_error();
  rt_close(d);
  rt_tracker* l = rt_open(Config(absl::StrCat("redis+cluster://127.0.0.1:", dead,
                                              "?prefix=d&timeout_ms=200&on_error=local"),
                                 limits).c_str());
  ASSERT_NE(l, nullptr) << rt_last_error();
  EXPECT_EQ(rt_try_acquire(l, "x", 1, nullptr), RT_OK);
  rt_close(l);
}

TEST_F(RedisClusterTest, GrantsSettleAcrossProcessesAndStatsResetWork) {
  ASSERT_NE(cluster_, nullptr);
  const std::string limits =
      R"({"g": {"windows": [{"unit": "tokens", "limit": 1000, "seconds": 3600}]}})";
  const std::string cfg = Config(cluster_->Url("?prefix=grants&on_error=closed", 1), limits);
  rt_tracker* a = rt_open(cfg.c_str());
  ASSERT_NE(a, nullptr) << rt_last_error();
  uint64_t grant = 0;
  ASSERT_EQ(rt_try_acquire_grant(a, "g", 600, nullptr, &grant), RT_OK) << rt_last_error();
  // Another tracker (another host) settles it: one ticket key for all, from
  // the node of its slot.
  rt_tracker* b = rt_open(Config(cluster_->Url("?prefix=grants&on_error=closed", 2), limits).c_str());
  ASSERT_NE(b, nullptr) << rt_last_error();
  EXPECT_EQ(rt_settle(b, "g", grant, 600, 100), RT_OK) << rt_last_error();
  EXPECT_EQ(Stats(a)["models"]["g"]["tokens_per_3600s"]["current"].get<int>(), 100);
  EXPECT_EQ(rt_reset(b), RT_OK);
  EXPECT_EQ(Stats(a)["models"]["g"]["tokens_per_3600s"]["current"].get<int>(), 0);
  rt_close(a);
  rt_close(b);
}

TEST_F(RedisClusterTest, MisconfigurationsAreErrorsWhateverOnErrorSays) {
  ASSERT_NE(cluster_, nullptr);
  RedisServer plain;
  RedisServer locked({"--requirepass", "right"});
  ASSERT_TRUE(plain.Running() && locked.Running());
  const std::string limits = R"({"x": {"rpm": 10}})";
  for (const char* policy : {"local", "open", "closed"}) {
    const std::string q = std::string("?timeout_ms=2000&on_error=") + policy;
    // A cluster URL naming a server that is not a cluster's node.
    rt_tracker* t = nullptr;
    EXPECT_EQ(rt_open_ex(Config(absl::StrCat("redis+cluster://127.0.0.1:", plain.port(), q),
                                limits).c_str(), &t),
              RT_E_CONFIG) << policy;
    EXPECT_NE(std::string(rt_last_error()).find("not a cluster's node"), std::string::npos)
        << rt_last_error();
    // A cluster node without cluster routing.
    EXPECT_EQ(rt_open_ex(Config(cluster_->Node(0).Url(q), limits).c_str(), &t), RT_E_CONFIG);
    EXPECT_NE(std::string(rt_last_error()).find("redis+cluster://"), std::string::npos)
        << rt_last_error();
    // Refused credentials.
    EXPECT_EQ(rt_open_ex(Config(absl::StrCat("redis+cluster://:wrong@127.0.0.1:", locked.port(), q),
                                limits).c_str(), &t),
              RT_E_CONFIG) << policy;
    EXPECT_NE(std::string(rt_last_error()).find("credentials"), std::string::npos)
        << rt_last_error();
  }
}

// A slot resharded while two trackers book on its model: the key migrates
// (MIGRATE) with calls still coming: those the old master no longer holds
// the key for are asked of the new one (ASK, ASKING), then the slot is
// handed over (MOVED). The calls go on by themselves, none fails, and every
// admission is counted exactly once.
TEST(RedisClusterChangeTest, AReshardMidRunIsFollowed) {
  TestCluster cluster;
  const std::string prefix = "reshard";
  const std::string model = ModelOnMaster(prefix, 0, 3, "moving");
  const int slot = SlotOf(prefix, model);
  const std::string cfg = Config(
      cluster.Url("?prefix=" + prefix + "&on_error=closed"),
      absl::StrCat(R"({")", model,
                   R"(": {"windows": [{"unit": "requests", "limit": 10000000, "seconds": 3600}]}})"));
  // Two trackers ("hosts"), two threads each.
  rt_tracker* a = rt_open(cfg.c_str());
  rt_tracker* b = rt_open(cfg.c_str());
  ASSERT_NE(a, nullptr) << rt_last_error();
  ASSERT_NE(b, nullptr) << rt_last_error();
  std::atomic<int> admitted{0}, failed{0};
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::string first_failure;
  std::vector<std::thread> threads;
  for (rt_tracker* t : {a, b, a, b}) {
    threads.emplace_back([&, t] {
      while (!stop) {
        const int rc = rt_try_acquire(t, model.c_str(), 1, nullptr);
        if (rc == RT_OK) {
          ++admitted;
        } else if (failed++ == 0) {
          std::lock_guard<std::mutex> l(mu);
          first_failure = rt_last_error();
        }
      }
    });
  }
  SecondsUntil([&] { return admitted >= 200; });
  const int from = cluster.MasterOf(slot), to = (from + 1) % 3;
  ASSERT_GE(from, 0);
  RedisServer& src = cluster.Node(from);
  RedisServer& dst = cluster.Node(to);
  EXPECT_EQ(dst.Command({"CLUSTER", "SETSLOT", std::to_string(slot), "IMPORTING", cluster.Id(from)}),
            "OK");
  EXPECT_EQ(src.Command({"CLUSTER", "SETSLOT", std::to_string(slot), "MIGRATING", cluster.Id(to)}),
            "OK");
  const std::string key = "{" + prefix + ":" + model + "}";
  EXPECT_EQ(src.Command({"MIGRATE", "127.0.0.1", std::to_string(dst.port()), key, "0", "5000"}),
            "OK");
  // Between the key's move and the slot's: ASK.
  const int before_ask = admitted;
  SecondsUntil([&] { return admitted >= before_ask + 300; });
  const int asked = admitted - before_ask;
  // The slot handed over as redis-cli does: the new master first, the old
  // one, then the others.
  std::vector<int> order = {to, from};
  for (int n = 0; n < cluster.size(); ++n) {
    if (n != to && n != from) order.push_back(n);
  }
  for (int n : order) {
    cluster.Node(n).Command({"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", cluster.Id(to)});
  }
  // Then MOVED, and the new master only.
  const int before_moved = admitted;
  SecondsUntil([&] { return admitted >= before_moved + 300; });
  stop = true;
  for (auto& th : threads) th.join();
  const int counted = Stats(a)["models"][model]["requests_per_3600s"]["current"].get<int>();
  std::printf("cluster reshard of slot %d (node %d -> %d): %d admitted while ASK, %d after MOVED, "
              "%d admitted in all, %d counted by the new master; %d failed calls%s%s\n",
              slot, from, to, asked, admitted.load() - before_moved, admitted.load(), counted,
              failed.load(), failed > 0 ? ", the first: " : "", first_failure.c_str());
  EXPECT_GT(asked, 0);
  // Every admission counted once: none lost in the move, none twice.
  EXPECT_EQ(counted, admitted.load());
  EXPECT_EQ(failed.load(), 0) << first_failure;
  EXPECT_EQ(dst.Command({"EXISTS", key}), "1");
  EXPECT_EQ(src.Command({"EXISTS", key}).rfind("MOVED ", 0), 0u);  // not there any more
  rt_close(a);
  rt_close(b);
}

// Masters failed over while processes book: one killed (its replica takes
// over after cluster-node-timeout), one handed over gracefully (CLUSTER
// FAILOVER on its replica). The calls on the other masters' models never
// stop; those on the failed one's go on by themselves on the promoted
// replica; what a failover lost (Redis replicates asynchronously) is
// measured, and with ?replicas=1 nothing admitted is lost.
TEST(RedisClusterChangeTest, MasterFailoversMidRunAreFollowed) {
  // Two replicas a master: once one is promoted, the other acknowledges
  // the bookings of ?replicas=1.
  TestCluster cluster(3, 2);
  const std::string prefix = "failover";
  const std::string victim = ModelOnMaster(prefix, 0, 3, "victim");
  const std::string bystander = ModelOnMaster(prefix, 1, 3, "bystander");
  const std::string graceful = ModelOnMaster(prefix, 2, 3, "graceful");
  const std::string limits = LimitsOf({victim, bystander, graceful}, 1000000);
  rt_tracker* r0 = rt_open(
      Config(cluster.Url("?prefix=" + prefix + "&timeout_ms=2000&on_error=closed"), limits).c_str());
  rt_tracker* r1 = rt_open(Config(cluster.Url("?prefix=" + prefix +
                                              "1&timeout_ms=2000&on_error=closed&replicas=1"),
                                  limits).c_str());
  ASSERT_NE(r0, nullptr) << rt_last_error();
  ASSERT_NE(r1, nullptr) << rt_last_error();
  std::atomic<int> victim0{0}, victim1{0}, by{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    while (!stop) victim0 += rt_try_acquire(r0, victim.c_str(), 1, nullptr) == RT_OK;
  });
  threads.emplace_back([&] {
    while (!stop) victim1 += rt_try_acquire(r1, victim.c_str(), 1, nullptr) == RT_OK;
  });
  threads.emplace_back([&] {
    while (!stop) by += rt_try_acquire(r0, bystander.c_str(), 1, nullptr) == RT_OK;
  });
  SecondsUntil([&] { return victim0 >= 300 && victim1 >= 300 && by >= 300; });
  const int victim_master = cluster.MasterOf(SlotOf(prefix, victim));
  ASSERT_EQ(victim_master, 0);
  cluster.Node(victim_master).Kill();
  const int b0 = victim0, b1 = victim1, by_at_kill = by;
  const double recovery = SecondsUntil([&] { return victim0 > b0 + 50 && victim1 > b1 + 50; });
  const int by_during = by - by_at_kill;
  stop = true;
  for (auto& th : threads) th.join();
  cluster.WaitHealthy();
  const int promoted = cluster.MasterOf(SlotOf(prefix, victim));
  ASSERT_GE(promoted, 0);
  EXPECT_NE(promoted, victim_master);
  auto kept = [&](const std::string& p) {
    const std::string url = absl::StrCat("redis+cluster://127.0.0.1:", cluster.Node(1).port(),
                                         "?prefix=", p, "&timeout_ms=5000&on_error=closed");
    rt_tracker* check = rt_open(Config(url, limits).c_str());
    EXPECT_NE(check, nullptr) << rt_last_error();
    const int n = Stats(check)["models"][victim]["requests_per_3600s"]["current"].get<int>();
    rt_close(check);
    return n;
  };
  const int kept0 = kept(prefix), kept1 = kept(prefix + "1");
  std::printf("cluster, master killed: its models' calls back after %.1f s (cluster-node-timeout "
              "1 s); another master's model admitted %d meanwhile; replicas=0: %d admitted, %d "
              "kept (lost %d: the over-admission it allows); replicas=1: %d admitted, %d kept "
              "(lost %d)\n",
              recovery, by_during, victim0.load(), kept0, std::max(0, victim0.load() - kept0),
              victim1.load(), kept1, std::max(0, victim1.load() - kept1));
  EXPECT_GT(by_during, 0) << "the other masters' models stopped too";
  EXPECT_GE(kept1, victim1.load()) << "replicas=1 lost an admitted booking";
  // A graceful failover of another master: its replica takes over; the
  // calls follow (MOVED from the old master, now a replica).
  const int g_master = cluster.MasterOf(SlotOf(prefix, graceful));
  ASSERT_GE(g_master, 0);
  const int g_replica = cluster.Replica(g_master, 0);
  std::atomic<int> g_ok{0}, g_failed{0};
  stop = false;
  std::thread g([&] {
    while (!stop) {
      const int rc = rt_try_acquire(r0, graceful.c_str(), 1, nullptr);
      if (rc == RT_OK) ++g_ok;
      else ++g_failed;
    }
  });
  SecondsUntil([&] { return g_ok >= 200; });
  EXPECT_EQ(cluster.Node(g_replica).Command({"CLUSTER", "FAILOVER"}), "OK");
  SecondsUntil([&] { return cluster.MasterOf(SlotOf(prefix, graceful)) == g_replica; });
  const int g_before = g_ok;
  const double g_back = SecondsUntil([&] { return g_ok > g_before + 100; });
  stop = true;
  g.join();
  std::printf("cluster, CLUSTER FAILOVER: calls on after %.1f s, %d failed calls during it\n",
              g_back, g_failed.load());
  const std::string key = "{" + prefix + ":" + graceful + "}";
  EXPECT_NE(cluster.Node(g_replica).Command({"HGET", key, "s"}), "");
  rt_close(r0);
  rt_close(r1);
}

#ifdef RATETRACK_TLS
// rediss+cluster://: a cluster whose nodes speak TLS to clients, to each
// other and to their replicas. The map and the redirections name the TLS
// ports; each model's key on its master, exact; a certificate not trusted
// is RT_E_CONFIG saying "certificate", whatever on_error says.
TEST(RedisClusterChangeTest, OverTls) {
  TestCertificates certs;
  ASSERT_TRUE(certs.ok()) << "openssl could not make the test's certificates";
  TestCluster cluster(3, 0, &certs);
  const std::string prefix = "tls";
  std::vector<std::string> models;
  for (int m = 0; m < 3; ++m) models.push_back(ModelOnMaster(prefix, m, 3, "secure"));
  const std::string limits = LimitsOf(models, 40);
  rt_tracker* t = rt_open(Config(cluster.Url("?prefix=" + prefix + "&on_error=closed", 1),
                                 limits).c_str());
  ASSERT_NE(t, nullptr) << rt_last_error();
  std::atomic<int> other{0};
  const std::vector<int> admitted = BookEveryModel({t, t, t}, models, 20, &other);
  EXPECT_EQ(other.load(), 0) << rt_last_error();
  for (int m = 0; m < 3; ++m) {
    EXPECT_EQ(admitted[m], 40) << models[m];
    const int node = cluster.MasterOf(SlotOf(prefix, models[m]));
    ASSERT_GE(node, 0);
    EXPECT_EQ(cluster.Node(node).Command({"EXISTS", "{" + prefix + ":" + models[m] + "}"}), "1");
  }
  EXPECT_EQ(Stats(t)["backend"].get<std::string>().rfind("rediss+cluster://", 0), 0u);
  rt_close(t);
  // Without the CA: the server's certificate is not trusted.
  std::string url = cluster.Url("?prefix=" + prefix + "&timeout_ms=5000");
  url = url.substr(0, url.find("&tls_ca_file="));
  for (const char* policy : {"local", "open", "closed"}) {
    rt_tracker* bad = nullptr;
    EXPECT_EQ(rt_open_ex(Config(url + "&on_error=" + policy, limits).c_str(), &bad), RT_E_CONFIG)
        << policy;
    EXPECT_NE(std::string(rt_last_error()).find("certificate"), std::string::npos)
        << rt_last_error();
  }
}
#endif  // RATETRACK_TLS

}  // namespace
