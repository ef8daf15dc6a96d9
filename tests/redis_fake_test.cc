// The Redis client against a server that answers wrongly: a small RESP
// server of its own, in a thread on a loopback port, that passes the
// handshake (or not) and then answers each command with a reply of the
// wrong type or shape, a partial one, a huge one, an error, nothing at all,
// or a closed connection. Every call must come back, within its timeout,
// with the status its on_error policy says (RT_E_BACKEND and a message
// saying what was wrong with on_error=closed), never crash, never hang, and
// never decide from a bad reply; several threads sharing one connection
// (merged calls) included.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "config.h"
#include "gtest/gtest.h"
#include "ratetrack.h"
#include "redis/store.h"
#include "window_set.h"

namespace {

using Clock = std::chrono::steady_clock;

// What the fake server does with a command: sends `bytes`, then keeps the
// connection, closes it, or keeps it without ever answering again.
struct Answer {
  enum After { kKeep, kClose, kSilent };
  std::string bytes;
  After after = kKeep;
};

// The answer to one command (its arguments, as sent).
using Responder = std::function<Answer(const std::vector<std::string>& cmd)>;

// A RESP server on 127.0.0.1, on a free port, in one thread (poll over the
// listening socket and every connection).
class FakeRedis {
 public:
  explicit FakeRedis(Responder responder) : responder_(std::move(responder)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(listen_fd_, 64), 0);
    socklen_t len = sizeof a;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    EXPECT_EQ(pipe(wake_), 0);
    thread_ = std::thread([this] { Loop(); });
  }
  ~FakeRedis() {
    (void)!write(wake_[1], "x", 1);
    thread_.join();
    for (Conn& c : conns_) {
      if (c.fd >= 0) close(c.fd);
    }
    close(listen_fd_);
    close(wake_[0]);
    close(wake_[1]);
  }
  int port() const { return port_; }
  std::string Url(const std::string& query, const std::string& cred = "",
                  const std::string& db = "") const {
    return absl::StrCat("redis://", cred, "127.0.0.1:", port_, db, query);
  }
  void set_responder(Responder r) {
    std::lock_guard<std::mutex> l(mu_);
    responder_ = std::move(r);
  }
  // Connections accepted and closed at once from now on (or not).
  void set_close_on_accept(bool close) { close_on_accept_ = close; }
  int accepted() const { return accepted_.load(); }
  // Script calls seen that merged more than one decision.
  int merged() const { return merged_.load(); }

 private:
  struct Conn {
    int fd;
    std::string in;
    bool silent = false;  // answers nothing any more
  };

  // The next complete command in `in` (removed), or false.
  static bool NextCommand(std::string* in, std::vector<std::string>* cmd) {
    cmd->clear();
    size_t p = 0;
    auto line = [&](long long* n, char lead) {
      if (p >= in->size() || (*in)[p] != lead) return false;
      const size_t end = in->find("\r\n", p);
      if (end == std::string::npos) return false;
      *n = std::atoll(in->c_str() + p + 1);
      p = end + 2;
      return true;
    };
    long long argc = 0;
    if (!line(&argc, '*')) return false;
    for (long long i = 0; i < argc; ++i) {
      long long len = 0;
      if (!line(&len, '$') || p + static_cast<size_t>(len) + 2 > in->size()) return false;
      cmd->push_back(in->substr(p, static_cast<size_t>(len)));
      p += static_cast<size_t>(len) + 2;
    }
    in->erase(0, p);
    return true;
  }

  void Send(int fd, const std::string& bytes) {
    // A client that refuses a huge reply closes its end: the rest is lost.
    for (size_t sent = 0; sent < bytes.size();) {
      const ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<size_t>(n);
    }
  }

