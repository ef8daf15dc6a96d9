// The Redis suites' harness: redis-server, redis-sentinel (or Valkey's)
// processes of the tests' own on free loopback ports, and what the tests
// share (a configuration, racing processes, stats, waiting for a change).
#ifndef RATETRACK_TESTS_REDIS_SERVERS_H_
#define RATETRACK_TESTS_REDIS_SERVERS_H_

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "ratetrack.h"

namespace ratetrack_test {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

inline int FreePort() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  close(s);
  return ntohs(a.sin_port);
}

// The server binary the suite runs against: $RATETRACK_REDIS_SERVER (e.g.
// valkey-server), else redis-server; its sentinel: $RATETRACK_REDIS_SENTINEL,
// else redis-sentinel.
inline std::string ServerBinary() {
  const char* b = std::getenv("RATETRACK_REDIS_SERVER");
  return b != nullptr && *b != '\0' ? b : "redis-server";
}
inline std::string SentinelBinary() {
  const char* b = std::getenv("RATETRACK_REDIS_SENTINEL");
  return b != nullptr && *b != '\0' ? b : "redis-sentinel";
}

// A redis-server of our own, on loopback, in a directory of its own (a
// replica writes the RDB it receives there, and a server loads what it finds
// there when it starts: never the test's working directory, where another
// test's server, of another version, would find it). `leading`: arguments
// before the options (a configuration file); `binary`: another program (a
// sentinel).
class RedisServer {
 public:
  explicit RedisServer(std::vector<std::string> extra = {}, int port = 0,
                       std::string binary = ServerBinary(),
                       std::vector<std::string> leading = {})
      : port_(port ? port : FreePort()),
        extra_(std::move(extra)),
        binary_(std::move(binary)),
        leading_(std::move(leading)) {
    char dir[] = "/tmp/rt-redis-XXXXXX";
    if (mkdtemp(dir) != nullptr) dir_ = dir;
    // A port found free can be taken by a parallel test before our server
    // binds it: then our server exits, and we try another port.
    for (int attempt = 0; attempt < 5 && !Start() && port == 0; ++attempt) port_ = FreePort();
  }
  ~RedisServer() {
    Kill();
    if (!dir_.empty()) std::system(("rm -rf '" + dir_ + "'").c_str());
  }
  int port() const { return port_; }
  bool Start() {
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<std::string> args = {binary_};
      args.insert(args.end(), leading_.begin(), leading_.end());
      for (const char* a : {"--port", "", "--bind", "127.0.0.1", "--save", "", "--appendonly",
                            "no", "--loglevel", "warning"}) {
        args.push_back(a);
      }
      if (!dir_.empty()) {  // (an --dir among `extra`, later, wins)
        args.push_back("--dir");
        args.push_back(dir_);
      }
      args[leading_.size() + 2] = std::to_string(port_);
      args.insert(args.end(), extra_.begin(), extra_.end());
      for (auto& a : args) {
        if (a == "{port}") a = std::to_string(port_);  // e.g. --tls-port {port}
      }
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execvp(binary_.c_str(), argv.data());
      _exit(127);
    }
    for (int i = 0; i < 200; ++i) {
      redisContext* c = redisConnect("127.0.0.1", port_);
      bool up = c != nullptr && c->err == 0;
      if (c) redisFree(c);
      if (up) {
        // Answered: but is it ours? A server that lost the port race exits.
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (waitpid(pid_, nullptr, WNOHANG) == 0) return true;
        pid_ = -1;
        return false;
      }
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << binary_ << " did not start on port " << port_;
    return false;
  }
  void Kill() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  void Stop() { kill(pid_, SIGSTOP); }
  bool Running() const { return pid_ > 0; }
  void Continue() { kill(pid_, SIGCONT); }
  // A raw command, as a string ("" for nil), for checks.
  std::string Command(const std::vector<std::string>& args,
                      const std::string& password = "") {
    redisContext* c = redisConnect("127.0.0.1", port_);
    if (c == nullptr || c->err) return "connect error";
    if (!password.empty()) freeReplyObject(redisCommand(c, "AUTH %s", password.c_str()));
    std::vector<const char*> p;
    std::vector<size_t> l;
    for (auto& a : args) {
      p.push_back(a.data());
      l.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(redisCommandArgv(c, p.size(), p.data(), l.data()));
    std::string out;
    if (r == nullptr) out = "io error";
    else if (r->type == REDIS_REPLY_INTEGER) out = std::to_string(r->integer);
    else if (r->str != nullptr) out = std::string(r->str, r->len);
    if (r) freeReplyObject(r);
    redisFree(c);
    return out;
  }
  // A test that does not set timeout_ms gets 5 s, which a loaded machine
  // keeps: the library's default (50 ms) is for production, and a call that
  // timed out is decided by on_error, which is not what such a test checks.
  std::string Url(const std::string& query = "", const std::string& cred = "") const {
    std::string q = query;
    if (q.find("timeout_ms=") == std::string::npos) {
      q += (q.empty() ? "?" : "&") + std::string("timeout_ms=5000");
    }
    return "redis://" + cred + "127.0.0.1:" + std::to_string(port_) + "/0" + q;
  }

 private:
  int port_;
  std::vector<std::string> extra_;
  std::string binary_;
  std::vector<std::string> leading_;
  std::string dir_;  // its working directory ("": the test's, if mkdtemp failed)
  pid_t pid_ = -1;
};

inline std::string Config(const std::string& url, const std::string& limits) {
  return R"({"backend": ")" + url + R"(", "builtin_tiers": false, "limits": )" + limits + "}";
}

// `processes` forked processes, each with its own tracker on `cfg`, try
// `attempts` acquires of one request to "a/b": how many were admitted in all
// (a large negative number if any call failed otherwise).
inline int RaceProcesses(const std::string& cfg, int processes, int attempts) {
  int pipes[2];
  if (pipe(pipes) != 0) return -1;
  std::vector<pid_t> kids;
  for (int i = 0; i < processes; ++i) {
    pid_t p = fork();
    if (p == 0) {
      rt_tracker* t = rt_open(cfg.c_str());
      int n = 0;
      for (int j = 0; j < attempts && t != nullptr; ++j) {
        int rc = rt_try_acquire(t, "a/b", 1, nullptr);
        if (rc == RT_OK) ++n;
        else if (rc != RT_LIMITED) n = -100000;
      }
      (void)!write(pipes[1], &n, sizeof n);
      _exit(0);
    }
    kids.push_back(p);
  }
  int total = 0;
  for (size_t i = 0; i < kids.size(); ++i) {
    int n = 0;
    if (read(pipes[0], &n, sizeof n) != static_cast<ssize_t>(sizeof n)) n = -100000;
    total += n;
  }
  for (pid_t p : kids) waitpid(p, nullptr, 0);
  close(pipes[0]);
  close(pipes[1]);
  return total;
}


inline json Stats(rt_tracker* t) {
  char* s = rt_stats_json(t);
  json j = json::parse(s);
  rt_free(s);
  return j;
}

// Polls `done` (no time limit: a failover takes what it takes on a busy
// machine) and returns how long it took.
template <typename Done>
double SecondsUntil(Done done) {
  const auto start = Clock::now();
  while (!done()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A CA, a server certificate for 127.0.0.1 and localhost, a client
// certificate, and a CA that signed none of them, made with openssl(1) in
// a directory of the test's own.
class TestCertificates {
 public:
  TestCertificates() {
    char dir[] = "/tmp/rt-tls-XXXXXX";
    if (mkdtemp(dir) == nullptr) return;
    dir_ = dir;
    const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    const std::string script = absl::StrCat(
        "cd '", dir_, "' && set -e; exec 2>openssl.log; ",
        "openssl req -x509 ", key, " -keyout ca.key -out ca.pem -days 2 -subj /CN=rt-test-ca; ",
        "openssl req -x509 ", key, " -keyout other.key -out other.pem -days 2 -subj /CN=other-ca; ",
        "openssl req ", key, " -keyout server.key -out server.csr -subj /CN=localhost; ",
        "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > server.ext; ",
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial ",
        "-out server.pem -days 2 -extfile server.ext; ",
        "openssl req ", key, " -keyout client.key -out client.csr -subj /CN=rt-client; ",
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial ",
        "-out client.pem -days 2");
    ok_ = std::system(script.c_str()) == 0;
  }
  ~TestCertificates() {
    if (!dir_.empty()) std::system(("rm -rf '" + dir_ + "'").c_str());
  }
  bool ok() const { return ok_; }
  std::string operator[](const std::string& file) const { return dir_ + "/" + file; }
  // redis-server options for a TLS port (and no plain one).
  std::vector<std::string> ServerOptions(bool auth_clients) const {
    return {"--port", "0", "--tls-port", "{port}", "--tls-cert-file", (*this)["server.pem"],
            "--tls-key-file", (*this)["server.key"], "--tls-ca-cert-file", (*this)["ca.pem"],
            "--tls-auth-clients", auth_clients ? "yes" : "no"};
  }

 private:
  std::string dir_;
  bool ok_ = false;
};

}  // namespace ratetrack_test

#endif  // RATETRACK_TESTS_REDIS_SERVERS_H_
