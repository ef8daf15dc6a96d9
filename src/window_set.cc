#include "window_set.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ratetrack.h"

namespace ratetrack {

Decision WindowSet::Decide(int64_t now, uint64_t tokens, bool book) {
  bool fits = true;
  const int n = nwin;
  for (int i = 0; i < n; ++i) {
    SlidingWindow& w = slots[i].window;
    w.Advance(now);
    const uint64_t limit = slots[i].limit.limit;
    if (limit == kUnlimited) continue;
    const uint64_t cost = slots[i].limit.unit == Unit::kRequests ? 1 : tokens;
    if (cost > limit) return {RT_E_TOO_LARGE, RT_WAIT_NEVER, 0};
    fits &= w.Fits(cost, limit);
  }
  if (!fits) {
    int64_t wait = 1;
    for (int i = 0; i < n; ++i) {
      const uint64_t limit = slots[i].limit.limit;
      if (limit == kUnlimited) continue;
      const uint64_t cost = slots[i].limit.unit == Unit::kRequests ? 1 : tokens;
      wait = std::max(wait, slots[i].window.WaitMs(now, cost, limit));
    }
    return {RT_LIMITED, static_cast<uint64_t>(wait), 0};
  }
  if (book) {
    for (int i = 0; i < n; ++i) {
      slots[i].window.Add(slots[i].limit.unit == Unit::kRequests ? 1 : tokens);
    }
  }
  return {RT_OK, 0, 0};
}

void WindowSet::Record(int64_t now, uint64_t tokens) {
  for (int i = 0; i < nwin; ++i) {
    slots[i].window.Advance(now);
    slots[i].window.Add(slots[i].limit.unit == Unit::kRequests ? 1 : tokens);
  }
}

void WindowSet::Settle(int64_t now, int64_t at, uint64_t granted,
                       uint64_t actual) {
  if (granted == actual) return;
  const bool top_up = actual > granted;
  const uint64_t delta = top_up ? actual - granted : granted - actual;
  for (int i = 0; i < nwin; ++i) {
    if (slots[i].limit.unit != Unit::kTokens) continue;
    slots[i].window.Advance(now);
    slots[i].window.Adjust(at, delta, top_up);
  }
}

void WindowSet::Clear() {
  for (int i = 0; i < nwin; ++i) slots[i].window.Clear();
}

void WindowSet::SetLimits(const ModelLimits& l, int64_t guard_ms) {
  std::vector<WindowSlot> next(l.windows.size());
  for (size_t i = 0; i < next.size(); ++i) {
    next[i].limit = l.windows[i];
    next[i].window = SlidingWindow(l.windows[i].seconds * 1000, guard_ms);
    for (int j = 0; j < nwin; ++j) {
      if (slots[j].limit.unit == l.windows[i].unit &&
          slots[j].limit.seconds == l.windows[i].seconds) {
        next[i].window = slots[j].window;
      }
    }
  }
  for (size_t i = 0; i < next.size(); ++i) slots[i] = next[i];
  nwin = static_cast<int32_t>(next.size());
}

bool WindowSet::HasLimits(const ModelLimits& l) const {
  if (static_cast<size_t>(nwin) != l.windows.size()) return false;
  for (int i = 0; i < nwin; ++i) {
    if (!(slots[i].limit == l.windows[i])) return false;
  }
  return true;
}

ModelLimits WindowSet::Limits() const {
  ModelLimits l;
  for (int i = 0; i < nwin; ++i) l.windows.push_back(slots[i].limit);
  return l;
}

void WindowSet::Repair() {
  if (nwin < 0 || nwin > ModelLimits::kMaxWindows) nwin = 0;
  for (int i = 0; i < nwin; ++i) slots[i].window.Repair();
}

std::string DescribeLimits(const ModelLimits& l) {
  std::string out;
  for (const WindowLimit& w : l.windows) {
    if (w.limit == kUnlimited) continue;
    absl::StrAppend(&out, out.empty() ? "" : ", ", WindowName(w.unit, w.seconds),
                    " ", w.limit);
  }
  return out.empty() ? "no limits" : out;
}

}  // namespace ratetrack