  void Loop() {
    for (;;) {
      std::vector<pollfd> fds = {{wake_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
      for (const Conn& c : conns_) fds.push_back({c.fd, POLLIN, 0});
      if (poll(fds.data(), fds.size(), -1) < 0) continue;
      if (fds[0].revents != 0) return;
      if (fds[1].revents != 0) {
        const int fd = accept(listen_fd_, nullptr, nullptr);
        if (fd >= 0) {
          accepted_++;
          // Never stuck on a client that stopped reading.
          timeval tv{5, 0};
          setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
          if (close_on_accept_) {
            close(fd);
          } else {
            conns_.push_back({fd, "", false});
          }
        }
      }
      for (size_t i = 2; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        Conn& c = conns_[i - 2];
        char buf[65536];
        const ssize_t n = recv(c.fd, buf, sizeof buf, 0);
        if (n <= 0) {
          close(c.fd);
          c.fd = -1;
          continue;
        }
        c.in.append(buf, static_cast<size_t>(n));
        std::vector<std::string> cmd;
        while (c.fd >= 0 && !c.silent && NextCommand(&c.in, &cmd)) {
          if ((cmd[0] == "EVALSHA" || cmd[0] == "EVAL") && cmd.size() >= 6 && cmd[5].size() >= 16) {
            merged_++;
          }
          Answer a;
          {
            std::lock_guard<std::mutex> l(mu_);
            a = responder_(cmd);
          }
          Send(c.fd, a.bytes);
          if (a.after == Answer::kClose) {
            close(c.fd);
            c.fd = -1;
          } else if (a.after == Answer::kSilent) {
            c.silent = true;
          }
        }
      }
      conns_.erase(std::remove_if(conns_.begin(), conns_.end(),
                                  [](const Conn& c) { return c.fd < 0; }),
                   conns_.end());
    }
  }

  int listen_fd_ = -1;
  int port_ = 0;
  int wake_[2] = {-1, -1};
  std::mutex mu_;
  Responder responder_;
  std::atomic<bool> close_on_accept_{false};
  std::atomic<int> accepted_{0};
  std::atomic<int> merged_{0};
  std::vector<Conn> conns_;  // the server thread's
  std::thread thread_;
};

const std::string kSha = "0123456789abcdef0123456789abcdef01234567";

// A handshake answered as Redis would (SET NX, GET of the ticket key,
// SCRIPT LOAD, AUTH, SELECT); script calls by `script`.
// An INFO reply: the server's mode, its replication section, cluster_enabled.
std::string Info(const std::string& mode, const std::string& replication,
                 const std::string& cluster) {
  const std::string text = "# Server\r\nredis_version:7.0.15\r\nredis_mode:" + mode +
                           "\r\n\r\n# Replication\r\n" + replication +
                           "\r\n\r\n# Cluster\r\ncluster_enabled:" + cluster + "\r\n";
  return "$" + std::to_string(text.size()) + "\r\n" + text + "\r\n";
}

Responder PassHandshake(std::function<Answer(const std::vector<std::string>&)> script) {
  return [script](const std::vector<std::string>& cmd) -> Answer {
    if (cmd[0] == "SET" || cmd[0] == "AUTH" || cmd[0] == "SELECT") return {"+OK\r\n"};
    if (cmd[0] == "GET") return {"$5\r\n12345\r\n"};
    if (cmd[0] == "INFO") return {Info("standalone", "role:master", "0")};
    if (cmd[0] == "SCRIPT") return {"$40\r\n" + kSha + "\r\n"};
    return script(cmd);
  };
}

// How many decisions a script call carries (merged: the second argument's
// tokens, 16 bytes each).
size_t Decisions(const std::vector<std::string>& cmd) {
  return cmd.size() >= 6 ? 1 + cmd[5].size() / 16 : 1;
}

// A plausible server time (Unix ms).
const char* kNow = ":1767225600000\r\n";

// A script reply of the right length for the call (3 + 2 per further
// decision) whose element `bad` (0-based; -1: none) is `element` and
// whose others are integers.
std::string Array(const std::vector<std::string>& cmd, int bad, const std::string& element) {
  const size_t n = 3 + 2 * (Decisions(cmd) - 1);
  std::string out = absl::StrCat("*", n, "\r\n");
  for (size_t e = 0; e < n; ++e) {
    if (static_cast<int>(e) == bad) out += element;
    else out += e == 2 ? kNow : ":0\r\n";
  }
  return out;
}

std::string Config(const std::string& url,
                   const std::string& limits = R"({"a/b": {"rpm": 1000}})") {
  return R"({"backend": ")" + url + R"(", "builtin_tiers": false, "limits": )" + limits + "}";
}

// The same answer to every call.
std::function<Answer(const std::vector<std::string>&)> Always(std::string bytes,
                                                              Answer::After after = Answer::kKeep) {
  return [bytes, after](const std::vector<std::string>&) { return Answer{bytes, after}; };
}

// A script reply of the right length for the call with element `bad`
// (0-based) replaced.
std::function<Answer(const std::vector<std::string>&)> WithElement(int bad, std::string element) {
  return [bad, element](const std::vector<std::string>& c) {
    return Answer{Array(c, bad, element)};
  };
}

std::string Bulk(const std::string& s) { return absl::StrCat("$", s.size(), "\r\n", s, "\r\n"); }

struct BadReply {
  const char* name;
  std::function<Answer(const std::vector<std::string>&)> answer;
  const char* message;  // in rt_last_error() with on_error=closed
};

// Every wrong shape a script call can be answered with.
std::vector<BadReply> BadScriptReplies() {
  const std::string huge = Bulk(std::string(2 << 20, 'x'));
  std::string deep;
  for (int i = 0; i < 9; ++i) deep += "*1\r\n";
  deep += ":1\r\n";
  std::string many = "*1000\r\n";
  for (int i = 0; i < 1000; ++i) many += Bulk(std::string(4000, 'y'));
  const std::string now = kNow;
  return {
      {"a string for the code", WithElement(0, "$1\r\n0\r\n"),
       "reply element 1 of 3 is a string, expected an integer"},
      {"a string for the time", WithElement(2, Bulk("1767225600000")),
       "reply element 3 of 3 is a string, expected an integer"},
      {"nil for the wait", WithElement(1, "$-1\r\n"), "element 2 of 3 is nil, expected an integer"},
      {"a status for the wait", WithElement(1, "+OK\r\n"),
       "element 2 of 3 is a status, expected an integer"},
      {"an array for the code", WithElement(0, "*1\r\n:0\r\n"),
       "element 1 of 3 is an array, expected an integer"},
      {"an unknown code", WithElement(0, ":7\r\n"),
       "element 1 of 3 is 7, expected a decision's code"},
      {"a negative wait", WithElement(1, ":-5\r\n"), "element 2 of 3 is -5, expected a wait"},
      {"a time of 0", WithElement(2, ":0\r\n"), "element 3 of 3 is 0, expected the server's time"},
      {"too few elements", Always("*2\r\n:0\r\n:0\r\n"), "an array of 2 elements, expected 3"},
      {"too many elements", Always("*4\r\n:0\r\n:0\r\n" + now + ":0\r\n"),
       "an array of 4 elements, expected 3"},
      {"an empty array", Always("*0\r\n"), "an array of 0 elements, expected 3"},
      {"a conflict without the limits", Always("*4\r\n:-2\r\n:0\r\n" + now + ":5\r\n"),
       "element 4 of 4 is an integer, expected a string"},
      {"nil", Always("$-1\r\n"), "the reply is nil"},
      {"a nil array", Always("*-1\r\n"), "the reply is nil"},
      {"a string", Always("$2\r\nok\r\n"), "the reply is a string"},
      {"a status", Always("+OK\r\n"), "the reply is a status"},
      {"a negative integer", Always(":-7\r\n"), "the integer -7"},
      {"arrays nested deeply", Always(deep), "arrays nested more than one deep"},
      {"an array claiming a billion elements", Always("*1000000000\r\n"),
       "an array of more than 1,024 elements (1000000000 elements)"},
      {"an array claiming more than an int", Always("*99999999999\r\n"),
       "Multi-bulk length out of range"},
      {"a huge bulk string", Always(huge), "refused a reply larger than 1 MiB"},
      {"a huge bulk string in an array", WithElement(0, huge), "refused a reply larger than 1 MiB"},
      {"many big strings in an array", Always(many), "refused a reply larger than 1 MiB"},
      {"a bulk string longer than it claims, then silence",
       Always("$99999999999\r\nabc", Answer::kSilent), "timed out"},
      {"garbage", Always("hello\r\n"), "Protocol error"},
      {"a bad integer", Always(":12x\r\n"), "Bad integer value"},
      {"a script error", Always("-ERR Error running script: boom\r\n"),
       "ERR Error running script: boom"},
      {"a refusal while loading", Always("-LOADING Redis is loading the dataset in memory\r\n"),
       "LOADING"},
      {"busy", Always("-BUSY Redis is busy running a script.\r\n"), "BUSY"},
      {"a failover in progress", Always("-MASTERDOWN Link with MASTER is down\r\n"),
       "MASTERDOWN"},
      {"NOSCRIPT, then NOSCRIPT to EVAL too", Always("-NOSCRIPT No matching script.\r\n"),
       "NOSCRIPT"},
      {"NOSCRIPT, then a bad reply to EVAL",
       [](const auto& c) {
         return Answer{c[0] == "EVALSHA" ? "-NOSCRIPT No matching script.\r\n" : "$-1\r\n"};
       },
       "EVAL (acquire): the reply is nil"},
      {"half a reply, then the connection closed", Always("*3\r\n:0\r\n:", Answer::kClose),
       "closed the connection"},
      {"half a reply, then silence", Always("*3\r\n:0\r\n", Answer::kSilent), "timed out"},
      {"silence", Always("", Answer::kSilent), "timed out"},
      {"the connection closed", Always("", Answer::kClose), "closed the connection"},
  };
}

// Each wrong reply to a script call, under each policy: on_error=closed
// refuses with RT_E_BACKEND and says what was wrong; open admits; local
// decides in this process. Nothing crashes, nothing waits past the timeout
// (a short one: silence must end by it), nothing is decided from the reply.
TEST(RedisFakeTest, EveryBadScriptReplyIsAnOutageNeverACrash) {
  FakeRedis fake(PassHandshake([](const auto&) { return Answer{":1\r\n"}; }));
  for (const BadReply& bad : BadScriptReplies()) {
    SCOPED_TRACE(bad.name);
    fake.set_responder(PassHandshake(bad.answer));
    for (const char* policy : {"closed", "open", "local"}) {
      SCOPED_TRACE(policy);
      rt_tracker* t = rt_open(
          Config(fake.Url(absl::StrCat("?timeout_ms=300&on_error=", policy))).c_str());
      ASSERT_NE(t, nullptr) << rt_last_error();
      const int rc = rt_try_acquire(t, "a/b", 1, nullptr);
      const std::string err = rt_last_error();
      if (std::string(policy) == "closed") {
        EXPECT_EQ(rc, RT_E_BACKEND);
        EXPECT_NE(err.find("127.0.0.1:" + std::to_string(fake.port())), std::string::npos) << err;
        EXPECT_NE(err.find(bad.message), std::string::npos) << err;
      } else {
        EXPECT_EQ(rc, RT_OK) << err;  // open admits; local has room
        // The first failure's message, even though the call succeeded.
        EXPECT_NE(err.find(bad.message), std::string::npos) << err;
      }
      // Failing fast now (backoff), by the policy again.
      EXPECT_EQ(rt_try_acquire(t, "a/b", 1, nullptr),
                std::string(policy) == "closed" ? RT_E_BACKEND : RT_OK);
      rt_close(t);
    }
  }
}

// The other calls (record, stats, reset, a 429, provider headers, settle)
// check their replies the same way.
TEST(RedisFakeTest, EveryOpChecksItsReply) {
  // Good answers, to get a grant first: an acquire admitted.
  FakeRedis fake(PassHandshake([](const auto&) { return Answer{kNow}; }));
  rt_tracker* t = rt_open(Config(fake.Url("?timeout_ms=300&on_error=closed")).c_str());
  ASSERT_NE(t, nullptr) << rt_last_error();
  uint64_t grant = 0;
  ASSERT_EQ(rt_try_acquire_grant(t, "a/b", 10, nullptr, &grant), RT_OK) << rt_last_error();
  const std::vector<std::pair<const char*, std::string>> shapes = {
      {"a string for the time", std::string("*3\r\n:0\r\n:0\r\n$2\r\nxx\r\n")},
      {"too few elements", "*2\r\n:0\r\n:0\r\n"},
      {"an admission's time alone", kNow},  // what only acquire, check and record get
      {"a limited code", std::string("*3\r\n:1\r\n:5\r\n") + kNow},
  };
  for (const auto& [name, bytes] : shapes) {
    SCOPED_TRACE(name);
    const std::string reply = bytes;
    fake.set_responder(PassHandshake([reply](const auto&) { return Answer{reply}; }));
    auto fresh = [&] {
      rt_close(t);
      t = rt_open(Config(fake.Url("?timeout_ms=300&on_error=closed")).c_str());
      ASSERT_NE(t, nullptr);
    };
    const char* hnames[] = {"x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"};
    const char* hvalues[] = {"5", "10s"};
    fresh();
    EXPECT_EQ(rt_report_limited(t, "a/b", "7"), RT_E_BACKEND);
    EXPECT_NE(std::string(rt_last_error()).find("(block)"), std::string::npos) << rt_last_error();
    fresh();
    EXPECT_EQ(rt_observe_headers(t, "a/b", hnames, hvalues, 2), RT_E_BACKEND);
    EXPECT_NE(std::string(rt_last_error()).find("(observe)"), std::string::npos) << rt_last_error();
    fresh();
    EXPECT_EQ(rt_reset(t), RT_OK);  // no model yet
    // A check takes an admission or a refusal; then the reset does not.
    const int check = rt_can_make(t, "a/b", 1);
    if (std::string(name) == "an admission's time alone") {
      EXPECT_EQ(check, 1);  // yes
    } else if (std::string(name) == "a limited code") {
      EXPECT_EQ(check, 0);  // no
    } else {
      EXPECT_EQ(check, RT_E_BACKEND);
      EXPECT_NE(std::string(rt_last_error()).find("(check)"), std::string::npos) << rt_last_error();
    }
    EXPECT_EQ(rt_reset(t), RT_E_BACKEND);  // the reply, or failing fast (backoff)
    fresh();
    EXPECT_EQ(rt_settle(t, "a/b", grant, 10, 5), RT_E_BACKEND);
    fresh();
    // Stats fall back to this process's counters; the failure is in the state.
    char* s = rt_stats_json(t);
    ASSERT_NE(s, nullptr);
    EXPECT_NE(std::string(s).find("\"connected\":false"), std::string::npos) << s;
    EXPECT_NE(std::string(s).find("(stats)"), std::string::npos) << s;
    rt_free(s);
  }
  rt_close(t);
}

// Connecting checks every reply too: the ticket key's SET and GET, SCRIPT
// LOAD, AUTH, SELECT; each wrong, or no answer, or a closed connection.
TEST(RedisFakeTest, EveryBadHandshakeReplyIsAnOutageNeverACrash) {
  struct Case {
    const char* name;
    Responder responder;
    const char* cred;
    const char* db;
    const char* message;
  };
  auto but = [](const char* command, Answer a) -> Responder {
    return [command, a](const std::vector<std::string>& cmd) -> Answer {
      if (cmd[0] == command) return a;
      return PassHandshake([](const auto&) { return Answer{kNow}; })(cmd);
    };
  };
  const std::vector<Case> cases = {
      {"SET answered with an integer", but("SET", {":1\r\n"}), "", "",
       "SET: the reply is an integer (1), expected OK or nil"},
      {"SET answered with an array", but("SET", {"*1\r\n+OK\r\n"}), "", "",
       "SET: the reply is an array of 1"},
      {"GET answered with nil", but("GET", {"$-1\r\n"}), "", "", "GET: the reply is nil"},
      {"GET answered with text", but("GET", {Bulk("abc")}), "", "", "GET: the reply is a string"},
      {"GET answered with 0", but("GET", {Bulk("0")}), "", "", "GET: the reply is a string"},
      {"GET answered with an integer", but("GET", {":5\r\n"}), "", "",
       "GET: the reply is an integer (5)"},
      {"SCRIPT LOAD answered with an integer", but("SCRIPT", {":5\r\n"}), "", "",
       "SCRIPT LOAD: the reply is an integer (5), expected a SHA1"},
      {"SCRIPT LOAD answered with a short string", but("SCRIPT", {Bulk("abc")}), "", "",
       "SCRIPT LOAD: the reply is a string, expected a SHA1"},
      {"SCRIPT LOAD answered with nil", but("SCRIPT", {"$-1\r\n"}), "", "",
       "SCRIPT LOAD: the reply is nil"},
      {"AUTH answered with a string", but("AUTH", {Bulk("OK")}), "pw@", "",
       "AUTH: the reply is a string, expected OK"},
      {"AUTH answered with a status not OK", but("AUTH", {"+QUEUED\r\n"}), "pw@", "",
       "AUTH: the reply is a status, expected OK"},
      {"SELECT answered with an integer", but("SELECT", {":0\r\n"}), "", "/3",
       "SELECT: the reply is an integer (0)"},
      {"SCRIPT LOAD answered by a huge string", but("SCRIPT", {Bulk(std::string(3000000, 'a'))}),
       "", "", "SCRIPT LOAD: refused a reply larger than 1 MiB"},
      {"every command answered with garbage", Always("?\r\n"), "", "", "Protocol error"},
      {"every command answered with silence", Always("", Answer::kSilent), "", "", "timed out"},
      {"every command answered by closing", Always("", Answer::kClose), "", "",
       "closed the connection"},
      {"half a reply to GET, then closed", but("GET", {"$5\r\n12", Answer::kClose}), "", "",
       "closed the connection"},
  };
  FakeRedis fake(cases[0].responder);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    fake.set_responder(c.responder);
    rt_tracker* t =
        rt_open(Config(fake.Url("?timeout_ms=300&on_error=closed", c.cred, c.db)).c_str());
    ASSERT_NE(t, nullptr) << rt_last_error();
    EXPECT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_E_BACKEND);
    const std::string err = rt_last_error();
    EXPECT_NE(err.find("127.0.0.1:" + std::to_string(fake.port())), std::string::npos) << err;
    EXPECT_NE(err.find(c.message), std::string::npos) << err;
    EXPECT_EQ(err.find("pw"), std::string::npos) << err;  // never the password
    rt_close(t);
  }
  // Connections closed as soon as they are accepted.
  fake.set_close_on_accept(true);
  rt_tracker* t = rt_open(Config(fake.Url("?timeout_ms=300&on_error=closed")).c_str());
  EXPECT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_E_BACKEND);
  EXPECT_NE(std::string(rt_last_error()).find("127.0.0.1:"), std::string::npos) << rt_last_error();
  rt_close(t);
}

