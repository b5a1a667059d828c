// pin_ref: the C reference for `umem inspect --bench`. Pins a buffer the way
// the Umem module does (mlock, MADV_POPULATE_WRITE), reads its page frames
// from /proc/self/pagemap in batches of 64 Ki entries, and coalesces them into
// byte-exact {addr, len} runs in a doubling array. Times pin + pagemap +
// coalesce, best and median of RUNS after one untimed warm-up.
//
//   pin_ref SIZE_MIB plain|thp RUNS
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

struct run { uint64_t addr, len; };
struct list { struct run *runs; size_t count, capacity; };

static void append(struct list *l, uint64_t addr, uint64_t len) {
  if (l->count && l->runs[l->count - 1].addr + l->runs[l->count - 1].len == addr) {
    l->runs[l->count - 1].len += len;
    return;
  }
  if (l->count == l->capacity) {
    l->capacity = l->capacity ? l->capacity * 2 : 16;
    l->runs = realloc(l->runs, l->capacity * sizeof *l->runs);
    if (!l->runs) { perror("realloc"); exit(1); }
  }
  l->runs[l->count++] = (struct run){addr, len};
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

enum { BATCH = 1 << 16 };

// Pins [buf, buf+size), resolves it, returns the run count; the list is freed.
static size_t pin_and_resolve(char *buf, size_t size, uint64_t *total) {
  if (mlock(buf, size) != 0) { perror("mlock"); exit(1); }
  if (madvise(buf, size, MADV_POPULATE_WRITE) != 0) { perror("madvise"); exit(1); }
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) { perror("open"); exit(1); }
  static uint64_t entries[BATCH];
  struct list l = {0};
  uint64_t first = (uintptr_t)buf / 4096, pages = size / 4096;
  for (uint64_t done = 0; done < pages;) {
    uint64_t n = pages - done < BATCH ? pages - done : BATCH;
    ssize_t got = pread(fd, entries, n * 8, (first + done) * 8);
    if (got != (ssize_t)(n * 8)) { perror("pread"); exit(1); }
    for (uint64_t i = 0; i < n; i++) {
      uint64_t e = entries[i];
      if (!(e >> 63) || !(e & ((1ULL << 55) - 1))) { fprintf(stderr, "page not present or no PFN\n"); exit(1); }
      append(&l, (e & ((1ULL << 55) - 1)) << 12, 4096);
    }
    done += n;
  }
  close(fd);
  *total = 0;
  for (size_t i = 0; i < l.count; i++) *total += l.runs[i].len;
  size_t count = l.count;
  free(l.runs);
  return count;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: pin_ref SIZE_MIB plain|thp RUNS\n"); return 2; }
  size_t size = (size_t)atol(argv[1]) << 20;
  int thp = strcmp(argv[2], "thp") == 0;
  int runs = atoi(argv[3]);
  size_t align = thp ? 2 << 20 : 4096;
  char *raw = mmap(NULL, size + align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) { perror("mmap"); return 1; }
  char *buf = (char *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
  if (thp && madvise(buf, size, MADV_HUGEPAGE) != 0) { perror("madvise"); return 1; }
  uint64_t total;
  pin_and_resolve(buf, size, &total);  // warm-up: faults everything in
  munlock(buf, size);
  double *times = calloc(runs, sizeof *times);
  size_t count = 0;
  for (int r = 0; r < runs; r++) {
    double t0 = now();
    count = pin_and_resolve(buf, size, &total);
    double t1 = now();
    munlock(buf, size);
    times[r] = t1 - t0;
  }
  qsort(times, runs, sizeof *times, cmp);
  double gib = (double)size / (1 << 30);
  printf("{\"impl\":\"c\",\"backing\":\"%s\",\"length\":%zu,\"runs\":%zu,\"phyrBytes\":%llu,"
         "\"bestNanoseconds\":%.0f,\"medianNanoseconds\":%.0f,\"bestGiBPerSecond\":%.3f}\n",
         argv[2], size, count, (unsigned long long)total, times[0], times[runs / 2],
         gib / (times[0] / 1e9));
  return 0;
}
