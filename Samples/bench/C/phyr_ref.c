/* Plain C reference loops for phyr-bench. See phyr_ref.h. */
#include "phyr_ref.h"

#include <stdlib.h>

uint64_t phyr_ref_best_pgsz(const struct phyr_ref_range *runs, size_t n, uint64_t len,
                            uint64_t iova, uint64_t bitmap) {
  uint64_t last, mask, va;
  unsigned bits;
  size_t i;

  if (n == 0 || __builtin_add_overflow(iova, len - 1, &last))
    return 0;
  bits = (iova ^ last) ? 64 - __builtin_clzll(iova ^ last) : 1;
  mask = bits >= 64 ? 0 : bitmap & (~0ULL << bits);
  mask |= runs[0].addr ^ iova;
  va = iova + runs[0].len;
  for (i = 1; i < n; i++) {
    mask |= va | (runs[i].addr ^ va);
    va += runs[i].len;
  }
  if (mask) {
    unsigned tz = __builtin_ctzll(mask);
    bitmap &= tz == 63 ? ~0ULL : (2ULL << tz) - 1;
  }
  return bitmap ? 1ULL << (63 - __builtin_clzll(bitmap)) : 0;
}

uint64_t phyr_ref_block_sum(const struct phyr_ref_range *runs, size_t n, uint64_t pgsz,
                            uint64_t count) {
  uint64_t sum = 0, mask = pgsz - 1, pos, left, delta, next;
  size_t i = 0;

  if (n == 0)
    return 0;
  pos = runs[0].addr;
  left = runs[0].len;
  while (count--) {
    sum += pos & ~mask;
    /* Same step as the Swift iterator: the page end, then the distance. */
    next = (pos | mask) + 1;
    delta = next - pos;
    if (left > delta) {
      pos = next;
      left -= delta;
      continue;
    }
    while (left <= delta) {
      delta -= left;
      if (++i == n)
        return sum;
      pos = runs[i].addr;
      left = runs[i].len;
    }
    pos += delta;
    left -= delta;
  }
  return sum;
}

size_t phyr_ref_build(const uint64_t *addrs, size_t n, uint64_t len) {
  struct phyr_ref_range *runs = NULL, *grown;
  size_t count = 0, cap = 0, i;

  for (i = 0; i < n; i++) {
    if (count && runs[count - 1].addr + runs[count - 1].len == addrs[i]) {
      runs[count - 1].len += len;
      continue;
    }
    if (count == cap) {
      cap = cap ? cap * 2 : 16;
      grown = realloc(runs, cap * sizeof(*runs));
      if (!grown)
        abort();
      runs = grown;
    }
    runs[count].addr = addrs[i];
    runs[count].len = len;
    count++;
  }
  free(runs);
  return count;
}

/* Allocation counter: glibc's allocator under a thin wrapper. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static uint64_t alloc_count;

uint64_t phyr_ref_alloc_count(void) { return __atomic_load_n(&alloc_count, __ATOMIC_RELAXED); }

static void count_one(void) { __atomic_fetch_add(&alloc_count, 1, __ATOMIC_RELAXED); }

void *malloc(size_t size) {
  count_one();
  return __libc_malloc(size);
}

void *calloc(size_t n, size_t size) {
  count_one();
  return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size) {
  count_one();
  return __libc_realloc(p, size);
}

void *memalign(size_t align, size_t size) {
  count_one();
  return __libc_memalign(align, size);
}

void *aligned_alloc(size_t align, size_t size) {
  count_one();
  return __libc_memalign(align, size);
}

int posix_memalign(void **out, size_t align, size_t size) {
  void *p;
  count_one();
  p = __libc_memalign(align, size);
  if (!p)
    return 12; /* ENOMEM */
  *out = p;
  return 0;
}
