/* The harness behind the registration-cache anchors: see cache_anchor.h. */
#include "cache_anchor.h"

#include <errno.h>
#include <infiniband/verbs.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* SplitMix64, the generator `umem cache-bench` draws its order from. */
static uint64_t splitmix_next(uint64_t *state) {
  *state += 0x9e3779b97f4a7c15ull;
  uint64_t z = *state;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void usage(const char *program, const char *why) {
  if (why) fprintf(stderr, "%s: %s\n", program, why);
  fprintf(stderr,
          "usage: %s [--regions N] [--lookups M] [--threads T] [--size BYTES] [--device NAME]"
          " [--repeats R] [--warmup W]\n",
          program);
  exit(64);
}

static long number(const char *program, const char *option, const char *text, long low,
                   long high) {
  char *end = NULL;
  errno = 0;
  long value = strtol(text, &end, 10);
  if (errno || end == text || *end != '\0' || value < low || value > high) {
    char why[200];
    snprintf(why, sizeof why, "%s must be a whole number from %ld to %ld (got '%s')", option,
             low, high, text);
    usage(program, why);
  }
  return value;
}

void anchor_parse(int argc, char **argv, struct anchor_options *options) {
  *options = (struct anchor_options){1000, 1000000, 1, 4096, NULL, 1, 16};
  for (int i = 1; i < argc; i++) {
    const char *option = argv[i];
    if (i + 1 >= argc) usage(argv[0], "every option takes a value");
    const char *value = argv[++i];
    if (strcmp(option, "--regions") == 0)
      options->regions = number(argv[0], option, value, 1, 10000000);
    else if (strcmp(option, "--lookups") == 0)
      options->lookups = number(argv[0], option, value, 1, 1000000000);
    else if (strcmp(option, "--threads") == 0)
      options->threads = number(argv[0], option, value, 1, 1024);
    else if (strcmp(option, "--size") == 0)
      options->size = (size_t)number(argv[0], option, value, 1, 1 << 30);
    else if (strcmp(option, "--device") == 0)
      options->device = value;
    else if (strcmp(option, "--repeats") == 0)
      options->repeats = number(argv[0], option, value, 1, 1000);
    else if (strcmp(option, "--warmup") == 0)
      options->warmup = number(argv[0], option, value, 0, 10000);
    else
      usage(argv[0], "unknown option");
  }
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t stride = (options->size + page - 1) / page * page;
  if (stride > ((size_t)1 << 40) / (size_t)options->regions)
    usage(argv[0], "--regions x --size must stay within 1 TiB");
}

struct worker {
  const struct anchor_ops *ops;
  const struct anchor_options *options;
  char *base;
  size_t stride;
  void *const *first; /* each buffer's handle from the fill */
  long count;         /* lookups for this thread */
  uint64_t seed;
  atomic_long *ready;
  uint64_t elapsed; /* the median of the repeats */
  long hits;        /* over all repeats */
  int failed;
};

static int compare_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The device and PD of the plain registrations the misses are paired
 * with: `name`, or the first device. Returns NULL pd (and says why on
 * stderr) when there is none; the run then goes on unpaired. */
struct plain_side {
  struct ibv_context *context;
  struct ibv_pd *pd;
};

static struct plain_side plain_open(const char *name) {
  struct plain_side side = {NULL, NULL};
  int count = 0;
  struct ibv_device **devices = ibv_get_device_list(&count);
  if (!devices) {
    fprintf(stderr, "plain side: ibv_get_device_list: %s; misses go unpaired\n", strerror(errno));
    return side;
  }
  for (int i = 0; i < count && !side.context; i++)
    if (!name || strcmp(ibv_get_device_name(devices[i]), name) == 0)
      side.context = ibv_open_device(devices[i]);
  ibv_free_device_list(devices);
  if (side.context) side.pd = ibv_alloc_pd(side.context);
  if (!side.pd) {
    fprintf(stderr, "plain side: no device %s to open; misses go unpaired\n", name ? name : "");
    if (side.context) ibv_close_device(side.context);
    side.context = NULL;
  }
  return side;
}

static void *worker_main(void *argument) {
  struct worker *w = argument;
  long *order = malloc(sizeof(long) * (size_t)w->count);
  if (!order) {
    w->failed = 1;
    atomic_fetch_add(w->ready, 1);
    return NULL;
  }
  uint64_t state = w->seed;
  for (long i = 0; i < w->count; i++)
    order[i] = (long)(splitmix_next(&state) % (uint64_t)w->options->regions);
  atomic_fetch_add(w->ready, 1);
  while (atomic_load(w->ready) < w->options->threads) {
  }
  long hits = 0;
  long repeats = w->options->repeats;
  uint64_t times[1000] = {0}; /* repeats <= 1000 (anchor_parse) */
  for (long r = 0; r < repeats && !w->failed; r++) {
    uint64_t start = now_ns();
    for (long i = 0; i < w->count; i++) {
      long index = order[i];
      void *handle = w->ops->reg(w->ops->state, w->base + (size_t)index * w->stride,
                                 w->options->size);
      if (!handle || w->ops->dereg(w->ops->state, handle) != 0) {
        w->failed = 1;
        break;
      }
      /* The cache hands back the entry it made on the fill. */
      hits += handle == w->first[index];
    }
    times[r] = now_ns() - start;
  }
  qsort(times, (size_t)repeats, sizeof times[0], compare_u64);
  w->elapsed = repeats % 2 ? times[repeats / 2] : (times[repeats / 2 - 1] + times[repeats / 2]) / 2;
  w->hits = hits;
  free(order);
  return NULL;
}

int anchor_run(const struct anchor_options *options, const struct anchor_ops *ops,
               const char *extra_json) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t stride = (options->size + page - 1) / page * page;
  size_t bytes = stride * (size_t)options->regions; /* checked in anchor_parse */
  /* Warm-up, untimed: misses on spare buffers (a mapping of their own,
   * unmapped afterwards, which the cache's monitor sees), so the fill's
   * misses are warm, as in `umem cache-bench --warmup`. The first one is
   * the cold miss. stride x warmup <= 1 GiB x 10,000: no overflow. */
  double cold_ns = 0;
  if (options->warmup > 0) {
    size_t spare_bytes = stride * (size_t)options->warmup;
    char *spare =
        mmap(NULL, spare_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (spare == MAP_FAILED) {
      fprintf(stderr, "%s: mmap of %zu bytes failed: %s\n", ops->name, spare_bytes,
              strerror(errno));
      return 1;
    }
    memset(spare, 1, spare_bytes);
    for (long i = 0; i < options->warmup; i++) {
      uint64_t start = now_ns();
      void *handle = ops->reg(ops->state, spare + (size_t)i * stride, options->size);
      if (!handle || ops->dereg(ops->state, handle) != 0) return 1;
      if (i == 0) cold_ns = (double)(now_ns() - start);
    }
    munmap(spare, spare_bytes);
  }
  char *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) {
    fprintf(stderr, "%s: mmap of %zu bytes failed: %s\n", ops->name, bytes, strerror(errno));
    return 1;
  }
  memset(base, 1, bytes);
  void **first = calloc((size_t)options->regions, sizeof(void *));
  struct worker *workers = calloc((size_t)options->threads, sizeof(struct worker));
  pthread_t *ids = calloc((size_t)options->threads, sizeof(pthread_t));
  if (!first || !workers || !ids) {
    fprintf(stderr, "%s: out of memory\n", ops->name);
    return 1;
  }

  /* Fill: one miss per buffer, each released at once (it stays cached),
   * each timed; some paired with a plain registration (cache_anchor.h). */
  struct plain_side plain = plain_open(options->device);
  long plain_every = (options->regions + 999) / 1000; /* regions <= 10,000,000 */
  long plain_count = plain.pd ? (options->regions + plain_every - 1) / plain_every : 0;
  char *plain_base = NULL;
  struct ibv_mr **plain_held = NULL;
  double *ratios = NULL, *differences = NULL;
  if (plain_count > 0) {
    plain_base = mmap(NULL, stride * (size_t)plain_count, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    plain_held = calloc((size_t)plain_count, sizeof(struct ibv_mr *));
    ratios = calloc((size_t)plain_count, sizeof(double));
    differences = calloc((size_t)plain_count, sizeof(double));
    if (plain_base == MAP_FAILED || !plain_held || !ratios || !differences) {
      fprintf(stderr, "%s: no memory for the plain side\n", ops->name);
      return 1;
    }
    memset(plain_base, 1, stride * (size_t)plain_count);
  }
  uint64_t miss_total = 0, plain_total = 0, paired_miss_total = 0;
  long pairs = 0;
  for (long i = 0; i < options->regions; i++) {
    int paired = plain_count > 0 && i % plain_every == 0;
    long k = i / plain_every;
    int plain_first = k % 2 == 0;
    uint64_t plain_took = 0;
    if (paired && plain_first) {
      uint64_t t0 = now_ns();
      plain_held[k] = ibv_reg_mr(plain.pd, plain_base + (size_t)k * stride, options->size,
                                 ops->plain_access);
      plain_took = now_ns() - t0;
    }
    uint64_t t0 = now_ns();
    void *handle = ops->reg(ops->state, base + (size_t)i * stride, options->size);
    if (!handle || ops->dereg(ops->state, handle) != 0) return 1;
    uint64_t took = now_ns() - t0;
    if (options->warmup == 0 && i == 0) cold_ns = (double)took;
    if (paired && !plain_first) {
      uint64_t t1 = now_ns();
      plain_held[k] = ibv_reg_mr(plain.pd, plain_base + (size_t)k * stride, options->size,
                                 ops->plain_access);
      plain_took = now_ns() - t1;
    }
    if (paired && !plain_held[k]) {
      fprintf(stderr, "%s: plain ibv_reg_mr: %s\n", ops->name, strerror(errno));
      return 1;
    }
    miss_total += took;
    if (paired) {
      plain_total += plain_took;
      paired_miss_total += took;
      if (plain_took > 0) {
        differences[pairs] = (double)took - (double)plain_took;
        ratios[pairs++] = (double)took / (double)plain_took;
      }
    }
    first[i] = handle;
  }
  double miss_ns = (double)miss_total / (double)options->regions;
  char plain_json[300] = "\"plainRegisterNanoseconds\":null,\"missOverPlain\":null,"
                         "\"missOverPlainMedian\":null,\"missMinusPlainMedianNanoseconds\":null,"
                         "\"plainSamples\":0,";
  if (plain_count > 0) {
    for (long k = 0; k < plain_count; k++) ibv_dereg_mr(plain_held[k]);
    munmap(plain_base, stride * (size_t)plain_count);
    double plain_ns = (double)plain_total / (double)plain_count;
    qsort(ratios, (size_t)pairs, sizeof ratios[0], compare_double);
    qsort(differences, (size_t)pairs, sizeof differences[0], compare_double);
    double median = pairs > 0 ? ratios[pairs / 2] : 0;
    double added = pairs > 0 ? differences[pairs / 2] : 0;
    snprintf(plain_json, sizeof plain_json,
             "\"plainRegisterNanoseconds\":%.1f,\"missOverPlain\":%.4f,"
             "\"missOverPlainMedian\":%.4f,\"missMinusPlainMedianNanoseconds\":%.1f,"
             "\"plainSamples\":%ld,",
             plain_ns, (double)paired_miss_total / (double)plain_count / plain_ns, median, added,
             plain_count);
  }
  free(plain_held);
  free(ratios);
  free(differences);
  if (plain.pd) ibv_dealloc_pd(plain.pd);
  if (plain.context) ibv_close_device(plain.context);

  long per_thread = options->lookups / options->threads;
  if (per_thread < 1) per_thread = 1;
  atomic_long ready = 0;
  for (long t = 0; t < options->threads; t++) {
    workers[t] = (struct worker){ops,      options,         base,   stride,
                                 first,    per_thread,      (uint64_t)t + 0x9e3779b9ull,
                                 &ready,   0,               0,      0};
    if (pthread_create(&ids[t], NULL, worker_main, &workers[t]) != 0) {
      fprintf(stderr, "%s: pthread_create failed\n", ops->name);
      return 1;
    }
  }
  double hit_ns = 0;
  long hits = 0;
  int failed = 0;
  for (long t = 0; t < options->threads; t++) {
    pthread_join(ids[t], NULL);
    hit_ns += (double)workers[t].elapsed / (double)per_thread;
    hits += workers[t].hits;
    failed |= workers[t].failed;
  }
  if (failed) {
    fprintf(stderr, "%s: a lookup failed\n", ops->name);
    return 1;
  }
  hit_ns /= (double)options->threads;
  long lookups = per_thread * options->threads * options->repeats;
  printf("{\"registrar\":\"%s\",%s\"device\":\"%s\",\"regions\":%ld,\"lookups\":%ld,"
         "\"threads\":%ld,\"repeats\":%ld,\"size\":%zu,\"hits\":%ld,\"misses\":%ld,"
         "\"hitNanoseconds\":%.1f,\"missNanoseconds\":%.1f,\"warmup\":%ld,"
         "%s\"coldMissNanoseconds\":%.1f}\n",
         ops->name, extra_json, options->device ? options->device : "", options->regions,
         lookups, options->threads, options->repeats, options->size, hits, lookups - hits, hit_ns,
         miss_ns, options->warmup, plain_json, cold_ns);
  fflush(stdout);
  free(ids);
  free(workers);
  free(first);
  /* The buffers stay mapped: the anchor closes its cache first, and an
   * munmap now would only time its monitor's invalidations. */
  return 0;
}
