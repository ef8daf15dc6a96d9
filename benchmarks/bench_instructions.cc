// Instructions per decision, for callgrind (figures, not a test): makes
// `calls` decisions of one kind on one thread and exits. Run it twice under
// `valgrind --tool=callgrind` with two call counts and divide the difference
// of the totals by the difference of the counts: what setting up and tearing
// down costs cancels out, and the figure does not move with the machine's
// load (scripts/bench-instructions.sh does this).
//
//   bench_instructions KIND CALLS
//     KIND: admit | refuse            (memory backend)
//           admit-shm | refuse-shm    (shm backend, segment ratetrack.binstr-<pid>)
//
// Admissions are on a model far from its limits; refusals on one whose
// requests_per_day is 1, used up before the calls (refused for a day).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <string>

#include "ratetrack.h"
#include "reference.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: bench_instructions admit|refuse|admit-shm|refuse-shm CALLS\n");
    return 2;
  }
  const std::string kind = argv[1];
  const long calls = atol(argv[2]);
  const bool shm = kind.size() > 4 && kind.compare(kind.size() - 4, 4, "-shm") == 0;
  const bool refuse = kind.rfind("refuse", 0) == 0;
  char shm_name[32];
  snprintf(shm_name, sizeof shm_name, "binstr-%ld", static_cast<long>(getpid()));
  std::string config = std::string("{") + ratetrack_bench::kLimits + "}";
  if (shm) config.insert(1, std::string("\"backend\": \"shm:") + shm_name + "\", ");
  rt_tracker* t = rt_open(config.c_str());
  if (t == nullptr) {
    fprintf(stderr, "rt_open: %s\n", rt_last_error());
    if (shm) rt_shm_remove(shm_name);
    return 1;
  }
  const char* model = refuse ? "bench/full0" : "bench/m0";
  if (refuse) rt_try_acquire(t, model, 100, nullptr);  // the day's one request
  const int want = refuse ? RT_LIMITED : RT_OK;
  int rc = rt_try_acquire(t, model, 100, nullptr);
  if (rc != want) {
    fprintf(stderr, "%s: expected %s, got %s\n", kind.c_str(), rt_status_string(want),
            rt_status_string(rc));
    rt_close(t);
    if (shm) rt_shm_remove(shm_name);
    return 1;
  }
  long bad = 0;
  for (long i = 0; i < calls; ++i) bad += rt_try_acquire(t, model, 100, nullptr) != want;
  rt_close(t);
  if (shm) rt_shm_remove(shm_name);
  if (bad != 0) {
    fprintf(stderr, "%s: %ld calls answered otherwise\n", kind.c_str(), bad);
    return 1;
  }
  return 0;
}
