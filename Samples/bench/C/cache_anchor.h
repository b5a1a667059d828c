/* The shared harness of the registration-cache anchors (fabric_mr_cache.c,
 * ucx_rcache.c): the same buffers, random order and timing as
 * `umem cache-bench`, so their figures compare with its JSON side by side.
 *
 * An anchor fills in `struct anchor_ops` (register one buffer through the
 * library's cache and return its handle; give a handle back) and calls
 * anchor_main(). The harness warms up on W spare buffers (then unmapped), maps N buffers, registers each once (the
 * misses), then lets T threads look them up M/T times each in their own
 * random order (SplitMix64, seeded as the Swift tool seeds it), every lookup
 * followed by its release (R times over, each timed: the median counts),
 * and prints one JSON object.
 *
 * Up to 1,000 of the fill's misses, spread evenly, are each paired with a
 * plain `ibv_reg_mr` of a buffer like it (a mapping of its own, on the same
 * device, each kept until the fill ends, as the cache keeps its own), the
 * two in alternating order, as `umem cache-bench` pairs its misses: the
 * JSON's plainRegisterNanoseconds, missOverPlain (ratio of the means) and
 * missOverPlainMedian (median of the pairs' ratios). Without a device that
 * libibverbs can open, those are null.
 */
#ifndef CACHE_ANCHOR_H
#define CACHE_ANCHOR_H

#include <stddef.h>

struct anchor_options {
  long regions;        /* --regions N (default 1000) */
  long lookups;        /* --lookups M in all (default 1000000) */
  long threads;        /* --threads T (default 1) */
  size_t size;         /* --size BYTES per buffer (default 4096) */
  const char *device;  /* --device NAME (default: the library's first) */
  long repeats;        /* --repeats R: each thread times its M/T lookups R times
                        * (default 1); the hit cost is each thread's median */
  long warmup;         /* --warmup W: misses on spare buffers before the fill
                        * (default 16), so the fill's misses are warm */
};

struct anchor_ops {
  /* What the JSON calls this anchor, e.g. "libfabric-verbs". */
  const char *name;
  /* Registers [address, address + length) through the cache; returns the
   * handle, or NULL after printing why. Called from several threads. */
  void *(*reg)(void *state, void *address, size_t length);
  /* Releases a handle from reg(); 0 on success. */
  int (*dereg)(void *state, void *handle);
  void *state;
  /* The ibv_access_flags the library's registrations ask for: the plain
   * ibv_reg_mr each paired miss is compared with asks for the same. */
  int plain_access;
};

/* Parses the options into `options`; exits 64 with usage on bad input. */
void anchor_parse(int argc, char **argv, struct anchor_options *options);

/* Runs the fill and the timed lookups and prints the JSON object, with
 * `extra_json` (`"key":value,...` or "") spliced in. Returns the exit
 * status (0, or 1 when a registration failed). */
int anchor_run(const struct anchor_options *options, const struct anchor_ops *ops,
               const char *extra_json);

#endif
