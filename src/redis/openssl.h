// OpenSSL, loaded at run time. The library never links libssl or
// libcrypto (its only NEEDED entries stay glibc's, the portable library's
// promise): the first TLS use dlopen()s OpenSSL 3's libssl.so.3 and
// libcrypto.so.3 and takes every function tls.cc and transport.cc call
// from them, through dlsym, into one table. OpenSSL's headers are used for
// the types, the constants and the functions' signatures only.
//
// OpenSSL 3 only: every function here has the same signature in 1.1.1, but
// the code is built and tested against 3 (and 1.1.1 is past its end of
// life), so libssl.so.1.1 is not tried.
//
// The header's macros are not functions of the library: SSL_CTX_set_mode,
// SSL_CTX_set_min_proto_version (SSL_CTX_ctrl), SSL_set_tlsext_host_name
// (SSL_ctrl) and SSL_set_app_data / SSL_get_app_data (SSL_set_ex_data /
// SSL_get_ex_data, index 0) are written here as what they expand to.
#ifndef RATETRACK_SRC_REDIS_OPENSSL_H_
#define RATETRACK_SRC_REDIS_OPENSSL_H_

#ifdef RATETRACK_TLS

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/status/status.h"

namespace ratetrack {

// X(name): every OpenSSL function the library calls, by the library that
// exports it.
#define RT_OPENSSL_LIBSSL_FUNCTIONS(X) \
  X(TLS_client_method)                 \
  X(SSL_CTX_new)                       \
  X(SSL_CTX_free)                      \
  X(SSL_CTX_ctrl)                      \
  X(SSL_CTX_set_verify)                \
  X(SSL_CTX_load_verify_locations)     \
  X(SSL_CTX_set_default_verify_paths)  \
  X(SSL_CTX_set_client_cert_cb)        \
  X(SSL_CTX_use_certificate_chain_file) \
  X(SSL_CTX_use_PrivateKey_file)       \
  X(SSL_CTX_check_private_key)         \
  X(SSL_new)                           \
  X(SSL_free)                          \
  X(SSL_ctrl)                          \
  X(SSL_set_ex_data)                   \
  X(SSL_get_ex_data)                   \
  X(SSL_set_fd)                        \
  X(SSL_get0_param)                    \
  X(SSL_connect)                       \
  X(SSL_get_verify_result)             \
  X(SSL_get_error)                     \
  X(SSL_write)                         \
  X(SSL_read)
#define RT_OPENSSL_LIBCRYPTO_FUNCTIONS(X) \
  X(ERR_get_error)                        \
  X(ERR_peek_error)                       \
  X(ERR_clear_error)                      \
  X(ERR_error_string_n)                   \
  X(X509_VERIFY_PARAM_set1_host)          \
  X(X509_VERIFY_PARAM_set1_ip_asc)        \
  X(X509_verify_cert_error_string)

// The functions, typed by OpenSSL's own declarations (a name that the
// headers make a macro does not compile here).
struct OpenSsl {
#define RT_OPENSSL_MEMBER(name) decltype(&::name) name = nullptr;
  RT_OPENSSL_LIBSSL_FUNCTIONS(RT_OPENSSL_MEMBER)
  RT_OPENSSL_LIBCRYPTO_FUNCTIONS(RT_OPENSSL_MEMBER)
#undef RT_OPENSSL_MEMBER

  // The macros of ssl.h and tls1.h, as what they expand to.
  long CtxSetMode(SSL_CTX* ctx, long mode) const {
    return SSL_CTX_ctrl(ctx, SSL_CTRL_MODE, mode, nullptr);
  }
  long CtxSetMinProtoVersion(SSL_CTX* ctx, long version) const {
    return SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, version, nullptr);
  }
  long SetTlsextHostName(SSL* ssl, const char* name) const {
    return SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                    const_cast<char*>(name));
  }
  int SetAppData(SSL* ssl, void* data) const { return SSL_set_ex_data(ssl, 0, data); }
  void* GetAppData(const SSL* ssl) const { return SSL_get_ex_data(ssl, 0); }
};

// OpenSSL's functions, loaded on the first call (once per process, thread
// safe; a failure is kept and returned again): RT_E_CONFIG saying that
// rediss:// needs libssl.so.3 and how to install it, with dlerror's detail.
absl::Status LoadOpenSsl();

// The table: only after LoadOpenSsl() returned OK (every TlsContext is made
// after it, so every SSL session is too).
const OpenSsl& Ssl();

// For tests only (not exported: tests that link ratetrack_core call it):
// the sonames the first LoadOpenSsl() opens instead of libssl.so.3 and
// libcrypto.so.3, so that a test can name one that does not exist and see
// the failure. No effect once OpenSSL was loaded (or failed to be): call it
// before any TLS use in the process.
void SetOpenSslNamesForTest(const char* libssl, const char* libcrypto);

}  // namespace ratetrack

#endif  // RATETRACK_TLS

#endif  // RATETRACK_SRC_REDIS_OPENSSL_H_
