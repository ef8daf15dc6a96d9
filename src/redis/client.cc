#include "redis/client.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "redis/script.h"
#include "redis/transport.h"
#include "status.h"

namespace ratetrack {

namespace {

// The slot map is asked again at most this often (a MOVED storm during a
// reshard, every call of a failed node).
constexpr int64_t kRefreshEveryUs = 100 * 1000;
// A call follows at most this many redirections (MOVED, ASK), pausing 1, 2,
// 4 ... ms from the third on.
constexpr int kMaxHops = 6;

std::string ClusterWhere(const RedisUrl& url) {
  std::string list;
  for (const auto& [h, p] : url.cluster) absl::StrAppend(&list, list.empty() ? "" : ",", h, ":", p);
  return absl::StrCat("Redis cluster ", list);
}

bool SameEndpoint(const Endpoint& a, const Endpoint& b) {
  return a.port == b.port && a.host == b.host;
}

}  // namespace

RedisClient::RedisClient(RedisUrl url) : url_(std::move(url)), where_(ClusterWhere(url_)) {
  if (url_.cluster.empty()) {
    single_ = std::make_unique<RedisStore>(url_);
    return;
  }
  for (auto& s : slot_node_) s.store(kNoNode, std::memory_order_relaxed);
  auto tls = TlsContext::Create(url_);
  if (tls.ok()) {
    tls_ = std::move(*tls);
  } else {
    tls_status_ = tls.status();
  }
}

RedisClient::~RedisClient() = default;

void RedisClient::NoteError(const std::string& message) const {
  errors_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard<std::mutex> l(error_mu_);
  last_error_ = message;
}

int RedisClient::SlotOf(absl::string_view model) const {
  // The key is "{prefix:model}": its hash tag runs to the first '}' (the
  // prefix has none).
  return Crc16(model.substr(0, model.find('}')), Crc16(":", Crc16(url_.prefix))) &
         (kClusterSlots - 1);
}

RedisStore* RedisClient::NodeAt(int slot) const {
  const uint16_t i = slot_node_[slot].load(std::memory_order_acquire);
  return i == kNoNode ? nullptr : node_[i].load(std::memory_order_acquire);
}

int RedisClient::NodeIndex(const Endpoint& at) {
  std::lock_guard<std::mutex> l(nodes_mu_);
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    if (SameEndpoint(endpoints_[i], at)) return static_cast<int>(i);
  }
  if (nodes_.size() >= static_cast<size_t>(kMaxNodes)) return -1;
  RedisUrl u = url_;
  u.cluster.clear();
  u.host = at.host;
  u.port = at.port;
  nodes_.push_back(std::make_unique<RedisStore>(std::move(u), /*cluster_node=*/true));
  endpoints_.push_back(at);
  const int i = static_cast<int>(nodes_.size() - 1);
  node_[i].store(nodes_.back().get(), std::memory_order_release);
  return i;
}

absl::Status RedisClient::ExchangeMisconfigured(const Exchange& x, const std::string& name) const {
  if (x.auth_refused() || x.certificate_refused()) {
    const std::string why =
        x.auth_refused() ? ClassifyErrorReply("WRONGPASS", "AUTH").why : kTlsCertificateAdvice;
    return ConfigError(absl::StrCat(where_, ": ", name, ": ", x.error(), ": ", why,
                                    " (a misconfiguration, not an outage)"));
  }
  return absl::OkStatus();
}

