#include "redis/openssl.h"

#ifdef RATETRACK_TLS

#include <dlfcn.h>

#include <atomic>
#include <string>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "status.h"

namespace ratetrack {

namespace {

constexpr char kLibssl[] = "libssl.so.3";
constexpr char kLibcrypto[] = "libcrypto.so.3";

// What rediss:// says when OpenSSL cannot be had; dlerror's detail follows.
constexpr char kNeedsOpenSsl[] =
    "config key 'backend': rediss:// needs OpenSSL's libssl.so.3 (Debian/Ubuntu: apt-get "
    "install libssl3; Fedora/RHEL: dnf install openssl-libs)";

std::atomic<const char*> libssl_name{kLibssl};
std::atomic<const char*> libcrypto_name{kLibcrypto};

struct Loaded {
  OpenSsl fns;
  absl::Status status;
};

std::string DlError() {
  const char* e = dlerror();
  return e != nullptr ? e : "no detail from dlerror";
}

Loaded Load() {
  Loaded l;
  // Local: OpenSSL's symbols never become the process's (another OpenSSL,
  // or none, for everything else in it). Now: a missing function fails
  // here, not at its first call. The handles are kept for good (the
  // library is never unloaded either, -z nodelete).
  const char* crypto_name = libcrypto_name.load();
  const char* ssl_name = libssl_name.load();
  void* crypto = dlopen(crypto_name, RTLD_NOW | RTLD_LOCAL);
  if (crypto == nullptr) {
    l.status = ConfigError(absl::StrCat(kNeedsOpenSsl, ": ", DlError()));
    return l;
  }
  void* ssl = dlopen(ssl_name, RTLD_NOW | RTLD_LOCAL);
  if (ssl == nullptr) {
    l.status = ConfigError(absl::StrCat(kNeedsOpenSsl, ": ", DlError()));
    return l;
  }
  // Every function, by name (dlsym takes the default version, OPENSSL_3.0.0).
  std::string missing_ssl, missing_crypto;
  auto take = [](void* lib, const char* fn, std::string* missing, auto& slot) {
    void* p = dlsym(lib, fn);
    if (p == nullptr) {
      absl::StrAppend(missing, missing->empty() ? "" : ", ", fn);
      return;
    }
    slot = reinterpret_cast<std::remove_reference_t<decltype(slot)>>(p);
  };
#define RT_TAKE_SSL(name) take(ssl, #name, &missing_ssl, l.fns.name);
#define RT_TAKE_CRYPTO(name) take(crypto, #name, &missing_crypto, l.fns.name);
  RT_OPENSSL_LIBSSL_FUNCTIONS(RT_TAKE_SSL)
  RT_OPENSSL_LIBCRYPTO_FUNCTIONS(RT_TAKE_CRYPTO)
#undef RT_TAKE_SSL
#undef RT_TAKE_CRYPTO
  if (!missing_ssl.empty() || !missing_crypto.empty()) {
    std::string lacks;
    if (!missing_ssl.empty()) absl::StrAppend(&lacks, ssl_name, " lacks ", missing_ssl);
    if (!missing_crypto.empty()) {
      absl::StrAppend(&lacks, lacks.empty() ? "" : "; ", crypto_name, " lacks ", missing_crypto);
    }
    l.status = ConfigError(absl::StrCat(kNeedsOpenSsl, ": ", lacks));
  }
  return l;
}

const Loaded& Get() {
  static const Loaded loaded = Load();  // once, thread safe (C++11 statics)
  return loaded;
}

}  // namespace

absl::Status LoadOpenSsl() { return Get().status; }

const OpenSsl& Ssl() { return Get().fns; }

void SetOpenSslNamesForTest(const char* libssl, const char* libcrypto) {
  libssl_name.store(libssl);
  libcrypto_name.store(libcrypto);
}

}  // namespace ratetrack

#endif  // RATETRACK_TLS
