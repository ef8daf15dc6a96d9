#include "redis/tls.h"

#include "absl/strings/str_cat.h"
#include "status.h"

#ifdef RATETRACK_TLS
#include <arpa/inet.h>

#include "redis/openssl.h"
#endif

namespace ratetrack {

const char kTlsCertificateAdvice[] =
    "a certificate problem: check tls_ca_file / tls_ca_dir (the CA that signed the server's "
    "certificate), tls_server_name (the name it is for), and tls_cert_file / tls_key_file where "
    "the server wants a client certificate";

#ifdef RATETRACK_TLS

namespace {

// The server asked for a client certificate and we have none: noted (an
// optional request is fine; a refusal after it is a misconfiguration).
int NoteCertificateAsked(SSL* ssl, X509** /*cert*/, EVP_PKEY** /*key*/) {
  if (auto* asked = static_cast<bool*>(Ssl().GetAppData(ssl)); asked != nullptr) *asked = true;
  return 0;
}

}  // namespace

std::string TlsErrors() {
  const OpenSsl& o = Ssl();
  std::string out;
  for (unsigned long e = o.ERR_get_error(); e != 0; e = o.ERR_get_error()) {
    char buf[256];
    o.ERR_error_string_n(e, buf, sizeof buf);
    absl::StrAppend(&out, out.empty() ? "" : "; ", buf);
  }
  return out.empty() ? "no detail from OpenSSL" : out;
}

absl::StatusOr<std::shared_ptr<TlsContext>> TlsContext::Create(const RedisUrl& url) {
  if (!url.tls.enabled) return std::shared_ptr<TlsContext>();
  // OpenSSL is loaded here, on the first rediss:// (never at library load):
  // without it, RT_E_CONFIG like any other TLS misconfiguration.
  if (absl::Status loaded = LoadOpenSsl(); !loaded.ok()) return loaded;
  const OpenSsl& o = Ssl();
  o.ERR_clear_error();
  std::shared_ptr<TlsContext> t(new TlsContext);
  t->ctx_ = o.SSL_CTX_new(o.TLS_client_method());
  if (t->ctx_ == nullptr) return NoMemError("cannot make an OpenSSL context");
  o.CtxSetMinProtoVersion(t->ctx_, TLS1_2_VERSION);
  // Our socket never blocks: a partial write is finished with the same
  // buffer, which may have moved (a std::string's, hiredis's sds).
  o.CtxSetMode(t->ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  auto bad = [&](absl::string_view what) {
    return ConfigError(absl::StrCat("config key 'backend': rediss:// ", what, ": ", TlsErrors()));
  };
  t->verify_ = !url.tls.insecure;
  t->name_ = url.tls.server_name.empty() ? url.host : url.tls.server_name;
  if (t->verify_) {
    o.SSL_CTX_set_verify(t->ctx_, SSL_VERIFY_PEER, nullptr);
    if (!url.tls.ca_file.empty() || !url.tls.ca_dir.empty()) {
      if (o.SSL_CTX_load_verify_locations(
              t->ctx_, url.tls.ca_file.empty() ? nullptr : url.tls.ca_file.c_str(),
              url.tls.ca_dir.empty() ? nullptr : url.tls.ca_dir.c_str()) != 1) {
        return bad(absl::StrCat("cannot load the CA certificates from '",
                                url.tls.ca_file.empty() ? url.tls.ca_dir : url.tls.ca_file, "'"));
      }
    } else if (o.SSL_CTX_set_default_verify_paths(t->ctx_) != 1) {
      return bad("cannot load the system's CA certificates");
    }
  } else {
    o.SSL_CTX_set_verify(t->ctx_, SSL_VERIFY_NONE, nullptr);
  }
  if (url.tls.cert_file.empty()) o.SSL_CTX_set_client_cert_cb(t->ctx_, NoteCertificateAsked);
  if (!url.tls.cert_file.empty()) {
    if (o.SSL_CTX_use_certificate_chain_file(t->ctx_, url.tls.cert_file.c_str()) != 1) {
      return bad(absl::StrCat("cannot load the client certificate '", url.tls.cert_file, "'"));
    }
    if (o.SSL_CTX_use_PrivateKey_file(t->ctx_, url.tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      return bad(absl::StrCat("cannot load the client key '", url.tls.key_file, "'"));
    }
    if (o.SSL_CTX_check_private_key(t->ctx_) != 1) {
      return bad("the client key does not match the client certificate");
    }
  }
  return t;
}

TlsContext::~TlsContext() {
  if (ctx_ != nullptr) Ssl().SSL_CTX_free(ctx_);
}

SSL* TlsContext::NewSession(int fd, bool* asked) const {
  const OpenSsl& o = Ssl();
  SSL* ssl = o.SSL_new(ctx_);
  if (ssl == nullptr) return nullptr;
  o.SetAppData(ssl, asked);
  if (o.SSL_set_fd(ssl, fd) != 1) {
    o.SSL_free(ssl);
    return nullptr;
  }
  unsigned char addr[16];
  const bool is_address = inet_pton(AF_INET, name_.c_str(), addr) == 1 ||
                          inet_pton(AF_INET6, name_.c_str(), addr) == 1;
  if (!is_address) o.SetTlsextHostName(ssl, name_.c_str());  // SNI: names only
  if (verify_) {
    X509_VERIFY_PARAM* param = o.SSL_get0_param(ssl);
    const int set = is_address ? o.X509_VERIFY_PARAM_set1_ip_asc(param, name_.c_str())
                               : o.X509_VERIFY_PARAM_set1_host(param, name_.c_str(), 0);
    if (set != 1) {
      o.SSL_free(ssl);
      return nullptr;
    }
  }
  return ssl;
}

#else  // RATETRACK_TLS: a build without TLS (-DRATETRACK_TLS=OFF)

std::string TlsErrors() { return ""; }

absl::StatusOr<std::shared_ptr<TlsContext>> TlsContext::Create(const RedisUrl& url) {
  if (!url.tls.enabled) return std::shared_ptr<TlsContext>();
  return ConfigError(
      "config key 'backend': this build of libratetrack has no TLS (-DRATETRACK_TLS=OFF)");
}

TlsContext::~TlsContext() = default;

SSL* TlsContext::NewSession(int, bool*) const { return nullptr; }

#endif  // RATETRACK_TLS

}  // namespace ratetrack
