/* Plain C reference loops for phyr-bench: the same algorithms as the Swift
 * Phyr module, over a flat array of {u64 address, u64 length} runs. Built
 * with `cc -O2` by run-phyr-bench. */
#ifndef PHYR_REF_H
#define PHYR_REF_H

#include <stddef.h>
#include <stdint.h>

struct phyr_ref_range {
  uint64_t addr;
  uint64_t len;
};

/* Best page size (spec section 2) over maximal runs; 0 when none fits. */
uint64_t phyr_ref_best_pgsz(const struct phyr_ref_range *runs, size_t n, uint64_t len,
                            uint64_t iova, uint64_t bitmap);

/* Walks `count` DMA blocks of `pgsz` (spec section 3) and returns the sum of
 * their addresses. */
uint64_t phyr_ref_block_sum(const struct phyr_ref_range *runs, size_t n, uint64_t pgsz,
                            uint64_t count);

/* Appends n ranges of `len` bytes at addrs[i], coalescing adjacent ones into
 * a doubling array; returns the number of runs and frees the array. */
size_t phyr_ref_build(const uint64_t *addrs, size_t n, uint64_t len);

/* Calls to malloc, calloc, realloc, posix_memalign, aligned_alloc and
 * memalign in this process so far (this file interposes them). */
uint64_t phyr_ref_alloc_count(void);

#endif
