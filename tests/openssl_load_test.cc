// OpenSSL is loaded at run time (src/redis/openssl.cc): on the first
// rediss:// only, and when it cannot be loaded, rediss:// is RT_E_CONFIG
// saying what to install, whatever on_error says.
//
// The loader runs once per process, so every case runs in a process of its
// own (a death test's fork; this process never touches OpenSSL), and names
// the libraries to load through the test-only SetOpenSslNamesForTest
// (a soname that does not exist: OpenSSL "missing" on a machine that has it).
#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include <gtest/gtest.h>

#include "config.h"
#include "ratetrack.h"
#include "redis/openssl.h"
#include "redis/tls.h"
#include "redis/url.h"
#include "status.h"
#include "tracker.h"

namespace ratetrack {
namespace {

constexpr char kAdvice[] =
    "config key 'backend': rediss:// needs OpenSSL's libssl.so.3 (Debian/Ubuntu: apt-get "
    "install libssl3";

// In the child: a failed check says what and exits 1 (the death test shows
// the child's stderr).
#define CHILD_CHECK(cond, what)                                              \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #cond,     \
                   std::string(what).c_str());                               \
      _exit(1);                                                              \
    }                                                                        \
  } while (0)

bool Loaded(const char* soname) {
  void* h = dlopen(soname, RTLD_NOW | RTLD_NOLOAD);
  if (h != nullptr) dlclose(h);  // NOLOAD took a reference: given back
  return h != nullptr;
}

std::string TrackerConfig(const std::string& url) {
  return R"({"backend": ")" + url +
         R"(", "builtin_tiers": false, "limits": {"a/b": {"rpm": 2}}})";
}

// Where libssl cannot be had: TlsContext::Create and a tracker under every
// policy are RT_E_CONFIG with the advice and dlerror's detail (`detail`),
// each time (the failure is kept, not retried).
void ExpectNotLoadable(const std::string& detail) {
  auto url = ParseRedisUrl("rediss://127.0.0.1:1/0?tls_insecure=yes");
  CHILD_CHECK(url.ok(), url.status().ToString());
  for (int i = 0; i < 2; ++i) {
    auto tls = TlsContext::Create(*url);
    CHILD_CHECK(!tls.ok(), "TlsContext::Create succeeded");
    CHILD_CHECK(StatusToCode(tls.status()) == RT_E_CONFIG, tls.status().ToString());
    const std::string msg(tls.status().message());
    CHILD_CHECK(msg.rfind(kAdvice, 0) == 0, msg);
    CHILD_CHECK(msg.find(detail) != std::string::npos, msg);
  }
  for (const char* policy : {"closed", "open", "local"}) {
    auto config = ParseConfig(
        TrackerConfig(std::string("rediss://127.0.0.1:1/0?timeout_ms=100&on_error=") + policy)
            .c_str());
    CHILD_CHECK(config.ok(), config.status().ToString());
    auto t = Tracker::Create(*config, Clock::Monotonic());
    CHILD_CHECK(!t.ok(), std::string("a tracker with on_error=") + policy);
    CHILD_CHECK(StatusToCode(t.status()) == RT_E_CONFIG, t.status().ToString());
    CHILD_CHECK(std::string(t.status().message()).find(kAdvice) != std::string::npos,
                t.status().ToString());
  }
  // Plain redis:// is untouched.
  auto plain = ParseRedisUrl("redis://127.0.0.1:1/0");
  CHILD_CHECK(plain.ok() && TlsContext::Create(*plain).ok(), "redis:// failed");
}

// Not at load, not for redis://: on the first rediss:// only.
void FirstRedissOnly() {
  CHILD_CHECK(!Loaded("libssl.so.3"), "libssl.so.3 loaded before any TLS use");
  // Parsing a rediss:// URL, a redis:// tracker: still not loaded.
  auto url = ParseRedisUrl("rediss://127.0.0.1:1/0?tls_insecure=yes");
  CHILD_CHECK(url.ok(), url.status().ToString());
  auto plain = ParseRedisUrl("redis://127.0.0.1:1/0");
  CHILD_CHECK(plain.ok() && TlsContext::Create(*plain).ok(), "redis://");
  CHILD_CHECK(!Loaded("libssl.so.3"), "libssl.so.3 loaded by redis://");
  auto tls = TlsContext::Create(*url);
  CHILD_CHECK(tls.ok(), tls.status().ToString());
  CHILD_CHECK(*tls != nullptr, "no TLS context");
  CHILD_CHECK(Loaded("libssl.so.3") && Loaded("libcrypto.so.3"), "OpenSSL not loaded");
  _exit(0);
}

TEST(OpenSslLoadTest, LoadedOnTheFirstRedissOnly) {
  EXPECT_EXIT(FirstRedissOnly(), ::testing::ExitedWithCode(0), "");
}

void NoLibsslChild() {
  SetOpenSslNamesForTest("libssl-ratetrack-test-missing.so.3", "libcrypto.so.3");
  ExpectNotLoadable("libssl-ratetrack-test-missing.so.3");
  _exit(0);
}

TEST(OpenSslLoadTest, NoLibssl) {
  EXPECT_EXIT(NoLibsslChild(), ::testing::ExitedWithCode(0), "");
}

void NoLibcryptoChild() {
  SetOpenSslNamesForTest("libssl.so.3", "libcrypto-ratetrack-test-missing.so.3");
  ExpectNotLoadable("libcrypto-ratetrack-test-missing.so.3");
  CHILD_CHECK(!Loaded("libssl.so.3"), "libssl.so.3 loaded without its libcrypto");
  _exit(0);
}

TEST(OpenSslLoadTest, NoLibcrypto) {
  EXPECT_EXIT(NoLibcryptoChild(), ::testing::ExitedWithCode(0), "");
}

// A library that is there but is not libssl (libcrypto in its place): every
// function it lacks is named.
void NotLibsslChild() {
  SetOpenSslNamesForTest("libcrypto.so.3", "libcrypto.so.3");
  ExpectNotLoadable("libcrypto.so.3 lacks TLS_client_method, SSL_CTX_new, ");
  _exit(0);
}

TEST(OpenSslLoadTest, NotLibssl) {
  EXPECT_EXIT(NotLibsslChild(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace ratetrack