absl::Status RedisClient::Refresh(int64_t deadline_us, bool force) {
  if (!force && NowUs() - last_refresh_us_.load(std::memory_order_relaxed) < kRefreshEveryUs) {
    return absl::OkStatus();
  }
  std::unique_lock<std::mutex> lock(refresh_mu_, std::defer_lock);
  if (force) {
    lock.lock();
  } else if (!lock.try_lock()) {
    return absl::OkStatus();  // another call is asking: its map will do
  }
  if (!tls_status_.ok()) return tls_status_;
  // Asked of the masters the map names (the last that answered first), then
  // of the URL's nodes.
  std::vector<Endpoint> ask;
  {
    std::lock_guard<std::mutex> l(nodes_mu_);
    std::vector<bool> mapped(endpoints_.size(), false);
    for (const auto& s : slot_node_) {
      const uint16_t i = s.load(std::memory_order_relaxed);
      if (i != kNoNode) mapped[i] = true;
    }
    for (size_t i = 0; i < endpoints_.size(); ++i) {
      if (mapped[i]) ask.push_back(endpoints_[i]);
    }
  }
  for (const auto& [h, p] : url_.cluster) {
    const Endpoint seed{h, p, ""};
    if (std::none_of(ask.begin(), ask.end(),
                     [&](const Endpoint& e) { return SameEndpoint(e, seed); })) {
      ask.push_back(seed);
    }
  }
  std::string failures;
  for (const Endpoint& at : ask) {
    const std::string name = at.Describe();
    Exchange x(at, deadline_us, tls_.get(), url_.user, url_.password);
    if (absl::Status st = ExchangeMisconfigured(x, name); !st.ok()) return st;
    ReplyPtr r = x.error().empty() ? x.Ask({"CLUSTER", "NODES"}) : ReplyPtr(nullptr, freeReplyObject);
    if (absl::Status st = ExchangeMisconfigured(x, name); !st.ok()) return st;
    if (r == nullptr) {
      absl::StrAppend(&failures, failures.empty() ? "" : "; ", name, ": ", x.error());
      continue;
    }
    if (r->type == REDIS_REPLY_ERROR) {
      const std::string text(r->str, r->len);
      if (absl::StrContains(text, "cluster support disabled")) {
        return ConfigError(absl::StrCat(
            where_, ": ", name, ": CLUSTER NODES: ", text,
            ": the URL says redis+cluster://, and the server is not a cluster's node: use "
            "redis://host:port (a misconfiguration, not an outage)"));
      }
      if (const ErrorReplyKind kind = ClassifyErrorReply(text, "CLUSTER"); kind.misconfigured) {
        return ConfigError(absl::StrCat(where_, ": ", name, ": CLUSTER NODES: ", text, ": ",
                                        kind.why, " (a misconfiguration, not an outage)"));
      }
      absl::StrAppend(&failures, failures.empty() ? "" : "; ", name, ": ", text);
      continue;
    }
    if (r->type != REDIS_REPLY_STRING) {
      absl::StrAppend(&failures, failures.empty() ? "" : "; ", name, ": the reply is ",
                      TypeName(r.get()), ", expected a string");
      continue;
    }
    absl::StatusOr<ClusterLayout> layout =
        ParseClusterNodes(absl::string_view(r->str, r->len), at);
    if (!layout.ok()) {
      absl::StrAppend(&failures, failures.empty() ? "" : "; ", name,
                      ": CLUSTER NODES: ", layout.status().message());
      continue;
    }
    if (layout->covered == 0) {
      absl::StrAppend(&failures, failures.empty() ? "" : "; ", name,
                      ": its map has no slot served (a cluster not yet formed?)");
      continue;
    }
    std::vector<uint16_t> map(kClusterSlots, kNoNode);
    for (const ClusterLayout::Master& m : layout->masters) {
      const int i = NodeIndex(m.at);
      if (i < 0) return BackendError(absl::StrCat(where_, ": more than ", kMaxNodes, " nodes"));
      for (const auto& [lo, hi] : m.slots) {
        std::fill(map.begin() + lo, map.begin() + hi + 1, static_cast<uint16_t>(i));
      }
    }
    for (int s = 0; s < kClusterSlots; ++s) slot_node_[s].store(map[s], std::memory_order_release);
    last_refresh_us_.store(NowUs(), std::memory_order_relaxed);
    std::lock_guard<std::mutex> l(error_mu_);
    refresh_error_.clear();
    return absl::OkStatus();
  }
  last_refresh_us_.store(NowUs(), std::memory_order_relaxed);
  const std::string message =
      absl::StrCat(where_, ": no node gave the slot map (", failures, ")");
  NoteError(message);
  std::lock_guard<std::mutex> l(error_mu_);
  refresh_error_ = absl::StrCat("no node gave the slot map (", failures, ")");
  return BackendError(message);
}

std::string RedisClient::RefreshError() const {
  std::lock_guard<std::mutex> l(error_mu_);
  return refresh_error_.empty() ? "" : absl::StrCat(" (the slot map: ", refresh_error_, ")");
}