// A server the URL cannot use, as its replies show it, at the handshake
// (rt_open says so) or later (every call says so): RT_E_CONFIG with a clear
// message under every on_error policy, never a local decision; and once the
// server is right again, calls go on by themselves.
TEST(RedisFakeTest, AMisconfigurationIsAnErrorWhateverOnErrorSays) {
  struct Case {
    const char* name;
    Responder responder;
    const char* cred;
    const char* message;
  };
  auto but = [](const char* command, Answer a) -> Responder {
    return [command, a](const std::vector<std::string>& cmd) -> Answer {
      if (cmd[0] == command) return a;
      return PassHandshake([](const auto&) { return Answer{kNow}; })(cmd);
    };
  };
  const std::vector<Case> at_open = {
      {"a wrong password", but("AUTH", {"-WRONGPASS invalid username-password pair\r\n"}), "pw@",
       "refuses these credentials"},
      {"a password for a server without one",
       but("AUTH", {"-ERR AUTH <password> called without any password configured for the "
                    "default user. Are you sure your configuration is correct?\r\n"}),
       "pw@", "refuses these credentials"},
      {"no password for a server that wants one", but("INFO", {"-NOAUTH Authentication required.\r\n"}),
       "", "wants a password"},
      {"a replica",
       but("INFO", {Info("standalone", "role:slave\r\nmaster_host:10.0.0.12\r\nmaster_port:6379", "0")}),
       "", "is a replica of 10.0.0.12:6379"},
      {"a sentinel", but("INFO", {Info("sentinel", "", "0")}), "", "is a Redis Sentinel"},
      {"a cluster node", but("INFO", {Info("cluster", "role:master", "1")}), "",
       "Redis Cluster node"},
      {"INFO refused, then SET unknown: a sentinel",
       [](const std::vector<std::string>& cmd) -> Answer {
         if (cmd[0] == "INFO") return {"-NOPERM no INFO for you\r\n"};
         if (cmd[0] == "SET") return {"-ERR unknown command 'SET', with args beginning with: \r\n"};
         return PassHandshake([](const auto&) { return Answer{kNow}; })(cmd);
       },
       "", "does not know the command"},
      {"a server that knows no SET", but("SET", {"-ERR unknown command 'SET', with args beginning with: \r\n"}),
       "", "does not know the command"},
  };
  FakeRedis fake(at_open[0].responder);
  for (const Case& c : at_open) {
    SCOPED_TRACE(c.name);
    fake.set_responder(c.responder);
    for (const char* policy : {"closed", "open", "local"}) {
      SCOPED_TRACE(policy);
      rt_tracker* t = nullptr;
      const int rc = rt_open_ex(
          Config(fake.Url(absl::StrCat("?timeout_ms=2000&on_error=", policy), c.cred)).c_str(),
          &t);
      EXPECT_EQ(rc, RT_E_CONFIG);
      EXPECT_EQ(t, nullptr);
      const std::string err = rt_last_error();
      EXPECT_NE(err.find("127.0.0.1:" + std::to_string(fake.port())), std::string::npos) << err;
      EXPECT_NE(err.find(c.message), std::string::npos) << err;
      EXPECT_NE(err.find("not an outage"), std::string::npos) << err;
      EXPECT_EQ(err.find("pw"), std::string::npos) << err;
      rt_close(t);
    }
  }
  // Shown later, by a script call's reply (a failover made the master a
  // replica; the cluster moved a slot): every call fails until it is fixed.
  const std::vector<Case> later = {
      {"READONLY", Always("-READONLY You can't write against a read only replica.\r\n"), "",
       "read-only replica"},
      {"MOVED", Always("-MOVED 3999 127.0.0.1:7001\r\n"), "", "Redis Cluster node"},
      {"ASK", Always("-ASK 3999 127.0.0.1:7001\r\n"), "", "Redis Cluster node"},
      {"NOPERM", Always("-NOPERM this user has no permissions to run the 'evalsha' command\r\n"),
       "", "ACL"},
  };
  for (const Case& c : later) {
    SCOPED_TRACE(c.name);
    for (const char* policy : {"closed", "open", "local"}) {
      SCOPED_TRACE(policy);
      fake.set_responder(PassHandshake([](const auto&) { return Answer{kNow}; }));
      rt_tracker* t =
          rt_open(Config(fake.Url(absl::StrCat("?timeout_ms=2000&on_error=", policy))).c_str());
      ASSERT_NE(t, nullptr) << rt_last_error();
      EXPECT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_OK);
      fake.set_responder(PassHandshake(c.responder));
      for (int i = 0; i < 3; ++i) {  // the first call, and those within the backoff
        EXPECT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_E_CONFIG);
        const std::string err = rt_last_error();
        EXPECT_NE(err.find(c.message), std::string::npos) << err;
        EXPECT_NE(err.find("not an outage"), std::string::npos) << err;
      }
      EXPECT_EQ(rt_record(t, "a/b", 1), RT_E_CONFIG);
      // Fixed: the next connection shows a master again, and calls go on
      // (after the backoff: at most 2 s; polled without a time limit).
      fake.set_responder(PassHandshake([](const auto&) { return Answer{kNow}; }));
      int rc = RT_E_CONFIG;
      while ((rc = rt_try_acquire(t, "a/b", 1, nullptr)) == RT_E_CONFIG) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      EXPECT_EQ(rc, RT_OK) << rt_last_error();
      rt_close(t);
    }
  }
}

