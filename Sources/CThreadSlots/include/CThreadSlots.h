// Per-thread slot numbers and the two halves of an asymmetric memory
// fence, for the registration cache's read lock: a thread that owns a slot
// enters and leaves read sections with plain stores to its own words and a
// compiler barrier (the light half), and a writer makes those stores
// visible to itself with membarrier(2) (the heavy half) instead of every
// reader paying a locked instruction. Every symbol is prefixed CTS_.
#ifndef CTS_SHIM_H
#define CTS_SHIM_H

#include <stdint.h>

/// How many threads can own a slot at once; later threads get none and
/// use the cache's shared stripes (atomic read-modify-writes).
enum { CTS_SLOTS = 64 };

/// The calling thread's slot plus one; 0 until it calls CTS_claim, -1 when
/// it has none (all taken, or the kernel refused membarrier).
extern __thread int32_t CTS_slot_plus_one __attribute__((tls_model("initial-exec")));

/// The calling thread's slot plus one (see CTS_slot_plus_one): one load
/// relative to the thread pointer.
static inline int32_t CTS_current(void) { return CTS_slot_plus_one; }

/// Claims a free slot for the calling thread (released when it exits), or
/// records that it has none; returns the new CTS_current(). The first call
/// in the process registers for MEMBARRIER_CMD_PRIVATE_EXPEDITED; where
/// that fails, or the environment has UMEM_CACHE_THREAD_SLOTS=0, no thread
/// gets a slot. Includes a full memory barrier.
int32_t CTS_claim(void);

/// Does the process-wide setup CTS_claim would do first (registering for
/// membarrier, which waits for an RCU grace period: milliseconds in an
/// emulated machine), so that a cache pays it when it is made instead of
/// in its first lookup. Idempotent; returns 1 when threads can own slots.
int CTS_prepare(void);

/// How many slots are owned now (a sequentially consistent load).
int32_t CTS_owned(void);

/// One more than the highest slot ever claimed in this process (0 before
/// the first claim): slots at and above it have never been used, so a
/// writer need not look at their stripes. A sequentially consistent load;
/// a claim raises it before the claiming thread's first read.
int32_t CTS_slots_used(void);

/// The light half: stops the compiler from moving memory accesses across
/// it; the processor may still delay the thread's stores (a store buffer),
/// which the heavy half accounts for.
static inline void CTS_light_fence(void) { __asm__ __volatile__("" ::: "memory"); }

/// The heavy half: when it returns, every thread of the process has passed
/// a full memory barrier (membarrier MEMBARRIER_CMD_PRIVATE_EXPEDITED; if
/// the kernel refuses it, an mprotect change whose TLB shootdown
/// interrupts every processor running the process's threads).
void CTS_heavy_fence(void);

#endif