absl::Status RedisClient::FetchSecret(int64_t deadline_us) {
  const std::string key = absl::StrCat("{", url_.prefix, ":}secret");
  const int slot = KeySlot(key);
  for (int attempt = 0; attempt < 3; ++attempt) {
    uint16_t i = slot_node_[slot].load(std::memory_order_acquire);
    if (i == kNoNode) {
      if (absl::Status st = Refresh(deadline_us, /*force=*/attempt > 0); !st.ok()) return st;
      i = slot_node_[slot].load(std::memory_order_acquire);
      if (i == kNoNode) {
        const std::string message =
            absl::StrCat(where_, ": no node serves slot ", slot, " (of the ticket key ", key, ")",
                         RefreshError());
        NoteError(message);
        return BackendError(message);
      }
    }
    Endpoint at;
    {
      std::lock_guard<std::mutex> l(nodes_mu_);
      at = endpoints_[i];
    }
    const std::string name = at.Describe();
    Exchange x(at, deadline_us, tls_.get(), url_.user, url_.password);
    if (absl::Status st = ExchangeMisconfigured(x, name); !st.ok()) return st;
    std::random_device rd;
    const uint64_t mine = (static_cast<uint64_t>(rd()) << 32 | rd()) | 1;
    ReplyPtr set = x.error().empty() ? x.Ask({"SET", key, std::to_string(mine), "NX"})
                                     : ReplyPtr(nullptr, freeReplyObject);
    if (absl::Status st = ExchangeMisconfigured(x, name); !st.ok()) return st;
    ReplyPtr got = set != nullptr && set->type != REDIS_REPLY_ERROR ? x.Ask({"GET", key})
                                                                    : ReplyPtr(nullptr, freeReplyObject);
    const redisReply* err = set != nullptr && set->type == REDIS_REPLY_ERROR   ? set.get()
                            : got != nullptr && got->type == REDIS_REPLY_ERROR ? got.get()
                                                                                : nullptr;
    if (err != nullptr) {
      const absl::string_view text(err->str, err->len);
      Redirect to;
      if (ParseRedirect(text, &to)) {
        if (to.to.host.empty()) to.to.host = at.host;
        const int j = NodeIndex(to.to);
        if (j >= 0 && !to.ask) slot_node_[to.slot].store(static_cast<uint16_t>(j));
        Refresh(deadline_us, /*force=*/false).IgnoreError();
        continue;
      }
      if (const ErrorReplyKind kind = ClassifyErrorReply(text, "SET"); kind.misconfigured) {
        return ConfigError(absl::StrCat(where_, ": ", name, ": ", text, ": ", kind.why,
                                        " (a misconfiguration, not an outage)"));
      }
      const std::string message = absl::StrCat(where_, ": ", name, ": the ticket key: ", text);
      NoteError(message);
      return BackendError(message);
    }
    uint64_t shared = 0;
    if (got == nullptr || got->type != REDIS_REPLY_STRING ||
        !absl::SimpleAtoi(absl::string_view(got->str, got->len), &shared) || shared == 0) {
      const std::string message = absl::StrCat(
          where_, ": ", name, ": the ticket key ", key, ": ",
          got == nullptr ? x.error() : "not a number other than 0");
      NoteError(message);
      // A connection that failed is an outage; a key that holds something
      // else, a server the URL cannot use as it is.
      return got == nullptr ? BackendError(message) : ConfigError(message);
    }
    uint64_t expected = 0;
    secret_.compare_exchange_strong(expected, shared);
    return absl::OkStatus();
  }
  const std::string message =
      absl::StrCat(where_, ": the ticket key ", key, ": redirected more than twice");
  NoteError(message);
  return BackendError(message);
}

