#include "sliding_window.h"

#include <algorithm>

namespace ratetrack {

SlidingWindow::SlidingWindow(int64_t span_ms, int64_t guard_ms)
    : span_ms_(std::max<int64_t>(span_ms, 1)),
      guard_ms_(std::max<int64_t>(guard_ms, 0)) {
  // kTargetBuckets buckets cover span + guard; one more is the partly
  // elapsed newest bucket.
  const int64_t reach = span_ms_ + guard_ms_;
  width_ms_ = (reach + kTargetBuckets - 1) / kTargetBuckets;
  const int64_t n = (reach + width_ms_ - 1) / width_ms_;  // <= kTargetBuckets
  ring_ = static_cast<int>(n) + 1;
  Clear();
}

void SlidingWindow::Clear() {
  for (int i = 0; i < ring_; ++i) counts_[i] = 0;
  used_ = 0;
  head_count_ = 0;
  head_ = 0;
  head_end_ms_ = 0;  // the first Advance positions the ring
}

// A saturated sum no longer equals the sum of the buckets; recount it.
void SlidingWindow::Resum() {
  used_ = head_count_;
  for (int i = 0; i < ring_; ++i) used_ = SatAdd(used_, counts_[i]);
}

void SlidingWindow::Repair() {
  if (width_ms_ <= 0 || ring_ < 2 || ring_ > kMaxRing) {
    *this = SlidingWindow(span_ms_ > 0 ? span_ms_ : 60000, 0);
    return;
  }
  if (head_ < 0) head_ = 0;
  // AdvanceSlow copies head_count_ into the ring before moving head_; a
  // writer killed in between left the same count in both places.
  uint64_t& stray = counts_[head_ % ring_];
  head_count_ = std::max(head_count_, stray);
  stray = 0;
  if (head_end_ms_ != 0) head_end_ms_ = (head_ + 1) * width_ms_;
  Resum();
}

void SlidingWindow::AdvanceSlow(int64_t now_ms) {
  const int64_t k = now_ms / width_ms_;
  if (head_end_ms_ == 0 || k - head_ >= ring_) {
    // First use, or every bucket has expired.
    for (int i = 0; i < ring_; ++i) counts_[i] = 0;
    used_ = 0;
  } else {
    counts_[head_ % ring_] = head_count_;  // the old head joins the ring
    const bool saturated = used_ == UINT64_MAX;
    for (int64_t j = head_ + 1; j <= k; ++j) {
      int slot = static_cast<int>(j % ring_);
      used_ -= std::min(used_, counts_[slot]);
      counts_[slot] = 0;
    }
    head_count_ = 0;
    if (saturated) Resum();
  }
  head_count_ = 0;
  head_ = k;
  head_end_ms_ = (k + 1) * width_ms_;
}

int64_t SlidingWindow::WaitMs(int64_t now_ms, uint64_t cost,
                              uint64_t limit) const {
  if (cost > limit) return -1;
  if (Fits(cost, limit)) return 0;
  // Oldest bucket first: bucket j stops counting at (j + ring) * width.
  uint64_t remaining = used_;
  for (int64_t j = head_ - ring_ + 1; j <= head_; ++j) {
    if (j < 0) continue;
    remaining -= std::min(remaining, Count(j));
    if (remaining <= limit && cost <= limit - remaining) {
      int64_t at = (j + ring_) * width_ms_;
      return std::max<int64_t>(at - now_ms, 1);
    }
  }
  // Only reachable when the newest bucket alone is over: it expires last.
  return std::max<int64_t>((head_ + ring_) * width_ms_ - now_ms, 1);
}

bool SlidingWindow::Adjust(int64_t at_ms, uint64_t amount, bool top_up) {
  if (at_ms < 0) return false;
  int64_t j = at_ms / width_ms_;
  if (j > head_) j = head_;  // booked like Add does for stale times
  if (head_end_ms_ == 0 || head_ - j >= ring_) return false;
  uint64_t& c = j == head_ ? head_count_ : counts_[j % ring_];
  if (top_up) {
    c = SatAdd(c, amount);
    used_ = SatAdd(used_, amount);
  } else {
    const bool saturated = used_ == UINT64_MAX;
    uint64_t d = std::min(c, amount);
    c -= d;
    used_ -= std::min(used_, d);
    if (saturated) Resum();
  }
  return true;
}

}  // namespace ratetrack