// A merged call (several decisions on one model in one script call, as a
// leader sends queued ones) answered with an array of the right length
// whose elements have the wrong types: the case that crashed. Through the
// store (deterministically merged), then through the C API with threads
// sharing one connection.
TEST(RedisFakeTest, AMergedCallWithBadElementsFailsEveryDecision) {
  FakeRedis fake(PassHandshake([](const auto& c) { return Answer{Array(c, 3, "$1\r\n0\r\n")}; }));
  auto url = ratetrack::ParseRedisUrl(fake.Url("?timeout_ms=2000&connections=1&on_error=closed"));
  ASSERT_TRUE(url.ok()) << url.status();
  ratetrack::RedisStore store(*url);
  auto config = ratetrack::ParseConfig(
      R"({"builtin_tiers": false, "limits": {"a/b": {"rpm": 5, "tpm": 1000}}})");
  ASSERT_TRUE(config.ok()) << config.status();
  auto effective = ratetrack::EffectiveConfig::From(*config);
  ASSERT_TRUE(effective.ok()) << effective.status();
  ratetrack::WindowSet windows;
  windows.SetLimits(effective->Resolve("a/b"), 1);
  const ratetrack::RemoteSpec spec = ratetrack::RemoteSpec::From(windows);
  using Op = ratetrack::RedisStore::Op;
  struct Shape {
    const char* name;
    std::function<Answer(const std::vector<std::string>&)> answer;
    const char* message;
  };
  const std::vector<Shape> shapes = {
      {"every element a string",
       [](const auto& c) {
         std::string out = absl::StrCat("*", 3 + 2 * (Decisions(c) - 1), "\r\n");
         for (size_t e = 0; e < 3 + 2 * (Decisions(c) - 1); ++e) out += "$1\r\n0\r\n";
         return Answer{out};
       },
       "element 1 of 11 is a string"},
      {"a further decision's code a string", WithElement(5, "$1\r\n0\r\n"),
       "element 6 of 11 is a string"},
      {"a further decision's wait nil", WithElement(10, "$-1\r\n"), "element 11 of 11 is nil"},
      {"a further decision's code unknown", WithElement(3, ":-2\r\n"), "element 4 of 11 is -2"},
      {"one decision's answer short", Always(std::string("*3\r\n:0\r\n:0\r\n") + kNow),
       "an array of 3 elements, expected 11"},
  };
  for (const Shape& shape : shapes) {
    SCOPED_TRACE(shape.name);
    fake.set_responder(PassHandshake(shape.answer));
    for (Op op : {Op::kAcquire, Op::kCheck, Op::kRecord}) {
      // Five decisions: one script call carrying 5 (the first one's
      // arguments, the others' tokens).
      std::vector<ratetrack::Cost> costs(5, ratetrack::Cost{10, 0});
      // A failure backs off: wait until connecting is allowed again.
      std::vector<absl::StatusOr<ratetrack::RedisStore::Reply>> out;
      for (;;) {
        out = store.RunMergedForTest(op, "a/b", spec, costs);
        ASSERT_EQ(out.size(), costs.size());
        const bool backing_off =
            !out[0].ok() && out[0].status().message().find("retrying in") != std::string::npos;
        if (!backing_off) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      for (const auto& r : out) {
        ASSERT_FALSE(r.ok());
        EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
        EXPECT_NE(r.status().message().find(shape.message), std::string::npos) << r.status();
        EXPECT_NE(r.status().message().find("the connection is dropped"), std::string::npos)
            << r.status();
      }
    }
  }
  EXPECT_GT(fake.merged(), 0);

  // Eight threads on one connection: calls queue while the first is on the
  // wire (held by the server) and are merged; every answer is wrong.
  std::atomic<bool> release{false};
  std::atomic<int> calls{0};
  fake.set_responder(PassHandshake([&](const auto& c) {
    if (calls++ == 0) {
      while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::string out = absl::StrCat("*", 3 + 2 * (Decisions(c) - 1), "\r\n");
    for (size_t e = 0; e < 3 + 2 * (Decisions(c) - 1); ++e) out += "$1\r\n7\r\n";
    return Answer{out};
  }));
  const int merged_before = fake.merged();
  for (const char* policy : {"closed", "open", "local"}) {
    SCOPED_TRACE(policy);
    release = false;
    calls = 0;
    rt_tracker* t = rt_open(
        Config(fake.Url(absl::StrCat("?timeout_ms=5000&connections=1&on_error=", policy))).c_str());
    ASSERT_NE(t, nullptr) << rt_last_error();
    std::atomic<int> started{0}, backend{0}, ok{0}, other{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i) {
      threads.emplace_back([&, i] {
        started++;
        int rc = RT_OK;
        if (i % 2 == 0) {
          rc = rt_try_acquire(t, "a/b", 5, nullptr);
        } else {
          const int yes = rt_can_make(t, "a/b", 5);  // 1: yes, 0: no
          rc = yes == 1 ? RT_OK : yes == 0 ? RT_LIMITED : yes;
        }
        (rc == RT_E_BACKEND ? backend : rc == RT_OK ? ok : other)++;
      });
    }
    while (started.load() < 8) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // queued, most likely
    release = true;
    for (auto& th : threads) th.join();
    if (std::string(policy) == "closed") {
      EXPECT_EQ(backend.load(), 8);
    } else {
      EXPECT_EQ(ok.load(), 8);  // open admits; local has room for 8
    }
    EXPECT_EQ(other.load(), 0);
    rt_close(t);
  }
  // Not asserted (it depends on the threads' timing), but expected.
  std::printf("merged calls seen from the threads: %d\n", fake.merged() - merged_before);
}

// A frozen call ends by the timeout, and the tracker comes back to a server
// that answers well again (once its backoff has passed).
TEST(RedisFakeTest, AfterBadRepliesAGoodServerIsUsedAgain) {
  FakeRedis fake(PassHandshake([](const auto& c) { return Answer{Array(c, 1, "$1\r\n5\r\n")}; }));
  rt_tracker* t = rt_open(Config(fake.Url("?timeout_ms=300&on_error=closed")).c_str());
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(rt_try_acquire(t, "a/b", 1, nullptr), RT_E_BACKEND);
  const int accepted = fake.accepted();
  fake.set_responder(PassHandshake([](const auto&) { return Answer{kNow}; }));
  int rc = RT_E_BACKEND;
  // The backoff (50 ms after one failure) passes; then the call connects.
  for (int i = 0; i < 1000 && rc != RT_OK; ++i) {
    rc = rt_try_acquire(t, "a/b", 1, nullptr);
    if (rc != RT_OK) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(rc, RT_OK) << rt_last_error();
  EXPECT_GT(fake.accepted(), accepted) << "the bad connection was dropped, a new one made";
  rt_close(t);
}

}  // namespace