absl::StatusOr<RedisClient::Reply> RedisClient::Run(Op op, absl::string_view model,
                                                    const RemoteSpec& spec, const Cost& cost,
                                                    int64_t time_arg, const Cost& granted,
                                                    const Observation& observation) {
  if (single_ != nullptr) {
    return single_->Run(op, model, spec, cost, time_arg, granted, observation);
  }
  const int64_t deadline_us = NowUs() + static_cast<int64_t>(url_.timeout_ms) * 1000;
  if (secret_.load(std::memory_order_acquire) == 0) {
    // Before any grant is made: its ticket is keyed by it. After a failure,
    // asked again at most every 100 ms (meanwhile the calls fail fast, as
    // during a node's backoff).
    std::lock_guard<std::mutex> l(secret_mu_);
    if (secret_.load(std::memory_order_acquire) == 0) {
      if (NowUs() < secret_retry_at_us_) return secret_failure_;
      absl::Status st = FetchSecret(deadline_us);
      if (!st.ok()) {
        secret_retry_at_us_ = NowUs() + kRefreshEveryUs;
        secret_failure_ = st;
        return st;
      }
    }
  }
  const int slot = SlotOf(model);
  bool refreshed = false;
  RedisStore* asked = nullptr;  // an ASK's node: this call goes there, once, after ASKING
  // At most kMaxHops redirections, and once the node the map names after a
  // failure.
  for (int hop = 0;; ++hop) {
    RedisStore* node = asked != nullptr ? asked : NodeAt(slot);
    if (node == nullptr) {
      if (!refreshed) {
        refreshed = true;
        if (absl::Status st = Refresh(deadline_us, /*force=*/false); IsMisconfiguration(st)) {
          return st;
        }
        if (NodeAt(slot) != nullptr) continue;
      }
      const std::string message = absl::StrCat(
          where_, ": no node serves slot ", slot, " (of model '", model,
          "'): a failover or a reshard in progress, or the cluster is down", RefreshError());
      NoteError(message);
      return BackendError(message);
    }
    absl::StatusOr<Reply> r =
        node->Run(op, model, spec, cost, time_arg, granted, observation, asked != nullptr);
    asked = nullptr;
    if (r.ok() || IsMisconfiguration(r.status())) return r;
    if (RedisStore::IsRedirect(r.status())) {
      Redirect to;
      if (hop >= kMaxHops || !ParseRedirect(r.status().message(), &to)) {
        const std::string message = absl::StrCat(
            where_, ": ", r.status().message(),
            hop >= kMaxHops ? absl::StrCat(": redirected ", kMaxHops, " times") 
                            : ": a redirection not understood");
        NoteError(message);
        return BackendError(message);
      }
      if (hop >= 2) {
        // Sent back and forth: the nodes do not agree yet (a slot handed
        // over, one node told before the other): a moment for them to.
        const int64_t pause_us = std::min<int64_t>(1000 << (hop - 2), deadline_us - NowUs());
        if (pause_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(pause_us));
      }
      if (to.to.host.empty()) {
        // "MOVED 3999 :6381": the host of the node that said it.
        std::lock_guard<std::mutex> l(nodes_mu_);
        for (size_t i = 0; i < nodes_.size(); ++i) {
          if (nodes_[i].get() == node) to.to.host = endpoints_[i].host;
        }
      }
      const int i = NodeIndex(to.to);
      if (i < 0) return BackendError(absl::StrCat(where_, ": more than ", kMaxNodes, " nodes"));
      if (to.ask) {
        asked = node_[i].load(std::memory_order_acquire);
      } else {
        // The slot is there now; the rest of the map may have changed too
        // (a reshard moves many slots, a failover all of a node's).
        slot_node_[to.slot].store(static_cast<uint16_t>(i), std::memory_order_release);
        if (absl::Status st = Refresh(deadline_us, /*force=*/false); IsMisconfiguration(st)) {
          return st;
        }
        slot_node_[to.slot].store(static_cast<uint16_t>(i), std::memory_order_release);
      }
      continue;
    }
    // The node failed (an outage: on_error decides), or it is in the
    // middle of a failover: the map is asked again, and when the slot is
    // another node's now, the call goes there, once.
    // (Not when the call's time is up, as after a timeout: every node would
    // time out too; the next call, failing fast on the node's backoff, asks.)
    if (!refreshed && NowUs() < deadline_us) {
      refreshed = true;
      if (absl::Status st = Refresh(deadline_us, /*force=*/false); IsMisconfiguration(st)) {
        return st;
      }
      if (NodeAt(slot) != node && NodeAt(slot) != nullptr && NowUs() < deadline_us) continue;
    }
    return r;
  }
}

std::vector<absl::StatusOr<RedisClient::Reply>> RedisClient::RunMergedForTest(
    Op op, absl::string_view model, const RemoteSpec& spec, const std::vector<Cost>& costs) {
  if (single_ != nullptr) return single_->RunMergedForTest(op, model, spec, costs);
  RedisStore* node = NodeAt(SlotOf(model));
  if (node == nullptr) {
    return std::vector<absl::StatusOr<Reply>>(
        costs.size(), absl::FailedPreconditionError("RunMergedForTest: no node for the slot"));
  }
  return node->RunMergedForTest(op, model, spec, costs);
}

