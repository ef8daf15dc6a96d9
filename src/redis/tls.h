// rediss://: TLS through OpenSSL (loaded at run time: redis/openssl.h)
// over the socket the transport already polls. hiredis (Debian 12's 0.14
// has no TLS of its own) only formats the commands and parses the
// replies: the transport encrypts what hiredis buffered to send, and feeds
// hiredis's reply reader with what it decrypted. One TlsContext per store
// (the CA, the client certificate), one SSL session per connection.
#ifndef RATETRACK_SRC_REDIS_TLS_H_
#define RATETRACK_SRC_REDIS_TLS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "redis/url.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace ratetrack {

// What to check when TLS fails on a certificate (a misconfiguration's
// advice, the same wherever the handshake was).
extern const char kTlsCertificateAdvice[];

class TlsContext {
 public:
  // The CA (tls_ca_file, tls_ca_dir, else the system's), the client's
  // certificate and key (mutual TLS): RT_E_CONFIG when one cannot be read.
  // Null when url.tls is off.
  static absl::StatusOr<std::shared_ptr<TlsContext>> Create(const RedisUrl& url);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // A session over the connected socket fd, for the URL's server name (or
  // its host): null when out of memory. `*asked` is set when the server
  // asks for a client certificate and none is configured.
  SSL* NewSession(int fd, bool* asked) const;

 private:
  TlsContext() = default;
  SSL_CTX* ctx_ = nullptr;
  std::string name_;  // what the certificate must be for (a host name or an address)
  bool verify_ = true;
};

// The OpenSSL errors queued on this thread, as text (and cleared).
std::string TlsErrors();

}  // namespace ratetrack

#endif  // RATETRACK_SRC_REDIS_TLS_H_