absl::Status RedisClient::Probe() {
  if (single_ != nullptr) return single_->Probe();
  if (!tls_status_.ok()) return tls_status_;
  const int64_t deadline_us = NowUs() + static_cast<int64_t>(url_.timeout_ms) * 1000;
  absl::Status st = Refresh(deadline_us, /*force=*/true);
  if (!st.ok()) return IsMisconfiguration(st) ? st : absl::OkStatus();  // an outage: on_error
  st = FetchSecret(deadline_us);
  if (IsMisconfiguration(st)) return st;
  // One connection to each master: what each server is (a replica where a
  // master should be, refused credentials) is said now.
  std::vector<RedisStore*> masters;
  for (int s = 0; s < kClusterSlots; ++s) {
    RedisStore* n = NodeAt(s);
    if (n != nullptr && std::find(masters.begin(), masters.end(), n) == masters.end()) {
      masters.push_back(n);
    }
  }
  for (RedisStore* n : masters) {
    if (absl::Status p = n->Probe(); !p.ok()) return p;
  }
  return absl::OkStatus();
}

RedisClient::Health RedisClient::health() const {
  if (single_ != nullptr) return single_->health();
  Health h{true, 0, errors_.load(std::memory_order_relaxed), ""};
  std::string any_error;
  {
    std::lock_guard<std::mutex> l(nodes_mu_);
    std::vector<bool> mapped(nodes_.size(), false);
    bool none = true;
    for (const auto& s : slot_node_) {
      const uint16_t i = s.load(std::memory_order_relaxed);
      if (i != kNoNode && i < mapped.size()) {
        mapped[i] = true;
        none = false;
      }
    }
    if (none) h.connected = false;
    for (size_t i = 0; i < nodes_.size(); ++i) {
      const Health n = nodes_[i]->health();
      h.errors += n.errors;
      if (any_error.empty()) any_error = n.last_error;
      if (!mapped[i]) continue;
      h.connected = h.connected && n.connected;
      if (n.degraded_since_unix_ms != 0 &&
          (h.degraded_since_unix_ms == 0 || n.degraded_since_unix_ms < h.degraded_since_unix_ms)) {
        h.degraded_since_unix_ms = n.degraded_since_unix_ms;
        h.last_error = n.last_error;
      }
    }
  }
  if (h.last_error.empty()) {
    std::lock_guard<std::mutex> l(error_mu_);
    h.last_error = last_error_.empty() ? any_error : last_error_;
  }
  return h;
}

uint64_t RedisClient::secret() const {
  return single_ != nullptr ? single_->secret() : secret_.load(std::memory_order_acquire);
}

bool RedisClient::TakeFirstFailure() {
  if (single_ != nullptr) return single_->TakeFirstFailure();
  std::lock_guard<std::mutex> l(nodes_mu_);
  for (auto& n : nodes_) {
    if (n->TakeFirstFailure()) return true;
  }
  return false;
}

void RedisClient::LockForFork() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  if (single_ != nullptr) return single_->LockForFork();
  secret_mu_.lock();
  refresh_mu_.lock();
  nodes_mu_.lock();
  for (auto& n : nodes_) n->LockForFork();
  error_mu_.lock();
}

void RedisClient::UnlockForFork(bool child) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  if (single_ != nullptr) return single_->UnlockForFork(child);
  error_mu_.unlock();
  for (auto& n : nodes_) n->UnlockForFork(child);
  nodes_mu_.unlock();
  refresh_mu_.unlock();
  secret_mu_.unlock();
}

std::vector<std::string> RedisClient::MastersForTest() const {
  std::vector<std::string> out;
  if (single_ != nullptr) return out;
  std::lock_guard<std::mutex> l(nodes_mu_);
  for (const auto& s : slot_node_) {
    const uint16_t i = s.load(std::memory_order_relaxed);
    if (i == kNoNode) continue;
    const std::string d = endpoints_[i].Describe();
    if (std::find(out.begin(), out.end(), d) == out.end()) out.push_back(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string RedisClient::NodeOfForTest(absl::string_view model) const {
  if (single_ != nullptr) return "";
  const uint16_t i = slot_node_[SlotOf(model)].load(std::memory_order_relaxed);
  if (i == kNoNode) return "";
  std::lock_guard<std::mutex> l(nodes_mu_);
  return endpoints_[i].Describe();
}

}  // namespace ratetrack
